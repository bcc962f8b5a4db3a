/**
 * VIP load balancing on one node, Docker-before-19.03 style: every task sandbox holds its own
 * dataplane (an nftables table or IPVS in the sandbox's netns) with the VIPs of the networks
 * the task is attached to. A connection to a VIP is balanced in the caller's own netns, so:
 * backends on this node and on others are reached the same way (straight over the network),
 * the backend sees the caller's own address (no SNAT, unlike Docker 19.03+, moby#39665), and
 * nothing hairpins through a shared LB namespace.
 *
 * Cost of one change (kube-proxy's change tracker): index changes mark services dirty, and
 * only when what the balancer sees of them changed (a task's status message does not; its
 * health, state, node or addresses do). A sync recomputes the dirty services only, compares
 * their virtual services with the last computed ones, and hands each local sandbox on their
 * networks one `apply` naming exactly what differs: O(change), never O(all services).
 *
 * Desired state is validated before any dataplane sees it: a virtual service that cannot be
 * programmed is dropped (counted, logged once), never thrown inside a transaction where it would
 * block every other service. One sandbox's failure does not stop the others; it is retried, with
 * a full sync of that sandbox.
 *
 * Drift: {@link resync} (the agent's periodic full resync) recomputes every service and asks
 * every sandbox's dataplane to re-read the kernel and repair what differs.
 *
 * Only the agent calls this: `ensureSandbox` before a task's process starts (its VIPs work
 * from its first instruction), `forgetSandbox` when the sandbox is deleted, `changed()` from
 * index changes, `resync()` periodically. Only `sync`/`ensureSandbox`/`resync` (serialized)
 * write the desired-state caches.
 */
import type { Registry } from 'prom-client';
import { canonical, vipServicesFor } from '../../ingress/desired.js';
import { createLbMetrics, noopLbMetrics, type LbMetrics } from '../../ingress/metrics.js';
import { checkVirtualService } from '../../ingress/nft/render.js';
import { Proxier } from '../../ingress/proxier.js';
import { BackendTotals, mapLimit, StatsCache, type StatsCacheOptions } from '../../ingress/stats-cache.js';
import { vsKey, type LbKind, type LoadBalancer, type VirtualService } from '../../ingress/types.js';
import { messageOf } from '../../src/errors.js';
import { isDraining, nodeServes, servesTraffic } from '../../src/model/serving.js';
import type { Node, Service, Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import { AgentCounters } from './counters.js';
import type { IndexChange, LocalIndex } from './local-index.js';

export interface NodeLbOptions {
  kind: LbKind;
  /** A dataplane acting inside the sandbox netns `netns`. */
  make(netns: string): LoadBalancer;
  metricsRegistry?: Registry;
  /** How the per-backend counters are read in the background (ingress/stats-cache.ts). */
  stats?: StatsCacheOptions;
  counters?: AgentCounters;
  /** Desired state of `service` (its name) was dropped as invalid, with the reason (once per reason). */
  onInvalid?: (service: string, reason: string) => void;
  log?: (msg: string) => void;
}

/** Sandboxes whose counters are read at once by a background read. */
const STATS_CONCURRENCY = 4;
/** Sandboxes re-read at once by a full resync. */
const RESYNC_CONCURRENCY = 4;

interface SandboxLb { netns: string; networks: string[]; proxier: Proxier; broken: boolean }

/** What the balancer sees of a task: equal views need no reprogramming. */
export function lbView(t: Task | undefined): string {
  if (!t) return '';
  const weight = servesTraffic(t) ? 1 : isDraining(t) && t.status.healthy !== false ? 0 : -1;
  return JSON.stringify([t.serviceId, t.nodeId, weight, t.addresses]);
}

/**
 * Valid virtual services of `list`; the others are reported to `drop` (with the reason) and
 * left out, so no transaction ever carries a service the kernel would refuse.
 */
export function validServices(list: VirtualService[], drop: (vs: VirtualService, reason: string) => void): VirtualService[] {
  const out: VirtualService[] = [];
  for (const vs of list) {
    try {
      checkVirtualService(vs);
      out.push(vs);
    } catch (e) {
      drop(vs, messageOf(e));
    }
  }
  return out;
}

export class NodeLb {
  private readonly sandboxes = new Map<string, SandboxLb>();
  private readonly runner: BoundedFrequencyRunner;
  private readonly metrics: LbMetrics;
  readonly counters: AgentCounters;
  /** Per service, per network: its virtual services as last computed (only the serialized syncs write it). */
  private readonly desired = new Map<string, Map<string, VirtualService[]>>();
  /** Per network: vsKey -> virtual service, the union of {@link desired} on it. */
  private readonly byNetwork = new Map<string, Map<string, VirtualService>>();
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private chain: Promise<unknown> = Promise.resolve();
  private pendingSince: number | undefined;
  private pendingChanges = 0;
  /** Invalid virtual services already logged (logged once per reason). */
  private readonly reported = new Set<string>();
  syncFailures = 0;
  /** Dataplane transactions handed out (apply or syncAll), for tests and benchmarks. */
  applies = 0;
  /** Per-backend counters of every sandbox's dataplane, summed (only the cache's reads write it). */
  readonly totals = new BackendTotals();
  /** Reads {@link totals} from the kernel in the background; scrapes only copy them. */
  readonly statsCache: StatsCache<BackendTotals>;

  constructor(private readonly index: LocalIndex, private readonly opts: NodeLbOptions) {
    this.counters = opts.counters ?? new AgentCounters();
    this.statsCache = new StatsCache(() => this.readStats(), this.totals, {
      ...opts.stats,
      onError: (e) => opts.log?.(`reading load-balancer counters failed (will retry): ${messageOf(e)}`),
    });
    this.metrics = opts.metricsRegistry
      ? createLbMetrics(opts.metricsRegistry, opts.kind, {
        pending: () => this.pendingChanges,
        backends: () => this.summary(),
        rows: () => this.statsCache.value.rows(),
        cache: this.statsCache,
      })
      : noopLbMetrics;
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-lb', minIntervalMs: 10, maxIntervalMs: 30_000, burst: 4, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; this.counters.failed('lb'); this.metrics.syncFailed(); opts.log?.(`load-balancer sync failed (will retry): ${messageOf(e)}`); },
      onSuccess: (ms) => this.metrics.syncDone(ms / 1000),
    });
  }

  get kind(): LbKind { return this.opts.kind; }

  start(): void {
    this.runner.start();
    this.statsCache.start();
  }

  /** Resolves once no sync is running or pending. */
  idle(): Promise<void> { return this.runner.idle(); }

  /**
   * Cluster state changed: mark what it touches and program the difference soon. Without the
   * changes themselves (a count), everything is recomputed.
   */
  changed(changes: readonly IndexChange[] | number = 1): void {
    if (typeof changes === 'number') {
      this.allDirty = true;
      this.note(changes);
      return;
    }
    const before = this.dirty.size;
    let any = this.allDirty;
    for (const c of changes) {
      if (c.kind === 'services' && c.id) { this.dirty.add(c.id); any = true; }
      else if (c.kind === 'tasks') {
        const b = c.before as Task | undefined;
        const a = c.after as Task | undefined;
        if (lbView(b) === lbView(a)) continue; // status-only churn: nothing to program
        if (b) this.dirty.add(b.serviceId);
        if (a) this.dirty.add(a.serviceId);
        any = true;
      } else if (c.kind === 'nodes' && c.id) {
        if (nodeServes(c.before as Node | undefined) === nodeServes(c.after as Node | undefined)) continue;
        for (const t of this.index.tasksOnNode(c.id)) this.dirty.add(t.serviceId);
        any = true;
      }
    }
    if (any) this.note(Math.max(1, this.dirty.size - before));
  }

  private note(count: number): void {
    this.pendingSince ??= Date.now();
    this.pendingChanges += count;
    this.runner.run();
  }

  /** The sandbox of `taskId` on `networks` gets its dataplane, programmed now (idempotent). */
  async ensureSandbox(taskId: string, netns: string, networks: string[]): Promise<void> {
    await this.serial(async () => {
      let sb = this.sandboxes.get(taskId);
      if (sb && !sb.broken && sb.netns === netns && sb.networks.join() === networks.join()) return;
      // Bring the cache (and the other sandboxes) up to date first: the new one starts current.
      await this.applyDirty().catch((e: unknown) => {
        this.syncFailures++;
        this.counters.failed('lb');
        this.opts.log?.(`load-balancer sync failed (will retry): ${messageOf(e)}`);
        this.runner.run();
      });
      if (sb) await sb.proxier.close().catch(() => undefined);
      sb = { netns, networks, proxier: new Proxier(this.opts.make(netns)), broken: false };
      this.sandboxes.set(taskId, sb);
      this.applies++;
      try {
        await sb.proxier.sync(this.fullFor(networks), true);
      } catch (e) {
        this.sandboxes.delete(taskId);
        throw e;
      }
    });
  }

  /** The sandbox is gone (its netns took the dataplane's state with it). */
  async forgetSandbox(taskId: string): Promise<void> {
    await this.serial(async () => {
      const sb = this.sandboxes.get(taskId);
      if (!sb) return;
      this.sandboxes.delete(taskId);
      await sb.proxier.close().catch(() => undefined);
    });
  }

  has(taskId: string): boolean { return this.sandboxes.has(taskId); }

  /** What one sandbox's dataplane holds (tests, debugging). */
  appliedIn(taskId: string): ReadonlyMap<string, VirtualService> | undefined {
    return this.sandboxes.get(taskId)?.proxier.lb.applied();
  }

  async stop(): Promise<void> {
    await this.statsCache.stop();
    await this.runner.stop();
    await this.chain;
    for (const sb of this.sandboxes.values()) await sb.proxier.close().catch(() => undefined);
    this.sandboxes.clear();
  }

  /**
   * Periodic full resync: recompute every service, then let each sandbox's dataplane re-read
   * the kernel and repair drift (counted as repairs of kind `lb-<dataplane>`). One sandbox's
   * failure does not stop the others; the first failure is rethrown after all were tried.
   */
  async resync(): Promise<number> {
    this.allDirty = true;
    await this.sync();
    return this.serial(async () => {
      let repaired = 0;
      const failures: unknown[] = [];
      // A few sandboxes at a time: each re-read is a kernel dump (an nft process, a JSON parse);
      // a hundred at once would swamp the node and stall the agent's event loop (and /metrics).
      await mapLimit([...this.sandboxes.values()], RESYNC_CONCURRENCY, async (sb) => {
        try {
          const n = await sb.proxier.resync();
          repaired += n;
        } catch (e) {
          sb.broken = true;
          failures.push(e);
        }
      });
      this.counters.repaired(`lb-${this.opts.kind}`, repaired);
      if (failures.length) throw failures[0];
      return repaired;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Every desired virtual service on `networks` (a new sandbox, a full sync). */
  private fullFor(networks: readonly string[]): VirtualService[] {
    const out: VirtualService[] = [];
    for (const n of networks) for (const vs of this.byNetwork.get(n)?.values() ?? []) out.push(vs);
    return out;
  }

  /** The virtual services of `svc` per network it is on (validated). */
  private compute(svc: Service): Map<string, VirtualService[]> {
    const byService = new Map([[svc.id, this.index.tasksOf(svc.id)]]);
    const nodes = this.index.nodeMap();
    const out = new Map<string, VirtualService[]>();
    for (const { network } of svc.spec.networks) {
      const list = validServices(vipServicesFor([network], [svc], byService, nodes), (vs, reason) => {
        this.counters.dropped('lb');
        const k = `${vsKey(vs)}|${reason}`;
        if (this.reported.has(k)) return;
        this.reported.add(k);
        this.opts.log?.(`load balancing: virtual service ${vsKey(vs)} of ${vs.service} left out: ${reason}`);
        this.opts.onInvalid?.(vs.service, `VIP ${vsKey(vs)} not balanced: ${reason}`);
      });
      if (list.length) out.set(network, list);
    }
    return out;
  }

  /**
   * Recomputes the dirty services; returns, per network, what to upsert and remove there.
   * Writes the caches (callers hold the serial lock).
   */
  private recompute(): Map<string, { upsert: VirtualService[]; remove: string[] }> {
    const ids = this.allDirty ? new Set([...this.desired.keys(), ...this.index.services().map((s) => s.id)]) : new Set(this.dirty);
    this.allDirty = false;
    this.dirty.clear();
    const perNet = new Map<string, { upsert: VirtualService[]; remove: string[] }>();
    const at = (n: string): { upsert: VirtualService[]; remove: string[] } => {
      let e = perNet.get(n);
      if (!e) perNet.set(n, (e = { upsert: [], remove: [] }));
      return e;
    };
    for (const id of ids) {
      const svc = this.index.service(id);
      const next = svc ? this.compute(svc) : new Map<string, VirtualService[]>();
      const prev = this.desired.get(id) ?? new Map<string, VirtualService[]>();
      for (const n of new Set([...prev.keys(), ...next.keys()])) {
        const had = new Map((prev.get(n) ?? []).map((v) => [vsKey(v), v]));
        const want = new Map((next.get(n) ?? []).map((v) => [vsKey(v), v]));
        const net = this.byNetwork.get(n) ?? new Map<string, VirtualService>();
        for (const [k, v] of want) {
          const old = had.get(k);
          if (old && canonical(old) === canonical(v)) continue;
          at(n).upsert.push(v);
          net.set(k, v);
        }
        for (const k of had.keys()) {
          if (want.has(k)) continue;
          at(n).remove.push(k);
          net.delete(k);
        }
        if (net.size) this.byNetwork.set(n, net);
        else this.byNetwork.delete(n);
      }
      if (next.size) this.desired.set(id, next);
      else this.desired.delete(id);
    }
    return perNet;
  }

  private async sync(): Promise<void> {
    if (!this.index.synced) return; // nothing is programmed before the first full list
    const since = this.pendingSince;
    const seen = this.pendingChanges;
    await this.serial(() => this.applyDirty());
    this.pendingChanges = Math.max(0, this.pendingChanges - seen);
    if (this.pendingChanges === 0) this.pendingSince = undefined;
    if (since !== undefined && seen > 0) this.metrics.programmed((Date.now() - since) / 1000);
  }

  /** Recomputes the dirty services and programs every sandbox on their networks (holding the serial lock). */
  private async applyDirty(): Promise<void> {
    const perNet = this.recompute();
    const failures: unknown[] = [];
    await Promise.all([...this.sandboxes.values()].map(async (sb) => {
      const upsert: VirtualService[] = [];
      const remove: string[] = [];
      for (const n of sb.networks) {
        const c = perNet.get(n);
        if (!c) continue;
        upsert.push(...c.upsert);
        remove.push(...c.remove);
      }
      if (!sb.broken && upsert.length === 0 && remove.length === 0) return;
      try {
        this.applies++;
        if (sb.broken) await sb.proxier.sync(this.fullFor(sb.networks), true);
        else await sb.proxier.change(upsert, remove, () => this.fullFor(sb.networks));
        sb.broken = false;
      } catch (e) {
        sb.broken = true; // retried with a full sync of this sandbox
        failures.push(e);
      }
    }));
    if (failures.length) throw failures[0];
  }

  private summary(): Array<{ service: string; serving: number; total: number }> {
    const out: Array<{ service: string; serving: number; total: number }> = [];
    for (const nets of this.desired.values()) {
      const first = nets.values().next().value as VirtualService[] | undefined;
      const vs = first?.[0];
      if (vs) out.push({ service: vs.service, serving: vs.backends.filter((b) => b.weight > 0).length, total: vs.backends.length });
    }
    return out;
  }

  /**
   * One background read of every sandbox's counters, a few sandboxes at a time (each is a
   * kernel dump in its netns); a sandbox that cannot be read this time is left out (its
   * counters keep what they had).
   */
  private async readStats(): Promise<BackendTotals> {
    const list = [...this.sandboxes.values()];
    const readings = await mapLimit(list, STATS_CONCURRENCY, async (sb) => ({ source: sb.netns, stats: await sb.proxier.lb.stats().catch(() => undefined) }));
    this.totals.update(readings);
    return this.totals;
  }
}

/**
 * The node's connection summary for the manager's /ui page (mesh/manager/live-stats.ts rows):
 * VIP flows of every task sandbox, and published-port flows of both ingress hops,
 * as last read in the background (reading it keeps those reads going while someone watches).
 */
export function lbStatsRows(lb: NodeLb | undefined, ingress: { statsCache: StatsCache<BackendTotals> } | undefined): Array<[string, string, number | null, number, 'vip' | 'ingress']> {
  const out: Array<[string, string, number | null, number, 'vip' | 'ingress']> = [];
  for (const r of lb?.statsCache.value.rows() ?? []) out.push([r.service, r.backend, r.connections ?? null, r.connectionsTotal, 'vip']);
  // Both hops: the node's own (local and host-mode ports go straight to replicas) and the ingress sandbox's.
  for (const r of ingress?.statsCache.value.rows() ?? []) out.push([r.service, r.backend, r.connections ?? null, r.connectionsTotal, 'ingress']);
  return out.slice(0, 5000);
}
