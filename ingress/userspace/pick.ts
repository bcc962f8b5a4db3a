/**
 * Backend selection of the userspace dataplane: pure (no sockets, no timers; clock and
 * randomness injected), so every scheduler is tested exactly.
 *
 * Schedulers (all six of {@link LbScheduler}, none mapped to another):
 * - `rr`: round robin over the backends with weight > 0.
 * - `wrr`: smooth weighted round robin (nginx): over one cycle of sum(weights) picks each backend
 *   is picked exactly `weight` times, interleaved (5,1,1 gives a a b a c a a).
 * - `random`: weighted random.
 * - `lc`: least open connections, weighted like IPVS `wlc` (open/weight; equal weights = plain
 *   lc); ties rotate so that idle backends share a burst.
 * - `sh`: source hashing as IPVS: a table of {@link SH_TABLE_SIZE} buckets filled in proportion to
 *   the weights, indexed by a hash of the client address. Stable while the backends are.
 * - `mh`: Maglev hashing (weighted, table of {@link MH_TABLE_SIZE} like IPVS's default): stable,
 *   and consistent under backend changes: adding or removing one backend moves only about
 *   1/N of the clients.
 *
 * Weight 0 (draining) backends are never picked and get no new affinity. Affinity (any
 * scheduler): a client keeps its backend while it has an open flow, and for `affinityMs` after
 * its last one ended; an entry pointing at a removed or draining backend is replaced.
 */
import type { LbScheduler } from '../types.js';

/** What a scheduler picks from. */
export interface Candidate {
  /** Identity within the virtual service: `address:port` (`[v6]:port`). */
  readonly id: string;
  /** 0..256; 0 = draining, never picked. */
  readonly weight: number;
}

/** Options of {@link Picker}. */
export interface PickerOptions<C extends Candidate> {
  scheduler: LbScheduler;
  /** Session affinity by client address (ms); 0 or absent = none. */
  affinityMs?: number;
  /** Open flows of a backend (`lc`). Default: none, so `lc` degrades to rotation. */
  load?: (c: C) => number;
  /** Milliseconds clock of the affinity table. Default `Date.now`. */
  now?: () => number;
  /** [0, 1) source of `random`. Default `Math.random`. */
  random?: () => number;
}

/** Buckets of the `sh` table (IPVS uses 256; more keeps big weights proportional). */
export const SH_TABLE_SIZE = 1021;
/** Slots of the Maglev table: a prime, IPVS's default (CONFIG_IP_VS_MH_TAB_INDEX=12). */
export const MH_TABLE_SIZE = 4093;

interface AffinityEntry {
  id: string;
  /** Flows of the client picked through this entry and not yet released. */
  open: number;
  /** Valid until then once `open` is 0. */
  expires: number;
}

/**
 * The scheduler state of one virtual service. `setBackends` after every change of the backend
 * list or of a weight; `pick` per new flow (TCP connection, UDP session); `release` when that
 * flow ends (affinity bookkeeping).
 */
export class Picker<C extends Candidate> {
  private scheduler: LbScheduler;
  private affinityMs: number;
  private readonly load: (c: C) => number;
  private readonly now: () => number;
  private readonly random: () => number;
  private byId = new Map<string, C>();
  /** Backends with weight > 0, sorted by id (hash tables must not depend on input order). */
  private eligible: C[] = [];
  private rrNext = 0;
  /** Smooth wrr: current weight of each eligible backend (same index). */
  private wrrCurrent: number[] = [];
  /** `sh` / `mh` lookup table (index into `eligible`). */
  private table: Uint16Array | Uint32Array = new Uint16Array(0);
  private readonly affinity = new Map<string, AffinityEntry>();
  private nextSweep = 0;

  constructor(opts: PickerOptions<C>) {
    this.scheduler = opts.scheduler;
    this.affinityMs = Math.max(0, opts.affinityMs ?? 0);
    this.load = opts.load ?? (() => 0);
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
  }

  /** Change scheduler or affinity; state that still applies (rr position, affinity table) is kept. */
  configure(scheduler: LbScheduler, affinityMs: number): void {
    const rebuild = scheduler !== this.scheduler;
    this.scheduler = scheduler;
    this.affinityMs = Math.max(0, affinityMs);
    if (this.affinityMs === 0) this.affinity.clear();
    if (rebuild) this.setBackends([...this.byId.values()]);
  }

  /** Replace the backend list (weights included); wrr state of surviving backends is kept. */
  setBackends(backends: readonly C[]): void {
    const oldCurrent = new Map<string, number>();
    this.eligible.forEach((c, i) => oldCurrent.set(c.id, this.wrrCurrent[i] ?? 0));
    this.byId = new Map(backends.map((c) => [c.id, c]));
    this.eligible = backends.filter((c) => c.weight > 0).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.wrrCurrent = this.eligible.map((c) => oldCurrent.get(c.id) ?? 0);
    if (this.scheduler === 'sh') this.table = shTable(this.eligible);
    else if (this.scheduler === 'mh') this.table = maglevTable(this.eligible);
    else this.table = new Uint16Array(0);
  }

  /** Whether {@link pick} looks at the client address (affinity, sh, mh). */
  get needsClient(): boolean {
    return this.affinityMs > 0 || this.scheduler === 'sh' || this.scheduler === 'mh';
  }

  /** Backends that can take new flows (weight > 0). */
  get available(): number {
    return this.eligible.length;
  }

  /**
   * The backend for a new flow of `client` (its address), or undefined when none can take it.
   * `exclude`: ids already tried for this flow (a failed connect); the next one is chosen.
   */
  pick(client: string, exclude?: ReadonlySet<string>): C | undefined {
    if (this.eligible.length === 0) return undefined;
    if (this.affinityMs === 0) return this.schedule(client, exclude);
    const now = this.now();
    if (now >= this.nextSweep) this.sweep(now);
    const entry = this.affinity.get(client);
    if (entry && (entry.open > 0 || entry.expires > now)) {
      const c = this.byId.get(entry.id);
      if (c && c.weight > 0 && !exclude?.has(c.id)) {
        entry.open++;
        return c;
      }
    }
    const c = this.schedule(client, exclude);
    if (c) this.affinity.set(client, { id: c.id, open: entry?.id === c.id ? entry.open + 1 : 1, expires: now + this.affinityMs });
    return c;
  }

  /** A flow picked for `client` ended at `at` (default now): its affinity runs from then. */
  release(client: string, at?: number): void {
    if (this.affinityMs === 0) return;
    const entry = this.affinity.get(client);
    if (!entry) return;
    entry.open = Math.max(0, entry.open - 1);
    entry.expires = Math.max(entry.expires, (at ?? this.now()) + this.affinityMs);
  }

  /** Clients with an affinity entry (for tests). */
  get affinitySize(): number {
    return this.affinity.size;
  }

  private sweep(now: number): void {
    for (const [client, e] of this.affinity) if (e.open === 0 && e.expires <= now) this.affinity.delete(client);
    this.nextSweep = now + this.affinityMs;
  }

  private schedule(client: string, exclude: ReadonlySet<string> | undefined): C | undefined {
    const list = this.eligible;
    const n = list.length;
    switch (this.scheduler) {
      case 'rr':
        for (let k = 0; k < n; k++) {
          const i = (this.rrNext + k) % n;
          const c = list[i]!;
          if (exclude?.has(c.id)) continue;
          this.rrNext = (i + 1) % n;
          return c;
        }
        return undefined;
      case 'wrr':
        return this.smoothWeighted(exclude);
      case 'random':
        return this.weightedRandom(exclude);
      case 'lc':
        return this.leastLoaded(exclude);
      case 'sh':
      case 'mh':
        return this.hashed(client, exclude);
    }
  }

  private smoothWeighted(exclude: ReadonlySet<string> | undefined): C | undefined {
    const list = this.eligible;
    let total = 0;
    let best = -1;
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (exclude?.has(c.id)) continue;
      const cur = (this.wrrCurrent[i] ?? 0) + c.weight;
      this.wrrCurrent[i] = cur;
      total += c.weight;
      if (best < 0 || cur > this.wrrCurrent[best]!) best = i;
    }
    if (best < 0) return undefined;
    this.wrrCurrent[best]! -= total;
    return list[best];
  }

  private weightedRandom(exclude: ReadonlySet<string> | undefined): C | undefined {
    let total = 0;
    for (const c of this.eligible) if (!exclude?.has(c.id)) total += c.weight;
    let r = this.random() * total;
    let last: C | undefined;
    for (const c of this.eligible) {
      if (exclude?.has(c.id)) continue;
      last = c;
      r -= c.weight;
      if (r < 0) return c;
    }
    return last; // rounding at the top end
  }

  private leastLoaded(exclude: ReadonlySet<string> | undefined): C | undefined {
    const list = this.eligible;
    const n = list.length;
    let best: C | undefined;
    let bestLoad = 0;
    let bestAt = 0;
    for (let k = 0; k < n; k++) {
      const i = (this.rrNext + k) % n;
      const c = list[i]!;
      if (exclude?.has(c.id)) continue;
      const load = this.load(c);
      // load/weight < bestLoad/best.weight, without division.
      if (!best || load * best.weight < bestLoad * c.weight) {
        best = c;
        bestLoad = load;
        bestAt = i;
      }
    }
    if (best) this.rrNext = (bestAt + 1) % n;
    return best;
  }

  private hashed(client: string, exclude: ReadonlySet<string> | undefined): C | undefined {
    const size = this.table.length;
    if (size === 0) return undefined;
    const start = hash32(client, FNV_OFFSET) % size;
    // The client's bucket; when its backend is excluded, the next bucket with another (IPVS sh-fallback).
    for (let k = 0; k < size; k++) {
      const c = this.eligible[this.table[(start + k) % size]!]!;
      if (!exclude?.has(c.id)) return c;
    }
    return undefined;
  }
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over the UTF-16 code units, then murmur3's finalizer (so that near addresses spread). */
export function hash32(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function indexArray(size: number, n: number): Uint16Array | Uint32Array {
  return n <= 0xffff ? new Uint16Array(size) : new Uint32Array(size);
}

/** IPVS sh: buckets assigned in turn, each backend taking `weight` consecutive buckets per turn. */
function shTable(list: readonly Candidate[]): Uint16Array | Uint32Array {
  if (list.length === 0) return new Uint16Array(0);
  const t = indexArray(SH_TABLE_SIZE, list.length);
  let b = 0;
  let used = 0;
  for (let i = 0; i < SH_TABLE_SIZE; i++) {
    t[i] = b;
    if (++used >= list[b]!.weight) {
      b = (b + 1) % list.length;
      used = 0;
    }
  }
  return t;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Maglev lookup table (Eisenbud et al., NSDI 2016), weighted as IPVS mh does: per round each
 * backend claims `weight / gcd(weights)` slots, each the next free one of its own permutation
 * `(offset + j * skip) mod M`; offset and skip come from two hashes of the backend's id.
 */
function maglevTable(list: readonly Candidate[]): Uint16Array | Uint32Array {
  const M = MH_TABLE_SIZE;
  if (list.length === 0) return new Uint16Array(0);
  const g = list.reduce((acc, c) => gcd(acc, c.weight), 0);
  const turns = list.map((c) => c.weight / g);
  const offset = list.map((c) => hash32(c.id, 0x2545f491) % M);
  const skip = list.map((c) => (hash32(c.id, 0x9e3779b9) % (M - 1)) + 1);
  const next = list.map(() => 0);
  const t = indexArray(M, list.length);
  const filled = new Uint8Array(M);
  let n = 0;
  for (;;) {
    for (let b = 0; b < list.length; b++) {
      for (let turn = 0; turn < turns[b]!; turn++) {
        let slot: number;
        do {
          slot = (offset[b]! + next[b]! * skip[b]!) % M;
          next[b]!++;
        } while (filled[slot]);
        filled[slot] = 1;
        t[slot] = b;
        if (++n === M) return t;
      }
    }
  }
}
