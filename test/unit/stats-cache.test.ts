/**
 * The per-backend counters behind /metrics (ingress/stats-cache.ts): BackendTotals turns raw
 * dataplane readings into counters that never go down (a sandbox gone keeps its share, a
 * re-programmed backend counts from its new value, an unreadable source neither adds nor
 * loses), and StatsCache reads in the background only: readers never wait, reads pace
 * themselves to the configured share of time, and stop while nobody reads.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BackendTotals, backendLabel, mapLimit, StatsCache } from '../../ingress/stats-cache.js';
import type { LbBackendStats } from '../../ingress/types.js';

const st = (address: string, connectionsTotal: number, extra: Partial<LbBackendStats> = {}): LbBackendStats =>
  ({ vs: 'tcp/10.96.0.1/80', service: 'web', address, port: 80, connectionsTotal, ...extra });
const rows = (t: BackendTotals): Array<[string, number, number | undefined]> =>
  [...t.rows()].map((r): [string, number, number | undefined] => [r.backend, r.connectionsTotal, r.connections]).sort((a, b) => a[0].localeCompare(b[0]));

describe('BackendTotals', () => {
  it('sums sources per backend and adds only what each source gained since its last reading', () => {
    const t = new BackendTotals();
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 5), st('10.0.0.2', 1)] }, { source: 'sb2', stats: [st('10.0.0.1', 3)] }]);
    expect(rows(t)).toEqual([['10.0.0.1:80', 8, undefined], ['10.0.0.2:80', 1, undefined]]);
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 7), st('10.0.0.2', 1)] }, { source: 'sb2', stats: [st('10.0.0.1', 4)] }]);
    expect(rows(t)).toEqual([['10.0.0.1:80', 11, undefined], ['10.0.0.2:80', 1, undefined]]);
  });

  it('never goes down: a source that disappears keeps its share, a counter that went back counts from its new value', () => {
    const t = new BackendTotals();
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 5)] }, { source: 'sb2', stats: [st('10.0.0.1', 3)] }]);
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 6)] }]); // sb2's sandbox was deleted
    expect(rows(t)).toEqual([['10.0.0.1:80', 9, undefined]]);
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 2)] }]); // re-programmed: 2 new flows
    expect(rows(t)).toEqual([['10.0.0.1:80', 11, undefined]]);
  });

  it('an unreadable source neither adds nor loses; read again, it adds only its increase', () => {
    const t = new BackendTotals();
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 5, { connections: 2 })] }]);
    t.update([{ source: 'sb1', stats: undefined }]);
    expect(rows(t)).toEqual([['10.0.0.1:80', 5, 2]]);
    t.update([{ source: 'sb1', stats: [st('10.0.0.1', 6, { connections: 1 })] }]);
    expect(rows(t)).toEqual([['10.0.0.1:80', 6, 1]]);
  });

  it('drops a backend no source holds any more; groups (hops) are kept apart; bytes count where reported', () => {
    const t = new BackendTotals();
    t.update([
      { source: 'node', group: 'node', stats: [st('10.0.0.1', 1)] },
      { source: 'ingress-sandbox', group: 'ingress-sandbox', stats: [st('10.0.0.1', 4, { bytes: 100 }), st('10.0.0.2', 2)] },
    ]);
    expect([...t.rows()].map((r) => [r.group, r.backend, r.connectionsTotal, r.hasBytes, r.bytesTotal])).toEqual([
      ['node', '10.0.0.1:80', 1, false, 0], ['ingress-sandbox', '10.0.0.1:80', 4, true, 100], ['ingress-sandbox', '10.0.0.2:80', 2, false, 0],
    ]);
    t.update([{ source: 'ingress-sandbox', group: 'ingress-sandbox', stats: [st('10.0.0.1', 4, { bytes: 150 })] }]);
    expect([...t.rows()].map((r) => [r.group, r.backend, r.bytesTotal])).toEqual([['ingress-sandbox', '10.0.0.1:80', 150]]);
    expect(t.size).toBe(1);
  });

  it('labels IPv6 backends with brackets and every-port backends with *', () => {
    expect(backendLabel('fd00::2', 80)).toBe('[fd00::2]:80');
    expect(backendLabel('10.0.0.2', 0)).toBe('10.0.0.2:*');
  });
});

describe('StatsCache', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('serves the last value without waiting; reads in the background, paced by interval and share of time', async () => {
    vi.useFakeTimers();
    let now = 0;
    let reads = 0;
    const cache = new StatsCache(async () => { reads++; now += 300; return reads; }, 0, { intervalMs: 1000, maxShare: 0.1, now: () => now });
    expect(cache.value).toBe(0);
    cache.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(cache.value).toBe(1);
    // A read took 300 ms: the next waits 300 / 0.1 = 3000 ms, not the 1000 ms interval.
    expect(cache.nextDelayMs).toBe(3000);
    await vi.advanceTimersByTimeAsync(2999);
    expect(reads).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(cache.value).toBe(2);
    await cache.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(reads).toBe(2);
  });

  it('keeps the previous value when a read fails, and reports the failure', async () => {
    const errors: unknown[] = [];
    let fail = false;
    const cache = new StatsCache(async () => { if (fail) throw new Error('nft gone'); return 'ok'; }, 'none', { onError: (e) => errors.push(e) });
    await cache.refresh();
    fail = true;
    await cache.refresh();
    expect(cache.value).toBe('ok');
    expect([cache.refreshes, cache.failures, errors.length]).toEqual([1, 1, 1]);
  });

  it('stops reading while nobody reads the value, and wakes on the next read', async () => {
    vi.useFakeTimers();
    let now = 0;
    let reads = 0;
    const cache = new StatsCache(async () => ++reads, 0, { intervalMs: 1000, idleAfterMs: 5000, now: () => now });
    cache.start();
    for (let i = 0; i < 20; i++) { now += 1000; await vi.advanceTimersByTimeAsync(1000); }
    const idleReads = reads;
    expect(idleReads).toBeLessThanOrEqual(7); // about idleAfterMs / intervalMs, then nothing
    for (let i = 0; i < 10; i++) { now += 1000; await vi.advanceTimersByTimeAsync(1000); }
    expect(reads).toBe(idleReads);
    expect(cache.value).toBe(idleReads); // the stale value at once...
    await vi.advanceTimersByTimeAsync(0);
    expect(reads).toBe(idleReads + 1); // ...and a read started
    await cache.stop();
  });
});

describe('mapLimit', () => {
  it('keeps the order and never runs more than the limit at once', async () => {
    let running = 0;
    let most = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (x) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 5 - (x % 3)));
      running--;
      return x * 2;
    });
    expect(out).toEqual([2, 4, 6, 8, 10, 12, 14]);
    expect(most).toBe(3);
  });
});
