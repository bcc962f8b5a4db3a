/**
 * Recovery: rebuilds the state machine from a store directory (newest snapshot, then every
 * log segment after it, in order).
 *
 * - A damaged tail (the last frame of the last segment, with nothing valid after it) is what a
 *   crash during a write leaves; it was never acknowledged, so it is cut off.
 * - Any other damage, a missing segment or a record that does not fit the state means
 *   acknowledged data may be lost: recovery refuses with an Internal error saying where.
 */
import { mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ShoalError } from '../errors.js';
import { FRAME_HEADER_BYTES, scanFrames } from './frame.js';
import { fsyncDir } from './fsutil.js';
import { Mvcc } from './mvcc.js';
import type { WalRecord } from './records.js';
import { parseSnapshotName, readSnapshot, removeSnapshot, SNAPSHOT_TEMP } from './snapshot.js';
import { parseSegmentName, segmentName } from './wal.js';

export interface RecoveryReport {
  /** Revision of the snapshot recovery started from (0 without one). */
  snapshotRevision: number;
  /** Segment numbers replayed, in order. */
  segments: number[];
  /** Log records replayed on top of the snapshot. */
  records: number;
  /** Store revision after recovery. */
  revision: number;
  /** A torn tail found in the last segment (cut off when repairing). */
  tornTail?: { segment: string; offset: number; bytes: number; reason: string };
}

export interface Recovered {
  mvcc: Mvcc;
  /** The segment to append to. */
  lastSegment: number;
  /** Sequence number of the snapshot recovered from (undefined without one). */
  snapshot: number | undefined;
  /** The first segment replayed (the oldest one kept). */
  firstSegment: number;
  /** Records in the log since the snapshot (drives the next snapshot). */
  recordsSinceSnapshot: number;
  report: RecoveryReport;
}

/**
 * Recovers `dir`. With `repair`, also makes the directory ready for appending: cuts a torn
 * tail, removes leftovers of an interrupted snapshot and creates the first segment of an empty
 * directory. Without it, the directory is only read (for inspection; no lock needed).
 */
export async function recover(dir: string, historyLimit: number, repair: boolean): Promise<Recovered> {
  if (repair) await mkdir(dir, { recursive: true });
  const names = await readdir(dir);
  const snapshots = names.map(parseSnapshotName).filter((s): s is number => s !== undefined).sort((a, b) => a - b);
  const newest = snapshots[snapshots.length - 1];
  const snapshot = newest === undefined ? undefined : await readSnapshot(dir, newest);
  const mvcc = new Mvcc(historyLimit, snapshot?.image);
  const first = snapshot?.nextSegment ?? 1;
  const all = names.map(parseSegmentName).filter((s): s is number => s !== undefined).sort((a, b) => a - b);
  const segments = all.filter((s) => s >= first);

  if (repair) {
    // Leftovers of a snapshot that was interrupted, or whose cleanup was.
    await rm(join(dir, SNAPSHOT_TEMP), { force: true });
    for (const s of snapshots) if (s !== newest) await removeSnapshot(dir, s);
    for (const s of all) if (s < first) await rm(join(dir, segmentName(s)), { force: true });
  }
  segments.forEach((seq, i) => {
    if (seq !== first + i) throw corrupt(dir, `log segment ${segmentName(first + i)} is missing`);
  });
  if (segments.length === 0 && snapshot) throw corrupt(dir, `log segment ${segmentName(first)} is missing`);

  const report: RecoveryReport = { snapshotRevision: snapshot?.image.revision ?? 0, segments, records: 0, revision: 0 };
  for (const [i, seq] of segments.entries()) {
    const path = join(dir, segmentName(seq));
    const buf = await readFile(path);
    const scan = scanFrames(buf);
    let offset = 0;
    for (const payload of scan.payloads) {
      for (const record of decode(payload, path, offset)) {
        try {
          mvcc.apply(record);
        } catch (err) {
          throw corrupt(dir, `${path} near byte ${offset} does not fit the state: ${err instanceof Error ? err.message : String(err)}`, err);
        }
        report.records += 1;
      }
      offset += FRAME_HEADER_BYTES + payload.length;
    }
    const damage = scan.damage;
    if (!damage) continue;
    const isLast = i === segments.length - 1;
    if (!isLast || damage.validFrameAfter) {
      throw corrupt(
        dir,
        `${path} is damaged at byte ${damage.offset} (${damage.reason}) and ${isLast ? 'valid records follow it' : 'later segments follow it'}: ` +
          'this is not a torn write from a crash, and skipping it would drop acknowledged writes. ' +
          `Restore the directory from a backup, or truncate ${segmentName(seq)} at byte ${damage.offset} (and remove later segments) to accept losing them`,
      );
    }
    report.tornTail = { segment: segmentName(seq), offset: damage.offset, bytes: buf.length - damage.offset, reason: damage.reason };
    if (repair) await truncateDurably(path, damage.offset);
  }

  let lastSegment = segments[segments.length - 1];
  if (lastSegment === undefined) {
    lastSegment = first;
    if (repair) {
      const fh = await open(join(dir, segmentName(first)), 'wx');
      await fh.close();
      await fsyncDir(dir);
    }
  }
  report.revision = mvcc.revision;
  return { mvcc, lastSegment, snapshot: newest, firstSegment: first, recordsSinceSnapshot: report.records, report };
}

function decode(payload: Buffer, path: string, offset: number): WalRecord[] {
  try {
    const records: unknown = JSON.parse(payload.toString('utf8'));
    if (!Array.isArray(records)) throw new Error('a frame must hold an array of records');
    return records as WalRecord[];
  } catch (err) {
    // The checksum matched, so these bytes were written as they are: a bug, not a crash.
    throw corrupt(path, `frame at byte ${offset} has a valid checksum but cannot be decoded`, err);
  }
}

async function truncateDurably(path: string, size: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function corrupt(where: string, message: string, cause?: unknown): ShoalError {
  return new ShoalError('Internal', 'STORE_CORRUPT', `store ${where} cannot be recovered: ${message}`, { cause });
}
