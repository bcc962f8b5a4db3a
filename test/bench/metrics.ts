/**
 * /metrics benchmark: how long a scrape takes on a node with 100 tasks and a cluster of 1,000
 * services, side by side with the same node idle (no service yet) and with what a scrape cost
 * before the counters were cached (every sandbox's counters dumped from the kernel per scrape).
 * Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/metrics.ts                       # 100 tasks, 1,000 services, 50 scrapes
 *   BENCH_TASKS=20 BENCH_SERVICES=200 BENCH_SCRAPES=100 node --import tsx test/bench/metrics.ts
 *
 * Needs root, iproute2, nftables, nsenter (util-linux), curl. A 1-node harness
 * (test/harness/cluster.ts, agent `--lb-dataplane nftables`), one overlay network (/20), then
 * BENCH_SERVICES services without replicas, then the last BENCH_TASKS / 10 scaled to 10 replicas of
 * `sleep` each, one at a time (two of those publish a port); every task sandbox holds every VIP
 * of the network.
 * Measured with curl in the node's namespace (`-w %{time_total}`: connect to last byte, no
 * process start), BENCH_SCRAPES scrapes back to back:
 * - `idle`: the node before any service (a handful of series);
 * - `loaded`: the node with every task running and programmed;
 * - `loaded, 4 at once`: the same, 4 curls in parallel (a scrape never waits behind another's kernel dump);
 * - `per-scrape kernel dump (before)`: `nft -j list table inet shoal_lb` in every task sandbox one
 *   after the other, what each scrape ran before the counters were read in the background;
 * and the background read itself (`shoal_lb_stats_refresh_duration_seconds`: `nft list counters`
 * per sandbox, 4 at a time, every 5 s at most and at most 10% of the time).
 * Writes docs/bench-metrics.md (one section per machine, replaced on each run).
 */
import { execFile } from 'node:child_process';
import { cpus, hostname, release } from 'node:os';
import { readFile } from 'node:fs/promises';
import { closeNetnsHelper } from '../../src/kernel/netns.js';
import type { Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { leftovers, waitFor } from '../helpers/netns.js';
import { writeSection } from './doc.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 100);
const SERVICES = Number(process.env.BENCH_SERVICES ?? 1000);
const SCRAPES = Number(process.env.BENCH_SCRAPES ?? 50);
const DOC = 'docs/bench-metrics.md';
const MARK = 'bench-metrics';
const PER_SERVICE = 10;

interface Sample { ms: number[]; bytes: number; series: number; loopMaxMs?: number }

const q = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))] ?? 0;
};
const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

async function shoal(h: Harness, ...args: string[]): Promise<void> {
  const r = await h.shoal(...args);
  if (r.code !== 0) throw new Error(`shoal ${args.join(' ')} failed (${r.code}): ${r.err.trim()}`);
}

async function metrics(node: HarnessNode): Promise<string> {
  const r = await node.exec(['curl', '-sS', '--max-time', '30', 'http://127.0.0.1:9323/metrics']);
  if (r.code !== 0) throw new Error(`curl /metrics: ${r.stderr}`);
  return r.stdout;
}

const gauge = (text: string, name: string): number | undefined => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

/**
 * `n` scrapes back to back (`parallel` curls at a time), timed by curl itself; also the largest
 * event-loop delay the agent reported over them (each scrape reports the delay since the previous).
 */
async function scrape(node: HarnessNode, n: number, parallel = 1): Promise<Sample> {
  // One curl per line of output: the time alone in parallel runs (several writers, one pipe),
  // time then body when alone (the body carries the agent's event-loop delay).
  const curl = parallel === 1
    ? "curl -sS --max-time 30 -w '%{stderr}%{time_total}\\n' http://127.0.0.1:9323/metrics"
    : "curl -sS --max-time 30 -o /dev/null -w '%{time_total}\\n' http://127.0.0.1:9323/metrics";
  const one = `for i in $(seq ${Math.ceil(n / parallel)}); do ${curl}; done`;
  const script = parallel === 1 ? one : `${Array.from({ length: parallel }, () => `(${one}) &`).join(' ')} wait`;
  const r = await node.exec(['sh', '-c', script], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`scrapes failed: ${r.stderr}`);
  const text = await metrics(node);
  const loop = [...r.stdout.matchAll(/^shoal_process_event_loop_delay_seconds\{stat="max"\} (\S+)$/gm)].map((m) => Number(m[1]) * 1000);
  const times = (parallel === 1 ? r.stderr : r.stdout).split('\n').filter((l) => /^\d+\.\d+$/.test(l)).map((s) => Number(s) * 1000);
  if (times.length !== Math.ceil(n / parallel) * parallel) throw new Error(`expected ${n} timings, got ${times.length}`);
  return {
    ms: times,
    bytes: Buffer.byteLength(text),
    series: text.split('\n').filter((l) => l && !l.startsWith('#')).length,
    ...(loop.length ? { loopMaxMs: Math.max(...loop) } : {}),
  };
}

async function bench(h: Harness): Promise<{ rows: Array<[string, Sample]>; refreshMs: number; sandboxes: number; build: string }> {
  const node = h.nodes[0] as HarnessNode;
  await waitFor('the metrics endpoint', async () => /shoal_agent_connected 1/.test(await metrics(node)), 30_000, 200);
  const rows: Array<[string, Sample]> = [];
  rows.push(['idle', await scrape(node, SCRAPES)]);
  console.log(`idle: median ${fmt(q(rows[0]![1].ms, 0.5))} ms`);

  const t0 = Date.now();
  await shoal(h, 'network', 'create', '-d', 'overlay', '--subnet', '10.80.0.0/20', 'app');
  const withTasks = Math.ceil(TASKS / PER_SERVICE);
  // Every service first, without replicas (one VIP each); then the replicas, one service at a
  // time, each programmed before the next (the agent builds every sandbox's table once).
  for (let i = 0; i < SERVICES; i++) {
    const tasked = i >= SERVICES - withTasks;
    const publish = tasked && i >= SERVICES - 2 ? ['-p', `${18080 + (SERVICES - i)}:80`] : [];
    await shoal(h, 'service', 'create', '--name', `s${i}`, '--replicas', '0', '--network', 'app', ...publish, '--', 'sleep', '36000');
    if (i % 100 === 99) console.log(`${i + 1} services (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  await waitFor('the services programmed', async () => gauge(await metrics(node), 'shoal_lb_pending_changes') === 0, 600_000, 1000);
  for (let k = 0; k < withTasks; k++) {
    const name = `s${SERVICES - 1 - k}`;
    await shoal(h, 'service', 'scale', `${name}=${PER_SERVICE}`);
    await waitFor(`${name}'s replicas running`, async () => (await h.json<Task[]>('service', 'ps', name))
      .filter((t) => t.desiredState === 'running' && t.status.state === 'running').length === PER_SERVICE, 600_000, 500);
    await waitFor(`${name} programmed`, async () => gauge(await metrics(node), 'shoal_lb_pending_changes') === 0, 600_000, 500);
    console.log(`${(k + 1) * PER_SERVICE} tasks (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  // Programmed everywhere, and the background read has seen every sandbox since.
  let refreshMs = 0;
  await waitFor('the load balancer settled and its counters read', async () => {
    const text = await metrics(node);
    const settled = gauge(text, 'shoal_lb_pending_changes') === 0 && (gauge(text, 'shoal_lb_stats_last_refresh_timestamp_seconds') ?? 0) * 1000 > Date.now() - 10_000;
    const backends = (text.match(/^shoal_lb_backend_connections_total\{/gm) ?? []).length;
    refreshMs = (gauge(text, 'shoal_lb_stats_refresh_duration_seconds') ?? 0) * 1000;
    return settled && backends >= withTasks * PER_SERVICE;
  }, 1_800_000, 2000);
  const build = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
  console.log(`cluster built in ${build}; background read of the counters: ${fmt(refreshMs)} ms`);
  rows.push(['loaded', await scrape(node, SCRAPES)]);
  rows.push(['loaded, 4 at once', await scrape(node, SCRAPES, 4)]);

  // What each scrape did before: a full listing of every sandbox's table (JSON), one after the other.
  const sandboxes = (await run('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${node.name}-`) && !n.endsWith('ingress-sbox'));
  const dumps: number[] = [];
  for (let round = 0; round < 3; round++) {
    const t = process.hrtime.bigint();
    for (const ns of sandboxes) await run('nsenter', [`--net=/run/netns/${ns}`, 'nft', '-j', 'list', 'table', 'inet', 'shoal_lb']);
    dumps.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  rows.push(['per-scrape kernel dump (before)', { ms: dumps, bytes: 0, series: 0 }]);
  return { rows, refreshMs, sandboxes: sandboxes.length, build };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the metrics benchmark needs root');
  const interrupted = (): void => {
    console.error('\ninterrupted: removing the harness');
    void destroyAllHarnesses().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const loadBefore = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  let prefix = '';
  let out: Awaited<ReturnType<typeof bench>> | undefined;
  try {
    console.log('starting a 1-node harness (nftables dataplane)...');
    const h = await startHarness({ nodes: 1, agentArgs: ['--lb-dataplane', 'nftables'], readyTimeoutMs: 60_000 });
    prefix = h.prefix;
    try {
      out = await bench(h);
    } catch (e) {
      console.error(h.logs().slice(-4000));
      throw e;
    }
  } finally {
    await destroyAllHarnesses();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    if (prefix) {
      const left = await leftovers(prefix);
      if (left.netns.length || left.links.length) console.error(`left behind with prefix ${prefix}: ${JSON.stringify(left)}`);
    }
    await closeNetnsHelper();
  }
  if (!out) throw new Error('no results');
  const { rows, refreshMs, sandboxes, build } = out;
  const med = (name: string): number => q(rows.find((r) => r[0] === name)?.[1].ms ?? [], 0.5);
  const ratioLoaded = med('loaded') / med('idle');
  const ratioBefore = med('per-scrape kernel dump (before)') / med('loaded');
  for (const [name, s] of rows) console.log(`${name}: median ${fmt(q(s.ms, 0.5))} ms, p95 ${fmt(q(s.ms, 0.95))} ms, max ${fmt(q(s.ms, 1))} ms${s.series ? `, ${s.series} series, ${s.bytes} bytes` : ''}${s.loopMaxMs === undefined ? '' : `, event loop delay max ${fmt(s.loopMaxMs)} ms`}`);
  console.log(`loaded/idle ${ratioLoaded.toFixed(2)}; before/now ${ratioBefore.toFixed(0)}`);

  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
  const key = `<!-- ${MARK}:${hostname()}:${machine} -->`;
  const nftV = await run('nft', ['--version']).then((s) => s.trim(), () => '?');
  const section = [
    key,
    `## ${machine}, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Host \`${hostname()}\`, Linux ${release()}, ${nftV}, Node ${process.version} (through tsx); run at ${new Date().toISOString()}.`,
    `Command: \`node --import tsx test/bench/metrics.ts\` (BENCH_TASKS=${TASKS}, BENCH_SERVICES=${SERVICES}, BENCH_SCRAPES=${SCRAPES}).`,
    '',
    `1-node harness (agent \`--lb-dataplane nftables\`), one overlay network, ${SERVICES} services of which ${Math.ceil(TASKS / PER_SERVICE)} have ${PER_SERVICE} replicas`,
    `(\`sleep\`; 2 publish a port): ${sandboxes} task sandboxes, each holding every VIP of the network. Built in ${build}. Scrapes timed by`,
    'curl in the node\'s namespace (`%{time_total}`), back to back. "per-scrape kernel dump (before)": `nft -j list table` in every task',
    'sandbox one after the other (3 rounds), what every scrape ran before the counters were read in the background. The last column:',
    'the largest `shoal_process_event_loop_delay_seconds{stat="max"}` the agent reported over the scrapes (its own stalls, e.g. the',
    'periodic full resync re-reading every sandbox; a scrape cannot answer faster than its event loop runs it).',
    `Background read of the counters (\`nft list counters\` per sandbox, 4 at a time): ${fmt(refreshMs)} ms, at most every 5 s and at most 10% of the time.`,
    '',
    '| scrape | median ms | p95 ms | max ms | series | bytes | agent event-loop delay, max ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(([name, s]) => `| ${name} | ${fmt(q(s.ms, 0.5))} | ${fmt(q(s.ms, 0.95))} | ${fmt(q(s.ms, 1))} | ${s.series || ''} | ${s.bytes || ''} | ${s.loopMaxMs === undefined ? '' : fmt(s.loopMaxMs)} |`),
    '',
    `**loaded/idle: ${ratioLoaded.toFixed(2)}**; the per-scrape kernel dump of before took ${ratioBefore.toFixed(0)}x a scrape now.`,
    `Load average before the run: ${loadBefore} (other work on the machine competes).`,
    `<!-- /${MARK} -->`,
  ].join('\n');
  await writeSection(DOC, key, `<!-- /${MARK} -->`, section, [
    '# /metrics benchmark',
    '',
    'Scrape time of a node\'s /metrics with 100 tasks and 1,000 services, side by side with the idle node and with the kernel',
    'dump every scrape ran before the per-backend counters were read in the background. Sections below are written by',
    '`node --import tsx test/bench/metrics.ts` (one per machine, replaced on each run; see the file\'s doc comment for the knobs).',
    'Needs root, nftables, nsenter, curl.',
    '',
  ].join('\n'));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
