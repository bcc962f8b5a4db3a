/**
 * What a task's spec does to its process, on a 1-node harness (the agent runs tasks in their own
 * namespaces, as root): restart conditions with real exits (none, on-failure, any, max attempts
 * with a delay), the stop grace period (SIGTERM, then SIGKILL once it is over), `--env-file`,
 * `--hostname` (own UTS namespace), `--workdir`, `--user`, and memory/CPU limits through cgroup v1
 * (the values in the task's cgroups, and a task over its memory limit killed and reported).
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

let h: Harness;
const dir = mkdtempSync(join(tmpdir(), 'shoal-swarm-tasks-'));
chmodSync(dir, 0o777);

const ps = (service: string): Promise<Task[]> => h.json<Task[]>('service', 'ps', service);

async function ok(...args: string[]): Promise<string> {
  const r = await h.shoal(...args);
  expect(r.code, `shoal ${args.join(' ')}: ${r.err}`).toBe(0);
  return r.out;
}

/** The single task of `service` once `pred` holds for it. */
async function taskWhen(service: string, what: string, pred: (t: Task) => boolean, timeoutMs = 30_000): Promise<Task> {
  let last = '';
  try {
    return await until(async () => {
      const ts = await ps(service);
      last = JSON.stringify(ts.map((t) => [t.desiredState, t.status]));
      return ts.find(pred);
    }, `${service}: ${what}`, timeoutMs, 100);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last seen: ${last}\n${h.logs().slice(-2000)}`, { cause: e });
  }
}

/** Waits until the scheduler reacted to the end of the task (released it), then returns every task. */
async function settled(service: string): Promise<Task[]> {
  return until(async () => {
    const ts = await ps(service);
    return ts.every((t) => t.addressesReleased === true || t.desiredState === 'running') && ts.some((t) => t.addressesReleased) ? ts : undefined;
  }, `${service} settled`, 15_000, 100);
}

beforeAll(async () => {
  h = await startHarness({ nodes: 1 });
  await ok('network', 'create', '--subnet', '10.75.0.0/24', 'app');
}, 120_000);

afterAll(async () => {
  // Services first: their agent stops the tasks and removes their cgroups.
  for (const s of await h.json<Service[]>('service', 'ls').catch(() => [])) await h.shoal('service', 'rm', s.spec.name);
  await until(async () => (await h.json<Task[]>('service', 'ps', 'lim').catch(() => [])).length === 0, 'limited tasks gone', 15_000, 100).catch(() => undefined);
  await destroyAllHarnesses();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('restart policy with real processes', () => {
  it('none: a task that fails ends failed and stays so (no replacement)', async () => {
    await ok('service', 'create', '--name', 'once', '--restart-condition', 'none', '--network', 'app', '--', 'sh', '-c', 'exit 3');
    const t = await taskWhen('once', 'failed', (x) => x.status.state === 'failed');
    expect(t.status.exitCode).toBe(3);
    expect(t.status.message).toBe('failed (exit code 3); restart policy none: not restarted');
    const all = await settled('once');
    expect(all).toHaveLength(1);
    expect(all[0]?.desiredState).toBe('shutdown');
    expect(await ok('service', 'ps', 'once')).toMatch(/Shutdown\s+Failed/);
  });

  it('on-failure: a task that exits 0 ends complete', async () => {
    await ok('service', 'create', '--name', 'job', '--restart-condition', 'on-failure', '--', 'sh', '-c', 'exit 0');
    const t = await taskWhen('job', 'complete', (x) => x.status.state === 'complete');
    expect(t.status.message).toMatch(/^completed \(exit code 0\); restart policy on-failure: not restarted after a success$/);
    expect(await settled('job')).toHaveLength(1);
  });

  it('on-failure with max attempts: restarted that many times (after the delay), then failed for good', async () => {
    const runs = join(dir, 'runs');
    await ok('service', 'create', '--name', 'flaky', '--restart-condition', 'on-failure', '--restart-max-attempts', '2', '--restart-delay', '100ms', '--',
      'sh', '-c', `echo run >> ${runs}; exit 1`);
    const t = await taskWhen('flaky', 'failed', (x) => x.status.state === 'failed');
    expect(t.status.restarts).toBe(2);
    expect(t.status.message).toBe('failed (exit code 1); restart policy reached its 2 attempts: not restarted');
    expect(readFileSync(runs, 'utf8')).toBe('run\nrun\nrun\n');
    expect(await settled('flaky')).toHaveLength(1);
  });

  it('any (the default) restarts a process that exits 0 too', async () => {
    const runs = join(dir, 'any-runs');
    await ok('service', 'create', '--name', 'looper', '--restart-delay', '50ms', '--restart-max-attempts', '3', '--', 'sh', '-c', `echo run >> ${runs}`);
    const t = await taskWhen('looper', 'complete after its attempts', (x) => x.status.state === 'complete');
    expect(t.status.restarts).toBe(3);
    expect(readFileSync(runs, 'utf8').split('\n').filter(Boolean)).toHaveLength(4);
  });

  it('a changed spec replaces a task its policy ended', async () => {
    await ok('service', 'update', '--restart-condition', 'any', '--restart-max-attempts', '0', 'job', '--', 'sleep', '600');
    await taskWhen('job', 'a new running task', (x) => x.status.state === 'running');
    await ok('service', 'rm', 'job');
  });
});

describe('stop grace period', () => {
  // SIGTERM makes the task log it and exit 3 s later (its clean-up); SIGKILL cuts that short.
  const script = (file: string): string => `trap 'echo term >> ${file}; sleep 3; echo clean-exit >> ${file}; exit 0' TERM; echo started >> ${file}; while true; do sleep 0.1; done`;

  it.each<[string, string, string[]]>([
    ['a short grace period kills the task before its clean-up ends', '500ms', ['started', 'term']],
    ['a long one lets it finish', '30s', ['started', 'term', 'clean-exit']],
  ])('%s', async (_n, grace, want) => {
    const file = join(dir, `grace-${grace}`);
    const name = `grace${grace.replace(/\D/g, '')}`;
    await ok('service', 'create', '--name', name, '--stop-grace-period', grace, '--drain-timeout', '0', '--', 'sh', '-c', script(file));
    const t = await taskWhen(name, 'running', (x) => x.status.state === 'running');
    await until(() => existsSync(file), 'the task started');
    await ok('service', 'rm', name);
    // Once its process is gone the file is final.
    await until(() => !existsSync(`/proc/${t.status.pid}`), `the process of ${name} ended`, 40_000, 100);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toEqual(want);
  });
});

describe('environment, host name, working directory, user', () => {
  it('--env-file, overridden by -e', async () => {
    const envFile = join(dir, 'app.env');
    writeFileSync(envFile, '# settings\nA=from-file\nB=from-file\nC=with spaces\n');
    const out = join(dir, 'env-out');
    await ok('service', 'create', '--name', 'envy', '--env-file', envFile, '-e', 'B=from-flag', '--', 'sh', '-c', `echo "$A|$B|$C" > ${out}; sleep 600`);
    await until(() => existsSync(out) && readFileSync(out, 'utf8').endsWith('\n'), 'env written', 30_000, 100);
    expect(readFileSync(out, 'utf8')).toBe('from-file|from-flag|with spaces\n');
    expect((await h.json<Service[]>('service', 'inspect', 'envy'))[0]?.spec.env).toEqual({ A: 'from-file', B: 'from-flag', C: 'with spaces' });
    await ok('service', 'rm', 'envy');
  });

  it('--hostname in its own UTS namespace, --workdir, --user', async () => {
    const work = mkdtempSync(join(dir, 'work-'));
    chmodSync(work, 0o777);
    await ok('service', 'create', '--name', 'who', '--hostname', 'web-7', '--workdir', work, '--user', 'nobody', '--',
      'sh', '-c', 'echo "$(hostname)|$(pwd)|$(id -u)|$(id -g)" > out; sleep 600');
    const out = join(work, 'out');
    await until(() => existsSync(out) && readFileSync(out, 'utf8').endsWith('\n'), 'who wrote its identity', 30_000, 100);
    const nobody = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'))?.split(':') ?? [];
    expect(readFileSync(out, 'utf8')).toBe(`web-7|${work}|${nobody[2]}|${nobody[3]}\n`);
    expect(hostname()).not.toBe('web-7'); // the node's own name is untouched
    await ok('service', 'rm', 'who');
  });

  it('a working directory or user missing on the node: the task fails with the reason', async () => {
    await ok('service', 'create', '--name', 'lost', '--workdir', '/nonexistent/dir', '--restart-condition', 'none', '--', 'true');
    const t = await taskWhen('lost', 'failed', (x) => x.status.state === 'failed');
    expect(t.status.message).toMatch(/^cannot start: working directory \/nonexistent\/dir does not exist on this node; failed/);
    expect(await ok('service', 'ps', 'lost')).toContain('working directory /nonexistent/dir does not exist');
    await ok('service', 'create', '--name', 'ghost', '--user', 'ghost-user', '--restart-condition', 'none', '--', 'true');
    const g = await taskWhen('ghost', 'failed', (x) => x.status.state === 'failed');
    expect(g.status.message).toMatch(/user 'ghost-user' does not exist on this node/);
  });
});

describe('resource limits (cgroup v1)', () => {
  const cgroupOf = (pid: number, controller: string): string => {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller)) ?? '';
    const mount = controller === 'memory' ? '/sys/fs/cgroup/memory' : '/sys/fs/cgroup/cpu';
    return join(mount, line.split(':')[2] ?? '');
  };

  it('--limit-memory and --limit-cpu put the task in cgroups with those limits', async () => {
    await ok('service', 'create', '--name', 'lim', '--limit-memory', '64m', '--limit-cpu', '0.5', '--', 'sleep', '600');
    const t = await taskWhen('lim', 'running', (x) => x.status.state === 'running');
    const pid = t.status.pid as number;
    const mem = cgroupOf(pid, 'memory');
    const cpu = cgroupOf(pid, 'cpu');
    expect(mem).toMatch(new RegExp(`/shoal/${t.id}$`));
    expect(readFileSync(join(mem, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(join(cpu, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('50000');
    expect(readFileSync(join(cpu, 'cpu.cfs_period_us'), 'utf8').trim()).toBe('100000');
    const svc = (await h.json<Service[]>('service', 'inspect', 'lim'))[0];
    expect(svc?.spec.resources).toEqual({ limits: { memoryBytes: 64 * 1024 * 1024, nanoCpus: 500_000_000 } });
    // Removing the service removes the task's cgroups.
    await ok('service', 'rm', 'lim');
    await until(() => !existsSync(mem) && !existsSync(cpu), 'the task\'s cgroups removed', 30_000, 100);
  });

  it('a task over its memory limit is killed and reported out of memory', async () => {
    await ok('service', 'create', '--name', 'hog', '--limit-memory', '32m', '--restart-condition', 'none', '--', 'python3', '-c', 'x = bytearray(256 * 1024 * 1024); import time; time.sleep(60)');
    const t = await taskWhen('hog', 'failed', (x) => x.status.state === 'failed');
    expect(t.status.message).toMatch(/^out of memory \(killed at its memory limit\); failed \(killed by SIGKILL\)/);
  });
});
