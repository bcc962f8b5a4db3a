/**
 * Cluster metrics for Prometheus (`shoal_<subsystem>_<name>_<unit>`), read at scrape time from
 * the manager and the agent (no bookkeeping on their hot paths), and the `/metrics` HTTP server
 * every node runs. Other subsystems (dns/, ingress/) register on the same registry.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { objectPrefix } from '../src/model/keys.js';
import type { Node, Task } from '../src/model/types.js';
import type { Agent } from './agent/index.js';
import type { Manager } from './manager/index.js';
import { registerControlPlaneMetrics } from './manager/metrics.js';
import { registerAgentSecurityMetrics, registerManagerSecurityMetrics } from './security/metrics.js';

/** Registers the manager's metrics: cluster membership and tasks, store revision, failed syncs. */
export function registerManagerMetrics(reg: Registry, m: Manager): void {
  registerControlPlaneMetrics(reg, m);
  registerManagerSecurityMetrics(reg, m);
  new Gauge({
    name: 'shoal_cluster_nodes', help: 'Nodes by state (ready, down).', labelNames: ['state'], registers: [reg],
    async collect() {
      const { kvs } = await m.store.range(objectPrefix('nodes'));
      const counts: Record<string, number> = { ready: 0, down: 0 };
      for (const kv of kvs) { const n = JSON.parse(kv.value) as Node; counts[n.state] = (counts[n.state] ?? 0) + 1; }
      for (const [state, v] of Object.entries(counts)) this.set({ state }, v);
    },
  });
  new Gauge({
    name: 'shoal_cluster_tasks', help: 'Tasks by current state.', labelNames: ['state'], registers: [reg],
    async collect() {
      const { kvs } = await m.store.range(objectPrefix('tasks'));
      this.reset();
      const counts = new Map<string, number>();
      for (const kv of kvs) { const t = JSON.parse(kv.value) as Task; counts.set(t.status.state, (counts.get(t.status.state) ?? 0) + 1); }
      for (const [state, v] of counts) this.set({ state }, v);
    },
  });
  new Gauge({
    name: 'shoal_store_revision', help: 'Current revision of the cluster store.', registers: [reg],
    async collect() { this.set(await m.store.currentRevision()); },
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

/** Serves `GET /metrics` from `reg` on `host:port` (port 0 picks one); resolves with the server. */
export function serveMetrics(reg: Registry, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    reg.metrics().then(
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
