/**
 * Candidate selection for the allocator: find a free value in a range, searching circularly
 * from a random start. Random starts make two managers allocating at once usually pick
 * different values (so both transactions succeed); the circular scan still reaches every
 * value, so anything released is reusable. Pure except for the random source.
 */
import { randomBytes } from 'node:crypto';

/** Uniform-enough random bigint in [0, n); n must be > 0. (Modulo bias is < 2^-64: irrelevant here.) */
export function randomBelow(n: bigint): bigint {
  if (n <= 1n) return 0n;
  const bytes = Math.ceil(n.toString(16).length / 2) + 8;
  return BigInt(`0x${randomBytes(bytes).toString('hex')}`) % n;
}

/**
 * The first value v of [lo, hi] at or after `start` (wrapping to `lo`) with `!taken(v)`, or
 * undefined when every value is taken. `limit` bounds the scan: pass the number of taken
 * values + 1 when they are known (the scan meets at most that many before a free one).
 */
export function firstFree(lo: bigint, hi: bigint, start: bigint, taken: (v: bigint) => boolean, limit?: bigint): bigint | undefined {
  const span = hi - lo + 1n;
  const steps = limit !== undefined && limit < span ? limit : span;
  let v = start < lo || start > hi ? lo : start;
  for (let i = 0n; i < steps; i++) {
    if (!taken(v)) return v;
    v = v === hi ? lo : v + 1n;
  }
  return undefined;
}

/** A closed interval of address values [start, end]. */
export interface Interval {
  start: bigint;
  end: bigint;
}

/** Sort and merge overlapping or adjacent intervals. */
export function mergeIntervals(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Interval[] = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv.start <= last.end + 1n) {
      if (iv.end > last.end) last.end = iv.end;
    } else {
      out.push({ ...iv });
    }
  }
  return out;
}

/** Index of the first merged interval whose end is >= v (binary search), or list.length. */
function firstEndingAtOrAfter(list: Interval[], v: bigint): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((list[mid]?.end ?? v) < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The lowest-numbered free aligned block in [fromBlock, toBlock) of `count` blocks of
 * `blockSize` starting at `base`, given the used intervals (merged, sorted). Each used
 * interval is jumped over at most once, so this costs O(used · log used), not O(blocks).
 */
function freeBlockIn(base: bigint, blockSize: bigint, fromBlock: bigint, toBlock: bigint, used: Interval[]): bigint | undefined {
  let i = fromBlock;
  while (i < toBlock) {
    const start = base + i * blockSize;
    const end = start + blockSize - 1n;
    const iv = used[firstEndingAtOrAfter(used, start)];
    if (!iv || iv.start > end) return i;
    // Skip to the first block that starts after this used interval.
    i = (iv.end + 1n - base + blockSize - 1n) / blockSize;
  }
  return undefined;
}

/**
 * A free block number in [0, count) of aligned blocks (`base + i·blockSize`), searching from
 * `start` to the end and then from 0: the circular search {@link firstFree} does, but fast
 * on huge spaces (2^56 /64s of a /8) because it jumps over used intervals.
 */
export function freeBlock(base: bigint, blockSize: bigint, count: bigint, start: bigint, used: Interval[]): bigint | undefined {
  const merged = mergeIntervals(used);
  return freeBlockIn(base, blockSize, start, count, merged) ?? freeBlockIn(base, blockSize, 0n, start, merged);
}
