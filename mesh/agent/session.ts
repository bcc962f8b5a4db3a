/**
 * The agent's connection to a manager: join, heartbeat, receive the watch stream into the
 * local index, report task status. Reconnects with back-off when the manager goes away and
 * resumes from the last revision it applied (or re-lists when the manager says so).
 */
import { WebSocket } from 'ws';
import type { Node, TaskStatus } from '../../src/model/types.js';
import type { WatchFrame } from '../api/watch.js';
import type { LocalIndex } from './local-index.js';

export interface SessionOptions {
  /** `http://host:port` or `unix:///path/to/socket`. */
  managerUrl: string;
  joinToken: string;
  name: string;
  address: string;
  index: LocalIndex;
  log?: (msg: string) => void;
  onWelcome?: (node: Node) => void;
  /** Serves a manager's request for task output; returns a cancel function. */
  onLogs?: (tasks: Array<{ id: string; name: string }>, follow: boolean, send: (taskId: string, data: string) => void, end: () => void) => () => void;
  /** The ports processes on the node listen on (`8080/tcp`): sent at join and when they change. */
  boundPorts?: () => string[];
  /** Max reconnect back-off. Default 2 s: an agent must be back quickly after a manager restart. */
  maxBackoffMs?: number;
}

/** Turns a manager URL into the WebSocket URL of `path` (ws+unix for sockets). */
export function wsUrl(managerUrl: string, path: string): string {
  if (managerUrl.startsWith('unix://')) return `ws+unix://${managerUrl.slice('unix://'.length)}:${path}`;
  return managerUrl.replace(/^http/, 'ws').replace(/\/$/, '') + path;
}

export class AgentSession {
  private ws: WebSocket | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private backoff = 100;
  private stopped = false;
  node: Node | undefined;
  connected = false;
  private readonly pending: string[] = [];
  /** Bound ports as last sent to the manager (JSON). */
  private sentPorts = '';
  /** Log streams this session serves, by stream id (cancelled when the session ends). */
  private readonly logStreams = new Map<string, () => void>();

  constructor(private readonly opts: SessionOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.ws?.close(1000, 'agent stopping');
    this.ws?.terminate();
  }

  /** Sends a task's status; queued while disconnected and sent after the next join. */
  reportStatus(taskId: string, status: Omit<TaskStatus, 'since'>): void {
    const msg = JSON.stringify({ type: 'task-status', taskId, status });
    if (this.connected && this.ws?.readyState === WebSocket.OPEN) this.ws.send(msg);
    else this.pending.push(msg);
  }

  private log(msg: string): void { this.opts.log?.(msg); }

  private scanPorts(): string[] | undefined {
    try {
      return this.opts.boundPorts?.();
    } catch (e) {
      this.log(`listing the node's bound ports failed: ${String(e)}`);
      return undefined;
    }
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = new WebSocket(wsUrl(this.opts.managerUrl, '/v1/agent'), {
      headers: { authorization: `Bearer ${this.opts.joinToken}` }, handshakeTimeout: 5000, maxPayload: 256 << 20,
    });
    this.ws = ws;
    ws.on('open', () => {
      const join: Record<string, unknown> = { type: 'join', name: this.opts.name, address: this.opts.address };
      if (this.opts.index.synced) join['revision'] = this.opts.index.revision;
      const ports = this.scanPorts();
      if (ports) {
        join['boundPorts'] = ports;
        this.sentPorts = JSON.stringify(ports);
      }
      ws.send(JSON.stringify(join));
    });
    ws.on('message', (data) => this.onMessage(ws, data.toString()));
    ws.on('close', (code, reason) => {
      this.connected = false;
      for (const cancel of this.logStreams.values()) cancel();
      this.logStreams.clear();
      if (this.heartbeat) clearInterval(this.heartbeat);
      if (this.stopped) return;
      this.log(`disconnected from manager (${code} ${reason.toString()}); reconnecting`);
      // 4008: we were too slow and must re-list; the next join then carries no revision.
      if (code === 4008) this.opts.index.synced = false;
      this.retry = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 2000);
    });
    ws.on('error', (e) => this.log(`manager connection: ${e.message}`));
  }

  private onMessage(ws: WebSocket, text: string): void {
    let msg: { type?: string } & Record<string, unknown>;
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === 'welcome') {
      this.node = msg['node'] as Node;
      this.connected = true;
      this.backoff = 100;
      const ttl = typeof msg['leaseTtlSeconds'] === 'number' ? msg['leaseTtlSeconds'] : 10;
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send('{"type":"heartbeat"}');
        const ports = this.scanPorts();
        if (ports && JSON.stringify(ports) !== this.sentPorts) {
          this.sentPorts = JSON.stringify(ports);
          ws.send(JSON.stringify({ type: 'bound-ports', ports }));
        }
      }, Math.max(200, (ttl * 1000) / 4));
      for (const m of this.pending.splice(0)) ws.send(m);
      this.opts.onWelcome?.(this.node);
      return;
    }
    if (msg.type === 'established') {
      const f = msg as unknown as Extract<WatchFrame, { type: 'established' }>;
      if (f.relist) this.opts.index.applyList(f.kvs ?? [], f.revision);
      return;
    }
    if (msg.type === 'events') {
      const f = msg as unknown as Extract<WatchFrame, { type: 'events' }>;
      this.opts.index.applyEvents(f.events, f.revision);
      return;
    }
    if (msg.type === 'logs' && typeof msg['stream'] === 'string' && Array.isArray(msg['tasks']) && this.opts.onLogs) {
      const stream = msg['stream'];
      const send = (o: object): void => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(o)); };
      const cancel = this.opts.onLogs(msg['tasks'] as Array<{ id: string; name: string }>, msg['follow'] === true,
        (task, data) => send({ type: 'log-data', stream, task, data }),
        () => { this.logStreams.delete(stream); send({ type: 'log-end', stream }); });
      this.logStreams.set(stream, cancel);
      return;
    }
    if (msg.type === 'logs-cancel' && typeof msg['stream'] === 'string') {
      this.logStreams.get(msg['stream'])?.();
      this.logStreams.delete(msg['stream']);
      return;
    }
    if (msg.type === 'error') this.log(`manager: ${String(msg['message'])}`);
  }
}
