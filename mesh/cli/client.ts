/**
 * The API client the CLI (and tests) use. Finds the manager the way the CLI contract says:
 * `--host` / `SHOAL_HOST` (`https://...` or `unix:///path`, or several separated by commas:
 * the next is tried when one cannot be reached), else the socket that `shoal up` /
 * `shoal manager` announces in the data dir (`--data-dir` / `SHOAL_DATA_DIR`, default
 * /var/lib/shoal). The token: `--token` / `SHOAL_TOKEN`, else `<data dir>/manager.token`.
 * Over https the manager's certificate must lead to the CA the token pins (its fingerprint):
 * no system trust store, and the token is sent only after that check.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { isShoalError, kindOfHttpStatus, ShoalError } from '../../src/errors.js';
import { httpTargetOf, parseManagerUrls, type ManagerUrl } from '../api/manager-url.js';
import { DEFAULT_DATA_DIR, socketPath, tokenPath } from '../daemon/index.js';
import { parseToken } from '../security/tokens.js';
import { tlsConnector } from '../security/tls-client.js';

/**
 * How to connect to `m` with `token` (node:http(s) and ws options): over https, a connector
 * that checks the manager against the token's CA fingerprint first.
 */
export function connectOptions(m: ManagerUrl, token: string): { createConnection?: never } {
  if (m.kind === 'unix') return {};
  const t = parseToken(token);
  if (!t) throw new ShoalError('InvalidParameter', 'BAD_TOKEN', 'the token is not a Shoal token (SHOAL-1-<CA fingerprint>-<secret>): over https the CLI checks the manager against the CA the token pins; copy the manager token from the manager\'s data dir');
  return { createConnection: tlsConnector({ pins: [t.fingerprint] }) as never };
}

export interface Endpoint { url: string; token: string }

export function resolveEndpoint(o: { host?: string; token?: string; dataDir?: string }, env: NodeJS.ProcessEnv = process.env): Endpoint {
  const dataDir = o.dataDir ?? env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;
  const url = o.host ?? env['SHOAL_HOST'] ?? `unix://${socketPath(dataDir)}`;
  parseManagerUrls(url);
  let token = o.token ?? env['SHOAL_TOKEN'];
  if (!token) {
    try {
      token = readFileSync(tokenPath(dataDir, 'manager'), 'utf8').trim();
    } catch {
      throw new ShoalError('Unavailable', 'NO_MANAGER', `no manager found: nothing announced in ${dataDir} (start one with 'shoal up', or pass --host and --token)`);
    }
  }
  return { url, token };
}

/** One API call. Resolves with the parsed JSON body; rejects with a ShoalError from `{code, message}`. */
export async function call<T = unknown>(ep: Endpoint, method: string, path: string, body?: unknown): Promise<T> {
  const text = await send(ep, method, path, body);
  try {
    return (text ? JSON.parse(text) : undefined) as T;
  } catch {
    return undefined as T;
  }
}

/** A GET whose text body is handed to `onChunk` as it arrives (logs); resolves at its end. */
export async function stream(ep: Endpoint, path: string, onChunk: (text: string) => void): Promise<void> {
  await send(ep, 'GET', path, undefined, onChunk);
}

/** Connection errors that prove the request never reached a manager: the next one may be tried. */
const NOT_SENT = new Set(['ENOENT', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET_BEFORE_SEND']);

/**
 * Sends a request to the first manager of `ep.url` that can be reached; an error status
 * becomes a ShoalError from the `{code, message}` body. A request is repeated on the next
 * manager only when it certainly did not reach the previous one, or when it is a GET.
 */
async function send(ep: Endpoint, method: string, path: string, body: unknown, onChunk?: (text: string) => void): Promise<string> {
  const managers = parseManagerUrls(ep.url);
  for (let i = 0; ; i++) {
    const m = managers[i] as ManagerUrl;
    try {
      return await sendTo(m, ep.token, method, path, body, onChunk);
    } catch (e) {
      const errno = (e as { errno?: string }).errno;
      const retry = i + 1 < managers.length && ((errno !== undefined && NOT_SENT.has(errno)) || (method === 'GET' && errno !== undefined && !onChunk));
      if (!retry) throw e;
    }
  }
}

function sendTo(m: ManagerUrl, token: string, method: string, path: string, body: unknown, onChunk?: (text: string) => void): Promise<string> {
  const sink: string[] = [];
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const target = httpTargetOf(m, path);
  const conn = connectOptions(m, token);
  return new Promise<string>((resolve, reject) => {
    const req = (m.kind === 'tcp' ? httpsRequest : httpRequest)({
      ...target, method, ...(conn as object),
      headers: {
        authorization: `Bearer ${token}`,
        ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
      },
      ...(onChunk ? {} : { timeout: 30_000 }),
    }, (res) => {
      const status = res.statusCode ?? 500;
      res.setEncoding('utf8');
      res.on('data', (c: string) => { if (onChunk && status < 400) onChunk(c); else sink.push(c); });
      res.on('end', () => {
        const text = sink.join('');
        if (status >= 400) {
          let e: { code?: string; message?: string } | undefined;
          try { e = JSON.parse(text) as typeof e; } catch { e = undefined; }
          reject(new ShoalError(kindOfHttpStatus(status), e?.code ?? `HTTP_${status}`, e?.message ?? `manager answered ${status}`));
        } else resolve(text);
      });
    });
    if (!onChunk) req.on('timeout', () => req.destroy(new Error('timed out after 30 s')));
    let sent = false;
    req.on('finish', () => { sent = true; });
    req.on('error', (e: NodeJS.ErrnoException) => {
      const err = new ShoalError('Unavailable', isShoalError(e) ? e.code : 'UNREACHABLE', `cannot reach the manager at ${m.text}: ${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'nothing is listening (is shoal up running?)' : e.message}`);
      // What the caller may retry elsewhere: the errno, or "not sent" for a reset before the request went out.
      (err as { errno?: string }).errno = e.code === 'ECONNRESET' && !sent ? 'ECONNRESET_BEFORE_SEND' : (e.code ?? 'EUNKNOWN');
      reject(err);
    });
    if (payload) req.write(payload);
    req.end();
  });
}
