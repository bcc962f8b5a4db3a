/**
 * When each part of a task's log was written. Task processes write straight into
 * `<dir>/<taskId>.log` (they outlive the agent, so nothing can sit in their output pipe to
 * stamp lines), so the agent watches the directory and, each time a log grows, records a mark
 * `{end: size, time: now}` in `<taskId>.log.times` (text lines `END UNIX_MS`). A line's time is
 * that of the first mark at or past its end: precise to the watcher's latency (inotify, a few
 * ms) while the agent runs. Bytes written while the agent was down get the file's mtime when it
 * comes back (the time of the last of them): an upper bound. `shoal service logs --since` and
 * `--timestamps` and the merging of tasks' lines by time read these marks.
 */
import { watch, type FSWatcher } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Mark { end: number; time: number }

/** Marks kept per log; past it every other one is dropped (times only get coarser, never earlier). */
const MAX_MARKS = 20_000;
const LOG_RE = /^(.+)\.log$/;

interface FileState { marks: Mark[]; loaded: Promise<void>; writes: Promise<void>; noting: Promise<void> }

export class LogTimes {
  private readonly files = new Map<string, FileState>();
  private readonly dirty = new Set<string>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly dir: string, private readonly opts: { now?: () => number; coalesceMs?: number; pollMs?: number; log?: (m: string) => void } = {}) {}

  private now(): number { return (this.opts.now ?? Date.now)(); }

  /** Starts watching; bytes already in the logs are dated by the files' mtimes. Idempotent. */
  async start(): Promise<void> {
    if (this.poller) return;
    this.stopped = false;
    await mkdir(this.dir, { recursive: true });
    try {
      this.watcher = watch(this.dir, (_ev, name) => { if (name && LOG_RE.test(name)) this.touch(name.slice(0, -4)); });
      this.watcher.on('error', () => { this.watcher = undefined; });
    } catch (e) {
      this.opts.log?.(`log times: cannot watch ${this.dir} (${String(e)}); polling only`);
    }
    for (const f of await readdir(this.dir)) {
      const m = LOG_RE.exec(f);
      if (m?.[1]) await this.note(m[1], true);
    }
    // Safety net for missed inotify events (and filesystems without them).
    this.poller = setInterval(() => { for (const id of this.files.keys()) this.touch(id); }, this.opts.pollMs ?? 2000);
    this.poller.unref();
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
  }

  private touch(taskId: string): void {
    if (this.stopped) return;
    this.dirty.add(taskId);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const ids = [...this.dirty];
      this.dirty.clear();
      for (const id of ids) void this.note(id).catch(() => undefined);
    }, this.opts.coalesceMs ?? 10);
  }

  private state(taskId: string): FileState {
    let s = this.files.get(taskId);
    if (!s) {
      const fresh: FileState = { marks: [], loaded: Promise.resolve(), writes: Promise.resolve(), noting: Promise.resolve() };
      fresh.loaded = readFile(this.timesPath(taskId), 'utf8').then((text) => {
        for (const line of text.split('\n')) {
          const m = /^(\d+) (\d+)$/.exec(line);
          if (m) fresh.marks.push({ end: Number(m[1]), time: Number(m[2]) });
        }
      }, () => undefined);
      this.files.set(taskId, fresh);
      s = fresh;
    }
    return s;
  }

  private timesPath(taskId: string): string { return join(this.dir, `${taskId}.log.times`); }

  /**
   * Records a mark if the log grew since the last one (idempotent). `recovering`: the growth
   * happened while nobody watched, dated by the file's mtime. Resolves once recorded in memory.
   */
  note(taskId: string, recovering = false): Promise<void> {
    // One at a time per log: two concurrent notes would both see the same growth.
    const s = this.state(taskId);
    s.noting = s.noting.then(() => this.noteNow(taskId, s, recovering), () => this.noteNow(taskId, s, recovering));
    return s.noting;
  }

  private async noteNow(taskId: string, s: FileState, recovering: boolean): Promise<void> {
    await s.loaded;
    let st;
    try { st = await stat(join(this.dir, `${taskId}.log`)); } catch { return; }
    const last = s.marks[s.marks.length - 1];
    if (last && st.size === last.end) return;
    if (last && st.size < last.end) {
      // Truncated or replaced: earlier marks describe bytes that are gone.
      s.marks.length = 0;
      s.writes = s.writes.then(() => writeFile(this.timesPath(taskId), ''), () => undefined);
    }
    if (st.size === 0) return;
    const time = Math.max(recovering ? Math.round(st.mtimeMs) : this.now(), s.marks[s.marks.length - 1]?.time ?? 0);
    const mark = { end: st.size, time };
    s.marks.push(mark);
    if (s.marks.length > MAX_MARKS) {
      s.marks.splice(0, s.marks.length, ...s.marks.filter((_m, i) => i % 2 === 1 || i === s.marks.length - 1));
      const all = s.marks.map((m) => `${m.end} ${m.time}\n`).join('');
      s.writes = s.writes.then(() => writeFile(this.timesPath(taskId), all), () => undefined);
    } else {
      s.writes = s.writes.then(() => appendFile(this.timesPath(taskId), `${mark.end} ${mark.time}\n`), () => undefined);
    }
  }

  /** The task's marks, oldest first (after recording any growth not yet noted). */
  async marks(taskId: string): Promise<readonly Mark[]> {
    await this.note(taskId);
    return this.state(taskId).marks;
  }
}

/** The time of the byte range ending at `end` (exclusive): the first mark at or past it; `fallback` when none. */
export function timeAt(marks: readonly Mark[], end: number, fallback: number): number {
  let lo = 0, hi = marks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((marks[mid] as Mark).end < end) lo = mid + 1; else hi = mid;
  }
  return marks[lo]?.time ?? fallback;
}

/** The offset from which every line was written at or after `ms` (lines before it were earlier). */
export function offsetSince(marks: readonly Mark[], ms: number): number {
  let lo = 0, hi = marks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((marks[mid] as Mark).time < ms) lo = mid + 1; else hi = mid;
  }
  // Bytes after the previous mark's end carry the time of mark `lo` (>= ms).
  return lo === 0 ? 0 : (marks[lo - 1] as Mark).end;
}
