/**
 * Watch delivery. Each watcher remembers the last revision it was given and is fed from the
 * event history, so catch-up and live delivery are one code path and can have no gaps.
 *
 * - A new watcher catches up in a microtask (the caller holds its {@link Watcher} first).
 * - Once caught up, it gets each revision synchronously when the store applies it, so the
 *   bounded history can never drop a revision a live watcher has not seen.
 * - Callbacks are isolated: a throw cancels only that watch and is reported to its `onError`
 *   (ending the watch loudly beats a silent gap in the consumer's view); a throwing `onError`
 *   is swallowed.
 */
import { internal, invalid } from '../errors.js';
import type { EventHistory } from './history.js';
import { StoreCompactedError, type WatchBatch, type WatchOptions, type Watcher } from './types.js';

/** Where the hub reads revisions from: the applied state. */
export interface WatchSource {
  readonly revision: number;
  readonly history: EventHistory;
}

interface WatchState {
  prefix: string;
  onBatch: (batch: WatchBatch) => void;
  onError: ((err: Error) => void) | undefined;
  /** Last revision delivered (or skipped as not matching). */
  last: number;
  /** Caught up with the source: fed synchronously by {@link WatchHub.publish}. */
  live: boolean;
  active: boolean;
}

export class WatchHub {
  private readonly watchers = new Set<WatchState>();

  constructor(private readonly source: WatchSource) {}

  get size(): number {
    return this.watchers.size;
  }

  /** Starts a watch (see Store.watch). Errors are reported through `opts.onError`, asynchronously. */
  add(prefix: string, onBatch: (batch: WatchBatch) => void, opts: WatchOptions = {}): Watcher {
    const from = opts.fromRevision ?? this.source.revision;
    const w: WatchState = { prefix, onBatch, onError: opts.onError, last: from, live: false, active: true };
    const watcher: Watcher = { cancel: () => this.remove(w) };
    if (typeof prefix !== 'string') {
      this.failLater(w, invalid('watch prefix must be a string'));
    } else if (!Number.isSafeInteger(from) || from < 0) {
      this.failLater(w, invalid(`watch fromRevision must be a non-negative integer, got ${String(from)}`));
    } else {
      this.watchers.add(w);
      queueMicrotask(() => this.catchUp(w));
    }
    return watcher;
  }

  /** Delivers the revision just applied to every live watcher. Call once per applied revision. */
  publish(batch: WatchBatch): void {
    for (const w of this.watchers) {
      if (w.live) this.deliver(w, batch);
    }
  }

  /** Ends every watch with `err` (store closed). */
  closeAll(err: Error): void {
    for (const w of [...this.watchers]) this.fail(w, err);
  }

  private catchUp(w: WatchState): void {
    const history = this.source.history;
    while (w.active && w.last < this.source.revision) {
      if (w.last < history.compacted) {
        this.fail(w, new StoreCompactedError(history.compacted));
        return;
      }
      const batch = history.at(w.last + 1);
      if (!batch) {
        this.fail(w, internal(`watch: revision ${w.last + 1} missing from history`));
        return;
      }
      this.deliver(w, batch);
    }
    w.live = true;
  }

  private deliver(w: WatchState, batch: WatchBatch): void {
    if (!w.active || batch.revision <= w.last) return;
    w.last = batch.revision;
    const events = w.prefix === '' ? batch.events : batch.events.filter((e) => e.kv.key.startsWith(w.prefix));
    if (events.length === 0) return;
    try {
      w.onBatch({ revision: batch.revision, events: events === batch.events ? [...events] : events });
    } catch (err) {
      const e = internal(`watch callback for prefix '${w.prefix}' threw; the watch was cancelled (re-list and watch again)`, err);
      // Without an onError nobody would ever learn why events stopped: leave a process warning.
      if (!w.onError) process.emitWarning(e);
      this.fail(w, e);
    }
  }

  private remove(w: WatchState): void {
    w.active = false;
    this.watchers.delete(w);
  }

  private fail(w: WatchState, err: Error): void {
    if (!w.active) return;
    this.remove(w);
    try {
      w.onError?.(err);
    } catch {
      // The consumer's error handler failed too; there is no one left to tell.
    }
  }

  private failLater(w: WatchState, err: Error): void {
    queueMicrotask(() => this.fail(w, err));
  }
}
