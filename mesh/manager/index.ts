/**
 * The manager: a stateless API over the store (every decision is a store transaction, so
 * several managers may share one store), plus the singleton work: the scheduler, the
 * node-liveness watcher and the ingress network. With one manager on the embedded store (the
 * default) it does that work itself from the start; with `ha` (several managers on etcd) only
 * the elected leader does (leader.ts). `start()` must be called before `stop()`.
 */
import type { Store, Watcher } from '../../src/store/types.js';
import { ensureCluster, type ClusterInfo } from './cluster.js';
import { ClusterSecurity } from '../security/index.js';
import { ensureIngressNetwork, ingressNetwork } from './ingress.js';
import { LeaderElection, listManagers, type ManagerStatus } from './leader.js';
import { watchLiveness } from './nodes.js';
import { Scheduler } from './scheduler.js';
import { LiveStats } from './live-stats.js';
import { ClusterView } from './view.js';

export interface ManagerOptions {
  /** TTL of an agent's lease: a node is down this long after its last heartbeat. Default 10 s. */
  nodeLeaseTtlSeconds?: number;
  historyLimit?: number;
  /** Subnet of the ingress network when this manager creates the cluster (`--ingress-subnet`); default a /16 from the overlay pool. */
  ingressSubnet?: string;
  log?: (msg: string, err?: unknown) => void;
  /** Several managers on one store: register under `name` and run singletons only when elected. */
  ha?: { name: string; url?: string; leaseTtlSeconds?: number };
  /** Lifetime of the node certificates this manager issues, s (default 24 h). */
  nodeCertTtlSeconds?: number;
  /** Called when the tokens change (rotation): the daemon rewrites them into its data dir. */
  onTokens?: (c: ClusterInfo) => void;
}

export class Manager {
  readonly scheduler: Scheduler;
  /** Tokens, CA, revoked nodes, certificates (mesh/security); set by start(). */
  security!: ClusterSecurity;
  private liveness: Watcher | undefined;
  readonly nodeLeaseTtlSeconds: number;
  private readonly ingressSubnet: string | undefined;
  private readonly log: (msg: string, err?: unknown) => void;
  /** Failed background syncs, by reconciler (exported as a metric later; never just logged). */
  readonly failures = { scheduler: 0, liveness: 0 };
  /** The election, in HA mode. */
  readonly election: LeaderElection | undefined;
  private singletons = false;
  /** The cluster objects in memory, fed by one watch; started by its first reader (metrics, /ui). */
  readonly view: ClusterView;
  /** Per-backend connection summaries of the agents connected here, while someone watches /ui. */
  readonly live = new LiveStats();

  constructor(readonly store: Store, private readonly opts: ManagerOptions = {}) {
    this.nodeLeaseTtlSeconds = opts.nodeLeaseTtlSeconds ?? 10;
    this.log = opts.log ?? (() => undefined);
    this.ingressSubnet = opts.ingressSubnet;
    const sched: { historyLimit?: number; onError: (e: unknown) => void } = {
      onError: (e) => { this.failures.scheduler++; this.log('scheduler sync failed (will retry)', e); },
    };
    if (opts.historyLimit !== undefined) sched.historyLimit = opts.historyLimit;
    this.scheduler = new Scheduler(store, sched);
    if (opts.ha) {
      this.election = new LeaderElection(store, {
        ...opts.ha, log: this.log,
        onElected: () => this.startSingletons(),
        onDemoted: () => this.stopSingletons(),
      });
    }
    this.view = new ClusterView(store, this.log);
  }

  /** The cluster's id and current tokens. */
  get cluster(): ClusterInfo { return this.security.cluster; }

  /** Whether this manager runs the singleton work now (always, without HA). */
  get isLeader(): boolean { return this.election ? this.election.isLeader : this.singletons; }

  async start(): Promise<void> {
    await ensureCluster(this.store);
    this.security = await ClusterSecurity.open(this.store, {
      log: this.log,
      ...(this.opts.nodeCertTtlSeconds !== undefined ? { nodeCertTtlSeconds: this.opts.nodeCertTtlSeconds } : {}),
      ...(this.opts.onTokens ? { onTokens: this.opts.onTokens } : {}),
    });
    if (!this.election) return this.startSingletons();
    await this.election.start();
    // Every node's ingress sandbox gets its address at join: wait for the leader to have made
    // the ingress network before serving agents (at once, except on a brand-new cluster).
    const until = Date.now() + 15_000;
    while (!(await ingressNetwork(this.store))) {
      if (Date.now() > until) { this.log('no ingress network yet (no leader?); serving anyway'); break; }
      await new Promise((r) => setTimeout(r, 100));
    }
    // The leader made it (maybe with another --ingress-subnet): a manager asked for a different
    // one is refused, as on the embedded store.
    if (this.ingressSubnet !== undefined && await ingressNetwork(this.store)) await ensureIngressNetwork(this.store, this.ingressSubnet);
  }

  private async startSingletons(): Promise<void> {
    // Before any agent can join: every node's ingress sandbox gets its address at join.
    await ensureIngressNetwork(this.store, this.ingressSubnet);
    this.singletons = true;
    await this.watchNodes();
    this.scheduler.start();
  }

  /** The liveness watcher; one that ends (its history compacted during a long store outage) starts over. */
  private async watchNodes(): Promise<void> {
    this.liveness = await watchLiveness(this.store, (e) => {
      this.failures.liveness++;
      this.log('node liveness update failed', e);
      if (!this.election || !this.singletons || !(e instanceof Error) || !/compacted|watch/i.test(`${e.name} ${e.message}`)) return;
      this.liveness?.cancel();
      setTimeout(() => { if (this.singletons) this.watchNodes().catch((err: unknown) => this.log('restarting the liveness watch failed', err)); }, 500);
    });
  }

  private async stopSingletons(): Promise<void> {
    if (!this.singletons) return;
    this.singletons = false;
    this.liveness?.cancel();
    this.liveness = undefined;
    await this.scheduler.stop();
  }

  /** The managers on this store and which one leads (none listed without HA: there is just this one). */
  async managers(): Promise<ManagerStatus[]> {
    return this.opts.ha ? listManagers(this.store) : [];
  }

  async stop(): Promise<void> {
    this.security?.stop();
    if (this.election) await this.election.stop();
    else await this.stopSingletons();
    this.view.stop();
  }
}
