/**
 * The manager's API server: HTTP routes (routes.ts), the watch WebSocket and the agent
 * WebSocket, on any number of listeners (a TCP address and/or a unix socket).
 * Who may do what is decided by mesh/security/auth.ts: on the TLS listener operators present
 * the manager token, agents their node certificate, the join token only gets a certificate;
 * on the unix socket the tokens work as before.
 * `/ui` is the live web view (mesh/ui/server.ts: the manager token, or a cookie it gives for the
 * view's read-only routes).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { closeTlsFront, listenTls } from '../security/tls-server.js';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { httpStatusOf, isShoalError, notFound, ShoalError } from '../../src/errors.js';
import type { Manager } from '../manager/index.js';
import { handleAgentSession, type AgentSessionOptions } from './agent-session.js';
import { streamEvents } from './events.js';
import { LogRelay } from './log-relay.js';
import { logsQuery, streamLogs } from './logs.js';
import { authorize, type Principal } from '../security/auth.js';
import type { ManagerTls } from '../security/manager-tls.js';
import { JOIN_PATH, joinRoute, securityRoutes } from '../security/routes.js';
import { checkClaim } from '../security/session.js';
import { readJson, sendError, sendJson, type Route } from './http.js';
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
  /** Serve HTTPS with this manager's certificate (the TCP listener; see mesh/security). */
  tls?: ManagerTls;
}

export function createApiServer(m: Manager, opts: ApiServerOptions = {}): Server {
  const log = opts.log ?? (() => undefined);
  const sh = sharedOf(m);
  sh.servers++;
  const relay = sh.relay;
  const table: Route[] = [...routes(m, {
    roleOf: (nodeId) => {
      const ws = relay.session(nodeId);
      return ws && sh.localAgents.has(ws) ? 'manager' : 'worker';
    },
  }), ...securityRoutes(m)];
  const join = joinRoute(m);
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://manager');
      if (isUiPath(url.pathname)) return await handleUi(req, res, m, url);
      const method = req.method ?? 'GET';
      if (url.pathname === JOIN_PATH && method === 'POST') {
        authorize(req, m.security, 'join', log);
        const out = await join.handler({ method, path: url.pathname, params: {}, query: url.searchParams, body: await readJson(req) });
        sendJson(res, out.status ?? 200, out.body);
        return;
      }
      authorize(req, m.security, 'operator', log);
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
  };
  const server: Server = opts.tls ? createHttpsServer(opts.tls.options(), handler) as unknown as Server : createServer(handler);
  if (opts.tls) {
    opts.tls.attach(server as never);
    tlsOf.set(server, opts.tls);
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://manager');
    const reject = (status: number, text: string, body = ''): void => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\n${body ? 'content-type: application/json\r\n' : ''}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    /** Authorizes the upgrade; a refusal is answered here (401/403 with `{code, message}`). */
    const allowed = (need: 'agent' | 'watch' | 'operator'): Principal | undefined => {
      try {
        return authorize(req, m.security, need, log);
      } catch (e) {
        refuse(e);
        return undefined;
      }
    };
    const refuse = (e: unknown): void => {
      const status = isShoalError(e) ? httpStatusOf(e.kind) : 500;
      reject(status, status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Error', JSON.stringify(isShoalError(e) ? { code: e.code, message: e.message } : { code: 'SHOAL_ERR_INTERNAL', message: 'internal error' }));
    };
    if (url.pathname === '/v1/agent') {
      const who = allowed('agent');
      if (!who) return;
      // A unix-socket peer has no remote address: that agent runs on the manager's machine.
      const local = req.socket.remoteAddress === undefined;
      const identity = who.kind === 'node' ? { nodeId: who.nodeId, fromCurrentCa: who.fromCurrentCa } : undefined;
      const claim = { nodeId: url.searchParams.get('node') ?? undefined, name: url.searchParams.get('name') ?? undefined };
      void (identity ? checkClaim(m.store, identity.nodeId, claim) : Promise.resolve()).then(() => {
        wss.handleUpgrade(req, socket, head, (ws) => {
          if (local) sh.localAgents.add(ws);
          handleAgentSession(ws, m, relay, log, opts.agentSession, identity);
        });
      }, (e: unknown) => {
        if (isShoalError(e) && 'reason' in e) {
          m.security.failures.count('auth', String((e as { reason: unknown }).reason));
          log(`refused agent session from ${req.socket.remoteAddress ?? '?'}: ${e.message}`);
        } else log('agent session check failed', e);
        refuse(e);
      });
      return;
    }
    if (url.pathname === '/v1/events') {
      if (!allowed('operator')) return;
      const since = url.searchParams.get('since');
      if (since !== null && !/^\d{1,15}$/.test(since)) return reject(400, 'Bad Request');
      wss.handleUpgrade(req, socket, head, (ws) => {
        sh.clock.then((clock) => streamEvents(ws, m.store, clock, since === null ? undefined : Number(since)))
          .catch((e: unknown) => { log('events stream failed', e); ws.close(1011, 'events failed'); });
      });
      return;
    }
    if (url.pathname === '/v1/watch') {
      if (!allowed('watch')) return;
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
/** The TLS identity of an HTTPS API server, and the plain TCP front it listens behind. */
const tlsOf = new WeakMap<Server, ManagerTls>();
const fronts = new WeakMap<Server, NetServer>();

/**
 * Listens on a unix socket or a TCP address; an HTTPS server (created with `tls`) listens
 * behind a front that answers plain HTTP with a 400 (mesh/security/tls-server.ts).
 * Resolves with the TCP port (0 for a socket).
 */
export async function listenApiServer(server: Server, where: { path: string } | { host: string; port: number }): Promise<number> {
  const tls = tlsOf.get(server);
  if (tls && 'host' in where) {
    const front = await listenTls(server as never, where, { onPlain: (remote) => tls.plainHttp(remote) });
    fronts.set(server, front);
    return (front.address() as AddressInfo).port;
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => { server.off('error', reject); resolve(); });
  });
  const a = server.address();
  return typeof a === 'object' && a ? a.port : 0;
}

/** Closes the server and every connection on it, WebSockets included (they are not HTTP connections). */
export async function closeApiServer(server: Server): Promise<void> {
  const front = fronts.get(server);
  fronts.delete(server);
  const frontClosed = front ? closeTlsFront(front) : Promise.resolve();
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
  await frontClosed;
}
