/**
 * The in-memory event history that watches replay from: one batch per revision, for every
 * revision in (compacted, last]. Indexed by revision in O(1); dropping old entries is amortised O(1).
 */
import type { WatchBatch } from './types.js';

export class EventHistory {
  private entries: WatchBatch[] = [];
  /** Index in `entries` of the batch of revision compacted + 1. */
  private head = 0;
  private compactedRev: number;

  /** `compacted`: the revision before the first one this history will hold. */
  constructor(compacted: number) {
    this.compactedRev = compacted;
  }

  /** Events after this revision are available; a watch from before it cannot be served. */
  get compacted(): number {
    return this.compactedRev;
  }

  /** Number of revisions held. */
  get length(): number {
    return this.entries.length - this.head;
  }

  /** Appends the batch of the next revision; revisions must be consecutive. */
  push(batch: WatchBatch): void {
    const expected = this.compactedRev + this.length + 1;
    if (batch.revision !== expected) {
      throw new Error(`event history: revision ${batch.revision} pushed, expected ${expected}`);
    }
    this.entries.push(batch);
  }

  /** The batch of `revision`, undefined when compacted or not yet written. */
  at(revision: number): WatchBatch | undefined {
    if (revision <= this.compactedRev) return undefined;
    return this.entries[this.head + revision - this.compactedRev - 1];
  }

  /** Forgets every revision <= `revision` (clamped to the held range). */
  compact(revision: number): void {
    const last = this.compactedRev + this.length;
    const upto = Math.min(revision, last);
    if (upto <= this.compactedRev) return;
    this.head += upto - this.compactedRev;
    this.compactedRev = upto;
    // Reclaim the dropped prefix once it dominates, keeping each drop amortised O(1).
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}
