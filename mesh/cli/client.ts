/**
 * The API client the CLI (and tests) use. Finds the manager the way the CLI contract says:
 * `--host` / `SHOAL_HOST` (`http://...` or `unix:///path`), else the socket that `shoal up` /
 * `shoal manager` announces in the data dir (`--data-dir` / `SHOAL_DATA_DIR`, default
 * /var/lib/shoal). The token: `--token` / `SHOAL_TOKEN`, else `<data dir>/manager.token`.
 */
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { kindOfHttpStatus, ShoalError } from '../../src/errors.js';
import { DEFAULT_DATA_DIR, socketPath, tokenPath } from '../daemon/index.js';

export interface Endpoint { url: string; token: string }

export function resolveEndpoint(o: { host?: string; token?: string; dataDir?: string }, env: NodeJS.ProcessEnv = process.env): Endpoint {
  const dataDir = o.dataDir ?? env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;
  const url = o.host ?? env['SHOAL_HOST'] ?? `unix://${socketPath(dataDir)}`;
  if (!/^(https?|unix):\/\//.test(url)) throw new ShoalError('InvalidParameter', 'BAD_HOST', `--host '${url}' must be an http:// URL or a unix:// socket path`);
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

/** Sends a request; an error status becomes a ShoalError from the `{code, message}` body. */
function send(ep: Endpoint, method: string, path: string, body: unknown, onChunk?: (text: string) => void): Promise<string> {
  const sink: string[] = [];
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const target = ep.url.startsWith('unix://')
    ? { socketPath: ep.url.slice('unix://'.length), path }
    : (() => { const u = new URL(path, ep.url); return { host: u.hostname, port: u.port, path: u.pathname + u.search }; })();
  return new Promise<string>((resolve, reject) => {
    const req = httpRequest({
      ...target, method,
      headers: {
        authorization: `Bearer ${ep.token}`,
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
    req.on('error', (e: NodeJS.ErrnoException) => {
      reject(new ShoalError('Unavailable', 'UNREACHABLE', `cannot reach the manager at ${ep.url}: ${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'nothing is listening (is shoal up running?)' : e.message}`));
    });
    if (payload) req.write(payload);
    req.end();
  });
}
