/**
 * A manager and two agents in one process over real sockets, tasks as real processes:
 * the CLI flows, spread scheduling, scaling, node failure (lease expiry) and rescheduling,
 * agent reconnect after a manager restart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../mesh/agent/index.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';
import { api, cli, startTestManager, until, wsTls, type TestManager } from '../helpers/cluster.js';

let dir: string;
let store: Store;
let m: TestManager;
const agents: Agent[] = [];
let victimPids: number[] = [];
const pidAlive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

function startAgentFor(mgr: TestManager, name: string): Agent {
  const a = new Agent({ managerUrl: mgr.url, joinToken: mgr.joinToken, name, address: '127.0.0.1', dataDir: join(dir, name) });
  a.start();
  agents.push(a);
  return a;
}

async function tasksOf(service: string): Promise<Task[]> {
  return (await api(m, 'GET', `/v1/tasks?service=${service}`)).body as Task[];
}
const running = (ts: Task[]): Task[] => ts.filter((t) => t.desiredState === 'running' && t.status.state === 'running');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-mesh-'));
  store = await openEmbeddedStore({});
  m = await startTestManager({ store, nodeLeaseTtlSeconds: 1 });
  startAgentFor(m, 'node-a');
  startAgentFor(m, 'node-b');
  await until(async () => ((await api(m, 'GET', '/v1/nodes')).body as Node[]).filter((n) => n.state === 'ready').length === 2, 'two ready nodes');
});

afterAll(async () => {
  // Stop every task process the agents started, then the agents and the manager.
  for (const a of agents) {
    for (const id of a.runtime.list()) await a.runtime.ensureStopped(id);
    await a.stop();
  }
  await m?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('CLI against a live cluster', () => {
  it('creates, lists, inspects and removes networks', async () => {
    expect((await cli(m, 'network', 'create', '--subnet', '10.91.0.0/24', 'app')).code).toBe(0);
    expect((await cli(m, 'network', 'create', '-d', 'bridge', '--ipv6', 'br1')).code).toBe(0);
    const ls = await cli(m, 'network', 'ls');
    expect(ls.out).toMatch(/NETWORK ID\s+NAME\s+DRIVER/);
    expect(ls.out).toMatch(/app\s+overlay\s+swarm\s+10\.91\.0\.0\/24\s+10\.91\.0\.1/);
    const nets = JSON.parse((await cli(m, 'network', 'ls', '--format', 'json')).out) as Network[];
    const br = nets.find((n) => n.name === 'br1');
    expect(br?.ipam.v4.subnet).toMatch(/^172\.(1[7-9]|2\d|3[01])\.0\.0\/16$/);
    expect(br?.ipam.v6?.subnet).toMatch(/\/64$/);
    const app = nets.find((n) => n.name === 'app');
    expect(app?.vni).toBeGreaterThanOrEqual(4096);
    const inspected = JSON.parse((await cli(m, 'network', 'inspect', 'app')).out) as Network[];
    expect(inspected[0]?.id).toBe(app?.id);
    expect((await cli(m, 'network', 'rm', 'br1')).out).toBe('br1\n');
    expect((await cli(m, 'network', 'create', 'tmpnet')).code).toBe(0);
    // Prune removes every network no service uses (app too, here), like docker network prune;
    // the cluster's ingress network stays (and cannot be removed).
    expect((await cli(m, 'network', 'prune')).out).toMatch(/Deleted Networks:\n(app|tmpnet)\n(app|tmpnet)\n/);
    expect((JSON.parse((await cli(m, 'network', 'ls', '--format', 'json')).out) as Network[]).map((n) => [n.name, n.ingress])).toEqual([['ingress', true]]);
    const rmIngress = await cli(m, 'network', 'rm', 'ingress');
    expect(rmIngress.code).not.toBe(0);
    expect(rmIngress.err).toMatch(/ingress network and cannot be removed/);
    // Its subnet went back to IPAM: the same subnet can be taken again.
    expect((await cli(m, 'network', 'create', '--subnet', '10.91.0.0/24', 'app')).code).toBe(0);
  });

  it('runs a service spread over both nodes and scales it', async () => {
    const c = await cli(m, 'service', 'create', '--name', 'web', '--replicas', '4', '-p', '8080:80', '-p', '53/udp', '--network', 'app', '--', 'sleep', '600');
    expect(c.code, c.err).toBe(0);
    await until(async () => running(await tasksOf('web')).length === 4, '4 running web tasks');
    const ts = running(await tasksOf('web'));
    const perNode = new Map<string, number>();
    for (const t of ts) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
    expect([...perNode.values()].sort()).toEqual([2, 2]);
    expect(new Set(ts.map((t) => t.slot))).toEqual(new Set([1, 2, 3, 4]));
    const addrs = ts.map((t) => Object.values(t.addresses)[0]?.v4);
    expect(new Set(addrs).size).toBe(4);
    for (const a of addrs) expect(a).toMatch(/^10\.91\.0\.\d+$/);
    const svc = JSON.parse((await cli(m, 'service', 'inspect', 'web')).out)[0] as Service;
    expect(svc.spec.ports.find((p) => p.protocol === 'udp')?.published).toBeGreaterThanOrEqual(30000);
    expect(Object.values(svc.vips)[0]?.v4).toMatch(/^10\.91\.0\.\d+$/);
    expect(addrs).not.toContain(Object.values(svc.vips)[0]?.v4);
    const ls = await cli(m, 'service', 'ls');
    expect(ls.out).toMatch(/web\s+replicated\s+4\/4\s+-- sleep 600\s+\*:8080->80\/tcp/);
    const ps = await cli(m, 'service', 'ps', 'web');
    expect(ps.out.match(/Running +Running \d+ seconds? ago/g)).toHaveLength(4); // desired, current

    expect((await cli(m, 'service', 'scale', 'web=1')).code).toBe(0);
    await until(async () => {
      const all = await tasksOf('web');
      return running(all).length === 1 && all.filter((t) => t.status.state === 'shutdown').length === 3;
    }, 'scale down to 1 with 3 tasks shut down');
    const psJson = JSON.parse((await cli(m, 'service', 'ps', 'web', '--format', 'json')).out) as Task[];
    expect(psJson.filter((t) => t.desiredState === 'shutdown')).toHaveLength(3);
  });

  it('updates a service: new spec replaces its tasks, stale version refused', async () => {
    const before = running(await tasksOf('web'))[0];
    const u = await cli(m, 'service', 'update', '-e', 'COLOR=blue', 'web');
    expect(u.code, u.err).toBe(0);
    await until(async () => {
      const r = running(await tasksOf('web'));
      return r.length === 1 && r[0]?.id !== before?.id;
    }, 'task replaced after update');
    const stale = await cli(m, 'service', 'update', '--version', '1', '--replicas', '2', 'web');
    expect(stale.code).toBe(1);
    expect(stale.err).toMatch(/version/);
  });

  it('reschedules the tasks of a node whose agent died', async () => {
    expect((await cli(m, 'service', 'scale', 'web=4')).code).toBe(0);
    await until(async () => running(await tasksOf('web')).length === 4, '4 running again');
    const victim = agents[1] as Agent;
    const victimId = victim.nodeId;
    victimPids = running(await tasksOf('web')).filter((t) => t.nodeId === victimId).map((t) => t.status.pid as number);
    expect(victimPids.length).toBeGreaterThan(0);
    // The agent dies without a goodbye: its session stops, its lease (1 s) expires.
    await victim.stop();
    await until(async () => ((await api(m, 'GET', `/v1/nodes/${victimId}`)).body as Node).state === 'down', 'node marked down', 10_000);
    await until(async () => {
      const all = await tasksOf('web');
      const r = running(all);
      return r.length === 4 && r.every((t) => t.nodeId !== victimId) && all.some((t) => t.status.state === 'orphaned');
    }, 'all 4 replicas running on the surviving node', 15_000);
    const nodes = await cli(m, 'node', 'ls');
    expect(nodes.out).toMatch(/node-b\s+127\.0\.0\.1\s+Down\s+Active/);
    // The dead agent's processes live on (as on a real node whose agent crashed) until it returns.
    for (const pid of victimPids) expect(pidAlive(pid)).toBe(true);
  });

  it('drains a node: its tasks move elsewhere', async () => {
    const b = startAgentFor(m, 'node-b');
    await until(() => b.session.connected, 'node-b rejoined');
    // Back on its data dir, the agent finds the processes of tasks that moved away and stops them.
    await until(() => victimPids.every((p) => !pidAlive(p)), 'orphaned task processes stopped by the returning agent');
    expect((await cli(m, 'service', 'scale', 'web=2')).code).toBe(0);
    const a = agents[0] as Agent;
    expect((await cli(m, 'node', 'update', '--availability', 'drain', 'node-a')).code).toBe(0);
    await until(async () => {
      const r = running(await tasksOf('web'));
      return r.length === 2 && r.every((t) => t.nodeId === b.nodeId);
    }, 'tasks moved off the drained node', 15_000);
    await until(() => a.runtime.list().length === 0, 'drained node stopped its task processes');
    expect((await cli(m, 'node', 'update', '--availability', 'active', 'node-a')).code).toBe(0);
  });

  it('prints and follows the output of every task (service logs)', async () => {
    const script = 'echo "hello from $SHOAL_TASK_NAME"; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.1; done';
    expect((await cli(m, 'service', 'create', '--name', 'talker', '--replicas', '2', '--', 'sh', '-c', script)).code).toBe(0);
    await until(async () => running(await tasksOf('talker')).length === 2, '2 talkers running');
    const ts = running(await tasksOf('talker'));
    const logs = await until(async () => {
      const r = await cli(m, 'service', 'logs', 'talker');
      return ts.every((t) => r.out.includes(`| hello from talker.${t.slot}.${t.id}`)) ? r.out : undefined;
    }, 'hello lines of both tasks');
    for (const t of ts) expect(logs).toMatch(new RegExp(`^talker\\.${t.slot}\\.${t.id}@node-[ab] \\| tick \\d+$`, 'm'));
    // Follow: new lines keep coming over one open response.
    const seen = await new Promise<string>((resolve, reject) => {
      const req = request(`${m.url}/v1/services/talker/logs?follow=1`, { headers: { authorization: `Bearer ${m.token}` }, ...wsTls(m) }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          const ticks = new Set([...text.matchAll(/tick (\d+)/g)].map((x) => Number(x[1])));
          if (Math.max(...ticks) >= 30) { req.destroy(); resolve(text); }
        });
      });
      req.on('error', (e) => { if (!req.destroyed) reject(e); });
      req.end();
    });
    expect(seen).toMatch(/tick 30/);
    // Across nodes: the last 5 lines of each task, merged by the time each was written.
    const tail = (await cli(m, 'service', 'logs', 'talker', '--tail', '5', '--timestamps')).out.trim().split('\n');
    expect(tail).toHaveLength(10);
    const times = tail.map((l) => Date.parse(/\| (\S+Z) /.exec(l)?.[1] ?? ''));
    expect(times.every((t) => Number.isFinite(t))).toBe(true);
    expect(times).toEqual([...times].sort((x, y) => x - y));
    const nodesOf = new Set(ts.map((t) => t.nodeId));
    expect(new Set(tail.map((l) => /@(node-[ab]) \|/.exec(l)?.[1])).size).toBe(nodesOf.size);
    expect((await cli(m, 'service', 'rm', 'talker')).code).toBe(0);
  });

  it('removes a service: tasks stop and addresses return to IPAM', async () => {
    expect((await cli(m, 'service', 'rm', 'web')).out).toBe('web\n');
    await until(async () => agents.every((a) => a.runtime.list().length === 0), `task processes stopped (held: ${agents.map((a) => a.runtime.list().length)})`);
    await until(async () => ((await store.range('/shoal/tasks/')).kvs.length === 0), 'tasks deleted from history once their service is gone');
    // VIP and task addresses are free again: the network can be removed (releases everything).
    expect((await cli(m, 'network', 'rm', 'app')).code).toBe(0);
    // What stays: each node's ingress sandbox address (and the ingress gateway) on the ingress network.
    const { kvs } = await store.range('/shoal/ipam/addresses/');
    const owners = kvs.map((kv) => (JSON.parse(kv.value) as { owner: string }).owner).sort();
    expect(owners.filter((o) => !o.startsWith('node:') && o !== 'gateway')).toEqual([]);
  });
});

describe('manager restart', () => {
  it('agents reconnect and resume from their revision (no re-list)', async () => {
    const b = agents[agents.length - 1] as Agent;
    await until(() => b.session.connected, 'agent connected');
    const listsBefore = b.index.lists;
    const port = Number(new URL(m.url).port);
    // Restart the manager (API, scheduler, liveness) over the same store, on the same address.
    await m.close();
    await until(() => !b.session.connected, 'agent noticed the manager is gone');
    m = await startTestManager({ store, nodeLeaseTtlSeconds: 1, port });
    await until(() => b.session.connected, 'agent rejoined the restarted manager');
    expect((await cli(m, 'network', 'create', 'after-restart')).code).toBe(0);
    await until(() => b.index.networks().some((n) => n.name === 'after-restart'), 'watch stream delivers to the agent');
    expect(b.index.lists).toBe(listsBefore);
    const node = (await api(m, 'GET', `/v1/nodes/${b.nodeId}`)).body as Node;
    expect(node.state).toBe('ready');
  });
});
