/**
 * When each store revision happened, as this manager saw it. The store keeps revisions, not
 * times, so `shoal events --since 10m` needs this map from a time to the revision to replay from.
 * It starts empty when the manager starts and keeps the last `limit` revisions: events older
 * than the manager's start (or than the store's event history) cannot be replayed, and the
 * events stream says so.
 */
import { ROOT } from '../../src/model/keys.js';
import type { Store, Watcher } from '../../src/store/types.js';

export class RevisionClock {
  private readonly revs: number[] = [];
  private readonly times: number[] = [];
  private watcher: Watcher | undefined;
  /** The store revision when the clock started, and when (ms). */
  readonly startRevision: number;
  readonly startedAt: number;

  private constructor(store: Store, startRevision: number, private readonly limit: number, private readonly now: () => number) {
    this.startRevision = startRevision;
    this.startedAt = now();
    this.watcher = store.watch(ROOT, (b) => this.record(b.revision), { fromRevision: startRevision, onError: () => { this.watcher = undefined; } });
  }

  static async start(store: Store, opts: { limit?: number; now?: () => number } = {}): Promise<RevisionClock> {
    return new RevisionClock(store, await store.currentRevision(), opts.limit ?? 10_000, opts.now ?? Date.now);
  }

  private record(revision: number): void {
    this.revs.push(revision);
    this.times.push(this.now());
    // Trimmed in steps of half the limit: amortized O(1) per revision, at most 1.5 x limit kept.
    if (this.revs.length > this.limit + (this.limit >> 1)) { this.revs.splice(0, this.revs.length - this.limit); this.times.splice(0, this.times.length - this.limit); }
  }

  /** When `revision` happened, or undefined when the clock did not see it. */
  timeOf(revision: number): number | undefined {
    const i = lowerBound(this.revs, revision);
    return this.revs[i] === revision ? this.times[i] : undefined;
  }

  /**
   * The revision to watch from (exclusive) to get every event at or after `ms`, and whether
   * events that old may be missing (the clock started, or forgot, after `ms`).
   */
  revisionSince(ms: number): { from: number; complete: boolean; oldest: number } {
    const oldest = this.times.length && this.revs[0] !== this.startRevision + 1 ? (this.times[0] as number) : this.startedAt;
    const i = lowerBound(this.times, ms);
    const from = i < this.revs.length ? (this.revs[i] as number) - 1 : (this.revs[this.revs.length - 1] ?? this.startRevision);
    return { from, complete: ms >= oldest, oldest };
  }

  cancel(): void { this.watcher?.cancel(); this.watcher = undefined; }
}

/** First index whose value is >= x (the array is sorted ascending). */
function lowerBound(a: readonly number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((a[mid] as number) < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}
