/**
 * `shoal service logs`: task output lives on the nodes that ran the tasks, so the manager asks
 * those nodes' agents over their sessions and relays what they send back.
 *
 * Manager -> agent: `{type:"logs", v:2, stream, tasks:[{id, name}], follow, tail?, since?}` and
 * `{type:"logs-cancel", stream}`. Agent -> manager: `{type:"log-lines", stream, lines:[[taskId,
 * unixMs, text], ...]}` (whole lines, oldest first, the time each was written), then
 * `{type:"log-synced", stream}` once what was already written is sent (follow) or
 * `{type:"log-end", stream}` (not following). An agent of the first protocol sends
 * `{type:"log-data", stream, task, data}` chunks instead: their lines get the time they arrive.
 * Only the relay owns the registry of agent sessions (written by the session handler).
 */
import type { WebSocket } from 'ws';

/** One line of a task's output. */
export interface LogLine { task: string; time: number; text: string }

export interface LogSink {
  /** Lines from one node: in time order until that node is synced (its backlog), then live. */
  lines(nodeId: string, lines: LogLine[]): void;
  /** `nodeId` has sent what its tasks had written when asked (or it ended, or went away). */
  nodeSynced(nodeId: string): void;
  /** All asked nodes ended (or went away). */
  end(): void;
}

export interface LogRequest { follow: boolean; tail?: number; since?: number }

interface Stream { sink: LogSink; pending: Set<string>; unsynced: Set<string>; names: Map<string, string>; partial: Map<string, { node: string; text: string }> }

export class LogRelay {
  private readonly sessions = new Map<string, WebSocket>();
  private readonly streams = new Map<string, Stream>();
  private next = 0;

  register(nodeId: string, ws: WebSocket): void { this.sessions.set(nodeId, ws); }

  /** The current session of a node's agent, if it is connected. */
  session(nodeId: string): WebSocket | undefined { return this.sessions.get(nodeId); }

  /** Forgets a session (if it is still the current one) and ends its part of every stream. */
  unregister(nodeId: string, ws: WebSocket): void {
    if (this.sessions.get(nodeId) !== ws) return;
    this.sessions.delete(nodeId);
    for (const id of [...this.streams.keys()]) this.ended(id, nodeId);
  }

  /**
   * Asks every node holding one of `tasks` for their output. Nodes without a session are
   * reported through `unreachable` and skipped; `makeSink` gets the nodes asked, before any of
   * them is. Returns a cancel function.
   */
  request(tasks: Array<{ id: string; name: string; nodeId: string }>, req: LogRequest, makeSink: (nodes: string[]) => LogSink, unreachable: (nodeId: string) => void): () => void {
    const id = `s${++this.next}`;
    const byNode = new Map<string, Array<{ id: string; name: string }>>();
    for (const t of tasks) {
      if (!t.nodeId) continue;
      byNode.set(t.nodeId, [...(byNode.get(t.nodeId) ?? []), { id: t.id, name: t.name }]);
    }
    const asked = new Map<string, { ws: WebSocket; list: Array<{ id: string; name: string }> }>();
    for (const [nodeId, list] of byNode) {
      const ws = this.sessions.get(nodeId);
      if (!ws || ws.readyState !== ws.OPEN) unreachable(nodeId);
      else asked.set(nodeId, { ws, list });
    }
    const stream: Stream = { sink: makeSink([...asked.keys()]), pending: new Set(asked.keys()), unsynced: new Set(asked.keys()), names: new Map(tasks.map((t) => [t.id, t.name])), partial: new Map() };
    this.streams.set(id, stream);
    for (const [, { ws, list }] of asked) {
      ws.send(JSON.stringify({ type: 'logs', v: 2, stream: id, tasks: list, follow: req.follow, ...(req.tail !== undefined ? { tail: req.tail } : {}), ...(req.since !== undefined ? { since: req.since } : {}) }));
    }
    if (stream.pending.size === 0) this.finish(id);
    return () => {
      const s = this.streams.get(id);
      if (!s) return;
      for (const nodeId of s.pending) this.sessions.get(nodeId)?.send(JSON.stringify({ type: 'logs-cancel', stream: id }));
      this.streams.delete(id);
    };
  }

  /** Whole lines from the agent of `nodeId`: `[taskId, unixMs, text]`. */
  lines(nodeId: string, streamId: string, lines: ReadonlyArray<readonly [string, number, string]>): void {
    const s = this.streams.get(streamId);
    if (!s || !s.pending.has(nodeId)) return;
    s.sink.lines(nodeId, lines.map(([task, time, text]) => ({ task: s.names.get(task) ?? task, time, text })));
  }

  /** A chunk from an agent of the first protocol: cut into lines, timed on arrival. */
  data(nodeId: string, streamId: string, taskId: string, text: string): void {
    const s = this.streams.get(streamId);
    if (!s || !s.pending.has(nodeId)) return;
    const parts = ((s.partial.get(taskId)?.text ?? '') + text).split('\n');
    s.partial.set(taskId, { node: nodeId, text: parts.pop() ?? '' });
    const now = Date.now();
    if (parts.length) s.sink.lines(nodeId, parts.map((l) => ({ task: s.names.get(taskId) ?? taskId, time: now, text: l })));
  }

  synced(streamId: string, nodeId: string): void {
    const s = this.streams.get(streamId);
    if (!s || !s.unsynced.delete(nodeId)) return;
    s.sink.nodeSynced(nodeId);
  }

  ended(streamId: string, nodeId: string): void {
    const s = this.streams.get(streamId);
    if (!s || !s.pending.delete(nodeId)) return;
    this.synced(streamId, nodeId);
    if (s.pending.size === 0) this.finish(streamId);
  }

  private finish(streamId: string): void {
    const s = this.streams.get(streamId);
    this.streams.delete(streamId);
    if (!s) return;
    const now = Date.now();
    for (const [task, { node, text }] of s.partial) if (text) s.sink.lines(node, [{ task: s.names.get(task) ?? task, time: now, text }]);
    s.sink.end();
  }
}
