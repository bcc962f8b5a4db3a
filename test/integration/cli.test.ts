/**
 * The CLI as a Docker user drives it, against a real manager and agent run as processes
 * (`shoal manager`, `shoal agent --isolation none`): the service grammar, --format templates,
 * -q and --filter on real objects, shoal info, service logs --tail/--since/--timestamps merged
 * by time, shoal events with Docker's verbs (live, replayed with --since, filtered, as JSON),
 * and the shell side: exit statuses of the real binary and the completion script in a real bash.
 * Most commands run in-process (runCli) against the manager's URL; the ones whose process
 * behaviour matters run as processes.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../mesh/cli/main.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { until } from '../helpers/cluster.js';
import { freePort, REPO_ROOT, SHOAL_MAIN, shoalCli, startShoal } from '../helpers/shoal-process.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
const agentDir = join(dir, 'agent');
const children = new Set<ChildProcess>();
let url = '';
let token = '';

/** `shoal ARGS` in-process against the manager. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await runCli(argv, { out: (s) => { out += s; }, err: (s) => { err += s; }, env: { SHOAL_HOST: url, SHOAL_TOKEN: token, SHOAL_DATA_DIR: join(dir, 'none') } });
  return { code, out, err };
}
async function ok(...argv: string[]): Promise<string> {
  const r = await cli(...argv);
  expect(r.code, `shoal ${argv.join(' ')}: ${r.err}`).toBe(0);
  return r.out;
}
const json = async <T>(...argv: string[]): Promise<T> => JSON.parse(await ok(...argv, '--format', 'json')) as T;
const proc = shoalCli(() => ({ url, token }));

const running = async (svc: string): Promise<Task[]> => (await json<Task[]>('service', 'ps', svc)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');

/** Prints `<pid> line <i>` every 150 ms: a numbered sequence per task. */
const TALKER = 'i=0; while [ $i -lt 100000 ]; do echo "$$ line $i"; i=$((i+1)); sleep 0.15; done';

beforeAll(async () => {
  const port = await freePort();
  url = `https://127.0.0.1:${port}`;
  const m = startShoal(['manager', '--data-dir', join(dir, 'manager'), '--listen', `127.0.0.1:${port}`, '--metrics-addr', ''], children);
  const joinToken = await until(() => /join token: (\S+)/.exec(m.output())?.[1], `manager to start (${m.output()})`, 30_000);
  token = readFileSync(join(dir, 'manager', 'manager.token'), 'utf8').trim();
  startShoal(['agent', '--join', url, '--token', joinToken, '--data-dir', agentDir, '--name', 'cli-node', '--address', '127.0.0.1', '--metrics-addr', '', '--isolation', 'none'], children);
  await until(async () => (await json<Node[]>('node', 'ls')).some((n) => n.name === 'cli-node' && n.state === 'ready'), 'agent joined', 30_000);
}, 60_000);

const pidAlive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

afterAll(async () => {
  // Task processes outlive their agent (it adopts them after a restart): stop them through the
  // cluster, then end any left by the pids the cluster reported.
  const pids = (await json<Task[]>('service', 'ps', 'talker').catch(() => [])).map((t) => t.status.pid).filter((p): p is number => p !== undefined);
  for (const s of ['talker', 'fmt-a', 'fmt-b']) await cli('service', 'rm', s);
  await until(() => pids.every((p) => !pidAlive(p)), 'task processes stopped', 15_000).catch(() => undefined);
  for (const c of [...children]) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
  for (const p of pids) if (pidAlive(p)) process.kill(p, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('service create grammar', () => {
  it('`service create sleep 3600` takes sleep as the IMAGE and is refused clearly; nothing is created', async () => {
    const before = await json<Service[]>('service', 'ls');
    const r = await cli('service', 'create', 'sleep', '3600');
    expect(r.code).toBe(1);
    expect(r.err).toBe("shoal: this manager cannot run images yet (no container runtime): 'sleep' was read as the IMAGE; to run a process, put it after --: shoal service create [OPTIONS] -- sleep 3600\n");
    expect(await json<Service[]>('service', 'ls')).toEqual(before);
  });

  it('`-- CMD` runs a process; without --name the service gets a generated adjective-noun name', async () => {
    const id = (await ok('service', 'create', '--replicas', '0', '--', 'sleep', '600')).trim();
    const s = (await json<Service[]>('service', 'inspect', id))[0];
    expect(s?.spec.name).toMatch(/^[a-z]+-[a-z]+$/);
    expect(s?.spec.command).toEqual(['sleep', '600']);
    expect(s?.spec.image).toBeUndefined();
    await ok('service', 'rm', id);
  });

  it('flags after the image belong to the task, not to shoal', async () => {
    const r = await cli('service', 'create', '--name', 'img', 'alpine', 'ping', '-c', '3', '--colour', 'x');
    expect(r.code).toBe(1); // not "unknown flag -c": the image is refused
    expect(r.err).toMatch(/'alpine' was read as the IMAGE; .* -- alpine ping -c 3 --colour x$/m);
  });
});

describe('--format, -q and --filter on real objects', () => {
  beforeAll(async () => {
    await ok('network', 'create', '-d', 'bridge', '--subnet', '10.95.1.0/24', '--label', 'env=prod', '--internal', '--attachable', 'fmt-net');
    await ok('network', 'create', '--subnet', '10.95.2.0/24', 'fmt-ov');
    await ok('service', 'create', '--name', 'fmt-a', '--replicas', '0', '--label', 'tier=front', '-p', '18081:80', '--', 'sleep', '600');
    await ok('service', 'create', '--name', 'fmt-b', '--replicas', '0', '--label', 'tier=back', '--', 'sleep', '601');
  });
  afterAll(async () => { await cli('network', 'rm', 'fmt-net', 'fmt-ov'); });

  it('service ls: templates, table templates, json rows, -q', async () => {
    expect(await ok('service', 'ls', '--filter', 'name=fmt', '--format', '{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}} {{.Ports}}')).toBe('fmt-a replicated 0/0 -- sleep 600 *:18081->80/tcp\nfmt-b replicated 0/0 -- sleep 601 \n');
    expect(await ok('service', 'ls', '--filter', 'name=fmt', '--format', 'table {{.Name}}\\t{{.Replicas}}')).toBe('NAME    REPLICAS\nfmt-a   0/0\nfmt-b   0/0\n');
    const row = JSON.parse((await ok('service', 'ls', '--filter', 'name=fmt-a', '--format', '{{json .}}')).trim()) as Record<string, unknown>;
    expect(row).toMatchObject({ Name: 'fmt-a', Mode: 'replicated', Replicas: '0/0', Labels: { tier: 'front' } });
    const ids = (await json<Service[]>('service', 'ls')).filter((s) => s.spec.name.startsWith('fmt')).map((s) => s.id);
    expect((await ok('service', 'ls', '-q', '--filter', 'name=fmt')).trim().split('\n')).toEqual(ids);
  });

  it('service ls --filter: label, id, mode; same key OR, different keys AND', async () => {
    const names = async (...f: string[]): Promise<string> => (await ok('service', 'ls', ...f.flatMap((x) => ['--filter', x]), '--format', '{{.Name}}')).trim();
    expect(await names('label=tier=front')).toBe('fmt-a');
    expect(await names('label=tier')).toBe('fmt-a\nfmt-b');
    expect(await names('label=tier=front', 'label=tier=back')).toBe('fmt-a\nfmt-b');
    expect(await names('label=tier=front', 'name=fmt-b')).toBe('');
    const a = (await json<Service[]>('service', 'inspect', 'fmt-a'))[0] as Service;
    expect(await names(`id=${a.id.slice(0, 6)}`)).toBe('fmt-a');
    expect(await names('mode=global')).toBe('');
  });

  it('inspect --format: fields, nested fields, json, several objects', async () => {
    const a = (await json<Service[]>('service', 'inspect', 'fmt-a'))[0] as Service;
    expect(await ok('service', 'inspect', 'fmt-a', '--format', '{{.Spec.Name}} {{.ID}} {{index .Spec.Labels "tier"}}')).toBe(`fmt-a ${a.id} front\n`);
    expect(await ok('service', 'inspect', 'fmt-a', 'fmt-b', '--format', '{{.Spec.Name}}')).toBe('fmt-a\nfmt-b\n');
    expect(JSON.parse(await ok('service', 'inspect', 'fmt-a', '--format', '{{json .Spec.Ports}}'))).toEqual([{ target: 80, published: 18081, protocol: 'tcp', mode: 'ingress' }]);
    expect(await ok('network', 'inspect', 'fmt-net', '--format', '{{.Name}} {{.Driver}} {{.Internal}} {{.Attachable}} {{.IPAM.V4.Subnet}}')).toBe('fmt-net bridge true true 10.95.1.0/24\n');
    const r = await cli('service', 'inspect', 'fmt-a', '--format', '{{.Nmae}}');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/there is no field 'Nmae' \(fields: id, version, spec, vips, createdAt, updatedAt\)/);
  });

  it('network ls and node ls: filters and templates', async () => {
    expect(await ok('network', 'ls', '--filter', 'driver=bridge', '--filter', 'name=fmt', '--format', '{{.Name}} {{.Scope}} {{.Internal}} {{.Subnet}}')).toBe('fmt-net local true 10.95.1.0/24\n');
    expect(await ok('network', 'ls', '--filter', 'label=env=prod', '-q')).toBe(`${(await json<Network[]>('network', 'inspect', 'fmt-net'))[0]?.id}\n`);
    expect((await ok('network', 'ls', '--filter', 'scope=swarm', '--format', '{{.Name}}')).trim().split('\n').sort()).toEqual(['fmt-ov', 'ingress']);
    expect(await ok('network', 'ls', '--filter', 'name=fmt', '--format', 'table {{.ID}}\\t{{.Name}}')).toMatch(/^NETWORK ID +NAME\n/);
    // The agent joined over TCP: a worker (an agent beside its manager, over the unix socket, is a manager).
    expect(await ok('node', 'ls', '--filter', 'role=worker', '--format', '{{.Name}} {{.Status}} {{.Availability}} {{.Role}}')).toBe('cli-node Ready Active worker\n');
    expect(await ok('node', 'ls', '--filter', 'role=manager')).toBe('ID   NAME   ADDRESS   STATUS   AVAILABILITY   ROLE\n');
  });
});

describe('shoal info', () => {
  it('shows the cluster, the counts and, with the agent\'s data dir, this node', async () => {
    const out = await ok('info', '--data-dir', agentDir);
    expect(out).toMatch(/^Cluster: +[0-9a-f]{16} \(created /m);
    expect(out).toMatch(/^Nodes: +1 \(ready 1; active 1; worker 1\)$/m);
    expect(out).toMatch(/^Networks: +\d+ \(.*overlay \d+/m);
    expect(out).toMatch(/^This node: +cli-node at 127\.0\.0\.1, isolation none, VIP dataplane none, published ports userspace$/m);
    const id = (await ok('info', '--format', '{{.ClusterId}}')).trim();
    expect(out).toContain(id);
    expect((await json<{ nodes: { total: number } }>('info')).nodes.total).toBe(1);
  });
});

describe('service logs', () => {
  let t0 = 0;
  beforeAll(async () => {
    await ok('service', 'create', '--name', 'talker', '--replicas', '2', '--', 'sh', '-c', TALKER);
    await until(async () => (await running('talker')).length === 2, 'talker running', 20_000);
    await until(async () => (await ok('service', 'logs', 'talker')).split('\n').filter(Boolean).length >= 8, 'some output');
    t0 = Date.now();
    await until(async () => (await ok('service', 'logs', 'talker', '--since', new Date(t0).toISOString())).split('\n').filter(Boolean).length >= 4, 'output after t0');
  }, 60_000);

  /** `name | [time ]text` lines. */
  const parse = (out: string): Array<{ task: string; time?: number; text: string }> => out.split('\n').filter(Boolean).map((l) => {
    const m = /^(\S+) \| (?:(\d{4}-\d\d-\d\dT[\d:]+\.\d{9}Z) )?(.*)$/.exec(l);
    if (!m) throw new Error(`not a log line: ${l}`);
    return { task: m[1] as string, ...(m[2] ? { time: Date.parse(m[2]) } : {}), text: m[3] as string };
  });

  it('prints every task\'s lines, prefixed with the task and node, in order per task', async () => {
    const lines = parse(await ok('service', 'logs', 'talker'));
    const tasks = [...new Set(lines.map((l) => l.task))];
    expect(tasks).toHaveLength(2);
    for (const t of tasks) {
      expect(t).toMatch(/^talker\.[12]\.[0-9a-f]{16}@cli-node$/);
      const seq = lines.filter((l) => l.task === t).map((l) => Number(/line (\d+)$/.exec(l.text)?.[1]));
      expect(seq).toEqual(seq.map((_x, i) => (seq[0] ?? 0) + i)); // no line lost, none twice
    }
  });

  it('--timestamps: RFC 3339 with nanoseconds; tasks merged by time', async () => {
    const lines = parse(await ok('service', 'logs', 'talker', '--timestamps'));
    expect(lines.every((l) => l.time !== undefined)).toBe(true);
    const times = lines.map((l) => l.time as number);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Interleaved, not one task after the other.
    const switches = lines.filter((l, i) => i > 0 && l.task !== lines[i - 1]?.task).length;
    expect(switches).toBeGreaterThan(2);
  });

  it('--tail N: the last N lines of each task', async () => {
    const all = parse(await ok('service', 'logs', 'talker'));
    const tail = parse(await ok('service', 'logs', 'talker', '--tail', '2'));
    expect(tail).toHaveLength(4);
    for (const t of new Set(tail.map((l) => l.task))) {
      const mine = tail.filter((l) => l.task === t);
      expect(mine).toHaveLength(2);
      const allMine = all.filter((l) => l.task === t);
      expect(Number(/line (\d+)$/.exec(mine[1]?.text ?? '')?.[1])).toBeGreaterThanOrEqual(Number(/line (\d+)$/.exec(allMine[allMine.length - 1]?.text ?? '')?.[1]));
    }
    expect(await ok('service', 'logs', 'talker', '-n', '0')).toBe('');
  });

  it('--since TIME and --since DURATION: only lines written since', async () => {
    const all = parse(await ok('service', 'logs', 'talker', '-t'));
    const since = parse(await ok('service', 'logs', 'talker', '-t', '--since', new Date(t0).toISOString()));
    expect(since.length).toBeGreaterThan(0);
    expect(since.length).toBeLessThan(all.length);
    expect(since.every((l) => (l.time as number) >= t0)).toBe(true);
    // Unix seconds, and a duration that covers everything.
    expect(parse(await ok('service', 'logs', 'talker', '-t', '--since', String(t0 / 1000))).every((l) => (l.time as number) >= t0)).toBe(true);
    expect(parse(await ok('service', 'logs', 'talker', '--since', '1h')).length).toBeGreaterThanOrEqual(all.length);
  });

  it('-f follows: new lines arrive after the backlog (a real process)', async () => {
    const f = startShoal(['service', 'logs', '-f', '--tail', '1', '--host', url, '--token', token, 'talker'], children);
    try {
      await until(() => f.output().split('\n').filter(Boolean).length >= 6, `followed lines (${f.output()})`, 20_000);
    } finally {
      f.child.kill('SIGTERM');
    }
  });
});

describe('shoal events', () => {
  let t0 = 0;
  it('prints Docker\'s verbs live: create, update with task state transitions, remove', async () => {
    t0 = Date.now();
    const ev = startShoal(['events', '--host', url, '--token', token], children);
    try {
      await until(() => /watching cluster events from revision \d+/.test(ev.output()), 'events stream established', 20_000);
      await ok('network', 'create', '-d', 'bridge', '--subnet', '10.95.9.0/24', 'ev-net');
      await ok('service', 'create', '--name', 'ev-web', '--', 'sleep', '600');
      await until(async () => (await running('ev-web')).length === 1, 'ev-web running', 20_000);
      await ok('service', 'scale', 'ev-web=0');
      await ok('service', 'rm', 'ev-web');
      await ok('network', 'rm', 'ev-net');
      await until(() => /service remove \w+ \(name=ev-web/.test(ev.output()) && /network remove \w+ \(name=ev-net/.test(ev.output()) && /desired=shutdown/.test(ev.output()), `events (${ev.output()})`);
      const out = ev.output();
      expect(out).toMatch(/\d{4}-\d\d-\d\dT[\d:.]+Z network create [0-9a-f]{16} \(name=ev-net, driver=bridge\)\n/);
      expect(out).toMatch(/service create \w+ \(name=ev-web, replicas=1\)/);
      expect(out).toMatch(/task create \w+ \(name=ev-web\.1\.\w+, state=(new|assigned)/);
      expect(out).toMatch(/task update \w+ \(name=ev-web\.1\.\w+, state=running, was=starting, desired=running/);
      expect(out).toMatch(/service update \w+ \(name=ev-web, replicas=0, replicasWas=1\)/);
      expect(out).toMatch(/task update \w+ \(name=ev-web\.1\.\w+, state=\w+, desired=shutdown, desiredWas=running/);
      expect(out).not.toMatch(/service update \w+ \(name=ev-web, replicas=1\)/); // the creation is not an update
    } finally {
      ev.child.kill('SIGTERM');
    }
  });

  it('--since replays, --until 0s stops after the replay; --filter and --format json', async () => {
    const all = await ok('events', '--since', new Date(t0).toISOString(), '--until', '0s');
    expect(all).toMatch(/network create \w+ \(name=ev-net/);
    expect(all).toMatch(/service remove \w+ \(name=ev-web/);
    const services = (await ok('events', '--since', new Date(t0).toISOString(), '--until', '0s', '--filter', 'type=service')).trim().split('\n');
    expect(services.map((l) => l.split(' ').slice(1, 3).join(' '))).toEqual(['service create', 'service update', 'service remove']);
    const creates = (await ok('events', '--since', '10m', '--until', '0s', '--filter', 'event=create', '--filter', 'name=ev-net', '--format', 'json')).trim().split('\n').map((l) => JSON.parse(l) as { Type: string; Action: string; Actor: { Attributes: Record<string, string> }; time: number });
    expect(creates).toHaveLength(1);
    expect(creates[0]).toMatchObject({ Type: 'network', Action: 'create', Actor: { Attributes: { name: 'ev-net', driver: 'bridge' } } });
    expect(creates[0]?.time).toBeGreaterThanOrEqual(Math.floor(t0 / 1000));
    expect(await ok('events', '--since', new Date(t0).toISOString(), '--until', '0s', '--filter', 'service=ev-web', '--filter', 'type=task', '--format', '{{.Action}} {{.Actor.Attributes.state}}')).toMatch(/^create (new|assigned)\n/);
  });

  it('says when --since reaches back before the manager kept events', async () => {
    const r = await cli('events', '--since', '2000-01-01T00:00:00Z', '--until', '0s', '--filter', 'type=node');
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/events before \S+ are not kept: a manager replays the events it saw since it started/);
    expect(r.out).toMatch(/node create \w+ \(name=cli-node/);
  });
});

describe('the shell', () => {
  it('exit statuses of the real binary: 0, 1 (the manager refused), 2 (usage)', () => {
    expect(proc.shoal('service', 'ls', '-q').code).toBe(0);
    expect(proc.shoal('service', 'rm', 'ghost').code).toBe(1);
    expect(proc.shoal('service', 'frob').code).toBe(2);
    expect(proc.shoal('service', 'ls', '--colour').code).toBe(2);
    const help = proc.shoal('service', 'create', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('--replicas N');
  });

  it('the completion script loads in a real bash (source <(shoal completion bash))', () => {
    const shoal = `${process.execPath} --import tsx ${SHOAL_MAIN}`;
    const r = spawnSync('bash', ['--norc', '-c', `source <(${shoal} completion bash) && complete -p shoal && COMP_WORDS=(shoal service ls --filter name=x --for); COMP_CWORD=5; _shoal; echo "\${COMPREPLY[@]}"`], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('complete -F _shoal shoal\n--format\n');
  });

  it('completes names from the running manager', () => {
    const shoal = `${process.execPath} --import tsx ${SHOAL_MAIN}`;
    // The script calls the same program as COMP_WORDS[0]: a wrapper named shoal on PATH.
    const bin = join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    spawnSync('bash', ['-c', `printf '#!/bin/sh\\nexec ${shoal} "$@"\\n' > ${bin}/shoal && chmod +x ${bin}/shoal`]);
    const r = spawnSync('bash', ['--norc', '-c', `source <(shoal completion bash); COMP_WORDS=(shoal service inspect fmt-); COMP_CWORD=3; _shoal; echo "\${COMPREPLY[@]}"`], {
      cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, SHOAL_HOST: url, SHOAL_TOKEN: token },
    });
    expect(r.stdout.trim().split(' ').sort()).toEqual(['fmt-a', 'fmt-b']);
  });
});
