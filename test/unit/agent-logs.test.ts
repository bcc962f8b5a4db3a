/**
 * Task logs on the agent, on real files: LogTimes dates each part of a log as it grows
 * (inotify), survives a restart (the marks file, the mtime for what was written meanwhile);
 * streamLogFiles gives whole lines with their times, `tail` and `since` per task, every task's
 * backlog merged by time, then (follow) new lines.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogTimes, offsetSince, timeAt, type Mark } from '../../mesh/agent/log-times.js';
import { streamLogFiles, type LogReadOptions, type TimedLine } from '../../mesh/agent/logs.js';
import { until } from '../helpers/cluster.js';

let dir: string;
let times: LogTimes | undefined;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'shoal-logs-')); });
afterEach(() => { times?.stop(); times = undefined; rmSync(dir, { recursive: true, force: true }); });

const log = (id: string): string => join(dir, `${id}.log`);

/** Reads like the agent does for a manager; resolves the lines once the sink ends (not following). */
function read(ids: string[], opts: Omit<LogReadOptions, 'follow'>, t = times): Promise<TimedLine[]> {
  return new Promise((resolve) => {
    const out: TimedLine[] = [];
    streamLogFiles(ids.map((taskId) => ({ taskId, path: log(taskId) })), { follow: false, ...opts }, t, { lines: (b) => out.push(...b), synced: () => undefined, end: () => resolve(out) });
  });
}

describe('timeAt / offsetSince', () => {
  const marks: Mark[] = [{ end: 10, time: 100 }, { end: 25, time: 200 }, { end: 40, time: 300 }];
  it.each<[number, number]>([[1, 100], [10, 100], [11, 200], [25, 200], [40, 300], [41, 999]])('timeAt(end %i) = %i', (end, t) => {
    expect(timeAt(marks, end, 999)).toBe(t);
  });
  it.each<[number, number]>([[0, 0], [100, 0], [101, 10], [200, 10], [250, 25], [300, 25], [301, 40]])('offsetSince(%i) = %i', (ms, off) => {
    expect(offsetSince(marks, ms)).toBe(off);
  });
});

describe('LogTimes', () => {
  it('records a mark each time a log grows, in memory and in <task>.log.times', async () => {
    let now = 1_000;
    times = new LogTimes(dir, { now: () => now });
    await times.start();
    writeFileSync(log('a'), 'one\n');
    await until(async () => (await times?.marks('a'))?.length === 1, 'first mark');
    now = 2_000;
    appendFileSync(log('a'), 'two\nthree\n');
    await until(async () => (await times?.marks('a'))?.length === 2, 'second mark');
    expect(await times.marks('a')).toEqual([{ end: 4, time: 1_000 }, { end: 14, time: 2_000 }]);
    await until(() => readFileSync(`${log('a')}.times`, 'utf8') === '4 1000\n14 2000\n', 'marks on disk');
  });

  it('after a restart, reads its marks back and dates what was written meanwhile by the mtime', async () => {
    writeFileSync(log('b'), 'old\n');
    writeFileSync(`${log('b')}.times`, '4 5000\n');
    appendFileSync(log('b'), 'while away\n');
    utimesSync(log('b'), 7, 7); // seconds
    times = new LogTimes(dir, { now: () => 9_000 });
    await times.start();
    expect(await times.marks('b')).toEqual([{ end: 4, time: 5_000 }, { end: 15, time: 7_000 }]);
  });

  it('forgets marks of bytes that are gone when a log is truncated', async () => {
    let now = 1_000;
    times = new LogTimes(dir, { now: () => now });
    await times.start();
    writeFileSync(log('c'), 'aaaa\nbbbb\n');
    await times.note('c');
    truncateSync(log('c'), 0);
    now = 3_000;
    writeFileSync(log('c'), 'x\n');
    expect(await times.marks('c')).toEqual([{ end: 2, time: 3_000 }]);
  });
});

describe('streamLogFiles', () => {
  /** Two tasks whose lines interleave in time: marks written as if the agent had watched. */
  function twoTasks(): void {
    writeFileSync(log('a'), 'a1\na2\na3\n');
    writeFileSync(`${log('a')}.times`, '3 100\n6 300\n9 500\n');
    writeFileSync(log('b'), 'b1\nb2\nb3\n');
    writeFileSync(`${log('b')}.times`, '3 200\n6 400\n9 600\n');
  }
  const texts = (ls: TimedLine[]): string[] => ls.map((l) => `${l[0]}:${l[2]}@${l[1]}`);

  it('merges the tasks\' lines by the time they were written', async () => {
    twoTasks();
    times = new LogTimes(dir);
    await times.start();
    expect(texts(await read(['a', 'b'], {}))).toEqual(['a:a1@100', 'b:b1@200', 'a:a2@300', 'b:b2@400', 'a:a3@500', 'b:b3@600']);
  });

  it.each<[string, Omit<LogReadOptions, 'follow'>, string[]]>([
    ['tail 1 per task', { tail: 1 }, ['a:a3@500', 'b:b3@600']],
    ['tail 2 per task', { tail: 2 }, ['a:a2@300', 'b:b2@400', 'a:a3@500', 'b:b3@600']],
    ['tail 0', { tail: 0 }, []],
    ['tail more than there is', { tail: 50 }, ['a:a1@100', 'b:b1@200', 'a:a2@300', 'b:b2@400', 'a:a3@500', 'b:b3@600']],
    ['since a time between lines', { since: 350 }, ['b:b2@400', 'a:a3@500', 'b:b3@600']],
    ['since exactly a line\'s time', { since: 300 }, ['a:a2@300', 'b:b2@400', 'a:a3@500', 'b:b3@600']],
    ['since after everything', { since: 700 }, []],
    ['since and tail: both apply', { since: 250, tail: 1 }, ['a:a3@500', 'b:b3@600']],
  ])('%s', async (_n, opts, want) => {
    twoTasks();
    times = new LogTimes(dir);
    await times.start();
    expect(texts(await read(['a', 'b'], opts))).toEqual(want);
  });

  it('a line written across several marks starts where it starts (since never cuts a line)', async () => {
    writeFileSync(log('p'), 'first\nlong line\n');
    writeFileSync(`${log('p')}.times`, '6 100\n10 200\n16 300\n'); // "long line" was written in two parts
    times = new LogTimes(dir);
    await times.start();
    expect(texts(await read(['p'], { since: 250 }))).toEqual(['p:long line@300']);
  });

  it('tail ignores a final newline and keeps a last unterminated line', async () => {
    writeFileSync(log('u'), 'l1\nl2\nl3');
    expect((await read(['u'], { tail: 2 }, undefined)).map((l) => l[2])).toEqual(['l2', 'l3']);
  });

  it('keeps a task\'s own order for lines of the same time; a missing log is no error', async () => {
    writeFileSync(log('s'), 'x\ny\nz\n');
    writeFileSync(`${log('s')}.times`, '6 100\n');
    times = new LogTimes(dir, { now: () => 100 });
    await times.start();
    expect(texts(await read(['s', 'missing'], {}))).toEqual(['s:x@100', 's:y@100', 's:z@100']);
  });

  it('follows: the backlog, then synced, then new lines as they are written', async () => {
    let now = 1_000;
    times = new LogTimes(dir, { now: () => now });
    await times.start();
    writeFileSync(log('f'), 'before\n');
    await times.note('f');
    const got: TimedLine[] = [];
    let synced = false;
    const cancel = streamLogFiles([{ taskId: 'f', path: log('f') }], { follow: true }, times, { lines: (b) => got.push(...b), synced: () => { synced = true; }, end: () => undefined });
    try {
      await until(() => synced, 'synced');
      expect(texts(got)).toEqual(['f:before@1000']);
      now = 2_000;
      appendFileSync(log('f'), 'after\npart');
      await until(() => got.length === 2, 'the new line');
      expect(texts(got)).toEqual(['f:before@1000', 'f:after@2000']); // "part" waits for its newline
      appendFileSync(log('f'), 'ial\n');
      await until(() => got.length === 3, 'the completed line');
      expect(got[2]?.[2]).toBe('partial');
    } finally {
      cancel();
    }
  });
});
