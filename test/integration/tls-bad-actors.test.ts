/**
 * The bad-actor table of issue 15, each case against a manager serving TLS on 127.0.0.1 (the
 * in-process test manager: the same server, listener and checks as `shoal manager --listen`),
 * with real clients: curl, node's https/tls, the `ws` client, and the shoal CLI. Each refusal
 * must be a 401/403 (or a TLS error), carry a sentence saying why, leave a line in the
 * manager's log, count in `shoal_manager_auth_failures_total`, and change nothing in the store
 * (a dump before and after).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { fingerprintOf } from '../../mesh/security/ca.js';
import { formatToken, newSecret, parseToken } from '../../mesh/security/tokens.js';
import { createCa, issueCertificate, newKeyPair } from '../../mesh/security/x509.js';
import { cli, dumpStore, joinCert, raw, startTestManager, until, wssUrl, wsTls, type TestManager, type TestNodeCert } from '../helpers/cluster.js';

const run = promisify(execFile);
let m: TestManager;
let dir: string;
let caFile: string;

beforeAll(async () => {
  m = await startTestManager();
  dir = mkdtempSync(join(tmpdir(), 'shoal-tls-bad-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, m.cas.join(''));
});

afterAll(async () => {
  await m.close();
  rmSync(dir, { recursive: true, force: true });
});

/** curl's status code and body (`-w` appends the code on its own line). */
async function curl(...args: string[]): Promise<{ status: number; body: string; exit: number }> {
  try {
    const r = await run('curl', ['-s', '-m', '10', '-w', '\n%{http_code}', ...args]);
    const lines = r.stdout.split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n'), exit: 0 };
  } catch (e) {
    const err = e as { code?: number; stdout?: string };
    const lines = (err.stdout ?? '').split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n'), exit: err.code ?? -1 };
  }
}

/** Runs `attempt`, asserting the store is unchanged and the manager logged a refusal matching `log`. */
async function refusedWithoutChange<T>(log: RegExp, attempt: () => Promise<T>): Promise<T> {
  const before = await dumpStore(m.store);
  const lines = m.logs.length;
  const out = await attempt();
  await until(() => m.logs.slice(lines).some((l) => log.test(l)), `a manager log line matching ${String(log)} (got: ${m.logs.slice(lines).join(' | ')})`, 5000);
  expect(await dumpStore(m.store)).toBe(before);
  return out;
}

/** An agent session attempt: the upgrade's status and body, or the open socket. */
function session(path: string, o: { cert?: TestNodeCert | { certPem: string; keyPem: string }; token?: string }): Promise<{ status: number; body: string } | { ws: WebSocket }> {
  const ws = new WebSocket(wssUrl(m, path), { ...wsTls(m, o.cert as TestNodeCert | undefined), ...(o.token ? { headers: { authorization: `Bearer ${o.token}` } } : {}) });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => { ws.terminate(); resolve({ status: res.statusCode ?? 0, body }); });
    });
    ws.once('error', reject);
  });
}

/** Sends a join on an open session; resolves with how the manager closed it. */
function joinAndClose(ws: WebSocket, join: Record<string, unknown>): Promise<{ code: number; reason: string; frames: string[] }> {
  const frames: string[] = [];
  ws.on('message', (d: Buffer) => frames.push(d.toString()));
  return new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), frames }));
    ws.send(JSON.stringify({ type: 'join', address: '127.0.0.1', ...join }));
  });
}

const failures = (reason: string): number => m.manager.security.failures.auth.get(reason) ?? 0;

describe('bad actors against the TLS listener', () => {
  it('plain HTTP to the manager: 400 that says to use https, logged; curl and node http alike', async () => {
    const r = await refusedWithoutChange(/refused plain HTTP from 127\.0\.0\.1:\d+ on the TLS port/, () => curl(`${m.url.replace('https', 'http')}/v1/info`));
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({ code: 'SHOAL_ERR_TLS_REQUIRED', message: expect.stringMatching(/speaks TLS only: use https:\/\//) as string });
    expect(m.manager.security.failures.handshake.get('plain_http')).toBeGreaterThanOrEqual(1);
    // The CLI refuses an http:// URL before sending anything.
    const c = await cli(m, 'network', 'ls', '--host', m.url.replace('https', 'http'));
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/managers serve TLS only: use https:\/\/127\.0\.0\.1:\d+/);
  });

  it('no token: 401 (curl with the CA, the CLI, the watch stream)', async () => {
    const r = await refusedWithoutChange(/refused GET \/v1\/networks from 127\.0\.0\.1: no credentials/, () => curl('--cacert', caFile, `${m.url}/v1/networks`));
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'SHOAL_ERR_UNAUTHORIZED', message: expect.stringMatching(/manager token/) as string });
    const w = await refusedWithoutChange(/refused GET \/v1\/watch .*no credentials/, () => session('/v1/watch', {}));
    expect(w).toMatchObject({ status: 401 });
    expect(failures('no_token')).toBeGreaterThanOrEqual(2);
  });

  it('the join token used as a manager token: 403 on the API and the watch, 401 as an agent session', async () => {
    const r = await refusedWithoutChange(/refused POST \/v1\/networks .*join token only joins nodes/, () => curl('--cacert', caFile, '-H', `Authorization: Bearer ${m.joinToken}`, '-X', 'POST', '-d', '{"name":"evil"}', `${m.url}/v1/networks`));
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'SHOAL_ERR_JOIN_TOKEN_AS_MANAGER' });
    const c = await refusedWithoutChange(/join token only joins nodes/, () => cli(m, 'network', 'create', 'evil', '--token', m.joinToken));
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/the join token only joins nodes/);
    expect(await refusedWithoutChange(/refused GET \/v1\/watch .*join token only joins nodes/, () => session('/v1/watch', { token: m.joinToken }))).toMatchObject({ status: 403 });
    const a = await refusedWithoutChange(/refused GET \/v1\/agent .*needs the node certificate/, () => session('/v1/agent', { token: m.joinToken }));
    expect(a).toMatchObject({ status: 401, body: expect.stringMatching(/join token only gets one/) as string });
    // ... and the manager token does not join nodes.
    const j = await refusedWithoutChange(/refused POST \/v1\/nodes\/join .*does not join nodes/, () => raw(m.url, 'POST', '/v1/nodes/join', { name: 'x', csr: 'x' }, { authorization: `Bearer ${m.token}` }));
    expect(j.status).toBe(403);
  });

  it('a forged token (right shape, right CA, wrong secret): 401 from the API and for a join', async () => {
    const forged = formatToken(parseToken(m.token)?.fingerprint ?? '', newSecret());
    const r = await refusedWithoutChange(/refused GET \/v1\/nodes .*wrong token/, () => curl('--cacert', caFile, '-H', `Authorization: Bearer ${forged}`, `${m.url}/v1/nodes`));
    expect(r.status).toBe(401);
    const c = await cli(m, 'node', 'ls', '--token', forged);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/wrong token/);
    const j = await refusedWithoutChange(/refused POST \/v1\/nodes\/join .*wrong token/, () => raw(m.url, 'POST', '/v1/nodes/join', { name: 'forger', csr: 'x' }, { authorization: `Bearer ${formatToken(parseToken(m.joinToken)?.fingerprint ?? '', newSecret())}` }));
    expect(j.status).toBe(401);
    expect(failures('wrong_token')).toBeGreaterThanOrEqual(2);
  });

  it('a token pinning another CA: the CLI refuses the manager in the TLS handshake (nothing sent); sent anyway, 401', async () => {
    const other = await createCa({ clusterId: 'elsewhere', generation: 1, validDays: 1 });
    const secret = parseToken(m.token)?.secret ?? '';
    const pinsOther = formatToken(fingerprintOf(other.certPem), secret);
    const before = await dumpStore(m.store);
    const lines = m.logs.length;
    const c = await cli(m, 'node', 'ls', '--token', pinsOther);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/does not lead to the CA the token pins/);
    // Refused by the client before any request: the manager saw no request at all.
    expect(m.logs.slice(lines).some((l) => /refused GET/.test(l))).toBe(false);
    expect(await dumpStore(m.store)).toBe(before);
    // A client that ignores the pin and sends it: the secret is right, the pin is not.
    const r = await refusedWithoutChange(/refused GET \/v1\/nodes .*pins another CA/, () => curl('--cacert', caFile, '-H', `Authorization: Bearer ${pinsOther}`, `${m.url}/v1/nodes`));
    expect(r.status).toBe(401);
    expect(failures('other_ca')).toBeGreaterThanOrEqual(1);
  });

  it("an agent certificate used by another node: 403 at the upgrade, close 4403 at the join", async () => {
    const a = await joinCert(m, 'node-a');
    const b = await joinCert(m, 'node-b');
    // node-b is a node of the cluster now.
    const bs = await session(`/v1/agent?node=${b.nodeId}&name=node-b`, { cert: b });
    if (!('ws' in bs)) throw new Error(`node-b refused: ${bs.body}`);
    const welcome = new Promise<void>((r) => bs.ws.once('message', () => r()));
    bs.ws.send(JSON.stringify({ type: 'join', name: 'node-b', nodeId: b.nodeId, address: '127.0.0.1' }));
    await welcome;
    bs.ws.close();
    // Another machine presents node-a's certificate under its own name.
    const r = await refusedWithoutChange(/refused agent session from 127\.0\.0\.1: the certificate is node [0-9a-f]+'s: node 'node-b' is another node/, () => session('/v1/agent?name=node-b', { cert: a }));
    expect(r).toMatchObject({ status: 403, body: expect.stringMatching(/SHOAL_ERR_IDENTITY_MISMATCH/) as string });
    // Without a claim in the URL, the join message is checked the same way.
    const s = await session('/v1/agent', { cert: a });
    if (!('ws' in s)) throw new Error('upgrade refused');
    const closed = await refusedWithoutChange(/agent session \(joining\): the certificate is node [0-9a-f]+'s: node 'node-b' is another node/, () => joinAndClose(s.ws, { name: 'node-b' }));
    expect(closed.code).toBe(4403);
    expect(closed.frames.join()).toMatch(/identity/i);
    // A name of no node yet: node-a's certificate cannot make a second node either once node-a exists.
    const as = await session(`/v1/agent?node=${a.nodeId}&name=node-a`, { cert: a });
    if (!('ws' in as)) throw new Error('node-a refused');
    const w2 = new Promise<void>((r) => as.ws.once('message', () => r()));
    as.ws.send(JSON.stringify({ type: 'join', name: 'node-a', address: '127.0.0.1' }));
    await w2;
    as.ws.close();
    expect(await refusedWithoutChange(/cannot join as 'node-c'/, () => session('/v1/agent?name=node-c', { cert: a }))).toMatchObject({ status: 403 });
  });

  it("a certificate for node A claiming node B's id: 403 at the upgrade, close 4403 at the join", async () => {
    const a = await joinCert(m, 'claimer-a');
    const b = await joinCert(m, 'claimer-b');
    const r = await refusedWithoutChange(/refused agent session .*it cannot act as node/, () => session(`/v1/agent?node=${b.nodeId}&name=claimer-a`, { cert: a }));
    expect(r).toMatchObject({ status: 403 });
    expect(JSON.parse((r as { body: string }).body)).toMatchObject({ code: 'SHOAL_ERR_IDENTITY_MISMATCH', message: `the certificate is node ${a.nodeId}'s: it cannot act as node ${b.nodeId}` });
    const s = await session('/v1/agent', { cert: a });
    if (!('ws' in s)) throw new Error('upgrade refused');
    const closed = await refusedWithoutChange(/it cannot act as node/, () => joinAndClose(s.ws, { name: 'claimer-a', nodeId: b.nodeId }));
    expect(closed.code).toBe(4403);
    expect(failures('identity_mismatch')).toBeGreaterThanOrEqual(2);
  });

  it('an expired certificate: 403 that says it expired and how to join again', async () => {
    const kp = newKeyPair();
    const id = (await joinCert(m, 'expiring')).nodeId;
    // Signed by the real cluster CA, valid from a minute ago until 30 s ago.
    const certPem = await issueCertificate({ ca: m.manager.security.ca.current, publicKeyPem: kp.publicKeyPem, validSeconds: -30, subject: { commonName: id, role: 'shoal-worker', clusterId: m.manager.cluster.id } });
    const r = await refusedWithoutChange(/refused GET \/v1\/agent .*expired at/, () => session(`/v1/agent?node=${id}&name=expiring`, { cert: { certPem, keyPem: kp.keyPem } }));
    expect(r).toMatchObject({ status: 403 });
    expect(JSON.parse((r as { body: string }).body)).toMatchObject({ code: 'SHOAL_ERR_EXPIRED', message: expect.stringMatching(/expired at .*join again/) as string });
  });

  it('a certificate from another CA (self-made, right names): 403 untrusted', async () => {
    const rogue = await createCa({ clusterId: m.manager.cluster.id, generation: 1, validDays: 1 });
    const kp = newKeyPair();
    const b = await joinCert(m, 'impersonated');
    const certPem = await issueCertificate({ ca: rogue, publicKeyPem: kp.publicKeyPem, validSeconds: 600, subject: { commonName: b.nodeId, role: 'shoal-worker', clusterId: m.manager.cluster.id } });
    const r = await refusedWithoutChange(/refused GET \/v1\/agent .*not from this cluster's CA/, () => session('/v1/agent?name=impersonated', { cert: { certPem, keyPem: kp.keyPem } }));
    expect(r).toMatchObject({ status: 403, body: expect.stringMatching(/SHOAL_ERR_UNTRUSTED/) as string });
  });

  it('a revoked node reconnecting: node rm closes its session (4403) and refuses it from then on (403)', async () => {
    const a = await joinCert(m, 'doomed');
    const s = await session(`/v1/agent?node=${a.nodeId}&name=doomed`, { cert: a });
    if (!('ws' in s)) throw new Error('refused');
    const closed = new Promise<number>((r) => s.ws.once('close', (code) => r(code)));
    const welcome = new Promise<void>((r) => s.ws.once('message', () => r()));
    s.ws.send(JSON.stringify({ type: 'join', name: 'doomed', address: '127.0.0.1' }));
    await welcome;
    const rm = await cli(m, 'node', 'rm', '--force', 'doomed');
    expect(rm.code, rm.err).toBe(0);
    expect(await closed).toBe(4403);
    const r = await refusedWithoutChange(/refused GET \/v1\/agent .*was removed from the cluster .*certificate is revoked/, () => session(`/v1/agent?node=${a.nodeId}&name=doomed`, { cert: a }));
    expect(r).toMatchObject({ status: 403, body: expect.stringMatching(/SHOAL_ERR_REVOKED/) as string });
    // Its certificate is good for nothing else either (the watch stream), and cannot be renewed.
    expect(await refusedWithoutChange(/refused GET \/v1\/watch .*revoked/, () => session('/v1/watch', { cert: a }))).toMatchObject({ status: 403 });
    expect(failures('revoked')).toBeGreaterThanOrEqual(2);
  });

  it('shoal token rotate join: the old join token is refused from then on, nodes that joined keep working', async () => {
    const joined = await joinCert(m, 'before-rotation');
    const old = m.joinToken;
    const r = await cli(m, 'token', 'rotate', 'join');
    expect(r.code, r.err).toBe(0);
    const fresh = r.out.trim();
    expect(parseToken(fresh)?.fingerprint).toBe(parseToken(old)?.fingerprint);
    expect(fresh).not.toBe(old);
    expect(m.joinToken).toBe(fresh);
    const csr = (await import('../../mesh/security/x509.js')).createCsr(newKeyPair(), 'late');
    const refused = await refusedWithoutChange(/refused POST \/v1\/nodes\/join .*wrong token/, async () => raw(m.url, 'POST', '/v1/nodes/join', { name: 'late', csr: await csr }, { authorization: `Bearer ${old}` }));
    expect(refused.status).toBe(401);
    expect((await joinCert(m, 'after-rotation')).nodeId).toMatch(/^[0-9a-f]{16}$/);
    // A node certificate is not a token: the one issued before still opens a session.
    const s = await session(`/v1/agent?node=${joined.nodeId}&name=before-rotation`, { cert: joined });
    expect('ws' in s).toBe(true);
    if ('ws' in s) s.ws.close();
    const bad = await cli(m, 'token', 'rotate', 'worker');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/say which token: shoal token rotate join\|manager/);
  });

  it('counts refusals in shoal_manager_auth_failures_total and handshake failures by reason', async () => {
    const { Registry, registerManagerMetrics } = await import('../../mesh/metrics.js');
    const reg = new Registry();
    registerManagerMetrics(reg, m.manager);
    const text = await reg.metrics();
    for (const reason of ['no_token', 'wrong_token', 'other_ca', 'join_token_as_manager', 'identity_mismatch', 'expired', 'untrusted', 'revoked']) {
      expect(text).toMatch(new RegExp(`shoal_manager_auth_failures_total\\{reason="${reason}"\\} [1-9]`));
    }
    expect(text).toMatch(/shoal_manager_tls_handshake_failures_total\{reason="plain_http"\} [1-9]/);
    expect(text).toMatch(/shoal_manager_node_certificate_expiry_seconds\{node="[0-9a-f]+"\} 8\d{4}/);
  });
});
