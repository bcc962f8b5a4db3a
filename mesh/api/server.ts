/**
 * The manager's API server: HTTP routes (routes.ts), the watch WebSocket and the agent
 * WebSocket, on any number of listeners (a TCP address and/or a unix socket).
 * Operators authenticate with the manager token; agents with the join token (agent session and
 * watch only). `/ui` is the live web view (mesh/ui/server.ts: the same token, or a cookie it
 * gives for the view's read-only routes).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { notFound, ShoalError } from '../../src/errors.js';
import type { Manager } from '../manager/index.js';
import { handleAgentSession, type AgentSessionOptions } from './agent-session.js';
import { LogRelay } from './log-relay.js';
import { streamLogs } from './logs.js';
import { bearerMatches, readJson, sendError, sendJson, unauthorized, type Route } from './http.js';
import { routes } from './routes.js';
import { handleUi, isUiPath } from '../ui/server.js';
import { streamWatch } from './watch.js';

export interface ApiServerOptions {
  log?: (msg: string, err?: unknown) => void;
  /** Watch clients with more unsent bytes than this are closed (4008) and must re-list. */
  maxBufferedBytes?: number;
  /** Liveness and status-queue settings of every agent session (agent-session.ts). */
  agentSession?: AgentSessionOptions;
}

export function createApiServer(m: Manager, opts: ApiServerOptions = {}): Server {
  const log = opts.log ?? (() => undefined);
  const table: Route[] = routes(m);
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  const relay = new LogRelay();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://manager');
      if (isUiPath(url.pathname)) return await handleUi(req, res, m, url);
      if (!bearerMatches(req.headers.authorization, [m.cluster.managerToken])) throw unauthorized();
      const method = req.method ?? 'GET';
      const logs = /^\/v1\/services\/([^/]+)\/logs$/.exec(url.pathname);
      if (logs && method === 'GET') return await streamLogs(m, relay, decodeURIComponent(logs[1] ?? ''), ['1', 'true'].includes(url.searchParams.get('follow') ?? ''), req, res);
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
      wss.handleUpgrade(req, socket, head, (ws) => handleAgentSession(ws, m, relay, log, opts.agentSession));
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
  sockets.set(server, wss);
  // Requests are small; a stuck client must not hold a socket forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  return server;
}

const sockets = new WeakMap<Server, WebSocketServer>();

/** Closes the server and every connection on it, WebSockets included (they are not HTTP connections). */
export async function closeApiServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const ws of sockets.get(server)?.clients ?? []) ws.terminate();
  server.closeAllConnections();
  await closed;
}
