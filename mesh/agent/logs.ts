/**
 * Reads task log files for `shoal service logs`: whole lines with the time each was written
 * (log-times.ts), the last `tail` lines of each task and/or those since `since`. What the
 * tasks already wrote is merged across the node's tasks by time as it is read (a k-way merge
 * of files that are each in time order), so a large log is streamed in bounded batches, never
 * held whole; with `follow`, new lines are then polled for until cancelled.
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

/** One task's log, read forward in chunks into a queue of timed lines. */
class Cursor {
  offset = 0;
  started = false;
  private partial = Buffer.alloc(0);
  private marks: readonly Mark[] = [];
  private fh: FileHandle | undefined;
  /** Bytes to read up to in this round (the size when the round began). */
  private limit = 0;
  readonly queue: TimedLine[] = [];
  private head = 0;

  constructor(readonly file: LogFile) {}

  /** Opens the file for a round; false when it does not exist (yet). Applies tail/since on the first. */
  async begin(times: LogTimes | undefined, opts: LogReadOptions, first: boolean): Promise<boolean> {
    try { this.fh = await open(this.file.path, 'r'); } catch { return false; }
    this.marks = times ? await times.marks(this.file.taskId) : [];
    const { size } = await this.fh.stat();
    if (size < this.offset) { this.offset = 0; this.partial = Buffer.alloc(0); } // truncated
    if (!this.started) {
      this.started = true;
      // tail and since describe what was written when asked; a log that appears later is all new.
      if (first) {
        let start = 0;
        if (opts.since !== undefined) start = await lineStart(this.fh, offsetSince(this.marks, opts.since));
        if (opts.tail !== undefined) start = Math.max(start, await tailStart(this.fh, size, opts.tail));
        this.offset = start;
      }
    }
    this.limit = size;
    return true;
  }

  /** The next line without taking it, reading a chunk when the queue is empty; undefined at the round's end. */
  async peek(final: boolean): Promise<TimedLine | undefined> {
    while (this.head >= this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
      if (!await this.readChunk(final)) return undefined;
    }
    return this.queue[this.head];
  }

  take(): TimedLine { return this.queue[this.head++] as TimedLine; }

  private async readChunk(final: boolean): Promise<boolean> {
    const fh = this.fh;
    if (!fh) return false;
    const now = Date.now();
    if (this.offset >= this.limit) {
      if (final && this.partial.length) {
        this.queue.push([this.file.taskId, timeAt(this.marks, this.offset, now), this.partial.toString('utf8')]);
        this.partial = Buffer.alloc(0);
        return true;
      }
      return false;
    }
    const buf = Buffer.alloc(Math.min(CHUNK, this.limit - this.offset));
    const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
    if (bytesRead === 0) { this.limit = this.offset; return this.readChunk(final); }
    const data = this.partial.length ? Buffer.concat([this.partial, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    const dataStart = this.offset - this.partial.length;
    let from = 0;
    for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, from)) {
      this.queue.push([this.file.taskId, timeAt(this.marks, dataStart + nl + 1, now), data.toString('utf8', from, nl)]);
      from = nl + 1;
    }
    this.partial = Buffer.from(data.subarray(from));
    this.offset += bytesRead;
    return true;
  }

  async end(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

/** Streams the files' lines to `sink`; returns cancel. `times` dates the lines (none: read time). */
export function streamLogFiles(files: LogFile[], opts: LogReadOptions, times: LogTimes | undefined, sink: LogLineSink): () => void {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const cursors = files.map((f) => new Cursor(f));

  let batch: TimedLine[] = [];
  let bytes = 0;
  const push = (l: TimedLine): void => {
    const line: TimedLine = l[2].length > MAX_BATCH_BYTES ? [l[0], l[1], l[2].slice(0, MAX_BATCH_BYTES)] : l;
    if (bytes + line[2].length > MAX_BATCH_BYTES && batch.length) flush();
    batch.push(line);
    bytes += line[2].length;
  };
  const flush = (): void => {
    if (batch.length && !cancelled) sink.lines(batch);
    batch = [];
    bytes = 0;
  };

  /** One pass over what the files hold now: a k-way merge by time (each file is in time order). */
  const round = async (first: boolean): Promise<void> => {
    const open: Cursor[] = [];
    for (const c of cursors) if (await c.begin(times, opts, first)) open.push(c);
    try {
      const final = !opts.follow;
      for (;;) {
        if (cancelled) return;
        let best: Cursor | undefined;
        let bestTime = Infinity;
        for (const c of open) {
          const l = await c.peek(final);
          // Ties go to the earlier file: a stable merge.
          if (l && l[1] < bestTime) { best = c; bestTime = l[1]; }
        }
        if (!best) break;
        push(best.take());
      }
      flush();
    } finally {
      for (const c of open) await c.end();
    }
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
