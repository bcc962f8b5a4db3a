/**
 * The agent's local copy of cluster state, fed only by the watch stream (never by reads of the
 * store on a hot path). Only `apply*` methods write it (called by the session); readers get
 * typed views. Each change is reported to listeners as `{key, prev, next}`; a relist is reported
 * as the difference between the old and the new contents, so listeners see one model of change.
 */
import { parseObjectKey, type ObjectKind } from '../../src/model/keys.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import type { WireEvent, WireKv } from '../api/watch.js';

export interface IndexChange { key: string; prev: string | undefined; next: string | undefined }
export type IndexListener = (changes: IndexChange[]) => void;

export class LocalIndex {
  private readonly kvs = new Map<string, string>();
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
    for (const [key, prev] of this.kvs) if (!fresh.has(key)) changes.push({ key, prev, next: undefined });
    for (const [key, next] of fresh) {
      const prev = this.kvs.get(key);
      if (prev !== next) changes.push({ key, prev, next });
    }
    this.kvs.clear();
    for (const [k, v] of fresh) this.kvs.set(k, v);
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
        this.kvs.set(e.key, e.value);
        changes.push({ key: e.key, prev, next: e.value });
      } else if (prev !== undefined) {
        this.kvs.delete(e.key);
        changes.push({ key: e.key, prev, next: undefined });
      }
    }
    this.revision = revision;
    this.emit(changes);
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

  private list<T>(kind: ObjectKind): T[] {
    const out: T[] = [];
    for (const [key, value] of this.kvs) {
      if (parseObjectKey(key)?.kind === kind) out.push(JSON.parse(value) as T);
    }
    return out;
  }

  get<T>(key: string): T | undefined {
    const v = this.kvs.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  tasks(): Task[] { return this.list<Task>('tasks'); }
  services(): Service[] { return this.list<Service>('services'); }
  networks(): Network[] { return this.list<Network>('networks'); }
  nodes(): Node[] { return this.list<Node>('nodes'); }
  get size(): number { return this.kvs.size; }
}
