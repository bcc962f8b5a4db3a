/**
 * The cluster state store contract, modelled on etcd v3.
 *
 * - Every successful write (put, delete that removed something, txn with writes, lease expiry
 *   that removed keys) creates exactly one new store revision; all its events carry it.
 * - `createRevision` 0 / `version` 0 in a compare means "the key does not exist".
 * - A write is acknowledged (its promise resolves) only once it is durable.
 * - Watches deliver every event after `fromRevision`, in revision order, grouped per revision,
 *   with no gaps; a watch from a compacted revision fails with {@link StoreCompactedError}.
 *
 * Two implementations run one conformance suite (test/store/conformance.ts): the embedded
 * store (src/store/embedded.ts) and etcd (src/store/etcd/, imported on its own: it loads gRPC).
 */

/** One key-value pair with its MVCC metadata. */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the write that created this key (since its last deletion). */
  createRevision: number;
  /** Revision of the last write to this key. */
  modRevision: number;
  /** Number of writes since creation (1 after the first put). */
  version: number;
  /** Lease the key is attached to, 0 if none. */
  lease: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** Store revision the read was served at. */
  revision: number;
}

export interface PutOptions {
  /** Attach the key to a lease: the key is deleted when the lease expires or is revoked. */
  lease?: number;
}

export interface WriteResult {
  /** Revision of this write (the current revision when the write changed nothing). */
  revision: number;
  /** The previous value, when there was one. */
  prev?: KeyValue;
}

export interface DeleteResult {
  revision: number;
  deleted: number;
  prev: KeyValue[];
}

export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
export type CompareOp = '=' | '!=' | '<' | '>';

/** One condition of a transaction, evaluated against the current state of `key`. */
export interface Compare {
  key: string;
  target: CompareTarget;
  op: CompareOp;
  /** A string for `value`, a number for the others. A missing key has value '' and numbers 0. */
  value: string | number;
}

/** A request inside a transaction. `prefix: true` makes a range/delete cover all keys with that prefix. */
export type TxnOp =
  | { type: 'put'; key: string; value: string; lease?: number }
  | { type: 'delete'; key: string; prefix?: boolean }
  | { type: 'get'; key: string; prefix?: boolean };

export interface Txn {
  compare: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

/** Result of one op of a transaction: the keys read (get) or removed (delete), nothing for put. */
export interface TxnOpResult {
  kvs: KeyValue[];
}

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  results: TxnOpResult[];
}

export type WatchEventType = 'put' | 'delete';

export interface WatchEvent {
  type: WatchEventType;
  /** For a delete: the key with its last value; `modRevision` is the delete's revision. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

/** All events of one revision (a txn may produce several) that match the watch's prefix. */
export interface WatchBatch {
  revision: number;
  events: WatchEvent[];
}

export interface WatchOptions {
  /** Deliver events with revision > fromRevision. Default: the current revision (only new ones). */
  fromRevision?: number;
  /** Called when the watch ends because of an error (e.g. compaction, store closed). */
  onError?: (err: Error) => void;
}

/** A live watch; `cancel()` is idempotent and stops delivery synchronously. */
export interface Watcher {
  cancel(): void;
}

export interface Lease {
  id: number;
  ttlSeconds: number;
}

/** The store. All methods reject with a {@link import('../errors.js').ShoalError} on failure. */
export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  /** All keys starting with `prefix`, sorted by key. */
  range(prefix: string, opts?: { limit?: number }): Promise<RangeResult>;
  put(key: string, value: string, opts?: PutOptions): Promise<WriteResult>;
  delete(key: string, opts?: { prefix?: boolean }): Promise<DeleteResult>;
  /** Atomic: all compares are evaluated and then either `success` or `failure` runs, as one revision. */
  txn(txn: Txn): Promise<TxnResult>;
  /** Watch keys starting with `prefix`. The callback is called once per revision, in order. */
  watch(prefix: string, onBatch: (batch: WatchBatch) => void, opts?: WatchOptions): Watcher;
  /** Current revision (the revision of the last write). */
  currentRevision(): Promise<number>;
  /** Oldest revision a watch can still start from (exclusive): events after it are available. */
  compactedRevision(): Promise<number>;
  /** Drop event history up to `revision` (watches can no longer start before it). */
  compact(revision: number): Promise<void>;
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Renew a lease to its full TTL; rejects with NotFound when it has expired. */
  keepAlive(leaseId: number): Promise<void>;
  /** Revoke a lease now, deleting its keys; NotFound if it does not exist. */
  revokeLease(leaseId: number): Promise<void>;
  close(): Promise<void>;
}

/** Thrown (through WatchOptions.onError or as a rejection) when history before a revision is gone. */
export class StoreCompactedError extends Error {
  readonly compactedRevision: number;
  constructor(compactedRevision: number) {
    super(`revision compacted: history before ${compactedRevision} is gone; re-list and watch again`);
    this.name = 'StoreCompactedError';
    this.compactedRevision = compactedRevision;
  }
}
