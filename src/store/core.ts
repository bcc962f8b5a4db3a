/**
 * The embedded store's engine: a write queue with group commit in front of the state machine.
 *
 * Writes are planned in arrival order against a {@link StagedView} (the applied state plus the
 * records planned before them in the same batch), the batch's records are handed to the log in
 * one append (one fsync), and only when that resolves are they applied, published to watches
 * and acknowledged. Writes that arrive meanwhile wait and form the next batch. Hence:
 * - reads and watches only ever see durable state;
 * - a batch that fails to persist changes nothing in memory, and the store then refuses all
 *   further writes (after a failed fsync the kernel's page state is unknown; reopen to recover);
 * - without a log (memory-only) a write is planned and applied synchronously.
 */
import { internal, invalid, notFound, unavailable } from '../errors.js';
import { LeaseClock } from './lease-clock.js';
import type { Mvcc, MvccImage } from './mvcc.js';
import { checkKey, planDelete, planGrant, planPut, planRevoke, planTxn, type Plan } from './plan.js';
import type { WalRecord } from './records.js';
import type {
  DeleteResult,
  KeyValue,
  Lease,
  PutOptions,
  RangeResult,
  Store,
  Txn,
  TxnResult,
  WatchBatch,
  WatchOptions,
  Watcher,
  WriteResult,
} from './types.js';
import { StagedView } from './view.js';
import { WatchHub } from './watch-hub.js';

/** Where durable mode persists records. Calls are never concurrent: one append or snapshot at a time. */
export interface StoreLog {
  /** Writes the records as one unit and resolves once they are durable. */
  append(records: WalRecord[]): Promise<void>;
  /** True when enough records were appended since the last snapshot to take one. */
  wantsSnapshot(): boolean;
  /**
   * Starts a snapshot of `image` (the state after every record appended so far). Resolves once
   * appends may continue (a new log segment is open); the snapshot file itself is written in
   * the background, and a failure there is not fatal: the log still holds everything.
   */
  snapshot(image: MvccImage): Promise<void>;
  /** Waits for background work, closes files, releases the directory lock. */
  close(): Promise<void>;
}

/** Writes accepted into one group commit at most (bounds the size of one log frame). */
const MAX_BATCH = 4096;

interface Job {
  /** Plans the write against `view`; throws to reject only this job. */
  plan(view: StagedView): WalRecord | undefined;
  done(): void;
  fail(err: unknown): void;
}

interface Planned {
  job: Job;
  record?: WalRecord;
  error?: unknown;
}

export interface EngineOptions {
  mvcc: Mvcc;
  log?: StoreLog;
  now: () => number;
}

export class EmbeddedStore implements Store {
  private readonly mvcc: Mvcc;
  private readonly log: StoreLog | undefined;
  private readonly hub: WatchHub;
  private readonly leases: LeaseClock;
  private queue: Job[] = [];
  /** A batch is being persisted (or a snapshot is rotating the log): the next one waits. */
  private inFlight = false;
  /** Re-entrancy guard: a watch callback may write while `pump` is applying. */
  private pumping = false;
  /** Set when persisting failed: writes are refused from then on. */
  private broken: Error | undefined;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: EngineOptions) {
    this.mvcc = opts.mvcc;
    this.log = opts.log;
    this.hub = new WatchHub(this.mvcc);
    this.leases = new LeaseClock(opts.now, (id) => {
      this.submit((view) => planRevoke(view, id, true)).catch(() => {
        // The store closed or broke before the expiry was persisted; a restart re-grants the TTL.
      });
    });
    for (const lease of this.mvcc.leases()) this.leases.start(lease.id, lease.ttl);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.checkOpen();
    checkKey(key);
    return this.mvcc.get(key);
  }

  async range(prefix: string, opts?: { limit?: number }): Promise<RangeResult> {
    this.checkOpen();
    checkKey(prefix, true);
    const limit = opts?.limit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0) throw invalid(`range limit must be a non-negative integer, got ${String(limit)}`);
    return { kvs: this.mvcc.range(prefix, limit), revision: this.mvcc.revision };
  }

  put(key: string, value: string, opts?: PutOptions): Promise<WriteResult> {
    return this.submit((view) => planPut(view, key, value, opts?.lease));
  }

  delete(key: string, opts?: { prefix?: boolean }): Promise<DeleteResult> {
    return this.submit((view) => planDelete(view, key, opts?.prefix === true));
  }

  txn(txn: Txn): Promise<TxnResult> {
    return this.submit((view) => planTxn(view, txn));
  }

  watch(prefix: string, onBatch: (batch: WatchBatch) => void, opts?: WatchOptions): Watcher {
    if (this.closing) {
      const onError = opts?.onError;
      let cancelled = false;
      queueMicrotask(() => {
        if (!cancelled) onError?.(unavailable('the store is closed; watch not started'));
      });
      return { cancel: () => { cancelled = true; } };
    }
    return this.hub.add(prefix, onBatch, opts);
  }

  async currentRevision(): Promise<number> {
    this.checkOpen();
    return this.mvcc.revision;
  }

  async compactedRevision(): Promise<number> {
    this.checkOpen();
    return this.mvcc.history.compacted;
  }

  async compact(revision: number): Promise<void> {
    this.checkOpen();
    if (!Number.isSafeInteger(revision) || revision < 0) throw invalid(`compact revision must be a non-negative integer, got ${String(revision)}`);
    if (revision > this.mvcc.revision) {
      throw invalid(`cannot compact to revision ${revision}: the current revision is ${this.mvcc.revision}`);
    }
    this.mvcc.compact(revision);
  }

  grantLease(ttlSeconds: number): Promise<Lease> {
    return this.submit((view) => planGrant(view, ttlSeconds));
  }

  async keepAlive(leaseId: number): Promise<void> {
    this.checkOpen();
    if (!this.mvcc.lease(leaseId) || !this.leases.renew(leaseId)) {
      throw notFound(`lease ${leaseId}`, 'it expired or was revoked; grant a new lease');
    }
  }

  revokeLease(leaseId: number): Promise<void> {
    return this.submit((view) => planRevoke(view, leaseId, false));
  }

  /** Lets queued writes finish, then ends watches (onError: Unavailable) and releases the log. Idempotent. */
  close(): Promise<void> {
    if (!this.closePromise) {
      this.closing = true;
      this.closePromise = (async () => {
        await this.idle();
        this.leases.stopAll();
        this.hub.closeAll(unavailable('the store was closed'));
        await this.log?.close();
      })();
    }
    return this.closePromise;
  }

  private checkOpen(): void {
    if (this.closing) throw unavailable('the store is closed');
  }

  /** Queues a write; resolves with its planned result once it is applied (durable). */
  private submit<R>(plan: (view: StagedView) => Plan<R>): Promise<R> {
    if (this.closing) return Promise.reject(unavailable('the store is closed'));
    return new Promise<R>((resolve, reject) => {
      let result: R;
      this.queue.push({
        plan: (view) => {
          const p = plan(view);
          result = p.result;
          return p.record;
        },
        done: () => resolve(result),
        fail: reject,
      });
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.inFlight && this.queue.length > 0) {
        const jobs = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
        this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
        if (this.broken) {
          for (const job of jobs) job.fail(unavailable('the store refuses writes after an earlier failure to persist; reopen it', this.broken));
          continue;
        }
        const planned = this.plan(jobs);
        const records = planned.flatMap((p) => (p.record ? [p.record] : []));
        if (!this.log || records.length === 0) {
          this.commit(planned);
          continue;
        }
        this.inFlight = true;
        void this.log.append(records).then(
          () => this.commit(planned),
          (err: unknown) => this.failBatch(planned, err),
        ).then(() => this.afterBatch());
      }
    } finally {
      this.pumping = false;
    }
    if (!this.inFlight && this.queue.length === 0) this.wakeIdle();
  }

  private plan(jobs: Job[]): Planned[] {
    const view = new StagedView(this.mvcc);
    return jobs.map((job) => {
      try {
        const record = job.plan(view);
        if (!record) return { job };
        view.stage(record);
        return { job, record };
      } catch (error) {
        return { job, error };
      }
    });
  }

  /** Applies a durable batch in order, publishing each revision before the next is applied. */
  private commit(planned: Planned[]): void {
    for (const p of planned) {
      if (p.error !== undefined) {
        p.job.fail(p.error);
        continue;
      }
      if (p.record && !this.broken) {
        try {
          this.applyRecord(p.record);
        } catch (err) {
          // A record planned against the staged view must apply; if not, memory is suspect.
          this.broken = internal('the store state machine rejected a planned write', err);
        }
      }
      if (this.broken) p.job.fail(unavailable('the store refuses writes after an internal error; reopen it', this.broken));
      else p.job.done();
    }
  }

  private applyRecord(record: WalRecord): void {
    const batch = this.mvcc.apply(record);
    if (record.type === 'grant') this.leases.start(record.lease, record.ttl);
    else if (record.type === 'revoke') this.leases.stop(record.lease);
    if (batch) this.hub.publish(batch);
  }

  private failBatch(planned: Planned[], err: unknown): void {
    this.broken = err instanceof Error ? err : new Error(String(err));
    const e = unavailable('the write could not be made durable; the store refuses writes until reopened', err);
    for (const p of planned) p.job.fail(p.error ?? e);
  }

  private async afterBatch(): Promise<void> {
    if (this.log && !this.broken && this.log.wantsSnapshot()) {
      try {
        await this.log.snapshot(this.mvcc.image());
      } catch (err) {
        // Could not open the next log segment: appending is no longer safe.
        this.broken = err instanceof Error ? err : new Error(String(err));
      }
    }
    this.inFlight = false;
    this.pump();
  }

  private idle(): Promise<void> {
    if (!this.inFlight && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
