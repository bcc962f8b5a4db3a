import { spawnSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, readdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { isKind, isShoalError } from '../../src/errors.js';
import { EmbeddedStore, type StoreLog } from '../../src/store/core.js';
import { inspectEmbeddedStore, openEmbeddedStore } from '../../src/store/embedded.js';
import { Mvcc, type MvccImage } from '../../src/store/mvcc.js';
import type { WalRecord } from '../../src/store/records.js';
import { SortedKeys } from '../../src/store/sorted-keys.js';
import type { Store, WatchBatch } from '../../src/store/types.js';
import { expectKind, storeConformance, waitFor } from '../store/conformance.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-store-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

storeConformance('embedded, memory-only', async () => {
  const store = await openEmbeddedStore({});
  return { store, close: () => store.close() };
});

storeConformance('embedded, durable (snapshot every 25 records)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-store-conf-'));
  const store = await openEmbeddedStore({ dir, snapshotEveryRecords: 25 });
  return {
    store,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

const segmentsOf = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('wal-')).sort();
const lastSegment = async (dir: string): Promise<string> => join(dir, (await segmentsOf(dir)).at(-1) as string);

/** Everything a reopen must preserve. */
async function dump(store: Store): Promise<unknown> {
  return { kvs: (await store.range('')).kvs, revision: await store.currentRevision() };
}

describe('embedded store durability', () => {
  it('keeps keys, revisions and leases across a reopen, and replays the log as watchable history', async () => {
    const dir = await tempDir();
    let store = await openEmbeddedStore({ dir });
    const lease = await store.grantLease(30);
    await store.put('/a', '1');
    await store.put('/a', '2');
    await store.put('/leased', 'x', { lease: lease.id });
    await store.txn({ compare: [], success: [{ type: 'put', key: '/b', value: '1' }, { type: 'delete', key: '/a' }] });
    const before = await dump(store);
    await store.close();

    store = await openEmbeddedStore({ dir });
    expect(await dump(store)).toEqual(before);
    await store.keepAlive(lease.id); // leases restart with their full TTL
    const next = await store.grantLease(30);
    expect(next.id).not.toBe(lease.id);
    const batches: WatchBatch[] = [];
    const w = store.watch('/', (b) => batches.push(b), { fromRevision: 0 });
    await waitFor('history replayed', () => batches.length === 4);
    w.cancel();
    expect(batches[3]?.events.map((e) => `${e.type} ${e.kv.key}`)).toEqual(['put /b', 'delete /a']);
    await store.revokeLease(lease.id);
    expect(await store.get('/leased')).toBeUndefined();
    await store.close();
  });

  it('snapshots and drops old segments, and reopens from snapshot plus log', async () => {
    const dir = await tempDir();
    let store = await openEmbeddedStore({ dir, snapshotEveryRecords: 10 });
    const lease = await store.grantLease(60);
    for (let i = 0; i < 95; i++) await store.put(`/k/${i % 13}`, String(i), i % 2 === 0 ? { lease: lease.id } : {});
    await store.delete('/k/3');
    const before = await dump(store);
    await store.close(); // waits for the background snapshot
    const files = await readdir(dir);
    expect(files.filter((n) => n.endsWith('.snap'))).toHaveLength(1);
    expect((await segmentsOf(dir)).length).toBeLessThanOrEqual(2);
    const report = await inspectEmbeddedStore(dir);
    expect(report.snapshotRevision).toBeGreaterThan(80);
    expect(report.records).toBeLessThan(20);

    store = await openEmbeddedStore({ dir, snapshotEveryRecords: 10 });
    expect(await dump(store)).toEqual(before);
    // History before the snapshot is gone; after it, it is replayed from the log.
    expect(await store.compactedRevision()).toBe(report.snapshotRevision);
    const errors: Error[] = [];
    store.watch('/', () => undefined, { fromRevision: 1, onError: (e) => errors.push(e) });
    await waitFor('compacted error', () => errors.length === 1);
    await store.revokeLease(lease.id);
    expect((await store.range('/k/')).kvs.every((kv) => Number(kv.value) % 2 === 1)).toBe(true);
    await store.close();
  });

  it('cuts a torn tail (a crash mid-write) and keeps working on the repaired log', async () => {
    const dir = await tempDir();
    let store = await openEmbeddedStore({ dir });
    for (let i = 0; i < 10; i++) await store.put(`/k/${i}`, String(i));
    const before = await dump(store);
    await store.close();

    // A frame header promising more bytes than were written, then garbage.
    const torn = Buffer.from('SHL1\xff\x00\x00\x00\x12\x34\x56\x78{"half', 'latin1');
    await appendFile(await lastSegment(dir), torn);
    expect((await inspectEmbeddedStore(dir)).tornTail).toMatchObject({ bytes: torn.length });

    store = await openEmbeddedStore({ dir });
    expect(await dump(store)).toEqual(before);
    await store.put('/after', 'repair');
    await store.close();
    expect((await inspectEmbeddedStore(dir)).tornTail).toBeUndefined();
    store = await openEmbeddedStore({ dir });
    expect((await store.get('/after'))?.value).toBe('repair');
    expect(await store.currentRevision()).toBe(11);
    await store.close();
  });

  it('drops only the half-written last record when the file ends inside it', async () => {
    const dir = await tempDir();
    let store = await openEmbeddedStore({ dir });
    for (let i = 0; i < 5; i++) await store.put(`/k/${i}`, String(i));
    await store.close();
    const seg = await lastSegment(dir);
    await truncate(seg, (await stat(seg)).size - 3);
    store = await openEmbeddedStore({ dir });
    expect(await store.currentRevision()).toBe(4);
    expect(await store.get('/k/4')).toBeUndefined();
    await store.close();
  });

  it('refuses to open when a record in the middle of the log is corrupt', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore({ dir });
    for (let i = 0; i < 10; i++) await store.put(`/k/${i}`, `value-${i}`);
    await store.close();
    const seg = await lastSegment(dir);
    const buf = await readFile(seg);
    const at = buf.indexOf('value-3');
    buf[at] = 'V'.charCodeAt(0);
    await writeFile(seg, buf);

    const err = await openEmbeddedStore({ dir }).then(() => undefined, (e: unknown) => e);
    expect(isShoalError(err) && err.code).toBe('SHOAL_ERR_STORE_CORRUPT');
    expect(String(err)).toMatch(/checksum mismatch.*valid records follow it/);
    await expect(inspectEmbeddedStore(dir)).rejects.toThrow(/cannot be recovered/);
    // The refusal released the lock and changed nothing.
    expect(await readFile(seg)).toEqual(buf);
    expect((await readdir(dir)).includes('LOCK')).toBe(false);
  });

  it('refuses to open when a segment other than the last one has a damaged end', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore({ dir });
    for (let i = 0; i < 5; i++) await store.put(`/k/${i}`, String(i));
    await store.close();
    const seg = await lastSegment(dir);
    await appendFile(seg, Buffer.from('SHL1\xff\x00\x00\x00', 'latin1'));
    // A later segment exists, so the damage cannot be a torn tail.
    await writeFile(seg.replace(/1\.log$/, '2.log'), '');
    await expect(openEmbeddedStore({ dir })).rejects.toThrow(/later segments follow it/);
  });

  it('refuses to open when a log segment is missing', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore({ dir, snapshotEveryRecords: 5 });
    for (let i = 0; i < 12; i++) await store.put(`/k/${i}`, String(i));
    await store.close();
    const snap = (await readdir(dir)).find((n) => n.endsWith('.snap')) as string;
    // Without its snapshot, the log no longer starts at the first segment.
    await rename(join(dir, snap), join(dir, 'moved-away'));
    await expect(openEmbeddedStore({ dir })).rejects.toThrow(/wal-0000000000000001\.log is missing/);
  });

  it('acknowledges many concurrent writes in few fsyncs, and all survive a reopen', async () => {
    const dir = await tempDir();
    let store = await openEmbeddedStore({ dir, snapshotEveryRecords: 300 });
    const n = 1000;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => store.put(`/c/${i}`, String(i))));
    const revs = results.map((r) => r.revision).sort((a, b) => a - b);
    expect(revs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    await store.close();
    store = await openEmbeddedStore({ dir });
    const { kvs } = await store.range('/c/');
    expect(kvs).toHaveLength(n);
    for (const kv of kvs) expect(kv.modRevision).toBe(results[Number(kv.value)]?.revision);
    await store.close();
  });

  it('locks the directory against a second open, and takes over a stale lock', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore({ dir });
    const err = await openEmbeddedStore({ dir }).then(() => undefined, (e: unknown) => e);
    expect(isKind(err, 'Conflict') && isShoalError(err) && err.code).toBe('SHOAL_ERR_STORE_LOCKED');
    await store.close();

    // A lock left by a process that died.
    const dead = spawnSync(process.execPath, ['-e', '']).pid as number;
    await writeFile(join(dir, 'LOCK'), `${dead}\n`);
    const again = await openEmbeddedStore({ dir });
    expect((await readFile(join(dir, 'LOCK'), 'utf8')).trim()).toBe(String(process.pid));
    await again.close();
  });
});

/** A log whose appends the test resolves or fails by hand. */
class ManualLog implements StoreLog {
  appends: { records: WalRecord[]; resolve: () => void; reject: (e: Error) => void }[] = [];
  append(records: WalRecord[]): Promise<void> {
    return new Promise((resolve, reject) => this.appends.push({ records, resolve, reject }));
  }
  wantsSnapshot(): boolean {
    return false;
  }
  async snapshot(_image: MvccImage): Promise<void> {}
  async close(): Promise<void> {}
}

describe('embedded store engine (group commit)', () => {
  const engine = (log: StoreLog): EmbeddedStore => new EmbeddedStore({ mvcc: new Mvcc(100), log, now: Date.now });

  it('makes writes visible only once durable, and batches writes that arrive during an fsync', async () => {
    const log = new ManualLog();
    const store = engine(log);
    const seen: WatchBatch[] = [];
    store.watch('', (b) => seen.push(b), { fromRevision: 0 });
    const first = store.put('/a', '1');
    await Promise.resolve();
    expect(log.appends).toHaveLength(1);
    const rest = Array.from({ length: 50 }, (_, i) => store.put(`/b/${i}`, String(i)));
    expect(await store.get('/a')).toBeUndefined();
    expect(await store.currentRevision()).toBe(0);
    log.appends[0]?.resolve();
    expect((await first).revision).toBe(1);
    expect((await store.get('/a'))?.value).toBe('1');
    await waitFor('second batch appended', () => log.appends.length === 2);
    expect(log.appends[1]?.records).toHaveLength(50); // one fsync for all 50
    expect((await store.range('/b/')).kvs).toEqual([]);
    log.appends[1]?.resolve();
    expect((await Promise.all(rest)).map((r) => r.revision)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    await waitFor('watch saw 51 revisions', () => seen.length === 51);
  });

  it('changes nothing in memory when a write fails to persist, and refuses writes after it', async () => {
    const log = new ManualLog();
    const store = engine(log);
    await Promise.resolve();
    const seen: WatchBatch[] = [];
    store.watch('', (b) => seen.push(b), { fromRevision: 0 });
    const put = store.put('/a', '1');
    await Promise.resolve();
    log.appends[0]?.reject(new Error('EIO: fsync failed'));
    await expectKind(put, 'Unavailable');
    expect(await store.get('/a')).toBeUndefined();
    expect(await store.currentRevision()).toBe(0);
    await expectKind(store.put('/b', '1'), 'Unavailable');
    expect(log.appends).toHaveLength(1);
    expect(seen).toEqual([]);
    await store.close();
  });

  it('plans later writes of a batch against earlier ones (CAS inside one group commit)', async () => {
    const log = new ManualLog();
    const store = engine(log);
    const blocker = store.put('/x', '0');
    await Promise.resolve();
    const claim = (v: string) => store.txn({
      compare: [{ key: '/name', target: 'version', op: '=', value: 0 }],
      success: [{ type: 'put', key: '/name', value: v }],
      failure: [{ type: 'get', key: '/name' }],
    });
    const [a, b] = [claim('a'), claim('b')];
    log.appends[0]?.resolve();
    await blocker;
    await waitFor('batch', () => log.appends.length === 2);
    log.appends[1]?.resolve();
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.succeeded).toBe(true);
    expect(rb.succeeded).toBe(false);
    expect(rb.results[0]?.kvs[0]?.value).toBe('a');
  });
});

describe('embedded store specifics', () => {
  it('keeps historyLimit revisions of events for watches', async () => {
    const store = await openEmbeddedStore({ historyLimit: 5 });
    for (let i = 0; i < 10; i++) await store.put('/h', String(i));
    expect(await store.compactedRevision()).toBe(5);
    const errors: Error[] = [];
    store.watch('/', () => undefined, { fromRevision: 4, onError: (e) => errors.push(e) });
    const batches: WatchBatch[] = [];
    store.watch('/', (b) => batches.push(b), { fromRevision: 5 });
    await waitFor('watches settled', () => errors.length === 1 && batches.length === 5);
    expect(batches.map((b) => b.revision)).toEqual([6, 7, 8, 9, 10]);
    await store.close();
  });

  it('lets a watch callback write to the store (memory-only writes apply synchronously)', async () => {
    const store = await openEmbeddedStore({});
    store.watch('/in/', (b) => {
      for (const e of b.events) void store.put(`/out/${e.kv.key.slice(4)}`, e.kv.value);
    });
    const out: WatchBatch[] = [];
    store.watch('/out/', (b) => out.push(b), { fromRevision: 0 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`/in/${i}`, String(i))));
    await waitFor('20 echoed writes', () => out.length === 20);
    expect((await store.range('/out/')).kvs).toHaveLength(20);
    await store.close();
  });

  it('hands out frozen key-values, so a caller cannot change the store by mutating a result', async () => {
    const store = await openEmbeddedStore({});
    await store.put('/a', '1');
    const kv = await store.get('/a');
    expect(Object.isFrozen(kv)).toBe(true);
    await store.close();
  });
});

describe('SortedKeys', () => {
  it('behaves like a sorted set under random inserts, removes and prefix scans', () => {
    const key = fc.stringMatching(/^[a-d]{0,7}$/);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), key), { maxLength: 3000 }), key, (ops, prefix) => {
        const sut = new SortedKeys();
        const model = new Set<string>();
        for (const [add, k] of ops) {
          expect(add ? sut.insert(k) : sut.remove(k)).toBe(add ? !model.has(k) : model.has(k));
          if (add) model.add(k);
          else model.delete(k);
        }
        expect(sut.size).toBe(model.size);
        expect([...sut.withPrefix(prefix)]).toEqual([...model].filter((k) => k.startsWith(prefix)).sort());
        expect([...sut.withPrefix('')]).toEqual([...model].sort());
      }),
      { numRuns: 200 },
    );
  });

  it('keeps order across chunk splits', () => {
    const sut = new SortedKeys();
    const keys = Array.from({ length: 5000 }, (_, i) => `k${String((i * 7919) % 5000).padStart(5, '0')}`);
    for (const k of keys) sut.insert(k);
    for (const k of keys.slice(0, 2500)) sut.remove(k);
    expect([...sut.withPrefix('k')]).toEqual(keys.slice(2500).sort());
  });
});
