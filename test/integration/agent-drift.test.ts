/**
 * The agent as a reconciler (issue 11), on a real 2-node harness (nftables dataplane, resync
 * every second): kernel state broken behind the agent's back is found by the periodic resync
 * and put back, traffic works again within a few resync intervals, and
 * `shoal_agent_repairs_total{kind}` counted it. Each case breaks one thing with the real tool
 * an operator would use (`nft flush ruleset`, `ip link del`, `ip route del`, `sysctl -w`,
 * `bridge fdb flush`, `ip neigh flush`, `ip netns del`).
 *
 * Also: a VIP answers on a port no `-p` declared (every port of a vip service), and one bad
 * object (a service on a macvlan network whose parent does not exist) never blocks the others:
 * its tasks say why in `service ps`, every other task still starts, serves and stops.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driverNames } from '../../src/drivers/index.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const subnet = `192.168.${100 + Math.floor(Math.random() * 150)}.0/24`;
const REPAIR_MS = 15_000;

let h: Harness;
const nodeName = new Map<string, string>();
let app: Network;
let probe: Task;
let web: Task[];

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (e, stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out: stdout, err: stderr });
    });
  });
}

const nsOf = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;
const nodeOf = (t: Task): HarnessNode => h.nodes.find((n) => n.name === nodeName.get(t.nodeId)) as HarnessNode;

async function running(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, 30_000);
}

/** Replica names answering `n` fresh connections from inside `from`'s sandbox to `url`. */
async function fromTask(from: Task, url: string, n = 6): Promise<Set<string>> {
  const r = await run('ip', ['netns', 'exec', nsOf(from), 'curl', '-sS', '-m', '2', '-H', 'Connection: close', ...Array<string>(n).fill(url)]);
  const names = r.out.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);
  if (names.length !== n) throw new Error(`curl ${url} from ${from.serviceName}: ${names.length}/${n} answers (exit ${r.code}): ${r.err.trim()}`);
  return new Set(names);
}

/** One request from the client outside the cluster to a node's published port. */
async function fromOutside(node: HarnessNode, port: number): Promise<string> {
  const r = await h.client.exec(['curl', '-sS', '-m', '2', `http://${node.address}:${port}/`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`curl ${node.address}:${port}: exit ${r.code} ${r.stderr.trim()}`);
  return r.stdout.split(' ')[0] ?? '';
}

/** `shoal_agent_repairs_total` of one node's agent, by kind. */
async function repairs(node: HarnessNode): Promise<Record<string, number>> {
  const r = await node.exec(['curl', '-sS', '-m', '2', 'http://127.0.0.1:9323/metrics'], { timeoutMs: 10_000 });
  const out: Record<string, number> = {};
  for (const m of r.stdout.matchAll(/^shoal_agent_repairs_total\{kind="([^"]+)"\} (\d+)/gm)) out[m[1] as string] = Number(m[2]);
  return out;
}

/** Waits until `works` passes and `node` counted a new repair of `kind` (beyond `before`). */
async function repaired(node: HarnessNode, kind: string, before: Record<string, number>, works: () => Promise<unknown>): Promise<void> {
  try {
    await until(async () => {
      await works();
      const now = await repairs(node);
      return (now[kind] ?? 0) > (before[kind] ?? 0) ? true : undefined;
    }, `traffic back and a '${kind}' repair counted on ${node.name}`, REPAIR_MS, 250);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nrepairs now: ${JSON.stringify(await repairs(node))}\n${h.logs()}`, { cause: e });
  }
}

const allReplicas = async (): Promise<void> => {
  const seen = await fromTask(probe, 'http://web/');
  if (seen.size !== web.length) throw new Error(`reached ${[...seen].join(',')} of ${web.length} replicas`);
};

beforeAll(async () => {
  h = await startHarness({ nodes: 2, underlaySubnet: subnet, agentArgs: ['--lb-dataplane', 'nftables', '--resync-interval', '1s'] });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  expect((await h.shoal('network', 'create', '--subnet', '10.74.0.0/24', 'app')).code).toBe(0);
  // web publishes 8086 -> 80 and also serves 81, which nothing declares.
  let c = await h.shoal('service', 'create', '--name', 'web', '--replicas', '2', '--network', 'app', '-p', '8086:80', '-e', 'PORT=80', '--', process.execPath, BACKEND);
  expect(c.code, c.err).toBe(0);
  c = await h.shoal('service', 'create', '--name', 'api', '--replicas', '2', '--network', 'app', '-e', 'PORT=81', '--', process.execPath, BACKEND);
  expect(c.code, c.err).toBe(0);
  c = await h.shoal('service', 'create', '--name', 'probe', '--network', 'app', '--', 'sleep', '600');
  expect(c.code, c.err).toBe(0);
  web = await running('web', 2);
  await running('api', 2);
  [probe] = await running('probe', 1) as [Task];
  app = (await h.json<Network[]>('network', 'inspect', 'app'))[0] as Network;
  expect(new Set(web.map((t) => t.nodeId)).size).toBe(2); // one replica on each node: the overlay is on the path
  await until(async () => { await allReplicas(); return true; }, 'both web replicas through the VIP', 20_000, 250);
}, 120_000);

afterAll(async () => {
  await destroyAllHarnesses();
}, 120_000);

describe('VIPs on every port', () => {
  it('a service with no -p is reached by name on the port its tasks listen on, and exposes nothing outside', async () => {
    const seen = await until(async () => {
      const s = await fromTask(probe, 'http://api:81/');
      return s.size === 2 ? s : undefined;
    }, 'both api replicas through its VIP on port 81', 20_000, 250);
    expect([...seen].every((n) => n.startsWith('api.'))).toBe(true);
    const svc = (await h.json<Service[]>('service', 'inspect', 'api'))[0] as Service;
    expect(svc.spec.ports).toEqual([]);
    for (const n of h.nodes) {
      const r = await h.client.exec(['curl', '-sS', '-m', '2', `http://${n.address}:81/`], { timeoutMs: 10_000 });
      expect(r.code, `${n.name}:81 must not answer from outside`).not.toBe(0);
    }
  });
});

describe('drift repair (periodic resync re-reads the kernel)', () => {
  it('nft flush ruleset in a task sandbox: VIP and 127.0.0.11 come back', async () => {
    const node = nodeOf(probe);
    const before = await repairs(node);
    expect((await run('ip', ['netns', 'exec', nsOf(probe), 'nft', 'flush', 'ruleset'])).code).toBe(0);
    expect((await run('ip', ['netns', 'exec', nsOf(probe), 'nft', 'list', 'ruleset'])).out.trim()).toBe('');
    await repaired(node, 'lb-nftables', before, allReplicas);
    expect((await repairs(node))['sandbox'] ?? 0).toBeGreaterThan(before['sandbox'] ?? 0); // the DNS redirect table
  });

  it('nft flush ruleset in the node namespace: NAT and published ports come back', async () => {
    const node = h.nodes[0] as HarnessNode;
    const before = await repairs(node);
    expect((await node.exec(['nft', 'flush', 'ruleset'])).code).toBe(0);
    await repaired(node, 'ingress-host', before, () => fromOutside(node, 8086));
    expect((await repairs(node))['network'] ?? 0).toBeGreaterThan(before['network'] ?? 0); // the drivers' NAT table
  });

  it('ip link del of a task\'s veth: the endpoint is made again', async () => {
    const node = nodeOf(probe);
    const before = await repairs(node);
    const veth = driverNames.vethHostName(node.linkPrefix(), app.id, probe.id);
    expect((await node.exec(['ip', 'link', 'del', veth])).code).toBe(0);
    await expect(fromTask(probe, 'http://web/', 1)).rejects.toThrow();
    await repaired(node, 'sandbox', before, allReplicas);
  });

  it('ip route del default in a task sandbox, ip_forward=0 in the ingress sandbox: both put back', async () => {
    const node = nodeOf(probe);
    const before = await repairs(node);
    expect((await run('ip', ['-n', nsOf(probe), 'route', 'del', 'default'])).code).toBe(0);
    const sbox = `${node.name}-ingress-sbox`;
    expect((await run('ip', ['netns', 'exec', sbox, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])).code).toBe(0);
    await repaired(node, 'sandbox', before, async () => {
      const r = await run('ip', ['-n', nsOf(probe), 'route', 'show', 'default']);
      if (!r.out.includes(`via ${app.ipam.v4.gateway}`)) throw new Error(`default route: '${r.out.trim()}'`);
    });
    await repaired(node, 'ingress-sandbox', before, async () => {
      const r = await run('ip', ['netns', 'exec', sbox, 'sysctl', '-n', 'net.ipv4.ip_forward']);
      if (r.out.trim() !== '1') throw new Error(`ip_forward ${r.out.trim()}`);
      await fromOutside(node, 8086);
    });
  });

  it('bridge fdb flush and ip neigh flush on the overlay: remote peers come back', async () => {
    const node = nodeOf(probe);
    const vx = driverNames.vxlanName(node.linkPrefix(), app.id);
    const fdb = async (): Promise<number> => (await node.exec(['bridge', 'fdb', 'show', 'dev', vx])).stdout.split('\n').filter((l) => l.includes(' dst ')).length;
    expect(await fdb()).toBeGreaterThan(0);
    const before = await repairs(node);
    expect((await node.exec(['bridge', 'fdb', 'flush', 'dev', vx, 'self', 'permanent'])).code).toBe(0);
    expect((await node.exec(['ip', 'neigh', 'flush', 'dev', vx, 'nud', 'permanent'])).code).toBe(0);
    expect(await fdb()).toBe(0);
    await repaired(node, 'overlay-peers', before, allReplicas);
    expect(await fdb()).toBeGreaterThan(0);
  });

  it('ip netns del of the ingress sandbox: published ports through that node come back', async () => {
    const node = h.nodes[1] as HarnessNode;
    const before = await repairs(node);
    expect((await run('ip', ['netns', 'del', `${node.name}-ingress-sbox`])).code).toBe(0);
    await repaired(node, 'ingress-sandbox', before, async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add(await fromOutside(node, 8086));
      if (seen.size !== 2) throw new Error(`published port reached ${[...seen].join(',')}`);
    });
  });
});

describe('failure isolation', () => {
  it('a service whose sandboxes cannot be made says why; every other task starts, serves and stops', async () => {
    expect((await h.shoal('network', 'create', '-d', 'macvlan', '-o', 'parent=nosuchdev0', '--subnet', '10.75.0.0/24', 'broken')).code).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'bad', '--replicas', '2', '--network', 'broken', '--', 'sleep', '600')).code).toBe(0);
    const bad = await until(async () => {
      const ts = await h.json<Task[]>('service', 'ps', 'bad');
      return ts.length === 2 && ts.every((t) => /setup failed.*nosuchdev0|nosuchdev0/.test(t.status.message)) ? ts : undefined;
    }, 'both bad tasks report why they cannot start', 20_000, 250);
    expect(bad.every((t) => t.status.state !== 'running')).toBe(true);
    // Others still start (a new service), serve (the VIP), and stop (scale down) meanwhile.
    expect((await h.shoal('service', 'create', '--name', 'later', '--replicas', '2', '--network', 'app', '--', 'sleep', '600')).code).toBe(0);
    await running('later', 2);
    await allReplicas();
    expect((await h.shoal('service', 'scale', 'later=1')).code).toBe(0);
    await until(async () => ((await h.json<Task[]>('service', 'ps', 'later')).filter((t) => t.status.state === 'shutdown').length === 1 ? true : undefined), 'later scaled down', 20_000);
    const ps = await h.shoal('service', 'ps', 'bad');
    expect(ps.out).toMatch(/nosuchdev0/);
    for (const n of h.nodes) {
      const r = await n.exec(['curl', '-sS', '-m', '2', 'http://127.0.0.1:9323/metrics'], { timeoutMs: 10_000 });
      expect(r.stdout).toMatch(/shoal_agent_reconcile_failures_total\{reconciler="(networks|tasks)"\} [1-9]/);
    }
    expect((await h.shoal('service', 'rm', 'bad')).code).toBe(0);
  });
});
