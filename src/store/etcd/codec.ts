/**
 * Conversions between the Store's types and etcd's wire types (etcd3's generated RPC types:
 * keys and values are bytes, int64 fields arrive as decimal strings).
 */
import type { ICompare, IKeyValue, IRequestOp, IResponseOp } from 'etcd3';
import type { Compare, CompareOp, KeyValue, TxnOp, TxnOpResult } from '../types.js';

/** `[key, rangeEnd)` covering every key that starts with `prefix` ('' = all keys). */
export function prefixRange(prefix: string): { key: Buffer; rangeEnd: Buffer } {
  if (prefix === '') return { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return { key, rangeEnd: end.subarray(0, i + 1) };
    }
  }
  // All 0xff: to the end of the keyspace.
  return { key, rangeEnd: Buffer.from([0]) };
}

export function toKeyValue(kv: IKeyValue): KeyValue {
  return Object.freeze({
    key: kv.key.toString(),
    value: kv.value ? kv.value.toString() : '',
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    // etcd picks lease ids up to 2^63; Shoal grants its own below 2^53 (see store.ts).
    lease: Number(kv.lease),
  });
}

const RESULT: Record<CompareOp, ICompare['result']> = { '=': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' };

/** A compare as etcd evaluates it natively (value compares: see EtcdStore.txn). */
export function toCompare(c: Compare): ICompare {
  const key = Buffer.from(c.key);
  const result = RESULT[c.op];
  switch (c.target) {
    case 'value': return { key, result, target: 'Value', value: Buffer.from(String(c.value)) };
    case 'version': return { key, result, target: 'Version', version: Number(c.value) };
    case 'createRevision': return { key, result, target: 'Create', create_revision: Number(c.value) };
    case 'modRevision': return { key, result, target: 'Mod', mod_revision: Number(c.value) };
    case 'lease': return { key, result, target: 'Lease', lease: Number(c.value) };
  }
}

export function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case 'put':
      return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), ...(op.lease ? { lease: op.lease } : {}) } };
    case 'delete': {
      const r = op.prefix ? prefixRange(op.key) : { key: Buffer.from(op.key), rangeEnd: undefined };
      return { request_delete_range: { key: r.key, ...(r.rangeEnd ? { range_end: r.rangeEnd } : {}), prev_kv: true } };
    }
    case 'get': {
      const r = op.prefix ? prefixRange(op.key) : { key: Buffer.from(op.key), rangeEnd: undefined };
      return { request_range: { key: r.key, ...(r.rangeEnd ? { range_end: r.rangeEnd } : {}) } };
    }
  }
}

export function toOpResult(r: IResponseOp): TxnOpResult {
  if (r.response_range) return { kvs: r.response_range.kvs.map(toKeyValue) };
  if (r.response_delete_range) return { kvs: (r.response_delete_range.prev_kvs ?? []).map(toKeyValue) };
  return { kvs: [] };
}

/** Evaluates a compare against a key's state as read (missing key: value '' and numbers 0). */
export function evaluate(c: Compare, kv: KeyValue | undefined): boolean {
  let cmp: number;
  if (c.target === 'value') {
    cmp = Buffer.compare(Buffer.from(kv?.value ?? ''), Buffer.from(String(c.value)));
  } else {
    const have = kv ? kv[c.target] : 0;
    const want = Number(c.value);
    cmp = have === want ? 0 : have < want ? -1 : 1;
  }
  switch (c.op) {
    case '=': return cmp === 0;
    case '!=': return cmp !== 0;
    case '<': return cmp < 0;
    case '>': return cmp > 0;
  }
}
