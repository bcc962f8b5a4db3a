/**
 * The driver core end to end, on a 3-node harness (nodes are namespaces on an underlay
 * bridge, each running a real `shoal agent`): tasks in their own namespaces on overlay, bridge
 * and macvlan networks; VXLAN peers programmed as tasks come and go; egress NAT; isolation
 * between bridge networks; a TCP connection that survives kill -9 of the agents.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driverNames, macFromIPv4 } from '../../src/drivers/index.js';
import type { Network, Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';
import { leftovers } from '../helpers/netns.js';

let h: Harness;
const spawned: ChildProcess[] = [];

/** A task: a TCP server on :7000 that greets with its task name and echoes what it gets. */
const SERVER = `require('node:net').createServer((c) => { c.write(process.env.SHOAL_TASK_NAME + '\\n'); c.on('data', (d) => c.write(d)); }).listen(7000);`;
/** Connects to host:port and prints the greeting (first line). */
const GREET = `
const [host, port] = process.argv.slice(1);
const c = require('node:net').connect({ host, port: Number(port), timeout: 1500 });
let got = '';
c.on('data', (d) => { got += d; if (got.includes('\\n')) { process.stdout.write(got.split('\\n')[0]); c.destroy(); } });
c.on('timeout', () => { console.error('timeout'); process.exit(2); });
c.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
`;

function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : 1) : 0;
      resolve({ code, out, err });
    });
  });
}

const nodeName = new Map<string, string>();
async function nodeNames(): Promise<void> {
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
}
const taskNs = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;
const greetFrom = (t: Task, host: string, port = 7000) => run('ip', ['netns', 'exec', taskNs(t), process.execPath, '-e', GREET, host, String(port)]);

async function running(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, 30_000);
}

/** The link prefix of the agent of the harness node named `node`. */
const prefixOf = (node: string): string => (h.nodes.find((n) => n.name === node) as HarnessNode).linkPrefix();

async function network(name: string): Promise<Network> {
  return (await h.json<Network[]>('network', 'inspect', name))[0] as Network;
}

async function vxStats(node: string, net: Network): Promise<{ rx: number; tx: number }> {
  const r = await run('ip', ['-n', node, '-s', '-j', 'link', 'show', driverNames.vxlanName(prefixOf(node), net.id)]);
  const s = (JSON.parse(r.out) as Array<{ stats64: { rx: { packets: number }; tx: { packets: number } } }>)[0]?.stats64;
  return { rx: s?.rx.packets ?? 0, tx: s?.tx.packets ?? 0 };
}

async function fdbMacs(node: string, net: Network): Promise<string[]> {
  const r = await run('bridge', ['-n', node, '-j', 'fdb', 'show', 'dev', driverNames.vxlanName(prefixOf(node), net.id)]);
  return (JSON.parse(r.out || '[]') as Array<{ mac: string; dst?: string }>).filter((e) => e.dst).map((e) => e.mac);
}

beforeAll(async () => {
  h = await startHarness({ nodes: 3, nodeTtlSeconds: 3 });
  await nodeNames();
}, 120_000);

afterAll(async () => {
  for (const c of spawned) c.kill('SIGKILL');
  const prefix = h?.prefix;
  await destroyAllHarnesses();
  // Nothing with the suite's prefix may outlive it: namespaces (nodes, tasks) and links.
  if (prefix) expect(await leftovers(prefix)).toEqual({ netns: [], links: [] });
}, 120_000);

describe('overlay network across three nodes', () => {
  it('tasks on three nodes reach each other over VXLAN; FDB entries follow the tasks', async () => {
    expect((await h.shoal('network', 'create', '-d', 'overlay', '--subnet', '10.60.0.0/24', 'ov')).code).toBe(0);
    // Not about draining: a stopping task may keep its connections at most 1 s (default 10 s).
    const c = await h.shoal('service', 'create', '--name', 'echo', '--replicas', '3', '--network', 'ov', '--drain-timeout', '1000', '--', process.execPath, '-e', SERVER);
    expect(c.code, c.err).toBe(0);
    const ts = await running('echo', 3);
    expect(new Set(ts.map((t) => t.nodeId)).size).toBe(3);
    const ov = await network('ov');
    const first = h.nodes[0]?.name as string;
    const before = await vxStats(first, ov);
    for (const a of ts) {
      for (const b of ts) {
        if (a === b) continue;
        const ip = b.addresses[ov.id]?.v4 as string;
        const r = await until(async () => { const x = await greetFrom(a, ip); return x.code === 0 ? x : undefined; }, `${a.id} -> ${b.id} over the overlay`, 15_000);
        expect(r.out).toBe(`echo.${b.slot}.${b.id}`);
      }
    }
    const after = await vxStats(first, ov);
    expect(after.tx).toBeGreaterThan(before.tx);
    expect(after.rx).toBeGreaterThan(before.rx);
    // Node 1 knows where the two remote tasks are, and nothing else.
    const onFirst = ts.find((t) => nodeName.get(t.nodeId) === first) as Task;
    const remoteMacs = ts.filter((t) => t !== onFirst).map((t) => macFromIPv4(t.addresses[ov.id]?.v4 as string)).sort();
    expect((await fdbMacs(first, ov)).sort()).toEqual(remoteMacs);
    // Scale to 1: where the last task runs, the entries of the stopped remote tasks disappear;
    // nodes left without a task on the network remove the network (its VXLAN device) entirely.
    expect((await h.shoal('service', 'scale', 'echo=1')).code).toBe(0);
    const [left] = await running('echo', 1);
    const leftNode = nodeName.get(left?.nodeId ?? '') as string;
    await until(async () => (await fdbMacs(leftNode, ov)).length === 0, 'FDB entries of stopped tasks removed', 15_000);
    for (const n of h.nodes.filter((x) => x.name !== leftNode)) {
      await until(async () => (await run('ip', ['-n', n.name, 'link', 'show', driverNames.vxlanName(prefixOf(n.name), ov.id)])).code !== 0, `network removed from ${n.name}`, 15_000);
    }
  });
});

describe('egress NAT', () => {
  it('a task reaches an address outside its network, seen as its node', async () => {
    const listener = spawn('ip', ['netns', 'exec', h.client.netns, process.execPath, '-e',
      `require('node:net').createServer((c) => c.end(c.remoteAddress.replace('::ffff:', '') + '\\n')).listen(9100, () => console.log('up'))`]);
    spawned.push(listener);
    await new Promise((r) => listener.stdout?.once('data', r));
    const [t] = await running('echo', 1);
    const r = await until(async () => { const x = await greetFrom(t as Task, h.client.address, 9100); return x.code === 0 ? x : undefined; }, 'task -> outside listener', 10_000);
    const node = h.nodes.find((n) => n.name === nodeName.get(t?.nodeId ?? ''));
    expect(r.out).toBe(node?.address);
    listener.kill('SIGKILL');
  });
});

describe('bridge networks on one node', () => {
  it('two tasks on one bridge network talk; a task on another bridge network cannot', async () => {
    // Everything on node 1: drain the others.
    for (const n of h.nodes.slice(1)) expect((await h.shoal('node', 'update', '--availability', 'drain', n.name)).code).toBe(0);
    for (const net of ['b1', 'b2']) expect((await h.shoal('network', 'create', '-d', 'bridge', net)).code).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'bsrv', '--network', 'b1', '--', process.execPath, '-e', SERVER)).code).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'bcli', '--network', 'b1', '--', 'sleep', '600')).code).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'bother', '--network', 'b2', '--', 'sleep', '600')).code).toBe(0);
    const [srv] = await running('bsrv', 1);
    const [cli] = await running('bcli', 1);
    const [other] = await running('bother', 1);
    const b1 = await network('b1');
    const ip = srv?.addresses[b1.id]?.v4 as string;
    const ok = await until(async () => { const x = await greetFrom(cli as Task, ip); return x.code === 0 ? x : undefined; }, 'bcli -> bsrv on b1', 10_000);
    expect(ok.out).toBe(`bsrv.1.${srv?.id}`);
    const refused = await greetFrom(other as Task, ip);
    expect(refused.code).not.toBe(0);
    for (const n of h.nodes.slice(1)) expect((await h.shoal('node', 'update', '--availability', 'active', n.name)).code).toBe(0);
  });
});

describe('macvlan', () => {
  it('a task is reachable on the parent interface\'s LAN from another namespace on it', async () => {
    for (const n of h.nodes.slice(1)) expect((await h.shoal('node', 'update', '--availability', 'drain', n.name)).code).toBe(0);
    // The underlay is the LAN: the task takes an address in its upper half, where the client
    // also gets one (.254, the network's gateway, so IPAM never hands it out).
    const lan = h.subnet.replace(/\.0\/24$/, '.128/25');
    const gw = h.subnet.replace(/\.0\/24$/, '.254');
    expect((await run('ip', ['-n', h.client.netns, 'addr', 'add', `${gw}/25`, 'dev', 'eth0'])).code).toBe(0);
    const c = await h.shoal('network', 'create', '-d', 'macvlan', '--subnet', lan, '--gateway', gw, '-o', 'parent=eth0', 'lan');
    expect(c.code, c.err).toBe(0);
    expect((await h.shoal('service', 'create', '--name', 'mv', '--network', 'lan', '--', process.execPath, '-e', SERVER)).code).toBe(0);
    const [t] = await running('mv', 1);
    const lanNet = await network('lan');
    const ip = t?.addresses[lanNet.id]?.v4 as string;
    const r = await until(async () => {
      const x = await run('ip', ['netns', 'exec', h.client.netns, process.execPath, '-e', GREET, ip, '7000']);
      return x.code === 0 ? x : undefined;
    }, 'client -> macvlan task', 10_000);
    expect(r.out).toBe(`mv.1.${t?.id}`);
    for (const n of h.nodes.slice(1)) expect((await h.shoal('node', 'update', '--availability', 'active', n.name)).code).toBe(0);
  });
});

describe('agent restart', () => {
  it('an established TCP connection between two tasks survives kill -9 of the agents', async () => {
    expect((await h.shoal('service', 'scale', 'echo=2')).code).toBe(0);
    const [a, b] = await running('echo', 2);
    const ov = await network('ov');
    const ip = b?.addresses[ov.id]?.v4 as string;
    // A long-lived client in task a: sends each stdin line, prints each reply line.
    const client = spawn('ip', ['netns', 'exec', taskNs(a as Task), process.execPath, '-e', `
      const c = require('node:net').connect(7000, ${JSON.stringify(ip)});
      c.setEncoding('utf8'); c.on('data', (d) => process.stdout.write(d));
      process.stdin.setEncoding('utf8'); process.stdin.on('data', (l) => c.write(l));
      c.on('close', () => { console.log('CLOSED'); process.exit(3); });`]);
    spawned.push(client);
    let out = '';
    client.stdout?.setEncoding('utf8');
    client.stdout?.on('data', (d: string) => { out += d; });
    await until(() => out.includes(`echo.${b?.slot}.${b?.id}`), 'connected to task b');
    client.stdin?.write('before\n');
    await until(() => out.includes('before'), 'echo before the restart');
    for (const n of h.nodes) if (nodeName.get(a?.nodeId ?? '') === n.name || nodeName.get(b?.nodeId ?? '') === n.name) {
      await n.stopAgent('SIGKILL');
      await n.startAgent();
    }
    // Give the restarted agents a reconcile pass, then use the same connection.
    await until(async () => (await h.json<Task[]>('service', 'ps', 'echo')).filter((t) => /adopted/.test(t.status.message)).length === 2, 'tasks adopted', 20_000);
    client.stdin?.write('after\n');
    await until(() => out.includes('after'), 'echo after the restart');
    expect(out).not.toMatch(/CLOSED/);
    client.kill('SIGKILL');
  });
});
