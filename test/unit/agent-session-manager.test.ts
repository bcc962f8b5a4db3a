/**
 * The manager's side of an agent session (handleAgentSession) on a real `ws` server and a real
 * in-memory store: heartbeats renew the lease while a status write hangs, statuses for one task
 * are coalesced behind its write in flight, and a silent agent is dropped on the 3rd ping
 * interval. Only `setInterval` is faked (the ping timer); socket I/O is real and polled.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { handleAgentSession, type AgentSessionHandle, type AgentSessionOptions } from '../../mesh/api/agent-session.js';
import { LogRelay } from '../../mesh/api/log-relay.js';
import { Manager } from '../../mesh/manager/index.js';
import { getObject, putObject } from '../../mesh/manager/objects.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store, Txn } from '../../src/store/types.js';

const realSetTimeout = globalThis.setTimeout;
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => realSetTimeout(r, 5));
  }
}

/** The store with a gate on task writes and counters of keepalives and task writes. */
interface Probe { store: Store; keepAlives: number; taskWrites: number; gate: Promise<void> | undefined }

function probed(inner: Store): Probe {
  const p: Probe = { store: inner, keepAlives: 0, taskWrites: 0, gate: undefined };
  p.store = new Proxy(inner, {
    get(target, prop, recv) {
      if (prop === 'keepAlive') return (id: number) => { p.keepAlives++; return target.keepAlive(id); };
      if (prop === 'txn') {
        return async (t: Txn) => {
          if (t.success.some((op) => op.key.includes('/tasks/'))) {
            p.taskWrites++;
            if (p.gate) await p.gate;
          }
          return target.txn(t);
        };
      }
      const v: unknown = Reflect.get(target, prop, recv);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return p;
}

let cleanup: Array<() => Promise<void> | void> = [];
beforeEach(() => { vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); });
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
  vi.useRealTimers();
});

async function setup(opts: AgentSessionOptions, clientOpts: { autoPong?: boolean } = {}): Promise<{
  probe: Probe; client: WebSocket; frames: Array<Record<string, unknown>>; nodeId: string; handle: () => AgentSessionHandle;
}> {
  const inner = await openEmbeddedStore({});
  const probe = probed(inner);
  const m = new Manager(probe.store, { nodeLeaseTtlSeconds: 10 });
  await m.start();
  await m.stop(); // no scheduler: it would reap the bare task these tests write
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', r));
  let handle: AgentSessionHandle | undefined;
  wss.on('connection', (ws) => { handle = handleAgentSession(ws, m, new LogRelay(), () => undefined, opts); });
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { autoPong: clientOpts.autoPong ?? true });
  cleanup.push(async () => {
    client.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
    await inner.close();
  });
  const frames: Array<Record<string, unknown>> = [];
  client.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
  await new Promise<void>((r) => client.once('open', () => r()));
  client.send(JSON.stringify({ type: 'join', name: 'a', address: '10.0.0.1' }));
  await until(() => frames.some((f) => f['type'] === 'established'), 'welcome and established');
  const welcome = frames.find((f) => f['type'] === 'welcome') as { node: { id: string } };
  return { probe, client, frames, nodeId: welcome.node.id, handle: () => handle as AgentSessionHandle };
}

const status = (state: string, message: string): string => JSON.stringify({ type: 'task-status', taskId: 't1', status: { state, message } });

describe('agent session (manager side)', () => {
  it('renews the lease while a status write hangs, and writes only the newest of the statuses queued behind it', async () => {
    const { probe, client, nodeId, handle } = await setup({});
    await probe.store.txn({ compare: [], success: [putObject('tasks', 't1', { id: 't1', nodeId, status: { state: 'assigned', message: '', since: '' } })] });
    probe.taskWrites = 0;
    let release!: () => void;
    probe.gate = new Promise<void>((r) => { release = r; });

    client.send(status('starting', 's'));
    await until(() => probe.taskWrites === 1, 'the first status write to start');
    client.send('{"type":"heartbeat"}');
    await until(() => probe.keepAlives === 1, 'the heartbeat to renew the lease');
    expect(probe.taskWrites).toBe(1); // still hanging: the keepalive did not wait for it

    for (const msg of ['a', 'b', 'c']) client.send(status('running', msg));
    await until(() => handle().stats.statusCoalesced === 2, 'coalescing');
    release();
    probe.gate = undefined;
    await handle().statusesIdle();
    expect(probe.taskWrites).toBe(2);
    expect((await getObject(probe.store, 'tasks', 't1'))?.obj.status).toMatchObject({ state: 'running', message: 'c' });
  });

  it('bounds the statuses waiting for a write: the stalest task is dropped and counted', async () => {
    const { probe, client, nodeId, handle } = await setup({ maxQueuedStatuses: 2, statusConcurrency: 1 });
    const ids = ['t0', 't1', 't2', 't3'];
    for (const id of ids) await probe.store.txn({ compare: [], success: [putObject('tasks', id, { id, nodeId, status: { state: 'assigned', message: '', since: '' } })] });
    probe.taskWrites = 0;
    let release!: () => void;
    probe.gate = new Promise<void>((r) => { release = r; });
    client.send(JSON.stringify({ type: 'task-status', taskId: 't0', status: { state: 'running' } }));
    await until(() => probe.taskWrites === 1, 't0 in flight');
    for (const id of ids.slice(1)) client.send(JSON.stringify({ type: 'task-status', taskId: id, status: { state: 'running' } }));
    await until(() => handle().stats.statusDropped === 1, 'a drop');
    release();
    probe.gate = undefined;
    await handle().statusesIdle();
    const states = await Promise.all(ids.map(async (id) => (await getObject(probe.store, 'tasks', id))?.obj.status.state));
    expect(states).toEqual(['running', 'assigned', 'running', 'running']);
    expect(probe.taskWrites).toBe(3);
  });

  it('terminates an agent that answers no ping on the 3rd interval', async () => {
    const { client, handle } = await setup({ pingIntervalMs: 1000 }, { autoPong: false });
    let pings = 0;
    let closed = false;
    client.on('ping', () => pings++);
    client.on('close', () => { closed = true; });
    vi.advanceTimersByTime(1000);
    await until(() => pings === 1, 'first ping');
    vi.advanceTimersByTime(1000);
    await until(() => pings === 2, 'second ping');
    expect(closed).toBe(false);
    vi.advanceTimersByTime(1000);
    expect(handle().stats.pingTimeouts).toBe(1);
    await until(() => closed, 'the session to be terminated');
  });
});
