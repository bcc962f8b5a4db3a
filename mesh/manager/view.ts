/**
 * The manager's in-memory view of the cluster objects (networks, services, tasks, nodes), fed by
 * ONE store watch: what reads the whole cluster often (the /metrics scrape, the /ui page and
 * its live feed) reads this instead of ranging over the store each time.
 *
 * Started on first use ({@link ClusterView.ready}); a watch that fails (the store compacted
 * past it, a store hiccup) is replaced by a fresh list, whose difference reaches listeners as
 * ordinary changes. Counts per task state and node state are kept per change, so a scrape
 * costs O(states), not O(tasks). Only the watch callback writes the index and the counts.
 */
import { objectPrefix, parseObjectKey, ROOT, type ObjectKind } from '../../src/model/keys.js';
import type { Node, Task } from '../../src/model/types.js';
import type { Store, WatchBatch, Watcher } from '../../src/store/types.js';
import { LocalIndex, type IndexChange, type IndexListener } from '../agent/local-index.js';

const KINDS: readonly ObjectKind[] = ['networks', 'services', 'tasks', 'nodes'];
const isObjectKey = (key: string): boolean => parseObjectKey(key) !== undefined;

export class ClusterView {
  readonly index = new LocalIndex();
  /** Tasks per current state (only states with tasks). */
  readonly taskStates = new Map<string, number>();
  /** Nodes per state. */
  readonly nodeStates = new Map<string, number>();
  private watcher: Watcher | undefined;
  private starting: Promise<void> | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store, private readonly log: (msg: string, err?: unknown) => void = () => undefined) {
    this.index.onChange((changes) => this.count(changes));
  }

  /** Resolves once the first list is in (starts the watch on first call). */
  ready(): Promise<void> {
    this.starting ??= this.list();
    return this.starting;
  }

  /** Listens to changes (after the first list: a relist reports its difference). */
  onChange(l: IndexListener): () => void { return this.index.onChange(l); }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.watcher?.cancel();
    this.watcher = undefined;
  }

  private async list(): Promise<void> {
    if (this.stopped) return;
    const ranges = await Promise.all(KINDS.map((k) => this.store.range(objectPrefix(k))));
    // Each range may be served at a later revision than the one before: watch from the oldest,
    // replaying what the others already hold is harmless (applyEvents skips equal values).
    const revision = Math.min(...ranges.map((r) => r.revision));
    const kvs = ranges.flatMap((r) => r.kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: kv.modRevision })));
    this.index.applyList(kvs, revision);
    this.watcher?.cancel();
    this.watcher = this.store.watch(ROOT, (b: WatchBatch) => this.apply(b), {
      fromRevision: revision,
      onError: (e) => {
        if (this.stopped) return;
        this.log('cluster view: watch ended, listing again', e);
        this.retry = setTimeout(() => { this.list().catch((err: unknown) => this.log('cluster view: list failed', err)); }, 200);
      },
    });
  }

  private apply(b: WatchBatch): void {
    const events = [];
    for (const e of b.events) {
      if (!isObjectKey(e.kv.key)) continue;
      events.push(e.type === 'put'
        ? { type: 'put' as const, key: e.kv.key, value: e.kv.value, modRevision: e.kv.modRevision }
        : { type: 'delete' as const, key: e.kv.key, modRevision: b.revision });
    }
    // Empty batches still move the revision (it is the store's).
    if (events.length) this.index.applyEvents(events, b.revision);
    else if (b.revision > this.index.revision) this.index.revision = b.revision;
  }

  private count(changes: readonly IndexChange[]): void {
    const bump = (m: Map<string, number>, k: string | undefined, d: number): void => {
      if (k === undefined) return;
      const n = (m.get(k) ?? 0) + d;
      if (n > 0) m.set(k, n);
      else m.delete(k);
    };
    for (const c of changes) {
      if (c.kind === 'tasks') {
        bump(this.taskStates, (c.before as Task | undefined)?.status?.state, -1);
        bump(this.taskStates, (c.after as Task | undefined)?.status?.state, 1);
      } else if (c.kind === 'nodes') {
        bump(this.nodeStates, (c.before as Node | undefined)?.state, -1);
        bump(this.nodeStates, (c.after as Node | undefined)?.state, 1);
      }
    }
  }
}
