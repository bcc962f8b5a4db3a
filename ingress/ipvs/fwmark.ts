/**
 * Every-port virtual services (port 0: a VIP carries every port of its service) on IPVS: an
 * IPVS virtual service is one address:port, so Swarm's way is used: nftables marks the
 * packets to the VIP with a firewall mark and IPVS balances a **fwmark service** whose real
 * servers have port 0 (the destination port is kept).
 *
 * Marks: one per (address, protocol) — a fwmark service matches any protocol, so TCP and UDP
 * of one VIP need two — computed from them (any process computes the same), in Shoal's range
 * `0x5000_0000 | 24-bit hash`, never colliding with the IPVS load balancer's other state.
 *
 * The nft table (family inet, one per load balancer) marks in `output` (a task calling a VIP)
 * and `prerouting` (traffic routed through the sandbox) at priority -150, before IPVS looks at
 * the packet, except packets to a port that has its own virtual service (`exact4`/`exact6`):
 * IPVS looks fwmark services up first for marked packets, so an explicit port must stay
 * unmarked to keep its own settings.
 */
import { createHash } from 'node:crypto';
import type { LbProtocol } from '../types.js';

/** Default name of the marking table. */
export const MARK_TABLE = 'shoal-ipvs-mark';
/** Shoal's fwmark range: the top byte. */
export const FWMARK_BASE = 0x5000_0000;
const FWMARK_MASK = 0xff00_0000;

/** The fwmark of the every-port service of `address`/`protocol`. */
export function fwmarkOf(address: string, protocol: LbProtocol): number {
  const h = createHash('sha256').update(`${protocol}/${address}`).digest();
  return (FWMARK_BASE | (h.readUInt32BE(0) & 0x00ff_ffff)) >>> 0;
}

/** Whether a kernel fwmark service is in Shoal's range (owned by an IPVS load balancer). */
export const isShoalFwmark = (mark: number | undefined): boolean => mark !== undefined && mark > 0 && ((mark & FWMARK_MASK) >>> 0) === FWMARK_BASE;

/** A marked frontend (every port of one address and protocol). */
export interface MarkTarget { address: string; protocol: LbProtocol; mark: number }
/** An explicit port that must stay unmarked. */
export interface ExactTarget { address: string; protocol: LbProtocol; port: number }

const fam = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);
const hex = (n: number): string => `0x${n.toString(16)}`;

/** The whole table holding exactly `marks` and `exact` (`add; delete; define`: atomic replace). */
export function markTableScript(table: string, marks: Iterable<MarkTarget>, exact: Iterable<ExactTarget>): string {
  const m = { 4: [] as string[], 6: [] as string[] };
  const e = { 4: [] as string[], 6: [] as string[] };
  for (const t of marks) m[fam(t.address)].push(`${t.address} . ${t.protocol} : ${hex(t.mark)}`);
  for (const t of exact) e[fam(t.address)].push(`${t.address} . ${t.protocol} . ${t.port}`);
  const els = (xs: string[]): string => (xs.length ? ` elements = { ${xs.sort().join(', ')} };` : '');
  const chain = (name: string): string[] => [
    `  chain ${name} {`,
    `    type filter hook ${name} priority -150; policy accept;`,
    '    ip daddr . meta l4proto . th dport @exact4 return',
    '    ip6 daddr . meta l4proto . th dport @exact6 return',
    '    meta mark set ip daddr . meta l4proto map @fwm4',
    '    meta mark set ip6 daddr . meta l4proto map @fwm6',
    '  }',
  ];
  return [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  set exact4 { type ipv4_addr . inet_proto . inet_service;${els(e[4])} }`,
    `  set exact6 { type ipv6_addr . inet_proto . inet_service;${els(e[6])} }`,
    `  map fwm4 { type ipv4_addr . inet_proto : mark;${els(m[4])} }`,
    `  map fwm6 { type ipv6_addr . inet_proto : mark;${els(m[6])} }`,
    ...chain('output'),
    ...chain('prerouting'),
    '}',
    '',
  ].join('\n');
}

/** Remove the table whether or not it exists. */
export function markDeleteScript(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}
