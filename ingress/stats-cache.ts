/**
 * Per-backend counters read from the kernel in the background, never on a scrape.
 *
 * Reading a dataplane's counters costs a kernel dump per sandbox (an `nft` process, IPVS
 * netlink dumps): with 100 task sandboxes that is seconds, far too slow for a `/metrics`
 * request and harmful to the event loop. So:
 *
 * - {@link StatsCache} reads on a timer (one read in flight at most), keeps the last result and
 *   serves it as is. The next read waits `max(intervalMs, lastDuration / maxShare)`, so however
 *   many sandboxes a node has, reading costs at most `maxShare` of the time. Nobody reading the
 *   cache for `idleAfterMs` stops the reads (no scraper, no kernel dumps); the first read after
 *   that wakes them (it gets the stale value at once).
 * - {@link BackendTotals} turns raw readings (one per dataplane, each with counters since the
 *   backend was programmed there) into Prometheus counters per (service, backend[, hop]) that
 *   never go down: each source's increase since the previous reading is added, a source that
 *   disappears (a task sandbox deleted) keeps what it contributed, a counter that went back
 *   (a backend re-programmed) counts from its new value. A group no source holds any more (the
 *   backend is gone) is dropped, so label sets do not pile up.
 */
import type { LbBackendStats } from './types.js';

/** Options of {@link StatsCache}. */
export interface StatsCacheOptions {
  /** Least time between two reads, ms. Default 5 s. */
  intervalMs?: number;
  /** Largest share of the time spent reading (0-1]: the next read waits lastDuration / maxShare. Default 0.1. */
  maxShare?: number;
  /** No value read for this long: reads stop until the next one. Default 5 min. */
  idleAfterMs?: number;
  now?: () => number;
  /** A read failed (it is retried at the next interval; the previous value is kept). */
  onError?: (e: unknown) => void;
}

/**
 * The last value of a slow read, refreshed in the background (see the module doc). Only the
 * timer's read writes the value; readers never wait.
 */
export class StatsCache<T> {
  private current: T;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;
  private lastReadAt: number;
  /** When the value was last refreshed (0: never). */
  refreshedAt = 0;
  /** Duration of the last refresh, ms. */
  lastDurationMs = 0;
  refreshes = 0;
  failures = 0;
  private readonly o: Required<Omit<StatsCacheOptions, 'onError'>> & Pick<StatsCacheOptions, 'onError'>;

  constructor(private readonly read: () => Promise<T>, initial: T, opts: StatsCacheOptions = {}) {
    this.current = initial;
    this.o = { intervalMs: 5000, maxShare: 0.1, idleAfterMs: 300_000, now: Date.now, ...opts };
    this.lastReadAt = this.o.now();
  }

  /** Starts the background reads (the first one now). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops the reads; resolves once a read in flight ended. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /** The last value read (never waits, never touches the kernel). */
  get value(): T {
    const wasIdle = this.idle();
    this.lastReadAt = this.o.now();
    if (wasIdle && this.running && !this.inFlight) this.schedule(0);
    return this.current;
  }

  /** Reads now (tests, a caller that must see fresh counters); resolves when the value is updated. */
  refresh(): Promise<void> {
    this.inFlight ??= this.doRefresh().finally(() => { this.inFlight = undefined; });
    return this.inFlight;
  }

  /** Milliseconds until the next background read may start, given the last one's duration. */
  get nextDelayMs(): number {
    return Math.max(this.o.intervalMs, Math.ceil(this.lastDurationMs / this.o.maxShare));
  }

  private idle(): boolean { return this.o.now() - this.lastReadAt > this.o.idleAfterMs; }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      // Nobody asked for a while: stop reading until someone does (see `value`).
      if (this.refreshedAt > 0 && this.idle()) return;
      void this.refresh().then(() => { if (this.running) this.schedule(this.nextDelayMs); });
    }, ms);
    this.timer.unref();
  }

  private async doRefresh(): Promise<void> {
    const t0 = this.o.now();
    try {
      this.current = await this.read();
      this.refreshes++;
      this.refreshedAt = this.o.now();
    } catch (e) {
      this.failures++;
      this.o.onError?.(e);
    } finally {
      this.lastDurationMs = this.o.now() - t0;
    }
  }
}

/** One row of {@link BackendTotals}: a backend as Prometheus sees it. */
export interface BackendRow {
  service: string;
  /** `address:port` (`[v6]:port`). */
  backend: string;
  /** Extra label (e.g. the ingress hop), '' when unused. */
  group: string;
  /** Open connections now, summed over the sources that count them (undefined: none does). */
  connections: number | undefined;
  /** Connections (or flows) sent to the backend: a counter, never goes down. */
  connectionsTotal: number;
  /** Bytes, where a source counts them: a counter. */
  bytesTotal: number;
  /** Whether any source reported connectionsTotal / bytes (else the series is left out). */
  hasTotal: boolean;
  hasBytes: boolean;
}

/** The readings of one dataplane (a sandbox, a hop): its id and its counters. */
export interface StatsReading {
  source: string;
  /** Extra label of every row from this source ('' when unused). */
  group?: string;
  /** Undefined: this source could not be read this time (what it had is kept, nothing added). */
  stats: readonly LbBackendStats[] | undefined;
}

/** `address:port`, with brackets for IPv6; `address:*` for a backend of an every-port frontend (port 0). */
export function backendLabel(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port === 0 ? '*' : port}`;
}

interface Seen { gk: string; total?: number; bytes?: number; connections?: number }

/** Monotonic per-backend counters from raw dataplane readings (see the module doc). */
export class BackendTotals {
  /** Raw values last seen per source|vs|backend: the base of the next increase. */
  private last = new Map<string, Seen>();
  private readonly rowsByKey = new Map<string, BackendRow>();

  /** Folds one complete reading of every source in (sources absent from it are gone). */
  update(readings: readonly StatsReading[]): void {
    const seen = new Map<string, Seen>();
    const live = new Set<string>();
    const conns = new Map<string, number>();
    const keep = (rk: string, v: Seen): void => {
      seen.set(rk, v);
      live.add(v.gk);
      if (v.connections !== undefined) conns.set(v.gk, (conns.get(v.gk) ?? 0) + v.connections);
    };
    for (const r of readings) {
      if (!r.stats) {
        // Unreadable this time: carry its last values over unchanged (no increase, no loss).
        const pre = `${r.source}\0`;
        for (const [rk, v] of this.last) if (rk.startsWith(pre)) keep(rk, v);
        continue;
      }
      const group = r.group ?? '';
      for (const s of r.stats) {
        const backend = backendLabel(s.address, s.port);
        const gk = `${s.service}\0${backend}\0${group}`;
        let row = this.rowsByKey.get(gk);
        if (!row) {
          row = { service: s.service, backend, group, connections: undefined, connectionsTotal: 0, bytesTotal: 0, hasTotal: false, hasBytes: false };
          this.rowsByKey.set(gk, row);
        }
        const rk = `${r.source}\0${s.vs}\0${backend}`;
        const prev = this.last.get(rk);
        const now: Seen = { gk };
        if (s.connectionsTotal !== undefined) {
          row.connectionsTotal += increase(prev?.total, s.connectionsTotal);
          row.hasTotal = true;
          now.total = s.connectionsTotal;
        }
        if (s.bytes !== undefined) {
          row.bytesTotal += increase(prev?.bytes, s.bytes);
          row.hasBytes = true;
          now.bytes = s.bytes;
        }
        if (s.connections !== undefined) now.connections = s.connections;
        keep(rk, now);
      }
    }
    this.last = seen;
    for (const [gk, row] of this.rowsByKey) {
      if (!live.has(gk)) this.rowsByKey.delete(gk);
      else row.connections = conns.get(gk);
    }
  }

  /** Every backend some source holds, with its counters. */
  rows(): IterableIterator<BackendRow> { return this.rowsByKey.values(); }

  get size(): number { return this.rowsByKey.size; }
}

/** What a counter grew by: everything when new, the difference, or (it went back: reset) its new value. */
function increase(prev: number | undefined, now: number): number {
  if (prev === undefined || now < prev) return now;
  return now - prev;
}

/** Runs `fn` over `items` with at most `limit` at once; resolves with the results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
