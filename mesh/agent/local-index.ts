/**
 * The agent's local copy of cluster state, fed only by the watch stream (never by reads of the
 * store on a hot path). Only `apply*` methods write it (called by the session); readers get
 * typed views. Each change is reported to listeners as `{key, prev, next}` (with the parsed
 * objects); a relist is reported as the difference between the old and the new contents, so
 * listeners see one model of change.
 *
 * Cost model (what keeps the agent O(change), issue 11): every object is parsed once, when it
 * arrives, and kept parsed; secondary indexes (tasks by service, by node, by network) are kept
 * up to date per change, so a reader that needs "the tasks of service S" pays for those tasks
 * only, never for the whole cluster. Objects handed out are shared: readers must not mutate them.
 */
import { parseObjectKey, type ObjectKind } from '../../src/model/keys.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import type { WireEvent, WireKv } from '../api/watch.js';

export interface IndexChange {
  key: string;
  prev: string | undefined;
  next: string | undefined;
  /** Set for object keys (`/shoal/<kind>/<id>`). */
  kind?: ObjectKind;
  id?: string;
  /** The parsed previous and next objects (object keys only; shared, do not mutate). */
  before?: unknown;
  after?: unknown;
}
export type IndexListener = (changes: IndexChange[]) => void;

type Obj = Network | Service | Task | Node;

/** A multimap id -> set of task ids, kept per change. */
class TaskSets {
  private readonly m = new Map<string, Set<string>>();
  add(k: string, id: string): void {
    const s = this.m.get(k);
    if (s) s.add(id);
    else this.m.set(k, new Set([id]));
  }
  delete(k: string, id: string): void {
    const s = this.m.get(k);
    if (!s) return;
    s.delete(id);
    if (s.size === 0) this.m.delete(k);
  }
  get(k: string): ReadonlySet<string> | undefined { return this.m.get(k); }
  clear(): void { this.m.clear(); }
}

export class LocalIndex {
  private readonly kvs = new Map<string, string>();
  private readonly objects: Record<ObjectKind, Map<string, Obj>> = {
    networks: new Map(), services: new Map(), tasks: new Map(), nodes: new Map(),
  };
  private readonly byService = new TaskSets();
  private readonly byNode = new TaskSets();
  private readonly byNetwork = new TaskSets();
  private readonly listeners = new Set<IndexListener>();
  /** Revision the index reflects (0 before the first list). */
  revision = 0;
  /** True once a full list arrived: nothing may be programmed before (DESIGN.md). */
  synced = false;
  /** How many full lists were applied (1 + re-lists): resumes after a reconnect do not count. */
  lists = 0;

  onChange(l: IndexListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Replaces the contents with a full list at `revision`. */
  applyList(kvs: WireKv[], revision: number): void {
    const fresh = new Map(kvs.map((kv) => [kv.key, kv.value]));
    const changes: IndexChange[] = [];
    for (const key of [...this.kvs.keys()]) if (!fresh.has(key)) changes.push(this.set(key, undefined));
    for (const [key, next] of fresh) {
      if (this.kvs.get(key) !== next) changes.push(this.set(key, next));
    }
    this.revision = revision;
    this.synced = true;
    this.lists++;
    this.emit(changes);
  }

  applyEvents(events: WireEvent[], revision: number): void {
    if (revision <= this.revision) return; // replayed after a resume: already applied
    const changes: IndexChange[] = [];
    for (const e of events) {
      const prev = this.kvs.get(e.key);
      if (e.type === 'put' && e.value !== undefined) {
        if (prev === e.value) continue;
        changes.push(this.set(e.key, e.value));
      } else if (prev !== undefined) {
        changes.push(this.set(e.key, undefined));
      }
    }
    this.revision = revision;
    this.emit(changes);
  }

  /** The one writer of the maps: sets `key` to `next` (undefined = delete) and keeps the indexes. */
  private set(key: string, next: string | undefined): IndexChange {
    const prev = this.kvs.get(key);
    if (next === undefined) this.kvs.delete(key);
    else this.kvs.set(key, next);
    const o = parseObjectKey(key);
    if (!o) return { key, prev, next };
    const map = this.objects[o.kind];
    const before = map.get(o.id);
    let after: Obj | undefined;
    if (next !== undefined) {
      try {
        after = JSON.parse(next) as Obj;
      } catch {
        after = undefined; // not JSON: invisible to typed readers (the manager never writes that)
      }
    }
    if (after) map.set(o.id, after);
    else map.delete(o.id);
    if (o.kind === 'tasks') {
      if (before) this.unindexTask(before as Task);
      if (after) this.indexTask(after as Task);
    }
    return { key, prev, next, kind: o.kind, id: o.id, before, after };
  }

  private indexTask(t: Task): void {
    this.byService.add(t.serviceId, t.id);
    if (t.nodeId) this.byNode.add(t.nodeId, t.id);
    for (const net of Object.keys(t.addresses ?? {})) this.byNetwork.add(net, t.id);
  }

  private unindexTask(t: Task): void {
    this.byService.delete(t.serviceId, t.id);
    if (t.nodeId) this.byNode.delete(t.nodeId, t.id);
    for (const net of Object.keys(t.addresses ?? {})) this.byNetwork.delete(net, t.id);
  }

  private emit(changes: IndexChange[]): void {
    if (changes.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(changes);
      } catch {
        // A listener's bug must not stop the stream for the others; listeners report their own errors.
      }
    }
  }

  private tasksIn(ids: ReadonlySet<string> | undefined): Task[] {
    if (!ids) return [];
    const out: Task[] = [];
    for (const id of ids) {
      const t = this.objects.tasks.get(id);
      if (t) out.push(t as Task);
    }
    return out;
  }

  /** The value at `key`: the shared parsed object for object keys, parsed on demand otherwise. */
  get<T>(key: string): T | undefined {
    const o = parseObjectKey(key);
    if (o) return this.objects[o.kind].get(o.id) as T | undefined;
    const v = this.kvs.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  task(id: string): Task | undefined { return this.objects.tasks.get(id) as Task | undefined; }
  service(id: string): Service | undefined { return this.objects.services.get(id) as Service | undefined; }
  network(id: string): Network | undefined { return this.objects.networks.get(id) as Network | undefined; }
  node(id: string): Node | undefined { return this.objects.nodes.get(id) as Node | undefined; }

  /** Tasks of one service (O(its tasks)). */
  tasksOf(serviceId: string): Task[] { return this.tasksIn(this.byService.get(serviceId)); }
  /** Tasks assigned to one node. */
  tasksOnNode(nodeId: string): Task[] { return this.tasksIn(this.byNode.get(nodeId)); }
  /** Tasks with an address on one network. */
  tasksOnNetwork(networkId: string): Task[] { return this.tasksIn(this.byNetwork.get(networkId)); }

  tasks(): Task[] { return [...this.objects.tasks.values()] as Task[]; }
  services(): Service[] { return [...this.objects.services.values()] as Service[]; }
  networks(): Network[] { return [...this.objects.networks.values()] as Network[]; }
  nodes(): Node[] { return [...this.objects.nodes.values()] as Node[]; }
  /** Nodes by id (a fresh map over the shared objects). */
  nodeMap(): Map<string, Node> { return new Map(this.objects.nodes as Map<string, Node>); }
  get size(): number { return this.kvs.size; }
}
