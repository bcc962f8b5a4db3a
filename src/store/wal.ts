/**
 * Write-ahead log segments: `wal-<seq as 16 hex digits>.log`, a sequence of frames (frame.ts),
 * each a JSON array of {@link WalRecord}s. A new segment starts at every snapshot; the snapshot
 * names the first segment to replay after it.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeFrame } from './frame.js';
import { fsyncDir, writeAll } from './fsutil.js';
import type { WalRecord } from './records.js';

export const segmentName = (seq: number): string => `wal-${seq.toString(16).padStart(16, '0')}.log`;

/** The sequence number of a segment file name, undefined for other names. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^wal-([0-9a-f]{16})\.log$/.exec(name);
  return m ? Number.parseInt(m[1] as string, 16) : undefined;
}

/** The open tail segment. Appends must not overlap (the store has one in flight at a time). */
export class SegmentWriter {
  private constructor(
    private readonly fh: FileHandle,
    readonly seq: number,
  ) {}

  /** Creates a new, empty segment and makes its directory entry durable before any append. */
  static async create(dir: string, seq: number): Promise<SegmentWriter> {
    const fh = await open(join(dir, segmentName(seq)), 'wx');
    try {
      await fsyncDir(dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new SegmentWriter(fh, seq);
  }

  /** Opens an existing segment (already recovered and cut to its last valid frame) for appending. */
  static async openForAppend(dir: string, seq: number): Promise<SegmentWriter> {
    return new SegmentWriter(await open(join(dir, segmentName(seq)), 'a'), seq);
  }

  /** Appends the records as one frame and fdatasyncs; resolves once they are durable. */
  async append(records: WalRecord[]): Promise<void> {
    await writeAll(this.fh, encodeFrame(JSON.stringify(records)));
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
