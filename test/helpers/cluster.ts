/**
 * Test helpers for the manager: an in-process manager on an in-memory store with its API on
 * 127.0.0.1 (port 0), raw HTTP requests, the CLI run in-process, and a full dump of the store
 * (to prove that a refused request changed nothing).
 */
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';
import { closeApiServer, createApiServer } from '../../mesh/api/server.js';
import { Manager } from '../../mesh/manager/index.js';
import { runCli } from '../../mesh/cli/main.js';
import type { Server } from 'node:http';

export interface TestManager {
  store: Store;
  manager: Manager;
  server: Server;
  url: string;
  token: string;
  joinToken: string;
  close(): Promise<void>;
}

export async function startTestManager(opts: { store?: Store; nodeLeaseTtlSeconds?: number; maxBufferedBytes?: number; port?: number } = {}): Promise<TestManager> {
  const store = opts.store ?? (await openEmbeddedStore({}));
  const manager = new Manager(store, { nodeLeaseTtlSeconds: opts.nodeLeaseTtlSeconds ?? 10 });
  await manager.start();
  const server = createApiServer(manager, opts.maxBufferedBytes !== undefined ? { maxBufferedBytes: opts.maxBufferedBytes } : {});
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    store, manager, server, url: `http://127.0.0.1:${port}`, token: manager.cluster.managerToken, joinToken: manager.cluster.joinToken,
    async close() {
      await closeApiServer(server);
      await manager.stop();
      if (!opts.store) await store.close();
    },
  };
}

export interface RawResponse { status: number; body: unknown; text: string }

/** A raw request: `body` is sent as given (a string is sent verbatim, anything else as JSON). */
export function raw(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: { ...(payload ? { 'content-length': String(payload.length) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown;
        try { parsed = JSON.parse(text); } catch { parsed = undefined; }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

export const api = (m: TestManager, method: string, path: string, body?: unknown): Promise<RawResponse> =>
  raw(m.url, method, path, body, { authorization: `Bearer ${m.token}` });

/** Runs the CLI in-process against `m`; returns exit code and output. */
export async function cli(m: TestManager, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await runCli(argv, { out: (s) => { out += s; }, err: (s) => { err += s; }, env: { SHOAL_HOST: m.url, SHOAL_TOKEN: m.token } });
  return { code, out, err };
}

/** Every key, value and revision in the store: equal dumps mean nothing changed. */
export async function dumpStore(store: Store): Promise<string> {
  const { kvs, revision } = await store.range('');
  return JSON.stringify({ revision, kvs });
}

/** Polls `fn` until it returns a truthy value or the deadline passes (then throws with `what`). */
export async function until<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 10_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
