/**
 * The routing mesh on one node: published ports (ingress/published.ts says what goes where).
 *
 * - The node's own namespace holds the `host` hop: an nftables dataplane whose frontends are
 *   `<every local address>:P` (127.0.0.1 from the node too: route_localnet and its guard,
 *   ingress/localnet.ts); `cluster` ports go to the ingress sandbox, `local` and host-mode ports
 *   straight to this node's replicas.
 * - The ingress sandbox (`<nsPrefix>ingress-sbox`, an endpoint on the cluster's ingress overlay,
 *   default route via the node) holds the `sandbox` hop in the node's VIP dataplane (IPVS or
 *   nftables): every serving replica on any node, masqueraded, over VXLAN.
 *
 * Nothing is removed when the agent stops: the sandbox, its rules and the host table stay, so
 * established connections survive an agent restart (the restarted agent re-syncs the same
 * state); removing or unpublishing a service removes its frontends on the next sync.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { Proxier } from '../../ingress/proxier.js';
import { canonical } from '../../ingress/desired.js';
import type { LocalnetGuard } from '../../ingress/localnet.js';
import { registerStatsCacheMetrics } from '../../ingress/metrics.js';
import { publishedServices, type PublishedInput, type PublishedState } from '../../ingress/published.js';
import { BackendTotals, StatsCache, type StatsCacheOptions, type StatsReading } from '../../ingress/stats-cache.js';
import { vsKey, type LoadBalancer, type VirtualService } from '../../ingress/types.js';
import { messageOf } from '../../src/errors.js';
import { netnsSysctl } from '../../src/kernel/index.js';
import type { Network, Service, Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import { AgentCounters } from './counters.js';
import { lbView, validServices } from './lb.js';
import type { IndexChange, LocalIndex } from './local-index.js';
import type { Sandboxes } from './sandboxes.js';

/** The ingress sandbox's id among the agent's sandboxes (its netns is `<nsPrefix>ingress-sbox`). */
export const INGRESS_SANDBOX_ID = 'ingress-sbox';

/**
 * sysctls of the ingress sandbox: it forwards (it balances flows on to replicas), and replies to
 * a masqueraded flow leave by the interface they came in on: no redirects.
 */
export const INGRESS_SANDBOX_SYSCTLS: Readonly<Record<string, number>> = {
  'net.ipv4.ip_forward': 1,
  'net.ipv4.conf.all.send_redirects': 0,
  'net.ipv4.conf.default.send_redirects': 0,
};

export interface NodeIngressOptions {
  /** The node's dataplane of the host hop (its own namespace). */
  host: LoadBalancer;
  /** A dataplane acting in the ingress sandbox's netns (absent: no sandbox, tasks share the node's namespace). */
  make?: (netns: string) => LoadBalancer;
  /** Tasks share the agent's namespace (no isolation): the host hop reaches replicas at their node's address. */
  shared?: boolean;
  metricsRegistry?: Registry;
  /** How the per-backend counters are read in the background (ingress/stats-cache.ts). */
  stats?: StatsCacheOptions;
  /** route_localnet and its guard, put in place before the host hop is programmed (published ports on 127.0.0.1). */
  localnet?: LocalnetGuard;
  counters?: AgentCounters;
  /** Desired state of `service` (its name) was dropped as invalid, with the reason (once per reason). */
  onInvalid?: (service: string, reason: string) => void;
  log?: (msg: string) => void;
}

const publishing = (s: Service | undefined): boolean => (s?.spec.ports.length ?? 0) > 0;
type Hop = 'host' | 'sandbox';
type PublishedInputSelf = PublishedInput['self'];

export class NodeIngress {
  private readonly runner: BoundedFrequencyRunner;
  private readonly host: Proxier;
  private sandbox: { netns: string; key: string; proxier: Proxier } | undefined;
  /** Per publishing service: its part of the desired state as last computed (only sync writes it). */
  private readonly perService = new Map<string, PublishedState>();
  /** Services whose published state a change may have moved; all of them after a node/network change. */
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private chain: Promise<unknown> = Promise.resolve();
  /** Ids of the services that publish a port (kept from index changes; only they are computed). */
  private readonly publishers = new Set<string>();
  private publishersKnown = false;
  private readonly reported = new Set<string>();
  readonly counters: AgentCounters;
  syncFailures = 0;
  private localnetReady = false;
  /** Per-backend counters of both hops (only the cache's reads write it). */
  readonly totals = new BackendTotals();
  /** Reads {@link totals} from the kernel in the background; scrapes only copy them. */
  readonly statsCache: StatsCache<BackendTotals>;

  constructor(private readonly index: LocalIndex, private readonly selfId: () => string | undefined, private readonly opts: NodeIngressOptions) {
    this.counters = opts.counters ?? new AgentCounters();
    this.statsCache = new StatsCache(() => this.readStats(), this.totals, {
      ...opts.stats,
      onError: (e) => opts.log?.(`reading published-port counters failed (will retry): ${messageOf(e)}`),
    });
    this.host = new Proxier(opts.host);
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-ingress', minIntervalMs: 10, maxIntervalMs: 30_000, burst: 4, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; this.counters.failed('ingress'); opts.log?.(`ingress sync failed (will retry): ${messageOf(e)}`); },
    });
    if (opts.metricsRegistry) this.registerMetrics(opts.metricsRegistry);
  }

  start(): void {
    this.runner.start();
    this.statsCache.start();
  }

  /**
   * Cluster state changed. With the changes, only those that can move a published port wake the
   * sync: a publishing service, a task of one whose balancing view changed, a node, a network.
   */
  changed(changes?: readonly IndexChange[]): void {
    if (!changes) {
      this.allDirty = true;
      this.runner.run();
      return;
    }
    let relevant = false;
    for (const c of changes) {
      if (c.kind === 'services' && c.id) {
        const a = c.after as Service | undefined;
        if (publishing(a)) this.publishers.add(c.id);
        else this.publishers.delete(c.id);
        if (publishing(a) || publishing(c.before as Service | undefined)) {
          this.dirty.add(c.id);
          relevant = true;
        }
      } else if (c.kind === 'tasks') {
        const b = c.before as Task | undefined;
        const a = c.after as Task | undefined;
        const svc = a ?? b;
        if (svc && this.publishers.has(svc.serviceId) && (lbView(b) !== lbView(a) || b?.desiredState !== a?.desiredState)) {
          this.dirty.add(svc.serviceId);
          relevant = true;
        }
      } else if (c.kind === 'nodes' || c.kind === 'networks') {
        this.allDirty = true;
        relevant = true;
      }
    }
    if (relevant) this.runner.run();
  }

  /** The ingress sandbox must be made again (it was found gone or broken). */
  invalidateSandbox(): void { this.sandbox = undefined; }

  /** Resolves once no sync is running or pending (tests). */
  idle(): Promise<void> { return this.runner.idle(); }

  /**
   * Makes the ingress sandbox (idempotent): its endpoint on the ingress network at `address`,
   * forwarding on, and its dataplane programmed now. The ingress network must exist on the node.
   */
  async ensureSandbox(sandboxes: Sandboxes, net: Network, address: string): Promise<void> {
    const key = `${net.id}|${address}`;
    if (this.sandbox?.key === key) return;
    const netns = await sandboxes.ensure({ id: INGRESS_SANDBOX_ID, addresses: { [net.id]: { v4: address } } }, [net], {});
    const sysctl = netnsSysctl(netns);
    for (const [k, v] of Object.entries(INGRESS_SANDBOX_SYSCTLS)) await sysctl.set(k, v);
    const make = this.opts.make;
    if (!make) throw new Error('this node has no dataplane for an ingress sandbox');
    // Serialized with sync: the new sandbox starts from the cache, later changes reach it.
    await this.serial(async () => {
      if (this.sandbox) await this.sandbox.proxier.close();
      this.sandbox = { netns, key, proxier: new Proxier(make(netns)) };
      await this.sandbox.proxier.sync(this.all('sandbox'), true);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Ports the host hop itself listens on (`8080/tcp`; the userspace dataplane binds them), so
   * the node does not report its own published ports as taken by someone else.
   */
  listening(): Set<string> {
    if (this.opts.host.kind !== 'userspace') return new Set();
    return new Set([...this.host.lb.applied().values()].map((v) => `${v.port}/${v.protocol}`));
  }

  /** The ingress sandbox's netns, once made. */
  get sandboxNetns(): string | undefined { return this.sandbox?.netns; }

  /** What the two hops hold (tests, debugging). */
  applied(): { host: ReadonlyMap<string, unknown>; sandbox: ReadonlyMap<string, unknown> | undefined } {
    return { host: this.host.lb.applied(), sandbox: this.sandbox?.proxier.lb.applied() };
  }

  async stop(): Promise<void> {
    await this.statsCache.stop();
    await this.runner.stop();
    await this.host.close().catch(() => undefined);
    await this.sandbox?.proxier.close().catch(() => undefined);
  }

  /** This node as published-port planning sees it (undefined before the first list / join). */
  private selfNode(): PublishedInputSelf | undefined {
    const id = this.selfId();
    const self = id ? this.index.node(id) : undefined;
    if (!self || !this.index.synced) return undefined;
    return { id: self.id, address: self.address, ...(self.ingress ? { ingress: self.ingress } : {}) };
  }

  /** One service's published state (validated: what cannot be programmed is dropped here). */
  private compute(svc: Service, self: PublishedInputSelf): PublishedState {
    const want = publishedServices({
      services: [svc], byService: new Map([[svc.id, this.index.tasksOf(svc.id)]]),
      nodes: this.index.nodeMap(),
      networks: new Map(svc.spec.networks.map((n) => [n.network, this.index.network(n.network)]).filter((e): e is [string, Network] => e[1] !== undefined)),
      self,
      ...(this.opts.shared ? { shared: true } : {}),
    });
    // Invalid desired state (e.g. an IPv6 node address with IPv4 replicas) is dropped here,
    // never handed to a transaction where it would block every other port.
    const drop = (vs: VirtualService, reason: string): void => {
      this.counters.dropped('ingress');
      const k = `${vsKey(vs)}|${reason}`;
      if (this.reported.has(k)) return;
      this.reported.add(k);
      this.opts.log?.(`published port ${vsKey(vs)} of ${vs.service} left out: ${reason}`);
      this.opts.onInvalid?.(vs.service, `published port ${vsKey(vs)} not programmed on this node: ${reason}`);
    };
    return { ...want, host: validServices(want.host, drop), sandbox: validServices(want.sandbox, drop) };
  }

  /**
   * Recomputes the services a change touched (every publishing service after a node or
   * network change); returns per hop what to upsert and remove. Only the serialized sync and
   * ensureSandbox call it.
   */
  private recompute(): Record<Hop, { upsert: VirtualService[]; remove: string[] }> {
    const out: Record<Hop, { upsert: VirtualService[]; remove: string[] }> = { host: { upsert: [], remove: [] }, sandbox: { upsert: [], remove: [] } };
    const self = this.selfNode();
    if (!self) return out;
    if (!this.publishersKnown) {
      for (const s of this.index.services()) if (publishing(s)) this.publishers.add(s.id);
      this.publishersKnown = true;
    }
    const ids = this.allDirty ? new Set([...this.publishers, ...this.perService.keys()]) : new Set(this.dirty);
    this.allDirty = false;
    this.dirty.clear();
    for (const id of ids) {
      const svc = this.index.service(id);
      const next = svc && publishing(svc) ? this.compute(svc, self) : undefined;
      const prev = this.perService.get(id);
      for (const hop of ['host', 'sandbox'] as const) {
        const had = new Map((prev?.[hop] ?? []).map((v) => [vsKey(v), v]));
        const want = new Map((next?.[hop] ?? []).map((v) => [vsKey(v), v]));
        for (const [k, v] of want) {
          const old = had.get(k);
          if (!old || canonical(old) !== canonical(v)) out[hop].upsert.push(v);
        }
        for (const k of had.keys()) if (!want.has(k)) out[hop].remove.push(k);
      }
      if (next) this.perService.set(id, next);
      else this.perService.delete(id);
    }
    return out;
  }

  /** Every desired virtual service of one hop (a full sync). */
  private all(hop: Hop): VirtualService[] {
    const out: VirtualService[] = [];
    for (const st of this.perService.values()) out.push(...st[hop]);
    return out;
  }

  private sync(): Promise<void> {
    return this.serial(() => this.syncLocked());
  }

  private async syncLocked(): Promise<void> {
    if (!this.selfNode()) return;
    if (this.opts.localnet && !this.localnetReady) {
      await this.opts.localnet.ensure();
      this.localnetReady = true;
    }
    const c = this.recompute();
    const sandbox = this.sandbox;
    const results = await Promise.allSettled([
      this.host.change(c.host.upsert, c.host.remove, () => this.all('host')),
      sandbox ? sandbox.proxier.change(c.sandbox.upsert, c.sandbox.remove, () => this.all('sandbox')) : Promise.resolve(0),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.allDirty = true; // recompute and resend everything next time (the proxier does a full sync)
      throw failed.reason;
    }
  }

  /**
   * Drift repair of both hops (the host table, the ingress sandbox's dataplane): each re-reads
   * the kernel and puts back what differs. Resolves with the repairs (counted per hop).
   */
  async resync(): Promise<number> {
    this.allDirty = true; // recompute every published port, not only what changes named
    await this.sync();
    const localnet = this.opts.localnet && this.localnetReady ? await this.opts.localnet.ensure() : 0;
    this.counters.repaired('ingress-localnet', localnet);
    const host = await this.host.resync();
    this.counters.repaired('ingress-host', host);
    const sbox = this.sandbox ? await this.sandbox.proxier.resync() : 0;
    this.counters.repaired('ingress-sandbox', sbox);
    return localnet + host + sbox;
  }

  /** One background read of both hops' counters (a hop that cannot be read keeps what it had). */
  private async readStats(): Promise<BackendTotals> {
    const read = async (source: string, lb: LoadBalancer): Promise<StatsReading> =>
      ({ source, group: source, stats: await lb.stats().catch(() => undefined) });
    const readings = [await read('node', this.host.lb)];
    if (this.sandbox) readings.push(await read('ingress-sandbox', this.sandbox.proxier.lb));
    this.totals.update(readings);
    return this.totals;
  }

  private registerMetrics(reg: Registry): void {
    const state = (): { ports: PublishedState['ports'] } => ({ ports: [...this.perService.values()].flatMap((p) => p.ports) });
    new Gauge({
      name: 'shoal_ingress_published_backends', help: 'Serving replicas a published port reaches from this node.', labelNames: ['service', 'port', 'protocol', 'mode'], registers: [reg],
      collect() {
        this.reset();
        for (const p of state().ports) this.set({ service: p.service, port: String(p.port), protocol: p.protocol, mode: p.mode }, p.serving);
      },
    });
    const cache = this.statsCache;
    new Counter({
      name: 'shoal_ingress_connections_total', help: 'Connections (flows) balanced to each backend of a published port on this node, per hop (node: the host table; ingress-sandbox: the ingress sandbox).',
      labelNames: ['service', 'hop', 'backend'], registers: [reg],
      collect() {
        this.reset();
        for (const r of cache.value.rows()) if (r.hasTotal) this.inc({ service: r.service, hop: r.group, backend: r.backend }, r.connectionsTotal);
      },
    });
    registerStatsCacheMetrics(reg, 'ingress', cache);
    const failures = (): number => this.syncFailures;
    new Counter({ name: 'shoal_ingress_sync_failures_total', help: 'Failed ingress syncs on this node since the agent started (each is retried).', registers: [reg], collect() { this.reset(); this.inc(failures()); } });
  }
}
