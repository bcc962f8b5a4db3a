/**
 * Metrics as Prometheus sees them, on a 2-node harness with tasks (nftables dataplane):
 * - `promtool check metrics` (Debian `prometheus`) finds nothing to complain about in the real
 *   /metrics of a node that balances VIP traffic, serves DNS and publishes a port, nor in the
 *   manager's;
 * - a real Prometheus, started by the test in the harness's client namespace (its own config and
 *   data dir in a temp dir, listening on that namespace's loopback), scrapes the manager and
 *   every node every second for 30 s while traffic flows: `up` is 1 in every sample of every
 *   target, no scrape was skipped, and the DNS, LB and ingress series are there for every node.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Network, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode, type HarnessProcess } from '../harness/cluster.js';
import { runInNetns } from '../harness/process.js';
import { until } from '../helpers/cluster.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('../fixtures/lb-client.mjs', import.meta.url));
const METRICS_PORT = 9323;
const SCRAPE_SECONDS = 30;

let h: Harness;
let dir: string;
let prometheus: HarnessProcess | undefined;
let app: Network;
let vip: string;
const nodeName = new Map<string, string>();

const nodeOf = (t: Task): HarnessNode => h.nodes.find((n) => n.name === nodeName.get(t.nodeId)) as HarnessNode;
const nsOf = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;

async function serving(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running' && t.status.healthy !== false);
    return ts.length === n ? ts : undefined;
  }, `${n} serving tasks of ${service}`, 60_000);
}

async function metricsOf(netns: string, address: string): Promise<string> {
  const r = await runInNetns(netns, ['curl', '-sS', '--max-time', '10', `http://${address}:${METRICS_PORT}/metrics`]);
  if (r.code !== 0) throw new Error(`curl /metrics in ${netns}: ${r.stderr}`);
  return r.stdout;
}

/** Some traffic of every kind the metrics count: VIP flows and DNS from client tasks (one per node), published-port flows from outside. */
async function traffic(clients: readonly Task[]): Promise<void> {
  for (const client of clients) {
    const inTask = (cmd: string[]): Promise<unknown> => nodeOf(client).exec(['nsenter', `--net=/run/netns/${nsOf(client)}`, ...cmd], { timeoutMs: 30_000 });
    await inTask([process.execPath, CLIENT, 'http', vip, '80', '5']);
    // 127.0.0.11 in a task sandbox is the node's resolver (the sandbox's nftables send it there).
    await inTask(['dig', '@127.0.0.11', '+short', '+time=2', '+tries=1', 'web']);
  }
  for (const n of h.nodes) await h.client.exec([process.execPath, CLIENT, 'http', n.address, '8080', '5'], { timeoutMs: 30_000 });
}

async function promQuery<T>(query: string): Promise<T> {
  const r = await h.client.exec(['curl', '-sS', '--max-time', '10', '--get', '--data-urlencode', `query=${query}`, 'http://127.0.0.1:9090/api/v1/query']);
  const body = JSON.parse(r.stdout) as { status: string; data: { result: T }; error?: string };
  if (body.status !== 'success') throw new Error(`prometheus query ${query}: ${body.error ?? r.stdout}`);
  return body.data.result;
}

beforeAll(async () => {
  h = await startHarness({
    nodes: 2,
    agentArgs: ['--lb-dataplane', 'nftables', '--metrics-addr', `0.0.0.0:${METRICS_PORT}`],
    managerArgs: ['--metrics-addr', `0.0.0.0:${METRICS_PORT}`],
  });
  dir = mkdtempSync(join(tmpdir(), 'shoal-prom-'));
  for (const n of await h.json<Array<{ id: string; name: string }>>('node', 'ls')) nodeName.set(n.id, n.name);
  expect((await h.shoal('network', 'create', '--subnet', '10.73.0.0/24', 'app')).code).toBe(0);
  [app] = await h.json<Network[]>('network', 'inspect', 'app') as [Network];
  const web = await h.shoal('service', 'create', '--name', 'web', '--replicas', '3', '--network', 'app', '-p', '8080:80', '-e', 'PORT=80', '--', process.execPath, BACKEND);
  expect(web.code, web.err).toBe(0);
  const cl = await h.shoal('service', 'create', '--name', 'client', '--replicas', '2', '--network', 'app', '--', 'sleep', '600');
  expect(cl.code, cl.err).toBe(0);
  await serving('web', 3);
  const clients = await serving('client', 2);
  expect(new Set(clients.map((t) => t.nodeId)).size).toBe(2);
  const [svc] = await h.json<Array<{ vips: Record<string, { v4: string }> }>>('service', 'inspect', 'web');
  vip = svc?.vips[app.id]?.v4 as string;
}, 180_000);

afterAll(async () => {
  await prometheus?.stop('SIGTERM', 3000);
  await destroyAllHarnesses();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('metrics with a real Prometheus', () => {
  it('promtool check metrics finds no problem in a busy node\'s /metrics nor in the manager\'s', async () => {
    const clients = await serving('client', 2);
    await traffic(clients);
    const node = nodeOf(clients[0] as Task);
    // The per-backend counters are read in the background: wait until the traffic shows.
    const text = await until(async () => {
      const m = await metricsOf(node.netns, '127.0.0.1');
      return /^shoal_lb_backend_connections_total\{service="web",backend="[^"]+"\} [1-9]/m.test(m)
        && /^shoal_ingress_connections_total\{/m.test(m) && /^shoal_dns_queries_total\{/m.test(m) ? m : undefined;
    }, 'VIP, ingress and DNS counters on the client\'s node', 30_000, 250);
    for (const [what, metrics] of [['node', text], ['manager', await metricsOf(h.manager.netns, '127.0.0.1')]] as const) {
      const r = await runInNetns(h.client.netns, ['promtool', 'check', 'metrics'], { input: metrics });
      expect(`${what}: rc=${r.code} ${r.stdout}${r.stderr}`).toBe(`${what}: rc=0 `);
    }
    // The renamed series are counters now (promtool would say so otherwise; this says which).
    expect(text).toMatch(/^# TYPE shoal_lb_backend_connections_total counter$/m);
    expect(text).toMatch(/^# TYPE shoal_lb_backend_bytes_total counter$/m);
    expect(text).toMatch(/^# TYPE shoal_ingress_connections_total counter$/m);
  }, 90_000);

  it(`Prometheus scraping the manager and every node every second for ${SCRAPE_SECONDS} s sees up == 1 in every sample, and the DNS, LB and ingress series`, async () => {
    const clients = await serving('client', 2);
    const targets = [h.manager, ...h.nodes].map((x) => `${x.address}:${METRICS_PORT}`);
    writeFileSync(join(dir, 'prometheus.yml'), [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: shoal',
      '    static_configs:',
      `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
      '',
    ].join('\n'));
    prometheus = h.client.spawn(['prometheus', `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      '--web.listen-address=127.0.0.1:9090', '--storage.tsdb.retention.time=1h', '--log.level=warn']);
    await until(async () => (await h.client.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:9090/-/ready'])).stdout === '200'
      || (prometheus?.running() === false ? Promise.reject(new Error(`prometheus exited: ${prometheus.output()}`)) : false), 'prometheus ready', 30_000, 200);
    // Wait for the first sample of every target, then let it scrape for the whole window while traffic flows.
    await until(async () => (await promQuery<unknown[]>('up')).length === targets.length, 'a first scrape of every target', 15_000, 200);
    const end = Date.now() + SCRAPE_SECONDS * 1000;
    while (Date.now() < end) {
      await traffic(clients);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const window = `${SCRAPE_SECONDS}s`;
    const samples = await promQuery<Array<{ metric: { instance: string }; values: Array<[number, string]> }>>(`up[${window}]`);
    expect(samples.map((s) => s.metric.instance).sort()).toEqual([...targets].sort());
    for (const s of samples) {
      const values = s.values.map((v) => v[1]);
      expect({ instance: s.metric.instance, bad: values.filter((v) => v !== '1') }).toEqual({ instance: s.metric.instance, bad: [] });
      // Every second one sample: a skipped or timed-out scrape would leave fewer (a 1 s timeout fails it as up 0).
      expect(values.length, `${s.metric.instance}: ${values.length} samples in ${window}`).toBeGreaterThanOrEqual(SCRAPE_SECONDS - 2);
      const gaps = s.values.slice(1).map((v, i) => v[0] - (s.values[i] as [number, string])[0]);
      expect(Math.max(...gaps), `${s.metric.instance}: largest gap between samples`).toBeLessThan(1.6);
    }
    const durations = await promQuery<Array<{ metric: { instance: string }; value: [number, string] }>>(`max_over_time(scrape_duration_seconds[${window}])`);
    expect(durations.length).toBe(targets.length);
    // The series of each subsystem, on every node.
    for (const name of ['shoal_dns_queries_total', 'shoal_dns_request_duration_seconds_count', 'shoal_lb_backends', 'shoal_lb_backend_connections_total',
      'shoal_lb_sync_duration_seconds_count', 'shoal_ingress_published_backends', 'shoal_ingress_connections_total', 'shoal_agent_connected']) {
      const found = await promQuery<Array<{ metric: { instance: string } }>>(`count by (instance) (${name})`);
      expect({ name, instances: found.map((f) => f.metric.instance).sort() }).toEqual({ name, instances: h.nodes.map((n) => `${n.address}:${METRICS_PORT}`).sort() });
    }
    const cluster = await promQuery<Array<{ value: [number, string] }>>('shoal_cluster_nodes{state="ready"}');
    expect(cluster.map((c) => c.value[1])).toEqual([String(h.nodes.length)]);
    const vipFlows = await promQuery<Array<{ value: [number, string] }>>('sum(shoal_lb_backend_connections_total{service="web"})');
    expect(Number(vipFlows[0]?.value[1])).toBeGreaterThan(0);
    console.log(`scrape durations (max over ${window}): ${durations.map((d) => `${d.metric.instance} ${(Number(d.value[1]) * 1000).toFixed(1)} ms`).join(', ')}; network ${app.name}`);
  }, 150_000);
});
