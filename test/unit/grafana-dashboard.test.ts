/**
 * docs/grafana-shoal.json is a valid Grafana dashboard for the series Shoal exports: it parses,
 * every panel queries the `$datasource` variable, panel ids are unique, and every `shoal_*`
 * metric an expression names is registered by the code (the manager, an agent, DNS, the VIP
 * load balancer and the ingress) on one registry, as a node's /metrics would serve it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createDnsMetrics } from '../../dns/index.js';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import { Agent } from '../../mesh/agent/index.js';
import { NodeIngress } from '../../mesh/agent/ingress.js';
import { NodeLb } from '../../mesh/agent/lb.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import { Manager } from '../../mesh/manager/index.js';
import { registerAgentMetrics, registerEventLoopMetrics, registerManagerMetrics, Registry } from '../../mesh/metrics.js';
import { FakeNft } from '../../src/kernel/index.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';

interface Panel { id: number; type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string; datasource?: { uid: string } }>; panels?: Panel[] }
const dir = mkdtempSync(join(tmpdir(), 'shoal-dash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every metric name (with a histogram's _bucket/_sum/_count) registered by the code. */
async function registeredNames(): Promise<Set<string>> {
  const reg = new Registry();
  const store = await openEmbeddedStore({});
  createDnsMetrics(reg);
  const index = new LocalIndex();
  const nft = (): NftLoadBalancer => new NftLoadBalancer({ nft: new FakeNft(), table: 'sh_lb' });
  new NodeLb(index, { kind: 'nftables', make: nft, metricsRegistry: reg });
  new NodeIngress(index, () => undefined, { host: nft(), metricsRegistry: reg });
  registerManagerMetrics(reg, new Manager(store));
  registerEventLoopMetrics(reg);
  registerAgentMetrics(reg, new Agent({ managerUrl: 'unix:///nonexistent', joinToken: 't', name: 'n1', address: '127.0.0.1', dataDir: dir }));
  const names = new Set<string>();
  for (const m of reg.getMetricsAsArray() as unknown as Array<{ name: string; type: string }>) {
    names.add(m.name);
    if (m.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  await store.close();
  return names;
}

describe('the Grafana dashboard (docs/grafana-shoal.json)', () => {
  const dash = JSON.parse(readFileSync(new URL('../../docs/grafana-shoal.json', import.meta.url), 'utf8')) as {
    title: string; uid: string; panels: Panel[]; templating: { list: Array<{ name: string }> };
  };
  const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

  it('is a dashboard with unique panel ids whose queries all use the datasource variable', () => {
    expect(dash.title).toBe('Shoal mesh');
    expect(dash.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dash.templating.list.map((v) => v.name)).toEqual(expect.arrayContaining(['datasource', 'instance', 'service']));
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const queried = panels.filter((p) => p.type !== 'row');
    expect(queried.length).toBeGreaterThanOrEqual(20);
    for (const p of queried) {
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe('${datasource}');
    }
  });

  it('references only metrics the code registers, and covers the DNS, LB and ingress series', async () => {
    const names = await registeredNames();
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bshoal_[a-z0-9_]+/g)].map((m) => m[0])));
    expect([...used].filter((n) => !names.has(n))).toEqual([]);
    for (const must of ['shoal_dns_queries_total', 'shoal_dns_request_duration_seconds_bucket', 'shoal_lb_backends', 'shoal_lb_backend_connections_total',
      'shoal_lb_backend_bytes_total', 'shoal_lb_network_programming_latency_seconds_bucket', 'shoal_ingress_published_backends', 'shoal_ingress_connections_total']) {
      expect(used.has(must), must).toBe(true);
    }
    // The other names are Prometheus's own.
    const others = new Set(exprs.flatMap((e) => [...e.matchAll(/\b(up|scrape_duration_seconds)\{/g)].map((m) => m[1])));
    expect([...others].sort()).toEqual(['scrape_duration_seconds', 'up']);
  });
});
