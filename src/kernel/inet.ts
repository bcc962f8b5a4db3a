/**
 * Address <-> bytes conversions for netlink attributes (IPv4, IPv6, MAC). Pure functions,
 * no kernel access; invalid input throws a KernelError with errno EINVAL naming the op.
 */
import { isIP } from 'node:net';
import { KernelError } from '../errors.js';

/** AF_* numbers used by rtnetlink messages. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;

/** An address with its family, as netlink wants it. */
export interface IpBytes {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Buffer;
}

function invalid(op: string, what: string): KernelError {
  return new KernelError(op, 'EINVAL', what);
}

/** `'10.0.0.1'` / `'fd00::1'` to bytes; throws EINVAL otherwise. */
export function ipToBytes(op: string, ip: string): IpBytes {
  const v = isIP(ip);
  if (v === 4) return { family: AF_INET, bytes: Buffer.from(ip.split('.').map(Number)) };
  if (v === 6) return { family: AF_INET6, bytes: ipv6ToBytes(ip) };
  throw invalid(op, `'${ip}' is not an IP address`);
}

function ipv6ToBytes(ip: string): Buffer {
  let text = ip;
  const out = Buffer.alloc(16);
  // A trailing dotted quad (::ffff:1.2.3.4) is two more groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1]) {
    const [a = 0, b = 0, c = 0, d = 0] = quad[1].split('.').map(Number);
    text = `${text.slice(0, -quad[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups = tail === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Bytes (4 or 16) to the canonical text form (RFC 5952 for IPv6). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] ?? 0) << 8) | (b[i + 1] ?? 0));
  // Longest run (>= 2) of zero groups becomes '::'.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** A parsed `addr/len`. */
export interface Cidr extends IpBytes {
  ip: string;
  prefixLen: number;
}

/** `'10.0.0.1/24'` to its parts; a bare address gets the host length (/32 or /128). */
export function parseCidr(op: string, cidr: string): Cidr {
  const [ip = '', len] = cidr.split('/');
  const parsed = ipToBytes(op, ip);
  const max = parsed.family === AF_INET ? 32 : 128;
  const prefixLen = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max || (len !== undefined && !/^\d+$/.test(len))) {
    throw invalid(op, `'${cidr}' has an invalid prefix length`);
  }
  return { ...parsed, ip: bytesToIp(parsed.bytes), prefixLen };
}

/** `'02:42:ac:11:00:02'` to 6 bytes; throws EINVAL otherwise. */
export function macToBytes(op: string, mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw invalid(op, `'${mac}' is not a MAC address`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** 6 bytes to lower-case `aa:bb:cc:dd:ee:ff`. */
export function bytesToMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Canonical lower-case form of a MAC string (for comparisons). */
export function normalizeMac(op: string, mac: string): string {
  return bytesToMac(macToBytes(op, mac));
}
