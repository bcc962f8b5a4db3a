/**
 * TaskStatusWriter with a hand-driven write function: per task one write at a time and in
 * order, only the newest queued status written after the one in flight, parallel across tasks
 * up to `concurrency`, a failure reported and not blocking the next write.
 */
import { describe, expect, it } from 'vitest';
import { TaskStatusWriter } from '../../mesh/api/status-writer.js';
import type { TaskStatus } from '../../src/model/types.js';

const st = (message: string): TaskStatus => ({ state: 'running', message, since: '' });

/** A write function whose calls wait until the test settles them. */
function driven(): { write: (id: string, s: TaskStatus) => Promise<void>; calls: Array<{ id: string; message: string; done: () => void; fail: (e: Error) => void }> } {
  const calls: Array<{ id: string; message: string; done: () => void; fail: (e: Error) => void }> = [];
  const write = (id: string, s: TaskStatus): Promise<void> => new Promise((done, fail) => { calls.push({ id, message: s.message, done: () => done(), fail }); });
  return { write, calls };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TaskStatusWriter', () => {
  it('writes one status per task at a time, and only the newest of those queued meanwhile', async () => {
    const d = driven();
    const w = new TaskStatusWriter(d.write, { onError: () => undefined });
    w.submit('t', st('1'));
    await flush();
    w.submit('t', st('2'));
    w.submit('t', st('3'));
    await flush();
    expect(d.calls.map((c) => c.message)).toEqual(['1']);
    expect(w.stats.statusCoalesced).toBe(1);
    d.calls[0]?.done();
    await flush();
    expect(d.calls.map((c) => c.message)).toEqual(['1', '3']);
    d.calls[1]?.done();
    await w.idle();
  });

  it('runs different tasks in parallel up to the concurrency, then in submission order', async () => {
    const d = driven();
    const w = new TaskStatusWriter(d.write, { concurrency: 2, onError: () => undefined });
    for (const id of ['a', 'b', 'c', 'd']) w.submit(id, st(id));
    await flush();
    expect(d.calls.map((c) => c.id)).toEqual(['a', 'b']);
    d.calls[1]?.done();
    await flush();
    expect(d.calls.map((c) => c.id)).toEqual(['a', 'b', 'c']);
    expect(w.queuedCount).toBe(1);
    d.calls[0]?.done();
    d.calls[2]?.done();
    await flush();
    d.calls[3]?.done();
    await w.idle();
    expect(d.calls.map((c) => c.id)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('reports a failed write and goes on with the next one', async () => {
    const d = driven();
    const errors: string[] = [];
    const w = new TaskStatusWriter(d.write, { onError: (id, e) => errors.push(`${id}: ${(e as Error).message}`) });
    w.submit('t', st('1'));
    await flush();
    w.submit('t', st('2'));
    d.calls[0]?.fail(new Error('store down'));
    await flush();
    expect(errors).toEqual(['t: store down']);
    expect(d.calls.map((c) => c.message)).toEqual(['1', '2']);
    d.calls[1]?.done();
    await w.idle();
  });
});
