/**
 * Snapshots: `snapshot-<seq as 16 hex digits>.snap`, one frame (frame.ts) holding the JSON of
 * {@link SnapshotFile}. `seq` is the first log segment to replay on top of it. A snapshot is
 * written to a temp file, fsync'd, renamed into place and the directory fsync'd, so a snapshot
 * under its final name is always complete.
 */
import { readFile, rename, rm, open } from 'node:fs/promises';
import { join } from 'node:path';
import { internal } from '../errors.js';
import { encodeFrame, frameAt } from './frame.js';
import { fsyncDir, writeAll } from './fsutil.js';
import type { MvccImage } from './mvcc.js';

export interface SnapshotFile {
  format: 1;
  /** First log segment holding records after this snapshot. */
  nextSegment: number;
  image: MvccImage;
}

export const snapshotName = (seq: number): string => `snapshot-${seq.toString(16).padStart(16, '0')}.snap`;
export const SNAPSHOT_TEMP = 'snapshot.tmp';

export function parseSnapshotName(name: string): number | undefined {
  const m = /^snapshot-([0-9a-f]{16})\.snap$/.exec(name);
  return m ? Number.parseInt(m[1] as string, 16) : undefined;
}

/** Durably writes a snapshot whose log continues at segment `nextSegment`. */
export async function writeSnapshot(dir: string, nextSegment: number, image: MvccImage): Promise<void> {
  const body: SnapshotFile = { format: 1, nextSegment, image };
  const tmp = join(dir, SNAPSHOT_TEMP);
  const fh = await open(tmp, 'w');
  try {
    await writeAll(fh, encodeFrame(JSON.stringify(body)));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, snapshotName(nextSegment)));
  await fsyncDir(dir);
}

/** Reads and verifies a snapshot; a damaged one is an Internal error (it was complete when renamed). */
export async function readSnapshot(dir: string, seq: number): Promise<SnapshotFile> {
  const path = join(dir, snapshotName(seq));
  const buf = await readFile(path);
  const f = frameAt(buf, 0);
  if (!f.ok || f.end !== buf.length) {
    throw internal(`store snapshot ${path} is damaged (${f.ok ? 'trailing bytes' : f.reason}); restore the directory from a backup`);
  }
  const body = JSON.parse(f.payload.toString('utf8')) as SnapshotFile;
  if (body.format !== 1 || body.nextSegment !== seq) {
    throw internal(`store snapshot ${path} has an unknown format or does not match its name`);
  }
  return body;
}

export async function removeSnapshot(dir: string, seq: number): Promise<void> {
  await rm(join(dir, snapshotName(seq)), { force: true });
}
