/**
 * The nftables dataplane, rendered (pure): virtual services -> nft objects -> `nft -f` text.
 *
 * Layout, in `inet` tables owned by one load balancer (after kube-proxy's nftables mode):
 * - `output` (priority -100: a task calling a VIP is NATed in its own netns, so the backend
 *   sees the caller's address) and `prerouting` (priority -100: an ingress sandbox receiving
 *   traffic) dispatch `ip daddr . meta l4proto . th dport` through the verdict map `vip4`
 *   (`vip6`) to the service chain `s_<hash>`;
 * - the service chain marks for masquerade, then DNATs to `<pick> map @m_<hash>`: its slot map
 *   gives a backend address and port per slot; `<pick>` is `numgen inc mod N` (rr, wrr),
 *   `numgen random mod N` (random) or `jhash <saddr> mod N` (sh, mh). No backend taking new
 *   flows: the service chain rejects (TCP reset / ICMP port unreachable), never a black hole;
 * - with session affinity (kube-proxy's scheme) the slot map is a verdict map to per-backend
 *   chains `b_<hash>` that record the client in the backend's set `a_<hash>`
 *   (`update @a_<hash> { ip saddr }`) and DNAT; the service chain first sends known clients
 *   to their backend (`ip saddr @a_<hash> goto b_<hash>`);
 * - a frontend on every local address (`0.0.0.0:P` / `[::]:P`, a node's published ports) is
 *   dispatched after those, on `fib daddr type local` through `vipl4` (`vipl6`) keyed by
 *   `meta l4proto . th dport`: any address of the namespace, and for IPv4 loopback too, but
 *   only for traffic the namespace sends itself (`output`; `prerouting` skips 127.0.0.0/8).
 *   Such flows from 127.0.0.0/8 are marked for masquerade: a DNATed flow cannot leave with a
 *   loopback source (kube-proxy's localhost nodeports; the node needs route_localnet, see
 *   ingress/localnet.ts);
 * - `postrouting` (first table only) counts each new NATed flow in the named counter of its
 *   (service, backend) through the maps `cnt4`/`cnt6` (`cntl4`/`cntl6` for every-local
 *   frontends, keyed without the address), then masquerades marked packets.
 * `lc` becomes `rr` and `mh` becomes `sh` (nearest). Weights become slots (smooth weighted
 * round robin order) for wrr, random, sh and mh; `rr` gives each live backend one slot, like
 * IPVS. Weight 0 (draining): no slot, no affinity rule; conntrack keeps established flows.
 *
 * Why no chain per backend (unlike kube-proxy) outside affinity: the kernel walks every chain
 * of the netns on each commit, so per-backend chains make a one-endpoint change cost
 * O(all backends). Why services are spread over several tables (shards) past a few thousand:
 * each commit that adds a jump, a NAT rule or a verdict element re-validates its whole table.
 * Why slot maps are content-addressed and removals only flush: {@link planIncremental}.
 * Measurements: docs/bench-lb-nft.md.
 *
 * Names are hashes of the virtual service key (and backend, and content for slot maps and
 * affinity sets), so any process computes the same ones.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { invalid } from '../../src/errors.js';
import { isEveryLocal, vsKey, type LbBackend, type VirtualService } from '../types.js';

/** Most shard tables a load balancer spreads its services over. */
export const MAX_SHARDS = 64;
/** Objects per shard table (see {@link objectsOf}) before services are spread over more tables. */
export const DEFAULT_SHARD_OBJECTS = 4096;
/** Packet mark bit asking `postrouting` to masquerade. */
export const DEFAULT_MASQ_MARK = 0x4000;
/** Most slots of one slot map: weights are scaled down beyond it. */
export const MAX_SLOTS = 1024;

/** What every rendering needs besides the services. */
export interface RenderContext {
  /** Base table name; shard k > 0 lives in `<table>_<k>`. */
  table: string;
  /** Number of shard tables (a power of two, 1..{@link MAX_SHARDS}). */
  shards: number;
  /** Masquerade mark bit. */
  mark: number;
  /** Dispatch frontends on every local address too (`vipl4`/`vipl6`; a node's published ports). */
  everyLocal?: boolean;
}

/** A named set or map with its declaration body (`type ...; flags ...; elements = {...}`). */
export interface NamedDecl {
  name: string;
  decl: string;
}

/** A chain and its rules. */
export interface ChainDecl {
  name: string;
  rules: string[];
}

/** An element of a map (`vip4`, `cnt4`...): its key and the whole `key : value` text. */
export interface MapElement {
  map: 'vip4' | 'vip6' | 'vipa4' | 'vipa6' | 'vipl4' | 'vipl6' | 'cnt4' | 'cnt6' | 'cnta4' | 'cnta6' | 'cntl4' | 'cntl6';
  key: string;
  element: string;
}

/** The named counter of one backend of one virtual service (all counters live in shard 0). */
export interface CounterDecl {
  backend: LbBackend;
  name: string;
  element: MapElement;
}

/** The kernel objects of one virtual service. */
export interface ServiceObjects {
  key: string;
  vs: VirtualService;
  shard: number;
  chain: ChainDecl;
  /** Per-backend chains (affinity only). */
  backendChains: ChainDecl[];
  /** Affinity sets (affinity only). */
  sets: NamedDecl[];
  /** Slot map; absent when no backend takes new flows. */
  map?: NamedDecl;
  counters: CounterDecl[];
  /** The element of `vip4`/`vip6` leading to the service chain. */
  vip: MapElement;
  /** Everything above as one string: equal signatures need no kernel change. */
  signature: string;
}

/** Something the tables still hold that no live service uses (flushed or unreferenced). */
export interface Leftover {
  kind: 'chain' | 'map' | 'set' | 'counter' | 'element';
  shard: number;
  /** Object name; for elements `<map>:<key>`. */
  name: string;
  /** Elements only. */
  element?: MapElement;
}

/** Table of shard `k`. */
export function shardTable(table: string, k: number): string {
  return k === 0 ? table : `${table}_${k}`;
}

/** Shard tables for `objects` objects: a power of two, 1..{@link MAX_SHARDS}. */
export function shardsFor(objects: number, perShard = DEFAULT_SHARD_OBJECTS): number {
  let k = 1;
  while (k < MAX_SHARDS && objects > k * perShard) k *= 2;
  return k;
}

/** Objects that weigh on a shard's commits: the service chain, plus chain and set per backend with affinity. */
export function objectsOf(vs: VirtualService): number {
  return vs.affinity ? 1 + 2 * vs.backends.length : 1;
}

const digest = (parts: readonly string[]): string => createHash('sha256').update(parts.join('\n')).digest('hex');
const hash12 = (...parts: string[]): string => digest(parts).slice(0, 12);
const hex = (n: number): string => `0x${n.toString(16)}`;

/** Throws InvalidParameter unless `vs` can be rendered (addresses, ports, weights, families). */
export function checkVirtualService(vs: VirtualService): void {
  const key = `${vs.protocol}/${vs.address}/${vs.port}`;
  const fam = isIP(vs.address);
  if (fam === 0) throw invalid(`virtual service ${key}: '${vs.address}' is not an IP address`);
  if (vs.protocol !== 'tcp' && vs.protocol !== 'udp') throw invalid(`virtual service ${key}: protocol must be tcp or udp`);
  const port = (p: number): boolean => Number.isInteger(p) && p >= 1 && p <= 65535;
  // Port 0: every port of the address (the backend keeps the destination port): backends port 0 too.
  const every = vs.port === 0;
  if (every && isEveryLocal(vs.address)) throw invalid(`virtual service ${key}: every local address takes one port at a time (1..65535), not every port`);
  if (!every && !port(vs.port)) throw invalid(`virtual service ${key}: port must be 1..65535 (or 0 for every port)`);
  const t = vs.affinity?.timeoutSeconds;
  if (t !== undefined && !(Number.isInteger(t) && t >= 1)) throw invalid(`virtual service ${key}: affinity timeout must be a positive integer`);
  const seen = new Set<string>();
  for (const b of vs.backends) {
    const id = `${b.address}:${b.port}`;
    if (isIP(b.address) !== fam) throw invalid(`virtual service ${key}: backend ${id} is not an IPv${fam} address`);
    if (every ? b.port !== 0 : !port(b.port)) throw invalid(`virtual service ${key}: backend ${id}: port must be ${every ? '0 (every port keeps its destination port)' : '1..65535'}`);
    if (!(Number.isInteger(b.weight) && b.weight >= 0 && b.weight <= 256)) throw invalid(`virtual service ${key}: backend ${id}: weight must be 0..256`);
    if (seen.has(id)) throw invalid(`virtual service ${key}: backend ${id} is listed twice`);
    seen.add(id);
  }
}

const byAddress = (a: LbBackend, b: LbBackend): number =>
  a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port;

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * The backends of `vs` in slot order (slot `i` of the slot map is element `i`). `rr`/`lc`:
 * each backend with weight > 0 once; otherwise the weights (divided by their gcd, scaled down
 * to at most {@link MAX_SLOTS} slots) in smooth weighted round robin order, so consecutive
 * flows spread instead of arriving in runs of one backend.
 */
export function slotsOf(vs: Pick<VirtualService, 'scheduler' | 'backends'>): LbBackend[] {
  const live = vs.backends.filter((b) => b.weight > 0).sort(byAddress);
  if (vs.scheduler === 'rr' || vs.scheduler === 'lc' || live.length === 0) return live;
  const g = live.reduce((acc, b) => gcd(acc, b.weight), 0);
  let weights = live.map((b) => b.weight / g);
  const total = weights.reduce((a, w) => a + w, 0);
  if (total > MAX_SLOTS) weights = weights.map((w) => Math.max(1, Math.floor((w * MAX_SLOTS) / total)));
  const sum = weights.reduce((a, w) => a + w, 0);
  const current = weights.map(() => 0);
  const out: LbBackend[] = [];
  for (let n = 0; n < sum; n++) {
    let best = 0;
    for (let i = 0; i < weights.length; i++) {
      current[i] = (current[i] ?? 0) + (weights[i] ?? 0);
      if ((current[i] ?? 0) > (current[best] ?? 0)) best = i;
    }
    current[best] = (current[best] ?? 0) - sum;
    out.push(live[best] as LbBackend);
  }
  return out;
}

/** A string safe inside an nft `comment "..."`. */
const commentText = (s: string): string => s.replace(/[^A-Za-z0-9 _.:/@+=-]/g, '_').slice(0, 96);

/** The kernel objects of `vs` (call {@link checkVirtualService} first). */
export function serviceObjects(vs: VirtualService, ctx: RenderContext): ServiceObjects {
  const key = vsKey(vs);
  const v6 = vs.address.includes(':');
  const ip = v6 ? 'ip6' : 'ip';
  const tag = hash12(key);
  const timeout = vs.affinity?.timeoutSeconds;
  const sorted = [...vs.backends].sort(byAddress);
  const id = (b: LbBackend): string => `${b.address}:${b.port}`;
  const every = vs.port === 0;
  // Every port: DNAT to the address only, the destination port is kept.
  const target = (b: LbBackend): string => (every ? b.address : v6 ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`);
  const dnat = (to: string): string => `meta l4proto ${vs.protocol} dnat ${ip} to ${to}`;
  const slots = slotsOf(vs);
  const pick = vs.scheduler === 'random' ? `numgen random mod ${slots.length}`
    : vs.scheduler === 'sh' || vs.scheduler === 'mh'
      ? `jhash ${ip} saddr mod ${slots.length} seed 0x${digest([key]).slice(0, 8)}`
      : `numgen inc mod ${slots.length}`;
  const comment = ` comment "${commentText(vs.service)}"`;

  const local = isEveryLocal(vs.address);
  const masq = `meta mark set meta mark | ${hex(ctx.mark)}`;
  // Every local address: a flow from loopback (the node calling 127.0.0.1:P) must leave with a routable source.
  const rules: string[] = vs.masquerade ? [masq] : local && !v6 ? [`ip saddr 127.0.0.0/8 ${masq}`] : [];
  const backendChains: ChainDecl[] = [];
  const sets: NamedDecl[] = [];
  let map: NamedDecl | undefined;
  if (timeout !== undefined) {
    const chainOf = new Map<string, string>();
    for (const b of sorted) {
      const bid = hash12(key, b.address, String(b.port));
      const set = { name: `a_${hash12(key, b.address, String(b.port), String(timeout))}`, decl: `type ${v6 ? 'ipv6_addr' : 'ipv4_addr'}; flags dynamic,timeout; timeout ${timeout}s;` };
      sets.push(set);
      backendChains.push({ name: `b_${bid}`, rules: [`update @${set.name} { ${ip} saddr }`, dnat(target(b))] });
      chainOf.set(id(b), `b_${bid}`);
      if (b.weight > 0) rules.push(`${ip} saddr @${set.name} goto b_${bid}`);
    }
    if (slots.length > 0) {
      const elements = slots.map((b, i) => `${i} : goto ${chainOf.get(id(b)) ?? ''}`).join(', ');
      map = { name: `m_${hash12(key, pick, elements)}`, decl: `typeof numgen inc mod 2 : verdict; elements = { ${elements} };` };
      rules.push(`${pick} vmap @${map.name}${comment}`);
    }
  } else if (slots.length > 0) {
    const elements = slots.map((b, i) => (every ? `${i} : ${b.address}` : `${i} : ${b.address} . ${b.port}`)).join(', ');
    const value = every ? `${ip} daddr` : `${ip} daddr . ${vs.protocol} dport`;
    map = { name: `m_${hash12(key, pick, elements)}`, decl: `typeof numgen inc mod 2 : ${value}; elements = { ${elements} };` };
    rules.push(`${dnat(`${pick} map @${map.name}`)}${comment}`);
  }
  if (slots.length === 0) rules.push(`${vs.protocol === 'tcp' ? 'reject with tcp reset' : 'reject'}${comment}`);

  const counters: CounterDecl[] = sorted.map((b) => {
    const name = `c_${hash12(key, b.address, String(b.port))}`;
    const k = every ? `${vs.protocol} . ${vs.address} . ${b.address}`
      : local ? `${vs.protocol} . ${vs.port} . ${b.address} . ${b.port}`
        : `${vs.protocol} . ${vs.address} . ${vs.port} . ${b.address} . ${b.port}`;
    const cmap = every ? (v6 ? 'cnta6' : 'cnta4') : local ? (v6 ? 'cntl6' : 'cntl4') : v6 ? 'cnt6' : 'cnt4';
    return { backend: { ...b }, name, element: { map: cmap, key: k, element: `${k} : "${name}"` } };
  });
  const shard = ctx.shards <= 1 ? 0 : Number.parseInt(tag.slice(0, 8), 16) % ctx.shards;
  // Exact ports dispatch on address . protocol . port; every-port services on address . protocol,
  // looked up only when no exact port matched (see hookChains).
  const vk = every ? `${vs.address} . ${vs.protocol}` : local ? `${vs.protocol} . ${vs.port}` : `${vs.address} . ${vs.protocol} . ${vs.port}`;
  const vmap = every ? (v6 ? 'vipa6' : 'vipa4') : local ? (v6 ? 'vipl6' : 'vipl4') : v6 ? 'vip6' : 'vip4';
  const vip: MapElement = { map: vmap, key: vk, element: `${vk} : goto s_${tag}` };
  const chain = { name: `s_${tag}`, rules };
  const signature = JSON.stringify([shard, chain, backendChains, sets, map, counters.map((c) => c.element.element), vip.element]);
  return {
    key, vs: { ...vs, backends: vs.backends.map((b) => ({ ...b })) }, shard, chain, backendChains, sets,
    ...(map ? { map } : {}), counters, vip, signature,
  };
}

const MAP_TYPE: Record<MapElement['map'], string> = {
  vip4: 'ipv4_addr . inet_proto . inet_service : verdict',
  vip6: 'ipv6_addr . inet_proto . inet_service : verdict',
  vipa4: 'ipv4_addr . inet_proto : verdict',
  vipa6: 'ipv6_addr . inet_proto : verdict',
  vipl4: 'inet_proto . inet_service : verdict',
  vipl6: 'inet_proto . inet_service : verdict',
  cnt4: 'inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service : counter',
  cnt6: 'inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service : counter',
  cnta4: 'inet_proto . ipv4_addr . ipv4_addr : counter',
  cnta6: 'inet_proto . ipv6_addr . ipv6_addr : counter',
  cntl4: 'inet_proto . inet_service . ipv4_addr . inet_service : counter',
  cntl6: 'inet_proto . inet_service . ipv6_addr . inet_service : counter',
};

/** The dispatch maps every shard has, and the counter maps of shard 0. */
export const DISPATCH_MAPS: ReadonlyArray<MapElement['map']> = ['vip4', 'vip6', 'vipa4', 'vipa6', 'vipl4', 'vipl6'];
const COUNTER_MAPS: ReadonlyArray<MapElement['map']> = ['cnt4', 'cnt6', 'cnta4', 'cnta6', 'cntl4', 'cntl6'];

function block(head: string, lines: readonly string[], indent: string): string {
  return `${indent}${head} {\n${lines.map((l) => `${indent}\t${l}\n`).join('')}${indent}}\n`;
}

function mapBlock(map: MapElement['map'], elements: readonly string[]): string {
  const els = elements.length ? [`elements = {\n\t\t\t${elements.join(',\n\t\t\t')}\n\t\t}`] : [];
  return block(`map ${map}`, [`type ${MAP_TYPE[map]}`, ...els], '\t');
}

function hookChains(ctx: RenderContext, shard: number): string {
  // A vmap without a matching element falls through to the next rule: exact ports first, then
  // the address's every-port service (a VIP carries every port of its service).
  const dispatch = [
    'ip daddr . meta l4proto . th dport vmap @vip4', 'ip6 daddr . meta l4proto . th dport vmap @vip6',
    'ip daddr . meta l4proto vmap @vipa4', 'ip6 daddr . meta l4proto vmap @vipa6',
  ];
  // Then frontends on every local address: loopback only for the namespace's own traffic
  // (output); IPv6 loopback never (a DNATed flow from ::1 cannot leave, there is no route_localnet).
  const local = (loopback: boolean): string[] => [
    `meta nfproto ipv4 ${loopback ? '' : 'ip daddr != 127.0.0.0/8 '}fib daddr type local meta l4proto . th dport vmap @vipl4`,
    'meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local meta l4proto . th dport vmap @vipl6',
  ];
  let out = block('chain output', ['type nat hook output priority -100; policy accept;', ...dispatch, ...(ctx.everyLocal ? local(true) : [])], '\t')
    + block('chain prerouting', ['type nat hook prerouting priority -100; policy accept;', ...dispatch, ...(ctx.everyLocal ? local(false) : [])], '\t');
  if (shard === 0) {
    const count = (nf: string, ip: string, map: string): string =>
      `meta nfproto ${nf} meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ${ip} daddr . ct original proto-dst . ${ip} daddr . th dport map @${map}`;
    const countEvery = (nf: string, ip: string, map: string): string =>
      `meta nfproto ${nf} meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ${ip} daddr . ${ip} daddr map @${map}`;
    const countLocal = (nf: string, ip: string, map: string): string =>
      `meta nfproto ${nf} meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original proto-dst . ${ip} daddr . th dport map @${map}`;
    out += block('chain postrouting', [
      'type nat hook postrouting priority 100; policy accept;',
      count('ipv4', 'ip', 'cnt4'),
      count('ipv6', 'ip6', 'cnt6'),
      countEvery('ipv4', 'ip', 'cnta4'),
      countEvery('ipv6', 'ip6', 'cnta6'),
      ...(ctx.everyLocal ? [countLocal('ipv4', 'ip', 'cntl4'), countLocal('ipv6', 'ip6', 'cntl6')] : []),
      `meta mark & ${hex(ctx.mark)} == 0 return`,
      `meta mark set meta mark ^ ${hex(ctx.mark)}`,
      // Not `fully-random`: keeping the client's source port where it is free keeps one client
      // port = one tuple at the replica, whose TCP timestamps then only grow; a random port may
      // land on a tuple the replica still holds in TIME_WAIT from another flow, and the replica
      // drops that SYN (PAWS), a 1 s retransmit (measured: test/bench/ingress.ts).
      'masquerade',
    ], '\t');
  }
  return out;
}

/**
 * The whole-state script: every shard table replaced atomically (`add table; delete table;
 * table {...}`), and the tables of `staleShards` (shards a previous state used) deleted.
 */
export function fullScript(services: readonly ServiceObjects[], ctx: RenderContext, staleShards: readonly number[] = []): string {
  const sorted = [...services].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let out = '';
  for (let k = 0; k < ctx.shards; k++) {
    const t = shardTable(ctx.table, k);
    const mine = sorted.filter((s) => s.shard === k);
    out += `add table inet ${t}\ndelete table inet ${t}\ntable inet ${t} {\n`;
    const maps: Array<MapElement['map']> = k === 0 ? [...DISPATCH_MAPS, ...COUNTER_MAPS] : [...DISPATCH_MAPS];
    if (k === 0) for (const s of sorted) for (const c of s.counters) out += `\tcounter ${c.name} {}\n`;
    for (const m of maps) {
      const els = DISPATCH_MAPS.includes(m) ? mine.map((s) => s.vip) : sorted.flatMap((s) => s.counters.map((c) => c.element));
      out += mapBlock(m, els.filter((e) => e.map === m).map((e) => e.element));
    }
    for (const s of mine) {
      for (const set of s.sets) out += `\tset ${set.name} { ${set.decl} }\n`;
      for (const c of s.backendChains) out += block(`chain ${c.name}`, c.rules, '\t');
      if (s.map) out += `\tmap ${s.map.name} { ${s.map.decl} }\n`;
      out += block(`chain ${s.chain.name}`, s.chain.rules, '\t');
    }
    out += `${hookChains(ctx, k)}}\n`;
  }
  for (const k of staleShards) if (k >= ctx.shards) out += `add table inet ${shardTable(ctx.table, k)}\ndelete table inet ${shardTable(ctx.table, k)}\n`;
  return out;
}

/** Deletes every table a load balancer on `table` may own (absent ones included). */
export function cleanupScript(table: string): string {
  let out = '';
  for (let k = 0; k < MAX_SHARDS; k++) out += `add table inet ${shardTable(table, k)}\ndelete table inet ${shardTable(table, k)}\n`;
  return out;
}

/** The result of {@link planIncremental}: a script and the state it leaves when it succeeds. */
export interface IncrementalPlan {
  /** One `nft -f` transaction; empty when nothing changes in the kernel. */
  script: string;
  /** Services to record as applied. */
  upserted: ServiceObjects[];
  /** Services no longer applied (as they were). */
  removed: ServiceObjects[];
  /** New leftovers (empty when `collected`). */
  leftoversAdded: Leftover[];
  /** Leftover names in use again. */
  leftoversReused: string[];
  /** True when the script also deleted every leftover. */
  collected: boolean;
}

/**
 * The incremental script for a change: it names only the upserted and removed services.
 *
 * nft 1.0.6 fetches EVERY chain of the netns into its cache before any `add rule`,
 * `add element` or `delete ...` (relaxed in later nft releases): ~0.3 s with 100k chains. So
 * the script uses only commands that need no such cache: `add chain T C { rules }` (a chain
 * with its rules), `flush chain`, `add set`/`add map T M { ...; elements = {...} }` and
 * `add counter` (declarations; idempotent for equal content). Consequences:
 * - a slot map is never edited: new content gets a new name (content hash), the old map is
 *   left unreferenced;
 * - removed services and backends are flushed, not deleted (a flushed service chain behaves
 *   like no entry: the packet leaves it un-NATed); their map elements and counters stay;
 * - those leftovers are deleted in bulk (`delete ...`, one cache fetch) when `collect(n)` says
 *   so for `n` leftovers, or by the next full sync.
 */
export function planIncremental(
  prev: (key: string) => ServiceObjects | undefined,
  leftovers: ReadonlyMap<string, Leftover>,
  upsert: readonly ServiceObjects[],
  remove: readonly string[],
  ctx: RenderContext,
  collect: (leftovers: number) => boolean = () => false,
): IncrementalPlan {
  const lines: string[] = [];
  const flushes: string[] = [];
  const added = new Map<string, Leftover>();
  const reused = new Set<string>();
  const upserted: ServiceObjects[] = [];
  const removed: ServiceObjects[] = [];
  const t0 = shardTable(ctx.table, 0);
  const isLeftover = (name: string): boolean => leftovers.has(name) && !reused.has(name);
  const reuse = (name: string): void => {
    if (leftovers.has(name)) reused.add(name);
    added.delete(name);
  };
  const elementName = (e: MapElement): string => `${e.map}:${e.key}`;
  const addElement = (t: string, e: MapElement): string => `add map inet ${t} ${e.map} { type ${MAP_TYPE[e.map]}; elements = { ${e.element} }; }`;

  /** Flushes/retires what `p` has and `keep` (the same service, changed) does not. */
  const retire = (p: ServiceObjects, keep: ServiceObjects | undefined): void => {
    const t = shardTable(ctx.table, p.shard);
    const live = new Set<string>();
    if (keep) {
      for (const c of [keep.chain, ...keep.backendChains]) live.add(c.name);
      for (const s of keep.sets) live.add(s.name);
      if (keep.map) live.add(keep.map.name);
      for (const c of keep.counters) live.add(c.name);
    }
    for (const c of keep ? p.backendChains : [...p.backendChains, p.chain]) {
      if (live.has(c.name)) continue;
      flushes.push(`flush chain inet ${t} ${c.name}`);
      added.set(c.name, { kind: 'chain', shard: p.shard, name: c.name });
    }
    for (const s of p.sets) if (!live.has(s.name)) added.set(s.name, { kind: 'set', shard: p.shard, name: s.name });
    if (p.map && !live.has(p.map.name)) added.set(p.map.name, { kind: 'map', shard: p.shard, name: p.map.name });
    for (const c of p.counters) {
      if (live.has(c.name)) continue;
      added.set(c.name, { kind: 'counter', shard: 0, name: c.name });
      added.set(elementName(c.element), { kind: 'element', shard: 0, name: elementName(c.element), element: c.element });
    }
    if (!keep) added.set(elementName(p.vip), { kind: 'element', shard: p.shard, name: elementName(p.vip), element: p.vip });
  };

  const upsertKeys = new Set<string>();
  for (const n of upsert) {
    upsertKeys.add(n.key);
    const p = prev(n.key);
    upserted.push(n);
    if (p && p.signature === n.signature) continue;
    const t = shardTable(ctx.table, n.shard);
    const had = new Map((p?.backendChains ?? []).map((c) => [c.name, c.rules.join('\n')]));
    for (const s of n.sets) {
      lines.push(`add set inet ${t} ${s.name} { ${s.decl} }`);
      reuse(s.name);
    }
    for (const c of n.backendChains) {
      const before = had.get(c.name);
      reuse(c.name);
      if (before === c.rules.join('\n')) continue;
      if (before !== undefined) lines.push(`flush chain inet ${t} ${c.name}`);
      lines.push(block(`add chain inet ${t} ${c.name}`, c.rules, '').trimEnd());
    }
    if (n.map) {
      lines.push(`add map inet ${t} ${n.map.name} { ${n.map.decl} }`);
      reuse(n.map.name);
    }
    if (p || isLeftover(n.chain.name)) lines.push(`flush chain inet ${t} ${n.chain.name}`);
    reuse(n.chain.name);
    lines.push(block(`add chain inet ${t} ${n.chain.name}`, n.chain.rules, '').trimEnd());
    if (!p && !isLeftover(elementName(n.vip))) lines.push(addElement(t, n.vip));
    reuse(elementName(n.vip));
    const counted = new Set((p?.counters ?? []).map((c) => c.name));
    for (const c of n.counters) {
      if (counted.has(c.name)) continue;
      if (!isLeftover(c.name)) lines.push(`add counter inet ${t0} ${c.name}`);
      if (!isLeftover(elementName(c.element))) lines.push(addElement(t0, c.element));
      reuse(c.name);
      reuse(elementName(c.element));
    }
    if (p) retire(p, n);
  }
  for (const key of remove) {
    if (upsertKeys.has(key)) continue;
    const p = prev(key);
    if (!p) continue;
    removed.push(p);
    retire(p, undefined);
  }
  lines.push(...flushes);

  // How many leftovers there will be, counted from the change alone (O(change): the leftovers
  // can number tens of thousands); the list itself is only built to collect them.
  let gone = 0;
  for (const name of new Set([...reused, ...added.keys()])) if (leftovers.has(name)) gone++;
  const count = leftovers.size - gone + added.size;
  const collected = count > 0 && collect(count);
  if (collected) {
    const after = [...leftovers.values()].filter((o) => !reused.has(o.name) && !added.has(o.name)).concat([...added.values()]);
    lines.push(...collectScript(ctx, after));
  }
  return {
    script: lines.length ? `${lines.join('\n')}\n` : '',
    upserted,
    removed,
    leftoversAdded: collected ? [] : [...added.values()],
    leftoversReused: [...reused],
    collected,
  };
}

/** Deletes `leftovers`: map elements first (they reference chains and counters), then maps, chains, sets, counters. */
function collectScript(ctx: RenderContext, leftovers: readonly Leftover[]): string[] {
  const out: string[] = [];
  for (const kind of ['element', 'map', 'chain', 'set', 'counter'] as const) {
    for (const o of leftovers) {
      if (o.kind !== kind) continue;
      const t = shardTable(ctx.table, o.shard);
      if (o.element) out.push(`delete element inet ${t} ${o.element.map} { ${o.element.key} }`);
      else out.push(`delete ${o.kind} inet ${t} ${o.name}`);
    }
  }
  return out;
}
