/**
 * The manager's watch-fed view (mesh/manager/view.ts): the first list, then every change, kept
 * in memory with counts per task state and node state; a watch that ends (compaction) is
 * replaced by a relist, whose difference reaches the counts like any change.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterView } from '../../mesh/manager/view.js';
import { objectKey } from '../../src/model/keys.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store, WatchOptions } from '../../src/store/types.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => { for (const c of closers.splice(0)) await c(); });

async function store(): Promise<Store> {
  const s = await openEmbeddedStore({});
  closers.push(() => s.close());
  return s;
}
const task = (id: string, state: string): string => JSON.stringify({ id, serviceId: 's', nodeId: 'n1', addresses: {}, status: { state } });
const node = (id: string, state: string): string => JSON.stringify({ id, name: id, state });
const until = async (f: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(f()).toBe(true);
};

describe('ClusterView', () => {
  it('lists, then follows every change; counts tasks and nodes by state per change', async () => {
    const s = await store();
    await s.put(objectKey('tasks', 't1'), task('t1', 'running'));
    await s.put(objectKey('nodes', 'n1'), node('n1', 'ready'));
    await s.put('/shoal/ipam/x', '"not an object"');
    const v = new ClusterView(s);
    closers.push(async () => v.stop());
    await v.ready();
    expect([...v.taskStates]).toEqual([['running', 1]]);
    expect([...v.nodeStates]).toEqual([['ready', 1]]);
    expect(v.index.size).toBe(2);
    await s.put(objectKey('tasks', 't2'), task('t2', 'starting'));
    await s.put(objectKey('tasks', 't1'), task('t1', 'failed'));
    await s.put(objectKey('nodes', 'n1'), node('n1', 'down'));
    await s.delete(objectKey('tasks', 't2'));
    await until(() => v.index.revision === 7);
    expect([...v.taskStates]).toEqual([['failed', 1]]);
    expect([...v.nodeStates]).toEqual([['down', 1]]);
  });

  it('relists when its watch ends and reports the difference as changes', async () => {
    const s = await store();
    await s.put(objectKey('tasks', 't1'), task('t1', 'running'));
    // A store whose watches can be ended on demand, like a compaction would.
    const ends: Array<(e: Error) => void> = [];
    const wrapped: Store = Object.create(s) as Store;
    wrapped.watch = (p, cb, o?: WatchOptions) => {
      const w = s.watch(p, cb, o);
      ends.push((e) => { w.cancel(); o?.onError?.(e); });
      return w;
    };
    const v = new ClusterView(wrapped);
    closers.push(async () => v.stop());
    await v.ready();
    const seen: string[] = [];
    v.onChange((cs) => { for (const c of cs) seen.push(`${c.id}:${c.after ? 'put' : 'delete'}`); });
    ends[0]?.(new Error('compacted'));
    await s.delete(objectKey('tasks', 't1'));
    await s.put(objectKey('tasks', 't3'), task('t3', 'running'));
    await until(() => seen.length >= 2 && v.index.task('t3') !== undefined);
    expect(seen.sort()).toEqual(['t1:delete', 't3:put']);
    expect([...v.taskStates]).toEqual([['running', 1]]);
    expect(ends.length).toBe(2);
  });
});
