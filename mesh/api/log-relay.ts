/**
 * `shoal service logs`: task output lives on the nodes that ran the tasks, so the manager asks
 * those nodes' agents over their sessions and relays what they send back.
 *
 * Manager -> agent: `{type:"logs", stream, tasks:[{id, name}], follow}` and
 * `{type:"logs-cancel", stream}`. Agent -> manager: `{type:"log-data", stream, task, data}` and
 * `{type:"log-end", stream}` (when not following, after the files were read to their end).
 * Only the relay owns the registry of agent sessions (written by the session handler).
 */
import type { WebSocket } from 'ws';

export interface LogSink {
  data(taskName: string, text: string): void;
  /** All asked nodes ended (or went away). */
  end(): void;
}

interface Stream { sink: LogSink; pending: Set<string>; names: Map<string, string> }

export class LogRelay {
  private readonly sessions = new Map<string, WebSocket>();
  private readonly streams = new Map<string, Stream>();
  private next = 0;

  register(nodeId: string, ws: WebSocket): void { this.sessions.set(nodeId, ws); }

  /** Forgets a session (if it is still the current one) and ends its part of every stream. */
  unregister(nodeId: string, ws: WebSocket): void {
    if (this.sessions.get(nodeId) !== ws) return;
    this.sessions.delete(nodeId);
    for (const id of [...this.streams.keys()]) this.ended(id, nodeId);
  }

  /**
   * Asks every node holding one of `tasks` for their output. Nodes without a session are
   * reported through `unreachable` and skipped. Returns a cancel function.
   */
  request(tasks: Array<{ id: string; name: string; nodeId: string }>, follow: boolean, sink: LogSink, unreachable: (nodeId: string) => void): () => void {
    const id = `s${++this.next}`;
    const byNode = new Map<string, Array<{ id: string; name: string }>>();
    for (const t of tasks) {
      if (!t.nodeId) continue;
      byNode.set(t.nodeId, [...(byNode.get(t.nodeId) ?? []), { id: t.id, name: t.name }]);
    }
    const stream: Stream = { sink, pending: new Set(), names: new Map(tasks.map((t) => [t.id, t.name])) };
    this.streams.set(id, stream);
    for (const [nodeId, list] of byNode) {
      const ws = this.sessions.get(nodeId);
      if (!ws || ws.readyState !== ws.OPEN) { unreachable(nodeId); continue; }
      stream.pending.add(nodeId);
      ws.send(JSON.stringify({ type: 'logs', stream: id, tasks: list, follow }));
    }
    if (stream.pending.size === 0) this.finish(id);
    return () => {
      const s = this.streams.get(id);
      if (!s) return;
      for (const nodeId of s.pending) this.sessions.get(nodeId)?.send(JSON.stringify({ type: 'logs-cancel', stream: id }));
      this.streams.delete(id);
    };
  }

  /** Data from the agent of `nodeId`. */
  data(nodeId: string, streamId: string, taskId: string, text: string): void {
    const s = this.streams.get(streamId);
    if (!s || !s.pending.has(nodeId)) return;
    s.sink.data(s.names.get(taskId) ?? taskId, text);
  }

  ended(streamId: string, nodeId: string): void {
    const s = this.streams.get(streamId);
    if (!s || !s.pending.delete(nodeId)) return;
    if (s.pending.size === 0) this.finish(streamId);
  }

  private finish(streamId: string): void {
    const s = this.streams.get(streamId);
    this.streams.delete(streamId);
    s?.sink.end();
  }
}
