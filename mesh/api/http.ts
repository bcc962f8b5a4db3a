/**
 * The HTTP plumbing of the manager API: bounded JSON bodies, bearer-token auth, routing, and
 * the one mapping from ShoalError kinds to responses `{code, message}`.
 * Nothing here knows about networks or services; routes.ts does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { httpStatusOf, internal, invalid, isShoalError, ShoalError } from '../../src/errors.js';

export const MAX_BODY_BYTES = 1 << 20;

export interface Request {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export type RouteHandler = (req: Request) => Promise<{ status?: number; body: unknown }>;

export interface Route { method: string; pattern: RegExp; keys: string[]; handler: RouteHandler }

/** `route('GET', '/v1/networks/:ref', h)`: `:name` segments become params. */
export function route(method: string, path: string, handler: RouteHandler): Route {
  const keys: string[] = [];
  const pattern = new RegExp('^' + path.replace(/:([a-zA-Z]+)/g, (_m, k: string) => { keys.push(k); return '([^/]+)'; }) + '$');
  return { method, pattern, keys, handler };
}

/** Reads the body (at most MAX_BODY_BYTES) and parses it as JSON; empty body = undefined. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(c);
  }
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw invalid(`request body is not valid JSON: ${(e as Error).message}`, 'INVALID_JSON');
  }
}

const tooLarge = (): ShoalError => new ShoalError('InvalidParameter', 'BODY_TOO_LARGE', `request body is larger than ${MAX_BODY_BYTES} bytes`);

/** Constant-time check of `Authorization: Bearer <token>` against any of the accepted tokens. */
export function bearerMatches(header: string | undefined, accepted: string[]): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m || !m[1]) return false;
  const given = Buffer.from(m[1]);
  return accepted.some((t) => {
    const want = Buffer.from(t);
    return want.length === given.length && timingSafeEqual(want, given);
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The single place an error becomes an HTTP response. Internal errors never leak a stack. */
export function sendError(res: ServerResponse, err: unknown, log?: (e: unknown) => void): void {
  const e = isShoalError(err) ? err : internal('internal error; see the manager log', err);
  if (!isShoalError(err) || e.kind === 'Internal') log?.(err);
  const status = e.code === 'SHOAL_ERR_BODY_TOO_LARGE' ? 413 : httpStatusOf(e.kind);
  if (!res.headersSent) sendJson(res, status, { code: e.code, message: e.message });
  else res.destroy();
}

export function unauthorized(): ShoalError {
  return new ShoalError('Unauthorized', 'UNAUTHORIZED', 'missing or wrong token: pass the manager token as "Authorization: Bearer <token>" (shoal reads it from the data dir or SHOAL_TOKEN)');
}
