/**
 * The manager's API server: HTTP routes (routes.ts), the watch WebSocket and the agent
 * WebSocket, on any number of listeners (a TCP address and/or a unix socket).
 * Operators authenticate with the manager token; agents with the join token (agent session and
 * watch only). `/ui` is the live web view (mesh/ui/server.ts: the same token, or a cookie it
 * gives for the view's read-only routes).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { notFound, ShoalError } from '../../src/errors.js';
import type { Manager } from '../manager/index.js';
import { handleAgentSession, type AgentSessionOptions } from './agent-session.js';
import { streamEvents } from './events.js';
import { LogRelay } from './log-relay.js';
import { logsQuery, streamLogs } from './logs.js';
import { bearerMatches, readJson, sendError, sendJson, unauthorized, type Route } from './http.js';
import { RevisionClock } from './revision-clock.js';
import { routes } from './routes.js';
import { handleUi, isUiPath } from '../ui/server.js';
import { streamWatch } from './watch.js';

/**
 * What every listener of one manager shares: the agent sessions (for logs, whichever listener
 * the agent and the CLI came through), the revision clock of `shoal events`, and which agents
 * reached the manager over its unix socket (they run beside it: their node's role is manager).
 */
interface Shared { relay: LogRelay; clock: Promise<RevisionClock>; localAgents: WeakSet<WebSocket>; servers: number }
const shared = new WeakMap<Manager, Shared>();

function sharedOf(m: Manager): Shared {
  let s = shared.get(m);
  if (!s) {
    s = { relay: new LogRelay(), clock: RevisionClock.start(m.store), localAgents: new WeakSet(), servers: 0 };
    shared.set(m, s);
  }
  return s;
}

export interface ApiServerOptions {
  log?: (msg: string, err?: unknown) => void;
  /** Watch clients with more unsent bytes than this are closed (4008) and must re-list. */
  maxBufferedBytes?: number;
  /** Liveness and status-queue settings of every agent session (agent-session.ts). */
  agentSession?: AgentSessionOptions;
}

export function createApiServer(m: Manager, opts: ApiServerOptions = {}): Server {
  const log = opts.log ?? (() => undefined);
  const sh = sharedOf(m);
  sh.servers++;
  const relay = sh.relay;
  const table: Route[] = routes(m, {
    roleOf: (nodeId) => {
      const ws = relay.session(nodeId);
      return ws && sh.localAgents.has(ws) ? 'manager' : 'worker';
    },
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://manager');
      if (isUiPath(url.pathname)) return await handleUi(req, res, m, url);
      if (!bearerMatches(req.headers.authorization, [m.cluster.managerToken])) throw unauthorized();
      const method = req.method ?? 'GET';
      if (['/v1/watch', '/v1/events', '/v1/agent'].includes(url.pathname)) {
        throw new ShoalError('InvalidParameter', 'WEBSOCKET_ONLY', `${url.pathname} is a WebSocket stream: connect with an Upgrade: websocket request (shoal events reads /v1/events)`);
      }
      const logs = /^\/v1\/services\/([^/]+)\/logs$/.exec(url.pathname);
      if (logs && method === 'GET') return await streamLogs(m, relay, decodeURIComponent(logs[1] ?? ''), logsQuery(url.searchParams), req, res);
      let allowed = false;
      for (const r of table) {
        const match = r.pattern.exec(url.pathname);
        if (!match) continue;
        allowed = true;
        if (r.method !== method) continue;
        const params: Record<string, string> = {};
        r.keys.forEach((k, i) => { params[k] = decodeURIComponent(match[i + 1] ?? ''); });
        const body = await readJson(req);
        const out = await r.handler({ method, path: url.pathname, params, query: url.searchParams, body });
        sendJson(res, out.status ?? 200, out.body);
        return;
      }
      if (allowed) throw new ShoalError('InvalidParameter', 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${url.pathname}`);
      throw notFound(`API path ${url.pathname}`, 'see mesh/api/routes.ts for the routes');
    })().catch((e: unknown) => sendError(res, e, (err) => log('request failed', err)));
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://manager');
    const reject = (status: number, text: string): void => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    };
    const auth = req.headers.authorization;
    if (url.pathname === '/v1/agent') {
      if (!bearerMatches(auth, [m.cluster.joinToken])) return reject(401, 'Unauthorized');
      // A unix-socket peer has no remote address: that agent runs on the manager's machine.
      const local = req.socket.remoteAddress === undefined;
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (local) sh.localAgents.add(ws);
        handleAgentSession(ws, m, relay, log, opts.agentSession);
      });
      return;
    }
    if (url.pathname === '/v1/events') {
      if (!bearerMatches(auth, [m.cluster.managerToken])) return reject(401, 'Unauthorized');
      const since = url.searchParams.get('since');
      if (since !== null && !/^\d{1,15}$/.test(since)) return reject(400, 'Bad Request');
      wss.handleUpgrade(req, socket, head, (ws) => {
        sh.clock.then((clock) => streamEvents(ws, m.store, clock, since === null ? undefined : Number(since)))
          .catch((e: unknown) => { log('events stream failed', e); ws.close(1011, 'events failed'); });
      });
      return;
    }
    if (url.pathname === '/v1/watch') {
      if (!bearerMatches(auth, [m.cluster.managerToken, m.cluster.joinToken])) return reject(401, 'Unauthorized');
      const r = url.searchParams.get('revision');
      const rev = r !== null && /^\d+$/.test(r) ? Number(r) : undefined;
      wss.handleUpgrade(req, socket, head, (ws) => {
        const w: { maxBufferedBytes?: number } = {};
        if (opts.maxBufferedBytes !== undefined) w.maxBufferedBytes = opts.maxBufferedBytes;
        streamWatch(ws, m.store, rev, w).catch((e: unknown) => { log('watch failed', e); ws.close(1011, 'watch failed'); });
      });
      return;
    }
    reject(404, 'Not Found');
  });
  sockets.set(server, { wss, m });
  // Requests are small; a stuck client must not hold a socket forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  return server;
}

const sockets = new WeakMap<Server, { wss: WebSocketServer; m: Manager }>();

/** Closes the server and every connection on it, WebSockets included (they are not HTTP connections). */
export async function closeApiServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const own = sockets.get(server);
  sockets.delete(server);
  for (const ws of own?.wss.clients ?? []) ws.terminate();
  const sh = own ? shared.get(own.m) : undefined;
  if (sh && --sh.servers === 0) {
    shared.delete(own?.m as Manager);
    (await sh.clock.catch(() => undefined))?.cancel();
  }
  server.closeAllConnections();
  await closed;
}
