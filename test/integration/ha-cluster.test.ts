/**
 * Several managers on a real etcd cluster (3 members started by the harness on its underlay),
 * 3 agents: one cluster identity, leader election and failover (kill -9 of the leader: agents
 * resume their watch elsewhere, no task restarts), no false "down" under 30 s of full CPU load,
 * a dead node's tasks leaving DNS and the kernel load balancer on every other node, and etcd
 * losing its quorum (503 Unavailable, dataplane untouched, everything resumes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManagerStatus } from '../../mesh/cli/nodes-table.js';
import { call } from '../../mesh/cli/client.js';
import type { Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessManager, type HarnessNode } from '../harness/cluster.js';
import { runInNetns } from '../harness/process.js';
import { until } from '../helpers/cluster.js';
import { balancedAddresses } from '../helpers/nft-balanced.js';

let h: Harness;
const nodeName = new Map<string, string>();

// etcd's default timing (election 1 s): no spurious etcd elections on a loaded CI machine; the
// benchmark measures failover with a LAN's timing (test/bench/store.ts).
beforeAll(async () => {
  h = await startHarness({
    nodes: 3, managers: 3, etcd: { members: 3 },
    managerArgs: ['--metrics-addr', '127.0.0.1:9323'], readyTimeoutMs: 60_000,
  });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  expect((await h.shoal('network', 'create', '--subnet', '10.71.0.0/24', 'ov')).code).toBe(0);
}, 180_000);

afterAll(() => destroyAllHarnesses(), 60_000);

const ep = () => ({ url: h.managers.map((m) => `unix://${join(m.dataDir, 'shoal.sock')}`).join(','), token: h.manager.token });
const managers = (): Promise<ManagerStatus[]> => call<ManagerStatus[]>(ep(), 'GET', '/v1/managers');
const byName = (name: string): HarnessManager => {
  const m = h.managers.find((x) => x.name === name);
  if (!m) throw new Error(`no manager ${name}`);
  return m;
};
const nodeOf = (t: Task): HarnessNode => h.nodes.find((n) => n.name === nodeName.get(t.nodeId)) as HarnessNode;
const sandbox = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;

async function running(service: string, n: number, timeoutMs = 60_000): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, timeoutMs, 200);
}

async function leader(): Promise<HarnessManager> {
  const name = await until(async () => (await managers()).find((m) => m.leader)?.name, 'a leader', 30_000, 100);
  return byName(name);
}

/** `dig +short` in a task's sandbox (through its 127.0.0.11). */
async function dig(ns: string, name: string): Promise<string[]> {
  const r = await runInNetns(ns, ['dig', '@127.0.0.11', '+short', '+time=2', '+tries=1', name], { timeoutMs: 10_000 });
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith(';')).sort();
}

/** The nftables ruleset of a sandbox (the VIP and ingress balancers live there on this kernel). */
async function ruleset(ns: string): Promise<string> {
  return (await runInNetns(ns, ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 })).stdout;
}

async function metric(ns: string, name: string): Promise<string[]> {
  const r = await runInNetns(ns, ['curl', '-sf', '--max-time', '5', 'http://127.0.0.1:9323/metrics'], { timeoutMs: 10_000 });
  return r.stdout.split('\n').filter((l) => l.startsWith(name));
}

describe('several managers on etcd', () => {
  it('form one cluster: one identity and tokens, one leader, every manager reachable in node ls', async () => {
    const infos = await Promise.all(h.managers.map((m) => call<{ clusterId: string }>({ url: `unix://${join(m.dataDir, 'shoal.sock')}`, token: h.manager.token }, 'GET', '/v1/info')));
    expect(new Set(infos.map((i) => i.clusterId)).size).toBe(1);
    for (const f of ['join.token', 'manager.token']) {
      expect(new Set(h.managers.map((m) => readFileSync(join(m.dataDir, f), 'utf8'))).size, f).toBe(1);
    }
    const ms = await managers();
    expect(ms.map((m) => m.name)).toEqual(h.managers.map((m) => m.name).sort());
    expect(ms.filter((m) => m.leader)).toHaveLength(1);
    expect(ms.every((m) => m.reachable)).toBe(true);
    const table = (await h.shoal('node', 'ls')).out;
    expect(table).toMatch(/MANAGER STATUS/);
    expect(table.match(/Leader/g)).toHaveLength(1);
    expect(table.match(/Reachable/g)).toHaveLength(2);
    // Metrics: the leader says so, every manager times its etcd requests per member.
    const lead = await leader();
    for (const m of h.managers) {
      expect(await metric(m.netns, 'shoal_manager_leader ')).toEqual([`shoal_manager_leader ${m === lead ? 1 : 0}`]);
      const counts = await metric(m.netns, 'shoal_store_request_duration_seconds_count');
      expect(counts.some((l) => h.etcd?.endpoints.some((e) => l.includes(`endpoint="${e}"`)))).toBe(true);
    }
  });

  it('elects a new leader when the leader is killed; agents resume their watch elsewhere and no task restarts', async () => {
    expect((await h.shoal('service', 'create', '--name', 'before', '--replicas', '3', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
    const tasks = await running('before', 3);
    const pids = new Map(tasks.map((t) => [t.id, t.status.pid]));
    const old = await leader();
    const relists = h.nodes.map((n) => (n.agentProcess.output().match(/watch re-listed/g) ?? []).length);
    await old.stop('SIGKILL');
    const next = await until(async () => {
      const l = (await managers()).find((m) => m.leader);
      return l && l.name !== old.name ? l.name : undefined;
    }, 'a new leader', 30_000, 50);
    expect(next).not.toBe(old.name);
    // The new leader schedules.
    expect((await h.shoal('service', 'create', '--name', 'after', '--replicas', '2', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
    await running('after', 2);
    // Every agent is connected (to a live manager) and none re-listed: they resumed.
    await until(async () => (await h.json<Node[]>('node', 'ls')).every((n) => n.state === 'ready'), 'all nodes ready', 30_000, 200);
    h.nodes.forEach((n, i) => expect((n.agentProcess.output().match(/watch re-listed/g) ?? []).length, n.name).toBe(relists[i]));
    expect(h.nodes.some((n) => n.agentProcess.output().includes(`disconnected from manager ${old.url}`))).toBe(true);
    const now = await running('before', 3);
    expect(new Map(now.map((t) => [t.id, t.status.pid]))).toEqual(pids);
    // The old leader comes back as a follower.
    await old.start();
    await until(async () => (await managers()).find((m) => m.name === old.name)?.reachable, 'the old leader reachable again', 30_000, 100);
    expect((await managers()).filter((m) => m.leader).map((m) => m.name)).toEqual([next]);
  }, 180_000);

  it('never marks a node down under 30 s of full CPU load', async () => {
    const etcd = h.etcd;
    if (!etcd) throw new Error('no etcd');
    const from = JSON.parse((await etcd.etcdctl(['endpoint', 'status', '-w', 'json'])).stdout)[0].Status.header.revision as number;
    // A node write before the load: the history read below must show it (it is not empty by accident).
    expect((await h.shoal('node', 'update', '--label', 'load=begin', h.nodes[0]!.name)).code).toBe(0);
    // Busy loops (2 per core) in the first node's namespace, ended by their own pids.
    const loops: ChildProcess[] = [];
    const cores = Math.max(1, Number((await runInNetns(h.nodes[0]!.netns, ['nproc'])).stdout.trim()) || 2);
    try {
      for (let i = 0; i < 2 * cores; i++) {
        loops.push(spawn('nsenter', [`--net=/run/netns/${h.nodes[0]!.netns}`, '--', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
      }
      await new Promise((r) => setTimeout(r, 30_000));
    } finally {
      for (const l of loops) if (l.pid) { try { process.kill(l.pid, 'SIGKILL'); } catch { /* gone */ } }
    }
    // Every node write since: replayed from etcd's history by etcdctl.
    const r = await etcd.etcdctl(['watch', '--prefix', '/shoal/nodes/', `--rev=${from + 1}`, '-w', 'json'], { timeoutMs: 4000 });
    const states = r.stdout.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
      const resp = JSON.parse(l) as { Events?: Array<{ type?: number | string; kv: { value?: string } }> };
      // Puts only (a delete, type 1, has no value).
      return (resp.Events ?? []).filter((e) => !e.type).map((e) => (JSON.parse(Buffer.from(e.kv.value ?? '', 'base64').toString()) as Node).state);
    });
    expect(states.length).toBeGreaterThan(0);
    expect(states.filter((s) => s === 'down')).toEqual([]);
    // And no task of the loaded node was given up on.
    const t = await call<Task[]>(ep(), 'GET', `/v1/tasks?node=${h.nodes[0]!.name}`);
    expect(t.filter((x) => x.status.state === 'orphaned')).toEqual([]);
    expect((await h.json<Node[]>('node', 'ls')).map((n) => n.state)).toEqual(['ready', 'ready', 'ready']);
  }, 120_000);

  it('takes a dead node\'s tasks out of DNS and the load balancers of every other node', async () => {
    const c = await h.shoal('service', 'create', '--name', 'web', '--replicas', '3', '--network', 'ov', '-p', '8080:80', '--', 'sleep', '600');
    expect(c.code, c.err).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'probe', '--replicas', '3', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
    const web = await running('web', 3);
    const probes = await running('probe', 3);
    const victim = nodeOf(web[2] as Task);
    const dead = web.filter((t) => nodeOf(t) === victim);
    const deadIps = dead.flatMap((t) => Object.values(t.addresses).map((a) => a.v4));
    const survivors = probes.filter((t) => nodeOf(t) !== victim);
    expect(survivors.length).toBeGreaterThan(0);
    // Before: every probe elsewhere resolves and balances to the victim's replica.
    const rules0 = new Map<string, string>();
    for (const p of survivors) {
      await until(async () => { rules0.set(sandbox(p), await ruleset(sandbox(p))); return deadIps.some((ip) => balancedAddresses(rules0.get(sandbox(p)) ?? '').has(ip)); }, `${sandbox(p)} balancing to ${deadIps.join(' ')}`, 30_000, 200);
      await until(async () => (await dig(sandbox(p), 'tasks.web')).length === 3, `tasks.web from ${sandbox(p)}`, 30_000, 200);
    }
    // The other nodes take no new task, so the replica's replacement stays pending and
    // cannot come back on the dead replica's address: what must change is only its leaving.
    const others = h.nodes.filter((n) => n !== victim);
    for (const n of others) expect((await h.shoal('node', 'update', '--availability', 'pause', n.name)).code).toBe(0);
    await victim.kill();
    // After: gone from every other node's DNS and from every sandbox's rules (VIPs, ingress).
    let why = '';
    try {
      await until(async () => {
        for (const p of survivors) {
          const answers = await dig(sandbox(p), 'tasks.web');
          if (answers.length !== 2 || answers.some((a) => deadIps.includes(a))) { why = `${sandbox(p)} resolves tasks.web to ${answers.join(' ')}`; return false; }
        }
        for (const n of others) {
          const sboxes = (await runInNetns(n.netns, ['ip', 'netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((x) => x.startsWith(`${n.netns}-`));
          for (const s of sboxes) {
            const balanced = balancedAddresses(await ruleset(s));
            const left = deadIps.filter((ip) => balanced.has(ip));
            if (left.length) { why = `${s} still balances to ${left.join(' ')}`; return false; }
          }
        }
        return true;
      }, 'the dead node\'s replica gone from DNS and the balancers of every other node', 30_000, 100);
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${why}`, { cause: e });
      const node = (await h.json<Node[]>('node', 'ls')).find((n) => n.name === victim.name);
      expect(node?.state).toBe('down');
    } finally {
      await victim.revive();
      await victim.startAgent();
      for (const n of others) await h.shoal('node', 'update', '--availability', 'active', n.name);
    }
  }, 180_000);

  it('answers 503 Unavailable while etcd has no quorum, keeps every agent\'s dataplane, and resumes after', async () => {
    const etcd = h.etcd;
    if (!etcd) throw new Error('no etcd');
    await until(async () => (await h.json<Node[]>('node', 'ls')).every((n) => n.state === 'ready'), 'all nodes ready', 30_000, 200);
    const web = await running('web', 3);
    const sboxes = web.map(sandbox);
    // What each sandbox balances: the VIP dispatch entries and the backends they lead to
    // (leftover maps and counters, which a resync may collect any time, aside).
    const dataplane = async (): Promise<string[]> => Promise.all(sboxes.map(async (sb) => {
      const rules = await ruleset(sb);
      const vips = (/map vip4 \{[\s\S]*?elements = \{([^}]*)\}/.exec(rules)?.[1] ?? '').replace(/goto s_[0-9a-f]+/g, '').replace(/\s+/g, ' ').trim();
      return `${vips} -> ${[...balancedAddresses(rules)].sort().join(' ')}`;
    }));
    // Settled first (the previous test's replica moves may still be programming).
    let before = await dataplane();
    await until(async () => {
      await new Promise((r) => setTimeout(r, 1500));
      const now = await dataplane();
      const same = JSON.stringify(now) === JSON.stringify(before);
      before = now;
      return same;
    }, 'the dataplane settled', 30_000, 0);
    const [a, b] = etcd.members;
    await a!.kill('SIGKILL');
    await b!.kill('SIGKILL');
    try {
      // A real HTTP client from outside the cluster, at a manager's TCP API.
      const r = await until(async () => {
        const res = await h.client.exec(['curl', '-s', '--max-time', '15', '--cacert', join(h.manager.dataDir, 'ca.pem'), '-H', `Authorization: Bearer ${h.manager.token}`, `${h.manager.url}/v1/services`], { timeoutMs: 20_000 });
        return res.stdout.includes('STORE_UNAVAILABLE') ? res : undefined;
      }, 'a 503 from the API', 30_000, 200);
      const body = JSON.parse(r.stdout) as { code: string; message: string };
      expect(body.code).toBe('SHOAL_ERR_STORE_UNAVAILABLE');
      expect(body.message).toMatch(/cluster store \(etcd at .*\) is unavailable/);
      const status = await h.client.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '15', '--cacert', join(h.manager.dataDir, 'ca.pem'), '-H', `Authorization: Bearer ${h.manager.token}`, `${h.manager.url}/v1/nodes`], { timeoutMs: 20_000 });
      expect(status.stdout).toBe('503');
      const cli = await h.shoal('service', 'ls');
      expect(cli.code).toBe(1);
      expect(cli.err).toMatch(/unavailable/);
      // Held for longer than the node TTL: nothing on the nodes moves.
      await new Promise((r2) => setTimeout(r2, 4000));
      expect(await dataplane()).toEqual(before);
      for (const t of web) expect((await runInNetns(nodeOf(t).netns, ['kill', '-0', String(t.status.pid)])).code).toBe(0);
      // A task that dies meanwhile is restarted by its agent, whose reports wait for the store.
      await runInNetns(nodeOf(web[0]!).netns, ['kill', '-9', String(web[0]!.status.pid)]);
      await until(async () => {
        const pids = (await runInNetns(h.nodes[0]!.netns, ['ip', 'netns', 'pids', sandbox(web[0]!)])).stdout.split('\n').filter(Boolean);
        return pids.length > 0 && !pids.includes(String(web[0]!.status.pid));
      }, 'the agent restarting the task while etcd has no quorum', 30_000, 100);
      // Its reports (failed, then running) reach a manager that cannot write them now, for
      // longer than one store request's deadline (5 s).
      await new Promise((r2) => setTimeout(r2, 7000));
    } finally {
      a!.start();
      b!.start();
    }
    await etcd.waitHealthy();
    await until(async () => (await h.shoal('service', 'create', '--name', 'healed', '--network', 'ov', '--', 'sleep', '600')).code === 0, 'a write after recovery', 60_000, 500);
    await running('healed', 1);
    expect((await h.json<Node[]>('node', 'ls')).map((n) => n.state)).toEqual(['ready', 'ready', 'ready']);
    await until(async () => {
      const t = (await h.json<Task[]>('service', 'ps', 'web')).find((x) => x.id === web[0]!.id);
      return t?.status.state === 'running' && t.status.pid !== web[0]!.status.pid;
    }, 'the restarted task\'s status, reported while etcd had no quorum, in the store', 30_000, 200);
    const after = await running('web', 3);
    expect(after.map((t) => t.id).sort()).toEqual(web.map((t) => t.id).sort());
    for (const n of h.nodes) expect(await metric(n.netns, 'shoal_agent_connected ')).toEqual(['shoal_agent_connected 1']);
  }, 180_000);
});
