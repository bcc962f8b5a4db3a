/**
 * Source NAT after IPVS for virtual services with `masquerade: true`, in nftables.
 *
 * IPVS in NAT ("masq") mode rewrites only the destination (VIP:port -> backend:port); the
 * backend sees the client's address and answers it directly, which breaks when the client did
 * not come through the director on the backend's way back (ingress: client, director and
 * backends on one segment). So the director must also rewrite the source to its own address.
 *
 * How: with `net.ipv4.vs.conntrack=1` IPVS keeps the netfilter conntrack entry of each flow and
 * only alters its reply tuple, so in POSTROUTING, after IPVS picked the backend, the entry
 * still remembers the ORIGINAL destination (the VIP and its port). One nat chain masquerades
 * every flow whose original destination is a masqueraded VIP:port, looked up in four sets
 * (IPv4/IPv6 x TCP/UDP):
 *
 * ```
 * meta l4proto tcp ct original ip daddr . ct original proto-dst @masq4-tcp masquerade
 * ```
 *
 * No packet or conntrack mark is taken (kube-proxy uses mark 0x4000 for the same job; Swarm
 * iptables' `-m ipvs`, which nftables lacks). The protocol is a match of its own, not part of
 * the set key, because nft 1.0.6 cannot type `ct original proto-dst` inside a concatenation
 * without the protocol as context. Replies are un-NATed by conntrack, then IPVS restores the
 * VIP as their source in FORWARD, so the director must forward (`ip_forward=1`).
 *
 * The table belongs to one load balancer: {@link masqTableScript} replaces it atomically (start,
 * resync), {@link masqElementsScript} adds and removes elements (one transaction per call).
 */
import type { LbProtocol } from '../types.js';

/** A masqueraded frontend. */
export interface MasqTarget {
  protocol: LbProtocol;
  address: string;
  port: number;
}

/** Default name of the table (family `inet`). */
export const MASQ_TABLE = 'shoal-ipvs';

const setOf = (t: MasqTarget): string => `masq${t.address.includes(':') ? 6 : 4}-${t.protocol}`;
const element = (t: MasqTarget): string => `${t.address} . ${t.port}`;

/** `{ set: [elements] }` for the targets, sets in a stable order. */
function bySet(targets: Iterable<MasqTarget>): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const t of targets) {
    const s = setOf(t);
    m.set(s, [...(m.get(s) ?? []), element(t)]);
  }
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * The whole table holding exactly `targets`, replacing any earlier version in the same
 * transaction (`add; delete; define`: valid whether or not it existed).
 */
export function masqTableScript(table: string, targets: Iterable<MasqTarget>): string {
  const sets = bySet(targets);
  const setLine = (name: string, type: string): string => {
    const els = sets.get(name);
    return `  set ${name} { type ${type} . inet_service;${els ? ` elements = { ${els.join(', ')} };` : ''} }`;
  };
  return [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    setLine('masq4-tcp', 'ipv4_addr'),
    setLine('masq4-udp', 'ipv4_addr'),
    setLine('masq6-tcp', 'ipv6_addr'),
    setLine('masq6-udp', 'ipv6_addr'),
    '  chain postrouting {',
    '    type nat hook postrouting priority 100; policy accept;',
    '    meta l4proto tcp ct original ip daddr . ct original proto-dst @masq4-tcp masquerade',
    '    meta l4proto udp ct original ip daddr . ct original proto-dst @masq4-udp masquerade',
    '    meta l4proto tcp ct original ip6 daddr . ct original proto-dst @masq6-tcp masquerade',
    '    meta l4proto udp ct original ip6 daddr . ct original proto-dst @masq6-udp masquerade',
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Add and delete elements in one transaction. Only delete elements known to be there: nft
 * 1.0.6 fails a delete of an absent element (ENOENT), and with it the whole transaction.
 * Empty string when there is nothing to do.
 */
export function masqElementsScript(table: string, add: Iterable<MasqTarget>, del: Iterable<MasqTarget>): string {
  const lines: string[] = [];
  for (const [set, els] of bySet(del)) lines.push(`delete element inet ${table} ${set} { ${els.join(', ')} }`);
  for (const [set, els] of bySet(add)) lines.push(`add element inet ${table} ${set} { ${els.join(', ')} }`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** Remove the table whether or not it exists. */
export function masqDeleteScript(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}
