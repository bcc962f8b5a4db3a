/**
 * The {@link Store} contract over an etcd v3 cluster (npm `etcd3` as the gRPC client; etcd
 * 3.4 as packaged by Debian). Passes the conformance suite unchanged; what etcd does
 * differently is emulated here:
 *
 * - A value compare on a missing key fails in etcd; the contract says a missing key's value is
 *   ''. A txn with value compares therefore reads the compared keys, evaluates every compare
 *   locally, and commits the chosen branch guarded by `mod_revision = as read` on each of
 *   them; if a guard fails it starts over. Shoal itself compares revisions, never values.
 * - Lease ids: etcd picks ids up to 2^63, beyond what a JS number holds exactly; Shoal asks
 *   for its own random ids below 2^53. A grant is then safe to retry (a retry that finds its
 *   own id already granted succeeded).
 * - `compact(r)` keeps events after `r`: etcd's compaction at `r + 1`; `compactedRevision()`
 *   is etcd's minus one.
 * - A watch without `fromRevision` starts after the highest revision this client has seen,
 *   so it misses nothing the caller could have written after calling `watch()`.
 */
import { randomInt } from 'node:crypto';
import type { IRangeResponse } from 'etcd3';
import { conflict, internal, invalid, notFound, ShoalError } from '../../errors.js';
import type {
  DeleteResult, KeyValue, Lease, PutOptions, RangeResult, Store, Txn, TxnResult, WatchBatch, WatchOptions, Watcher, WriteResult,
} from '../types.js';
import { evaluate, prefixRange, toCompare, toKeyValue, toOpResult, toRequestOp } from './codec.js';
import { EtcdConnection, EtcdRequestError, type EtcdConnectionOptions } from './connection.js';
import { EtcdWatch } from './watch.js';

// Below 2^53 (exact in a JS number); randomInt takes ranges up to 2^48.
const MAX_LEASE_ID = 2 ** 48 - 1;
const dl = EtcdConnection.deadline;

function checkKey(key: unknown, what = 'key'): void {
  if (typeof key !== 'string' || key === '') throw invalid(`store ${what} must be a non-empty string`);
}

/** A final etcd answer as the ShoalError the contract promises. */
function mapFinal(e: unknown, lease?: number): unknown {
  if (!(e instanceof EtcdRequestError)) return e;
  const c = e.classified;
  switch (c.code) {
    case 'lease_not_found': return notFound(lease !== undefined ? `lease ${lease}` : 'lease', 'it expired or was revoked');
    case 'invalid': return invalid(`etcd refused the request: ${c.detail}`);
    case 'denied': return new ShoalError('Forbidden', 'STORE_DENIED', `etcd refused access: ${c.detail}`);
    default: return internal(`etcd answered: ${c.detail}`, e);
  }
}

export class EtcdStore implements Store {
  readonly conn: EtcdConnection;
  private readonly watches = new Set<EtcdWatch>();
  /** Lowest revision found readable by the last compactedRevision() (etcd's compaction point). */
  private compactHint = 1;

  constructor(opts: EtcdConnectionOptions) {
    this.conn = new EtcdConnection(opts);
  }

  private async rangeRaw(key: Buffer, rangeEnd: Buffer | undefined, extra: { limit?: number; count_only?: boolean; revision?: number } = {}): Promise<IRangeResponse> {
    return this.conn.call('range', 'idempotent', (m, d) => m.client.kv.range({ key, ...(rangeEnd ? { range_end: rangeEnd } : {}), ...extra }, dl(d)));
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.rangeRaw(Buffer.from(key), undefined).catch((e: unknown) => { throw mapFinal(e); });
    const kv = res.kvs[0];
    return kv ? toKeyValue(kv) : undefined;
  }

  async range(prefix: string, opts: { limit?: number } = {}): Promise<RangeResult> {
    const { key, rangeEnd } = prefixRange(prefix);
    const res = await this.rangeRaw(key, rangeEnd, opts.limit ? { limit: opts.limit } : {}).catch((e: unknown) => { throw mapFinal(e); });
    return { kvs: res.kvs.map(toKeyValue), revision: Number(res.header.revision) };
  }

  async put(key: string, value: string, opts: PutOptions = {}): Promise<WriteResult> {
    checkKey(key);
    if (typeof value !== 'string') throw invalid('store value must be a string');
    const res = await this.conn.call('put', 'write', (m, d) => m.client.kv.put({
      key: Buffer.from(key), value: Buffer.from(value), prev_kv: true, ...(opts.lease ? { lease: opts.lease } : {}),
    }, dl(d))).catch((e: unknown) => { throw mapFinal(e, opts.lease); });
    const out: WriteResult = { revision: Number(res.header.revision) };
    if (res.prev_kv) out.prev = toKeyValue(res.prev_kv);
    return out;
  }

  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<DeleteResult> {
    if (!opts.prefix) checkKey(key);
    const r = opts.prefix ? prefixRange(key) : { key: Buffer.from(key), rangeEnd: undefined };
    const res = await this.conn.call('delete', 'write', (m, d) => m.client.kv.deleteRange({
      key: r.key, ...(r.rangeEnd ? { range_end: r.rangeEnd } : {}), prev_kv: true,
    }, dl(d))).catch((e: unknown) => { throw mapFinal(e); });
    return { revision: Number(res.header.revision), deleted: Number(res.deleted), prev: (res.prev_kvs ?? []).map(toKeyValue) };
  }

  async txn(t: Txn): Promise<TxnResult> {
    for (const op of [...t.success, ...(t.failure ?? [])]) if (op.type === 'put' || (op.type === 'delete' && !op.prefix)) checkKey(op.key);
    for (const c of t.compare) checkKey(c.key, 'compare key');
    try {
      if (t.compare.some((c) => c.target === 'value')) return await this.txnByValue(t);
      const res = await this.conn.call('txn', 'write', (m, d) => m.client.kv.txn({
        compare: t.compare.map(toCompare), success: t.success.map(toRequestOp), failure: (t.failure ?? []).map(toRequestOp),
      }, dl(d)));
      return { succeeded: res.succeeded, revision: Number(res.header.revision), results: res.responses.map(toOpResult) };
    } catch (e) {
      throw mapFinal(e);
    }
  }

  /** See the module doc: value compares evaluated on a read, committed under revision guards. */
  private async txnByValue(t: Txn): Promise<TxnResult> {
    const keys = [...new Set(t.compare.map((c) => c.key))];
    for (let attempt = 0; attempt < 16; attempt++) {
      const read = await this.conn.call('txn', 'idempotent', (m, d) => m.client.kv.txn({
        compare: [], success: keys.map((k) => ({ request_range: { key: Buffer.from(k) } })), failure: [],
      }, dl(d)));
      const state = new Map<string, KeyValue>();
      for (const r of read.responses) for (const kv of r.response_range?.kvs ?? []) state.set(kv.key.toString(), toKeyValue(kv));
      const ok = t.compare.every((c) => evaluate(c, state.get(c.key)));
      const ops = ok ? t.success : (t.failure ?? []);
      const res = await this.conn.call('txn', 'write', (m, d) => m.client.kv.txn({
        compare: keys.map((k) => ({ key: Buffer.from(k), result: 'Equal', target: 'Mod', mod_revision: state.get(k)?.modRevision ?? 0 })),
        success: ops.map(toRequestOp), failure: [],
      }, dl(d)));
      if (res.succeeded) return { succeeded: ok, revision: Number(res.header.revision), results: res.responses.map(toOpResult) };
    }
    throw conflict('the keys this transaction compares by value kept changing; try again');
  }

  watch(prefix: string, onBatch: (batch: WatchBatch) => void, opts: WatchOptions = {}): Watcher {
    const from = opts.fromRevision ?? this.conn.lastRevision;
    const w = new EtcdWatch(this.conn, prefix, onBatch, opts, Number.isSafeInteger(from) && from >= 0 ? from : 0, (x) => this.watches.delete(x));
    if (typeof prefix !== 'string') queueMicrotask(() => w.fail(invalid('watch prefix must be a string')));
    else if (!Number.isSafeInteger(from) || from < 0) queueMicrotask(() => w.fail(invalid(`watch fromRevision must be a non-negative integer, got ${String(from)}`)));
    else this.watches.add(w);
    return w;
  }

  async currentRevision(): Promise<number> {
    const res = await this.rangeRaw(Buffer.from([0]), undefined, { count_only: true }).catch((e: unknown) => { throw mapFinal(e); });
    return Number(res.header.revision);
  }

  async compactedRevision(): Promise<number> {
    // etcd reports its compacted revision only through HashKV (which etcd3 1.1 cannot call)
    // or a watch refusal (sent only when something is refused). A read at revision r fails
    // exactly when r is below it, and it only grows: check the last answer, search if it moved.
    const readable = async (r: number): Promise<boolean> => {
      try {
        await this.rangeRaw(Buffer.from([0]), undefined, { count_only: true, revision: r });
        return true;
      } catch (e) {
        if (e instanceof EtcdRequestError && e.classified.code === 'compacted') return false;
        throw mapFinal(e);
      }
    };
    let lo = this.compactHint; // readable, as far as we know
    if (await readable(lo)) return lo - 1;
    let hi = await this.currentRevision(); // always readable
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await readable(mid)) hi = mid;
      else lo = mid;
    }
    this.compactHint = hi;
    return hi - 1;
  }

  async compact(revision: number): Promise<void> {
    if (!Number.isSafeInteger(revision) || revision < 0) throw invalid(`compact revision must be a non-negative integer, got ${String(revision)}`);
    const current = await this.currentRevision();
    const target = Math.min(revision + 1, current);
    if (target <= 1) return;
    await this.conn.call('compact', 'idempotent', (m, d) => m.client.kv.compact({ revision: target }, dl(d))).catch((e: unknown) => {
      // Already compacted at or past it: nothing to do.
      if (e instanceof EtcdRequestError && e.classified.code === 'compacted') return;
      throw mapFinal(e);
    });
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw invalid(`lease TTL must be a positive whole number of seconds, got ${String(ttlSeconds)}`);
    for (let fresh = 0; fresh < 5; fresh++) {
      const id = randomInt(1, MAX_LEASE_ID);
      let attempts = 0;
      try {
        const res = await this.conn.call('lease_grant', 'idempotent', (m, d) => { attempts++; return m.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: id }, dl(d)); });
        return { id, ttlSeconds: Number(res.TTL) };
      } catch (e) {
        if (!(e instanceof EtcdRequestError && e.classified.code === 'lease_exists')) throw mapFinal(e);
        // Our own earlier attempt got through: the lease is ours. Otherwise an id clash: pick another.
        if (attempts > 1) {
          const ttl = await this.conn.call('lease_ttl', 'idempotent', (m, d) => m.client.leaseClient.leaseTimeToLive({ ID: id }, dl(d)));
          return { id, ttlSeconds: Number(ttl.grantedTTL) };
        }
      }
    }
    throw internal('could not pick an unused lease id');
  }

  async keepAlive(leaseId: number): Promise<void> {
    const ttl = await this.conn.call('lease_keepalive', 'idempotent', (m, d) => m.keepAliveOnce(leaseId, d));
    if (ttl <= 0) throw notFound(`lease ${leaseId}`, 'it expired or was revoked');
  }

  async revokeLease(leaseId: number): Promise<void> {
    let attempts = 0;
    try {
      await this.conn.call('lease_revoke', 'idempotent', (m, d) => { attempts++; return m.client.leaseClient.leaseRevoke({ ID: leaseId }, dl(d)); });
    } catch (e) {
      // A retry that finds the lease gone: the earlier attempt revoked it.
      if (attempts > 1 && e instanceof EtcdRequestError && e.classified.code === 'lease_not_found') return;
      throw mapFinal(e, leaseId);
    }
  }

  async close(): Promise<void> {
    if (this.conn.isClosed) return;
    const err = this.conn.closedError();
    this.conn.close();
    for (const w of [...this.watches]) w.fail(err);
    this.watches.clear();
  }
}
