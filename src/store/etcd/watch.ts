/**
 * One Store watch over an etcd Watch stream of its own (gRPC multiplexes the streams on the
 * member's one connection).
 *
 * - Events arrive in responses that may hold several revisions; they are regrouped into one
 *   batch per revision (etcd never splits one revision's events across responses unless asked
 *   to fragment, and we do not ask).
 * - When the stream breaks (the member died, lost its leader: see `hasleader` in
 *   connection.ts, or the store is closing) the watch re-opens on the next member from the
 *   last revision it delivered, and drops anything at or below it: no gap, no duplicate.
 *   Progress notifications move that revision on while nothing matches, so a long-idle watch
 *   does not resume from a revision compacted meanwhile.
 * - A start revision that was compacted ends the watch with StoreCompactedError (the consumer
 *   re-lists); so does a reconnect that finds its revision compacted.
 * - A throwing callback cancels only this watch and is reported to its onError.
 */
import type { IDuplexStream, IEvent, IKeyValue, IWatchRequest, IWatchResponse } from 'etcd3';
import { ShoalError } from '../../errors.js';
import { StoreCompactedError, type KeyValue, type WatchBatch, type WatchEvent, type WatchOptions, type Watcher } from '../types.js';
import { toKeyValue, prefixRange } from './codec.js';
import type { EtcdConnection, Member } from './connection.js';

export class EtcdWatch implements Watcher {
  private active = true;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Last revision delivered or known to hold nothing for this watch. */
  private last: number;

  constructor(
    private readonly conn: EtcdConnection,
    private readonly prefix: string,
    private readonly onBatch: (b: WatchBatch) => void,
    private readonly opts: WatchOptions,
    from: number,
    private readonly onEnd: (w: EtcdWatch) => void,
  ) {
    this.last = from;
    queueMicrotask(() => void this.open());
  }

  cancel(): void {
    if (!this.active) return;
    this.active = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.closeStream();
    this.onEnd(this);
  }

  /** Ends the watch with `err` (reported once, asynchronously safe). */
  fail(err: Error): void {
    if (!this.active) return;
    this.cancel();
    try {
      if (this.opts.onError) this.opts.onError(err);
      else process.emitWarning(`store watch on '${this.prefix}' ended: ${err.message}`);
    } catch {
      // A throwing onError must not break the store.
    }
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    // Its listeners check `this.stream === s` and so ignore it from here on.
    s.on('error', () => undefined);
    try { s.end(); } catch { /* gone */ }
    try { s.cancel(); } catch { /* gone */ }
  }

  private async open(): Promise<void> {
    // A bad prefix is refused by the store (fail() follows in the next microtask).
    if (!this.active || typeof this.prefix !== 'string') return;
    if (this.conn.isClosed) return this.fail(this.conn.closedError());
    const m = this.conn.current();
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await m.client.watchClient.watch();
    } catch (e) {
      return this.broken(m, e);
    }
    if (!this.active) {
      stream.on('error', () => undefined);
      try { stream.cancel(); } catch { /* gone */ }
      return;
    }
    this.stream = stream;
    const { key, rangeEnd } = prefixRange(this.prefix);
    stream.on('data', (res: IWatchResponse) => { if (this.stream === stream) this.onResponse(m, res); });
    stream.on('error', (e: Error) => { if (this.stream === stream) this.broken(m, e); });
    stream.on('end', () => { if (this.stream === stream) this.broken(m, new Error('14 UNAVAILABLE: watch stream ended')); });
    stream.write({ create_request: { key, range_end: rangeEnd, start_revision: this.last + 1, prev_kv: true, progress_notify: true } } as IWatchRequest);
  }

  private broken(m: Member, e: unknown): void {
    if (!this.active) return;
    this.closeStream();
    if (this.conn.isClosed) return this.fail(this.conn.closedError());
    this.conn.demote(m);
    this.failures++;
    // Straight to the next member first; then back off (no member may have a leader yet).
    const delay = this.failures <= 1 ? 0 : Math.min(1000, 25 * 2 ** Math.min(6, this.failures));
    void e;
    this.retryTimer = setTimeout(() => void this.open(), delay);
  }

  private onResponse(m: Member, res: IWatchResponse): void {
    if (!this.active) return;
    if (res.canceled) {
      const compacted = Number(res.compact_revision ?? 0);
      if (compacted > 0) return this.fail(new StoreCompactedError(compacted - 1));
      // A member stepping down cancels with a reason ("no leader"): resume elsewhere.
      if (/leader|stopping|unavailable/i.test(res.cancel_reason ?? '')) return this.broken(m, new Error(res.cancel_reason));
      return this.fail(new ShoalError('Internal', 'STORE_WATCH', `etcd cancelled the watch on '${this.prefix}': ${res.cancel_reason || 'no reason given'}`));
    }
    this.failures = 0;
    const rev = this.conn.seen(res.header);
    if (res.created) return;
    if (res.events.length === 0) {
      // Progress notification: everything up to the header's revision has been sent.
      if (rev > this.last) this.last = rev;
      return;
    }
    let batch: WatchBatch | undefined;
    const out: WatchBatch[] = [];
    for (const ev of res.events) {
      const e = toEvent(ev);
      const r = e.kv.modRevision;
      if (r <= this.last) continue;
      if (!batch || batch.revision !== r) {
        batch = { revision: r, events: [] };
        out.push(batch);
      }
      (batch.events as WatchEvent[]).push(e);
    }
    for (const b of out) {
      if (!this.active) return;
      this.last = b.revision;
      try {
        this.onBatch(b);
      } catch (err) {
        return this.fail(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}

/** etcd's event as the Store's: a delete carries the key's last value with the delete's revision. */
function toEvent(ev: IEvent): WatchEvent {
  const prevKv = ev.prev_kv ? toKeyValue(ev.prev_kv) : undefined;
  if (ev.type === 'Delete') {
    const modRevision = Number(ev.kv.mod_revision);
    const base: KeyValue = prevKv ?? toKeyValue({ ...ev.kv, value: Buffer.alloc(0) } as IKeyValue);
    const kv = Object.freeze({ ...base, modRevision });
    return Object.freeze(prevKv ? { type: 'delete', kv, prevKv } : { type: 'delete', kv });
  }
  const kv = toKeyValue(ev.kv);
  return Object.freeze(prevKv ? { type: 'put', kv, prevKv } : { type: 'put', kv });
}
