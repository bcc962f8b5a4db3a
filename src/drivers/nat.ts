/**
 * The drivers' nftables table in the node namespace (`inet <prefix>_net`): egress masquerade
 * for every bridge/overlay subnet, and isolation between Shoal bridges.
 *
 * Desired state is the set of owned bridges present in the node namespace with their gateway
 * addresses: createNetwork/deleteNetwork change that set, then {@link syncNat} regenerates the
 * whole table from it in ONE `nft -f` transaction (add, delete, declare: atomic replace).
 * Reading the bridges back, rather than keeping a list in memory, means a restarted agent's
 * first createNetwork cannot drop the rules of networks it has not re-ensured yet. Which
 * bridges belong to internal networks (`--internal`: nothing routed in or out, no NAT) is kept
 * in the table itself, in the set `internal`, and read back the same way.
 */
import { invalid, isNotFound } from '../errors.js';
import { cidrContains, formatCidr, parseCidr } from '../ipam/cidr.js';
import { bridgeWildcard, natTableName, ownedKind } from './names.js';
import { serializerOf } from './serial.js';
import type { DriverContext } from './types.js';

/** One bridge (bridge or overlay network) as the NAT/isolation rules see it. */
export interface NatNetwork {
  bridge: string;
  /** Subnets (canonical CIDRs) of the addresses on the bridge, IPv4 and/or IPv6. */
  subnets: readonly string[];
  /** An internal network: no masquerade, nothing forwarded between it and any other interface. */
  internal?: boolean;
}

const LINK_LOCAL_V6 = parseCidr('fe80::/10');
const SAFE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * The complete nft script for `networks` (pure; golden-tested). Rules:
 * - postrouting: `ip saddr SUBNET oifname != BRIDGE masquerade` (and `ip6` for IPv6 subnets):
 *   traffic leaving a network through any other interface carries the node's address;
 * - forward: `iifname BRIDGE oifname "<prefix>b*" oifname != BRIDGE drop`: nothing is routed
 *   from one Shoal bridge to another (traffic within one bridge is switched, never forwarded).
 * - internal networks: no masquerade; forward `iifname BRIDGE oifname != BRIDGE drop` and
 *   `oifname BRIDGE iifname != BRIDGE drop` (no route out or in; the node itself still reaches
 *   the gateway, so the embedded DNS answers); their bridges are listed in the set `internal`.
 * No networks: the table is deleted (absent already = fine).
 */
export function natRules(prefix: string, networks: readonly NatNetwork[]): string {
  const table = natTableName(prefix);
  const head = `add table inet ${table}\ndelete table inet ${table}\n`;
  if (networks.length === 0) return head;
  const sorted = [...networks].sort((a, b) => (a.bridge < b.bridge ? -1 : a.bridge > b.bridge ? 1 : 0));
  const masquerade: string[] = [];
  const isolate: string[] = [];
  const internal: string[] = [];
  for (const n of sorted) {
    if (!SAFE_NAME.test(n.bridge)) throw invalid(`'${n.bridge}' is not an interface name`);
    for (const s of n.subnets) {
      const c = parseCidr(s);
      if (!n.internal) masquerade.push(`${c.family === 4 ? 'ip' : 'ip6'} saddr ${formatCidr(c)} oifname != "${n.bridge}" masquerade`);
    }
    if (n.internal) {
      internal.push(n.bridge);
      isolate.push(`iifname "${n.bridge}" oifname != "${n.bridge}" counter drop`, `oifname "${n.bridge}" iifname != "${n.bridge}" counter drop`);
    } else {
      isolate.push(`iifname "${n.bridge}" oifname "${bridgeWildcard(prefix)}" oifname != "${n.bridge}" counter drop`);
    }
  }
  const rules = (lines: string[]): string => lines.map((l) => `\t\t${l}\n`).join('');
  const set = internal.length ? `\tset ${INTERNAL_SET} {\n\t\ttype ifname\n\t\telements = { ${internal.map((b) => `"${b}"`).join(', ')} }\n\t}\n` : '';
  return `${head}table inet ${table} {
${set}\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
${rules(masquerade)}\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
${rules(isolate)}\t}
}
`;
}

/** The set of the NAT table naming the bridges of internal networks. */
const INTERNAL_SET = 'internal';

/** The bridges the NAT table now lists as internal (none when the table is absent). */
export async function internalBridges(ctx: DriverContext): Promise<Set<string>> {
  let json;
  try {
    json = await ctx.nft.list(natTableName(ctx.prefix), 'inet');
  } catch (e) {
    if (isNotFound(e)) return new Set();
    throw e;
  }
  const out = new Set<string>();
  for (const o of json.nftables) {
    const set = o['set'] as { name?: string; elem?: unknown[] } | undefined;
    if (set?.name !== INTERNAL_SET) continue;
    for (const e of set.elem ?? []) if (typeof e === 'string') out.add(e);
  }
  return out;
}

/** The owned bridges of the node namespace and the subnets of their (non link-local) addresses. */
export async function ownedBridges(ctx: DriverContext): Promise<NatNetwork[]> {
  const out: NatNetwork[] = [];
  for (const l of await ctx.links.listLinks(ctx.prefix)) {
    if (l.kind !== 'bridge' || ownedKind(ctx.prefix, l.name) !== 'bridge') continue;
    const subnets = new Set<string>();
    for (const a of await ctx.links.listAddresses(l.name)) {
      const c = parseCidr(a, { allowHostBits: true });
      if (c.family === 6 && cidrContains(LINK_LOCAL_V6, c)) continue;
      subnets.add(formatCidr(c));
    }
    out.push({ bridge: l.name, subnets: [...subnets].sort((x, y) => (x.includes(':') === y.includes(':') ? (x < y ? -1 : 1) : x.includes(':') ? 1 : -1)) });
  }
  return out;
}

/**
 * Regenerate the table from the owned bridges present now. Serialized per `ctx.nft` (one
 * node's drivers share it) so two concurrent syncs cannot apply a stale view last.
 * `change` says whether one bridge (the network being created) is internal; the others keep
 * what the table said.
 */
export function syncNat(ctx: DriverContext, change?: { bridge: string; internal: boolean }): Promise<void> {
  return serializerOf(ctx.nft).run('nat', async () => {
    const internal = await internalBridges(ctx);
    if (change?.internal) internal.add(change.bridge);
    else if (change) internal.delete(change.bridge);
    const bridges = (await ownedBridges(ctx)).map((b) => (internal.has(b.bridge) ? { ...b, internal: true } : b));
    await ctx.nft.apply(natRules(ctx.prefix, bridges));
  });
}
