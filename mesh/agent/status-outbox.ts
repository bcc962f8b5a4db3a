/**
 * The agent's task-status outbox: what the session still owes the manager.
 *
 * - `pending`: statuses to send after the next join, ONE per task (the latest wins: the manager
 *   only keeps the latest anyway, and "starting" must never land after "running").
 * - `unconfirmed`: statuses written to a socket but not yet covered by a pong. A pong answers a
 *   ping sent after them on the same ordered stream, so it proves the manager received them;
 *   anything unconfirmed when the socket dies (a half-open connection swallows writes) goes
 *   back to `pending`.
 * Both maps are bounded by `max` tasks; past it the least recently updated task's entry is
 * dropped and counted. Only the session calls these methods.
 */
import type { TaskStatus } from '../../src/model/types.js';

/** A status as the agent reports it (the manager stamps `since`). */
export type ReportedStatus = Omit<TaskStatus, 'since'>;

/** Counters of an outbox; monotonic. */
export interface OutboxStats {
  /** Statuses replaced by a newer one for the same task before they were sent. */
  statusCoalesced: number;
  /** Statuses dropped because more than `max` tasks were owed. */
  statusDropped: number;
}

export class StatusOutbox {
  private readonly pending = new Map<string, ReportedStatus>();
  private readonly unconfirmed = new Map<string, { status: ReportedStatus; seq: number }>();

  constructor(private readonly max: number, readonly stats: OutboxStats) {}

  /** Holds `status` for `taskId` until {@link take}; replaces an older one for the task. */
  queue(taskId: string, status: ReportedStatus): void {
    if (this.pending.delete(taskId)) this.stats.statusCoalesced++;
    this.pending.set(taskId, status);
    this.trim(this.pending);
  }

  /** Removes and returns every pending status, oldest first. */
  take(): Array<[string, ReportedStatus]> {
    const out = [...this.pending];
    this.pending.clear();
    return out;
  }

  /** Records that `status` went out before ping number `seq` (the next ping to be sent). */
  sent(taskId: string, status: ReportedStatus, seq: number): void {
    this.unconfirmed.delete(taskId);
    this.unconfirmed.set(taskId, { status, seq });
    this.trim(this.unconfirmed);
  }

  /** A pong for ping `seq` arrived: everything sent before it was received. */
  confirm(seq: number): void {
    for (const [id, e] of this.unconfirmed) if (e.seq <= seq) this.unconfirmed.delete(id);
  }

  /** The socket died: unconfirmed statuses are owed again, unless a newer one is pending. */
  requeueUnconfirmed(): void {
    for (const [id, e] of this.unconfirmed) if (!this.pending.has(id)) this.pending.set(id, e.status);
    this.unconfirmed.clear();
    this.trim(this.pending);
  }

  get pendingCount(): number { return this.pending.size; }
  get unconfirmedCount(): number { return this.unconfirmed.size; }

  private trim(m: Map<string, unknown>): void {
    // Map order is insertion order and updates re-insert, so the first key is the stalest task.
    for (const id of m.keys()) {
      if (m.size <= this.max) return;
      m.delete(id);
      this.stats.statusDropped++;
    }
  }
}
