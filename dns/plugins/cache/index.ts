/**
 * Cache of forwarded answers: positive (TTL = smallest answer TTL) and negative (NXDOMAIN and
 * NODATA, TTL from the SOA in the authority section, RFC 2308), bounded by LRU, with
 * serve-stale (RFC 8767): when the rest of the chain fails (a bare SERVFAIL or REFUSED from the
 * forwarder, meaning every upstream failed), an expired entry still within `staleFor` is served
 * with a short TTL instead.
 *
 * It sits after the registry plugin, so it only ever holds names the cluster does not own.
 */
import { isPending, type DnsRequest, type HandlerResult, type Plugin } from '../../handler.js';
import { noopMetrics, type DnsMetrics } from '../../metrics.js';
import { Rcode } from '../../wire/constants.js';
import type { Query } from '../../wire/query.js';
import { renderEntry, toEntry, type CacheEntry } from './entry.js';
import { Lru } from './lru.js';

/** Options of {@link DnsCache}. */
export interface DnsCacheOptions {
  /** Entries kept (LRU). Default 10000. */
  maxEntries?: number;
  /** Cap on positive TTLs (s). Default 3600. */
  maxTtl?: number;
  /** Cap on negative TTLs (s). Default 900. */
  maxNegativeTtl?: number;
  /** How long after expiry an entry may be served stale (s). Default 3600. */
  staleFor?: number;
  /** TTL of stale answers (s). Default 30. */
  staleTtl?: number;
  /** Clock in milliseconds (tests inject one). */
  now?: () => number;
  metrics?: DnsMetrics;
}

/** The cache's state. Only the cache plugin writes it; {@link clear} is for operators and tests. */
export class DnsCache {
  readonly now: () => number;
  readonly staleTtl: number;
  readonly metrics: DnsMetrics;
  private readonly lru: Lru<string, CacheEntry>;
  private readonly policy: { maxTtl: number; maxNegativeTtl: number; staleFor: number };

  constructor(o: DnsCacheOptions = {}) {
    this.lru = new Lru(o.maxEntries ?? 10_000);
    this.policy = { maxTtl: o.maxTtl ?? 3600, maxNegativeTtl: o.maxNegativeTtl ?? 900, staleFor: o.staleFor ?? 3600 };
    this.staleTtl = o.staleTtl ?? 30;
    this.now = o.now ?? Date.now;
    this.metrics = o.metrics ?? noopMetrics;
  }

  /** Number of entries, fresh or stale. */
  get size(): number {
    return this.lru.size;
  }

  clear(): void {
    this.lru.clear();
  }

  /** The entry for a question, if any, fresh or still servable stale (older ones are dropped). */
  lookup(q: Query, now: number): CacheEntry | undefined {
    const key = keyOf(q);
    const e = this.lru.get(key);
    if (e && now >= e.staleUntil) {
      this.lru.delete(key);
      return undefined;
    }
    return e;
  }

  /** Stores a response if it is cacheable. */
  store(q: Query, r: HandlerResult, now: number): void {
    if (typeof r === 'number') return;
    const e = toEntry(r, q, now, this.policy);
    if (e) this.lru.set(keyOf(q), e);
  }
}

// The key ignores case (q.name is the key form) and RD/CD: the upstream is a recursive resolver.
const keyOf = (q: Query): string => `${q.qtype}/${q.qclass}/${q.name}`;

/** The cache plugin over `cache`. */
export function cachePlugin(cache: DnsCache): Plugin {
  const m = cache.metrics;
  const settle = (req: DnsRequest, q: Query, stale: CacheEntry | undefined, r: HandlerResult): HandlerResult => {
    const now = cache.now();
    if (typeof r === 'number') {
      if (stale && (r === Rcode.SERVFAIL || r === Rcode.REFUSED) && now < stale.staleUntil) {
        m.cache('stale');
        return renderEntry(req, q, stale, now, cache.staleTtl);
      }
      return r;
    }
    cache.store(q, r, now);
    return r;
  };
  return (next) => (req) => {
    const q = req.query;
    if (!q) return next(req);
    const now = cache.now();
    const e = cache.lookup(q, now);
    if (e && now < e.expiresAt) {
      m.cache('fresh');
      return renderEntry(req, q, e, now);
    }
    m.cache('miss');
    const r = next(req);
    if (isPending(r)) {
      return r.then(
        (v) => settle(req, q, e, v),
        () => settle(req, q, e, Rcode.SERVFAIL),
      );
    }
    return settle(req, q, e, r);
  };
}
