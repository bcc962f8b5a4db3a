/**
 * Rolling updates and rollbacks on a 2-node harness, observed from the task list and through the
 * service's VIP: a start-first update replaces one task at a time and a client inside the
 * cluster, asking the VIP all along, sees no error (and both the old and the new replicas); a
 * stop-first update stops each old task before its replacement is created; a new spec that
 * crashes pauses the update (default) or rolls it back (`--update-failure-action rollback`);
 * `service rollback` goes back to the previous spec; a stale version is refused and changes nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Service, Task } from '../../src/model/types.js';
import { servesTraffic } from '../../src/model/serving.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const LOOP = fileURLToPath(new URL('../fixtures/http-loop.mjs', import.meta.url));
const HEALTH = ['--health-type', 'http', '--health-port', '80', '--health-path', '/health', '--health-interval', '200', '--health-retries', '2', '--health-timeout', '500'];

let h: Harness;
const nodeName = new Map<string, string>();
const children: ChildProcess[] = [];

const ps = (service: string): Promise<Task[]> => h.json<Task[]>('service', 'ps', service);
const inspect = async (service: string): Promise<Service> => (await h.json<Service[]>('service', 'inspect', service))[0] as Service;
const ms = (iso: string): number => Date.parse(iso);

async function ok(...args: string[]): Promise<string> {
  const r = await h.shoal(...args);
  expect(r.code, `shoal ${args.join(' ')}: ${r.err}`).toBe(0);
  return r.out;
}

async function serving(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await ps(service)).filter(servesTraffic);
    return ts.length === n ? ts : undefined;
  }, `${n} serving tasks of ${service}`, 60_000, 100);
}

/** Waits for the service's update status to reach `state`; returns the service. */
async function updateState(service: string, state: string, timeoutMs = 60_000): Promise<Service> {
  let last = '';
  try {
    return await until(async () => {
      const s = await inspect(service);
      last = JSON.stringify(s.updateStatus);
      return s.updateStatus?.state === state ? s : undefined;
    }, `${service} update ${state}`, timeoutMs, 100);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last: ${last}\n${h.logs().slice(-3000)}`, { cause: e });
  }
}

beforeAll(async () => {
  h = await startHarness({ nodes: 2 });
  for (const n of await h.json<Node[]>('node', 'ls')) nodeName.set(n.id, n.name);
  await ok('network', 'create', '--subnet', '10.76.0.0/24', 'app');
  await ok('service', 'create', '--name', 'web', '--replicas', '3', '--network', 'app', ...HEALTH, '-e', 'PORT=80',
    '--update-order', 'start-first', '--update-parallelism', '1', '--update-monitor', '500ms', '--', process.execPath, BACKEND);
  await ok('service', 'create', '--name', 'probe', '--network', 'app', '--', 'sleep', '600');
  await serving('web', 3);
  await serving('probe', 1);
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.pid) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  await destroyAllHarnesses();
}, 120_000);

describe('rolling update', () => {
  it('start-first: one task at a time, and the VIP keeps answering all along', async () => {
    const before = await serving('web', 3);
    const [probe] = await serving('probe', 1) as [Task];
    // A client inside the cluster asks `web` (its VIP, by name) until told to stop.
    const client = spawn('ip', ['netns', 'exec', `${nodeName.get(probe.nodeId)}-${probe.id}`, process.execPath, LOOP, 'web', '80'], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(client);
    let out = '';
    client.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const done = new Promise<void>((r) => client.on('exit', () => r()));
    // Watch the task list during the update: never fewer than 3 serving, never two new tasks starting at once.
    let watching = true;
    let minServing = Infinity, maxStarting = 0, samples = 0;
    const watcher = (async () => {
      while (watching) {
        const ts = await ps('web');
        const svc = await inspect('web');
        const fresh = ts.filter((t) => t.serviceVersion === svc.version && t.desiredState === 'running');
        minServing = Math.min(minServing, ts.filter(servesTraffic).length);
        maxStarting = Math.max(maxStarting, fresh.filter((t) => !servesTraffic(t)).length);
        samples++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await until(async () => out === '' && client.exitCode === null, 'client running', 2000);
    await ok('service', 'update', '-e', 'PORT=80', '-e', 'VERSION=2', 'web');
    const svc = await updateState('web', 'completed');
    watching = false;
    await watcher;
    client.stdin.end();
    await done;
    const result = JSON.parse(out.trim()) as { ok: number; errors: string[]; seen: Record<string, number> };
    expect(result.errors).toEqual([]);
    expect(result.ok).toBeGreaterThan(20);
    expect(samples).toBeGreaterThan(5);
    expect(minServing).toBeGreaterThanOrEqual(3);
    expect(maxStarting).toBeLessThanOrEqual(1);

    // The record: each replacement was created after the previous one became ready, and each old
    // task stopped after its replacement was ready (the last ones may still be draining).
    const all = await until(async () => {
      const ts = await ps('web');
      return before.every((o) => ts.find((t) => t.id === o.id)?.status.state === 'shutdown') ? ts : undefined;
    }, 'old tasks shut down', 30_000, 100);
    const fresh = all.filter((t) => t.serviceVersion === svc.version && servesTraffic(t)).sort((a, b) => ms(a.createdAt) - ms(b.createdAt));
    expect(fresh).toHaveLength(3);
    for (let i = 1; i < fresh.length; i++) expect(ms(fresh[i]?.createdAt ?? '')).toBeGreaterThanOrEqual(ms(fresh[i - 1]?.status.since ?? ''));
    for (const old of before) {
      const now = all.find((t) => t.id === old.id) as Task;
      expect(now.status.state).toBe('shutdown');
      const replacement = fresh.find((t) => t.slot === old.slot) as Task;
      expect(ms(now.status.since)).toBeGreaterThanOrEqual(ms(replacement.status.since));
    }
    // Both generations answered the client.
    const names = Object.keys(result.seen);
    expect(names.some((n) => before.some((t) => n.endsWith(t.id)))).toBe(true);
    expect(names.some((n) => fresh.some((t) => n.endsWith(t.id)))).toBe(true);
    expect(svc.previousSpec?.env).toEqual({ PORT: '80' });
    expect(svc.spec.env).toEqual({ PORT: '80', VERSION: '2' });
  });

  it('stop-first (the default): each old task ends before its replacement is created', async () => {
    await ok('service', 'create', '--name', 'api', '--replicas', '2', '--update-monitor', '200ms', '--', 'sleep', '600');
    const before = await serving('api', 2);
    await ok('service', 'update', 'api', '--', 'sleep', '601');
    const svc = await updateState('api', 'completed');
    const all = await ps('api');
    const fresh = all.filter((t) => t.serviceVersion === svc.version && servesTraffic(t)).sort((a, b) => ms(a.createdAt) - ms(b.createdAt));
    expect(fresh).toHaveLength(2);
    for (const old of before) {
      const ended = all.find((t) => t.id === old.id) as Task;
      const replacement = fresh.find((t) => t.slot === old.slot) as Task;
      expect(ended.status.state).toBe('shutdown');
      expect(ms(replacement.createdAt)).toBeGreaterThanOrEqual(ms(ended.status.since));
    }
    expect(ms(fresh[1]?.createdAt ?? '')).toBeGreaterThanOrEqual(ms(fresh[0]?.status.since ?? ''));
    // --force replaces every task although nothing else changed.
    await ok('service', 'update', '--force', 'api');
    const forced = await updateState('api', 'completed');
    expect(forced.spec.forceUpdate).toBe(1);
    const now = (await ps('api')).filter(servesTraffic);
    expect(now).toHaveLength(2);
    expect(now.some((t) => fresh.some((f) => f.id === t.id))).toBe(false);
  });

  it('a crashing new spec pauses the update (default failure action): the other old task keeps running', async () => {
    // With a health check a replacement is ready only once healthy: a crashing one never is, so
    // the update cannot move on to the next task before the failure is seen.
    await ok('service', 'create', '--name', 'frail', '--replicas', '2', '--restart-delay', '200ms', '--network', 'app', ...HEALTH, '-e', 'PORT=80', '--', process.execPath, BACKEND);
    const before = await serving('frail', 2);
    await ok('service', 'update', 'frail', '--', 'sh', '-c', 'exit 1');
    const svc = await updateState('frail', 'paused');
    expect(svc.updateStatus?.message).toMatch(/^update paused due to failure or early termination of task [0-9a-f]+$/);
    const tasks = await ps('frail');
    const still = tasks.filter(servesTraffic);
    expect(still, JSON.stringify(tasks.map((t) => [t.id, t.desiredState, t.status, t.specHash]), null, 1)).toHaveLength(1);
    expect(before.map((t) => t.id)).toContain(still[0]?.id);
    // Docker's `service update --rollback`: back to the previous spec, rolled out with the rollback config.
    expect((await ok('service', 'update', '--rollback', 'frail')).trim()).toBe('frail');
    const back = await updateState('frail', 'rollback_completed');
    expect(back.spec.command).toEqual([process.execPath, BACKEND]);
    expect(back.previousSpec?.command).toEqual(['sh', '-c', 'exit 1']);
    await serving('frail', 2);
  });

  it('--update-failure-action rollback: the previous spec comes back by itself', async () => {
    await ok('service', 'create', '--name', 'auto', '--replicas', '2', '--restart-delay', '200ms', '--update-failure-action', 'rollback', '--rollback-monitor', '200ms', '--', 'sleep', '600');
    await serving('auto', 2);
    await ok('service', 'update', 'auto', '--', 'sh', '-c', 'exit 1');
    const back = await updateState('auto', 'rollback_completed');
    expect(back.spec.command).toEqual(['sleep', '600']);
    expect(back.previousSpec?.command).toEqual(['sh', '-c', 'exit 1']);
    const ts = await serving('auto', 2);
    expect(ts.every((t) => t.serviceVersion === back.version)).toBe(true);
    expect((await ps('auto')).some((t) => t.status.restarts !== undefined && t.status.restarts > 0)).toBe(true);
  });

  it('service rollback after a good update, and a stale version changes nothing', async () => {
    const cur = await inspect('web');
    const stale = await h.shoal('service', 'rollback', '--version', String(cur.version - 1), 'web');
    expect(stale.code).toBe(1);
    expect(stale.err).toMatch(/is at version \d+, not \d+: it changed since you read it/);
    const staleUpdate = await h.shoal('service', 'update', '--version', String(cur.version - 1), '--replicas', '5', 'web');
    expect(staleUpdate.code).toBe(1);
    expect(await inspect('web')).toEqual(cur);
    await ok('service', 'rollback', '--version', String(cur.version), 'web');
    const back = await updateState('web', 'rollback_completed');
    expect(back.spec.env).toEqual({ PORT: '80' });
    expect(back.version).toBe(cur.version + 1);
    await serving('web', 3);
    const never = await h.shoal('service', 'rollback', 'probe');
    expect(never.code).toBe(1);
    expect(never.err).toMatch(/service 'probe' has no previous spec to roll back to/);
  });
});
