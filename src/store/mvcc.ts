/**
 * The in-memory state machine: keys with MVCC metadata, the sorted key index, leases and the
 * event history. It only changes through {@link Mvcc.apply}, which is deterministic, so the
 * live store and log replay build the same state.
 *
 * Ownership: only the store's commit step (after the record is durable) and recovery call
 * `apply`; everything else reads.
 */
import { internal } from '../errors.js';
import { EventHistory } from './history.js';
import type { Mutation, WalRecord } from './records.js';
import { SortedKeys } from './sorted-keys.js';
import type { KeyValue, WatchBatch, WatchEvent } from './types.js';

/** A lease as the state machine knows it; deadlines live in the store (they are not state). */
export interface LeaseState {
  id: number;
  ttl: number;
  /** Keys currently attached to this lease. */
  keys: Set<string>;
}

/** Everything needed to rebuild an {@link Mvcc} without its history: the snapshot payload. */
export interface MvccImage {
  revision: number;
  nextLeaseId: number;
  leases: { id: number; ttl: number }[];
  kvs: KeyValue[];
}

export class Mvcc {
  private rev: number;
  private readonly kvs = new Map<string, KeyValue>();
  private readonly index = new SortedKeys();
  private readonly leaseMap = new Map<number, LeaseState>();
  private nextLease = 1;
  readonly history: EventHistory;
  private readonly historyLimit: number;

  /** `historyLimit`: how many revisions of events to keep for watches (>= 1). */
  constructor(historyLimit: number, image?: MvccImage) {
    this.historyLimit = historyLimit;
    this.rev = image?.revision ?? 0;
    this.history = new EventHistory(this.rev);
    if (!image) return;
    this.nextLease = image.nextLeaseId;
    for (const l of image.leases) this.leaseMap.set(l.id, { id: l.id, ttl: l.ttl, keys: new Set() });
    for (const kv of image.kvs) {
      const frozen = Object.freeze({ ...kv });
      this.kvs.set(kv.key, frozen);
      this.index.insert(kv.key);
      this.attach(frozen);
    }
  }

  /** Revision of the last applied write. */
  get revision(): number {
    return this.rev;
  }

  /** The id the next granted lease gets. */
  get nextLeaseId(): number {
    return this.nextLease;
  }

  get(key: string): KeyValue | undefined {
    return this.kvs.get(key);
  }

  /** Keys starting with `prefix` in key order, at most `limit` of them (0: no limit). */
  range(prefix: string, limit = 0): KeyValue[] {
    const out: KeyValue[] = [];
    for (const key of this.index.withPrefix(prefix)) {
      out.push(this.kvs.get(key) as KeyValue);
      if (limit > 0 && out.length >= limit) break;
    }
    return out;
  }

  lease(id: number): LeaseState | undefined {
    return this.leaseMap.get(id);
  }

  leases(): IterableIterator<LeaseState> {
    return this.leaseMap.values();
  }

  /** Drops event history up to `revision`; watches can then start only at or after it. */
  compact(revision: number): void {
    this.history.compact(revision);
  }

  /** A consistent copy of the state for a snapshot (the history is not part of it). */
  image(): MvccImage {
    return {
      revision: this.rev,
      nextLeaseId: this.nextLease,
      leases: [...this.leaseMap.values()].map((l) => ({ id: l.id, ttl: l.ttl })),
      kvs: [...this.kvs.values()],
    };
  }

  /**
   * Applies one record. Returns the events of the revision it created, or undefined when it
   * created none (a grant, or a revoke of a lease without keys). Throws an Internal error when
   * the record does not fit the state (a revision gap, an unknown lease): during recovery that
   * means the log is inconsistent and must not be trusted.
   */
  apply(record: WalRecord): WatchBatch | undefined {
    switch (record.type) {
      case 'grant':
        if (this.leaseMap.has(record.lease)) throw internal(`lease ${record.lease} granted twice`);
        this.leaseMap.set(record.lease, { id: record.lease, ttl: record.ttl, keys: new Set() });
        this.nextLease = Math.max(this.nextLease, record.lease + 1);
        return undefined;
      case 'write':
        return this.applyMutations(record.revision, record.mutations);
      case 'revoke': {
        if (!this.leaseMap.has(record.lease)) throw internal(`revoke of unknown lease ${record.lease}`);
        const batch = record.mutations.length > 0 ? this.applyMutations(record.revision, record.mutations) : undefined;
        this.leaseMap.delete(record.lease);
        return batch;
      }
    }
  }

  private applyMutations(revision: number, mutations: Mutation[]): WatchBatch {
    if (revision !== this.rev + 1) {
      throw internal(`revision ${revision} applied on top of revision ${this.rev}: the log has a gap`);
    }
    const events: WatchEvent[] = [];
    for (const m of mutations) {
      if (m.op === 'put') {
        const prev = this.kvs.get(m.kv.key);
        const kv = Object.freeze({ ...m.kv, modRevision: revision });
        if (prev) this.detach(prev);
        else this.index.insert(kv.key);
        this.kvs.set(kv.key, kv);
        this.attach(kv);
        events.push(Object.freeze(prev ? { type: 'put', kv, prevKv: prev } : { type: 'put', kv }));
      } else {
        const prev = this.kvs.get(m.key);
        if (!prev) throw internal(`delete of missing key '${m.key}' at revision ${revision}`);
        this.detach(prev);
        this.kvs.delete(m.key);
        this.index.remove(m.key);
        events.push(Object.freeze({ type: 'delete', kv: Object.freeze({ ...prev, modRevision: revision }), prevKv: prev }));
      }
    }
    this.rev = revision;
    const batch: WatchBatch = Object.freeze({ revision, events: Object.freeze(events) as WatchEvent[] });
    this.history.push(batch);
    if (revision - this.history.compacted > this.historyLimit) this.history.compact(revision - this.historyLimit);
    return batch;
  }

  private attach(kv: KeyValue): void {
    if (kv.lease === 0) return;
    const lease = this.leaseMap.get(kv.lease);
    if (!lease) throw internal(`key '${kv.key}' attached to unknown lease ${kv.lease}`);
    lease.keys.add(kv.key);
  }

  private detach(kv: KeyValue): void {
    if (kv.lease !== 0) this.leaseMap.get(kv.lease)?.keys.delete(kv.key);
  }
}
