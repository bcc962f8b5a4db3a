/**
 * Read views used while planning writes. Writes of one group commit are planned one after
 * another before any of them is durable, so each must see the effects of those planned before
 * it, while readers of the store must not: {@link StagedView} layers the staged (not yet
 * durable) records over the applied state and is thrown away after the batch.
 */
import type { Mvcc } from './mvcc.js';
import type { WalRecord } from './records.js';
import type { KeyValue } from './types.js';

/** What planning a write may read. */
export interface StateReader {
  readonly revision: number;
  readonly nextLeaseId: number;
  get(key: string): KeyValue | undefined;
  /** Keys starting with `prefix`, sorted by key. */
  range(prefix: string): KeyValue[];
  /** TTL of a live lease, undefined when there is no such lease. */
  leaseTtl(id: number): number | undefined;
  /** Keys attached to the lease. */
  leaseKeys(id: number): string[];
}

/** A key overlay: a KeyValue for a put, null for a delete. */
export type KeyOverlay = Map<string, KeyValue | null>;

/** `base` (sorted) with the overlay's changes under `prefix` applied, still sorted. */
export function mergeRange(base: KeyValue[], overlay: KeyOverlay, prefix: string): KeyValue[] {
  if (overlay.size === 0) return base;
  const touched: KeyOverlay = new Map();
  for (const [key, kv] of overlay) if (key.startsWith(prefix)) touched.set(key, kv);
  if (touched.size === 0) return base;
  const out = base.filter((kv) => !touched.has(kv.key));
  for (const kv of touched.values()) if (kv) out.push(kv);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The applied state plus the records staged so far in the current batch. */
export class StagedView implements StateReader {
  private readonly keys: KeyOverlay = new Map();
  private readonly leases = new Map<number, number | null>();
  private rev: number;
  private nextLease: number;

  constructor(private readonly base: Mvcc) {
    this.rev = base.revision;
    this.nextLease = base.nextLeaseId;
  }

  get revision(): number {
    return this.rev;
  }

  get nextLeaseId(): number {
    return this.nextLease;
  }

  get(key: string): KeyValue | undefined {
    const staged = this.keys.get(key);
    if (staged !== undefined) return staged ?? undefined;
    return this.base.get(key);
  }

  range(prefix: string): KeyValue[] {
    return mergeRange(this.base.range(prefix), this.keys, prefix);
  }

  leaseTtl(id: number): number | undefined {
    const staged = this.leases.get(id);
    if (staged !== undefined) return staged ?? undefined;
    return this.base.lease(id)?.ttl;
  }

  leaseKeys(id: number): string[] {
    const candidates = new Set(this.base.lease(id)?.keys);
    for (const [key, kv] of this.keys) if (kv?.lease === id) candidates.add(key);
    return [...candidates].filter((key) => this.get(key)?.lease === id);
  }

  /** Makes a planned record visible to the plans after it (not to the store's readers). */
  stage(record: WalRecord): void {
    switch (record.type) {
      case 'grant':
        this.leases.set(record.lease, record.ttl);
        this.nextLease = Math.max(this.nextLease, record.lease + 1);
        return;
      case 'revoke':
        this.leases.set(record.lease, null);
        break;
      case 'write':
        break;
    }
    if (record.mutations.length === 0) return;
    for (const m of record.mutations) {
      if (m.op === 'put') this.keys.set(m.kv.key, m.kv);
      else this.keys.set(m.key, null);
    }
    this.rev = record.revision;
  }
}
