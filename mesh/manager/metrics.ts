/**
 * Control-plane metrics of a manager: leadership (several managers on etcd) and the cluster
 * store's requests per endpoint. Registered on the process's registry next to the cluster
 * metrics of mesh/metrics.ts.
 *
 * - `shoal_manager_leader` 1 while this manager runs the singleton work (always 1 on the
 *   embedded store, where it is alone).
 * - `shoal_manager_elections_total` elections this manager won; `shoal_manager_leader_changes_total`
 *   leader changes it saw.
 * - `shoal_store_request_duration_seconds{endpoint,method}` and
 *   `shoal_store_request_errors_total{endpoint,method,code}`: every attempt of every etcd
 *   request, by member (`code`: no_leader, unavailable, deadline, lease_not_found, ...).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RequestObserver } from '../../src/store/etcd/index.js';
import type { Manager } from './index.js';

/** Registers the leadership metrics of `m`. */
export function registerControlPlaneMetrics(reg: Registry, m: Manager): void {
  new Gauge({
    name: 'shoal_manager_leader', help: '1 while this manager is the leader (runs the scheduler, node liveness and the ingress network).', registers: [reg],
    collect() { this.set(m.isLeader ? 1 : 0); },
  });
  new Counter({
    name: 'shoal_manager_elections_total', help: 'Leader elections this manager won.', registers: [reg],
    collect() { this.reset(); this.inc(m.election?.elections ?? (m.isLeader ? 1 : 0)); },
  });
  new Counter({
    name: 'shoal_manager_leader_changes_total', help: 'Leader changes this manager saw (its own included).', registers: [reg],
    collect() { this.reset(); this.inc(m.election?.leaderChanges ?? 0); },
  });
}

/** Creates the store request metrics on `reg` and returns the observer the etcd store reports to. */
export function createStoreMetrics(reg: Registry): RequestObserver {
  const duration = new Histogram({
    name: 'shoal_store_request_duration_seconds', help: 'Duration of each attempt of a cluster store (etcd) request, by member endpoint and method.',
    labelNames: ['endpoint', 'method'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [reg],
  });
  const errors = new Counter({
    name: 'shoal_store_request_errors_total', help: 'Failed attempts of cluster store (etcd) requests, by member endpoint, method and error code.',
    labelNames: ['endpoint', 'method', 'code'], registers: [reg],
  });
  return (endpoint, method, seconds, code) => {
    duration.observe({ endpoint, method }, seconds);
    if (code) errors.inc({ endpoint, method, code });
  };
}
