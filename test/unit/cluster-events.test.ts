/**
 * Docker-style events from the store's watch (embedded store, memory-only): create / update /
 * remove from the revisions of the key, task and node state transitions (`was`), and the
 * revision clock that maps `--since` times to revisions.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { toEvent, type ClusterEvent } from '../../mesh/api/events.js';
import { RevisionClock } from '../../mesh/api/revision-clock.js';
import { dockerEvent, eventLine } from '../../mesh/cli/events.js';
import { objectKey } from '../../src/model/keys.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store, WatchBatch } from '../../src/store/types.js';

let store: Store | undefined;
afterEach(async () => { await store?.close(); store = undefined; });

/** Applies `writes` and returns the events they produce, timed at 0. */
async function eventsOf(writes: (s: Store) => Promise<void>): Promise<ClusterEvent[]> {
  store = await openEmbeddedStore();
  const batches: WatchBatch[] = [];
  const w = store.watch('/shoal/', (b) => batches.push(b));
  await writes(store);
  w.cancel();
  return batches.flatMap((b) => b.events.map((e) => toEvent(e, b.revision, 0)).filter((e): e is ClusterEvent => e !== undefined));
}

const task = (state: string, desired = 'running'): string => JSON.stringify({ id: 't1', serviceId: 's1', serviceName: 'web', slot: 1, nodeId: 'n1', desiredState: desired, status: { state, message: '', since: '' } });

describe('toEvent', () => {
  it('a put that creates the key is create, the next ones update, a delete remove', async () => {
    const ev = await eventsOf(async (s) => {
      await s.put(objectKey('services', 's1'), JSON.stringify({ id: 's1', spec: { name: 'web', replicas: 1 } }));
      await s.put(objectKey('services', 's1'), JSON.stringify({ id: 's1', spec: { name: 'web', replicas: 3 } }));
      await s.delete(objectKey('services', 's1'));
      // Created again after removal: a create, not an update.
      await s.put(objectKey('services', 's1'), JSON.stringify({ id: 's1', spec: { name: 'web', replicas: 1 } }));
    });
    expect(ev.map((e) => `${e.type} ${e.action} ${e.id} ${JSON.stringify(e.attributes)}`)).toEqual([
      'service create s1 {"name":"web","replicas":"1"}',
      'service update s1 {"name":"web","replicas":"3","replicasWas":"1"}',
      'service remove s1 {"name":"web","replicas":"3"}',
      'service create s1 {"name":"web","replicas":"1"}',
    ]);
  });

  it('task updates carry the state and the state before; desired state changes too', async () => {
    const ev = await eventsOf(async (s) => {
      await s.put(objectKey('tasks', 't1'), task('assigned'));
      await s.put(objectKey('tasks', 't1'), task('starting'));
      await s.put(objectKey('tasks', 't1'), task('running'));
      await s.put(objectKey('tasks', 't1'), task('running', 'shutdown'));
    });
    expect(ev.map((e) => eventLine({ ...e, time: 0 }).slice(25))).toEqual([
      'task create t1 (name=web.1.t1, state=assigned, desired=running, service=web, serviceId=s1, nodeId=n1)',
      'task update t1 (name=web.1.t1, state=starting, was=assigned, desired=running, service=web, serviceId=s1, nodeId=n1)',
      'task update t1 (name=web.1.t1, state=running, was=starting, desired=running, service=web, serviceId=s1, nodeId=n1)',
      'task update t1 (name=web.1.t1, state=running, desired=shutdown, desiredWas=running, service=web, serviceId=s1, nodeId=n1)',
    ]);
  });

  it('node state transitions; networks name their driver; keys that are not objects make no event', async () => {
    const ev = await eventsOf(async (s) => {
      await s.put(objectKey('nodes', 'n1'), JSON.stringify({ id: 'n1', name: 'node-1', state: 'ready', availability: 'active' }));
      await s.put(objectKey('nodes', 'n1'), JSON.stringify({ id: 'n1', name: 'node-1', state: 'down', availability: 'active' }));
      await s.put(objectKey('networks', 'w1'), JSON.stringify({ id: 'w1', name: 'app', driver: 'overlay' }));
      await s.put('/shoal/names/networks/app', 'w1');
      await s.put('/shoal/ipam/x', '1');
    });
    expect(ev.map((e) => `${e.type} ${e.action} ${JSON.stringify(e.attributes)}`)).toEqual([
      'node create {"name":"node-1","state":"ready","availability":"active"}',
      'node update {"name":"node-1","state":"down","was":"ready","availability":"active"}',
      'network create {"name":"app","driver":"overlay"}',
    ]);
  });

  it('prints as Docker does (line and JSON)', () => {
    const e: ClusterEvent = { time: Date.UTC(2024, 4, 1, 10), revision: 7, type: 'service', action: 'create', id: 's1', attributes: { name: 'web' } };
    expect(eventLine(e)).toBe('2024-05-01T10:00:00.000Z service create s1 (name=web)');
    expect(dockerEvent(e)).toMatchObject({ Type: 'service', Action: 'create', Actor: { ID: 's1', Attributes: { name: 'web' } }, scope: 'swarm', time: 1714557600, timeNano: 1714557600000000000, revision: 7 });
  });
});

describe('RevisionClock', () => {
  it('maps times to the revision to replay from, and says when older events are not kept', async () => {
    store = await openEmbeddedStore();
    await store.put('/shoal/x', '0'); // before the clock: revision 1
    let now = 1_000;
    const clock = await RevisionClock.start(store, { now: () => now });
    try {
      now = 2_000; await store.put('/shoal/x', '1'); // revision 2 at 2000
      now = 3_000; await store.put('/shoal/x', '2'); // revision 3 at 3000
      expect(clock.timeOf(2)).toBe(2_000);
      expect(clock.timeOf(1)).toBeUndefined();
      expect(clock.revisionSince(2_500)).toEqual({ from: 2, complete: true, oldest: 1_000 });
      expect(clock.revisionSince(2_000)).toEqual({ from: 1, complete: true, oldest: 1_000 });
      expect(clock.revisionSince(9_000)).toEqual({ from: 3, complete: true, oldest: 1_000 });
      expect(clock.revisionSince(500)).toEqual({ from: 1, complete: false, oldest: 1_000 });
    } finally {
      clock.cancel();
    }
  });

  it('keeps at most 1.5 x `limit` revisions; the oldest kept one bounds what can be replayed', async () => {
    store = await openEmbeddedStore();
    let now = 0;
    const clock = await RevisionClock.start(store, { now: () => now, limit: 2 });
    try {
      for (let i = 1; i <= 4; i++) { now = i * 1000; await store.put('/shoal/x', String(i)); }
      // 4 > 3 = 1.5 x 2: trimmed to the last 2.
      expect(clock.timeOf(1)).toBeUndefined();
      expect(clock.timeOf(2)).toBeUndefined();
      expect(clock.timeOf(3)).toBe(3_000);
      expect(clock.revisionSince(1_000)).toEqual({ from: 2, complete: false, oldest: 3_000 });
    } finally {
      clock.cancel();
    }
  });
});
