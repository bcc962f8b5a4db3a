/**
 * Load-balancer metrics (`shoal_lb_*`): sync duration and failures, pending changes, last sync
 * time, network-programming latency (a cluster change seen -> programmed in every local
 * dataplane), backends per service (serving / total) and per-backend counters where the
 * dataplane has them.
 *
 * Per-backend counters come from a {@link StatsCache} read in the background (stats-cache.ts):
 * a scrape only copies what the last read found, O(series), and never waits for the kernel.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { BackendRow, StatsCache } from './stats-cache.js';

export interface LbMetricsSource {
  /** Changes seen and not yet programmed. */
  pending(): number;
  /** Per service: backends that take new flows, and all (including draining). */
  backends(): Array<{ service: string; serving: number; total: number }>;
  /** Per-backend counters summed over every local dataplane, as last read in the background. */
  rows(): Iterable<BackendRow>;
  /** The background reader of those counters (its age and cost are exported too). */
  cache: StatsCache<unknown>;
}

export interface LbMetrics {
  syncDone(seconds: number): void;
  syncFailed(): void;
  programmed(latencySeconds: number): void;
}

export const noopLbMetrics: LbMetrics = { syncDone: () => undefined, syncFailed: () => undefined, programmed: () => undefined };

/**
 * `shoal_<subsystem>_stats_refresh_duration_seconds` and `..._stats_last_refresh_timestamp_seconds`:
 * how long the last background read of the kernel's counters took and when it ended, so a
 * dashboard can tell how fresh the per-backend counters are.
 */
export function registerStatsCacheMetrics(reg: Registry, subsystem: string, cache: StatsCache<unknown>): void {
  new Gauge({
    name: `shoal_${subsystem}_stats_refresh_duration_seconds`, help: 'Duration of the last background read of the dataplanes\' per-backend counters.', registers: [reg],
    collect() { this.set(cache.lastDurationMs / 1000); },
  });
  new Gauge({
    name: `shoal_${subsystem}_stats_last_refresh_timestamp_seconds`, help: 'Unix time of the last successful background read of the per-backend counters (0: none yet).', registers: [reg],
    collect() { this.set(cache.refreshedAt / 1000); },
  });
}

export function createLbMetrics(reg: Registry, dataplane: string, src: LbMetricsSource): LbMetrics {
  const duration = new Histogram({
    name: 'shoal_lb_sync_duration_seconds', help: 'Duration of one load-balancer sync on this node.', labelNames: ['dataplane'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [reg],
  });
  const failures = new Counter({ name: 'shoal_lb_sync_failures_total', help: 'Failed load-balancer syncs (each is retried).', labelNames: ['dataplane'], registers: [reg] });
  const last = new Gauge({ name: 'shoal_lb_last_sync_timestamp_seconds', help: 'Unix time of the last successful sync.', labelNames: ['dataplane'], registers: [reg] });
  const latency = new Histogram({
    name: 'shoal_lb_network_programming_latency_seconds', help: 'From a cluster change seen by the agent to the dataplanes programmed.', labelNames: ['dataplane'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [reg],
  });
  new Gauge({ name: 'shoal_lb_pending_changes', help: 'Cluster changes seen and not yet programmed.', registers: [reg], collect() { this.set(src.pending()); } });
  new Gauge({
    name: 'shoal_lb_backends', help: 'Backends per service: serving (new flows) and total (with draining).', labelNames: ['service', 'state'], registers: [reg],
    collect() {
      this.reset();
      for (const b of src.backends()) {
        this.set({ service: b.service, state: 'serving' }, b.serving);
        this.set({ service: b.service, state: 'total' }, b.total);
      }
    },
  });
  new Gauge({
    name: 'shoal_lb_backend_connections', help: 'Open connections per backend, summed over this node\'s dataplanes (IPVS: active + inactive; userspace: open flows; nftables does not count them).',
    labelNames: ['service', 'backend'], registers: [reg],
    collect() {
      this.reset();
      for (const r of src.rows()) if (r.connections !== undefined) this.set({ service: r.service, backend: r.backend }, r.connections);
    },
  });
  new Counter({
    name: 'shoal_lb_backend_connections_total', help: 'Connections (flows) this node\'s dataplanes sent to each backend.', labelNames: ['service', 'backend'], registers: [reg],
    collect() {
      this.reset();
      for (const r of src.rows()) if (r.hasTotal) this.inc({ service: r.service, backend: r.backend }, r.connectionsTotal);
    },
  });
  new Counter({
    name: 'shoal_lb_backend_bytes_total', help: 'Bytes exchanged with each backend, where the dataplane counts them (IPVS, userspace).', labelNames: ['service', 'backend'], registers: [reg],
    collect() {
      this.reset();
      for (const r of src.rows()) if (r.hasBytes) this.inc({ service: r.service, backend: r.backend }, r.bytesTotal);
    },
  });
  registerStatsCacheMetrics(reg, 'lb', src.cache);
  return {
    syncDone: (sec) => { duration.observe({ dataplane }, sec); last.set({ dataplane }, Date.now() / 1000); },
    syncFailed: () => failures.inc({ dataplane }),
    programmed: (sec) => latency.observe({ dataplane }, sec),
  };
}
