/**
 * The embedded cluster-state store: an in-process implementation of {@link Store}.
 * See README.md in this folder for the on-disk format and guarantees.
 */
import { mkdir } from 'node:fs/promises';
import { invalid } from '../errors.js';
import { EmbeddedStore } from './core.js';
import { lockDir } from './dir-lock.js';
import { DurableLog } from './durable-log.js';
import { Mvcc } from './mvcc.js';
import { recover, type RecoveryReport } from './recovery.js';
import type { Store } from './types.js';
import { SegmentWriter } from './wal.js';

export type { RecoveryReport } from './recovery.js';

export interface EmbeddedStoreOptions {
  /**
   * Directory for the write-ahead log and snapshots. Without it the store is memory-only:
   * same semantics, nothing survives `close()`.
   */
  dir?: string;
  /** Take a snapshot and drop old log segments after this many log records. Default 10000. */
  snapshotEveryRecords?: number;
  /** Revisions of events kept for watches to start from (older ones are compacted). Default 10000. */
  historyLimit?: number;
  /** Clock for lease deadlines, in milliseconds. Default `Date.now`. */
  now?: () => number;
}

export const DEFAULT_SNAPSHOT_EVERY_RECORDS = 10_000;
export const DEFAULT_HISTORY_LIMIT = 10_000;

/**
 * Opens the embedded store. With `dir`, recovers the state from the directory (snapshot plus
 * log, truncating a torn tail) and takes the directory's lock: rejects with Conflict when another
 * live process (or another store in this process) holds it, and with Internal when the log is
 * corrupt before its tail. Without `dir`, returns an empty memory-only store.
 */
export async function openEmbeddedStore(opts: EmbeddedStoreOptions = {}): Promise<Store> {
  const historyLimit = opts.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isSafeInteger(historyLimit) || historyLimit < 1) {
    throw invalid(`historyLimit must be a positive integer, got ${String(opts.historyLimit)}`);
  }
  const snapshotEvery = opts.snapshotEveryRecords ?? DEFAULT_SNAPSHOT_EVERY_RECORDS;
  if (!Number.isSafeInteger(snapshotEvery) || snapshotEvery < 1) {
    throw invalid(`snapshotEveryRecords must be a positive integer, got ${String(opts.snapshotEveryRecords)}`);
  }
  const now = opts.now ?? Date.now;
  if (opts.dir === undefined) return new EmbeddedStore({ mvcc: new Mvcc(historyLimit), now });

  const dir = opts.dir;
  await mkdir(dir, { recursive: true });
  const lock = await lockDir(dir);
  try {
    const rec = await recover(dir, historyLimit, true);
    const writer = await SegmentWriter.openForAppend(dir, rec.lastSegment);
    const log = new DurableLog(dir, writer, rec.recordsSinceSnapshot, snapshotEvery, lock, rec);
    return new EmbeddedStore({ mvcc: rec.mvcc, log, now });
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/**
 * Reads a store directory without changing it (no lock taken) and reports what recovery would
 * find. Rejects, like {@link openEmbeddedStore}, when the log is corrupt before its tail; a torn
 * tail is reported in `tornTail`. For tests and operators' checks; the directory should not be
 * written meanwhile.
 */
export async function inspectEmbeddedStore(dir: string): Promise<RecoveryReport> {
  return (await recover(dir, 1, false)).report;
}
