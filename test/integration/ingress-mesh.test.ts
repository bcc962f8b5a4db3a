/**
 * The ingress routing mesh end to end on a 3-node harness (nftables dataplane on this kernel):
 * a client namespace outside the cluster reaches published ports on every node's address,
 * including nodes without a replica; cluster policy balances over the ingress overlay to every
 * healthy replica (masqueraded by the receiving node's ingress sandbox), `local` policy and
 * host mode go straight to the receiving node's own replica and keep the client's address;
 * UDP works on every node; a replica that fails its health check gets nothing; scaling up adds
 * replicas everywhere; port conflicts are refused; removing a service closes its port on every
 * node; an agent restart keeps an established connection through the mesh.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('../fixtures/lb-client.mjs', import.meta.url));
const subnet = `192.168.${100 + Math.floor(Math.random() * 150)}.0/24`;
const sickDir = mkdtempSync(join(tmpdir(), 'shoal-ingress-sick-'));

let h: Harness;
const nodeById = new Map<string, Node>();
const children: ChildProcess[] = [];

const HEALTH = ['--health-type', 'http', '--health-port', '80', '--health-path', '/health', '--health-interval', '200', '--health-retries', '2', '--health-timeout', '500'];
const nameOf = (answer: string): string => answer.split(' ')[0] ?? '';
const taskName = (t: Task): string => `${t.serviceName}.${t.slot}.${t.id}`;
const harnessNode = (t: Task): HarnessNode => h.nodes.find((n) => n.name === nodeById.get(t.nodeId)?.name) as HarnessNode;

async function serving(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running' && t.status.healthy !== false);
    return ts.length === n ? ts : undefined;
  }, `${n} serving tasks of ${service}`, 30_000);
}

/** The client fixture, run from the client namespace outside the cluster. */
async function fromOutside<T>(...args: string[]): Promise<T> {
  const r = await h.client.exec([process.execPath, CLIENT, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`client ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as T;
}

async function create(...args: string[]): Promise<void> {
  const r = await h.shoal('service', 'create', ...args);
  expect(r.code, r.err).toBe(0);
}

beforeAll(async () => {
  h = await startHarness({ nodes: 3, underlaySubnet: subnet, agentArgs: ['--lb-dataplane', 'nftables', '--resync-interval', '5s'] });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeById.set(n.id, n);
  expect((await h.shoal('network', 'create', '--subnet', '10.72.0.0/24', 'app')).code).toBe(0);
  await create('--name', 'web', '--replicas', '6', '--network', 'app', '-p', '8080:80', ...HEALTH, '-e', 'PORT=80', '-e', `SICK_DIR=${sickDir}`, '--', process.execPath, BACKEND);
  await create('--name', 'echo', '--replicas', '2', '--network', 'app', '-p', '5300:5300/udp', '-e', 'PORT=81', '-e', 'UDP_PORT=5300', '--', process.execPath, BACKEND);
  await serving('web', 6);
  await serving('echo', 2);
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.pid) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  await destroyAllHarnesses();
  rmSync(sickDir, { recursive: true, force: true });
}, 120_000);

describe('ingress routing mesh (nftables)', () => {
  it('the cluster has an ingress overlay network and every node an ingress sandbox on it', async () => {
    const nets = await h.json<Array<{ name: string; ingress?: boolean; driver: string; id: string }>>('network', 'ls');
    const ingress = nets.find((n) => n.name === 'ingress');
    expect(ingress?.ingress).toBe(true);
    expect(ingress?.driver).toBe('overlay');
    const nodes = await h.json<Node[]>('node', 'ls');
    expect(nodes.every((n) => n.ingress?.network === ingress?.id)).toBe(true);
    for (const n of h.nodes) {
      const addr = nodes.find((x) => x.name === n.name)?.ingress?.v4 as string;
      const r = await n.exec(['ip', '-n', `${n.netns}-ingress-sbox`, '-4', '-o', 'addr', 'show']);
      expect(r.stdout).toContain(`inet ${addr}/`);
    }
  });

  it('300 requests over the three nodes\' published port reach every replica; each node answers', async () => {
    const web = await serving('web', 6);
    const perNode = await Promise.all(h.nodes.map((n) => fromOutside<string[]>('http', n.address, '8080', '100')));
    for (const answers of perNode) expect(answers.filter((a) => a.startsWith('error'))).toEqual([]);
    const seen = new Set(perNode.flat().map(nameOf));
    expect([...seen].sort()).toEqual(web.map(taskName).sort());
    // Cluster policy: the replica sees the receiving node's ingress sandbox (masquerade).
    const sboxes = new Set([...nodeById.values()].map((n) => n.ingress?.v4));
    for (const a of perNode.flat()) expect(sboxes.has(a.split(' ')[1])).toBe(true);
  });

  it('the UDP service answers on every node', async () => {
    for (const n of h.nodes) {
      const answers = await fromOutside<string[]>('udp', n.address, '5300', '6', '0');
      expect(answers.filter((a) => a === 'timeout')).toEqual([]);
      expect(answers.every((a) => a.startsWith('echo.'))).toBe(true);
    }
  });

  it('cluster mode answers on nodes with no replica', async () => {
    await create('--name', 'solo', '--network', 'app', '-p', '8090:80', ...HEALTH, '-e', 'PORT=80', '--', process.execPath, BACKEND);
    const [solo] = await serving('solo', 1) as [Task];
    for (const n of h.nodes) {
      const answers = await until(async () => {
        const a = await fromOutside<string[]>('http', n.address, '8090', '5');
        return a.every((x) => nameOf(x) === taskName(solo)) ? a : undefined;
      }, `solo through ${n.name}`, 10_000, 100);
      expect(answers).toHaveLength(5);
    }
    expect(h.nodes.filter((n) => n !== harnessNode(solo)).length).toBe(2);
    // Removing it closes the port on every node (no rule left behind: connection refused).
    expect((await h.shoal('service', 'rm', 'solo')).code).toBe(0);
    for (const n of h.nodes) {
      await until(async () => (await fromOutside<string[]>('http', n.address, '8090', '1'))[0]?.startsWith('error ECONNREFUSED'), `8090 closed on ${n.name}`, 10_000, 100);
      const nft = await n.exec(['nft', 'list', 'ruleset']);
      expect(nft.stdout).not.toMatch(/\b8090\b/);
    }
  });

  it('published ports answer on every local address of a node: a second address from outside; 127.0.0.1, localhost and the second address from the node itself', async () => {
    const web = await serving('web', 6);
    const node = h.nodes[0] as HarnessNode;
    const second = node.address.replace(/\.\d+$/, '.111');
    expect((await node.exec(['ip', 'addr', 'add', `${second}/24`, 'dev', 'eth0'])).code).toBe(0);
    try {
      const names = new Set(web.map(taskName));
      const outside = await fromOutside<string[]>('http', second, '8080', '12');
      expect(outside.filter((a) => !names.has(nameOf(a)))).toEqual([]);
      for (const addr of ['127.0.0.1', second]) {
        const r = await node.exec([process.execPath, CLIENT, 'http', addr, '8080', '12'], { timeoutMs: 30_000 });
        const answers = JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as string[];
        expect({ addr, bad: answers.filter((a) => !names.has(nameOf(a))) }).toEqual({ addr, bad: [] });
      }
      const curl = await node.exec(['curl', '-sS', '--max-time', '5', 'http://localhost:8080/']);
      expect(names.has(nameOf(curl.stdout.trim()))).toBe(true);
    } finally {
      await node.exec(['ip', 'addr', 'del', `${second}/24`, 'dev', 'eth0']);
    }
  });

  it('route_localnet is on for 127.0.0.1, and its guard keeps neighbours away from the node\'s loopback services', async () => {
    const node = h.nodes[1] as HarnessNode;
    expect((await node.exec(['sysctl', '-n', 'net.ipv4.conf.all.route_localnet'])).stdout.trim()).toBe('1');
    const tables = (await node.exec(['nft', 'list', 'tables'])).stdout;
    const guard = /table inet (\S+_localnet)/.exec(tables)?.[1];
    expect(guard, tables).toBeDefined();
    // A service bound to loopback on the node, and a neighbour routing 127.0.0.5 to the node (as an attacker would).
    const secret = node.spawn([process.execPath, '-e', 'require("node:net").createServer((s) => s.end("secret\\n")).listen(7777, "127.0.0.5", () => console.log("up"))']);
    await until(() => secret.stdout().includes('up'), 'the loopback-only service', 10_000);
    const c = h.client;
    expect((await c.exec(['sysctl', '-qw', 'net.ipv4.conf.all.route_localnet=1'])).code).toBe(0);
    expect((await c.exec(['ip', 'route', 'add', '127.0.0.5/32', 'via', node.address, 'dev', 'eth0', 'src', c.address])).code).toBe(0);
    const probe = 'const s = require("node:net").connect(7777, "127.0.0.5"); s.on("data", (d) => { console.log(String(d).trim()); process.exit(0); });'
      + ' s.on("error", (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log("timeout"); process.exit(0); }, 2000);';
    try {
      expect((await c.exec([process.execPath, '-e', probe])).stdout.trim()).toBe('timeout');
      // Without the guard the same packet reaches it: what route_localnet alone would allow.
      expect((await node.exec(['nft', 'delete', 'table', 'inet', guard as string])).code).toBe(0);
      expect((await c.exec([process.execPath, '-e', probe])).stdout.trim()).toBe('secret');
    } finally {
      await c.exec(['ip', 'route', 'del', '127.0.0.5/32']);
      await c.exec(['sysctl', '-qw', 'net.ipv4.conf.all.route_localnet=0']);
      await secret.stop('SIGKILL');
    }
    // The agent's resync puts the guard back (drift repair).
    await until(async () => (await node.exec(['nft', 'list', 'tables'])).stdout.includes(`table inet ${guard}`), 'the guard table back', 45_000, 500);
  });

  it('local policy and host mode keep the client\'s address; nodes without a local replica refuse', async () => {
    await create('--name', 'loc', '--network', 'app', '-p', '8070:80', '--traffic-policy', 'local', ...HEALTH, '-e', 'PORT=80', '--', process.execPath, BACKEND);
    await create('--name', 'hst', '--network', 'app', '-p', 'mode=host,published=8081,target=80', ...HEALTH, '-e', 'PORT=80', '--', process.execPath, BACKEND);
    const [loc] = await serving('loc', 1) as [Task];
    const [hst] = await serving('hst', 1) as [Task];
    for (const [t, port] of [[loc, '8070'], [hst, '8081']] as const) {
      const home = harnessNode(t);
      const answers = await until(async () => {
        const a = await fromOutside<string[]>('http', home.address, port, '3');
        return a.every((x) => nameOf(x) === taskName(t)) ? a : undefined;
      }, `${t.serviceName} on its own node`, 10_000, 100);
      expect(new Set(answers.map((a) => a.split(' ')[1]))).toEqual(new Set([h.client.address]));
      // From the node itself through 127.0.0.1 too (masqueraded: a loopback source cannot leave).
      const self = await home.exec([process.execPath, CLIENT, 'http', '127.0.0.1', port, '2'], { timeoutMs: 30_000 });
      expect((JSON.parse(self.stdout.trim().split('\n').pop() ?? '[]') as string[]).map(nameOf)).toEqual([taskName(t), taskName(t)]);
      for (const n of h.nodes.filter((x) => x !== home)) {
        const refused = await fromOutside<string[]>('http', n.address, port, '1');
        expect(refused[0]).toMatch(/^error (ECONNREFUSED|ECONNRESET)/);
      }
    }
    expect((await h.shoal('service', 'rm', 'loc', 'hst')).code).toBe(0);
  });

  it('a killed replica that fails its health check gets no request; none fails', async () => {
    const web = await serving('web', 6);
    const victim = web[0] as Task;
    writeFileSync(join(sickDir, taskName(victim)), 'sick\n'); // stays sick when restarted
    process.kill(victim.status.pid as number, 'SIGKILL');
    await until(async () => {
      const t = (await h.json<Task[]>('service', 'ps', 'web')).find((x) => x.id === victim.id);
      return t && (t.status.state !== 'running' || t.status.healthy === false);
    }, 'the killed replica out of service', 10_000);
    // Every node's balancer follows within moments; then nothing fails and nothing reaches it.
    await until(async () => {
      const a = await Promise.all(h.nodes.map((n) => fromOutside<string[]>('http', n.address, '8080', '12')));
      return a.flat().every((x) => !x.startsWith('error') && nameOf(x) !== taskName(victim));
    }, 'requests avoid the killed replica', 10_000, 100);
    const after = await Promise.all(h.nodes.map((n) => fromOutside<string[]>('http', n.address, '8080', '30')));
    expect(after.flat().filter((a) => a.startsWith('error'))).toEqual([]);
    expect(after.flat().some((a) => nameOf(a) === taskName(victim))).toBe(false);
    rmSync(join(sickDir, taskName(victim)));
    await serving('web', 6);
  });

  it('scaling up adds the new replicas to every node\'s balancing', async () => {
    expect((await h.shoal('service', 'scale', 'web=9')).code).toBe(0);
    const web = await serving('web', 9);
    for (const n of h.nodes) {
      await until(async () => {
        const a = await fromOutside<string[]>('http', n.address, '8080', '27');
        return new Set(a.map(nameOf)).size === 9 && a.every((x) => !x.startsWith('error'));
      }, `all 9 replicas through ${n.name}`, 10_000, 100);
    }
    expect(web).toHaveLength(9);
  });

  it('published port conflicts are refused and change nothing', async () => {
    const dup = await h.shoal('service', 'create', '--name', 'dup', '--network', 'app', '-p', '8080:80', '--', 'sleep', '60');
    expect(dup.code).not.toBe(0);
    expect(dup.err).toMatch(/port 8080\/tcp is already published by service 'web'/);
    // A process listening on a node's port: the node reports it, the port cannot be published.
    const squatter = spawn('ip', ['netns', 'exec', h.nodes[1]!.netns, process.execPath, '-e', 'require("node:net").createServer().listen(8095)'], { stdio: 'ignore' });
    children.push(squatter);
    await until(async () => (await h.json<Node[]>('node', 'ls')).find((n) => n.name === h.nodes[1]!.name)?.boundPorts?.includes('8095/tcp'), 'the node reports 8095/tcp bound', 15_000, 200);
    const busy = await h.shoal('service', 'create', '--name', 'busy', '--network', 'app', '-p', '8095:80', '--', 'sleep', '60');
    expect(busy.code).not.toBe(0);
    expect(busy.err).toContain(`port 8095/tcp is already in use on node ${h.nodes[1]!.name}`);
    const upd = await h.shoal('service', 'update', '-p', '8095:80', 'web');
    expect(upd.code).not.toBe(0);
    expect(upd.err).toContain('already in use on node');
    const names = (await h.json<Array<{ spec: { name: string; ports: Array<{ published: number }> } }>>('service', 'ls'));
    expect(names.map((s) => s.spec.name).sort()).toEqual(['echo', 'web']);
    expect(names.find((s) => s.spec.name === 'web')?.spec.ports.map((p) => p.published)).toEqual([8080]);
    squatter.kill('SIGKILL');
  });

  it('an agent restart keeps an established connection through the mesh', async () => {
    const node = h.nodes[0] as HarnessNode;
    const hold = spawn('ip', ['netns', 'exec', h.client.netns, process.execPath, CLIENT, 'hold', node.address, '8080'], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(hold);
    const lines = createInterface({ input: hold.stdout! })[Symbol.asyncIterator]();
    const ask = async (): Promise<string> => {
      hold.stdin!.write('x\n');
      return JSON.parse((await lines.next()).value as string) as string;
    };
    const first = await ask();
    expect(first).toMatch(/^web\./);
    await node.stopAgent('SIGKILL');
    expect(await ask()).toBe(first); // the same replica over the same connection, agent gone
    await node.startAgent();
    // Once the restarted agent has synced the mesh again (its metrics say so), the connection still works.
    await until(async () => /^shoal_ingress_published_backends\{service="web",port="8080",protocol="tcp",mode="ingress"\} 9$/m
      .test((await node.exec(['curl', '-s', 'http://127.0.0.1:9323/metrics'])).stdout), 'the restarted agent synced', 15_000, 100);
    expect(await ask()).toBe(first);
    hold.stdin!.end();
  });
});
