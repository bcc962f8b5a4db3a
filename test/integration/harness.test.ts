/**
 * The multi-node harness itself (test/harness/cluster.ts): three nodes as namespaces on an
 * underlay bridge, an agent in each, one manager. What later tests rely on: nodes ready at
 * their underlay addresses, the underlay carries TCP from the client namespace, tasks are
 * spread over the nodes and run inside them, a dead agent's node goes down and its replica
 * moves, and `destroy()` leaves nothing behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, isAlive, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { leftovers, waitFor } from '../helpers/netns.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ nodes: 3, nodeTtlSeconds: 2 });
});

afterAll(() => destroyAllHarnesses());

/** Tasks of `service` that should run and do. */
async function runningTasks(service: string): Promise<Task[]> {
  const tasks = await h.json<Task[]>('service', 'ps', service);
  return tasks.filter((t) => t.desiredState === 'running' && t.status.state === 'running');
}

/** The harness node a task was scheduled on. */
async function nodeOfTask(t: Task): Promise<HarnessNode> {
  const byId = new Map((await h.json<Node[]>('node', 'ls')).map((n) => [n.id, n.name]));
  const node = h.nodes.find((n) => n.name === byId.get(t.nodeId));
  if (!node) throw new Error(`task ${t.id} is on an unknown node ${t.nodeId}`);
  return node;
}

/** The task's process lives in its node's netns (or in a task netns the node's agent named after it). */
async function expectInsideItsNode(t: Task): Promise<void> {
  const node = await nodeOfTask(t);
  expect(t.status.pid).toBeGreaterThan(1);
  const ns = h.netnsOf(t.status.pid ?? 0);
  expect(ns === node.netns || ns?.startsWith(`${node.netns}-`), `pid ${t.status.pid} of ${t.id} is in netns '${ns}', not in ${node.netns}`).toBe(true);
}

const LISTENER = `
const [host, answer] = process.argv.slice(1);
require('node:net').createServer((c) => c.end(answer)).listen(7070, host, () => console.log('listening'));
`;
const CONNECT = `
const [host, port] = process.argv.slice(1);
const c = require('node:net').connect(Number(port), host);
let got = '';
c.setTimeout(3000, () => { console.error('timed out'); process.exit(1); });
c.on('data', (d) => { got += d; });
c.on('end', () => process.stdout.write(got));
c.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

describe('multi-node harness', () => {
  it('joins every node at its underlay address', async () => {
    const nodes = await h.json<Node[]>('node', 'ls');
    const seen = nodes.map((n) => ({ name: n.name, address: n.address, state: n.state })).sort((a, b) => a.name.localeCompare(b.name));
    expect(seen).toEqual(h.nodes.map((n) => ({ name: n.name, address: n.address, state: 'ready' })));
    const net = h.subnet.split('.').slice(0, 3).join('.');
    expect(h.nodes.map((n) => n.address)).toEqual([`${net}.11`, `${net}.12`, `${net}.13`]);
    expect([h.manager.address, h.client.address]).toEqual([`${net}.2`, `${net}.3`]);
  });

  it('carries TCP from the client namespace to every node, and has no route off the underlay', async () => {
    const listeners = h.nodes.map((n) => n.spawn([process.execPath, '-e', LISTENER, n.address, n.name]));
    try {
      await waitFor('listeners', () => listeners.every((l) => {
        if (!l.running()) throw new Error(`listener exited: ${l.output()}`);
        return l.stdout().includes('listening');
      }), 10_000, 20);
      for (const n of h.nodes) {
        const r = await h.client.exec([process.execPath, '-e', CONNECT, n.address, '7070'], { timeoutMs: 10_000 });
        expect({ code: r.code, out: r.stdout, err: r.stderr }).toEqual({ code: 0, out: n.name, err: '' });
      }
      // Only the underlay's own subnet route (and the ingress network's bridge, inside the
      // node): no default route, nothing can leave towards the host.
      const routes = (await h.nodes[0]!.exec(['ip', '-4', 'route', 'show'])).stdout.trim().split('\n');
      const bridge = new RegExp(`^\\S+ dev ${h.nodes[0]!.linkPrefix()}b\\w+ proto kernel scope link `);
      expect(routes.filter((r) => !bridge.test(r))).toEqual([expect.stringMatching(new RegExp(`^${h.subnet.replace(/\./g, '\\.')} dev eth0 `))]);
    } finally {
      await Promise.all(listeners.map((l) => l.stop('SIGKILL')));
    }
  });

  it('spreads 3 replicas over the 3 nodes, each process inside its node', async () => {
    const created = await h.shoal('service', 'create', '--name', 'spread', '--replicas', '3', '--', 'sleep', '600');
    expect(created.err).toBe('');
    const tasks = await waitFor('3 running replicas', async () => {
      const r = await runningTasks('spread');
      return r.length === 3 && r;
    }, 20_000, 100);
    expect(new Set(tasks.map((t) => t.nodeId)).size).toBe(3);
    for (const t of tasks) await expectInsideItsNode(t);
  });

  it('marks a node whose agent died down and moves its replica to another node', async () => {
    const before = await runningTasks('spread');
    const victim = h.nodes[0]!;
    const victimId = (await h.json<Node[]>('node', 'ls')).find((n) => n.name === victim.name)?.id;
    const lost = before.find((t) => t.nodeId === victimId);
    expect(lost).toBeDefined();
    await victim.stopAgent('SIGKILL');
    await waitFor(`${victim.name} to be down`, async () => (await h.json<Node[]>('node', 'ls')).find((n) => n.id === victimId)?.state === 'down', 15_000, 100);
    const after = await waitFor('the replica to be rescheduled', async () => {
      const r = await runningTasks('spread');
      return r.length === 3 && r.every((t) => t.nodeId !== victimId) && r;
    }, 15_000, 100);
    const replacement = after.find((t) => t.slot === lost?.slot);
    expect(replacement?.id).not.toBe(lost?.id);
    if (replacement) await expectInsideItsNode(replacement);
    expect((await h.json<Task[]>('service', 'ps', 'spread')).find((t) => t.id === lost?.id)?.status.state).toBe('orphaned');
  });

  it('destroy() leaves no namespace, link, process or directory behind', async () => {
    const tasks = await h.json<Task[]>('service', 'ps', 'spread');
    const pids = [
      h.manager.process.pid,
      ...h.nodes.map((n) => n.agentProcess.pid),
      ...tasks.map((t) => t.status.pid).filter((p): p is number => p !== undefined),
    ];
    // The orphaned replica still runs: its agent was killed, so only the harness can end it.
    expect(pids.filter(isAlive).length).toBeGreaterThanOrEqual(6);
    await h.destroy();
    expect(await leftovers(h.prefix)).toEqual({ netns: [], links: [] });
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(h.prefix);
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain(h.prefix);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(existsSync(h.dir)).toBe(false);
    await h.destroy(); // idempotent
  });
});
