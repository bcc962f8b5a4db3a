/**
 * Test helpers for the manager: an in-process manager on an in-memory store with its API on
 * 127.0.0.1 (port 0) over TLS (as `shoal manager --listen` serves it), raw HTTPS requests that
 * verify the manager against the cluster CA, the CLI run in-process, and a full dump of the
 * store (to prove that a refused request changed nothing).
 */
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';
import { closeApiServer, createApiServer, listenApiServer } from '../../mesh/api/server.js';
import { Manager } from '../../mesh/manager/index.js';
import { runCli } from '../../mesh/cli/main.js';
import { ManagerTls } from '../../mesh/security/manager-tls.js';
import { checkManagerRole } from '../../mesh/security/tls-client.js';
import { createCsr, newKeyPair } from '../../mesh/security/x509.js';
import type { Server } from 'node:http';

export interface TestManager {
  store: Store;
  manager: Manager;
  server: Server;
  url: string;
  /** Current tokens (a rotation changes them). */
  readonly token: string;
  readonly joinToken: string;
  /** The cluster's trusted CA certificates (PEM), as `ca.pem` in a manager's data dir. */
  readonly cas: string[];
  tls: ManagerTls;
  /** Manager log lines (refusals say why here). */
  logs: string[];
  close(): Promise<void>;
}

/** CA certificates of the test managers by URL: {@link raw} verifies the server with them. */
const casOf = new Map<string, () => string[]>();

export async function startTestManager(opts: { store?: Store; nodeLeaseTtlSeconds?: number; maxBufferedBytes?: number; port?: number; nodeCertTtlSeconds?: number } = {}): Promise<TestManager> {
  const store = opts.store ?? (await openEmbeddedStore({}));
  const logs: string[] = [];
  const log = (m: string, e?: unknown): void => { logs.push(e ? `${m}: ${String(e)}` : m); };
  const manager = new Manager(store, { nodeLeaseTtlSeconds: opts.nodeLeaseTtlSeconds ?? 10, log, ...(opts.nodeCertTtlSeconds !== undefined ? { nodeCertTtlSeconds: opts.nodeCertTtlSeconds } : {}) });
  await manager.start();
  const tls = await ManagerTls.create(manager.security, { name: 'test-manager', listenHost: '127.0.0.1', log });
  const server = createApiServer(manager, { tls, log, ...(opts.maxBufferedBytes !== undefined ? { maxBufferedBytes: opts.maxBufferedBytes } : {}) });
  const port = await listenApiServer(server, { host: '127.0.0.1', port: opts.port ?? 0 });
  const url = `https://127.0.0.1:${port}`;
  casOf.set(url, () => manager.security.trustedCas);
  return {
    store, manager, server, url, tls, logs,
    get token() { return manager.cluster.managerToken; },
    get joinToken() { return manager.cluster.joinToken; },
    get cas() { return manager.security.trustedCas; },
    async close() {
      casOf.delete(url);
      tls.stop();
      await closeApiServer(server);
      await manager.stop();
      if (!opts.store) await store.close();
    },
  };
}

export interface RawResponse { status: number; body: unknown; text: string }

/**
 * A raw HTTPS request to a test manager (its certificate verified against the cluster CA):
 * `body` is sent as given (a string is sent verbatim, anything else as JSON); `cert` presents a
 * client certificate.
 */
export function raw(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, cert?: { certPem: string; keyPem: string }): Promise<RawResponse> {
  const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const u = new URL(path, url);
  const cas = casOf.get(new URL(url).origin)?.();
  // A plain http:// URL: an API server made without TLS (benchmarks of the store).
  const send = u.protocol === 'http:' ? httpRequest : request;
  return new Promise((resolve, reject) => {
    const req = send({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: { ...(payload ? { 'content-length': String(payload.length) } : {}), ...headers },
      ...(cas ? { ca: cas, checkServerIdentity: checkManagerRole } : {}), ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}), agent: false,
    }, (res) => {
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

/** WebSocket options that trust a test manager's CA (and present `cert` when given). */
export function wsTls(m: TestManager, cert?: { certPem: string; keyPem: string }): { ca: string[]; checkServerIdentity: typeof checkManagerRole; cert?: string; key?: string } {
  return { ca: m.cas, checkServerIdentity: checkManagerRole, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) };
}

/** `https://` -> `wss://` of a test manager's URL. */
export const wssUrl = (m: TestManager, path: string): string => m.url.replace(/^https/, 'wss') + path;

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

/** A node identity got through the real join endpoint (join token + certificate request). */
export interface TestNodeCert { nodeId: string; certPem: string; keyPem: string; ca: string[] }

/** Joins `name` to `m` as an agent would (POST /v1/nodes/join): a new key, its certificate. */
export async function joinCert(m: TestManager, name: string): Promise<TestNodeCert> {
  const kp = newKeyPair();
  const res = await raw(m.url, 'POST', '/v1/nodes/join', { name, csr: await createCsr(kp, name) }, { authorization: `Bearer ${m.joinToken}`, 'content-type': 'application/json' });
  if (res.status !== 201) throw new Error(`join of ${name} refused: ${res.status} ${res.text}`);
  const b = res.body as { nodeId: string; certificate: string; ca: string[] };
  return { nodeId: b.nodeId, certPem: b.certificate, keyPem: kp.keyPem, ca: b.ca };
}
