/**
 * The real processes: `shoal manager` and `shoal agent` as separate programs on a durable data
 * dir. A manager killed with SIGKILL comes back with its state and the agent resumes; an agent
 * killed with SIGKILL comes back and adopts the task processes it had started (same pids).
 * `shoal events` prints changes as they happen, with Docker's verbs and task state transitions.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Task } from '../../src/model/types.js';
import { until } from '../helpers/cluster.js';
import { freePort, shoalCli, startShoal } from '../helpers/shoal-process.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-daemon-'));
const mgrDir = join(dir, 'manager');
const agentDir = join(dir, 'agent');
let port = 0;
let url = '';
let token = '';
let joinToken = '';
const children = new Set<ChildProcess>();

const start = (args: string[]): ReturnType<typeof startShoal> => startShoal(args, children);

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

const { shoal, json } = shoalCli(() => ({ url, token }));

async function startManager(): Promise<ChildProcess> {
  const m = start(['manager', '--data-dir', mgrDir, '--listen', `127.0.0.1:${port}`, '--node-ttl', '3', '--metrics-addr', '127.0.0.1:0']);
  managerOutput = m.output;
  await until(() => /join token: (\S+)/.exec(m.output())?.[1], `manager to start (${m.output()})`, 20_000);
  joinToken = /join token: (\S+)/.exec(m.output())?.[1] ?? '';
  return m.child;
}

function startAgent(): ReturnType<typeof start> {
  return start(['agent', '--join', url, '--token', joinToken, '--data-dir', agentDir, '--name', 'worker-1', '--address', '127.0.0.1', '--metrics-addr', '127.0.0.1:0', '--isolation', 'none']);
}

/** Every task pid the test saw, so cleanup can end them even if the cluster could not. */
const seenPids = new Set<number>();
const runningTasks = (): Task[] => {
  const ts = json<Task[]>('service', 'ps', 'web').filter((t) => t.desiredState === 'running' && t.status.state === 'running');
  for (const t of ts) if (t.status.pid) seenPids.add(t.status.pid);
  return ts;
};
const pidAlive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

let manager: ChildProcess;
let managerOutput: () => string = () => '';
let agent: ReturnType<typeof start>;

beforeAll(async () => {
  port = await freePort();
  url = `https://127.0.0.1:${port}`;
  manager = await startManager();
  token = (await import('node:fs')).readFileSync(join(mgrDir, 'manager.token'), 'utf8').trim();
  agent = startAgent();
  await until(() => json<Node[]>('node', 'ls').some((n) => n.name === 'worker-1' && n.state === 'ready'), 'agent joined', 20_000);
});

afterAll(async () => {
  // Stop the tasks through the cluster, then the daemons; then any task process still alive.
  try { runningTasks(); } catch { /* the manager may be down: seenPids has what we know */ }
  const pids = [...seenPids];
  const rm = shoal('service', 'rm', 'web');
  if (rm.code !== 0 || pids.length === 0) console.error('daemon test cleanup:', rm, pids);
  await until(() => pids.every((p) => !pidAlive(p)), 'task processes stopped', 15_000).catch(() => undefined);
  for (const c of [...children]) await kill(c, 'SIGTERM');
  for (const p of pids) if (pidAlive(p)) process.kill(-p, 'SIGKILL');
  await until(() => pids.every((p) => !pidAlive(p)), 'no task process left');
  rmSync(dir, { recursive: true, force: true });
});

describe('shoal manager and shoal agent as processes', () => {
  it('runs a service and streams events', async () => {
    const ev = start(['events', '--host', url, '--token', token]);
    await until(() => /watching cluster events from revision \d+/.test(ev.output()), 'events stream established', 20_000);
    expect(shoal('network', 'create', '--subnet', '10.93.0.0/24', 'app').code).toBe(0);
    expect(shoal('service', 'create', '--name', 'web', '--replicas', '2', '--network', 'app', '--', 'sleep', '600').code).toBe(0);
    await until(() => runningTasks().length === 2, '2 running tasks', 20_000);
    // Docker's verbs: a creation is a create (the issue: it was printed as update).
    await until(() => /network create \w+ \(name=app, driver=overlay\)/.test(ev.output()) && /service create \w+ \(name=web, replicas=2\)/.test(ev.output()), 'events printed');
    expect(ev.output()).toMatch(/task update \w+ \(name=web\.\d\.\w+, state=running, was=starting/);
    await kill(ev.child, 'SIGTERM');
  });

  it('serves Prometheus metrics on the manager and on the agent', async () => {
    const scrape = async (output: () => string): Promise<string> => {
      const u = await until(() => /metrics: (http:\/\/\S+)/.exec(output())?.[1], 'metrics address printed');
      const res = await fetch(u);
      expect(res.headers.get('content-type')).toMatch(/text\/plain/);
      return res.text();
    };
    const mgr = await scrape(managerOutput);
    expect(mgr).toMatch(/^shoal_cluster_nodes\{state="ready"\} 1$/m);
    expect(mgr).toMatch(/^shoal_cluster_tasks\{state="running"\} 2$/m);
    expect(mgr).toMatch(/^shoal_store_revision \d+$/m);
    expect(mgr).toMatch(/^shoal_manager_sync_failures_total\{component="scheduler"\} \d+$/m);
    const ag = await scrape(agent.output);
    expect(ag).toMatch(/^shoal_agent_connected 1$/m);
    expect(ag).toMatch(/^shoal_agent_tasks 2$/m);
    expect(ag).toMatch(/^shoal_agent_sync_failures_total 0$/m);
  });

  it('survives kill -9 of the manager: state is kept and the agent resumes', async () => {
    const before = runningTasks().map((t) => t.id).sort();
    await kill(manager, 'SIGKILL');
    manager = await startManager();
    expect(json<Array<{ name: string }>>('network', 'ls').map((n) => n.name)).toContain('app');
    expect(runningTasks().map((t) => t.id).sort()).toEqual(before);
    // The agent's session comes back: the node stays ready past its lease TTL and a new change reaches it.
    expect(shoal('service', 'scale', 'web=3').code).toBe(0);
    await until(() => runningTasks().length === 3, 'scaled to 3 after the manager restart', 20_000);
    expect(json<Node[]>('node', 'ls').find((n) => n.name === 'worker-1')?.state).toBe('ready');
  });

  it('survives kill -9 of the agent: it adopts its task processes', async () => {
    const before = runningTasks();
    const pids = before.map((t) => t.status.pid).sort();
    await kill(agent.child, 'SIGKILL');
    for (const p of pids) expect(pidAlive(p as number)).toBe(true);
    agent = startAgent();
    await until(() => agent.output().length > 0 && runningTasks().every((t) => /adopted/.test(t.status.message)) && runningTasks().length === 3, 'tasks adopted', 20_000);
    const after = runningTasks();
    expect(after.map((t) => t.id).sort()).toEqual(before.map((t) => t.id).sort());
    expect(after.map((t) => t.status.pid).sort()).toEqual(pids);
  });
});
