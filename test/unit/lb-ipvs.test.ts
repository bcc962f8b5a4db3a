/**
 * IpvsLoadBalancer against FakeIpvs / FakeNft / FakeSysctl (no root): golden `ipvsadm -Ln`
 * dumps per scheduler, affinity, draining, and that each change sends only the calls it needs.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { KernelError } from '../../src/errors.js';
import { FakeIpvs } from '../../src/kernel/fake-ipvs.js';
import { FakeNft } from '../../src/kernel/nft.js';
import { FakeSysctl } from '../../src/kernel/sysctl.js';
import { IpvsLoadBalancer, masqTableScript } from '../../ingress/ipvs/index.js';
import type { LbBackend, LbScheduler, VirtualService } from '../../ingress/types.js';

const b = (last: number, weight = 1): LbBackend => ({ address: `10.0.1.${last}`, port: 8080, weight });

const vs = (over: Partial<VirtualService> = {}): VirtualService => ({
  service: 'web', address: '10.0.0.2', port: 80, protocol: 'tcp', scheduler: 'rr', backends: [b(5), b(6), b(7)], ...over,
});

const SYSCTLS = {
  'net.ipv4.vs.conntrack': 0, 'net.ipv4.vs.expire_nodest_conn': 0, 'net.ipv4.vs.expire_quiescent_template': 0,
  'net.ipv4.ip_forward': 0, 'net.ipv6.conf.all.forwarding': 0,
};

let ipvs: FakeIpvs;
let nft: FakeNft;
let sysctl: FakeSysctl;
let lb: IpvsLoadBalancer;

beforeEach(() => {
  ipvs = new FakeIpvs();
  nft = new FakeNft();
  sysctl = new FakeSysctl(SYSCTLS);
  lb = new IpvsLoadBalancer({ ipvs, nft, sysctl });
});

/** Calls recorded from now on. */
function callsDuring(): () => string[] {
  const from = ipvs.calls.length;
  return () => ipvs.calls.slice(from);
}

describe('golden dumps', () => {
  const three = ['  -> 10.0.1.5:8080  Masq  1', '  -> 10.0.1.6:8080  Masq  1', '  -> 10.0.1.7:8080  Masq  1'];
  const table: Array<[LbScheduler, string]> = [
    ['rr', 'TCP  10.0.0.2:80 rr'],
    ['wrr', 'TCP  10.0.0.2:80 wrr'],
    ['lc', 'TCP  10.0.0.2:80 lc'],
    ['sh', 'TCP  10.0.0.2:80 sh'],
    ['mh', 'TCP  10.0.0.2:80 mh'],
    // IPVS has no random scheduler: rr is the nearest (uniform over live backends).
    ['random', 'TCP  10.0.0.2:80 rr'],
  ];
  it.each(table)('scheduler %s', async (scheduler, head) => {
    await lb.syncAll([vs({ scheduler })]);
    expect(ipvs.dump()).toBe([head, ...three].join('\n'));
  });

  it('weights, UDP, IPv6 and affinity (persistent service with the timeout)', async () => {
    await lb.syncAll([
      vs({ scheduler: 'wrr', backends: [b(5, 3), b(6, 1)] }),
      vs({ protocol: 'udp', port: 53, affinity: { timeoutSeconds: 60 }, backends: [b(8)] }),
      vs({ address: 'fd00::2', scheduler: 'sh', affinity: { timeoutSeconds: 600 }, backends: [{ address: 'fd00:1::5', port: 80, weight: 2 }] }),
    ]);
    expect(ipvs.dump()).toBe([
      'TCP  10.0.0.2:80 wrr',
      '  -> 10.0.1.5:8080  Masq  3',
      '  -> 10.0.1.6:8080  Masq  1',
      'TCP  [fd00::2]:80 sh persistent 600',
      '  -> [fd00:1::5]:80  Masq  2',
      'UDP  10.0.0.2:53 rr persistent 60',
      '  -> 10.0.1.8:8080  Masq  1',
    ].join('\n'));
    const [svc] = (await ipvs.getServices()).filter((s) => s.address === 'fd00::2');
    expect(svc?.netmask).toBe('128');
  });

  it('a service without backends stays (the kernel refuses its flows instead of black-holing them)', async () => {
    await lb.syncAll([vs({ backends: [] })]);
    expect(ipvs.dump()).toBe('TCP  10.0.0.2:80 rr');
    expect(ipvs.connect({ protocol: 'tcp', address: '10.0.0.2', port: 80 }, '10.0.9.1')).toBeUndefined();
  });
});

describe('start', () => {
  it('sets the timeouts (no 900 s idle trap) and the IPVS sysctls once', async () => {
    await lb.syncAll([]);
    await lb.syncAll([]);
    expect(ipvs.dumpTimeouts()).toBe('Timeout (tcp tcpfin udp): 7500 120 300');
    expect(ipvs.calls.filter((c) => c.startsWith('setTimeouts'))).toHaveLength(1);
    expect(sysctl.dump()).toEqual({ ...SYSCTLS, 'net.ipv4.vs.conntrack': '1', 'net.ipv4.vs.expire_nodest_conn': '1', 'net.ipv4.vs.expire_quiescent_template': '1', 'net.ipv4.ip_forward': '0', 'net.ipv6.conf.all.forwarding': '0' });
  });

  it('takes other timeouts', async () => {
    lb = new IpvsLoadBalancer({ ipvs, timeouts: { tcp: 3600, tcpFin: 30, udp: 0 } });
    await lb.apply([vs()], []);
    expect(ipvs.dumpTimeouts()).toBe('Timeout (tcp tcpfin udp): 3600 30 300');
  });
});

describe('syncAll against the kernel', () => {
  it('removes leftovers (services and real servers), keeps fwmark services, fixes drifted ones', async () => {
    const svc = { protocol: 'tcp' as const, address: '10.0.0.2', port: 80, scheduler: 'lc', flags: {}, timeout: 0, netmask: '255.255.255.255' };
    await ipvs.newService(svc);
    await ipvs.newDest(svc, { address: '10.0.1.99', port: 8080, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
    await ipvs.newDest(svc, { address: '10.0.1.5', port: 8080, weight: 9, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
    await ipvs.newService({ ...svc, port: 443 });
    await ipvs.newService({ ...svc, address: '0.0.0.0', port: 0, fwmark: 257 });
    const calls = callsDuring();
    await lb.syncAll([vs()]);
    expect(ipvs.dump()).toBe([
      'FWM  257 lc',
      'TCP  10.0.0.2:80 rr',
      '  -> 10.0.1.5:8080  Masq  1',
      '  -> 10.0.1.6:8080  Masq  1',
      '  -> 10.0.1.7:8080  Masq  1',
    ].join('\n'));
    expect(calls()).toEqual([
      'setTimeouts tcp=7500 tcpfin=120 udp=300',
      'editService tcp/10.0.0.2/80 rr',
      'editDest tcp/10.0.0.2/80 10.0.1.5:8080 masq w=1',
      'newDest tcp/10.0.0.2/80 10.0.1.6:8080 masq w=1',
      'newDest tcp/10.0.0.2/80 10.0.1.7:8080 masq w=1',
      'delDest tcp/10.0.0.2/80 10.0.1.99:8080',
      'delService tcp/10.0.0.2/443',
    ]);
  });

  it('a second syncAll of the same state changes nothing', async () => {
    await lb.syncAll([vs(), vs({ port: 81, affinity: { timeoutSeconds: 30 } })]);
    const calls = callsDuring();
    await lb.syncAll([vs(), vs({ port: 81, affinity: { timeoutSeconds: 30 } })]);
    expect(calls()).toEqual([]);
    expect([...lb.applied().keys()].sort()).toEqual(['tcp/10.0.0.2/80', 'tcp/10.0.0.2/81']);
  });
});

describe('apply sends only the difference', () => {
  beforeEach(async () => {
    await lb.syncAll([vs(), vs({ port: 81 }), vs({ protocol: 'udp', port: 53 })]);
  });

  const cases: Array<[string, VirtualService, string[]]> = [
    ['a backend added', vs({ backends: [b(5), b(6), b(7), b(8)] }), ['newDest tcp/10.0.0.2/80 10.0.1.8:8080 masq w=1']],
    ['a backend removed', vs({ backends: [b(5), b(7)] }), ['delDest tcp/10.0.0.2/80 10.0.1.6:8080']],
    ['a backend reweighted', vs({ backends: [b(5), b(6, 4), b(7)] }), ['editDest tcp/10.0.0.2/80 10.0.1.6:8080 masq w=4']],
    ['a backend replaced (added before the old one goes)', vs({ backends: [b(5), b(6), b(9)] }), [
      'newDest tcp/10.0.0.2/80 10.0.1.9:8080 masq w=1', 'delDest tcp/10.0.0.2/80 10.0.1.7:8080',
    ]],
    ['the scheduler changed', vs({ scheduler: 'mh' }), ['editService tcp/10.0.0.2/80 mh']],
    ['affinity turned on', vs({ affinity: { timeoutSeconds: 120 } }), ['editService tcp/10.0.0.2/80 rr persistent=120']],
    ['nothing changed', vs(), []],
  ];
  it.each(cases)('%s', async (_what, change, expected) => {
    const calls = callsDuring();
    await lb.apply([change], []);
    expect(calls()).toEqual(expected);
    expect(lb.applied().get('tcp/10.0.0.2/80')).toEqual(change);
  });

  it('a removed service is one delete, absent or not', async () => {
    const calls = callsDuring();
    await lb.apply([], ['udp/10.0.0.2/53', 'tcp/10.0.0.9/1']);
    expect(calls()).toEqual(['delService udp/10.0.0.2/53']);
    expect([...lb.applied().keys()].sort()).toEqual(['tcp/10.0.0.2/80', 'tcp/10.0.0.2/81']);
  });

  it('a new service is one service and its real servers', async () => {
    const calls = callsDuring();
    await lb.apply([vs({ address: '10.0.0.3', backends: [b(5)] })], []);
    expect(calls()).toEqual(['newService tcp/10.0.0.3/80 rr', 'newDest tcp/10.0.0.3/80 10.0.1.5:8080 masq w=1']);
  });

  it('rejects a key both upserted and removed, and a bad key, before touching anything', async () => {
    const calls = callsDuring();
    await expect(lb.apply([vs({ backends: [] })], ['tcp/10.0.0.2/80'])).rejects.toMatchObject({ kind: 'InvalidParameter' });
    await expect(lb.apply([], ['10.0.0.2:80'])).rejects.toMatchObject({ kind: 'InvalidParameter' });
    expect(calls()).toEqual([]);
  });
});

describe('draining (weight 0)', () => {
  it('a drained backend gets no new flows; only its weight is edited', async () => {
    const key = { protocol: 'tcp' as const, address: '10.0.0.2', port: 80 };
    await lb.syncAll([vs()]);
    const calls = callsDuring();
    await lb.apply([vs({ backends: [b(5), b(6, 0), b(7)] })], []);
    expect(calls()).toEqual(['editDest tcp/10.0.0.2/80 10.0.1.6:8080 masq w=0']);
    expect(ipvs.dump()).toContain('  -> 10.0.1.6:8080  Masq  0');
    const seen = new Set(Array.from({ length: 30 }, (_, i) => ipvs.connect(key, `10.0.9.${i}`)));
    expect([...seen].sort()).toEqual(['10.0.1.5:8080', '10.0.1.7:8080']);
  });

  it('with affinity too (sticky clients are re-balanced: expire_quiescent_template)', async () => {
    await lb.syncAll([vs({ affinity: { timeoutSeconds: 60 }, backends: [b(5, 0), b(6, 0), b(7)] })]);
    const key = { protocol: 'tcp' as const, address: '10.0.0.2', port: 80 };
    expect(new Set(Array.from({ length: 20 }, (_, i) => ipvs.connect(key, `10.0.9.${i}`)))).toEqual(new Set(['10.0.1.7:8080']));
    expect(sysctl.dump()['net.ipv4.vs.expire_quiescent_template']).toBe('1');
  });
});

describe('masquerade (SNAT after IPVS in nftables)', () => {
  it('syncAll writes the whole table atomically; apply adds before and removes after IPVS', async () => {
    // One log of both, in the order the calls happened.
    const order: string[] = [];
    let seen = 0;
    const ipvsSoFar = (): void => {
      order.push(...ipvs.calls.slice(seen));
      seen = ipvs.calls.length;
    };
    const nftApply = nft.apply.bind(nft);
    nft.apply = async (script) => {
      ipvsSoFar();
      order.push(`nft ${script.split('\n')[0] ?? ''}`);
      return nftApply(script);
    };
    await lb.syncAll([vs({ masquerade: true })]);
    expect(nft.applied[0]).toBe(masqTableScript('shoal-ipvs', [{ protocol: 'tcp', address: '10.0.0.2', port: 80 }]));
    expect(sysctl.dump()['net.ipv4.ip_forward']).toBe('1');
    expect(nft.listTables()).toEqual(['inet shoal-ipvs']);

    ipvsSoFar();
    const from = order.length;
    await lb.apply([vs({ port: 81, masquerade: true, backends: [b(5)] })], ['tcp/10.0.0.2/80']);
    ipvsSoFar();
    expect(order.slice(from)).toEqual([
      'nft add element inet shoal-ipvs masq4-tcp { 10.0.0.2 . 81 }',
      'newService tcp/10.0.0.2/81 rr',
      'newDest tcp/10.0.0.2/81 10.0.1.5:8080 masq w=1',
      'delService tcp/10.0.0.2/80',
      'nft delete element inet shoal-ipvs masq4-tcp { 10.0.0.2 . 80 }',
    ]);
  });

  it('turning masquerade off for a service only deletes its element', async () => {
    await lb.syncAll([vs({ masquerade: true })]);
    const calls = callsDuring();
    await lb.apply([vs()], []);
    expect(calls()).toEqual([]);
    expect(nft.applied.at(-1)).toBe('delete element inet shoal-ipvs masq4-tcp { 10.0.0.2 . 80 }\n');
  });

  it('rewrites the table when an element update fails (someone else changed it)', async () => {
    await lb.syncAll([vs({ masquerade: true })]);
    nft.failNext('ENOENT');
    await lb.apply([vs({ port: 81, masquerade: true })], []);
    expect(nft.applied.at(-1)).toBe(masqTableScript('shoal-ipvs', [
      { protocol: 'tcp', address: '10.0.0.2', port: 80 }, { protocol: 'tcp', address: '10.0.0.2', port: 81 },
    ]));
  });

  it('needs an nft: refused before anything changes', async () => {
    lb = new IpvsLoadBalancer({ ipvs });
    await expect(lb.syncAll([vs({ masquerade: true })])).rejects.toMatchObject({ kind: 'InvalidParameter' });
    expect(ipvs.calls).toEqual([]);
  });
});

describe('failures', () => {
  it('a failed call leaves the service unknown; the next call re-reads it and converges', async () => {
    await lb.syncAll([vs()]);
    ipvs.failNext('ENOMEM');
    await expect(lb.apply([vs({ backends: [b(5), b(8)] })], [])).rejects.toBeInstanceOf(KernelError);
    expect(lb.applied().has('tcp/10.0.0.2/80')).toBe(false);
    const calls = callsDuring();
    await lb.apply([vs({ backends: [b(5), b(8)] })], []);
    expect(calls()).toEqual([
      'editService tcp/10.0.0.2/80 rr',
      'newDest tcp/10.0.0.2/80 10.0.1.8:8080 masq w=1',
      'delDest tcp/10.0.0.2/80 10.0.1.6:8080',
      'delDest tcp/10.0.0.2/80 10.0.1.7:8080',
    ]);
    expect(lb.applied().has('tcp/10.0.0.2/80')).toBe(true);
  });

  it('a service deleted behind our back is recreated by syncAll', async () => {
    await lb.syncAll([vs()]);
    await ipvs.flush();
    await lb.syncAll([vs()]);
    expect(ipvs.dump().split('\n')).toHaveLength(4);
  });
});

describe('stats and cleanup', () => {
  it('reports per-backend counters', async () => {
    await lb.syncAll([vs({ backends: [b(5)] })]);
    ipvs.connect({ protocol: 'tcp', address: '10.0.0.2', port: 80 }, '10.0.9.1');
    expect(await lb.stats()).toEqual([
      { vs: 'tcp/10.0.0.2/80', service: 'web', address: '10.0.1.5', port: 8080, connections: 0, connectionsTotal: 1, bytes: 0 },
    ]);
  });

  it('cleanup removes every owned service and the table; close releases the ops', async () => {
    await lb.syncAll([vs({ masquerade: true }), vs({ port: 81 })]);
    await lb.cleanup();
    expect(ipvs.dump()).toBe('');
    expect(nft.listTables()).toEqual([]);
    expect(lb.applied().size).toBe(0);
    await lb.close();
    await expect(ipvs.getServices()).rejects.toMatchObject({ errno: 'EBADF' });
  });
});
