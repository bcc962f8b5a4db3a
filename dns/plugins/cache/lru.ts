/** A bounded map evicting the least recently used key (a Map keeps insertion order). */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();

  /** @param max entries kept; the oldest is evicted on the insert that would exceed it. */
  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The value, marking it most recently used. */
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}
