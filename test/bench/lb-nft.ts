/**
 * nftables load balancer benchmark. Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/lb-nft.ts
 *   BENCH_SIZES=100,1000 BENCH_APPLIES=10 BENCH_SECONDS=3 node --import tsx test/bench/lb-nft.ts
 *
 * Needs root, nftables, conntrack, nsenter (util-linux), wrk. Two parts, same run:
 * 1. programming cost, each size in a fresh namespace `<prefix>-sN`: a cold `syncAll` of N
 *    services x 10 backends (100, 1,000, 10,000), then BENCH_APPLIES (40) endpoint changes per
 *    size (`apply` of one random service with one backend replaced; median), the sizes taking
 *    turns; the ratio largest/smallest says whether a change costs O(change) (target <= 1.5).
 *    Also: a full resync of the same state over the existing tables (a restarted agent), the
 *    one `apply` that deletes the accumulated leftovers in bulk, and the floor: spawning
 *    `nsenter nft -f` with an empty script.
 * 2. data path: HTTP requests per second with wrk from the client namespace of
 *    test/helpers/lb-topology.ts, straight to the one backend and through a VIP with that
 *    backend behind it (output-hook DNAT in the client's netns), rounds alternating; keep-alive
 *    (forwarding cost) and `Connection: close` (a new flow per request: DNAT and counting; the
 *    client netns reuses TIME_WAIT ports and keeps closed conntrack flows 1 s, for both targets).
 * Writes docs/bench-lb-nft.md (one section per machine, replaced on each run). Everything runs
 * in namespaces with this run's prefix, removed at the end (also after a failure).
 */
import { execFile } from 'node:child_process';
import { cpus, hostname, release } from 'node:os';
import { ensureNetns } from '../../src/kernel/netns.js';
import { ExecNft } from '../../src/kernel/nft.js';
import { netnsPath } from '../../src/kernel/paths.js';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import type { VirtualService } from '../../ingress/types.js';
import { buildLbTopology, startBackend, type BackendServer, type LbTopology } from '../helpers/lb-topology.js';
import { finalCleanup, makeTestPrefix } from '../helpers/netns.js';
import { writeSection } from './doc.js';

const SIZES = (process.env.BENCH_SIZES ?? '100,1000,10000').split(',').map(Number);
const APPLIES = Number(process.env.BENCH_APPLIES ?? 40);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const BACKENDS = 10;
const DOC = 'docs/bench-lb-nft.md';
const MARK = 'bench-lb-nft';

const ip = (i: number, a: number): string => `10.${a + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
function service(i: number, replaced = 0): VirtualService {
  const backends = Array.from({ length: BACKENDS }, (_, j) => ({ address: ip(i * BACKENDS + j, 150), port: 8080, weight: 1 }));
  if (replaced) backends[BACKENDS - 1] = { address: ip(replaced, 200), port: 8080, weight: 1 };
  return { address: ip(i, 100), port: 80, protocol: 'tcp', scheduler: 'rr', service: `svc${i}`, backends };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] ?? 0) : ((s[s.length / 2 - 1] ?? 0) + (s[s.length / 2] ?? 0)) / 2;
};
const ms = (t0: number): number => performance.now() - t0;
const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

interface ScaleResult {
  size: number;
  syncMs: number;
  resyncMs: number;
  applyMs: number;
  applyAll: number[];
  collectMs: number;
  collected: number;
}

/** One size: its namespace, its load balancer and the state it was given. */
interface Subject {
  size: number;
  ns: string;
  lb: NftLoadBalancer;
  all: VirtualService[];
  /** Set: the next apply deletes the leftovers. */
  flag: { collectNow: boolean };
  result: ScaleResult;
}

async function setUp(prefix: string, size: number): Promise<Subject> {
  const ns = `${prefix}-s${size}`;
  await ensureNetns(ns);
  const flag = { collectNow: false };
  const lb = new NftLoadBalancer({
    nft: new ExecNft({ netns: ns }), table: 'sh_lb', log: (m) => console.log(`  log: ${m}`),
    collectAt: (live) => (flag.collectNow ? 0 : Math.max(1024, Math.floor(live / 2))),
  });
  const all = Array.from({ length: size }, (_, i) => service(i));
  const t0 = performance.now();
  await lb.syncAll(all);
  const result = { size, syncMs: ms(t0), resyncMs: 0, applyMs: 0, applyAll: [], collectMs: 0, collected: 0 };
  return { size, ns, lb, all, flag, result };
}

/** One endpoint change: a random service gets one backend replaced; resolves its time. */
async function change(s: Subject, tag: number): Promise<number> {
  const i = Math.floor(Math.random() * s.size);
  const t0 = performance.now();
  await s.lb.apply([service(i, tag)], []);
  const t = ms(t0);
  s.all[i] = service(i, tag);
  return t;
}

async function finish(s: Subject): Promise<void> {
  const r = s.result;
  r.applyMs = median(r.applyAll);
  // Each replacement left the old slot map, counter and counter element behind.
  r.collected = r.applyAll.length * 3;
  s.flag.collectNow = true;
  r.collectMs = await change(s, 2_000_000);
  s.flag.collectNow = false;
  // A restarted agent: a new instance replaces the tables holding the same state.
  const fresh = new NftLoadBalancer({ nft: new ExecNft({ netns: s.ns }), table: 'sh_lb' });
  const t0 = performance.now();
  await fresh.syncAll(s.all);
  r.resyncMs = ms(t0);
  await fresh.cleanup();
}

function run(cmd: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

type Target = 'direct' | 'vip';
type Workload = 'keep-alive' | 'new connection per request';

async function wrk(ns: string, url: string, workload: Workload, seconds: number): Promise<number> {
  const args = [`--net=${netnsPath(ns)}`, 'wrk', '-t1', '-c32', `-d${seconds}s`, ...(workload === 'keep-alive' ? [] : ['-H', 'Connection: close']), url];
  const out = await run('nsenter', args);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  if (!rps) throw new Error(`wrk printed no rate:\n${out}`);
  return Number(rps);
}

async function dataPath(prefix: string): Promise<Record<Workload, Record<Target, number[]>>> {
  let topo: LbTopology | undefined;
  let server: BackendServer | undefined;
  try {
    topo = await buildLbTopology(prefix, { backends: 1 });
    const backend = topo.backends[0];
    if (!backend) throw new Error('no backend');
    server = await startBackend(backend.ns, 'b1', { http: 80 });
    const lb = new NftLoadBalancer({ nft: new ExecNft({ netns: topo.client.ns }), table: 'sh_lb' });
    await lb.syncAll([{ address: '10.77.1.1', port: 80, protocol: 'tcp', scheduler: 'rr', service: 'web', backends: [{ address: backend.address, port: 80, weight: 1 }] }]);
    // Thousands of short connections per second to one address: the client's ports would all
    // sit in TIME_WAIT (reuse them), and conntrack would keep every closed flow for 120 s and
    // fill its table (keep 1 s). Both targets run with the same settings.
    const sysctl = topo.client.worker.sysctl;
    await sysctl.set('net.ipv4.tcp_tw_reuse', 1);
    await sysctl.set('net.ipv4.ip_local_port_range', '1024 65000');
    await sysctl.set('net.netfilter.nf_conntrack_tcp_timeout_time_wait', 1);
    const url: Record<Target, string> = { direct: `http://${backend.address}/`, vip: 'http://10.77.1.1/' };
    const out: Record<Workload, Record<Target, number[]>> = {
      'keep-alive': { direct: [], vip: [] }, 'new connection per request': { direct: [], vip: [] },
    };
    for (const w of Object.keys(out) as Workload[]) {
      for (const t of ['direct', 'vip'] as const) await wrk(topo.client.ns, url[t], w, 1); // warm-up
      for (let r = 0; r < ROUNDS; r++) {
        for (const t of (r % 2 ? ['vip', 'direct'] : ['direct', 'vip']) as Target[]) {
          const rps = await wrk(topo.client.ns, url[t], w, SECONDS);
          out[w][t].push(rps);
          console.log(`  ${w}, ${t}: ${rps.toFixed(0)} req/s`);
        }
      }
    }
    await lb.cleanup();
    return out;
  } finally {
    await server?.stop();
    await topo?.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the nft load balancer benchmark needs root');
  const prefix = makeTestPrefix();
  const results: ScaleResult[] = [];
  const floor: number[] = [];
  let rps: Record<Workload, Record<Target, number[]>> | undefined;
  try {
    const subjects: Subject[] = [];
    for (const size of SIZES) {
      console.log(`${size} services x ${BACKENDS} backends: cold syncAll...`);
      const subject = await setUp(prefix, size);
      subjects.push(subject);
      console.log(`  ${fmt(subject.result.syncMs)} ms`);
    }
    // Endpoint changes alternate between the sizes, so machine noise hits all of them alike.
    console.log(`${APPLIES} endpoint changes per size, alternating...`);
    const floorNft = new ExecNft({ netns: subjects[0]?.ns ?? '' });
    for (let r = 0; r < APPLIES; r++) {
      for (const s of subjects) s.result.applyAll.push(await change(s, 1_000_000 + r));
      const t0 = performance.now();
      await floorNft.apply('');
      floor.push(ms(t0));
    }
    console.log(`  floor (\`nsenter nft -f\` of an empty script): median ${fmt(median(floor))} ms`);
    for (const s of subjects) {
      await finish(s);
      const r = s.result;
      results.push(r);
      console.log(`  ${r.size}: endpoint change median ${fmt(r.applyMs)} ms (min ${fmt(Math.min(...r.applyAll))}, max ${fmt(Math.max(...r.applyAll))}); `
        + `resync ${fmt(r.resyncMs)} ms; apply collecting ${r.collected} leftovers ${fmt(r.collectMs)} ms`);
    }
    console.log('data path (wrk)...');
    rps = await dataPath(prefix);
  } finally {
    await finalCleanup(prefix);
  }
  if (!rps) throw new Error('no data path results');
  const small = results[0];
  const large = results[results.length - 1];
  const ratio = small && large ? large.applyMs / small.applyMs : NaN;
  console.log(`endpoint change ${large?.size}/${small?.size}: ${ratio.toFixed(2)} (target <= 1.5)`);
  const ka = rps['keep-alive'];
  const nc = rps['new connection per request'];
  const rKa = median(ka.vip) / median(ka.direct);
  const rNc = median(nc.vip) / median(nc.direct);
  console.log(`VIP/direct: keep-alive ${rKa.toFixed(3)} (target >= 0.95), new connection per request ${rNc.toFixed(3)}`);
  await writeDoc(results, ratio, median(floor), rps, rKa, rNc);
}

async function writeDoc(
  results: ScaleResult[], ratio: number, floorMs: number, rps: Record<Workload, Record<Target, number[]>>, rKa: number, rNc: number,
): Promise<void> {
  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
  const key = `<!-- ${MARK}:${hostname()}:${machine} -->`;
  const [nftV, wrkV] = await Promise.all([
    run('nft', ['--version']).then((s) => s.trim(), () => '?'),
    // `wrk -v` prints its version and exits 1.
    new Promise<string>((resolve) => execFile('wrk', ['-v'], (_e, out, err) => resolve(`${out}${err}`))).then((s) => /wrk (\S+)/.exec(s)?.[1] ?? '?'),
  ]);
  const row = (w: Workload, t: Target): string => `| ${w} | ${t} | ${fmt(median(rps[w][t]))} | ${rps[w][t].map((x) => x.toFixed(0)).join(', ')} |`;
  const section = [
    key,
    `## ${machine}, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Host \`${hostname()}\`, Linux ${release()}, ${nftV}, Node ${process.version} (through tsx), wrk ${wrkV}; run at ${new Date().toISOString()}.`,
    `Command: \`node --import tsx test/bench/lb-nft.ts\` (BENCH_APPLIES=${APPLIES}, BENCH_SECONDS=${SECONDS}, BENCH_ROUNDS=${ROUNDS}).`,
    '',
    `Programming, N services x ${BACKENDS} backends (rr), each size in a fresh namespace; "endpoint change" = \`apply\` of one service with`,
    'one backend replaced (median; wall clock including the `nsenter nft -f` spawn); "resync" = a new instance\'s `syncAll` of the same',
    'state over the existing tables; "collect" = the `apply` that also deletes the accumulated leftovers.',
    '',
    '| services | cold syncAll (ms) | endpoint change (ms) | min..max | resync (ms) | collect (ms) |',
    '|---:|---:|---:|---|---:|---:|',
    ...results.map((r) => `| ${r.size} | ${fmt(r.syncMs)} | ${fmt(r.applyMs)} | ${fmt(Math.min(...r.applyAll))}..${fmt(Math.max(...r.applyAll))} | ${fmt(r.resyncMs)} | ${fmt(r.collectMs)} |`),
    '',
    `**Endpoint change ${results[results.length - 1]?.size}/${results[0]?.size}: ${ratio.toFixed(2)}** (target <= 1.5). For scale: spawning`,
    `\`nsenter nft -f\` with an empty script (the same way, between the changes) takes ${fmt(floorMs)} ms (median).`,
    '',
    `Data path: \`nsenter --net=<client> wrk -t1 -c32 -d${SECONDS}s http://<target>/\` (+ \`-H 'Connection: close'\`), one Node HTTP backend`,
    '(test/helpers/lb-topology.ts), straight to it (`direct`) or through VIP 10.77.1.1 with it as the only backend (`vip`); rounds alternate.',
    '',
    '| workload | target | req/s (median) | all runs |',
    '|---|---|---:|---|',
    row('keep-alive', 'direct'), row('keep-alive', 'vip'), row('new connection per request', 'direct'), row('new connection per request', 'vip'),
    '',
    `**VIP/direct: keep-alive ${rKa.toFixed(3)}** (target >= 0.95); new connection per request ${rNc.toFixed(3)} (each request pays`,
    'the DNAT setup and the NAT rules of a new flow).',
    `<!-- /${MARK} -->`,
  ].join('\n');
  await writeSection(DOC, key, `<!-- /${MARK} -->`, section, '# nftables load balancer benchmark\n\nWritten by `node --import tsx test/bench/lb-nft.ts`; one section per machine, replaced on each run.\n');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
