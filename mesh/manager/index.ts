/**
 * The manager: a stateless API over the store (every decision is a store transaction, so
 * several managers may share one store), plus two background reconcilers: the scheduler and the
 * node-liveness watcher. `start()` must be called before `stop()`.
 */
import type { Store, Watcher } from '../../src/store/types.js';
import { ensureCluster, type ClusterInfo } from './cluster.js';
import { ensureIngressNetwork } from './ingress.js';
import { watchLiveness } from './nodes.js';
import { Scheduler } from './scheduler.js';
import { LiveStats } from './live-stats.js';
import { ClusterView } from './view.js';

export interface ManagerOptions {
  /** TTL of an agent's lease: a node is down this long after its last heartbeat. Default 10 s. */
  nodeLeaseTtlSeconds?: number;
  historyLimit?: number;
  log?: (msg: string, err?: unknown) => void;
}

export class Manager {
  readonly scheduler: Scheduler;
  cluster!: ClusterInfo;
  private liveness: Watcher | undefined;
  readonly nodeLeaseTtlSeconds: number;
  private readonly log: (msg: string, err?: unknown) => void;
  /** Failed background syncs, by reconciler (exported as a metric later; never just logged). */
  readonly failures = { scheduler: 0, liveness: 0 };
  /** The cluster objects in memory, fed by one watch; started by its first reader (metrics, /ui). */
  readonly view: ClusterView;
  /** Per-backend connection summaries of the agents connected here, while someone watches /ui. */
  readonly live = new LiveStats();

  constructor(readonly store: Store, opts: ManagerOptions = {}) {
    this.nodeLeaseTtlSeconds = opts.nodeLeaseTtlSeconds ?? 10;
    this.log = opts.log ?? (() => undefined);
    const sched: { historyLimit?: number; onError: (e: unknown) => void } = {
      onError: (e) => { this.failures.scheduler++; this.log('scheduler sync failed (will retry)', e); },
    };
    if (opts.historyLimit !== undefined) sched.historyLimit = opts.historyLimit;
    this.scheduler = new Scheduler(store, sched);
    this.view = new ClusterView(store, this.log);
  }

  async start(): Promise<void> {
    this.cluster = await ensureCluster(this.store);
    // Before any agent can join: every node's ingress sandbox gets its address at join.
    await ensureIngressNetwork(this.store);
    this.liveness = await watchLiveness(this.store, (e) => { this.failures.liveness++; this.log('node liveness update failed', e); });
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    this.liveness?.cancel();
    this.view.stop();
    await this.scheduler.stop();
  }
}
