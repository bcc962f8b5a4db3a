/**
 * The agent side of the manager: one WebSocket per agent, authenticated with the join token.
 *
 * Agent -> manager: `{type:"join", name, address, revision?, boundPorts?}` first, then `{type:"heartbeat"}`
 * every few seconds, `{type:"task-status", taskId, status}` when a task changes state and
 * `{type:"bound-ports", ports}` when the ports the node's processes listen on change.
 * Manager -> agent: `{type:"welcome", node, leaseTtlSeconds}`, then the watch stream
 * (watch.ts frames), resuming from `revision` when the agent had one.
 * A heartbeat on an expired lease closes the session with 4010: the agent re-joins.
 */
import type { WebSocket, RawData } from 'ws';
import { conflict, invalid, messageOf } from '../../src/errors.js';
import type { Task, TaskStatus } from '../../src/model/types.js';
import type { Store } from '../../src/store/types.js';
import type { Manager } from '../manager/index.js';
import { joinNode, reportBoundPorts } from '../manager/nodes.js';
import type { LogRelay } from './log-relay.js';
import { getObject, putObject, unchanged } from '../manager/objects.js';
import { parseBoundPorts, parseNodeJoin } from './validate.js';
import { streamWatch } from './watch.js';

export const CLOSE_LEASE_EXPIRED = 4010;
export const CLOSE_BAD_MESSAGE = 4400;

const TASK_STATES = new Set(['starting', 'running', 'complete', 'failed', 'shutdown']);

function parseStatus(v: unknown): TaskStatus {
  if (typeof v !== 'object' || v === null) throw invalid('task-status needs a status object');
  const o = v as Record<string, unknown>;
  if (typeof o['state'] !== 'string' || !TASK_STATES.has(o['state'])) throw invalid(`task state must be one of ${[...TASK_STATES].join(', ')}`);
  const st: TaskStatus = { state: o['state'] as TaskStatus['state'], message: typeof o['message'] === 'string' ? o['message'].slice(0, 512) : '', since: new Date().toISOString() };
  if (typeof o['pid'] === 'number') st.pid = o['pid'];
  if (typeof o['exitCode'] === 'number') st.exitCode = o['exitCode'];
  if (typeof o['healthy'] === 'boolean') st.healthy = o['healthy'];
  return st;
}

/** Records a status reported by the agent of `nodeId` for one of its own tasks. */
export async function reportTaskStatus(store: Store, nodeId: string, taskId: string, status: TaskStatus): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = await getObject(store, 'tasks', taskId);
    if (!v) return; // deleted meanwhile: nothing to record
    if (v.obj.nodeId !== nodeId) throw conflict(`task ${taskId} is not assigned to this node`);
    if (v.obj.status.state === 'orphaned') return; // the manager already gave up on it
    const next: Task = { ...v.obj, status };
    const res = await store.txn({ compare: [unchanged('tasks', taskId, v.modRevision)], success: [putObject('tasks', taskId, next)] });
    if (res.succeeded) return;
  }
  throw conflict(`task ${taskId} kept changing; status not recorded`);
}

export function handleAgentSession(ws: WebSocket, m: Manager, relay: LogRelay, log: (msg: string, e?: unknown) => void): void {
  let nodeId: string | undefined;
  let leaseId = 0;
  // Messages are handled one at a time, in order: a task's "starting" must not land after its
  // "running" because two store writes raced.
  let queue: Promise<void> = Promise.resolve();
  ws.on('message', (data: RawData) => {
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(data.toString());
      if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
      msg = parsed as Record<string, unknown>;
    } catch {
      ws.close(CLOSE_BAD_MESSAGE, 'messages must be JSON objects');
      return;
    }
    queue = queue.then(() => handle(msg));
  });
  const handle = (msg: Record<string, unknown>): Promise<void> => (async () => {
    if (msg['type'] === 'join') {
      if (nodeId) throw invalid('already joined');
      const join = parseNodeJoin(msg);
      const res = await joinNode(m.store, join, m.nodeLeaseTtlSeconds);
      const id = res.node.id;
      nodeId = id;
      leaseId = res.leaseId;
      relay.register(id, ws);
      ws.on('close', () => relay.unregister(id, ws));
      ws.send(JSON.stringify({ type: 'welcome', node: res.node, leaseTtlSeconds: res.leaseTtlSeconds }));
      const rev = typeof msg['revision'] === 'number' ? msg['revision'] : undefined;
      await streamWatch(ws, m.store, rev);
      return;
    }
    if (!nodeId) throw invalid('send join first');
    if (msg['type'] === 'heartbeat') {
      try {
        await m.store.keepAlive(leaseId);
      } catch {
        ws.close(CLOSE_LEASE_EXPIRED, 'lease expired: join again');
      }
      return;
    }
    if (msg['type'] === 'bound-ports') {
      await reportBoundPorts(m.store, nodeId, parseBoundPorts(msg['ports'] as never));
      return;
    }
    if (msg['type'] === 'task-status') {
      const taskId = msg['taskId'];
      if (typeof taskId !== 'string') throw invalid('task-status needs taskId');
      await reportTaskStatus(m.store, nodeId, taskId, parseStatus(msg['status']));
      return;
    }
    if (msg['type'] === 'log-data') {
      const { stream, task, data } = msg;
      if (typeof stream === 'string' && typeof task === 'string' && typeof data === 'string') relay.data(nodeId, stream, task, data);
      return;
    }
    if (msg['type'] === 'log-end') {
      if (typeof msg['stream'] === 'string') relay.ended(msg['stream'], nodeId);
      return;
    }
    throw invalid(`unknown message type '${String(msg['type'])}'`);
  })().catch((e: unknown) => {
    log(`agent session ${nodeId ?? '(joining)'}: ${messageOf(e)}`);
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', message: messageOf(e) }));
    if (!nodeId) ws.close(CLOSE_BAD_MESSAGE, messageOf(e).slice(0, 120));
  });
}
