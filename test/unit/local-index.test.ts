/**
 * LocalIndex: a relist is reported as the difference from the old contents, events apply in
 * order and replays (revision not newer) are ignored, a throwing listener hurts no other.
 */
import { describe, expect, it } from 'vitest';
import { LocalIndex, type IndexChange } from '../../mesh/agent/local-index.js';

const kv = (key: string, value: string, modRevision = 1): { key: string; value: string; modRevision: number } => ({ key, value, modRevision });

/** The changes each listener call saw, as `{key, prev, next}` (the parsed objects are checked apart). */
function recording(index: LocalIndex): Array<Array<Pick<IndexChange, 'key' | 'prev' | 'next'>>> {
  const seen: Array<Array<Pick<IndexChange, 'key' | 'prev' | 'next'>>> = [];
  index.onChange((c) => seen.push(c.map(({ key, prev, next }) => ({ key, prev, next }))));
  return seen;
}

describe('LocalIndex.applyList', () => {
  it('reports a first list as puts and marks the index synced', () => {
    const ix = new LocalIndex();
    const seen = recording(ix);
    expect(ix.synced).toBe(false);
    ix.applyList([kv('/shoal/networks/a', '{"id":"a"}'), kv('/shoal/services/s', '{"id":"s"}')], 7);
    expect(ix).toMatchObject({ synced: true, revision: 7, lists: 1, size: 2 });
    expect(seen).toEqual([[
      { key: '/shoal/networks/a', prev: undefined, next: '{"id":"a"}' },
      { key: '/shoal/services/s', prev: undefined, next: '{"id":"s"}' },
    ]]);
    expect(ix.networks()).toEqual([{ id: 'a' }]);
    expect(ix.services()).toEqual([{ id: 's' }]);
  });

  it('hands listeners the parsed objects of object keys, and keeps tasks indexed by service, node and network', () => {
    const ix = new LocalIndex();
    const all: IndexChange[] = [];
    ix.onChange((c) => all.push(...c));
    const t = { id: 't1', serviceId: 's', nodeId: 'n1', addresses: { net: { v4: '10.0.0.2' } } };
    ix.applyList([kv('/shoal/tasks/t1', JSON.stringify(t)), kv('/shoal/ipam/x', '"y"')], 3);
    expect(all.find((c) => c.key === '/shoal/tasks/t1')).toMatchObject({ kind: 'tasks', id: 't1', before: undefined, after: t });
    expect(all.find((c) => c.key === '/shoal/ipam/x')?.kind).toBeUndefined();
    expect(ix.tasksOf('s').map((x) => x.id)).toEqual(['t1']);
    expect(ix.tasksOnNode('n1').map((x) => x.id)).toEqual(['t1']);
    expect(ix.tasksOnNetwork('net').map((x) => x.id)).toEqual(['t1']);
    ix.applyEvents([{ type: 'put', key: '/shoal/tasks/t1', value: JSON.stringify({ ...t, nodeId: 'n2', addresses: {} }), modRevision: 4 }], 4);
    expect(ix.tasksOnNode('n1')).toEqual([]);
    expect(ix.tasksOnNode('n2').map((x) => x.id)).toEqual(['t1']);
    expect(ix.tasksOnNetwork('net')).toEqual([]);
    ix.applyEvents([{ type: 'delete', key: '/shoal/tasks/t1', modRevision: 5 }], 5);
    expect(ix.tasksOf('s')).toEqual([]);
    expect(ix.task('t1')).toBeUndefined();
    expect(ix.get('/shoal/ipam/x')).toBe('y');
  });

  it('reports a relist as the difference: removed, changed and added keys; unchanged ones not at all', () => {
    const ix = new LocalIndex();
    ix.applyList([kv('/k/gone', '1'), kv('/k/same', '2'), kv('/k/changed', '3')], 3);
    const seen = recording(ix);
    ix.applyList([kv('/k/same', '2'), kv('/k/changed', '4'), kv('/k/new', '5')], 9);
    expect(seen).toHaveLength(1);
    expect(new Set(seen[0])).toEqual(new Set([
      { key: '/k/gone', prev: '1', next: undefined },
      { key: '/k/changed', prev: '3', next: '4' },
      { key: '/k/new', prev: undefined, next: '5' },
    ]));
    expect(ix).toMatchObject({ revision: 9, lists: 2, size: 3 });
    expect(ix.get('/k/gone')).toBeUndefined();
  });

  it('emits nothing for a relist identical to the contents', () => {
    const ix = new LocalIndex();
    ix.applyList([kv('/k/a', '1')], 3);
    const seen = recording(ix);
    ix.applyList([kv('/k/a', '1')], 4);
    expect(seen).toEqual([]);
    expect(ix.revision).toBe(4);
  });
});

describe('LocalIndex.applyEvents', () => {
  it('applies puts and deletes; a put of the same value and a delete of an absent key are no changes', () => {
    const ix = new LocalIndex();
    ix.applyList([kv('/k/a', '1'), kv('/k/b', '2')], 10);
    const seen = recording(ix);
    ix.applyEvents([
      { type: 'put', key: '/k/a', value: '1', modRevision: 11 },
      { type: 'put', key: '/k/b', value: '3', modRevision: 11 },
      { type: 'delete', key: '/k/a', modRevision: 11 },
      { type: 'delete', key: '/k/none', modRevision: 11 },
      { type: 'put', key: '/k/c', value: '4', modRevision: 11 },
    ], 11);
    expect(seen).toEqual([[
      { key: '/k/b', prev: '2', next: '3' },
      { key: '/k/a', prev: '1', next: undefined },
      { key: '/k/c', prev: undefined, next: '4' },
    ]]);
    expect(ix.revision).toBe(11);
    expect(ix.get('/k/b')).toBe(3);
  });

  it('ignores batches replayed after a resume (revision not newer than the index)', () => {
    const ix = new LocalIndex();
    ix.applyList([kv('/k/a', '1')], 10);
    ix.applyEvents([{ type: 'put', key: '/k/a', value: '2', modRevision: 12 }], 12);
    const seen = recording(ix);
    ix.applyEvents([{ type: 'delete', key: '/k/a', modRevision: 11 }], 11);
    ix.applyEvents([{ type: 'put', key: '/k/a', value: 'old', modRevision: 12 }], 12);
    expect(seen).toEqual([]);
    expect(ix.get('/k/a')).toBe(2);
    expect(ix.revision).toBe(12);
  });
});

describe('LocalIndex listeners', () => {
  it('isolates a throwing listener: the others still see every change', () => {
    const ix = new LocalIndex();
    ix.onChange(() => { throw new Error('listener bug'); });
    const seen = recording(ix);
    ix.applyList([kv('/k/a', '1')], 1);
    ix.applyEvents([{ type: 'put', key: '/k/a', value: '2', modRevision: 2 }], 2);
    expect(seen.map((c) => c.map((x) => x.next))).toEqual([['1'], ['2']]);
  });

  it('stops notifying a listener after its unsubscribe', () => {
    const ix = new LocalIndex();
    const seen: IndexChange[][] = [];
    const off = ix.onChange((c) => seen.push(c));
    ix.applyList([kv('/k/a', '1')], 1);
    off();
    ix.applyEvents([{ type: 'put', key: '/k/a', value: '2', modRevision: 2 }], 2);
    expect(seen).toHaveLength(1);
  });
});
