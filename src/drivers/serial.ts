/** Per-key serialization of async work: a diff-then-apply must not interleave with another on the same state. */

/** Runs functions one at a time per key, in call order; a failure does not block the next one. */
export class Serializer {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.then(() => undefined, () => undefined);
    this.tails.set(key, tail);
    // Forget idle keys so the map does not grow with every network ever seen.
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

const byOwner = new WeakMap<object, Serializer>();

/** The serializer shared by everyone holding `owner` (e.g. one per node's Nft adapter). */
export function serializerOf(owner: object): Serializer {
  let s = byOwner.get(owner);
  if (!s) byOwner.set(owner, (s = new Serializer()));
  return s;
}
