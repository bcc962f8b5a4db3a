/**
 * Planning: turns a write request into the record that will be logged and applied, plus the
 * result the caller gets once it is durable. Pure functions of a {@link StateReader}; they throw
 * a ShoalError (rejecting only that request) when the request is invalid.
 */
import { invalid, notFound } from '../errors.js';
import type { Mutation, WalRecord } from './records.js';
import type {
  Compare,
  DeleteResult,
  KeyValue,
  Lease,
  Txn,
  TxnOp,
  TxnOpResult,
  TxnResult,
  WriteResult,
} from './types.js';
import { mergeRange, type KeyOverlay, type StateReader } from './view.js';

/** A planned request: the record to log (none when the request changes nothing) and its result. */
export interface Plan<R> {
  record?: WalRecord;
  result: R;
}

/** Collects the mutations of one revision; reads see the writes made so far in it. */
class RevisionWriter {
  readonly revision: number;
  readonly mutations: Mutation[] = [];
  private readonly local: KeyOverlay = new Map();

  constructor(private readonly view: StateReader) {
    this.revision = view.revision + 1;
  }

  get(key: string): KeyValue | undefined {
    const kv = this.local.get(key);
    return kv === undefined ? this.view.get(key) : kv ?? undefined;
  }

  range(prefix: string): KeyValue[] {
    return mergeRange(this.view.range(prefix), this.local, prefix);
  }

  put(key: string, value: string, lease: number): KeyValue | undefined {
    if (lease !== 0 && this.view.leaseTtl(lease) === undefined) {
      throw notFound(`lease ${lease}`, 'it expired or was revoked; grant a new lease');
    }
    const prev = this.get(key);
    const kv: KeyValue = Object.freeze({
      key,
      value,
      createRevision: prev?.createRevision ?? this.revision,
      modRevision: this.revision,
      version: (prev?.version ?? 0) + 1,
      lease,
    });
    this.mutations.push({ op: 'put', kv });
    this.local.set(key, kv);
    return prev;
  }

  delete(key: string, prefix: boolean): KeyValue[] {
    const victims = prefix ? this.range(key) : [this.get(key)].filter((kv): kv is KeyValue => kv !== undefined);
    for (const kv of victims) {
      this.mutations.push({ op: 'del', key: kv.key });
      this.local.set(kv.key, null);
    }
    return victims;
  }

  /** Revision to report: the new one when something was written, else the current one. */
  get resultRevision(): number {
    return this.mutations.length > 0 ? this.revision : this.view.revision;
  }

  record(): WalRecord | undefined {
    return this.mutations.length > 0 ? { type: 'write', revision: this.revision, mutations: this.mutations } : undefined;
  }
}

export function checkKey(key: unknown, prefix = false): asserts key is string {
  if (typeof key !== 'string' || (key === '' && !prefix)) {
    throw invalid('a store key must be a non-empty string');
  }
}

function checkLease(lease: unknown): number {
  if (lease === undefined) return 0;
  if (typeof lease !== 'number' || !Number.isSafeInteger(lease) || lease < 0) {
    throw invalid(`lease id must be a non-negative integer, got ${String(lease)}`);
  }
  return lease;
}

function checkValue(value: unknown): asserts value is string {
  if (typeof value !== 'string') throw invalid('a store value must be a string');
}

export function planPut(view: StateReader, key: string, value: string, lease?: number): Plan<WriteResult> {
  checkKey(key);
  checkValue(value);
  const w = new RevisionWriter(view);
  const prev = w.put(key, value, checkLease(lease));
  return { record: w.record(), result: prev ? { revision: w.revision, prev } : { revision: w.revision } };
}

export function planDelete(view: StateReader, key: string, prefix: boolean): Plan<DeleteResult> {
  checkKey(key, prefix);
  const w = new RevisionWriter(view);
  const prev = w.delete(key, prefix);
  return { record: w.record(), result: { revision: w.resultRevision, deleted: prev.length, prev } };
}

export function planTxn(view: StateReader, txn: Txn): Plan<TxnResult> {
  if (!txn || !Array.isArray(txn.compare) || !Array.isArray(txn.success)) {
    throw invalid('a transaction needs `compare` and `success` arrays');
  }
  const failure = txn.failure ?? [];
  checkBranch(txn.success);
  checkBranch(failure);
  const succeeded = txn.compare.every((c) => compareHolds(view.get(checkCompare(c)), c));
  const w = new RevisionWriter(view);
  const results: TxnOpResult[] = (succeeded ? txn.success : failure).map((op) => {
    switch (op.type) {
      case 'put':
        w.put(op.key, op.value, checkLease(op.lease));
        return { kvs: [] };
      case 'delete':
        return { kvs: w.delete(op.key, op.prefix === true) };
      case 'get':
        return { kvs: op.prefix === true ? w.range(op.key) : [w.get(op.key)].filter((kv): kv is KeyValue => kv !== undefined) };
    }
  });
  return { record: w.record(), result: { succeeded, revision: w.resultRevision, results } };
}

/**
 * Validates the ops of one branch. As in etcd, a branch may not write one key twice (two puts,
 * or a put under a delete), because one revision cannot hold two versions of a key.
 */
function checkBranch(ops: TxnOp[]): void {
  if (!Array.isArray(ops)) throw invalid('transaction branches must be arrays of ops');
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.type !== 'put' && op.type !== 'delete' && op.type !== 'get') {
      throw invalid(`unknown transaction op type '${String((op as { type: unknown }).type)}'`);
    }
    checkKey(op.key, op.type !== 'put' && op.prefix === true);
    if (op.type === 'put') {
      checkValue(op.value);
      if (puts.has(op.key)) throw invalid(`transaction writes key '${op.key}' twice in one branch`);
      puts.add(op.key);
    }
  }
  for (const op of ops) {
    if (op.type !== 'delete') continue;
    for (const key of puts) {
      if (op.prefix === true ? key.startsWith(op.key) : key === op.key) {
        throw invalid(`transaction both puts and deletes key '${key}' in one branch`);
      }
    }
  }
}

const NUMERIC_TARGETS = new Set(['version', 'createRevision', 'modRevision', 'lease']);

function checkCompare(c: Compare): string {
  checkKey(c.key);
  if (c.target === 'value') {
    if (typeof c.value !== 'string') throw invalid(`compare on value of '${c.key}' needs a string`);
  } else if (NUMERIC_TARGETS.has(c.target)) {
    if (typeof c.value !== 'number') throw invalid(`compare on ${c.target} of '${c.key}' needs a number`);
  } else {
    throw invalid(`unknown compare target '${String(c.target)}'`);
  }
  if (c.op !== '=' && c.op !== '!=' && c.op !== '<' && c.op !== '>') throw invalid(`unknown compare op '${String(c.op)}'`);
  return c.key;
}

/** Evaluates a compare; a missing key has value '' and every number 0 (the contract in types.ts). */
export function compareHolds(kv: KeyValue | undefined, c: Compare): boolean {
  const actual: string | number = c.target === 'value' ? kv?.value ?? '' : kv?.[c.target] ?? 0;
  switch (c.op) {
    case '=': return actual === c.value;
    case '!=': return actual !== c.value;
    case '<': return actual < c.value;
    case '>': return actual > c.value;
  }
}

export function planGrant(view: StateReader, ttlSeconds: number): Plan<Lease> {
  if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw invalid(`lease TTL must be a positive number of seconds, got ${String(ttlSeconds)}`);
  }
  const id = view.nextLeaseId;
  return { record: { type: 'grant', lease: id, ttl: ttlSeconds }, result: { id, ttlSeconds } };
}

/**
 * Revokes a lease and deletes its keys in one revision. A missing lease is NotFound, unless
 * `missingOk` (an expiry racing a revoke: whichever comes second has nothing left to do).
 */
export function planRevoke(view: StateReader, lease: number, missingOk: boolean): Plan<void> {
  if (view.leaseTtl(lease) === undefined) {
    if (missingOk) return { result: undefined };
    throw notFound(`lease ${lease}`, 'it expired or was already revoked');
  }
  const w = new RevisionWriter(view);
  for (const key of view.leaseKeys(lease).sort()) w.delete(key, false);
  return {
    record: { type: 'revoke', lease, revision: w.resultRevision, mutations: w.mutations },
    result: undefined,
  };
}
