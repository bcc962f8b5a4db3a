/**
 * The durable {@link StoreLog}: appends frames to the tail segment, and every
 * `snapshotEveryRecords` records starts a new segment and writes a snapshot in the background;
 * once the snapshot is durable, the segments and snapshots before it are deleted.
 *
 * Crash safety of a snapshot: the new segment is created (and its directory entry fsync'd)
 * before any record goes into it, and old files are deleted only after the new snapshot is
 * renamed into place and the directory fsync'd. At every instant the newest complete snapshot
 * plus the segments from its `nextSegment` on hold every acknowledged write.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoreLog } from './core.js';
import type { DirLock } from './dir-lock.js';
import type { MvccImage } from './mvcc.js';
import type { WalRecord } from './records.js';
import { removeSnapshot, writeSnapshot } from './snapshot.js';
import { SegmentWriter, segmentName } from './wal.js';

export class DurableLog implements StoreLog {
  private snapshotting: Promise<void> | undefined;
  /** The oldest segment still on disk (older ones are covered by the newest snapshot). */
  private firstSegment: number;
  /** The snapshot now on disk (its sequence number), to delete once a newer one is durable. */
  private currentSnapshot: number | undefined;

  constructor(
    private readonly dir: string,
    private writer: SegmentWriter,
    private recordsSinceSnapshot: number,
    private readonly snapshotEveryRecords: number,
    private readonly lock: DirLock,
    state: { firstSegment: number; snapshot: number | undefined },
  ) {
    this.firstSegment = state.firstSegment;
    this.currentSnapshot = state.snapshot;
  }

  async append(records: WalRecord[]): Promise<void> {
    await this.writer.append(records);
    this.recordsSinceSnapshot += records.length;
  }

  wantsSnapshot(): boolean {
    return this.snapshotting === undefined && this.recordsSinceSnapshot >= this.snapshotEveryRecords;
  }

  async snapshot(image: MvccImage): Promise<void> {
    const next = await SegmentWriter.create(this.dir, this.writer.seq + 1);
    const old = this.writer;
    this.writer = next;
    this.recordsSinceSnapshot = 0;
    this.snapshotting = old.close()
      .then(() => this.writeSnapshotAndPrune(image, next.seq))
      .catch((err: unknown) => {
        // Not fatal: the log still holds everything; the next threshold retries.
        process.emitWarning(`shoal store: snapshot in ${this.dir} failed: ${err instanceof Error ? err.message : String(err)}`);
      })
      .finally(() => {
        this.snapshotting = undefined;
      });
  }

  private async writeSnapshotAndPrune(image: MvccImage, nextSegment: number): Promise<void> {
    await writeSnapshot(this.dir, nextSegment, image);
    const obsolete = this.currentSnapshot;
    this.currentSnapshot = nextSegment;
    if (obsolete !== undefined) await removeSnapshot(this.dir, obsolete);
    for (let seq = this.firstSegment; seq < nextSegment; seq++) {
      await rm(join(this.dir, segmentName(seq)), { force: true });
    }
    this.firstSegment = nextSegment;
  }

  async close(): Promise<void> {
    await this.snapshotting;
    try {
      await this.writer.close();
    } finally {
      await this.lock.release();
    }
  }
}
