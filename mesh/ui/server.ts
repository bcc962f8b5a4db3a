/**
 * The manager's live web view at `/ui`, on the API listener (mesh/api/server.ts hands it every
 * `/ui` request). Routes:
 *
 *   GET  /ui              the page (or the login form when not authenticated)
 *   GET  /ui?token=T      logs in with the manager token T, then redirects to /ui (the token leaves the URL)
 *   POST /ui/login        the login form (`token=T`, form-encoded)
 *   POST /ui/logout       forgets the cookie
 *   GET  /ui/app.js, /ui/app.css   the page's script and style (no secrets: served to anyone)
 *   GET  /ui/events       server-sent events: `snapshot`, then `change` and `lbstats` (assets.ts)
 *
 * Auth, the API's own: `Authorization: Bearer <manager token>` works everywhere. A browser
 * cannot send that header with a page load or an EventSource, so the manager token is exchanged
 * once (query parameter or form) for an HttpOnly, SameSite=Strict cookie scoped to `/ui` whose
 * value is an HMAC of the manager token: it opens these read-only routes and nothing else (not
 * the API, which keeps requiring the bearer token, so a cookie cannot be used to change
 * anything), and it stops working when the token changes. The manager serves plain HTTP today:
 * on an untrusted network put it behind TLS.
 *
 * Live data comes from the manager's watch-fed view (mesh/manager/view.ts): one store watch for
 * every viewer, no polling; connection counts from the agents while a page is open
 * (mesh/manager/live-stats.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseObjectKey } from '../../src/model/keys.js';
import { bearerMatches } from '../api/http.js';
import type { IndexChange } from '../agent/local-index.js';
import type { Manager } from '../manager/index.js';
import { APP_CSS, APP_JS, LOGIN_HTML, PAGE_HTML } from './assets.js';

export const UI_COOKIE = 'shoal_ui';
const MAX_FORM_BYTES = 4096;
/** An SSE client with more than this unsent is dropped (its EventSource reconnects and gets a fresh snapshot). */
const MAX_BUFFERED = 8 << 20;
const HEARTBEAT_MS = 15_000;

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
};

/** The cookie value that stands for `managerToken` on /ui: an HMAC, useless as an API token. */
export function uiCookieValue(managerToken: string): string {
  return createHmac('sha256', managerToken).update('shoal-ui/v1').digest('base64url');
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

const same = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function login(res: ServerResponse, token: string, path: string): void {
  const cookie = `${UI_COOKIE}=${uiCookieValue(token)}; Path=/ui; HttpOnly; SameSite=Strict`;
  res.writeHead(303, { ...SECURITY_HEADERS, location: path, 'set-cookie': cookie, 'content-length': 0 });
  res.end();
}

async function formToken(req: IncomingMessage): Promise<string | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token') ?? undefined;
}

/** Whether `path` is one of the UI's (the API server calls {@link handleUi} for those). */
export const isUiPath = (path: string): boolean => path === '/ui' || path.startsWith('/ui/');

/** Serves one /ui request (see the module doc). Never throws: errors become responses. */
export async function handleUi(req: IncomingMessage, res: ServerResponse, m: Manager, url: URL): Promise<void> {
  const token = m.cluster.managerToken;
  const method = req.method ?? 'GET';
  const authed = bearerMatches(req.headers.authorization, [token]) || same(cookieOf(req, UI_COOKIE) ?? '', uiCookieValue(token));
  const path = url.pathname;
  if (path === '/ui/app.js' && method === 'GET') return send(res, 200, 'text/javascript; charset=utf-8', APP_JS);
  if (path === '/ui/app.css' && method === 'GET') return send(res, 200, 'text/css; charset=utf-8', APP_CSS);
  if (path === '/ui/login' && method === 'POST') {
    const given = await formToken(req);
    if (given !== undefined && same(given, token)) return login(res, token, '/ui');
    return send(res, 401, 'text/html; charset=utf-8', LOGIN_HTML('Wrong token: try again.'));
  }
  if (path === '/ui/logout' && method === 'POST') {
    res.writeHead(303, { ...SECURITY_HEADERS, location: '/ui', 'set-cookie': `${UI_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0`, 'content-length': 0 });
    res.end();
    return;
  }
  if (path === '/ui' && method === 'GET') {
    const given = url.searchParams.get('token');
    if (given !== null) {
      if (same(given, token)) return login(res, token, '/ui');
      return send(res, 401, 'text/html; charset=utf-8', LOGIN_HTML('Wrong token in the link: log in with the manager token.'));
    }
    if (!authed) return send(res, 401, 'text/html; charset=utf-8', LOGIN_HTML(escapeHtml('Log in with the manager token to see the mesh.')));
    return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
  }
  if (path === '/ui/events' && method === 'GET') {
    if (!authed) return send(res, 401, 'text/plain; charset=utf-8', 'log in at /ui first\n');
    return streamEvents(req, res, m);
  }
  send(res, 404, 'text/plain; charset=utf-8', `no ${method} ${path} here; the page is at /ui\n`);
}

/** The live feed of one page: a snapshot of the view, then its changes and the agents' connection counts. */
async function streamEvents(req: IncomingMessage, res: ServerResponse, m: Manager): Promise<void> {
  await m.view.ready();
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' });
  let closed = false;
  const event = (name: string, data: unknown): void => {
    if (closed) return;
    if (res.writableLength > MAX_BUFFERED) {
      res.destroy(); // too slow: it reconnects and starts from a fresh snapshot
      return;
    }
    res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const ix = m.view.index;
  event('snapshot', {
    revision: ix.revision, nodes: ix.nodes(), networks: ix.networks(), services: ix.services(), tasks: ix.tasks(),
    lbstats: m.live.all().map((s) => ({ nodeId: s.nodeId, rows: s.rows })),
  });
  // Changes are coalesced per turn of the event loop: a burst of events is one frame.
  let pending = new Map<string, { kind: string; id: string; obj: unknown }>();
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.size === 0) return;
    const changes = [...pending.values()];
    pending = new Map();
    event('change', { revision: ix.revision, changes });
  };
  const stopView = m.view.onChange((changes: IndexChange[]) => {
    for (const c of changes) {
      const o = c.kind && c.id ? { kind: c.kind, id: c.id } : parseObjectKey(c.key);
      if (!o) continue;
      pending.set(`${o.kind}/${o.id}`, { kind: o.kind, id: o.id, obj: c.after ?? null });
    }
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  const stopLive = m.live.watch((nodeId, rows) => event('lbstats', { nodeId, rows: rows ?? null }));
  const beat = setInterval(() => { if (!closed) res.write(': ping\n\n'); }, HEARTBEAT_MS);
  beat.unref();
  const end = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    stopView();
    stopLive();
  };
  req.on('close', end);
  res.on('close', end);
}
