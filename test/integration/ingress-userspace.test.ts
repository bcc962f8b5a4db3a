/**
 * Published ports WITHOUT root: `shoal manager` and two `shoal agent`s run as uid/gid 65534
 * (`setpriv` when the test runs as root) with `--isolation none`, as nodes at 127.0.0.1 and
 * 127.0.0.2 on loopback. Tasks share their agent's namespace, so the agents serve published
 * ports with the userspace proxy at their node address: cluster policy balances over the
 * replicas of both nodes (`<node address>:<target>`), local policy over the node's own, removing
 * the service closes the port, and a node does not report its own proxies' ports as taken.
 * Needs setpriv (util-linux) when run as root; only loopback traffic.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Task } from '../../src/model/types.js';
import { until } from '../helpers/cluster.js';
import { freePort, shoalCli, startShoal } from '../helpers/shoal-process.js';

const NOBODY = 65534;
const dir = mkdtempSync(join(tmpdir(), 'shoal-ingress-us-'));
const asRoot = process.getuid?.() === 0;
const children = new Set<ChildProcess>();
let url = '';
let token = '';

/** argv run unprivileged (uid/gid 65534) when the test is root; as is otherwise. */
const unprivileged = (argv: string[]): string[] => (asRoot ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...argv] : argv);
const env = { ...process.env, HOME: dir, TMPDIR: dir };

const start = (args: string[]): ReturnType<typeof startShoal> => startShoal(args, children, { wrap: unprivileged, env });

const { shoal, json } = shoalCli(() => ({ url, token }));

/** One GET on a fresh connection: the body, or `error <code>`. */
function get(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve(body.trim()));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    req.end();
  });
}
async function gets(host: string, port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await get(host, port));
  return out;
}

/** The replica: listens on its node's address only (tasks of both nodes share one namespace here). */
const REPLICA = `require('node:http').createServer((q, r) => r.end(process.env.SHOAL_TASK_NAME + ' ' + process.getuid() + '\\n')).listen(Number(process.env.PORT), process.env.SHOAL_NODE_ADDRESS);`;
let target = 0;
let published = 0;

beforeAll(async () => {
  if (asRoot) {
    chownSync(dir, NOBODY, NOBODY);
    chmodSync(dir, 0o755);
  }
  const port = await freePort();
  url = `https://127.0.0.1:${port}`;
  const m = start(['manager', '--data-dir', join(dir, 'manager'), '--listen', `127.0.0.1:${port}`, '--metrics-addr', '']);
  await until(() => /join token: (\S+)/.exec(m.output())?.[1], `manager to start (${m.output()})`, 20_000);
  const joinToken = /join token: (\S+)/.exec(m.output())?.[1] ?? '';
  // The token file is the manager's (mode 0600, owned by uid 65534): root reads it anyway.
  token = readFileSync(join(dir, 'manager', 'manager.token'), 'utf8').trim();
  for (const [name, address] of [['us1', '127.0.0.1'], ['us2', '127.0.0.2']] as const) {
    start(['agent', '--join', url, '--token', joinToken, '--data-dir', join(dir, name), '--name', name, '--address', address, '--metrics-addr', '', '--isolation', 'none']);
  }
  await until(() => json<Node[]>('node', 'ls').filter((n) => n.state === 'ready').length === 2, 'both agents joined', 20_000);
  target = await freePort();
  published = await freePort();
}, 60_000);

afterAll(async () => {
  shoal('service', 'rm', 'web', 'loc');
  await until(() => {
    const r = shoal('service', 'ls', '--format', 'json');
    return r.code !== 0 || (JSON.parse(r.out) as unknown[]).length === 0;
  }, 'services removed', 10_000).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 500)); // the agents stop their tasks
  for (const c of [...children]) {
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

const running = (svc: string): Task[] => json<Task[]>('service', 'ps', svc).filter((t) => t.desiredState === 'running' && t.status.state === 'running');

describe('published ports without root (userspace proxy, tasks in the agent\'s namespace)', () => {
  it('cluster policy: each node\'s published port reaches the replicas of both nodes', async () => {
    const c = shoal('service', 'create', '--name', 'web', '--replicas', '2', '-p', `${published}:${target}`, '-e', `PORT=${target}`, '--', process.execPath, '-e', REPLICA);
    expect(c.code, c.err).toBe(0);
    await until(() => running('web').length === 2, '2 running replicas', 20_000);
    const names = running('web').map((t) => `${t.serviceName}.${t.slot}.${t.id}`).sort();
    expect(new Set(running('web').map((t) => t.nodeId)).size).toBe(2);
    for (const host of ['127.0.0.1', '127.0.0.2']) {
      const answers = await until(async () => {
        const a = await gets(host, published, 10);
        return new Set(a.map((x) => x.split(' ')[0])).size === 2 && a.every((x) => !x.startsWith('error')) ? a : undefined;
      }, `both replicas through ${host}:${published}`, 15_000, 200);
      expect([...new Set(answers.map((x) => x.split(' ')[0]))].sort()).toEqual(names);
      // The replicas (and the proxies in front of them) run unprivileged.
      if (asRoot) expect(answers.every((x) => x.endsWith(` ${NOBODY}`))).toBe(true);
    }
  });

  it('a node does not report its own published-port proxy as a port taken by someone else', async () => {
    await new Promise((r) => setTimeout(r, 3000)); // a few heartbeats: bound ports are reported
    const nodes = json<Node[]>('node', 'ls');
    expect(nodes.map((n) => (n.boundPorts ?? []).includes(`${published}/tcp`))).toEqual([false, false]);
    // The replica's own port IS bound on its node: it cannot be published by another service.
    const holder = nodes.find((n) => (n.boundPorts ?? []).includes(`${target}/tcp`));
    expect(holder).toBeDefined();
    const r = shoal('service', 'create', '--name', 'clash', '-p', `${target}:80`, '--', 'sleep', '60');
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`port ${target}/tcp is already in use on node`);
  });

  it('local policy: only the receiving node\'s own replica', async () => {
    expect(shoal('service', 'update', '--traffic-policy', 'local', 'web').code).toBe(0);
    const byNode = new Map(json<Node[]>('node', 'ls').map((n) => [n.id, n.address]));
    for (const host of ['127.0.0.1', '127.0.0.2']) {
      await until(async () => {
        const own = running('web').filter((t) => byNode.get(t.nodeId) === host).map((t) => `${t.serviceName}.${t.slot}.${t.id}`);
        const a = await gets(host, published, 6);
        return own.length === 1 && a.every((x) => x.split(' ')[0] === own[0]);
      }, `only the local replica through ${host}`, 15_000, 200);
    }
  });

  it('removing the service closes the published port on every node', async () => {
    expect(shoal('service', 'rm', 'web').code).toBe(0);
    for (const host of ['127.0.0.1', '127.0.0.2']) {
      await until(async () => (await get(host, published)).startsWith('error ECONNREFUSED'), `${host}:${published} closed`, 15_000, 200);
    }
  });
});
