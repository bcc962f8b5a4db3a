/**
 * IPVS generic-netlink attribute encoding (ipvs-codec.ts), checked without a kernel: the byte
 * layout the kernel expects (linux/ip_vs.h, ip_vs_ctl.c) and that what we write decodes back.
 * The real kernel round trip runs in the kernel lab (test/kernel-lab/ipvs-lab.ts).
 */
import { describe, expect, it } from 'vitest';
import { KernelError } from '../../src/errors.js';
import type { IpvsDest, IpvsService } from '../../src/kernel/ipvs.js';
import { attrMap, decodeDest, decodeService, decodeTimeouts, destAttr, encode, serviceAttr, timeoutAttrs } from '../../src/kernel/ipvs-codec.js';

const bytes = (parts: Uint8Array[]): Buffer => Buffer.concat(parts);

const svc: IpvsService = {
  protocol: 'udp', address: '10.0.0.2', port: 53, scheduler: 'mh', flags: { persistent: true }, timeout: 60, netmask: '255.255.255.0',
};
const dest: IpvsDest = { address: '10.0.1.5', port: 8053, weight: 7, forward: 'masq', upperThreshold: 100, lowerThreshold: 10 };

describe('service attribute', () => {
  it('has the kernel layout: family, protocol, 16-byte address, big-endian port, flags with mask ~0', () => {
    const top = attrMap(bytes(encode(serviceAttr('t', svc, true))));
    const a = attrMap(top.get(1) as Buffer);
    expect(a.get(1)?.readUInt16LE(0)).toBe(2); // AF_INET
    expect(a.get(2)?.readUInt16LE(0)).toBe(17); // IPPROTO_UDP
    expect(a.get(3)).toEqual(Buffer.from([10, 0, 0, 2, ...new Array<number>(12).fill(0)]));
    expect(a.get(4)).toEqual(Buffer.from([0, 53]));
    expect(a.get(6)?.toString()).toBe('mh\0');
    expect(a.get(7)).toEqual(Buffer.from([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
    expect(a.get(8)?.readUInt32LE(0)).toBe(60);
    expect(a.get(9)).toEqual(Buffer.from([255, 255, 255, 0]));
  });

  it('identity only (delete, dest commands) leaves out the full-entry fields', () => {
    const a = attrMap(attrMap(bytes(encode(serviceAttr('t', svc, false)))).get(1) as Buffer);
    expect([...a.keys()]).toEqual([1, 2, 3, 4]);
  });

  it('round-trips, IPv4 and IPv6 (netmask = prefix length) and fwmark', () => {
    expect(decodeService('t', bytes(encode(serviceAttr('t', svc, true))))).toEqual({ ...svc, hashed: false, stats: expect.any(Object) as unknown });
    const v6: IpvsService = { ...svc, protocol: 'tcp', address: 'fd00::2', netmask: '128', flags: { shFallback: true, shPort: true }, scheduler: 'sh' };
    expect(decodeService('t', bytes(encode(serviceAttr('t', v6, true))))).toMatchObject(v6);
    const fwm: IpvsService = { ...svc, address: '0.0.0.0', port: 0, fwmark: 257, netmask: '255.255.255.255' };
    expect(decodeService('t', bytes(encode(serviceAttr('t', fwm, true))))).toMatchObject({ fwmark: 257, address: '0.0.0.0' });
  });

  it('refuses what the kernel would (bad netmask, long scheduler name, port out of range)', () => {
    expect(() => encode(serviceAttr('t', { ...svc, address: 'fd00::2', netmask: '0' }, true))).toThrow(KernelError);
    expect(() => encode(serviceAttr('t', { ...svc, scheduler: 'x'.repeat(16) }, true))).toThrow(/scheduler/);
    expect(() => encode(serviceAttr('t', { ...svc, port: 70000 }, false))).toThrow(/port/);
  });
});

describe('dest attribute', () => {
  it('round-trips with family, forwarding method, weight and thresholds', () => {
    const payload = bytes(encode(destAttr('t', dest, true)));
    const a = attrMap(attrMap(payload).get(2) as Buffer);
    expect(a.get(2)).toEqual(Buffer.from([0x1f, 0x75])); // 8053 big-endian
    expect(a.get(11)?.readUInt16LE(0)).toBe(2);
    expect(decodeDest('t', payload, 2)).toEqual({ ...dest, activeConns: 0, inactConns: 0, persistConns: 0, stats: expect.any(Object) as unknown });
  });

  it('refuses a negative weight', () => {
    expect(() => encode(destAttr('t', { ...dest, weight: -1 }, true))).toThrow(/weight/);
  });
});

describe('timeouts', () => {
  it('sends only the non-zero ones (0 = unchanged) and reads them back', () => {
    const payload = bytes(encode(timeoutAttrs({ tcp: 7500, tcpFin: 0, udp: 300 })));
    expect([...attrMap(payload).keys()]).toEqual([4, 6]);
    expect(decodeTimeouts(payload)).toEqual({ tcp: 7500, tcpFin: 0, udp: 300 });
  });
});
