/**
 * Chaos on the HA control plane: 3 etcd members, 3 managers, 3 agents (the harness). A writer
 * creates, scales and removes services through the API in a loop while the test kill -9s the
 * leader manager, then the etcd leader, then restarts both. Afterwards:
 * - every acknowledged write is there (a write whose answer was an error may or may not be);
 * - no slot ever had two live tasks (the whole task history, replayed by etcdctl);
 * - every agent is connected and every node ready;
 * - every node's dataplane matches the desired state (DNS answers and nftables rules in a
 *   sandbox on every node against the services' running tasks and VIPs);
 * - a TCP connection established through the routing mesh before the chaos still echoes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { call } from '../../mesh/cli/client.js';
import type { ManagerStatus } from '../../mesh/cli/nodes-table.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessProcess } from '../harness/cluster.js';
import { runInNetns } from '../harness/process.js';
import { until } from '../helpers/cluster.js';
import { balancedAddresses } from '../helpers/nft-balanced.js';

let h: Harness;
const nodeName = new Map<string, string>();
let net: Network;

// etcd's default timing (election 1 s): no spurious etcd elections on a loaded CI machine; the
// benchmark measures failover with a LAN's timing (test/bench/store.ts).
beforeAll(async () => {
  h = await startHarness({ nodes: 3, managers: 3, etcd: { members: 3 }, readyTimeoutMs: 60_000 });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  expect((await h.shoal('network', 'create', '--subnet', '10.72.0.0/24', 'ov')).code).toBe(0);
  net = await h.json<Network>('network', 'inspect', 'ov').then((x) => (Array.isArray(x) ? x[0] : x) as Network);
}, 180_000);

afterAll(() => destroyAllHarnesses(), 60_000);

const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'orphaned']);
const live = (t: Task): boolean => t.desiredState === 'running' && !TERMINAL.has(t.status.state);
const ep = () => ({ url: h.managers.map((m) => `unix://${join(m.dataDir, 'shoal.sock')}`).join(','), token: h.manager.token });

const ECHO = "require('node:net').createServer((s) => s.pipe(s)).listen(7070, () => console.log('echo up'))";
/** From outside: one connection, a numbered ping every 300 ms, each line echoed back. */
const PINGER = `
const s = require('node:net').connect(Number(process.argv[2]), process.argv[1]);
let n = 0, buf = '';
s.on('connect', () => { console.log('connected'); setInterval(() => s.write('ping ' + (++n) + '\\n'), 300); });
s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { console.log('ok ' + buf.slice(0, i)); buf = buf.slice(i + 1); } });
s.on('close', () => { console.log('closed'); process.exit(1); });
s.on('error', (e) => { console.log('error ' + e.message); });
`;

async function running(service: string, n: number, timeoutMs = 60_000): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, timeoutMs, 200);
}

const lastOk = (p: HarnessProcess): number => Number(/ok ping (\d+)\n(?![\s\S]*ok ping)/.exec(p.stdout())?.[1] ?? 0);

describe('HA chaos', () => {
  it('loses no acknowledged write, never runs two tasks for one slot, and converges every node', async () => {
    const etcd = h.etcd;
    if (!etcd) throw new Error('no etcd');
    const startRev = Number(JSON.parse((await etcd.etcdctl(['endpoint', 'status', '-w', 'json'])).stdout)[0].Status.header.revision);

    // A connection through the routing mesh that must survive.
    expect((await h.shoal('service', 'create', '--name', 'echo', '--network', 'ov', '-p', '8080:7070', '--', process.execPath, '-e', ECHO)).code).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'probe', '--replicas', '3', '--network', 'ov', '--', 'sleep', '3600')).code).toBe(0);
    await running('echo', 1);
    await running('probe', 3);
    const pinger = h.client.spawn([process.execPath, '-e', PINGER, h.nodes[0]!.address, '8080']);
    await until(() => lastOk(pinger) >= 3, 'the connection through the mesh to echo', 30_000, 100);

    // The writer: create, scale, remove, through the CLI (every manager, with failover).
    const expected = new Map<string, number>(); // acknowledged state: replicas, 0 = removed
    const uncertain = new Set<string>();
    let acks = 0;
    let stop = false;
    const op = async (name: string, argv: string[], then: number): Promise<void> => {
      const r = await h.shoal(...argv);
      if (r.code === 0) { acks++; if (!uncertain.has(name)) expected.set(name, then); } else uncertain.add(name);
    };
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        await op(`w${i}`, ['service', 'create', '--name', `w${i}`, '--network', 'ov', '--', 'sleep', '3600'], 1);
        if (i >= 1 && expected.get(`w${i - 1}`) === 1) await op(`w${i - 1}`, ['service', 'scale', `w${i - 1}=2`], 2);
        if (i >= 3 && (expected.get(`w${i - 3}`) ?? 0) > 0) await op(`w${i - 3}`, ['service', 'rm', `w${i - 3}`], 0);
      }
    })();
    const more = async (n: number, what: string): Promise<void> => {
      const target = acks + n;
      await until(() => acks >= target, `${n} acknowledged writes ${what}`, 90_000, 100);
    };
    const managers = (): Promise<ManagerStatus[]> => call<ManagerStatus[]>(ep(), 'GET', '/v1/managers');
    try {
      await more(6, 'before the chaos');
      // 1. kill -9 the leader manager.
      const leaderName = await until(async () => (await managers()).find((m) => m.leader)?.name, 'a leader', 30_000, 100);
      const leader = h.managers.find((m) => m.name === leaderName)!;
      await leader.stop('SIGKILL');
      await until(async () => (await managers()).some((m) => m.leader && m.name !== leaderName), 'a new leader', 30_000, 100);
      await more(6, 'after the leader died');
      // 2. kill -9 the etcd leader.
      const st = JSON.parse((await etcd.etcdctl(['endpoint', 'status', '-w', 'json'])).stdout) as Array<{ Endpoint: string; Status: { header: { member_id: number }; leader: number } }>;
      const lead = st.find((x) => String(x.Status.header.member_id) === String(x.Status.leader));
      const member = etcd.members.find((m) => m.endpoint === lead?.Endpoint) ?? etcd.members[0]!;
      await member.kill('SIGKILL');
      await more(6, 'after the etcd leader died');
      // 3. Both back.
      member.start();
      await leader.start();
      await etcd.waitHealthy();
      await more(6, 'after the restarts');
    } finally {
      stop = true;
      await writer;
    }

    // Acknowledged writes are all there; the scheduler converges on them.
    const services = await until(async () => {
      const ss = await h.json<Service[]>('service', 'ls');
      const tasks = await call<Task[]>(ep(), 'GET', '/v1/tasks');
      for (const [name, replicas] of expected) {
        if (uncertain.has(name)) continue;
        const s = ss.find((x) => x.spec.name === name);
        if (replicas === 0 ? s !== undefined : s?.spec.replicas !== replicas) return undefined;
      }
      // Converged: every service runs exactly its replicas.
      for (const s of ss) {
        const runningTasks = tasks.filter((t) => t.serviceId === s.id && t.desiredState === 'running' && t.status.state === 'running');
        if (runningTasks.length !== s.spec.replicas) return undefined;
      }
      return ss;
    }, 'acknowledged writes present and every service converged', 120_000, 500);
    expect(acks).toBeGreaterThanOrEqual(24);
    console.log(`chaos: ${acks} acknowledged writes, ${uncertain.size} services with a write of unknown outcome, ${services.length} services at the end`);

    // No slot ever had two live tasks: the task history from etcd, replayed by etcdctl.
    const hist = await etcd.etcdctl(['watch', '--prefix', '/shoal/tasks/', `--rev=${startRev + 1}`, '-w', 'json'], { timeoutMs: 8000 });
    const state = new Map<string, Task>();
    // etcdctl's JSON is etcd's protobuf as JSON: a put has no `type` (enum 0), a delete has 1.
    const byRev = new Map<number, Array<{ del: boolean; key: string; value: string }>>();
    for (const line of hist.stdout.split('\n').filter((l) => l.startsWith('{'))) {
      const resp = JSON.parse(line) as { Events?: Array<{ type?: string | number; kv: { key: string; value?: string; mod_revision: number } }> };
      for (const e of resp.Events ?? []) {
        const list = byRev.get(e.kv.mod_revision) ?? [];
        list.push({ del: e.type === 1 || e.type === 'DELETE', key: Buffer.from(e.kv.key, 'base64').toString(), value: Buffer.from(e.kv.value ?? '', 'base64').toString() });
        byRev.set(e.kv.mod_revision, list);
      }
    }
    // The replay is complete: it reaches the last write of every task there is now.
    const nowTasks = JSON.parse((await etcd.etcdctl(['get', '--prefix', '/shoal/tasks/', '-w', 'json'])).stdout) as { kvs?: Array<{ mod_revision: number }> };
    expect(Math.max(...byRev.keys())).toBeGreaterThanOrEqual(Math.max(...(nowTasks.kvs ?? []).map((kv) => kv.mod_revision)));
    expect(byRev.size).toBeGreaterThan(50);
    let worst = 0;
    for (const rev of [...byRev.keys()].sort((a, b) => a - b)) {
      for (const e of byRev.get(rev) ?? []) {
        if (e.del) state.delete(e.key);
        else state.set(e.key, JSON.parse(e.value) as Task);
      }
      const perSlot = new Map<string, number>();
      for (const t of state.values()) if (live(t)) perSlot.set(`${t.serviceId}/${t.slot}`, (perSlot.get(`${t.serviceId}/${t.slot}`) ?? 0) + 1);
      worst = Math.max(worst, ...perSlot.values());
    }
    expect(worst).toBe(1);
    console.log(`chaos: task history of ${byRev.size} revisions replayed, at most ${worst} live task per slot`);

    // Every agent connected, every node ready.
    await until(async () => (await h.json<Node[]>('node', 'ls')).every((n) => n.state === 'ready'), 'every node ready', 30_000, 200);
    for (const n of h.nodes) {
      const m = await runInNetns(n.netns, ['curl', '-sf', '--max-time', '5', 'http://127.0.0.1:9323/metrics']);
      expect(m.stdout.split('\n').filter((l) => l.startsWith('shoal_agent_connected ')), n.name).toEqual(['shoal_agent_connected 1']);
    }

    // Every node's dataplane matches the desired state, seen from the probe's sandbox on each node.
    const tasks = (await call<Task[]>(ep(), 'GET', '/v1/tasks')).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    const ipsOf = (svcId: string): string[] => tasks.filter((t) => t.serviceId === svcId).map((t) => t.addresses[net.id]?.v4 ?? '').filter(Boolean).sort();
    const runningIps = new Set(tasks.map((t) => t.addresses[net.id]?.v4 ?? '').filter(Boolean));
    const probes = tasks.filter((t) => t.serviceName === 'probe');
    expect(new Set(probes.map((t) => t.nodeId)).size).toBe(3);
    await until(async () => {
      for (const p of probes) {
        const ns = `${nodeName.get(p.nodeId)}-${p.id}`;
        for (const s of services) {
          const r = await runInNetns(ns, ['dig', '@127.0.0.11', '+short', '+time=2', '+tries=1', `tasks.${s.spec.name}`], { timeoutMs: 10_000 });
          const got = r.stdout.split('\n').map((l) => l.trim()).filter((l) => /^\d/.test(l)).sort();
          if (JSON.stringify(got) !== JSON.stringify(ipsOf(s.id))) return false;
        }
        // Balanced to exactly the running tasks on the network (every service there is in vip mode).
        const balanced = balancedAddresses((await runInNetns(ns, ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 })).stdout);
        if (JSON.stringify([...balanced].sort()) !== JSON.stringify([...runningIps].sort())) return false;
      }
      return true;
    }, 'DNS and nftables on every node matching the running tasks', 60_000, 500);

    // The connection established before the chaos still echoes.
    const seen = lastOk(pinger);
    await until(() => lastOk(pinger) >= seen + 3, 'the pre-chaos connection still echoing', 20_000, 100);
    expect(pinger.running()).toBe(true);
    expect(pinger.stdout()).not.toMatch(/closed|error/);
  }, 600_000);
});
