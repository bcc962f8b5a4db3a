/**
 * Writes one agent's task statuses to the store: per task in order, across tasks in parallel
 * (up to `concurrency` writes), and only the newest status of a task whose earlier write is
 * still in flight (older queued ones are replaced: the store would overwrite them anyway, and
 * a write behind a slow one must not pile up). At most `maxQueued` tasks wait; past it the
 * task queued longest is dropped and counted. Owned by one agent session.
 */
import type { TaskStatus } from '../../src/model/types.js';

/** Counters of a writer; monotonic. */
export interface StatusWriterStats {
  /** Queued statuses replaced by a newer one for the same task before being written. */
  statusCoalesced: number;
  /** Statuses dropped because more than `maxQueued` tasks were waiting. */
  statusDropped: number;
}

export interface StatusWriterOptions {
  /** Writes in flight at once, for different tasks. Default 4. */
  concurrency?: number;
  /** Most tasks waiting for a write. Default 4096. */
  maxQueued?: number;
  /** A failed write (already retried by `write` itself as it sees fit). */
  onError: (taskId: string, e: unknown) => void;
  /** Called when a queued status is dropped for lack of room. */
  onDrop?: (taskId: string) => void;
}

export class TaskStatusWriter {
  readonly stats: StatusWriterStats = { statusCoalesced: 0, statusDropped: 0 };
  private readonly queued = new Map<string, TaskStatus>();
  private readonly inFlight = new Set<string>();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly concurrency: number;
  private readonly maxQueued: number;

  constructor(private readonly write: (taskId: string, status: TaskStatus) => Promise<void>, private readonly opts: StatusWriterOptions) {
    this.concurrency = opts.concurrency ?? 4;
    this.maxQueued = opts.maxQueued ?? 4096;
  }

  /** Queues `status` for `taskId`; it is written after any write for that task in flight. */
  submit(taskId: string, status: TaskStatus): void {
    if (this.queued.delete(taskId)) this.stats.statusCoalesced++;
    this.queued.set(taskId, status);
    for (const id of this.queued.keys()) {
      if (this.queued.size <= this.maxQueued) break;
      this.queued.delete(id);
      this.stats.statusDropped++;
      this.opts.onDrop?.(id);
    }
    this.pump();
  }

  /** Tasks waiting (not counting writes in flight). */
  get queuedCount(): number { return this.queued.size; }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.queued.size === 0 && this.inFlight.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    for (const [id, status] of this.queued) {
      if (this.inFlight.size >= this.concurrency) return;
      if (this.inFlight.has(id)) continue; // its newer status waits for the write in flight
      this.queued.delete(id);
      this.inFlight.add(id);
      Promise.resolve()
        .then(() => this.write(id, status))
        .catch((e: unknown) => this.opts.onError(id, e))
        .finally(() => {
          this.inFlight.delete(id);
          this.pump();
          if (this.queued.size === 0 && this.inFlight.size === 0) for (const r of this.idleWaiters.splice(0)) r();
        });
    }
  }
}
