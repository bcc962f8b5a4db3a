/**
 * Reads task log files for `shoal service logs`: whole lines with the time each was written
 * (log-times.ts), the last `tail` lines of each task and/or those since `since`, every file's
 * backlog merged by time; with `follow`, then polls for what is appended until cancelled.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { offsetSince, timeAt, type LogTimes, type Mark } from './log-times.js';

const CHUNK = 64 * 1024;
const POLL_MS = 200;
/** Text per message: the manager refuses WebSocket messages over 1 MiB. */
const MAX_BATCH_BYTES = 256 * 1024;

export interface LogFile { taskId: string; path: string }
export interface LogReadOptions { follow: boolean; tail?: number; since?: number }
/** `[taskId, unixMs, text]`, text without its newline. */
export type TimedLine = [string, number, string];

export interface LogLineSink {
  lines(batch: TimedLine[]): void;
  /** The backlog was sent (following: new lines come next). */
  synced(): void;
  end(): void;
}

/** Where the line holding `offset` starts (searching back for a newline). */
async function lineStart(fh: FileHandle, offset: number): Promise<number> {
  const buf = Buffer.alloc(4096);
  let pos = offset;
  while (pos > 0) {
    const len = Math.min(buf.length, pos);
    const { bytesRead } = await fh.read(buf, 0, len, pos - len);
    const nl = buf.lastIndexOf(10, bytesRead - 1);
    if (nl >= 0) return pos - len + nl + 1;
    pos -= len;
  }
  return 0;
}

/** Where the last `n` lines of the first `size` bytes start. */
async function tailStart(fh: FileHandle, size: number, n: number): Promise<number> {
  if (n === 0) return size;
  const buf = Buffer.alloc(CHUNK);
  let pos = size;
  let count = 0;
  let skipFinal = true; // a newline ending the file ends the last line, it does not start one
  while (pos > 0) {
    const len = Math.min(CHUNK, pos);
    const { bytesRead } = await fh.read(buf, 0, len, pos - len);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (buf[i] !== 10) { skipFinal = false; continue; }
      if (skipFinal) { skipFinal = false; continue; }
      if (++count === n) return pos - len + i + 1;
    }
    pos -= len;
  }
  return 0;
}

interface Cursor { file: LogFile; offset: number; partial: Buffer; marks: readonly Mark[] }

/** Streams the files' lines to `sink`; returns cancel. `times` dates the lines (none: read time). */
export function streamLogFiles(files: LogFile[], opts: LogReadOptions, times: LogTimes | undefined, sink: LogLineSink): () => void {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const cursors = new Map<string, Cursor>();

  /** Reads what `c` has not read yet into `out`; `final` turns a last unterminated line into a line. */
  const drain = async (c: Cursor, out: TimedLine[], first: boolean, final: boolean): Promise<void> => {
    let fh: FileHandle;
    try { fh = await open(c.file.path, 'r'); } catch { return; /* no output yet */ }
    try {
      c.marks = times ? await times.marks(c.file.taskId) : [];
      const { size } = await fh.stat();
      if (size < c.offset) { c.offset = 0; c.partial = Buffer.alloc(0); } // truncated
      if (first) {
        let start = 0;
        if (opts.since !== undefined) start = await lineStart(fh, offsetSince(c.marks, opts.since));
        if (opts.tail !== undefined) start = Math.max(start, await tailStart(fh, size, opts.tail));
        c.offset = start;
      }
      const now = Date.now();
      const buf = Buffer.alloc(CHUNK);
      while (!cancelled && c.offset < size) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - c.offset), c.offset);
        if (bytesRead === 0) break;
        const data = c.partial.length ? Buffer.concat([c.partial, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
        const dataStart = c.offset - c.partial.length;
        let from = 0;
        for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, from)) {
          out.push([c.file.taskId, timeAt(c.marks, dataStart + nl + 1, now), data.toString('utf8', from, nl)]);
          from = nl + 1;
        }
        c.partial = Buffer.from(data.subarray(from));
        c.offset += bytesRead;
      }
      if (final && c.partial.length) {
        out.push([c.file.taskId, timeAt(c.marks, c.offset, now), c.partial.toString('utf8')]);
        c.partial = Buffer.alloc(0);
      }
    } finally {
      await fh.close();
    }
  };

  const send = (lines: TimedLine[]): void => {
    let batch: TimedLine[] = [];
    let bytes = 0;
    for (const l of lines) {
      if (bytes + l[2].length > MAX_BATCH_BYTES && batch.length) { sink.lines(batch); batch = []; bytes = 0; }
      batch.push(l.length > MAX_BATCH_BYTES ? [l[0], l[1], l[2].slice(0, MAX_BATCH_BYTES)] : l);
      bytes += l[2].length;
    }
    if (batch.length) sink.lines(batch);
  };

  const round = async (first: boolean): Promise<void> => {
    const out: TimedLine[] = [];
    for (const f of files) {
      let c = cursors.get(f.taskId);
      if (!c) { c = { file: f, offset: 0, partial: Buffer.alloc(0), marks: [] }; cursors.set(f.taskId, c); }
      await drain(c, out, first, !opts.follow);
      if (cancelled) return;
    }
    // Stable: each task's lines keep their order; tasks interleave by time.
    send(out.sort((a, b) => a[1] - b[1]));
    if (first) sink.synced();
    if (!opts.follow) { sink.end(); return; }
    timer = setTimeout(() => { void round(false).catch(() => sink.end()); }, POLL_MS);
  };
  void round(true).catch(() => sink.end());
  return () => {
    cancelled = true;
    if (timer) clearTimeout(timer);
  };
}
