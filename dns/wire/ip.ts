/**
 * IP address bytes for A/AAAA rdata, canonical address keys, and reverse names
 * (`2.1.0.10.in-addr.arpa`, RFC 3596 nibble form under `ip6.arpa`).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { bytesToIp } from '../../src/kernel/inet.js';

/** The 4 bytes of a dotted IPv4 address, or undefined if it is not one. */
export function ipv4Bytes(address: string): Uint8Array | undefined {
  if (!isIPv4(address)) return undefined;
  return Uint8Array.from(address.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address (any textual form, optional `%zone`), or undefined. */
export function ipv6Bytes(address: string): Uint8Array | undefined {
  const a = address.split('%')[0] ?? '';
  if (!isIPv6(a)) return undefined;
  const out = new Uint8Array(16);
  let head = a;
  let tail = '';
  const dbl = a.indexOf('::');
  if (dbl >= 0) {
    head = a.slice(0, dbl);
    tail = a.slice(dbl + 2);
  }
  const words = (part: string): number[] => {
    if (part === '') return [];
    const out16: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = g.split('.').map(Number);
        out16.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else {
        out16.push(parseInt(g, 16));
      }
    }
    return out16;
  };
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

/**
 * A canonical key for an address, equal for every spelling of the same address:
 * dotted quad for IPv4, 32 lowercase hex digits for IPv6. Undefined if not an address.
 */
export function addressKey(address: string): string | undefined {
  if (isIPv4(address)) return address.split('.').map((o) => String(Number(o))).join('.');
  const b = ipv6Bytes(address);
  return b ? Buffer.from(b).toString('hex') : undefined;
}

/** Textual address from 4 or 16 rdata bytes (compressed IPv6 form, RFC 5952). */
export const formatAddress = (bytes: Uint8Array): string => bytesToIp(bytes);

/**
 * The address key (see {@link addressKey}) a reverse-lookup name key denotes, or undefined when
 * the name is not a complete `in-addr.arpa` / `ip6.arpa` address name.
 */
export function reverseNameKey(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4) return undefined;
    for (const p of parts) if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    return parts.reverse().join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const parts = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (parts.length !== 32) return undefined;
    for (const p of parts) if (!/^[0-9a-f]$/.test(p)) return undefined;
    return parts.reverse().join('');
  }
  return undefined;
}

/** The reverse-lookup name of an address (`10.0.1.2` -> `2.1.0.10.in-addr.arpa.`). */
export function reverseName(address: string): string | undefined {
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa.`;
  const b = ipv6Bytes(address);
  if (!b) return undefined;
  return `${Buffer.from(b).toString('hex').split('').reverse().join('.')}.ip6.arpa.`;
}
