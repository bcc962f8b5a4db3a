/**
 * Cluster metrics for Prometheus (`shoal_<subsystem>_<name>_<unit>`) and the `/metrics` HTTP
 * server every node runs. Other subsystems (dns/, ingress/) register on the same registry.
 *
 * Cost rule: a scrape is O(series) and never waits for the kernel or the store. Values are
 * counters the agent already keeps, the manager's watch-fed view (mesh/manager/view.ts), or the
 * per-backend counters the load balancers read in the background (ingress/stats-cache.ts).
 */
import { createServer, type Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Agent } from './agent/index.js';
import type { Manager } from './manager/index.js';
import { registerControlPlaneMetrics } from './manager/metrics.js';
import { registerAgentSecurityMetrics, registerManagerSecurityMetrics } from './security/metrics.js';

/**
 * Registers the manager's metrics: cluster membership and tasks, store revision, failed syncs.
 * They are read from the manager's watch-fed view (mesh/manager/view.ts), kept per change: a
 * scrape costs O(series), never a read of the store.
 */
export function registerManagerMetrics(reg: Registry, m: Manager): void {
  registerControlPlaneMetrics(reg, m);
  registerManagerSecurityMetrics(reg, m);
  const view = m.view;
  new Gauge({
    name: 'shoal_cluster_nodes', help: 'Nodes by state (ready, down).', labelNames: ['state'], registers: [reg],
    async collect() {
      await view.ready();
      this.reset();
      this.set({ state: 'ready' }, 0);
      this.set({ state: 'down' }, 0);
      for (const [state, v] of view.nodeStates) this.set({ state }, v);
    },
  });
  new Gauge({
    name: 'shoal_cluster_tasks', help: 'Tasks by current state.', labelNames: ['state'], registers: [reg],
    async collect() {
      await view.ready();
      this.reset();
      for (const [state, v] of view.taskStates) this.set({ state }, v);
    },
  });
  new Gauge({
    name: 'shoal_store_revision', help: 'Current revision of the cluster store (as the manager\'s watch last saw it).', registers: [reg],
    async collect() { await view.ready(); this.set(view.index.revision); },
  });
  new Counter({
    name: 'shoal_manager_sync_failures_total', help: 'Failed background syncs of the manager, by reconciler (each is retried).', labelNames: ['component'], registers: [reg],
    collect() {
      this.reset();
      this.inc({ component: 'scheduler' }, m.failures.scheduler);
      this.inc({ component: 'liveness' }, m.failures.liveness);
    },
  });
}

/** Registers the agent's metrics: session state, watch revision, tasks held, failed syncs. */
export function registerAgentMetrics(reg: Registry, a: Agent): void {
  registerAgentSecurityMetrics(reg, a);
  new Gauge({
    name: 'shoal_agent_connected', help: '1 while the agent has a session with a manager.', registers: [reg],
    collect() { this.set(a.session.connected ? 1 : 0); },
  });
  new Gauge({
    name: 'shoal_agent_watch_revision', help: 'Store revision the agent\'s local index reflects.', registers: [reg],
    collect() { this.set(a.index.revision); },
  });
  new Gauge({
    name: 'shoal_agent_tasks', help: 'Task processes the agent holds on this node.', registers: [reg],
    collect() { this.set(a.runtime.list().length); },
  });
  new Counter({
    name: 'shoal_agent_sync_failures_total', help: 'Failed task syncs on this node (each is retried).', registers: [reg],
    collect() { this.reset(); this.inc(a.syncFailures); },
  });
  const byLabel = (name: string, help: string, label: string, read: () => ReadonlyMap<string, number>): void => {
    new Counter({
      name, help, labelNames: [label], registers: [reg],
      collect() {
        this.reset();
        for (const [k, v] of read()) this.inc({ [label]: k }, v);
      },
    });
  };
  byLabel('shoal_agent_repairs_total', 'Kernel state found drifted from what was programmed and put back by a resync, by kind.', 'kind', () => a.counters.repairs);
  byLabel('shoal_agent_reconcile_failures_total', 'Failed attempts per reconciler on this node (each object is retried with back-off).', 'reconciler', () => a.counters.failures);
  byLabel('shoal_agent_invalid_objects_total', 'Desired state dropped before any dataplane transaction because it cannot be programmed, by reconciler.', 'reconciler', () => a.counters.invalid);
  const session = (name: string, help: string, read: () => number): void => {
    new Counter({ name, help, registers: [reg], collect() { this.reset(); this.inc(read()); } });
  };
  session('shoal_agent_session_reconnects_total', 'Manager connections lost after a welcome (each followed by a reconnect).', () => a.session.stats.reconnects);
  session('shoal_agent_session_ping_timeouts_total', 'Manager connections dropped because the manager answered nothing for 3 heartbeat intervals (half-open).', () => a.session.stats.pingTimeouts);
  session('shoal_agent_status_coalesced_total', 'Task statuses replaced by a newer one for the same task before they were sent.', () => a.session.stats.statusCoalesced);
  session('shoal_agent_status_dropped_total', 'Task statuses dropped because too many tasks had unsent statuses.', () => a.session.stats.statusDropped);
  new Counter({
    name: 'shoal_agent_resyncs_total', help: 'Full resyncs (recompute everything, re-read the kernel) completed on this node.', registers: [reg],
    collect() { this.reset(); this.inc(a.resyncs); },
  });
}

/**
 * `shoal_process_event_loop_delay_seconds{stat="p50"|"p99"|"max"}`: how late the process's event
 * loop ran its callbacks since the previous scrape. A slow scrape, a missed heartbeat or a late
 * sync shows here first (a busy node, a long synchronous job).
 */
export function registerEventLoopMetrics(reg: Registry): void {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  new Gauge({
    name: 'shoal_process_event_loop_delay_seconds', help: 'Event loop delay of this process since the previous scrape (p50, p99, max).', labelNames: ['stat'], registers: [reg],
    collect() {
      const s = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
      this.set({ stat: 'p50' }, s(h.percentile(50)));
      this.set({ stat: 'p99' }, s(h.percentile(99)));
      this.set({ stat: 'max' }, s(h.max));
      h.reset();
    },
  });
}

/**
 * Serves `GET /metrics` from `reg` on `host:port` (port 0 picks one); resolves with the server.
 * Every collector is cheap (cached or kept per change), and scrapes that arrive while one is
 * being rendered share its text: parallel scrapers never multiply the work.
 */
export function serveMetrics(reg: Registry, host: string, port: number): Promise<Server> {
  registerEventLoopMetrics(reg);
  let rendering: Promise<string> | undefined;
  const render = (): Promise<string> => {
    rendering ??= reg.metrics().finally(() => { rendering = undefined; });
    return rendering;
  };
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    render().then(
      (text) => res.writeHead(200, { 'content-type': reg.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(e)}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(server); });
  });
}

export { Registry };
