/**
 * Drift detection for the nftables dataplane (pure): compares what the load balancer applied
 * (its rendered {@link ServiceObjects}) with `nft -j list table` of each shard table, and
 * names what is missing or wrong. Used by the periodic resync: a non-empty answer makes the
 * load balancer replace its tables (one transaction), an empty one touches nothing, so a
 * resync with no drift keeps affinity records and counters.
 *
 * Checked: each shard table exists; its hook chains exist and hold rules; every service chain,
 * backend chain, slot map, affinity set and counter exists, each chain with the number of rules
 * it was given; the dispatch maps (`vip4`/`vip6`, every-port `vipa4`/`vipa6`, every-local `vipl4`/`vipl6`) hold at least the applied services' elements (flushed
 * leftovers may add more). Rule contents are not compared: names are content hashes, so a
 * changed object has another name, and rule counts catch a flushed or edited chain.
 */
import type { NftJson } from '../../src/kernel/nft.js';
import { DISPATCH_MAPS, shardTable, type RenderContext, type ServiceObjects } from './render.js';

interface Listed {
  chains: Map<string, number>;
  maps: Map<string, number>;
  sets: Set<string>;
  counters: Set<string>;
}

function index(listing: NftJson): Listed {
  const out: Listed = { chains: new Map(), maps: new Map(), sets: new Set(), counters: new Set() };
  for (const o of listing.nftables) {
    const chain = o['chain'] as { name?: string } | undefined;
    if (chain?.name !== undefined && !out.chains.has(chain.name)) out.chains.set(chain.name, 0);
    const rule = o['rule'] as { chain?: string } | undefined;
    if (rule?.chain !== undefined) out.chains.set(rule.chain, (out.chains.get(rule.chain) ?? 0) + 1);
    const map = o['map'] as { name?: string; elem?: unknown[] } | undefined;
    if (map?.name !== undefined) out.maps.set(map.name, map.elem?.length ?? 0);
    const set = o['set'] as { name?: string } | undefined;
    if (set?.name !== undefined) out.sets.add(set.name);
    const counter = o['counter'] as { name?: string } | undefined;
    if (counter?.name !== undefined) out.counters.add(counter.name);
  }
  return out;
}

/**
 * What differs between `services` (as applied in `ctx`) and the kernel's `listings` (shard ->
 * listing; undefined = the table does not exist). Empty = no drift.
 */
export function nftDrift(services: Iterable<ServiceObjects>, ctx: RenderContext, listings: ReadonlyMap<number, NftJson | undefined>): string[] {
  const problems: string[] = [];
  const byShard = new Map<number, ServiceObjects[]>();
  for (const s of services) byShard.set(s.shard, [...(byShard.get(s.shard) ?? []), s]);
  const seen = new Map<number, Listed>();
  for (let k = 0; k < ctx.shards; k++) {
    const t = shardTable(ctx.table, k);
    const listing = listings.get(k);
    if (!listing) {
      problems.push(`table ${t} is missing`);
      continue;
    }
    const l = index(listing);
    seen.set(k, l);
    for (const hook of k === 0 ? ['output', 'prerouting', 'postrouting'] : ['output', 'prerouting']) {
      if (!(l.chains.get(hook) ?? 0)) problems.push(`${t}: hook chain ${hook} is missing or empty`);
    }
    const vips: Record<string, number> = Object.fromEntries(DISPATCH_MAPS.map((m) => [m, 0]));
    for (const s of byShard.get(k) ?? []) {
      for (const c of [s.chain, ...s.backendChains]) {
        const have = l.chains.get(c.name);
        if (have === undefined) problems.push(`${t}: chain ${c.name} (${s.key}) is missing`);
        else if (have !== c.rules.length) problems.push(`${t}: chain ${c.name} (${s.key}) has ${have} rules, not ${c.rules.length}`);
      }
      if (s.map && !l.maps.has(s.map.name)) problems.push(`${t}: map ${s.map.name} (${s.key}) is missing`);
      for (const set of s.sets) if (!l.sets.has(set.name)) problems.push(`${t}: set ${set.name} (${s.key}) is missing`);
      vips[s.vip.map] = (vips[s.vip.map] ?? 0) + 1;
    }
    for (const m of DISPATCH_MAPS) {
      const have = l.maps.get(m);
      if (have === undefined) problems.push(`${t}: map ${m} is missing`);
      else if (have < (vips[m] ?? 0)) problems.push(`${t}: map ${m} has ${have} elements, fewer than the ${vips[m] ?? 0} services`);
    }
  }
  const first = seen.get(0);
  if (first) {
    for (const s of byShard.values()) {
      for (const svc of s) for (const c of svc.counters) if (!first.counters.has(c.name)) problems.push(`counter ${c.name} (${svc.key}) is missing`);
    }
  }
  return problems;
}
