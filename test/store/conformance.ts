/**
 * The Store conformance suite: the behaviour every {@link Store} implementation must have
 * (the contract in src/store/types.ts). Run it with {@link storeConformance} from a test file.
 *
 * It assumes nothing about absolute revisions (a shared etcd may be at any revision) and keeps
 * every test under its own random key prefix, but it does assume no other writer touches the
 * store while a test runs (revisions are asserted relative to the test's first one).
 * Lease tests use real 1 s TTLs and poll with a deadline.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKind, type ErrorKind } from '../../src/errors.js';
import {
  StoreCompactedError,
  type Compare,
  type Store,
  type WatchBatch,
  type WatchEvent,
  type WatchOptions,
  type Watcher,
} from '../../src/store/types.js';

export interface OpenedStore {
  store: Store;
  /** Closes the store and cleans up after it; must tolerate a store the test already closed. */
  close: () => Promise<void>;
}

/** Polls `cond` until it holds or `timeoutMs` passes (then fails with `what`). */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Asserts that `p` rejects with a ShoalError of `kind`. */
export async function expectKind(p: Promise<unknown>, kind: ErrorKind): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected a ${kind} rejection`).toBeDefined();
  expect(isKind(err, kind), `expected kind ${kind}, got ${String(err)}`).toBe(true);
}

interface Collector {
  batches: WatchBatch[];
  errors: Error[];
  watcher: Watcher;
  events(): WatchEvent[];
}

function collect(store: Store, prefix: string, opts: Omit<WatchOptions, 'onError'> = {}): Collector {
  const batches: WatchBatch[] = [];
  const errors: Error[] = [];
  const watcher = store.watch(prefix, (b) => batches.push(b), { ...opts, onError: (e) => errors.push(e) });
  return { batches, errors, watcher, events: () => batches.flatMap((b) => b.events) };
}

const brief = (e: WatchEvent): string => `${e.type} ${e.kv.key.replace(/^.*\//, '')}=${e.kv.value}@${e.kv.modRevision}`;

export function storeConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(`Store conformance: ${name}`, () => {
    let opened: OpenedStore;
    let store: Store;
    /** This test's key prefix. */
    let ns: string;
    /** Revision before this test's first write. */
    let r0: number;
    const watchers: Watcher[] = [];

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
      ns = `/conformance/${randomUUID()}/`;
      r0 = await store.currentRevision();
    });

    afterEach(async () => {
      for (const w of watchers.splice(0)) w.cancel();
      await opened.close();
    });

    const watch = (prefix: string, opts: Omit<WatchOptions, 'onError'> = {}): Collector => {
      const c = collect(store, prefix, opts);
      watchers.push(c.watcher);
      return c;
    };

    describe('keys and revisions', () => {
      it('gives every write one new revision and tracks create/mod revision and version', async () => {
        const w1 = await store.put(`${ns}a`, '1');
        expect(w1).toEqual({ revision: r0 + 1 });
        const w2 = await store.put(`${ns}a`, '2');
        expect(w2.revision).toBe(r0 + 2);
        expect(w2.prev).toMatchObject({ key: `${ns}a`, value: '1', version: 1, modRevision: r0 + 1 });
        expect(await store.get(`${ns}a`)).toEqual({
          key: `${ns}a`, value: '2', createRevision: r0 + 1, modRevision: r0 + 2, version: 2, lease: 0,
        });
        expect(await store.currentRevision()).toBe(r0 + 2);
      });

      it('returns undefined for a missing key and creates no revision for a delete of nothing', async () => {
        expect(await store.get(`${ns}missing`)).toBeUndefined();
        const d = await store.delete(`${ns}missing`);
        expect(d).toEqual({ revision: r0, deleted: 0, prev: [] });
        expect(await store.currentRevision()).toBe(r0);
      });

      it('deletes a key, returning it, and recreates it from version 1', async () => {
        await store.put(`${ns}a`, '1');
        await store.put(`${ns}a`, '2');
        const d = await store.delete(`${ns}a`);
        expect(d.revision).toBe(r0 + 3);
        expect(d.deleted).toBe(1);
        expect(d.prev.map((kv) => kv.value)).toEqual(['2']);
        expect(await store.get(`${ns}a`)).toBeUndefined();
        await store.put(`${ns}a`, '3');
        expect(await store.get(`${ns}a`)).toMatchObject({ version: 1, createRevision: r0 + 4, modRevision: r0 + 4 });
      });

      it('ranges by prefix in key order, honours limit, and reports the revision', async () => {
        for (const k of ['b/2', 'b/1', 'a', 'b/3', 'bb', 'c']) await store.put(`${ns}${k}`, k);
        const all = await store.range(`${ns}b/`);
        expect(all.kvs.map((kv) => kv.value)).toEqual(['b/1', 'b/2', 'b/3']);
        expect(all.revision).toBe(r0 + 6);
        const limited = await store.range(`${ns}b`, { limit: 2 });
        expect(limited.kvs.map((kv) => kv.value)).toEqual(['b/1', 'b/2']);
        expect((await store.range(`${ns}zz`)).kvs).toEqual([]);
        expect((await store.range(ns)).kvs).toHaveLength(6);
      });

      it('deletes by prefix in one revision without touching siblings', async () => {
        for (const k of ['d/1', 'd/2', 'd/3', 'dd', 'e']) await store.put(`${ns}${k}`, k);
        const d = await store.delete(`${ns}d/`, { prefix: true });
        expect(d.deleted).toBe(3);
        expect(d.revision).toBe(r0 + 6);
        expect(d.prev.map((kv) => kv.value).sort()).toEqual(['d/1', 'd/2', 'd/3']);
        expect((await store.range(ns)).kvs.map((kv) => kv.value)).toEqual(['dd', 'e']);
      });

      it('rejects an empty key with InvalidParameter', async () => {
        await expectKind(store.put('', 'x'), 'InvalidParameter');
      });
    });

    describe('transactions', () => {
      it('evaluates compares on every target (missing key: value "" and numbers 0)', async () => {
        const a = (await store.put(`${ns}k`, 'v1')).revision;
        const b = (await store.put(`${ns}k`, 'v2')).revision;
        const k = `${ns}k`;
        const m = `${ns}missing`;
        const cases: { name: string; compare: Compare[]; want: boolean }[] = [
          { name: 'value =', compare: [{ key: k, target: 'value', op: '=', value: 'v2' }], want: true },
          { name: 'value = old', compare: [{ key: k, target: 'value', op: '=', value: 'v1' }], want: false },
          { name: 'value !=', compare: [{ key: k, target: 'value', op: '!=', value: 'v1' }], want: true },
          { name: 'value >', compare: [{ key: k, target: 'value', op: '>', value: 'v1' }], want: true },
          { name: 'value <', compare: [{ key: k, target: 'value', op: '<', value: 'v1' }], want: false },
          { name: 'version =', compare: [{ key: k, target: 'version', op: '=', value: 2 }], want: true },
          { name: 'version >', compare: [{ key: k, target: 'version', op: '>', value: 1 }], want: true },
          { name: 'version <', compare: [{ key: k, target: 'version', op: '<', value: 2 }], want: false },
          { name: 'createRevision =', compare: [{ key: k, target: 'createRevision', op: '=', value: a }], want: true },
          { name: 'createRevision !=', compare: [{ key: k, target: 'createRevision', op: '!=', value: a }], want: false },
          { name: 'modRevision =', compare: [{ key: k, target: 'modRevision', op: '=', value: b }], want: true },
          { name: 'modRevision <', compare: [{ key: k, target: 'modRevision', op: '<', value: b }], want: false },
          { name: 'modRevision >', compare: [{ key: k, target: 'modRevision', op: '>', value: a }], want: true },
          { name: 'lease =', compare: [{ key: k, target: 'lease', op: '=', value: 0 }], want: true },
          { name: 'missing createRevision = 0', compare: [{ key: m, target: 'createRevision', op: '=', value: 0 }], want: true },
          { name: 'missing version = 0', compare: [{ key: m, target: 'version', op: '=', value: 0 }], want: true },
          { name: 'missing modRevision > 0', compare: [{ key: m, target: 'modRevision', op: '>', value: 0 }], want: false },
          // Contract (types.ts): a missing key's value is ''. NB etcd fails every value compare on a missing key.
          { name: 'missing value = ""', compare: [{ key: m, target: 'value', op: '=', value: '' }], want: true },
          { name: 'all compares must hold', compare: [{ key: k, target: 'value', op: '=', value: 'v2' }, { key: k, target: 'version', op: '=', value: 1 }], want: false },
          { name: 'no compares', compare: [], want: true },
        ];
        for (const c of cases) {
          const res = await store.txn({
            compare: c.compare,
            success: [{ type: 'put', key: `${ns}out`, value: `ok ${c.name}` }],
            failure: [{ type: 'put', key: `${ns}out`, value: `failed ${c.name}` }],
          });
          expect(res.succeeded, c.name).toBe(c.want);
          expect((await store.get(`${ns}out`))?.value, c.name).toBe(`${c.want ? 'ok' : 'failed'} ${c.name}`);
        }
        expect((await store.get(k))?.version).toBe(2);
      });

      it('creates if absent with createRevision = 0, and the loser reads the winner in its failure branch', async () => {
        const claim = (value: string) => store.txn({
          compare: [{ key: `${ns}name`, target: 'createRevision', op: '=', value: 0 }],
          success: [{ type: 'put', key: `${ns}name`, value }],
          failure: [{ type: 'get', key: `${ns}name` }],
        });
        const results = await Promise.all([claim('alice'), claim('bob')]);
        // Either may arrive first; exactly one wins and the other reads the winner's value.
        const winner = results.findIndex((r) => r.succeeded);
        const won = results[winner];
        const lost = results[1 - winner];
        expect(results.filter((r) => r.succeeded)).toHaveLength(1);
        expect(won?.revision).toBe(r0 + 1);
        expect(won?.results).toEqual([{ kvs: [] }]);
        expect(lost?.succeeded).toBe(false);
        expect(lost?.revision).toBe(r0 + 1);
        expect(lost?.results[0]?.kvs.map((kv) => kv.value)).toEqual([winner === 0 ? 'alice' : 'bob']);
        expect((await store.get(`${ns}name`))?.version).toBe(1);
        expect(await store.currentRevision()).toBe(r0 + 1);
      });

      it('applies all writes of a branch as one revision and returns per-op results', async () => {
        await store.put(`${ns}old/1`, 'x');
        await store.put(`${ns}old/2`, 'y');
        const res = await store.txn({
          compare: [{ key: `${ns}old/1`, target: 'value', op: '=', value: 'x' }],
          success: [
            { type: 'put', key: `${ns}n/1`, value: 'a' },
            { type: 'put', key: `${ns}n/2`, value: 'b' },
            { type: 'delete', key: `${ns}old/`, prefix: true },
            { type: 'get', key: `${ns}n/`, prefix: true },
          ],
        });
        expect(res.succeeded).toBe(true);
        expect(res.revision).toBe(r0 + 3);
        expect(res.results).toHaveLength(4);
        expect(res.results[2]?.kvs.map((kv) => kv.value).sort()).toEqual(['x', 'y']);
        // A get after writes in the same branch sees them (as in etcd).
        expect(res.results[3]?.kvs.map((kv) => [kv.value, kv.modRevision])).toEqual([['a', r0 + 3], ['b', r0 + 3]]);
        expect((await store.range(ns)).kvs.map((kv) => kv.key.slice(ns.length))).toEqual(['n/1', 'n/2']);
        expect(await store.currentRevision()).toBe(r0 + 3);
      });

      it('creates no revision for a transaction that writes nothing', async () => {
        await store.put(`${ns}a`, '1');
        const res = await store.txn({
          compare: [{ key: `${ns}a`, target: 'value', op: '=', value: 'other' }],
          success: [{ type: 'put', key: `${ns}a`, value: '2' }],
          failure: [{ type: 'get', key: `${ns}a` }, { type: 'delete', key: `${ns}nothing` }],
        });
        expect(res).toMatchObject({ succeeded: false, revision: r0 + 1 });
        expect(res.results.map((r) => r.kvs.length)).toEqual([1, 0]);
        expect(await store.currentRevision()).toBe(r0 + 1);
      });

      it('serialises concurrent compare-and-swap increments (no lost update)', async () => {
        await store.put(`${ns}counter`, '0');
        const increment = async (): Promise<void> => {
          for (;;) {
            const cur = await store.get(`${ns}counter`);
            const res = await store.txn({
              compare: [{ key: `${ns}counter`, target: 'modRevision', op: '=', value: cur?.modRevision ?? 0 }],
              success: [{ type: 'put', key: `${ns}counter`, value: String(Number(cur?.value) + 1) }],
            });
            if (res.succeeded) return;
          }
        };
        await Promise.all(Array.from({ length: 10 }, increment));
        expect((await store.get(`${ns}counter`))?.value).toBe('10');
      });
    });

    describe('watch', () => {
      it('replays history from a revision and then follows live writes, one batch per revision', async () => {
        await store.put(`${ns}a`, '1');
        await store.put(`${ns}b`, '1');
        await store.put(`/elsewhere/${ns}`, 'not watched');
        await store.delete(`${ns}a`);
        const c = watch(ns, { fromRevision: r0 });
        await waitFor('3 history batches', () => c.batches.length === 3);
        await store.put(`${ns}c`, '1');
        await waitFor('live batch', () => c.batches.length === 4);
        expect(c.batches.map((b) => b.revision)).toEqual([r0 + 1, r0 + 2, r0 + 4, r0 + 5]);
        expect(c.events().map(brief)).toEqual([`put a=1@${r0 + 1}`, `put b=1@${r0 + 2}`, `delete a=1@${r0 + 4}`, `put c=1@${r0 + 5}`]);
        const del = c.batches[2]?.events[0];
        expect(del?.prevKv).toMatchObject({ key: `${ns}a`, value: '1', modRevision: r0 + 1 });
        expect(c.errors).toEqual([]);
      });

      it('delivers only revisions after fromRevision, and only new ones by default', async () => {
        await store.put(`${ns}a`, '1');
        await store.put(`${ns}a`, '2');
        const fromMiddle = watch(ns, { fromRevision: r0 + 1 });
        const live = watch(ns);
        await store.put(`${ns}a`, '3');
        await waitFor('both watchers saw the new write', () => fromMiddle.batches.length === 2 && live.batches.length === 1);
        expect(fromMiddle.events().map((e) => e.kv.value)).toEqual(['2', '3']);
        expect(live.events().map((e) => e.kv.value)).toEqual(['3']);
        expect(live.events()[0]?.prevKv?.value).toBe('2');
      });

      it('groups the events of one transaction in one batch, in op order', async () => {
        const c = watch(ns, { fromRevision: r0 });
        await store.put(`${ns}x`, 'old');
        await store.txn({
          compare: [],
          success: [
            { type: 'put', key: `${ns}z`, value: '1' },
            { type: 'delete', key: `${ns}x` },
            { type: 'put', key: `${ns}y`, value: '1' },
          ],
        });
        await waitFor('2 batches', () => c.batches.length === 2);
        expect(c.batches[1]?.revision).toBe(r0 + 2);
        expect(c.batches[1]?.events.map(brief)).toEqual([`put z=1@${r0 + 2}`, `delete x=old@${r0 + 2}`, `put y=1@${r0 + 2}`]);
      });

      it('keeps order and loses nothing under many concurrent writes', async () => {
        const c = watch(ns, { fromRevision: r0 });
        const n = 200;
        await Promise.all(Array.from({ length: n }, (_, i) => store.put(`${ns}k${i % 7}`, String(i))));
        await waitFor(`${n} events`, () => c.events().length === n);
        const revs = c.batches.map((b) => b.revision);
        expect(revs).toEqual(Array.from({ length: n }, (_, i) => r0 + 1 + i));
        // The last event per key carries the key's final value.
        const final = new Map(c.events().map((e) => [e.kv.key, e.kv.value]));
        for (const kv of (await store.range(ns)).kvs) expect(final.get(kv.key)).toBe(kv.value);
      });

      it('stops delivery on cancel', async () => {
        const cancelled = watch(ns, { fromRevision: r0 });
        const witness = watch(ns, { fromRevision: r0 });
        await store.put(`${ns}a`, '1');
        await waitFor('first event', () => cancelled.batches.length === 1);
        cancelled.watcher.cancel();
        cancelled.watcher.cancel(); // idempotent
        await store.put(`${ns}a`, '2');
        await waitFor('witness saw the second write', () => witness.batches.length === 2);
        expect(cancelled.batches).toHaveLength(1);
        expect(cancelled.errors).toEqual([]);
      });

      it('fails a watch from before the compacted revision with StoreCompactedError', async () => {
        for (let i = 0; i < 5; i++) await store.put(`${ns}a`, String(i));
        await store.compact(r0 + 3);
        expect(await store.compactedRevision()).toBeGreaterThanOrEqual(r0 + 3);
        const tooOld = watch(ns, { fromRevision: r0 + 1 });
        await waitFor('compaction error', () => tooOld.errors.length === 1);
        expect(tooOld.errors[0]).toBeInstanceOf(StoreCompactedError);
        expect(tooOld.batches).toEqual([]);
        const fromCompacted = watch(ns, { fromRevision: r0 + 3 });
        await waitFor('events after the compacted revision', () => fromCompacted.batches.length === 2);
        expect(fromCompacted.events().map((e) => e.kv.value)).toEqual(['3', '4']);
      });

      it('survives a throwing callback: other watches and the store carry on', async () => {
        const errors: Error[] = [];
        const bad = store.watch(ns, () => { throw new Error('consumer bug'); }, { fromRevision: r0, onError: (e) => errors.push(e) });
        watchers.push(bad);
        const good = watch(ns, { fromRevision: r0 });
        await store.put(`${ns}a`, '1');
        await store.put(`${ns}a`, '2');
        await waitFor('good watcher got both', () => good.batches.length === 2);
        await waitFor('bad watcher reported', () => errors.length === 1);
        expect((await store.get(`${ns}a`))?.value).toBe('2');
      });
    });

    describe('leases', () => {
      it('attaches keys to a lease and deletes them in one watched revision on revoke', async () => {
        const lease = await store.grantLease(10);
        expect(lease.ttlSeconds).toBe(10);
        await store.put(`${ns}a`, '1', { lease: lease.id });
        await store.put(`${ns}b`, '1', { lease: lease.id });
        await store.put(`${ns}c`, 'kept');
        expect((await store.get(`${ns}a`))?.lease).toBe(lease.id);
        const c = watch(ns, { fromRevision: await store.currentRevision() });
        await store.revokeLease(lease.id);
        await waitFor('revoke batch', () => c.batches.length === 1);
        expect(c.batches[0]?.events.map((e) => `${e.type} ${e.kv.key.slice(ns.length)}`).sort()).toEqual(['delete a', 'delete b']);
        expect((await store.range(ns)).kvs.map((kv) => kv.value)).toEqual(['kept']);
        await expectKind(store.revokeLease(lease.id), 'NotFound');
        await expectKind(store.keepAlive(lease.id), 'NotFound');
      });

      it('moves a key off a lease when it is put without one', async () => {
        const lease = await store.grantLease(10);
        await store.put(`${ns}a`, '1', { lease: lease.id });
        await store.put(`${ns}a`, '2');
        await store.revokeLease(lease.id);
        expect(await store.get(`${ns}a`)).toMatchObject({ value: '2', lease: 0 });
      });

      it('rejects a put with an unknown lease with NotFound', async () => {
        await expectKind(store.put(`${ns}a`, '1', { lease: 987654321 }), 'NotFound');
        await expectKind(store.txn({ compare: [], success: [{ type: 'put', key: `${ns}a`, value: '1', lease: 987654321 }] }), 'NotFound');
        expect(await store.get(`${ns}a`)).toBeUndefined();
      });

      it('expires a lease after its TTL, deleting (and announcing) its keys; keepAlive then rejects', async () => {
        const lease = await store.grantLease(1);
        await store.put(`${ns}alive`, 'yes', { lease: lease.id });
        const c = watch(ns, { fromRevision: await store.currentRevision() });
        await waitFor('key deleted by expiry', async () => (await store.get(`${ns}alive`)) === undefined, 8000);
        await waitFor('delete event', () => c.events().length === 1);
        expect(c.events()[0]).toMatchObject({ type: 'delete', kv: { key: `${ns}alive` } });
        await expectKind(store.keepAlive(lease.id), 'NotFound');
      });

      it('keeps a lease alive with keepAlive past its TTL', async () => {
        const lease = await store.grantLease(1);
        await store.put(`${ns}alive`, 'yes', { lease: lease.id });
        const until = Date.now() + 2500;
        while (Date.now() < until) {
          await store.keepAlive(lease.id);
          expect((await store.get(`${ns}alive`))?.value).toBe('yes');
          await new Promise((r) => setTimeout(r, 200));
        }
        await waitFor('expiry once keepAlive stops', async () => (await store.get(`${ns}alive`)) === undefined, 8000);
      });
    });

    describe('close', () => {
      it('rejects operations after close with Unavailable and ends watches', async () => {
        const c = watch(ns);
        await store.close();
        await store.close(); // idempotent
        await expectKind(store.get(`${ns}a`), 'Unavailable');
        await expectKind(store.put(`${ns}a`, '1'), 'Unavailable');
        await expectKind(store.grantLease(1), 'Unavailable');
        await waitFor('watch ended', () => c.errors.length === 1);
        expect(isKind(c.errors[0], 'Unavailable')).toBe(true);
      });
    });
  });
}
