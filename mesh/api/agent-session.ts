/**
 * The agent side of the manager: one WebSocket per agent, authenticated with the join token.
 *
 * Agent -> manager: `{type:"join", name, address, revision?, boundPorts?}` first, then `{type:"heartbeat"}`
 * every few seconds, `{type:"task-status", taskId, status}` when a task changes state and
 * `{type:"bound-ports", ports}` when the ports the node's processes listen on change,
 * `{type:"lb-stats", backends}` while asked to (`lb-stats-want`, mesh/manager/live-stats.ts).
 * Manager -> agent: `{type:"welcome", node, leaseTtlSeconds}`, then the watch stream
 * (watch.ts frames), resuming from `revision` when the agent had one.
 * A heartbeat on an expired lease closes the session with 4010: the agent re-joins.
 *
 * Ordering: nothing is handled before the join is done. After it, heartbeats renew the lease
 * at once (never behind a store write), task statuses go through a {@link TaskStatusWriter}
 * (in order per task, coalesced, bounded), log frames go straight to the relay, and the rest
 * (bound ports) is handled one at a time.
 * Liveness: the manager pings every interval and terminates a socket that sent no frame for two
 * intervals after a ping, so an agent that vanished without a FIN is dropped within 3.
 */
import type { WebSocket, RawData } from 'ws';
import { conflict, invalid, isKind, messageOf } from '../../src/errors.js';
import type { Task, TaskStatus } from '../../src/model/types.js';
import type { Store } from '../../src/store/types.js';
import type { Manager } from '../manager/index.js';
import { parseLbStatsRows } from '../manager/live-stats.js';
import { joinNode, reportBoundPorts } from '../manager/nodes.js';
import type { LogRelay } from './log-relay.js';
import { getObject, putObject, unchanged } from '../manager/objects.js';
import { parseBoundPorts, parseNodeJoin } from './validate.js';
import { TaskStatusWriter, type StatusWriterStats } from './status-writer.js';
import { Refusal } from '../security/auth.js';
import { checkClaim, CLOSE_FORBIDDEN, SessionSecurity, type SessionIdentity } from '../security/session.js';
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
  if (typeof o['restarts'] === 'number' && Number.isInteger(o['restarts']) && o['restarts'] >= 0) st.restarts = o['restarts'];
  return st;
}

/** Records a status reported by the agent of `nodeId` for one of its own tasks. */
export async function reportTaskStatus(store: Store, nodeId: string, taskId: string, status: TaskStatus): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = await getObject(store, 'tasks', taskId);
    if (!v) return; // deleted meanwhile: nothing to record
    if (v.obj.nodeId !== nodeId) throw conflict(`task ${taskId} is not assigned to this node`);
    if (v.obj.status.state === 'orphaned') return; // the manager already gave up on it
    // `since` is the time of the last change of state or health (a new message keeps it):
    // rolling updates measure their delay and monitor period from it.
    const same = v.obj.status.state === status.state && v.obj.status.healthy === status.healthy;
    const next: Task = { ...v.obj, status: same ? { ...status, since: v.obj.status.since } : status };
    const res = await store.txn({ compare: [unchanged('tasks', taskId, v.modRevision)], success: [putObject('tasks', taskId, next)] });
    if (res.succeeded) return;
  }
  throw conflict(`task ${taskId} kept changing; status not recorded`);
}

/** Options of {@link handleAgentSession}. */
export interface AgentSessionOptions {
  /** Ping interval. Default a quarter of the manager's node lease TTL (at least 200 ms). */
  pingIntervalMs?: number;
  /** Most tasks whose status waits for a store write; past it the stalest is dropped. Default 4096. */
  maxQueuedStatuses?: number;
  /** Status writes in flight at once (for different tasks). Default 4. */
  statusConcurrency?: number;
}

/** What a running session exposes (tests, metrics). */
export interface AgentSessionHandle {
  readonly stats: StatusWriterStats & { pingTimeouts: number };
  /** Resolves when no status write is queued or in flight. */
  statusesIdle(): Promise<void>;
}

/** Ticks without any frame from the agent after which its socket is terminated. */
const MISSED_TICKS_LIMIT = 2;

/**
 * Serves one agent's WebSocket (already authenticated) until it closes; see the module doc
 * for the protocol, ordering and liveness. `identity`: the node certificate the agent came
 * with (TLS), which its join must match (mesh/security/session.ts); none on the unix socket.
 */
export function handleAgentSession(
  ws: WebSocket, m: Manager, relay: LogRelay, log: (msg: string, e?: unknown) => void, opts: AgentSessionOptions = {}, identity?: SessionIdentity,
): AgentSessionHandle {
  const security = new SessionSecurity(ws, m.security, identity, log);
  let nodeId: string | undefined;
  let leaseId = 0;
  let joined = false;
  // Join and the other control messages run one at a time, in order; so does everything that
  // arrives before the join finished.
  let queue: Promise<void> = Promise.resolve();
  let keepAliveInFlight = false;
  const fail = (e: unknown): void => {
    log(`agent session ${nodeId ?? '(joining)'}: ${messageOf(e)}`);
    if (e instanceof Refusal) {
      m.security.failures.count('auth', e.reason);
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', code: e.code, message: e.message }));
      ws.close(CLOSE_FORBIDDEN, e.message.slice(0, 120));
      return;
    }
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', message: messageOf(e) }));
    if (!nodeId) ws.close(CLOSE_BAD_MESSAGE, messageOf(e).slice(0, 120));
  };
  // A store that is unavailable (etcd without a quorum) gets the status later: the agent
  // counts it delivered, so it is retried here while the session lasts.
  const writeStatus = async (taskId: string, status: TaskStatus): Promise<void> => {
    for (let delay = 200; ; delay = Math.min(2 * delay, 2000)) {
      try {
        return await reportTaskStatus(m.store, nodeId as string, taskId, status);
      } catch (e) {
        if (!isKind(e, 'Unavailable') || ws.readyState !== ws.OPEN) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  const writer = new TaskStatusWriter(writeStatus, {
    onError: (_id, e) => fail(e),
    onDrop: (id) => log(`agent session ${nodeId ?? ''}: status of task ${id} dropped (too many queued)`),
    ...(opts.maxQueuedStatuses !== undefined ? { maxQueued: opts.maxQueuedStatuses } : {}),
    ...(opts.statusConcurrency !== undefined ? { concurrency: opts.statusConcurrency } : {}),
  });
  const stats = Object.assign(writer.stats, { pingTimeouts: 0 });

  let missed = 0;
  const alive = (): void => { missed = 0; };
  const intervalMs = opts.pingIntervalMs ?? Math.max(200, (m.nodeLeaseTtlSeconds * 1000) / 4);
  const ticker = setInterval(() => {
    if (ws.readyState !== ws.OPEN) return;
    if (missed >= MISSED_TICKS_LIMIT) {
      stats.pingTimeouts++;
      log(`agent session ${nodeId ?? '(joining)'}: agent silent for ${missed} intervals of ${intervalMs} ms; dropping it`);
      ws.terminate();
      return;
    }
    missed++;
    ws.ping();
  }, intervalMs);
  ws.on('close', () => clearInterval(ticker));
  ws.on('pong', alive);
  ws.on('ping', alive);

  ws.on('message', (data: RawData) => {
    alive();
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(data.toString());
      if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
      msg = parsed as Record<string, unknown>;
    } catch {
      ws.close(CLOSE_BAD_MESSAGE, 'messages must be JSON objects');
      return;
    }
    if (joined && immediate(msg)) return;
    queue = queue.then(() => { if (!joined || !immediate(msg)) return handle(msg); }).catch(fail);
  });

  /** Handles the messages that must not wait in the queue; false for the others. */
  const immediate = (msg: Record<string, unknown>): boolean => {
    try {
      if (msg['type'] === 'heartbeat') {
        // One renewal in flight is enough: a second one would renew the same lease.
        if (keepAliveInFlight) return true;
        keepAliveInFlight = true;
        m.store.keepAlive(leaseId)
          // Only an expired lease ends the session. A store that cannot be reached (etcd
          // without a quorum) is not the agent's fault: it keeps its session and its
          // dataplane, and its lease (which etcd extends across its own recovery) is renewed
          // by the next heartbeat that gets through.
          .catch((e: unknown) => { if (isKind(e, 'NotFound')) ws.close(CLOSE_LEASE_EXPIRED, 'lease expired: join again'); })
          .finally(() => { keepAliveInFlight = false; });
        return true;
      }
      if (msg['type'] === 'task-status') {
        const taskId = msg['taskId'];
        if (typeof taskId !== 'string') throw invalid('task-status needs taskId');
        writer.submit(taskId, parseStatus(msg['status']));
        return true;
      }
      if (msg['type'] === 'log-data') {
        const { stream, task, data } = msg;
        if (typeof stream === 'string' && typeof task === 'string' && typeof data === 'string') relay.data(nodeId as string, stream, task, data);
        return true;
      }
      if (msg['type'] === 'log-lines') {
        const { stream, lines } = msg;
        if (typeof stream === 'string' && Array.isArray(lines)) {
          const ok = lines.filter((l): l is [string, number, string] => Array.isArray(l) && typeof l[0] === 'string' && typeof l[1] === 'number' && typeof l[2] === 'string');
          relay.lines(nodeId as string, stream, ok);
        }
        return true;
      }
      if (msg['type'] === 'log-synced') {
        if (typeof msg['stream'] === 'string') relay.synced(msg['stream'], nodeId as string);
        return true;
      }
      if (msg['type'] === 'log-end') {
        if (typeof msg['stream'] === 'string') relay.ended(msg['stream'], nodeId as string);
        return true;
      }
      if (msg['type'] === 'lb-stats') {
        m.live.report(nodeId as string, parseLbStatsRows(msg['backends']));
        return true;
      }
    } catch (e) {
      fail(e);
      return true;
    }
    return false;
  };

  const handle = async (msg: Record<string, unknown>): Promise<void> => {
    if (msg['type'] === 'join') {
      if (nodeId) throw invalid('already joined');
      const { nodeId: claimed, ...rest } = msg;
      const join = parseNodeJoin(rest);
      if (identity) await checkClaim(m.store, identity.nodeId, { nodeId: typeof claimed === 'string' ? claimed : undefined, name: join.name });
      const res = await joinNode(m.store, join, m.nodeLeaseTtlSeconds, identity?.nodeId);
      const id = res.node.id;
      nodeId = id;
      leaseId = res.leaseId;
      relay.register(id, ws);
      ws.on('close', () => relay.unregister(id, ws));
      const unlive = m.live.register(id, (o) => { if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(o)); });
      ws.on('close', unlive);
      ws.send(JSON.stringify({ type: 'welcome', node: res.node, leaseTtlSeconds: res.leaseTtlSeconds }));
      security.joined(id);
      // From here on heartbeats and statuses bypass the queue (the agent sends them only after
      // the welcome, so none is older than this point).
      joined = true;
      const rev = typeof msg['revision'] === 'number' ? msg['revision'] : undefined;
      await streamWatch(ws, m.store, rev);
      return;
    }
    if (!nodeId) throw invalid('send join first');
    if (msg['type'] === 'renew') return security.renew(msg);
    if (msg['type'] === 'bound-ports') {
      await reportBoundPorts(m.store, nodeId, parseBoundPorts(msg['ports'] as never));
      return;
    }
    throw invalid(`unknown message type '${String(msg['type'])}'`);
  };

  return { stats, statusesIdle: () => writer.idle() };
}
