/**
 * Service VIPs on the nftables dataplane of this kernel, end to end on a 2-node harness: a
 * client task connects to a service's VIP and reaches every replica on both nodes, the replica
 * sees the client task's own address, a replica whose health check fails gets no new
 * connections (and leaves DNS), a draining replica keeps an open connection until it closes,
 * and UDP through a VIP works with a removed backend getting nothing more (conntrack flushed).
 * The IPVS dataplane runs the same kinds of checks in the kernel lab (ipvs-kernel-lab.test.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('../fixtures/lb-client.mjs', import.meta.url));
const subnet = `192.168.${100 + Math.floor(Math.random() * 150)}.0/24`;

let h: Harness;
let ov: Network;
let client: Task;
const nodeName = new Map<string, string>();
const children: ChildProcess[] = [];

const nsOf = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;
const addrOf = (t: Task): string => t.addresses[ov.id]?.v4 as string;
const vipOf = async (svc: string): Promise<string> => ((await h.json<Service[]>('service', 'inspect', svc))[0] as Service).vips[ov.id]?.v4 as string;

async function tasks(service: string): Promise<Task[]> {
  return h.json<Task[]>('service', 'ps', service);
}
async function serving(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await tasks(service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running' && t.status.healthy !== false);
    return ts.length === n ? ts : undefined;
  }, `${n} serving tasks of ${service}`, 30_000);
}

/** Runs the client fixture inside the client task's netns; parses its JSON line. */
async function fromClient<T>(...args: string[]): Promise<T> {
  const r = await h.nodes[0]!.exec(['nsenter', `--net=/run/netns/${nsOf(client)}`, process.execPath, CLIENT, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`client ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as T;
}

const nameOf = (answer: string): string => answer.split(' ')[0] ?? '';

beforeAll(async () => {
  h = await startHarness({ nodes: 2, underlaySubnet: subnet, agentArgs: ['--lb-dataplane', 'nftables'] });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  expect((await h.shoal('network', 'create', '--subnet', '10.71.0.0/24', 'ov')).code).toBe(0);
  ov = (await h.json<Network[]>('network', 'inspect', 'ov'))[0] as Network;
  const web = await h.shoal('service', 'create', '--name', 'web', '--replicas', '3', '--network', 'ov', '-p', '8080:80',
    '--health-type', 'http', '--health-port', '80', '--health-path', '/health', '--health-interval', '200', '--health-retries', '2', '--health-timeout', '500',
    '--drain-timeout', '30000', '-e', 'PORT=80', '--', process.execPath, BACKEND);
  expect(web.code, web.err).toBe(0);
  const echo = await h.shoal('service', 'create', '--name', 'echo', '--replicas', '2', '--network', 'ov', '-p', '5300:5300/udp',
    '-e', 'PORT=81', '-e', 'UDP_PORT=5300', '--', process.execPath, BACKEND);
  expect(echo.code, echo.err).toBe(0);
  expect((await h.shoal('service', 'create', '--name', 'client', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
  [client] = await serving('client', 1) as [Task];
  const three = await serving('web', 3);
  expect(three.every((t) => t.status.healthy === true)).toBe(true);
  await serving('echo', 2);
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.pid) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  await destroyAllHarnesses();
}, 120_000);

describe('VIP balancing (nftables)', () => {
  it('100 connections to the VIP reach every replica on both nodes; each sees the client task\'s address', async () => {
    const web = await serving('web', 3);
    expect(new Set(web.map((t) => t.nodeId)).size).toBe(2);
    const answers = await fromClient<string[]>('http', await vipOf('web'), '80', '100');
    expect(answers.filter((a) => a.startsWith('error'))).toEqual([]);
    const counts = new Map<string, number>();
    for (const a of answers) counts.set(nameOf(a), (counts.get(nameOf(a)) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual(web.map((t) => `web.${t.slot}.${t.id}`).sort());
    for (const n of counts.values()) expect(n).toBeGreaterThanOrEqual(20); // round robin: ~33 each
    expect(new Set(answers.map((a) => a.split(' ')[1]))).toEqual(new Set([addrOf(client)]));
    // The client's node reports it on /metrics (per-backend counters are read in the background: poll).
    const node = h.nodes.find((n) => n.name === nodeName.get(client.nodeId));
    const perBackendOf = (m: string): RegExpMatchArray[] => [...m.matchAll(/^shoal_lb_backend_connections_total\{service="web",backend="([^"]+)"\} (\d+)$/gm)];
    const m = await until(async () => {
      const text = (await node!.exec(['curl', '-s', 'http://127.0.0.1:9323/metrics'])).stdout;
      return perBackendOf(text).reduce((a, x) => a + Number(x[2]), 0) >= 100 ? text : undefined;
    }, 'the 100 connections counted on /metrics', 20_000, 250);
    expect(m).toMatch(/^shoal_lb_backends\{service="web",state="serving"\} 3$/m);
    expect(m).toMatch(/^shoal_lb_sync_duration_seconds_count\{dataplane="nftables"\} [1-9]/m);
    expect(m).toMatch(/^shoal_lb_network_programming_latency_seconds_count\{dataplane="nftables"\} [1-9]/m);
    expect(m).toMatch(/^shoal_lb_pending_changes 0$/m);
    // A VIP carries every port: each replica is counted as `address:*`.
    const perBackend = perBackendOf(m);
    expect(perBackend.map((x) => x[1]).sort()).toEqual(web.map((t) => `${addrOf(t)}:*`).sort());
  });

  it('a replica whose health check fails gets no new connections and leaves DNS', async () => {
    const web = await serving('web', 3);
    const sick = web[0] as Task;
    await fromClient<string[]>('http', addrOf(sick), '80', '1'); // warm-up: straight to the replica
    const r = await h.nodes[0]!.exec(['nsenter', `--net=/run/netns/${nsOf(client)}`, 'curl', '-s', `http://${addrOf(sick)}/sick`]);
    expect(r.stdout).toContain('now sick');
    await until(async () => (await tasks('web')).find((t) => t.id === sick.id)?.status.healthy === false, 'the sick replica reported unhealthy', 10_000);
    const vip = await vipOf('web');
    await until(async () => {
      const answers = await fromClient<string[]>('http', vip, '80', '30');
      return answers.every((a) => !a.startsWith(`web.${sick.slot}.${sick.id}`) && !a.startsWith('error'));
    }, 'no answer from the sick replica', 10_000, 100);
    const answers = await fromClient<string[]>('http', vip, '80', '60');
    expect(answers.some((a) => nameOf(a) === `web.${sick.slot}.${sick.id}`)).toBe(false);
    expect(answers.filter((a) => a.startsWith('error'))).toEqual([]);
    const dig = await h.nodes[0]!.exec(['ip', 'netns', 'exec', nsOf(client), 'dig', '+short', 'tasks.web']);
    expect(dig.stdout.split('\n').filter(Boolean).sort()).toEqual(web.filter((t) => t.id !== sick.id).map(addrOf).sort());
  });

  it('a draining replica keeps an open connection until it closes, then stops; new connections avoid it; new replicas start meanwhile', async () => {
    const vip = await vipOf('web');
    // Hold a connection to a replica on the OTHER node than the client: its flow crosses the
    // overlay, whose forwarding entries must outlive the replica's "meant to stop" state.
    const openHeld = async (): Promise<{ hold: ChildProcess; ask: () => Promise<string>; first: string; held: Task }> => {
      const hold = spawn('nsenter', [`--net=/run/netns/${nsOf(client)}`, process.execPath, CLIENT, 'hold', vip, '80'], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(hold);
      const lines = createInterface({ input: hold.stdout! })[Symbol.asyncIterator]();
      const ask = async (): Promise<string> => { hold.stdin!.write('go\n'); return JSON.parse(String((await lines.next()).value)) as string; };
      const first = await ask();
      const held = (await tasks('web')).find((t) => `web.${t.slot}.${t.id}` === nameOf(first)) as Task;
      return { hold, ask, first, held };
    };
    let c = await openHeld();
    for (let i = 0; i < 8 && c.held.nodeId === client.nodeId; i++) {
      c.hold.stdin!.end();
      c = await openHeld();
    }
    const { hold, ask, first, held } = c;
    expect(held.nodeId).not.toBe(client.nodeId);
    // Scale to 0: every replica is meant to stop; the held one drains (30 s window).
    expect((await h.shoal('service', 'scale', 'web=0')).code).toBe(0);
    await until(async () => (await tasks('web')).find((t) => t.id === held.id)?.desiredState === 'shutdown', 'web told to stop', 10_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await tasks('web')).find((t) => t.id === held.id)?.status.state).toBe('running'); // still draining
    const second = await ask();
    const drainLog = (): string => h.logs().split('\n').filter((l) => l.includes(held.id)).slice(-20).join('\n');
    expect(second, drainLog()).toBe(first); // the open connection still works
    const fresh = await fromClient<string[]>('http', vip, '80', '3');
    expect(fresh.every((a) => a.startsWith('error'))).toBe(true); // no backend takes new connections
    // A drain holds up nothing else on its node: a new replica starts and serves meanwhile.
    expect((await h.shoal('service', 'scale', 'web=1')).code).toBe(0);
    const [fresh1] = await serving('web', 1);
    expect(fresh1!.id).not.toBe(held.id);
    expect((await tasks('web')).find((t) => t.id === held.id)?.status.state).toBe('running'); // still draining
    await until(async () => (await fromClient<string[]>('http', vip, '80', '1'))[0]?.startsWith(`web.${fresh1!.slot}.${fresh1!.id}`), 'the new replica answers on the VIP', 10_000, 100);
    const closedAt = Date.now();
    hold.stdin!.end();
    await until(async () => (await tasks('web')).find((t) => t.id === held.id)?.status.state === 'shutdown', 'the drained replica stopped', 20_000, 100);
    expect(Date.now() - closedAt).toBeLessThan(10_000); // well before the 30 s window
  });

  it('UDP through the VIP; a removed backend gets no more datagrams, even from the same client port', async () => {
    const vip = await vipOf('echo');
    const echo = await serving('echo', 2);
    const doomed = echo.reduce((a, b) => (a.slot > b.slot ? a : b)); // scaling down removes the highest slot
    const doomedName = `echo.${doomed.slot}.${doomed.id}`;
    // Find a client port whose flow the balancer sent to the doomed replica (rr alternates).
    let sport = 0;
    for (let p = 40000; p < 40008 && !sport; p++) {
      const [a] = await fromClient<string[]>('udp', vip, '5300', '1', String(p));
      if (a && nameOf(a) === doomedName) sport = p;
    }
    expect(sport).toBeGreaterThan(0);
    const before = await fromClient<string[]>('udp', vip, '5300', '5', String(sport));
    expect(before.map(nameOf)).toEqual(Array(5).fill(doomedName)); // one flow, one backend (conntrack)
    expect((await h.shoal('service', 'scale', 'echo=1')).code).toBe(0);
    await until(async () => (await tasks('echo')).find((t) => t.id === doomed.id)?.status.state === 'shutdown', 'the removed echo replica stopped', 20_000);
    const survivor = echo.find((t) => t.id !== doomed.id) as Task;
    // Same 5-tuple: without the conntrack flush it would still point at the removed replica
    // (for 300 s, moby#36878). The client's node learns of the removal within moments.
    const want = `echo.${survivor.slot}.${survivor.id}`;
    await until(async () => (await fromClient<string[]>('udp', vip, '5300', '2', String(sport))).every((a) => nameOf(a) === want), 'the flow moved to the survivor', 5_000, 100);
    const after = await fromClient<string[]>('udp', vip, '5300', '10', String(sport));
    expect(after.map(nameOf)).toEqual(Array(10).fill(`echo.${survivor.slot}.${survivor.id}`));
  });
});
