/**
 * Leader election and slot claims on the embedded store (in-process, no etcd): the logic that
 * test/integration/ha-cluster.test.ts and ha-chaos.test.ts exercise on a real etcd cluster.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isKind, messageOf } from '../../src/errors.js';
import { LeaderElection, listManagers } from '../../mesh/manager/leader.js';
import { Manager } from '../../mesh/manager/index.js';
import { claimSlot, listSlotClaims, slotIdOf, slotKey } from '../../mesh/manager/slots.js';
import { listObjects } from '../../mesh/manager/objects.js';
import { createService } from '../../mesh/manager/services.js';
import { parseServiceCreate } from '../../mesh/api/validate.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';
import { waitFor } from '../store/conformance.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined); });

async function store(): Promise<Store> {
  const s = await openEmbeddedStore({});
  cleanups.push(() => s.close());
  return s;
}

function election(s: Store, name: string, events: string[]): LeaderElection {
  const e = new LeaderElection(s, {
    name, leaseTtlSeconds: 1,
    onElected: async () => { events.push(`${name} elected`); },
    onDemoted: async () => { events.push(`${name} demoted`); },
  });
  cleanups.push(() => e.stop());
  return e;
}

describe('leader election', () => {
  it('elects exactly one of several managers, and the next one when the leader stops', async () => {
    const s = await store();
    const events: string[] = [];
    const all = ['a', 'b', 'c'].map((n) => election(s, n, events));
    await Promise.all(all.map((e) => e.start()));
    await waitFor('a leader', () => all.some((e) => e.isLeader));
    expect(all.filter((e) => e.isLeader)).toHaveLength(1);
    const first = all.find((e) => e.isLeader) as LeaderElection;
    expect((await listManagers(s)).map((m) => [m.name, m.reachable, m.leader])).toEqual(
      ['a', 'b', 'c'].map((n) => [n, true, all[['a', 'b', 'c'].indexOf(n)] === first]),
    );
    await first.stop();
    await waitFor('another leader', () => all.some((e) => e !== first && e.isLeader), 5000);
    expect(all.filter((e) => e.isLeader)).toHaveLength(1);
    const ms = await listManagers(s);
    expect(ms.filter((m) => m.leader)).toHaveLength(1);
    expect(ms.filter((m) => !m.reachable)).toHaveLength(1);
    expect(events.filter((x) => x.endsWith('elected'))).toHaveLength(2);
  });

  it('takes over when the leader\'s session lease expires (a leader that died without a word)', async () => {
    const s = await store();
    const events: string[] = [];
    const a = election(s, 'a', events);
    await a.start();
    await waitFor('a leads', () => a.isLeader);
    const b = election(s, 'b', events);
    await b.start();
    // a dies silently: its timers stop, its lease is left to expire.
    (a as unknown as { stopped: boolean }).stopped = true;
    for (const t of ['renewTimer', 'pollTimer'] as const) clearInterval((a as unknown as Record<string, NodeJS.Timeout>)[t]);
    await waitFor('b takes over after the TTL', () => b.isLeader, 8000);
    expect(b.elections).toBe(1);
  });

  it('refuses a second live manager with the same name', async () => {
    const s = await store();
    const a = election(s, 'same', []);
    await a.start();
    const twin = new LeaderElection(s, { name: 'same', leaseTtlSeconds: 1, onElected: async () => undefined, onDemoted: async () => undefined });
    const err = await twin.start().then(() => undefined, (e: unknown) => e);
    expect(isKind(err, 'Conflict')).toBe(true);
    expect(messageOf(err)).toMatch(/another manager named 'same' is running/);
  });

  it('runs the scheduler only on the leader', async () => {
    const s = await store();
    const m1 = new Manager(s, { ha: { name: 'm1', leaseTtlSeconds: 1 } });
    const m2 = new Manager(s, { ha: { name: 'm2', leaseTtlSeconds: 1 } });
    cleanups.push(() => m1.stop(), () => m2.stop());
    await m1.start();
    await m2.start();
    await waitFor('one leader', () => m1.isLeader !== m2.isLeader);
    expect(m1.cluster).toEqual(m2.cluster);
    const follower = m1.isLeader ? m2 : m1;
    const leader = m1.isLeader ? m1 : m2;
    await createService(s, parseServiceCreate({ name: 'web', replicas: 2, command: ['sleep', '1'] }));
    await waitFor('tasks from the leader', async () => (await listObjects(s, 'tasks')).length === 2);
    // The follower never synced; the leader did.
    expect((follower.scheduler as unknown as { watcher?: unknown }).watcher).toBeUndefined();
    expect((leader.scheduler as unknown as { watcher?: unknown }).watcher).toBeDefined();
    expect((await listSlotClaims(s)).size).toBe(2);
  });
});

describe('slot claims', () => {
  it('let only one of two racing creates for a slot commit', async () => {
    const s = await store();
    const read = await listSlotClaims(s);
    const attempt = (task: string) => {
      const c = claimSlot(read, 'svc', '1', task);
      return s.txn({ compare: c.compares, success: c.ops });
    };
    const [x, y] = await Promise.all([attempt('t1'), attempt('t2')]);
    expect([x.succeeded, y.succeeded].filter(Boolean)).toHaveLength(1);
    // Moving the claim on needs the revision as read now.
    const now = await listSlotClaims(s);
    const holder = now.get(slotKey('svc', '1'));
    expect(holder?.taskId).toBe(x.succeeded ? 't1' : 't2');
    expect((await s.txn({ compare: claimSlot(read, 'svc', '1', 't3').compares, success: claimSlot(read, 'svc', '1', 't3').ops })).succeeded).toBe(false);
    expect((await s.txn({ compare: claimSlot(now, 'svc', '1', 't3').compares, success: claimSlot(now, 'svc', '1', 't3').ops })).succeeded).toBe(true);
  });

  it('a global service claims one slot per node', () => {
    expect(slotIdOf(3, 'n1')).toBe('3');
    expect(slotIdOf(0, 'n1')).toBe('node-n1');
    expect(slotIdOf(0, 'n2')).not.toBe(slotIdOf(0, 'n1'));
  });
});
