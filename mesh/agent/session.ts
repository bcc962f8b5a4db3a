/**
 * The agent's connection to a manager: join, heartbeat, receive the watch stream into the
 * local index, report task status. Reconnects with back-off when the manager goes away and
 * resumes from the last revision it applied (or re-lists when the manager says so).
 *
 * Liveness: every heartbeat interval the session also sends a WebSocket ping; any byte from
 * the manager (a message, a ping, a pong, part of a large frame) proves it alive. A connection silent for two intervals
 * after a ping is terminated at the next tick, so a half-open connection (the manager or the
 * path vanished without a FIN) is given up within 3 intervals and the session reconnects.
 *
 * Several managers (`managerUrl` is a comma-separated list): after a connection ends the
 * session tries the next one, resuming its watch from its revision there (all managers of a
 * cluster share one store, so revisions mean the same everywhere). Nothing on the node is
 * touched meanwhile: tasks keep running and the dataplane keeps its last programmed state.
 */
import { WebSocket } from 'ws';
import type { Node } from '../../src/model/types.js';
import { parseManagerUrls, wsUrlOf, type ManagerUrl } from '../api/manager-url.js';
import type { WatchFrame } from '../api/watch.js';
import type { LocalIndex } from './local-index.js';
import type { LogLineSink, LogReadOptions } from './logs.js';
import { StatusOutbox, type OutboxStats, type ReportedStatus } from './status-outbox.js';
import { AgentTls } from '../security/agent-tls.js';

export interface SessionOptions {
  /** `https://host:port` or `unix:///path/to/socket`, or several of them separated by commas. */
  managerUrl: string;
  /** The join token (a function: `shoal up` passes the current one, which a rotation changes). */
  joinToken: string | (() => string);
  /** Where the node certificate is kept (`<dataDir>/tls`); needed for https:// managers. */
  dataDir?: string;
  /** Called when a manager refused this node for good (revoked, expired certificate): the session stops. */
  onFatal?: (msg: string) => void;
  name: string;
  address: string;
  index: LocalIndex;
  log?: (msg: string) => void;
  onWelcome?: (node: Node) => void;
  /** Serves a manager's request for task output (lines with their times); returns a cancel function. */
  onLogs?: (tasks: Array<{ id: string; name: string }>, opts: LogReadOptions, sink: LogLineSink) => () => void;
  /** The ports processes on the node listen on (`8080/tcp`): sent at join and when they change. */
  boundPorts?: () => string[];
  /**
   * The node's per-backend connection summary (mesh/manager/live-stats.ts rows): sent when it
   * changed, only while the manager asks for it (someone watches its /ui page).
   */
  lbStats?: () => unknown[];
  /** Max reconnect back-off. Default 2 s: an agent must be back quickly after a manager restart. */
  maxBackoffMs?: number;
  /**
   * Heartbeat and ping interval. Default: a quarter of the lease TTL the manager announces
   * (at least 200 ms; 2.5 s until the first welcome). A dead connection is given up within 3.
   */
  heartbeatIntervalMs?: number;
  /** Most tasks whose latest status is held while disconnected; past it the stalest is dropped. Default 4096. */
  maxPendingStatuses?: number;
}

/** Counters of a session, monotonic (exported as metrics by the agent). */
export interface SessionStats extends OutboxStats {
  /** Connections lost after a welcome (each is followed by a reconnect attempt). */
  reconnects: number;
  /** Connections terminated because the manager answered nothing for too long. */
  pingTimeouts: number;
}

const DEFAULT_INTERVAL_MS = 2500;
/** Ticks without any frame from the peer after which the connection is terminated. */
const MISSED_TICKS_LIMIT = 2;

/** Turns a manager URL (the first of a list) into the WebSocket URL of `path` (ws+unix for sockets). */
export function wsUrl(managerUrl: string, path: string): string {
  return wsUrlOf(parseManagerUrls(managerUrl)[0] as ManagerUrl, path);
}

/**
 * One agent's session with a manager. `start()` connects (and keeps reconnecting until
 * `stop()`); `connected` is true between a welcome and the socket's close; `node` is the node
 * record of the last welcome.
 */
export class AgentSession {
  private ws: WebSocket | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private tickMs: number;
  private retry: NodeJS.Timeout | undefined;
  private backoff = 100;
  private stopped = false;
  node: Node | undefined;
  connected = false;
  readonly stats: SessionStats = { reconnects: 0, pingTimeouts: 0, statusDropped: 0, statusCoalesced: 0 };
  private readonly outbox: StatusOutbox;
  /** Pings sent on this connection; a pong carries the number of the ping it answers. */
  private pingSeq = 0;
  /** Ticks since the last byte from the manager. */
  private missed = 0;
  /** Bound ports as last sent to the manager (JSON). */
  private sentPorts = '';
  /** The manager wants connection summaries; the last one sent (JSON). */
  private statsWanted = false;
  private sentStats = '';
  /** Log streams this session serves, by stream id (cancelled when the session ends). */
  private readonly logStreams = new Map<string, () => void>();
  private readonly managers: ManagerUrl[];
  /** The manager tried next (or connected to now). */
  private managerIndex = 0;
  /** Node certificate and mutual TLS, for https:// managers (mesh/security/agent-tls.ts). */
  readonly tls: AgentTls | undefined;

  constructor(private readonly opts: SessionOptions) {
    this.managers = parseManagerUrls(opts.managerUrl, '--join');
    if (this.managers.some((m) => m.kind === 'tcp')) {
      if (!opts.dataDir) throw new Error('an agent reaching managers over TLS needs a data dir for its certificate');
      this.tls = new AgentTls({
        dataDir: opts.dataDir, name: opts.name, joinToken: () => this.joinToken(), log: (m) => this.log(m),
        onFatal: (m) => { this.stop(); this.opts.onFatal?.(m); },
      });
    }
    this.tickMs = opts.heartbeatIntervalMs ?? DEFAULT_INTERVAL_MS;
    this.outbox = new StatusOutbox(opts.maxPendingStatuses ?? 4096, this.stats);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private joinToken(): string { return typeof this.opts.joinToken === 'function' ? this.opts.joinToken() : this.opts.joinToken; }

  stop(): void {
    this.stopped = true;
    this.tls?.stop();
    if (this.retry) clearTimeout(this.retry);
    this.stopTicker();
    this.ws?.close(1000, 'agent stopping');
    this.ws?.terminate();
  }

  /**
   * Sends a task's status. While disconnected only the latest status per task is kept (at most
   * `maxPendingStatuses` tasks) and sent after the next join; so is one written to a connection
   * that then died before the manager proved it received it.
   */
  reportStatus(taskId: string, status: ReportedStatus): void {
    const ws = this.ws;
    if (this.connected && ws?.readyState === WebSocket.OPEN) this.sendStatus(ws, taskId, status);
    else this.outbox.queue(taskId, status);
  }

  private sendStatus(ws: WebSocket, taskId: string, status: ReportedStatus): void {
    ws.send(JSON.stringify({ type: 'task-status', taskId, status }));
    this.outbox.sent(taskId, status, this.pingSeq + 1);
  }

  /** The manager this session uses (or tries) now, as the user wrote it. */
  get manager(): string { return (this.managers[this.managerIndex] as ManagerUrl).text; }

  /** Heartbeat intervals since the last byte from the manager (0 on a healthy connection right after a pong). */
  get silentTicks(): number { return this.missed; }

  private log(msg: string): void { this.opts.log?.(msg); }

  private scanPorts(): string[] | undefined {
    try {
      return this.opts.boundPorts?.();
    } catch (e) {
      this.log(`listing the node's bound ports failed: ${String(e)}`);
      return undefined;
    }
  }

  private stopTicker(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** (Re)starts the heartbeat/liveness timer of `ws` at the current interval. */
  private startTicker(ws: WebSocket): void {
    this.stopTicker();
    this.ticker = setInterval(() => this.tick(ws), this.tickMs);
  }

  private tick(ws: WebSocket): void {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.missed >= MISSED_TICKS_LIMIT) {
      this.stats.pingTimeouts++;
      this.log(`manager silent for ${this.missed} heartbeat intervals (${this.tickMs} ms each); dropping the connection`);
      // terminate(), not close(): a closing handshake would wait on the same dead path.
      ws.terminate();
      return;
    }
    this.missed++;
    ws.ping(String(++this.pingSeq));
    if (!this.connected) return;
    ws.send('{"type":"heartbeat"}');
    const ports = this.scanPorts();
    if (ports && JSON.stringify(ports) !== this.sentPorts) {
      this.sentPorts = JSON.stringify(ports);
      ws.send(JSON.stringify({ type: 'bound-ports', ports }));
    }
    this.sendStats(ws);
  }

  private sendStats(ws: WebSocket): void {
    if (!this.statsWanted || !this.opts.lbStats) return;
    const backends = this.opts.lbStats();
    const text = JSON.stringify(backends);
    if (text === this.sentStats) return;
    this.sentStats = text;
    ws.send(`{"type":"lb-stats","backends":${text}}`);
  }

  private connect(): void {
    if (this.stopped) return;
    const m = this.managers[this.managerIndex] as ManagerUrl;
    const tls = m.kind === 'tcp' ? this.tls : undefined;
    if (tls && !tls.identity) {
      // First join: trade the join token for a node certificate, then connect with it.
      tls.prepare(m).then(() => this.connect(), (e: unknown) => {
        this.log(`joining through ${m.text} failed: ${e instanceof Error ? e.message : String(e)}; retrying`);
        if (this.managers.length > 1) this.managerIndex = (this.managerIndex + 1) % this.managers.length;
        this.retry = setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 2000);
      });
      return;
    }
    const url = wsUrlOf(m, '/v1/agent') + (tls ? tls.query() : '');
    const wsOpts = { ...(tls ? tls.wsOptions() : { headers: { authorization: `Bearer ${this.joinToken()}` } }), handshakeTimeout: 5000, maxPayload: 256 << 20 };
    const ws = new WebSocket(url, wsOpts);
    // A refusal before the upgrade (401/403): logged with the manager's reason; a fatal one stops the session.
    ws.on('unexpected-response', (_req, res) => {
      void (tls ? tls.refused(res) : Promise.resolve(false)).then((fatal) => {
        if (!tls) this.log(`manager refused the session (${res.statusCode ?? '?'})`);
        if (!fatal) ws.terminate();
      }, () => ws.terminate());
    });
    this.ws = ws;
    this.pingSeq = 0;
    this.missed = 0;
    const alive = (): void => { this.missed = 0; };
    ws.on('ping', alive);
    // Bytes count, not only whole frames: a large relist on a thin link can take longer than
    // the deadline, and the manager's pongs wait behind it on the same stream.
    ws.once('upgrade', (res) => { res.socket.on('data', alive); });
    ws.on('pong', (data: Buffer) => {
      alive();
      const seq = Number(data.toString());
      if (Number.isInteger(seq)) this.outbox.confirm(seq);
    });
    ws.on('open', () => {
      // Liveness from the start, not from the welcome: a path that dies during the join must
      // not hold the agent forever.
      this.startTicker(ws);
      const join: Record<string, unknown> = { type: 'join', name: this.opts.name, address: this.opts.address };
      if (tls?.identity) join['nodeId'] = tls.identity.nodeId;
      if (this.opts.index.synced) join['revision'] = this.opts.index.revision;
      const ports = this.scanPorts();
      if (ports) {
        join['boundPorts'] = ports;
        this.sentPorts = JSON.stringify(ports);
      }
      ws.send(JSON.stringify(join));
    });
    ws.on('message', (data) => { alive(); this.onMessage(ws, data.toString()); });
    ws.on('close', (code, reason) => {
      this.statsWanted = false;
      if (this.connected) this.stats.reconnects++;
      this.connected = false;
      for (const cancel of this.logStreams.values()) cancel();
      this.logStreams.clear();
      if (ws === this.ws) this.stopTicker();
      this.outbox.requeueUnconfirmed();
      if (this.stopped) return;
      // 4008: we were too slow and must re-list; the next join then carries no revision.
      if (code === 4008) this.opts.index.synced = false;
      // Any manager will do: move on to the next one (a dead one fails fast and we move again).
      const was = this.manager;
      if (this.managers.length > 1) this.managerIndex = (this.managerIndex + 1) % this.managers.length;
      this.log(`disconnected from manager ${was} (${code} ${reason.toString()}); reconnecting${this.managers.length > 1 ? ` to ${this.manager}` : ''}`);
      // Straight to the next manager after a working session; back off once all were tried.
      const delay = this.managers.length > 1 && this.managerIndex !== 0 ? Math.min(this.backoff, 100) : this.backoff;
      this.retry = setTimeout(() => this.connect(), delay);
      if (this.managerIndex === 0 || this.managers.length === 1) this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 2000);
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
      const interval = this.opts.heartbeatIntervalMs ?? Math.max(200, (ttl * 1000) / 4);
      if (interval !== this.tickMs || !this.ticker) {
        this.tickMs = interval;
        this.startTicker(ws);
      }
      for (const [taskId, status] of this.outbox.take()) this.sendStatus(ws, taskId, status);
      this.opts.onWelcome?.(this.node);
      this.tls?.welcomed(ws);
      return;
    }
    if (this.tls?.onMessage(msg)) return;
    if (msg.type === 'established') {
      const f = msg as unknown as Extract<WatchFrame, { type: 'established' }>;
      if (f.relist) {
        this.log(`watch re-listed at revision ${f.revision} from manager ${this.manager}`);
        this.opts.index.applyList(f.kvs ?? [], f.revision);
      } else {
        this.log(`watch resumed from revision ${f.revision} on manager ${this.manager}`);
      }
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
      const opts: LogReadOptions = { follow: msg['follow'] === true };
      if (typeof msg['tail'] === 'number' && msg['tail'] >= 0) opts.tail = msg['tail'];
      if (typeof msg['since'] === 'number') opts.since = msg['since'];
      // A manager of the first protocol (no `v`) takes chunks of text, not timed lines.
      const v2 = typeof msg['v'] === 'number' && msg['v'] >= 2;
      const cancel = this.opts.onLogs(msg['tasks'] as Array<{ id: string; name: string }>, opts, {
        lines: (lines) => {
          if (v2) send({ type: 'log-lines', stream, lines });
          else for (const [task, , text] of lines) send({ type: 'log-data', stream, task, data: `${text}\n` });
        },
        synced: () => { if (v2) send({ type: 'log-synced', stream }); },
        end: () => { this.logStreams.delete(stream); send({ type: 'log-end', stream }); },
      });
      this.logStreams.set(stream, cancel);
      return;
    }
    if (msg.type === 'logs-cancel' && typeof msg['stream'] === 'string') {
      this.logStreams.get(msg['stream'])?.();
      this.logStreams.delete(msg['stream']);
      return;
    }
    if (msg.type === 'lb-stats-want') {
      this.statsWanted = msg['on'] === true;
      this.sentStats = '';
      this.sendStats(ws);
      return;
    }
    if (msg.type === 'error') this.log(`manager: ${String(msg['message'])}`);
  }
}
