/**
 * {@link NftLoadBalancer}: the `nftables` dataplane of {@link LoadBalancer}, for kernels
 * without ip_vs (kube-proxy's nftables mode), over an {@link Nft} of ONE network namespace.
 * Rules and names: render.ts; the measured costs: docs/bench-lb-nft.md.
 *
 * Transactions: `syncAll` replaces the owned tables in one `nft -f` (leftovers of any earlier
 * process go with them); `apply` sends one incremental script naming only the changed
 * services, and falls back to `syncAll` of the whole state when that script fails (a table
 * deleted under us, a state that drifted). An `apply` before the first `syncAll` is a `syncAll`
 * of what it names (nothing else is known yet). Calls are queued: one transaction at a time.
 *
 * State: `services` (what is applied, with its rendered objects) and `leftovers` (flushed or
 * unreferenced objects still in the tables, deleted in bulk once they are many: see
 * planIncremental). Both change only after the kernel accepted the script.
 *
 * UDP: when a backend leaves a UDP service (or the service goes), its conntrack flows to that
 * service are deleted, or a client that keeps sending keeps reaching the old backend
 * (moby#36878). TCP flows are left to finish; so are all flows of a draining (weight 0) backend.
 */
import { invalid, isNotFound, messageOf } from '../../src/errors.js';
import type { Conntrack } from '../../src/kernel/conntrack.js';
import type { Nft, NftJson } from '../../src/kernel/nft.js';
import { nftDrift } from './verify.js';
import { isEveryLocal, vsKey, type LbBackendStats, type LbKind, type LoadBalancer, type VirtualService } from '../types.js';
import {
  DEFAULT_MASQ_MARK, DEFAULT_SHARD_OBJECTS, MAX_SHARDS, checkVirtualService, cleanupScript, fullScript, objectsOf,
  planIncremental, serviceObjects, shardTable, shardsFor, type Leftover, type RenderContext, type ServiceObjects,
} from './render.js';

/** Options of {@link NftLoadBalancer}. */
export interface NftLoadBalancerOptions {
  /** nftables of the target netns (`new ExecNft({ netns })` for a sandbox). */
  nft: Nft;
  /** Owned table (family inet), e.g. `sh_lb`; shards past the first are `<table>_<k>`. */
  table: string;
  /** conntrack of the same netns, for deleting UDP flows of removed backends. */
  conntrack?: Conntrack;
  /** Where non-fatal trouble is reported (a fallback to a full sync, a failed conntrack delete). */
  log?: (message: string) => void;
  /** Packet mark bit for masquerading; default {@link DEFAULT_MASQ_MARK}. */
  mark?: number;
  /**
   * Objects (see `objectsOf`) per table before services spread over more tables (shards);
   * default {@link DEFAULT_SHARD_OBJECTS}. Each table costs every new flow two rule lookups.
   */
  shardObjects?: number;
  /**
   * Leftover objects tolerated before an `apply` deletes them all (an O(all) transaction: nft
   * 1.0.6 loads its whole cache for `delete`), given the live objects; default max(1024, live / 2).
   */
  collectAt?: (live: number) => number;
  /**
   * Accept frontends on every local address (`0.0.0.0:P`, `[::]:P`: a node's published ports,
   * matched with `fib daddr type local`). Off for VIP sandboxes: their new flows skip that lookup.
   */
  everyLocal?: boolean;
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,200}$/;

/** The nftables load balancer of one network namespace. */
export class NftLoadBalancer implements LoadBalancer {
  readonly kind: LbKind = 'nftables';
  private readonly nft: Nft;
  private readonly table: string;
  private readonly conntrack: Conntrack | undefined;
  private readonly log: (message: string) => void;
  private readonly mark: number;
  private readonly shardObjects: number;
  private readonly collectAt: (live: number) => number;
  private readonly everyLocal: boolean;
  private services = new Map<string, ServiceObjects>();
  private leftovers = new Map<string, Leftover>();
  private liveObjects = 0;
  private shards = 1;
  /** Shard tables that may exist from before (unknown before the first sync: all of them). */
  private maybeShards = MAX_SHARDS;
  private synced = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: NftLoadBalancerOptions) {
    if (!TABLE_NAME.test(opts.table)) throw invalid(`'${opts.table}' is not a usable nft table name (a letter, then letters, digits, '_', '-')`);
    this.nft = opts.nft;
    this.table = opts.table;
    this.conntrack = opts.conntrack;
    this.log = opts.log ?? (() => undefined);
    this.mark = opts.mark ?? DEFAULT_MASQ_MARK;
    this.shardObjects = opts.shardObjects ?? DEFAULT_SHARD_OBJECTS;
    this.collectAt = opts.collectAt ?? ((live) => Math.max(1024, Math.floor(live / 2)));
    this.everyLocal = opts.everyLocal ?? false;
  }

  syncAll(services: readonly VirtualService[]): Promise<void> {
    return this.serial(() => this.replaceAll(services));
  }

  apply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    return this.serial(() => this.applyChange(upsert, remove));
  }

  applied(): ReadonlyMap<string, VirtualService> {
    return new Map([...this.services].map(([k, s]) => [k, s.vs]));
  }

  /**
   * Flows NATed to each backend since it was programmed: the named counters of the first
   * table, counted once per new flow in `postrouting` (bytes are the first packets' only, so
   * they are not reported; nor are open connections, which only conntrack knows). Reads the
   * counters alone (`list counters`) where the nft adapter can.
   */
  async stats(): Promise<LbBackendStats[]> {
    let listing: NftJson;
    const t0 = shardTable(this.table, 0);
    try {
      listing = this.nft.listCounters ? await this.nft.listCounters(t0, 'inet') : await this.nft.list(t0, 'inet');
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const counted = new Map<string, number>();
    for (const o of listing.nftables) {
      const c = o['counter'] as { name?: string; packets?: number } | undefined;
      if (c?.name) counted.set(c.name, c.packets ?? 0);
    }
    const out: LbBackendStats[] = [];
    for (const s of this.services.values()) {
      for (const c of s.counters) {
        const n = counted.get(c.name);
        out.push({
          vs: s.key, service: s.vs.service, address: c.backend.address, port: c.backend.port,
          ...(n === undefined ? {} : { connectionsTotal: n }),
        });
      }
    }
    return out;
  }

  /**
   * Drift repair: lists every shard table and, when anything applied is missing or wrong
   * (verify.ts), replaces the tables with the applied state in one transaction. No drift: no
   * kernel change (affinity sets and counters are kept). Resolves with the problems found.
   */
  resync(): Promise<number> {
    return this.serial(async () => {
      if (!this.synced) return 0;
      const listings = new Map<number, NftJson | undefined>();
      for (let k = 0; k < this.shards; k++) {
        try {
          listings.set(k, await this.nft.list(shardTable(this.table, k), 'inet'));
        } catch (e) {
          if (!isNotFound(e)) throw e;
          listings.set(k, undefined);
        }
      }
      const problems = nftDrift(this.services.values(), this.context(), listings);
      if (problems.length === 0) return 0;
      this.log(`nft load balancer ${this.table}: drift (${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; +${problems.length - 3} more` : ''}); replacing the tables`);
      await this.replaceAll([...this.services.values()].map((s) => s.vs));
      return problems.length;
    });
  }

  /** Deletes every owned table (absent ones are fine) and forgets the state. */
  cleanup(): Promise<void> {
    return this.serial(async () => {
      await this.nft.apply(cleanupScript(this.table));
      this.reset();
      this.shards = 1;
      this.maybeShards = 1;
    });
  }

  /** Nothing to release: the tables stay as they are. */
  async close(): Promise<void> {
    await this.queue;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private reset(): void {
    this.services = new Map();
    this.leftovers = new Map();
    this.liveObjects = 0;
    this.synced = false;
  }

  private context(shards = this.shards): RenderContext {
    return { table: this.table, shards, mark: this.mark, ...(this.everyLocal ? { everyLocal: true } : {}) };
  }

  private check(vs: VirtualService): void {
    checkVirtualService(vs);
    if (!this.everyLocal && isEveryLocal(vs.address)) {
      throw invalid(`virtual service ${vsKey(vs)}: this nftables load balancer (${this.table}) takes no every-local-address frontend`);
    }
  }

  private async replaceAll(list: readonly VirtualService[]): Promise<void> {
    const want = new Map<string, VirtualService>();
    for (const vs of list) {
      this.check(vs);
      want.set(vsKey(vs), vs);
    }
    let objects = 0;
    for (const vs of want.values()) objects += objectsOf(vs);
    const shards = shardsFor(objects, this.shardObjects);
    const ctx = this.context(shards);
    const rendered = [...want.values()].map((vs) => serviceObjects(vs, ctx));
    const stale: number[] = [];
    for (let k = shards; k < Math.max(this.maybeShards, this.shards); k++) stale.push(k);
    await this.nft.apply(fullScript(rendered, ctx, stale));
    const before = this.services;
    this.reset();
    for (const s of rendered) this.services.set(s.key, s);
    this.liveObjects = objects;
    this.shards = shards;
    this.maybeShards = shards;
    this.synced = true;
    await this.forgetUdpFlows(before, (key) => this.services.get(key));
  }

  private async applyChange(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    const changed = new Map<string, VirtualService>();
    for (const vs of upsert) {
      this.check(vs);
      changed.set(vsKey(vs), vs);
    }
    const merged = (): VirtualService[] => {
      const m = new Map([...this.services].map(([k, s]) => [k, s.vs]));
      for (const k of remove) m.delete(k);
      for (const [k, vs] of changed) m.set(k, vs);
      return [...m.values()];
    };
    if (!this.synced) return this.replaceAll(merged());
    let objects = this.liveObjects;
    for (const k of new Set([...remove, ...changed.keys()])) {
      const s = this.services.get(k);
      if (s) objects -= objectsOf(s.vs);
    }
    for (const vs of changed.values()) objects += objectsOf(vs);
    // More services than the shards were sized for: spread them (a full sync, rare by doubling).
    if (shardsFor(objects, this.shardObjects) > this.shards) return this.replaceAll(merged());

    const ctx = this.context();
    const plan = planIncremental(
      (k) => this.services.get(k), this.leftovers, [...changed.values()].map((vs) => serviceObjects(vs, ctx)), remove, ctx,
      (n) => n > this.collectAt(objects),
    );
    if (plan.script !== '') {
      try {
        await this.nft.apply(plan.script);
      } catch (e) {
        this.log(`nft load balancer ${this.table}: incremental update failed (${messageOf(e)}); replacing the tables`);
        return this.replaceAll(merged());
      }
    }
    const before = new Map<string, ServiceObjects>();
    for (const s of [...plan.removed, ...plan.upserted]) {
      const old = this.services.get(s.key);
      if (old) before.set(s.key, old);
    }
    for (const s of plan.removed) this.services.delete(s.key);
    for (const s of plan.upserted) this.services.set(s.key, s);
    if (plan.collected) this.leftovers = new Map();
    else {
      for (const n of plan.leftoversReused) this.leftovers.delete(n);
      for (const o of plan.leftoversAdded) this.leftovers.set(o.name, o);
    }
    this.liveObjects = objects;
    await this.forgetUdpFlows(before, (key) => this.services.get(key));
  }

  /** Deletes the conntrack flows of UDP backends that `before` had and `now` lacks. */
  private async forgetUdpFlows(before: ReadonlyMap<string, ServiceObjects>, now: (key: string) => ServiceObjects | undefined): Promise<void> {
    if (!this.conntrack) return;
    for (const [key, old] of before) {
      if (old.vs.protocol !== 'udp') continue;
      const keep = new Set((now(key)?.vs.backends ?? []).map((b) => `${b.address}:${b.port}`));
      for (const b of old.vs.backends) {
        if (keep.has(`${b.address}:${b.port}`)) continue;
        try {
          // An every-port service (port 0) matches its flows on any destination port.
          // One on every local address matches them on any destination address.
          await this.conntrack.deleteFlows({
            protocol: 'udp', ...(isEveryLocal(old.vs.address) ? {} : { origDst: old.vs.address }), ...(old.vs.port ? { origDstPort: old.vs.port } : {}), replySrc: b.address,
          });
        } catch (e) {
          this.log(`nft load balancer ${this.table}: deleting UDP flows of ${key} -> ${b.address}: ${messageOf(e)}`);
        }
      }
    }
  }
}
