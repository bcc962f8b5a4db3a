/**
 * An ordered set of strings kept as a list of sorted chunks (the "sorted containers" layout):
 * insert and remove cost a binary search plus a splice inside one chunk of at most
 * 2 x {@link CHUNK} entries, instead of shifting one array of every key in the store.
 * Prefix scans start with a binary search and then walk in order.
 *
 * Ordering is JavaScript string order (UTF-16 code units). It equals etcd's byte order for
 * every key without characters above U+FFFF mixed with U+E000..U+FFFF, i.e. all keys Shoal writes.
 */
const CHUNK = 512;

export class SortedKeys {
  /** Non-empty sorted chunks; every key in chunk i is smaller than every key in chunk i+1. */
  private readonly chunks: string[][] = [];
  /** maxes[i] is the last key of chunks[i]: the binary-search index over chunks. */
  private readonly maxes: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `key`; returns false when it was already present. */
  insert(key: string): boolean {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.maxes.push(key);
      this.count = 1;
      return true;
    }
    let ci = this.chunkFor(key);
    if (ci === this.chunks.length) ci -= 1; // larger than every key: append to the last chunk
    const chunk = this.chunks[ci] as string[];
    const pos = lowerBound(chunk, key);
    if (chunk[pos] === key) return false;
    chunk.splice(pos, 0, key);
    this.maxes[ci] = chunk[chunk.length - 1] as string;
    this.count += 1;
    if (chunk.length > 2 * CHUNK) {
      const tail = chunk.splice(CHUNK);
      this.chunks.splice(ci + 1, 0, tail);
      this.maxes.splice(ci, 1, chunk[chunk.length - 1] as string, tail[tail.length - 1] as string);
    }
    return true;
  }

  /** Removes `key`; returns false when it was absent. */
  remove(key: string): boolean {
    const ci = this.chunkFor(key);
    const chunk = this.chunks[ci];
    if (!chunk) return false;
    const pos = lowerBound(chunk, key);
    if (chunk[pos] !== key) return false;
    chunk.splice(pos, 1);
    this.count -= 1;
    if (chunk.length === 0) {
      this.chunks.splice(ci, 1);
      this.maxes.splice(ci, 1);
    } else {
      this.maxes[ci] = chunk[chunk.length - 1] as string;
    }
    return true;
  }

  /** Keys that start with `prefix`, in order. Do not insert or remove while iterating. */
  *withPrefix(prefix: string): Generator<string> {
    const first = this.chunkFor(prefix);
    for (let ci = first; ci < this.chunks.length; ci++) {
      const chunk = this.chunks[ci] as string[];
      for (let i = ci === first ? lowerBound(chunk, prefix) : 0; i < chunk.length; i++) {
        const key = chunk[i] as string;
        if (!key.startsWith(prefix)) return;
        yield key;
      }
    }
  }

  /** Index of the first chunk whose last key is >= key (chunks.length when none). */
  private chunkFor(key: string): number {
    return lowerBound(this.maxes, key);
  }
}

/** First index i with arr[i] >= key (arr.length when none). */
function lowerBound(arr: readonly string[], key: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((arr[mid] as string) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
