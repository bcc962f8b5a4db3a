/**
 * Load-balancer metrics (`shoal_lb_*`): sync duration and failures, pending changes, last sync
 * time, network-programming latency (a cluster change seen -> programmed in every local
 * dataplane), backends per service (serving / total) and per-backend counters where the
 * dataplane has them (read at scrape time).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LbBackendStats } from './types.js';

export interface LbMetricsSource {
  /** Changes seen and not yet programmed. */
  pending(): number;
  /** Per service: backends that take new flows, and all (including draining). */
  backends(): Array<{ service: string; serving: number; total: number }>;
  /** Per-backend counters of every local dataplane. */
  stats(): Promise<LbBackendStats[]>;
}

export interface LbMetrics {
  syncDone(seconds: number): void;
  syncFailed(): void;
  programmed(latencySeconds: number): void;
}

export const noopLbMetrics: LbMetrics = { syncDone: () => undefined, syncFailed: () => undefined, programmed: () => undefined };

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
  const perBackend = (name: string, help: string, pick: (s: LbBackendStats) => number | undefined): void => {
    new Gauge({
      name, help, labelNames: ['service', 'backend'], registers: [reg],
      async collect() {
        this.reset();
        const sums = new Map<string, { service: string; backend: string; v: number }>();
        for (const s of await src.stats()) {
          const v = pick(s);
          if (v === undefined) continue;
          // A VIP's every-port services (port 0) count per replica, whatever port was asked.
          const backend = s.port ? `${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.port}` : s.address;
          const k = `${s.service}|${backend}`;
          const had = sums.get(k);
          if (had) had.v += v;
          else sums.set(k, { service: s.service, backend, v });
        }
        for (const x of sums.values()) this.set({ service: x.service, backend: x.backend }, x.v);
      },
    });
  };
  perBackend('shoal_lb_backend_connections', 'Connections per backend, summed over this node\'s dataplanes (where the dataplane counts them).', (s) => s.connections);
  perBackend('shoal_lb_backend_connections_total', 'Connections or flows sent to each backend since it was programmed on this node.', (s) => s.connectionsTotal);
  perBackend('shoal_lb_backend_bytes_total', 'Bytes per backend, where the dataplane counts them.', (s) => s.bytes);
  return {
    syncDone: (sec) => { duration.observe({ dataplane }, sec); last.set({ dataplane }, Date.now() / 1000); },
    syncFailed: () => failures.inc({ dataplane }),
    programmed: (sec) => latency.observe({ dataplane }, sec),
  };
}
