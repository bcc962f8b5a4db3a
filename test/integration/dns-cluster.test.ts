/**
 * The embedded DNS as tasks see it, on a 2-node harness: `dig` and `getent` run inside task
 * namespaces (their resolv.conf names Docker's 127.0.0.11, which the sandbox's nftables send
 * to the node's resolver on the network's gateway; the gateway answers directly too). Service, tasks.*, aliases, name.network, task names, PTR, SRV, AAAA-less names,
 * dnsrr; replicas on the other node; scoping between networks; scale changes answers;
 * external names through an upstream the test runs (dnsmasq in the client namespace),
 * including a large answer and serve-stale once the upstream is gone.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

const third = 100 + Math.floor(Math.random() * 150);
const subnet = `192.168.${third}.0/24`;
const upstream = `192.168.${third}.3`; // the harness's client namespace
const BIG = 100; // A records of big.example: more than fits a 1232-byte UDP answer

let h: Harness;
let dnsmasq: ChildProcess | undefined;
const nodeName = new Map<string, string>();

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000, encoding: 'utf8' }, (e, out, err) => {
      resolve({ code: e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : 1) : 0, out, err });
    });
  });
}

const nsOf = (t: Task): string => `${nodeName.get(t.nodeId)}-${t.id}`;
/** `dig +short` inside a task: the answers, sorted. */
async function dig(t: Task, ...args: string[]): Promise<string[]> {
  const r = await run('ip', ['netns', 'exec', nsOf(t), 'dig', '+short', '+time=2', '+tries=1', ...args]);
  return r.out.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith(';')).sort();
}
async function digStatus(t: Task, ...args: string[]): Promise<string> {
  const r = await run('ip', ['netns', 'exec', nsOf(t), 'dig', '+time=2', '+tries=1', ...args]);
  return /status: (\w+)/.exec(r.out)?.[1] ?? `no answer (${r.out.trim().split('\n').pop()})`;
}

async function running(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, 30_000);
}

function startDnsmasq(): ChildProcess {
  const records = Array.from({ length: BIG }, (_, i) => `--host-record=big.example,10.99.${Math.floor(i / 250)}.${(i % 250) + 1}`);
  const p = spawn('ip', ['netns', 'exec', h.client.netns, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
    `--listen-address=${upstream}`, '--port=53', '--local-ttl=1', '--pid-file=', '--host-record=ext.example,198.51.100.7', ...records], { stdio: 'ignore' });
  return p;
}

let web: Task[];
let probe: Task;
let outsider: Task;
let tuned: Task;
let ov: Network;

beforeAll(async () => {
  h = await startHarness({ nodes: 2, underlaySubnet: subnet, agentArgs: ['--dns-upstream', upstream] });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  dnsmasq = startDnsmasq();
  expect((await h.shoal('network', 'create', '--subnet', '10.61.0.0/24', 'ov')).code).toBe(0);
  expect((await h.shoal('network', 'create', '--subnet', '10.62.0.0/24', 'other')).code).toBe(0);
  const c = await h.shoal('service', 'create', '--name', 'web', '--replicas', '2', '--network', 'ov', '--network-alias', 'ov=www',
    '-p', 'name=http,target=80,published=8080', '--', 'sleep', '600');
  expect(c.code, c.err).toBe(0);
  expect((await h.shoal('service', 'create', '--name', 'db', '--replicas', '2', '--endpoint-mode', 'dnsrr', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
  expect((await h.shoal('service', 'create', '--name', 'probe', '--network', 'ov', '--', 'sleep', '600')).code).toBe(0);
  expect((await h.shoal('network', 'create', '--subnet', '10.63.0.0/24', '-o', 'dns.ttl=42', 'slow')).code).toBe(0);
  expect((await h.shoal('service', 'create', '--name', 'tuned', '--network', 'slow', '--dns-option', 'ndots:3', '--dns-option', 'timeout:1', '--', 'sleep', '600')).code).toBe(0);
  expect((await h.shoal('service', 'create', '--name', 'outsider', '--network', 'other', '--', 'sleep', '600')).code).toBe(0);
  web = await running('web', 2);
  await running('db', 2);
  [probe] = await running('probe', 1) as [Task];
  [outsider] = await running('outsider', 1) as [Task];
  [tuned] = await running('tuned', 1) as [Task];
  ov = (await h.json<Network[]>('network', 'inspect', 'ov'))[0] as Network;
}, 120_000);

afterAll(async () => {
  dnsmasq?.kill('SIGKILL');
  await destroyAllHarnesses();
}, 120_000);

describe('names a task resolves (dig over UDP and TCP)', () => {
  it('answers every kind of name, also for replicas on the other node', async () => {
    const svc = (await h.json<Service[]>('service', 'inspect', 'web'))[0] as Service;
    const vip = svc.vips[ov.id]?.v4 as string;
    const taskIps = web.map((t) => t.addresses[ov.id]?.v4 as string).sort();
    expect(new Set(web.map((t) => t.nodeId)).size).toBe(2); // one replica is on the other node
    const dbIps = (await running('db', 2)).map((t) => t.addresses[ov.id]?.v4 as string).sort();
    const w1 = web.find((t) => t.slot === 1) as Task;
    for (const transport of ['+notcp', '+tcp']) {
      await until(async () => JSON.stringify(await dig(probe, transport, 'web')) === JSON.stringify([vip]), `web -> VIP (${transport})`, 10_000);
      expect(await dig(probe, transport, 'tasks.web')).toEqual(taskIps);
      expect(await dig(probe, transport, 'www')).toEqual([vip]);
      expect(await dig(probe, transport, 'web.ov')).toEqual([vip]);
      expect(await dig(probe, transport, 'WEB')).toEqual([vip]);
      expect(await dig(probe, transport, `web.1.${w1.id}`)).toEqual([w1.addresses[ov.id]?.v4]);
      expect(await dig(probe, transport, 'db')).toEqual(dbIps);
      expect(await dig(probe, transport, '-x', vip)).toEqual(['web.ov.']);
      expect(await dig(probe, transport, 'SRV', '_http._tcp.web')).toEqual(['0 0 80 web.ov.']);
      expect(await dig(probe, transport, 'AAAA', 'web')).toEqual([]);
      expect(await digStatus(probe, transport, 'AAAA', 'web')).toBe('NOERROR');
    }
    const getent = await run('ip', ['netns', 'exec', nsOf(probe), 'getent', 'hosts', 'web']);
    expect(getent.out).toMatch(new RegExp(`^${vip.replace(/\./g, '\\.')}\\s+web$`, 'm'));
  });

  it('a task on another network cannot resolve the service', async () => {
    expect(await dig(outsider, 'web')).toEqual([]);
    expect(await dig(outsider, 'tasks.web')).toEqual([]);
    // Not a name of its networks: forwarded, and the test's upstream (no recursion) refuses it.
    expect(['NXDOMAIN', 'SERVFAIL', 'REFUSED']).toContain(await digStatus(outsider, 'web'));
  });

  it('scaling changes tasks.web within a second of the task running', async () => {
    expect((await h.shoal('service', 'scale', 'web=3')).code).toBe(0);
    const three = await running('web', 3);
    const t0 = Date.now();
    await until(async () => (await dig(probe, 'tasks.web')).length === 3, 'tasks.web lists 3', 5_000, 20);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await h.shoal('service', 'scale', 'web=1')).code).toBe(0);
    const [one] = await running('web', 1);
    const t1 = Date.now();
    await until(async () => JSON.stringify(await dig(probe, 'tasks.web')) === JSON.stringify([one?.addresses[ov.id]?.v4]), 'tasks.web lists 1', 5_000, 20);
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(three).toHaveLength(3);
  });
});

describe('where tasks find the resolver', () => {
  it('resolv.conf names 127.0.0.11 with ndots:0; it answers over UDP and TCP, as does the gateway', async () => {
    expect(readFileSync(`/etc/netns/${nsOf(probe)}/resolv.conf`, 'utf8')).toBe('nameserver 127.0.0.11\noptions ndots:0\n');
    const svc = (await h.json<Service[]>('service', 'inspect', 'web'))[0] as Service;
    const vip = svc.vips[ov.id]?.v4 as string;
    for (const transport of ['+notcp', '+tcp']) {
      expect(await dig(probe, transport, '@127.0.0.11', 'web')).toEqual([vip]);
      expect(await dig(probe, transport, `@${ov.ipam.v4.gateway}`, 'web')).toEqual([vip]);
    }
  });

  it('a service\'s dns options replace ndots:0; a network\'s dns.ttl sets the TTL of its answers', async () => {
    expect(readFileSync(`/etc/netns/${nsOf(tuned)}/resolv.conf`, 'utf8')).toBe('nameserver 127.0.0.11\noptions ndots:3 timeout:1\n');
    const ttlOf = async (t: Task, name: string): Promise<number> => {
      const r = await run('ip', ['netns', 'exec', nsOf(t), 'dig', '+noall', '+answer', '+time=2', '+tries=1', name]);
      return Number(r.out.trim().split(/\s+/)[1]);
    };
    expect(await ttlOf(tuned, 'tuned')).toBe(42);
    const defaultTtl = await ttlOf(probe, 'web');
    expect(defaultTtl).toBeGreaterThan(0);
    expect(defaultTtl).toBeLessThanOrEqual(10);
  });
});

describe('external names through the upstream', () => {
  it('resolves, falls back to TCP for a large answer, serves stale when the upstream is gone', async () => {
    await until(async () => JSON.stringify(await dig(probe, 'ext.example')) === JSON.stringify(['198.51.100.7']), 'ext.example via dnsmasq', 10_000);
    const big = await dig(probe, 'big.example');
    expect(big).toHaveLength(BIG);
    dnsmasq?.kill('SIGKILL');
    await new Promise((r) => dnsmasq?.once('exit', r));
    // Past the 1 s TTL the cached answer is stale; with no upstream it is served anyway.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await dig(probe, 'ext.example')).toEqual(['198.51.100.7']);
  });
});
