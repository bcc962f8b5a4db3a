/**
 * Control-plane benchmark: the embedded store against etcd, same machine, same run. Not a
 * test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/store.ts
 *   BENCH_CREATES=100 BENCH_SCALES=50 BENCH_FAILOVERS=2 BENCH_DEATHS=1 node --import tsx test/bench/store.ts
 *   BENCH_PARTS=api node --import tsx test/bench/store.ts     # only the in-process part (no root)
 *
 * 1. API (in-process, no root): a manager and its API on 127.0.0.1 over (a) the embedded
 *    store, durable in a temp dir (what `shoal up` runs), and (b) a 3-member etcd on loopback
 *    (etcd's default timing, fsync on; `--store etcd://...`). Service creates per second
 *    (BENCH_CREATES services, 8 clients at once, replicas 0 so only the API writes), and watch
 *    latency: a WebSocket on /v1/watch (what an agent holds) sees each of BENCH_SCALES scale
 *    requests; latency from sending the request to the event's frame.
 * 2. HA (root: the multi-node harness, 3 etcd members, 3 managers, 3 agents): leader failover
 *    (kill -9 of the leader -> a service created through a follower right after gets its task
 *    from the new leader) and node death (kill of every process of a node and its underlay
 *    link -> its replica gone from `tasks.web` in DNS and from the nftables rules of a sandbox
 *    on every other node). The same node death with one manager on the embedded store and its
 *    default node TTL (10 s), as the peer.
 *
 * Results go to docs/bench-store.md (one section per machine, replaced on each run).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { closeApiServer, createApiServer } from '../../mesh/api/server.js';
import { call } from '../../mesh/cli/client.js';
import type { ManagerStatus } from '../../mesh/cli/nodes-table.js';
import { Manager } from '../../mesh/manager/index.js';
import type { Node, Task } from '../../src/model/types.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import { openEtcdStore, parseStoreLocation } from '../../src/store/etcd/index.js';
import type { Store } from '../../src/store/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { runInNetns } from '../harness/process.js';
import { startEtcdCluster } from '../helpers/etcd.js';
import { raw } from '../helpers/cluster.js';
import { balancedAddresses } from '../helpers/nft-balanced.js';
import { writeSection } from './doc.js';

const CREATES = Number(process.env.BENCH_CREATES ?? 200);
const SCALES = Number(process.env.BENCH_SCALES ?? 100);
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 3);
const DEATHS = Number(process.env.BENCH_DEATHS ?? 2);
const PARTS = (process.env.BENCH_PARTS ?? 'api,ha').split(',');
const DOC = 'docs/bench-store.md';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 20): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v as T;
    } catch {
      // retry
    }
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

interface ApiResult { createsPerSec: number; watchP50: number; watchP99: number }

/** Part 1 for one store. */
async function apiBench(label: string, store: Store, ha: boolean): Promise<ApiResult> {
  const manager = new Manager(store, ha ? { ha: { name: `bench-${randomUUID().slice(0, 8)}` } } : {});
  await manager.start();
  const server = createApiServer(manager);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const auth = { authorization: `Bearer ${manager.cluster.managerToken}` };
  const run = randomUUID().slice(0, 6);
  try {
    // Creates: 8 clients at once.
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = next++; i < CREATES; i = next++) {
        const r = await raw(url, 'POST', '/v1/services', { name: `b${run}-${i}`, replicas: 0, command: ['sleep', '1'] }, auth);
        if (r.status !== 201) throw new Error(`${label}: create answered ${r.status} ${r.text}`);
      }
    }));
    const createsPerSec = CREATES / ((performance.now() - t0) / 1000);
    // Watch latency: one WebSocket watch, one scale at a time.
    const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/watch`, { headers: auth });
    const waiting = new Map<string, () => void>();
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as { type: string; events?: Array<{ value?: string }> };
      for (const e of f.events ?? []) {
        const m = /"replicas":(\d+)/.exec(e.value ?? '');
        const name = /"name":"(b[^"]+)"/.exec(e.value ?? '')?.[1];
        if (m && name) waiting.get(`${name}=${m[1]}`)?.();
      }
    });
    await new Promise<void>((r, j) => { ws.once('message', () => r()); ws.once('error', j); });
    const lat: number[] = [];
    for (let i = 0; i < SCALES; i++) {
      const name = `b${run}-${i % CREATES}`;
      const want = `${name}=${Math.floor(i / CREATES) + 1}`;
      const seen = new Promise<void>((r) => waiting.set(want, r));
      const s0 = performance.now();
      const r = await raw(url, 'POST', `/v1/services/${name}/scale`, { replicas: Math.floor(i / CREATES) + 1 }, auth);
      if (r.status !== 200) throw new Error(`${label}: scale answered ${r.status} ${r.text}`);
      await seen;
      lat.push(performance.now() - s0);
      waiting.delete(want);
    }
    ws.close();
    const out = { createsPerSec, watchP50: pct(lat, 50), watchP99: pct(lat, 99) };
    console.error(`${label}: ${out.createsPerSec.toFixed(0)} creates/s, watch p50 ${f1(out.watchP50)} ms p99 ${f1(out.watchP99)} ms`);
    return out;
  } finally {
    await closeApiServer(server);
    await manager.stop();
  }
}

async function apiPart(): Promise<Record<string, ApiResult>> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-store-'));
  const etcd = await startEtcdCluster({ members: 3 });
  try {
    const out: Record<string, ApiResult> = {};
    // Alternate the order so neither always runs on a warmer machine.
    const embedded = await openEmbeddedStore({ dir: join(dir, 'store') });
    out['embedded (durable, 1 process)'] = await apiBench('embedded', embedded, false);
    await embedded.close();
    const loc = parseStoreLocation(etcd.storeUrl);
    if (loc.kind !== 'etcd') throw new Error('bad etcd url');
    const es = await openEtcdStore({ endpoints: loc.endpoints });
    out['etcd (3 members on loopback)'] = await apiBench('etcd', es, true);
    await es.close();
    return out;
  } finally {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface HaResult { failoverMs: number[]; deathEtcdMs: number[]; deathEmbeddedMs: number[] }

const sandboxOf = (h: Harness, names: Map<string, string>, t: Task): string => `${names.get(t.nodeId)}-${t.id}`;

async function runningTasks(h: Harness, service: string, n: number): Promise<Task[]> {
  return waitFor(`${n} running ${service}`, async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, 120_000, 200);
}

/** Kills the node running one of web's replicas; ms until it is gone from DNS and rules on every other node. */
async function nodeDeath(h: Harness, round: number): Promise<number> {
  const names = new Map((await h.json<Node[]>('node', 'ls')).map((n) => [n.id, n.name]));
  const web = await runningTasks(h, 'web', 3);
  const probes = await runningTasks(h, 'probe', 3);
  const victimName = names.get((web[round % web.length] as Task).nodeId);
  const victim = h.nodes.find((n) => n.name === victimName) as HarnessNode;
  const deadIps = web.filter((t) => names.get(t.nodeId) === victimName).flatMap((t) => Object.values(t.addresses).map((a) => a.v4));
  const watchers = probes.filter((t) => names.get(t.nodeId) !== victimName).map((t) => sandboxOf(h, names, t));
  const others = h.nodes.filter((n) => n !== victim);
  for (const n of others) await h.shoal('node', 'update', '--availability', 'pause', n.name);
  const re = (ip: string): RegExp => new RegExp(`(?<![\\d.])${ip.replace(/\./g, '\\.')}(?![\\d])`);
  const t0 = performance.now();
  await victim.kill();
  try {
    await waitFor('the dead replica gone everywhere', async () => {
      const checks = await Promise.all(watchers.map(async (ns) => {
        const d = await runInNetns(ns, ['dig', '@127.0.0.11', '+short', '+time=1', '+tries=1', 'tasks.web'], { timeoutMs: 5000 });
        const rules = (await runInNetns(ns, ['nft', 'list', 'ruleset'], { timeoutMs: 5000 })).stdout;
        const balanced = balancedAddresses(rules);
        return !deadIps.some((ip) => re(ip).test(d.stdout) || balanced.has(ip)) && d.stdout.trim() !== '';
      }));
      return checks.every(Boolean) ? true : undefined;
    }, 60_000, 25);
    return performance.now() - t0;
  } finally {
    await victim.revive();
    await victim.startAgent();
    for (const n of others) await h.shoal('node', 'update', '--availability', 'active', n.name);
  }
}

async function withServices(h: Harness): Promise<void> {
  await h.shoal('network', 'create', '--subnet', '10.74.0.0/24', 'ov');
  await h.shoal('service', 'create', '--name', 'web', '--replicas', '3', '--network', 'ov', '--', 'sleep', '3600');
  await h.shoal('service', 'create', '--name', 'probe', '--replicas', '3', '--network', 'ov', '--', 'sleep', '3600');
  await runningTasks(h, 'web', 3);
  await runningTasks(h, 'probe', 3);
}

async function haPart(): Promise<HaResult> {
  const out: HaResult = { failoverMs: [], deathEtcdMs: [], deathEmbeddedMs: [] };
  let h = await startHarness({ nodes: 3, managers: 3, etcd: { members: 3, heartbeatMs: 100, electionMs: 600 }, readyTimeoutMs: 90_000 });
  try {
    await withServices(h);
    const ep = { url: h.managers.map((m) => `unix://${join(m.dataDir, 'shoal.sock')}`).join(','), token: h.manager.token };
    for (let i = 0; i < FAILOVERS; i++) {
      const lead = await waitFor('a leader', async () => (await call<ManagerStatus[]>(ep, 'GET', '/v1/managers')).find((m) => m.leader)?.name);
      const old = h.managers.find((m) => m.name === lead);
      if (!old) throw new Error(`leader ${lead} is not a harness manager`);
      const name = `fo${i}`;
      const t0 = performance.now();
      await old.stop('SIGKILL');
      // Through a follower at once (the CLI moves past the dead one): only a new leader schedules it.
      await waitFor('create through a follower', async () => ((await h.shoal('service', 'create', '--name', name, '--network', 'ov', '--', 'sleep', '3600')).code === 0 ? true : undefined), 30_000, 10);
      await waitFor('its task from the new leader', async () => ((await call<Task[]>(ep, 'GET', `/v1/tasks?service=${name}`)).some((t) => t.nodeId !== '') ? true : undefined), 60_000, 10);
      out.failoverMs.push(performance.now() - t0);
      console.error(`failover ${i + 1}: ${out.failoverMs.at(-1)?.toFixed(0)} ms`);
      await old.start();
      await sleep(1000);
    }
    for (let i = 0; i < DEATHS; i++) {
      out.deathEtcdMs.push(await nodeDeath(h, i));
      console.error(`node death (etcd, 3 managers) ${i + 1}: ${out.deathEtcdMs.at(-1)?.toFixed(0)} ms`);
    }
  } finally {
    await destroyAllHarnesses();
  }
  h = await startHarness({ nodes: 3, readyTimeoutMs: 90_000 });
  try {
    await withServices(h);
    for (let i = 0; i < Math.max(1, Math.min(DEATHS, 1)); i++) {
      out.deathEmbeddedMs.push(await nodeDeath(h, i));
      console.error(`node death (embedded, default TTL) ${i + 1}: ${out.deathEmbeddedMs.at(-1)?.toFixed(0)} ms`);
    }
  } finally {
    await destroyAllHarnesses();
  }
  return out;
}

async function main(): Promise<void> {
  const api = PARTS.includes('api') ? await apiPart() : undefined;
  const ha = PARTS.includes('ha') ? await haPart() : undefined;
  const machine = `${hostname()} (${cpus().length} x ${cpus()[0]?.model.trim() ?? 'cpu'})`;
  const key = `<!-- bench-store:${hostname()} -->`;
  const lines = [key, `## ${machine}, ${new Date().toISOString().slice(0, 10)}`, ''];
  if (api) {
    lines.push(`API on 127.0.0.1: ${CREATES} service creates by 8 clients at once; ${SCALES} scales one at a time, each timed from the request to its event on a /v1/watch WebSocket.`, '');
    lines.push('| store | creates/s | watch latency p50 (ms) | p99 (ms) |', '|---|---|---|---|');
    for (const [k, r] of Object.entries(api)) lines.push(`| ${k} | ${r.createsPerSec.toFixed(0)} | ${f1(r.watchP50)} | ${f1(r.watchP99)} |`);
    const [e, c] = Object.values(api);
    if (e && c) lines.push('', `etcd / embedded: creates ${(c.createsPerSec / e.createsPerSec).toFixed(2)}x, watch p50 ${(c.watchP50 / e.watchP50).toFixed(2)}x.`);
    lines.push('');
  }
  if (ha) {
    const row = (what: string, xs: number[]): string => `| ${what} | ${xs.length} | ${xs.length ? f1(pct(xs, 50)) : 'n/a'} | ${xs.length ? f1(Math.max(...xs)) : 'n/a'} |`;
    lines.push('Multi-node harness (namespaces on one machine; etcd `--heartbeat-interval 100 --election-timeout 600`, leader session TTL 1 s, node TTL 2 s with heartbeats every 0.5 s):', '');
    lines.push('| measure | runs | median (ms) | worst (ms) |', '|---|---|---|---|');
    lines.push(row('leader failover: kill -9 of the leader -> the new leader schedules a service created after it', ha.failoverMs));
    lines.push(row('node death -> gone from DNS and nftables on every other node (3 managers on etcd)', ha.deathEtcdMs));
    lines.push(row('node death, peer: 1 manager on the embedded store, default node TTL 10 s', ha.deathEmbeddedMs));
    lines.push('', 'Target: node death under 3 s. For reference (their documentation, not measured here): Docker Swarm marks a node down after 5 s heartbeats x 3 (15 s, 4-24 s seen), Kubernetes evicts after its 40 s node-monitor grace period.', '');
  }
  lines.push('<!-- /bench-store -->');
  await writeSection(DOC, key, '<!-- /bench-store -->', lines.join('\n'), '# Control-plane benchmark\n\nWritten by `node --import tsx test/bench/store.ts`; one section per machine, replaced on each run.\n');
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
