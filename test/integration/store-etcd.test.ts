/**
 * The etcd Store against a real 3-member etcd cluster (Debian's etcd 3.4, started here on
 * loopback): the shared conformance suite unchanged, then what only a cluster can show —
 * a watch that outlives the etcd leader it was on with no gap and no duplicate while writes
 * go on (none applied twice), quorum loss (Unavailable naming the endpoints, then recovery
 * with the watch resuming), an unreachable cluster at open, and the manager's watch stream
 * (what agents resume) re-listing when etcd compacted the revision it resumes from.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { isKind, messageOf } from '../../src/errors.js';
import { openEtcdStore, parseStoreLocation, type EtcdStore } from '../../src/store/etcd/index.js';
import type { WatchBatch } from '../../src/store/types.js';
import { startEtcdCluster, type EtcdCluster, type EtcdMember } from '../helpers/etcd.js';
import { storeConformance, waitFor } from '../store/conformance.js';
import { WebSocket } from 'ws';
import { startTestManager, wssUrl, wsTls, type TestManager } from '../helpers/cluster.js';
import type { WatchFrame } from '../../mesh/api/watch.js';

let cluster: Promise<EtcdCluster> | undefined;
const etcd = (): Promise<EtcdCluster> => (cluster ??= startEtcdCluster({ members: 3 }));
afterAll(async () => { await (await cluster)?.stop(); });

async function open(url: string, extra: { requestTimeoutMs?: number; connectTimeoutMs?: number } = {}): Promise<EtcdStore> {
  const loc = parseStoreLocation(url);
  if (loc.kind !== 'etcd') throw new Error('not etcd');
  return openEtcdStore({ endpoints: loc.endpoints, ...extra });
}

storeConformance('etcd (3 members on loopback)', async () => {
  const store = await open((await etcd()).storeUrl);
  return { store, close: () => store.close() };
});

/** The member etcd says leads the cluster now. */
async function leaderOf(c: EtcdCluster): Promise<EtcdMember> {
  const r = await c.etcdctl(['endpoint', 'status', '-w', 'json'], { endpoints: c.members.filter((m) => m.running()).map((m) => m.endpoint) });
  const rows = JSON.parse(r.stdout) as Array<{ Endpoint: string; Status: { header: { member_id: number }; leader: number } }>;
  const lead = rows.find((x) => String(x.Status.header.member_id) === String(x.Status.leader));
  const m = c.members.find((x) => x.endpoint === lead?.Endpoint);
  if (!m) throw new Error(`no leader in ${r.stdout}${r.stderr}`);
  return m;
}

describe('etcd store on a cluster that loses members', () => {
  it('keeps a watch going across the death of the etcd leader: no gap, no duplicate, no write applied twice', async () => {
    const c = await etcd();
    const store = await open(c.storeUrl);
    const ns = `/chaos/${randomUUID()}/`;
    const from = await store.currentRevision();
    const batches: WatchBatch[] = [];
    const errors: Error[] = [];
    const w = store.watch(ns, (b) => batches.push(b), { fromRevision: from, onError: (e) => errors.push(e) });
    const acked = new Map<string, number>();
    const unknown: string[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const value = `v${i}`;
        try {
          const r = await store.put(`${ns}k${i % 5}`, value);
          acked.set(value, r.revision);
        } catch (e) {
          if (!isKind(e, 'Unavailable')) throw e;
          unknown.push(value);
        }
      }
    })();
    try {
      await waitFor('writes before the kill', () => acked.size >= 20, 20_000);
      const leader = await leaderOf(c);
      await leader.kill('SIGKILL');
      const before = acked.size;
      await waitFor('writes after the kill', () => acked.size >= before + 20, 30_000);
      leader.start();
      await c.waitHealthy();
      const again = acked.size;
      await waitFor('writes after the restart', () => acked.size >= again + 20, 30_000);
    } finally {
      stop = true;
      await writer;
    }
    const last = Math.max(...acked.values());
    await waitFor('the watch caught up', () => (batches.at(-1)?.revision ?? 0) >= last, 20_000);
    w.cancel();
    expect(errors).toEqual([]);
    const revs = batches.map((b) => b.revision);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
    const seen = new Map<string, number>();
    for (const b of batches) for (const e of b.events) seen.set(e.kv.value, (seen.get(e.kv.value) ?? 0) + 1);
    // Every acknowledged write once, at its revision; a write of unknown outcome at most once.
    for (const [value, rev] of acked) {
      expect(seen.get(value), value).toBe(1);
      expect(batches.find((b) => b.events.some((e) => e.kv.value === value))?.revision).toBe(rev);
    }
    for (const value of unknown) expect(seen.get(value) ?? 0).toBeLessThanOrEqual(1);
    // The history is exactly the writes that happened: nothing the writer did not ask for.
    expect([...seen.keys()].every((v) => acked.has(v) || unknown.includes(v))).toBe(true);
    await store.close();
  });

  it('answers Unavailable naming the endpoints while quorum is lost, and resumes (watch included) when it is back', async () => {
    const c = await etcd();
    const store = await open(c.storeUrl, { requestTimeoutMs: 2000 });
    const ns = `/quorum/${randomUUID()}/`;
    const batches: WatchBatch[] = [];
    const w = store.watch(ns, (b) => batches.push(b), { fromRevision: await store.currentRevision() });
    await store.put(`${ns}before`, '1');
    const [a, b] = c.members;
    await a?.kill('SIGKILL');
    await b?.kill('SIGKILL');
    try {
      const put = await store.put(`${ns}during`, '1').then(() => undefined, (e: unknown) => e);
      expect(isKind(put, 'Unavailable'), String(put)).toBe(true);
      for (const ep of c.endpoints) expect(messageOf(put)).toContain(ep);
      const get = await store.get(`${ns}before`).then(() => undefined, (e: unknown) => e);
      expect(isKind(get, 'Unavailable'), String(get)).toBe(true);
    } finally {
      a?.start();
      b?.start();
    }
    await c.waitHealthy();
    await waitFor('a write after recovery', async () => {
      try { await store.put(`${ns}after`, '1'); return true; } catch { return false; }
    }, 20_000);
    expect((await store.get(`${ns}before`))?.value).toBe('1');
    await waitFor('the watch saw the write after recovery', () => batches.some((x) => x.events.some((e) => e.kv.key === `${ns}after`)), 20_000);
    expect(batches.flatMap((x) => x.events.map((e) => e.kv.key.slice(ns.length)))).toContain('before');
    w.cancel();
    await store.close();
  });

  it('fails to open with a clear error naming every endpoint when nothing answers', async () => {
    const err = await open('etcd://127.0.0.1:1,127.0.0.1:9', { connectTimeoutMs: 800 }).then(() => undefined, (e: unknown) => e);
    expect(isKind(err, 'Unavailable')).toBe(true);
    expect(messageOf(err)).toMatch(/^cannot reach etcd at 127\.0\.0\.1:1, 127\.0\.0\.1:9 \(/);
    expect(messageOf(err)).toContain('check --store');
  });

  it('refuses malformed store locations with one sentence', () => {
    for (const [s, want] of [
      ['etcd://', /names no etcd endpoint/],
      ['etcd://host', /is not HOST:PORT/],
      ['etcd://a:1,a:1', /names a:1 twice/],
      ['etcd://a:99999', /is not HOST:PORT/],
      ['zk://a:1', /unknown scheme 'zk:\/\/'/],
      ['127.0.0.1:2379', /must be 'embedded' or etcd:\/\//],
      ['etcd://bad_host!:1', /not an IP address or host name/],
    ] as const) {
      expect(() => parseStoreLocation(s), s).toThrow(want);
    }
    expect(parseStoreLocation('etcd://[::1]:2379,10.0.0.1:2379')).toEqual({
      kind: 'etcd', tls: false,
      endpoints: [{ host: '::1', port: 2379, address: '[::1]:2379' }, { host: '10.0.0.1', port: 2379, address: '10.0.0.1:2379' }],
    });
    expect(parseStoreLocation(undefined)).toEqual({ kind: 'embedded' });
  });
});

describe('manager watch stream on etcd', () => {
  /** The first frame of /v1/watch?revision=R. */
  async function firstFrame(m: TestManager, token: string, revision: number): Promise<WatchFrame> {
    const ws = new WebSocket(wssUrl(m, `/v1/watch?revision=${revision}`), { ...wsTls(m), headers: { authorization: `Bearer ${token}` } });
    try {
      return await new Promise<WatchFrame>((resolve, reject) => {
        ws.once('message', (d) => resolve(JSON.parse(d.toString()) as WatchFrame));
        ws.once('error', reject);
      });
    } finally {
      ws.close();
    }
  }

  it('resumes from a revision etcd still has, and re-lists from one etcd compacted', async () => {
    const c = await etcd();
    const store = await open(c.storeUrl);
    const m = await startTestManager({ store });
    try {
      const r1 = (await store.put('/shoal/bench/a', '1')).revision;
      await store.put('/shoal/bench/a', '2');
      const resumed = await firstFrame(m, m.token, r1);
      expect(resumed).toEqual({ type: 'established', revision: r1, relist: false });
      // etcdctl compacts past r1: an agent resuming from r1 must get the full list instead.
      await store.put('/shoal/bench/a', '3');
      const now = await store.currentRevision();
      const r = await c.etcdctl(['compact', String(now)]);
      expect(r.code, r.stderr).toBe(0);
      expect(await store.compactedRevision()).toBe(now - 1);
      const relisted = await firstFrame(m, m.token, r1);
      expect(relisted).toMatchObject({ type: 'established', relist: true });
      expect(relisted.type === 'established' && relisted.kvs?.find((kv) => kv.key === '/shoal/bench/a')?.value).toBe('3');
    } finally {
      await m.close();
      await store.close();
    }
  });
});
