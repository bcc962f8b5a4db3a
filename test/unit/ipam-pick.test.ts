import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { firstFree, freeBlock, type Interval, mergeIntervals, randomBelow } from '../../src/ipam/pick.js';

describe('candidate selection', () => {
  it('firstFree scans circularly from the start and honours the limit', () => {
    const taken = new Set([5n, 6n, 7n]);
    expect(firstFree(0n, 7n, 5n, (v) => taken.has(v))).toBe(0n); // wraps
    expect(firstFree(0n, 7n, 2n, (v) => taken.has(v))).toBe(2n);
    expect(firstFree(5n, 7n, 5n, (v) => taken.has(v))).toBeUndefined();
    expect(firstFree(0n, 7n, 5n, (v) => taken.has(v), 3n)).toBeUndefined(); // limit too small on purpose
  });

  it('randomBelow stays in range, including beyond 2^64', () => {
    for (const n of [1n, 2n, 7n, 2n ** 56n, 2n ** 128n]) {
      for (let i = 0; i < 50; i++) {
        const r = randomBelow(n);
        expect(r >= 0n && r < n).toBe(true);
      }
    }
  });

  it('mergeIntervals merges overlapping and adjacent intervals', () => {
    expect(mergeIntervals([{ start: 10n, end: 12n }, { start: 0n, end: 3n }, { start: 4n, end: 5n }, { start: 11n, end: 20n }]))
      .toEqual([{ start: 0n, end: 5n }, { start: 10n, end: 20n }]);
  });

  const used = fc.array(fc.tuple(fc.nat(255), fc.nat(40)).map(([s, len]): Interval => ({ start: BigInt(s), end: BigInt(s + len) })), { maxLength: 12 });

  it('freeBlock finds a block clear of every used interval, or proves there is none', () => {
    fc.assert(fc.property(used, fc.constantFrom(1n, 4n, 16n, 64n), fc.nat(300), (u, blockSize, s) => {
      const count = 256n / blockSize;
      const start = BigInt(s) % count;
      const clear = (i: bigint): boolean => u.every((iv) => iv.end < i * blockSize || iv.start > i * blockSize + blockSize - 1n);
      const got = freeBlock(0n, blockSize, count, start, u);
      if (got === undefined) {
        for (let i = 0n; i < count; i++) expect(clear(i)).toBe(false);
      } else {
        expect(clear(got)).toBe(true);
        // It is the first clear block in circular order from `start`.
        for (let i = start; i !== got; i = (i + 1n) % count) expect(clear(i)).toBe(false);
      }
    }), { numRuns: 500 });
  });
});
