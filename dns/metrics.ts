/**
 * DNS metrics (`shoal_dns_<name>_<unit>`), registered on a prom-client registry the daemon owns.
 *
 * The per-query counters are accumulated in plain typed arrays and flushed into prom-client
 * when it collects (scrape time): label hashing on every query would cost more than the rest
 * of the registry fast path. Label values are bounded (known types and rcodes, else `other`),
 * so junk traffic cannot blow up cardinality.
 */
import { Counter, type Metric, type Registry as PromRegistry } from 'prom-client';
import { DROP, RRType, Rcode } from './wire/constants.js';

/** What the resolver reports. Every method is cheap and never throws. */
export interface DnsMetrics {
  /** A query finished: its network label, question type, response code (`DROP` = -1), latency and answer count. */
  query(network: string, qtype: number, rcode: number, seconds: number, records: number): void;
  /** A message refused by hygiene (`short`, `response`, `oversize`, `opcode`, a parse reason...). */
  rejected(reason: string): void;
  /** A query sent to an upstream (`address:port`). */
  upstreamQuery(upstream: string, transport: 'udp' | 'tcp'): void;
  /** An upstream failure other than a timeout (`servfail`, `refused`, `unreachable`, `overloaded`, `tcp`...). */
  upstreamError(upstream: string, reason: string): void;
  upstreamTimeout(upstream: string): void;
  /** A cache lookup: `fresh` and `stale` are hits, `miss` is a miss. */
  cache(result: 'fresh' | 'stale' | 'miss'): void;
  /** Something went wrong inside the server (a handler threw, a socket error): counted, never thrown. */
  error(kind: string): void;
}

/** Metrics that go nowhere (tests, embedding without Prometheus). */
export const noopMetrics: DnsMetrics = {
  query: () => undefined,
  rejected: () => undefined,
  upstreamQuery: () => undefined,
  upstreamError: () => undefined,
  upstreamTimeout: () => undefined,
  cache: () => undefined,
  error: () => undefined,
};

/** Latency buckets (seconds): answers from memory take microseconds, forwarded ones milliseconds. */
export const DNS_LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const TYPE_LABELS = ['A', 'AAAA', 'PTR', 'SRV', 'CNAME', 'MX', 'TXT', 'NS', 'SOA', 'ANY', 'SVCB', 'HTTPS', 'other'] as const;
const TYPE_INDEX = new Uint8Array(65536).fill(TYPE_LABELS.length - 1);
for (const [i, t] of [RRType.A, RRType.AAAA, RRType.PTR, RRType.SRV, RRType.CNAME, RRType.MX, RRType.TXT, RRType.NS, RRType.SOA, RRType.ANY, 64, 65].entries()) {
  TYPE_INDEX[t] = i;
}
const RCODE_LABELS = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'BADVERS', 'DROP', 'other'] as const;
const rcodeIndex = (rcode: number): number =>
  rcode >= 0 && rcode <= Rcode.REFUSED ? rcode : rcode === Rcode.BADVERS ? 6 : rcode === DROP ? 7 : 8;

const NT = TYPE_LABELS.length;
const NR = RCODE_LABELS.length;

/**
 * Creates the DNS metrics and registers them on `registry` (never the global default registry).
 * Call once per registry: prom-client rejects a second registration of the same names.
 */
export function createDnsMetrics(registry: PromRegistry): DnsMetrics {
  // network label -> counts[type * NR + rcode] and records[type]; flushed on collect.
  const perNetwork = new Map<string, { queries: Float64Array; records: Float64Array }>();

  const queriesTotal = new Counter({
    name: 'shoal_dns_queries_total',
    help: 'DNS queries answered, by network, question type and response code (DROP: no response sent).',
    labelNames: ['network', 'type', 'rcode'],
    registers: [registry],
    collect() {
      for (const [network, { queries: counts }] of perNetwork) {
        for (let i = 0; i < counts.length; i++) {
          const n = counts[i] as number;
          if (n === 0) continue;
          counts[i] = 0;
          this.inc({ network, type: TYPE_LABELS[Math.floor(i / NR)] as string, rcode: RCODE_LABELS[i % NR] as string }, n);
        }
      }
    },
  });
  void queriesTotal;
  new Counter({
    name: 'shoal_dns_records_served_total',
    help: 'Answer records sent to clients, by network and question type.',
    labelNames: ['network', 'type'],
    registers: [registry],
    collect() {
      for (const [network, { records: counts }] of perNetwork) {
        for (let i = 0; i < counts.length; i++) {
          const n = counts[i] as number;
          if (n === 0) continue;
          counts[i] = 0;
          this.inc({ network, type: TYPE_LABELS[i] as string }, n);
        }
      }
    },
  });
  const duration = new LocalHistogram(
    'shoal_dns_request_duration_seconds',
    'Time from a query entering the chain to its response being ready, in seconds.',
    DNS_LATENCY_BUCKETS,
  );
  // prom-client's Registry reads metrics structurally (name, help, type, get, reset); its
  // `Metric` type names only its own classes, hence the cast. See LocalHistogram for why.
  registry.registerMetric(duration as unknown as Metric);
  const rejected = new Counter({
    name: 'shoal_dns_rejected_queries_total',
    help: 'Messages rejected before resolution (malformed, responses, oversize, unsupported opcode), by reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const upstreamQueries = new Counter({
    name: 'shoal_dns_upstream_queries_total',
    help: 'Queries sent to upstream servers, by upstream and transport.',
    labelNames: ['upstream', 'transport'],
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: 'shoal_dns_upstream_errors_total',
    help: 'Upstream failures other than timeouts, by upstream and reason.',
    labelNames: ['upstream', 'reason'],
    registers: [registry],
  });
  const upstreamTimeouts = new Counter({
    name: 'shoal_dns_upstream_timeouts_total',
    help: 'Upstream queries that timed out, by upstream.',
    labelNames: ['upstream'],
    registers: [registry],
  });
  const cacheCounts = { fresh: 0, stale: 0, miss: 0 };
  new Counter({
    name: 'shoal_dns_cache_hits_total',
    help: 'Forwarded names answered from the cache; state=stale when served after every upstream failed.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      for (const state of ['fresh', 'stale'] as const) {
        if (cacheCounts[state] > 0) this.inc({ state }, cacheCounts[state]);
        cacheCounts[state] = 0;
      }
    },
  });
  new Counter({
    name: 'shoal_dns_cache_misses_total',
    help: 'Forwarded names not found fresh in the cache.',
    registers: [registry],
    collect() {
      if (cacheCounts.miss > 0) this.inc(cacheCounts.miss);
      cacheCounts.miss = 0;
    },
  });
  const errors = new Counter({
    name: 'shoal_dns_errors_total',
    help: 'Internal errors of the resolver (a handler threw, a socket failed), by kind. Never fatal.',
    labelNames: ['kind'],
    registers: [registry],
  });

  return {
    query(network, qtype, rcode, seconds, answers) {
      let n = perNetwork.get(network);
      if (!n) perNetwork.set(network, (n = { queries: new Float64Array(NT * NR), records: new Float64Array(NT) }));
      const t = TYPE_INDEX[qtype & 0xffff] as number;
      const i = t * NR + rcodeIndex(rcode);
      n.queries[i] = (n.queries[i] as number) + 1;
      if (answers > 0) n.records[t] = (n.records[t] as number) + answers;
      duration.observe(seconds);
    },
    rejected: (reason) => rejected.inc({ reason }),
    upstreamQuery: (upstream, transport) => upstreamQueries.inc({ upstream, transport }),
    upstreamError: (upstream, reason) => upstreamErrors.inc({ upstream, reason }),
    upstreamTimeout: (upstream) => upstreamTimeouts.inc({ upstream }),
    cache(result) {
      cacheCounts[result]++;
    },
    error: (kind) => errors.inc({ kind }),
  };
}

/**
 * An unlabelled histogram that counts in a typed array and renders prom-client's exposition
 * shape on `get()`. prom-client's `Histogram.observe` allocates a closure and hashes labels on
 * every call: about a third of the chain's own cost per registry answer.
 */
class LocalHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    if (i < b.length) this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> }> {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    let acc = 0;
    this.bounds.forEach((le, i) => {
      acc += this.counts[i] as number;
      values.push({ labels: { le }, value: acc, metricName: `${this.name}_bucket` });
    });
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.counts = new Float64Array(this.bounds.length);
    this.sum = 0;
    this.count = 0;
  }
}
