/**
 * Certificate rotation on a real cluster (the multi-node harness: a manager and two agents in
 * their own namespaces, agents joined over TLS with node certificates):
 * - node certificates with an 8 s lifetime (`--node-cert-ttl 8s`) are renewed at 2/3 of their
 *   life over the open session, again and again: no reconnect, no task restarted;
 * - `shoal ca rotate` under traffic: a client loops through a published port while the CA is
 *   replaced; it sees no error, no session drops, no task restarts; afterwards every node holds
 *   a certificate from the new CA, the tokens pin it, an agent restarted reconnects with it, and
 *   the CLI (a real process on the underlay) refuses a manager with the old token's pin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaStatus } from '../../mesh/security/index.js';
import { fingerprintOf } from '../../mesh/security/ca.js';
import { parseToken } from '../../mesh/security/tokens.js';
import type { Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';
import { SHOAL_MAIN } from '../helpers/shoal-process.js';

const LOOP = fileURLToPath(new URL('../fixtures/http-loop.mjs', import.meta.url));
const WEB = `require('node:http').createServer((q, r) => r.end(process.env.SHOAL_TASK_NAME + '\\n')).listen(80);`;

let h: Harness;
const children: ChildProcess[] = [];

const renewals = (n: HarnessNode): number => (n.agentProcess.output().match(/node certificate renewed/g) ?? []).length;
const disconnects = (n: HarnessNode): number => (n.agentProcess.output().match(/disconnected from manager/g) ?? []).length;
const serial = (n: HarnessNode): string => new X509Certificate(readFileSync(join(n.dataDir, 'tls', 'node.crt'))).serialNumber;
/** Task id -> pid and restart count: equal snapshots mean no task was restarted or replaced. */
const snapshot = async (): Promise<string> => JSON.stringify((await h.json<Task[]>('service', 'ps', 'web'))
  .filter((t) => t.desiredState === 'running').map((t) => [t.id, t.status.state, t.status.pid, t.status.restarts ?? 0]).sort());

beforeAll(async () => {
  h = await startHarness({ nodes: 2, managerArgs: ['--node-cert-ttl', '8s'] });
  const r = await h.shoal('service', 'create', '--name', 'web', '--replicas', '2', '-p', '8080:80', '--', process.execPath, '-e', WEB);
  expect(r.code, r.err).toBe(0);
  await until(async () => (await h.json<Task[]>('service', 'ps', 'web')).filter((t) => t.status.state === 'running').length === 2, 'web running', 30_000, 200);
  // Served through the routing mesh from outside before anything else happens.
  await until(async () => (await h.client.exec(['curl', '-sf', '-m', '2', `http://${h.nodes[0]!.address}:8080/`])).stdout.startsWith('web.'), 'web answers on 8080', 30_000, 200);
}, 120_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await destroyAllHarnesses();
});

describe('node certificate renewal', () => {
  it('renews each node certificate at 2/3 of its life, twice, without dropping the session or restarting a task', async () => {
    const before = await snapshot();
    const serials = h.nodes.map(serial);
    const counts = h.nodes.map(renewals);
    await until(() => h.nodes.every((n, i) => renewals(n) >= (counts[i] ?? 0) + 2), 'two renewals on every node', 40_000, 200);
    expect(h.nodes.map(serial).every((s, i) => s !== serials[i])).toBe(true);
    expect(h.nodes.map(disconnects)).toEqual([0, 0]);
    expect(await snapshot()).toBe(before);
    // The manager sees certificates that expire within the short lifetime, and the nodes ready.
    const ca = await h.json<CaStatus>('ca', 'inspect');
    expect(ca.nodes.map((n) => n.name).sort()).toEqual(h.nodes.map((n) => n.name).sort());
    for (const n of ca.nodes) expect(Date.parse(n.certificateNotAfter ?? '') - Date.now()).toBeLessThanOrEqual(8_000);
    const metrics = await h.nodes[0]!.exec(['curl', '-sf', 'http://127.0.0.1:9323/metrics']);
    expect(metrics.stdout).toMatch(/^shoal_agent_certificate_renewals_total [2-9]/m);
    expect(metrics.stdout).toMatch(/^shoal_agent_session_reconnects_total 0$/m);
  }, 60_000);
});

describe('CA rotation under traffic', () => {
  it('moves every node to a new CA while a client loops through the published port: no error, no reconnect, no restart', async () => {
    const before = await snapshot();
    const oldCa = await h.json<CaStatus>('ca', 'inspect');
    const oldManagerToken = h.manager.token;
    const loop = spawn('nsenter', [`--net=/run/netns/${h.client.netns}`, process.execPath, LOOP, h.nodes[1]!.address, '8080'], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(loop);
    let out = '';
    loop.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<void>((r) => loop.on('exit', () => r()));

    const r = await h.shoal('ca', 'rotate');
    expect(r.code, `${r.err}\n${h.logs()}`).toBe(0);
    expect(r.out).toMatch(/CA rotation started: generation 2/);
    expect(r.out).toMatch(/CA rotation done: every ready node \(2\) holds a certificate from generation 2/);
    // Some more traffic after the rotation finished, then the client's verdict.
    await new Promise((res) => setTimeout(res, 1000));
    loop.stdin.end();
    await exited;
    const verdict = JSON.parse(out) as { ok: number; errors: string[] };
    expect(verdict.errors).toEqual([]);
    expect(verdict.ok).toBeGreaterThan(10);
    expect(h.nodes.map(disconnects)).toEqual([0, 0]);
    expect(await snapshot()).toBe(before);

    // Every node is on the new CA; the old one is gone from the trust and the tokens.
    const ca = await h.json<CaStatus>('ca', 'inspect');
    expect(ca.generation).toBe(2);
    expect(ca.rotating).toBe(false);
    expect(ca.fingerprint).not.toBe(oldCa.fingerprint);
    expect(ca.nodes.every((n) => n.onCurrentCa)).toBe(true);
    const pem = readFileSync(join(h.manager.dataDir, 'ca.pem'), 'utf8');
    expect(fingerprintOf(pem)).toBe(ca.fingerprint);
    const joinToken = readFileSync(join(h.manager.dataDir, 'join.token'), 'utf8').trim();
    const managerToken = readFileSync(join(h.manager.dataDir, 'manager.token'), 'utf8').trim();
    expect(parseToken(joinToken)?.fingerprint).toBe(ca.fingerprint);
    expect(parseToken(managerToken)?.secret).toBe(parseToken(oldManagerToken)?.secret);
    for (const n of h.nodes) {
      const cas = readFileSync(join(n.dataDir, 'tls', 'ca.pem'), 'utf8');
      expect(cas.match(/BEGIN CERTIFICATE/g)?.length).toBe(1);
      expect(fingerprintOf(cas)).toBe(ca.fingerprint);
    }

    // The real CLI on the underlay: the new token works; the old one pins a CA the manager no
    // longer has, and the CLI refuses the manager before sending it.
    const cliArgs = (token: string): string[] => [process.execPath, '--import', 'tsx', SHOAL_MAIN, 'node', 'ls', '--host', h.manager.url, '--token', token];
    const good = await h.client.exec(cliArgs(managerToken), { timeoutMs: 60_000 });
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain(h.nodes[0]!.name);
    const stale = await h.client.exec(cliArgs(oldManagerToken), { timeoutMs: 60_000 });
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/does not lead to the CA the token pins/);

    // An agent restarted now reconnects with the certificate it got from the new CA.
    const n = h.nodes[0]!;
    await n.stopAgent('SIGTERM');
    await n.startAgent();
    expect(n.agentProcess.output()).not.toMatch(/joining through/);
  }, 120_000);
});

describe('a removed node', () => {
  it('is refused for good: its agent says how to join again and exits 1; its tasks move elsewhere', async () => {
    const n = h.nodes[1]!;
    const gone = (await h.json<Array<{ id: string }>>('node', 'inspect', n.name))[0]?.id;
    const r = await h.shoal('node', 'rm', '--force', n.name);
    expect(r.code, r.err).toBe(0);
    await until(() => !n.agentProcess.running(), 'the removed node\'s agent to exit', 30_000, 200);
    expect(n.agentProcess.child.exitCode).toBe(1);
    const out = n.agentProcess.output();
    expect(out).toMatch(/manager refused the session \(403\): node [0-9a-f]+ \('.+'\) was removed from the cluster/);
    expect(out).toMatch(/to join again as a new node, delete .*\/tls and start the agent with a join token/);
    await until(async () => (await h.json<Task[]>('service', 'ps', 'web')).filter((t) => t.nodeId !== gone && t.desiredState === 'running' && t.status.state === 'running').length === 2, 'web back to 2 replicas on the other node', 30_000, 200);
  }, 60_000);
});
