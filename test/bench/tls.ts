/**
 * What TLS costs the control plane, side by side with the unix socket on the same manager
 * (in-process, the same API server code on both listeners). Not a test; never part of the
 * pass/fail gate.
 *
 *   node --import tsx test/bench/tls.ts
 *   BENCH_REQUESTS=300 BENCH_NODES=10 node --import tsx test/bench/tls.ts
 *
 * - `GET /v1/info` through the CLI's client, one new connection per request (what one CLI
 *   command costs): over the unix socket vs over TLS pinned to the token's CA fingerprint.
 * - Join: a node's first certificate (key, request, pinned TLS, signature) per node.
 * - CA rotation: BENCH_NODES agent sessions (mutual TLS, on this machine) connected; the time
 *   from `POST /v1/ca/rotate` until every one holds a certificate from the new CA and the
 *   rotation is finished (the old CA dropped).
 * Writes docs/bench-tls.md (one section per machine).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeApiServer, createApiServer, listenApiServer } from '../../mesh/api/server.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import { AgentSession } from '../../mesh/agent/session.js';
import { call } from '../../mesh/cli/client.js';
import { NodeIdentity } from '../../mesh/security/agent-identity.js';
import { parseManagerUrl } from '../../mesh/api/manager-url.js';
import { startTestManager } from '../helpers/cluster.js';
import { writeSection } from './doc.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200);
const NODES = Number(process.env.BENCH_NODES ?? 10);
const DOC = 'docs/bench-tls.md';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const f1 = (x: number): string => x.toFixed(1);

async function timed(n: number, f: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    out.push(performance.now() - t);
  }
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-tls-'));
  const m = await startTestManager({ nodeLeaseTtlSeconds: 10 });
  const sock = join(dir, 'shoal.sock');
  const local = createApiServer(m.manager);
  await listenApiServer(local, { path: sock });
  const sessions: AgentSession[] = [];
  try {
    // Warm both paths (the x509 library loads on the first certificate, not per request).
    await call({ url: `unix://${sock}`, token: m.token }, 'GET', '/v1/info');
    await call({ url: m.url, token: m.token }, 'GET', '/v1/info');
    const unix = await timed(REQUESTS, () => call({ url: `unix://${sock}`, token: m.token }, 'GET', '/v1/info'));
    const tls = await timed(REQUESTS, () => call({ url: m.url, token: m.token }, 'GET', '/v1/info'));
    const joins = await timed(NODES, (i) => NodeIdentity.join(join(dir, `j${i}`), parseManagerUrl(m.url), m.joinToken, `bench-join-${i}`));

    for (let i = 0; i < NODES; i++) {
      const s = new AgentSession({ managerUrl: m.url, joinToken: m.joinToken, name: `bench-node-${i}`, address: '127.0.0.1', index: new LocalIndex(), dataDir: join(dir, `n${i}`) });
      s.start();
      sessions.push(s);
    }
    const until = Date.now() + 60_000;
    while (!sessions.every((s) => s.connected)) {
      if (Date.now() > until) throw new Error('the agent sessions did not connect');
      await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = performance.now();
    await call({ url: m.url, token: m.token }, 'POST', '/v1/ca/rotate');
    while (m.manager.security.ca.rotation) {
      if (Date.now() > until + 60_000) throw new Error('the rotation did not finish');
      await new Promise((r) => setTimeout(r, 5));
    }
    const rotation = performance.now() - t0;
    const reconnects = sessions.reduce((a, s) => a + s.stats.reconnects, 0);

    const row = (name: string, xs: number[]): string => `| ${name} | ${f1(pct(xs, 50))} | ${f1(pct(xs, 99))} |`;
    const ratio = pct(tls, 50) / pct(unix, 50);
    const key = `<!-- MARK:${hostname()}:tls -->`;
    const section = [
      key,
      `## ${hostname()} (${cpus().length} x ${cpus()[0]?.model ?? '?'}, Linux ${release()}, node ${process.version}), ${new Date().toISOString()}`,
      '',
      `\`GET /v1/info\` with the CLI's client, a new connection per request, ${REQUESTS} requests one after the other:`,
      '',
      '| path | p50 ms | p99 ms |',
      '|---|---|---|',
      row('unix socket (plain)', unix),
      row('TLS 1.3, pinned to the token\'s CA', tls),
      '',
      `TLS / unix at p50: **${ratio.toFixed(2)}x**. A node's join (key, certificate request, pinned TLS, signature): p50 ${f1(pct(joins, 50))} ms over ${NODES} nodes.`,
      `CA rotation with ${NODES} agent sessions connected (mutual TLS): **${f1(rotation)} ms** from \`POST /v1/ca/rotate\` to the old CA dropped, every node renewed over its open session (${reconnects} reconnects).`,
      '<!-- /MARK -->',
    ].join('\n');
    console.log(section);
    await writeSection(DOC, key, '<!-- /MARK -->', section, '# TLS cost: the control plane over TLS vs the unix socket\n\nWritten by `node --import tsx test/bench/tls.ts`.\n');
  } finally {
    for (const s of sessions) s.stop();
    await closeApiServer(local);
    await m.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
