/**
 * Global services and placement constraints on a 3-node harness (real agents, task processes in
 * their own namespaces): a global service runs one task per node, loses it on a draining node
 * and gets it back, loses it on a node that leaves and gets one on a node that joins; node labels
 * (`node update --label-add/--label-rm`) steer a constrained service, a service no node can take
 * stays pending with Docker's reason in `service ps`, and is placed once a label makes a node fit.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

let h: Harness;
let n1: HarnessNode, n2: HarnessNode, n3: HarnessNode;

const nodes = async (): Promise<Node[]> => h.json<Node[]>('node', 'ls');
const idOf = async (n: HarnessNode): Promise<string> => (await nodes()).find((x) => x.name === n.name)?.id ?? '';
const live = (ts: Task[]): Task[] => ts.filter((t) => t.desiredState === 'running' && !['complete', 'failed', 'shutdown', 'orphaned'].includes(t.status.state));

/** The service's running tasks, once they are exactly on `want` (node names), one each unless counted. */
async function runningOn(service: string, want: string[]): Promise<Task[]> {
  const byId = new Map((await nodes()).map((n) => [n.id, n.name]));
  let last = '';
  try {
    return await until(async () => {
      const ts = live(await h.json<Task[]>('service', 'ps', service));
      const names = ts.map((t) => byId.get(t.nodeId) ?? `?${t.nodeId}`).sort();
      last = `${names.join(',')} (${ts.map((t) => t.status.state).join(',')})`;
      return ts.every((t) => t.status.state === 'running') && JSON.stringify(names) === JSON.stringify([...want].sort()) ? ts : undefined;
    }, `${service} running on ${want.join(', ')}`, 30_000, 100);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last seen: ${last}\n${h.logs().slice(-3000)}`, { cause: e });
  }
}

async function ok(...args: string[]): Promise<string> {
  const r = await h.shoal(...args);
  expect(r.code, `shoal ${args.join(' ')}: ${r.err}`).toBe(0);
  return r.out;
}

beforeAll(async () => {
  h = await startHarness({ nodes: 3, nodeTtlSeconds: 2 });
  [n1, n2, n3] = h.nodes as [HarnessNode, HarnessNode, HarnessNode];
  await ok('network', 'create', '--subnet', '10.74.0.0/24', 'app');
}, 120_000);

afterAll(async () => {
  await destroyAllHarnesses();
}, 120_000);

describe('global services', () => {
  it('run one task per node, listed as global N/N', async () => {
    await ok('service', 'create', '--name', 'mon', '--mode', 'global', '--network', 'app', '--', 'sleep', '600');
    const ts = await runningOn('mon', [n1.name, n2.name, n3.name]);
    expect(ts.every((t) => t.slot === 0)).toBe(true);
    expect(await ok('service', 'ls')).toMatch(/mon\s+global\s+3\/3/);
    // Named after their node, as in Docker: mon.<node id>, in service ps and in DNS.
    const ps = await ok('service', 'ps', 'mon');
    for (const t of ts) expect(ps).toContain(`mon.${t.nodeId}`);
    const [first] = ts as [Task];
    const ns = `${(await nodes()).find((n) => n.id === first.nodeId)?.name}-${first.id}`;
    const dig = async (name: string): Promise<string[]> => {
      const r = await h.nodes[0]!.exec(['ip', 'netns', 'exec', ns, 'dig', '+short', '+time=2', '+tries=2', name]);
      return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean).sort();
    };
    const addrs = ts.map((t) => Object.values(t.addresses)[0]?.v4 ?? '').sort();
    expect(await until(async () => ((await dig('tasks.mon')).length === 3 ? dig('tasks.mon') : undefined), 'tasks.mon', 10_000, 200)).toEqual(addrs);
    const other = ts[1] as Task;
    expect(await dig(`mon.${other.nodeId}.${other.id}`)).toEqual([Object.values(other.addresses)[0]?.v4]);
  });

  it('a draining node loses its task; back to active, it gets one again', async () => {
    await ok('node', 'update', '--availability', 'drain', n2.name);
    await runningOn('mon', [n1.name, n3.name]);
    expect(await ok('service', 'ls')).toMatch(/mon\s+global\s+2\/2/);
    await ok('node', 'update', '--availability', 'active', n2.name);
    await runningOn('mon', [n1.name, n2.name, n3.name]);
  });

  it('a node that leaves loses its task (nothing moves elsewhere); a node that joins gets one', async () => {
    const oldId = await idOf(n3);
    await n3.stopAgent('SIGKILL');
    await until(async () => (await nodes()).find((n) => n.id === oldId)?.state === 'down', 'n3 down', 15_000, 100);
    await runningOn('mon', [n1.name, n2.name]);
    const all = await h.json<Task[]>('service', 'ps', 'mon');
    expect(all.find((t) => t.nodeId === oldId)?.status.state).toBe('orphaned');
    // Removed (its certificate revoked), it joins again as a new node (a new id) once its old
    // identity is gone (Docker's `swarm leave`), and gets a task of its own.
    await ok('node', 'rm', n3.name);
    rmSync(join(n3.dataDir, 'tls'), { recursive: true, force: true });
    await n3.startAgent();
    const newId = await idOf(n3);
    expect(newId).not.toBe(oldId);
    const ts = await runningOn('mon', [n1.name, n2.name, n3.name]);
    expect(ts.some((t) => t.nodeId === newId)).toBe(true);
    await ok('service', 'rm', 'mon');
  });
});

describe('placement constraints on node labels', () => {
  it('node update --label-add / --label-rm', async () => {
    await ok('node', 'update', '--label-add', 'zone=a', '--label-add', 'ssd', n1.name);
    let n = (await h.json<Node[]>('node', 'inspect', n1.name))[0];
    expect(n?.labels).toEqual({ zone: 'a', ssd: '' });
    await ok('node', 'update', '--label-rm', 'ssd', n1.name);
    n = (await h.json<Node[]>('node', 'inspect', n1.name))[0];
    expect(n?.labels).toEqual({ zone: 'a' });
    const missing = await h.shoal('node', 'update', '--label-rm', 'nope', n1.name);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/label 'nope' on node '.*' not found/);
  });

  it('a constrained service runs only where the label matches', async () => {
    await ok('service', 'create', '--name', 'zoned', '--replicas', '2', '--constraint', 'node.labels.zone==a', '--network', 'app', '--', 'sleep', '600');
    await runningOn('zoned', [n1.name, n1.name]);
    await ok('service', 'create', '--name', 'notn1', '--replicas', '2', '--constraint', `node.hostname!=${n1.name}`, '--', 'sleep', '600');
    await runningOn('notn1', [n2.name, n3.name]);
    await ok('service', 'rm', 'notn1');
  });

  it('no node fits: the task stays pending and service ps says why (Docker\'s words)', async () => {
    await ok('service', 'create', '--name', 'nowhere', '--constraint', 'node.labels.zone==b', '--', 'sleep', '600');
    const ps = await until(async () => {
      const out = await ok('service', 'ps', 'nowhere');
      return /Pending/.test(out) ? out : undefined;
    }, 'a pending task', 10_000, 100);
    expect(ps).toContain('no suitable node (scheduling constraints not satisfied on 3 nodes)');
    const [t] = await h.json<Task[]>('service', 'ps', 'nowhere');
    expect(t?.nodeId).toBe('');
    expect(t?.status.state).toBe('pending');
    // A label that makes a node fit: the pending task is placed there and runs.
    await ok('node', 'update', '--label-add', 'zone=b', n2.name);
    await runningOn('nowhere', [n2.name]);
    // A node draining changes the reason.
    await ok('node', 'update', '--availability', 'drain', n2.name);
    const again = await until(async () => {
      const out = await ok('service', 'ps', 'nowhere');
      return out.includes('no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes)') ? out : undefined;
    }, 'pending again, with the drained node counted', 15_000, 100);
    expect(again).toMatch(/Pending/);
    await ok('node', 'update', '--availability', 'active', n2.name);
    await runningOn('nowhere', [n2.name]);
    await ok('service', 'rm', 'nowhere');
  });

  it('removing the label moves the tasks to a node that fits', async () => {
    await ok('node', 'update', '--label-add', 'zone=a', n3.name);
    await ok('node', 'update', '--label-rm', 'zone', n1.name);
    await runningOn('zoned', [n3.name, n3.name]);
    const svc = (await h.json<Service[]>('service', 'inspect', 'zoned'))[0];
    expect(svc?.spec.constraints).toEqual(['node.labels.zone==a']);
  });

  it('service update --constraint-add / --constraint-rm edit the list', async () => {
    await ok('service', 'update', '--constraint-add', `node.hostname==${n2.name}`, 'zoned');
    // zone==a (n3 only) and hostname==n2: no node fits both.
    await until(async () => live(await h.json<Task[]>('service', 'ps', 'zoned')).every((t) => t.status.state === 'pending'), 'zoned pending', 15_000, 100);
    await ok('service', 'update', '--constraint-rm', 'node.labels.zone==a', 'zoned');
    await runningOn('zoned', [n2.name, n2.name]);
    expect((await h.json<Service[]>('service', 'inspect', 'zoned'))[0]?.spec.constraints).toEqual([`node.hostname==${n2.name}`]);
    const pretty = await ok('service', 'inspect', '--pretty', 'zoned');
    expect(pretty).toContain(` Constraints:\t[node.hostname==${n2.name}]`);
    await ok('service', 'rm', 'zoned');
  });
});
