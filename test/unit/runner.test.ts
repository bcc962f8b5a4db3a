/**
 * BoundedFrequencyRunner under fake timers: coalescing, one run in flight, the token bucket
 * (burst then minInterval), periodic resync, retry after failure, stop() and idle().
 * `now` reads Date.now(), which the fake timers control, so clock and timers agree.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BoundedFrequencyRunner, type RunnerOptions } from '../../src/runner.js';

interface Deferred { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void }
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** A sync function that records when it ran and how many ran at once; `gate` makes runs hang. */
class Probe {
  readonly starts: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** When set, each run waits for the next entry (a fresh deferred per run). */
  gates: Deferred[] | undefined;
  /** Runs that should throw, by 1-based run number. */
  readonly failOn = new Set<number>();

  readonly fn = async (): Promise<void> => {
    const n = this.starts.push(Date.now());
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.gates) {
        const d = deferred();
        this.gates.push(d);
        await d.promise;
      }
      if (this.failOn.has(n)) throw new Error(`run ${n} failed`);
    } finally {
      this.inFlight--;
    }
  };

  get count(): number { return this.starts.length; }
}

const T0 = 1_700_000_000_000;
const runners: BoundedFrequencyRunner[] = [];

function make(probe: Probe, opts: Partial<RunnerOptions> = {}): BoundedFrequencyRunner {
  const r = new BoundedFrequencyRunner(probe.fn, { name: 'test', minIntervalMs: 100, maxIntervalMs: 10_000, now: () => Date.now(), ...opts });
  runners.push(r);
  return r;
}

/** Lets timers due in `ms` fire and the promise callbacks they cause settle. */
const advance = (ms: number): Promise<unknown> => vi.advanceTimersByTimeAsync(ms);

/** Whether `p` has settled once pending microtasks ran (no timer moves). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => { done = true; }, () => { done = true; });
  await advance(0);
  return done;
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(async () => {
  for (const r of runners.splice(0)) {
    const stopped = r.stop();
    await vi.runOnlyPendingTimersAsync();
    await stopped;
  }
  vi.useRealTimers();
});

describe('BoundedFrequencyRunner', () => {
  it('coalesces many run() calls into one sync', async () => {
    const p = new Probe();
    const r = make(p);
    for (let i = 0; i < 50; i++) r.run();
    await advance(0);
    expect(p.count).toBe(1);
    // Nothing was left pending by the burst of requests.
    await advance(5_000);
    expect(p.count).toBe(1);
  });

  it('does nothing before start() or run()', async () => {
    const p = new Probe();
    make(p);
    await advance(60_000);
    expect(p.count).toBe(0);
  });

  it('keeps at most one sync in flight; requests during a run cause exactly one more run', async () => {
    const p = new Probe();
    p.gates = [];
    const r = make(p, { minIntervalMs: 10 });
    r.run();
    await advance(0);
    expect(p.count).toBe(1);
    for (let i = 0; i < 20; i++) { r.run(); await advance(50); }
    expect(p.count).toBe(1); // still the first one, hanging
    p.gates[0]?.resolve();
    await advance(0);
    expect(p.count).toBe(2); // the requests made meanwhile, coalesced
    p.gates[1]?.resolve();
    await advance(1_000);
    expect(p.count).toBe(2);
    expect(p.maxInFlight).toBe(1);
  });

  it('with burst 1, runs are at least minInterval apart under a constant stream of requests', async () => {
    const p = new Probe();
    const r = make(p, { minIntervalMs: 100 });
    for (let t = 0; t < 1_000; t += 5) { r.run(); await advance(5); }
    const gaps = p.starts.slice(1).map((s, i) => s - (p.starts[i] ?? 0));
    expect(p.starts[0]).toBe(T0);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(100);
    // ...and it is not starved either: one run per interval.
    expect(p.count).toBeGreaterThanOrEqual(10);
  });

  it('allows `burst` immediate runs, then applies minInterval', async () => {
    const p = new Probe();
    const r = make(p, { minIntervalMs: 100, burst: 3 });
    for (let i = 0; i < 3; i++) { r.run(); await advance(0); }
    expect(p.starts).toEqual([T0, T0, T0]);
    r.run();
    await advance(99);
    expect(p.count).toBe(3);
    await advance(1);
    expect(p.count).toBe(4);
    expect(p.starts[3]).toBe(T0 + 100);
    // The bucket refills: after a quiet period, a new burst is allowed.
    await advance(1_000);
    for (let i = 0; i < 3; i++) { r.run(); await advance(0); }
    expect(p.count).toBe(7);
    expect(p.starts.slice(4)).toEqual([T0 + 1_100, T0 + 1_100, T0 + 1_100]);
  });

  it('resyncs every maxInterval without any request, counted from the end of the last run', async () => {
    const p = new Probe();
    const r = make(p, { minIntervalMs: 100, maxIntervalMs: 1_000 });
    r.start();
    await advance(0);
    expect(p.count).toBe(1);
    await advance(999);
    expect(p.count).toBe(1);
    await advance(1);
    expect(p.count).toBe(2);
    await advance(1_000);
    expect(p.count).toBe(3);
    // A requested run in between pushes the next resync back.
    await advance(500);
    r.run();
    await advance(0);
    expect(p.count).toBe(4);
    await advance(999);
    expect(p.count).toBe(4);
    await advance(1);
    expect(p.count).toBe(5);
    expect(p.starts.map((s) => s - T0)).toEqual([0, 1_000, 2_000, 2_500, 3_500]);
  });

  it('retries after retryAfterMs when the sync fails, reporting the attempt count', async () => {
    const p = new Probe();
    p.failOn.add(1).add(2).add(3);
    const onError = vi.fn<(err: unknown, attempt: number) => void>();
    const onSuccess = vi.fn<(ms: number) => void>();
    const r = make(p, { minIntervalMs: 10, maxIntervalMs: 60_000, retryAfterMs: 300, onError, onSuccess });
    r.run();
    await advance(0);
    expect(onError).toHaveBeenCalledTimes(1);
    await advance(299);
    expect(p.count).toBe(1);
    await advance(1);
    expect(p.count).toBe(2);
    await advance(300);
    expect(p.count).toBe(3);
    await advance(300);
    expect(p.count).toBe(4); // run 4 succeeds
    expect(onError.mock.calls.map(([e, n]) => [(e as Error).message, n])).toEqual([['run 1 failed', 1], ['run 2 failed', 2], ['run 3 failed', 3]]);
    expect(onSuccess).toHaveBeenCalledTimes(1);
    expect(p.starts.map((s) => s - T0)).toEqual([0, 300, 600, 900]);
    // After a success, no more retries: the next run is the periodic resync.
    await advance(59_999);
    expect(p.count).toBe(4);
    await advance(1);
    expect(p.count).toBe(5);
    // A later failure starts counting from 1 again.
    p.failOn.add(6);
    r.run();
    await advance(10); // minInterval after run 5
    expect(p.count).toBe(6);
    expect(onError).toHaveBeenCalledTimes(4);
    expect(onError).toHaveBeenLastCalledWith(expect.any(Error), 1);
  });

  it('reports the duration of a successful run to onSuccess', async () => {
    const p = new Probe();
    p.gates = [];
    const onSuccess = vi.fn<(ms: number) => void>();
    const r = make(p, { onSuccess });
    r.run();
    await advance(250);
    p.gates[0]?.resolve();
    await advance(0);
    expect(onSuccess).toHaveBeenCalledWith(250);
  });

  it('stop() waits for the run in flight, and no run starts afterwards', async () => {
    const p = new Probe();
    p.gates = [];
    const r = make(p, { maxIntervalMs: 1_000 });
    r.start();
    await advance(0);
    expect(p.inFlight).toBe(1);
    r.run(); // would cause a second run
    const stopped = r.stop();
    expect(await settled(stopped)).toBe(false);
    await advance(5_000);
    expect(await settled(stopped)).toBe(false);
    p.gates[0]?.resolve();
    expect(await settled(stopped)).toBe(true);
    await advance(60_000);
    r.run();
    await advance(60_000);
    expect(p.count).toBe(1);
  });

  it('stop() with nothing in flight resolves at once and cancels the scheduled runs', async () => {
    const p = new Probe();
    const r = make(p, { minIntervalMs: 1_000, maxIntervalMs: 2_000 });
    r.run();
    await advance(0);
    r.run(); // scheduled 1 s later by the rate limit
    expect(await settled(r.stop())).toBe(true);
    await advance(10_000);
    expect(p.count).toBe(1);
  });

  it('start() after stop() runs again', async () => {
    const p = new Probe();
    const r = make(p);
    r.start();
    await advance(0);
    await r.stop();
    r.start();
    await advance(1_000);
    expect(p.count).toBe(2);
  });

  it('idle() resolves at once when nothing is in flight or pending', async () => {
    const p = new Probe();
    const r = make(p);
    expect(await settled(r.idle())).toBe(true);
  });

  it('idle() waits for the pending run and for runs requested while one is in flight', async () => {
    const p = new Probe();
    p.gates = [];
    const r = make(p, { minIntervalMs: 100 });
    r.run();
    const idle = r.idle();
    expect(await settled(idle)).toBe(false); // run 1 in flight
    r.run(); // requested during run 1
    p.gates[0]?.resolve();
    expect(await settled(idle)).toBe(false); // run 2 pending (rate limited)
    await advance(100);
    expect(p.count).toBe(2);
    expect(await settled(idle)).toBe(false); // run 2 in flight
    p.gates[1]?.resolve();
    expect(await settled(idle)).toBe(true);
  });

  it('idle() waits through a failure and its retry', async () => {
    const p = new Probe();
    p.failOn.add(1);
    const r = make(p, { retryAfterMs: 500, onError: () => undefined });
    r.run();
    const idle = r.idle();
    await advance(0);
    expect(p.count).toBe(1);
    expect(await settled(idle)).toBe(false); // the retry is pending
    await advance(500);
    expect(p.count).toBe(2);
    expect(await settled(idle)).toBe(true);
  });

  it('stop() releases idle() waiters even when a run was pending but not started', async () => {
    const p = new Probe();
    const r = make(p, { minIntervalMs: 1_000 });
    r.run();
    await advance(0);
    r.run(); // pending, waiting for the rate limit
    const idle = r.idle();
    expect(await settled(idle)).toBe(false);
    await r.stop();
    // The pending run will never happen: a shutdown awaiting idle() must not hang.
    expect(await settled(idle)).toBe(true);
  });
});
