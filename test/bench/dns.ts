/**
 * DNS benchmark: Shoal's resolver against dnsmasq serving the same names, same machine, same
 * run, alternating so machine noise hits both. Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/dns.ts            # 3 rounds of 10 s each per server
 *   BENCH_SECONDS=5 BENCH_ROUNDS=1 node --import tsx test/bench/dns.ts
 *
 * Needs dnsperf and dnsmasq (Debian packages `dnsperf`, `dnsmasq`). Prints QPS (median of the
 * rounds), the ratio, CPU per query and p99 latency at a fixed rate, with a bare node:dgram
 * responder as the platform floor, and writes the result into docs/bench-dns.md (one section
 * per machine, replaced on every run).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry as PromRegistry } from 'prom-client';
import { createDnsMetrics, DnsServer, MemoryRegistry, scopeOf, standardChain } from '../../dns/index.js';
import { startDnsmasq } from '../../dns/testing/dnsmasq.js';
import { writeSection } from './doc.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LATENCY_QPS = Number(process.env.BENCH_LATENCY_QPS ?? 20_000);
const NAMES = 100;
const DOC = 'docs/bench-dns.md';

interface Run {
  qps: number;
  lost: number;
  cpuSeconds: number;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** CPU seconds a process has used so far (utime + stime from /proc). */
async function cpuOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function throughput(port: number, file: string, pid: number): Promise<Run> {
  const cpu0 = await cpuOf(pid);
  const out = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(SECONDS)]);
  const cpuSeconds = (await cpuOf(pid)) - cpu0;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const noerror = /Response codes:\s+NOERROR \d+ \(100\.00%\)/.test(out);
  if (!noerror) throw new Error(`not every answer was NOERROR:\n${out}`);
  return { qps, lost, cpuSeconds };
}

/** p99 latency (ms) at a fixed query rate, from dnsperf's per-query lines. */
async function p99(port: number, file: string): Promise<number> {
  const out = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', '5', '-Q', String(LATENCY_QPS), '-v']);
  const lat = out
    .split('\n')
    .filter((l) => l.startsWith('> '))
    .map((l) => Number(l.split(' ').pop()))
    .sort((a, b) => a - b);
  return (lat[Math.floor(lat.length * 0.99)] ?? NaN) * 1000;
}

/**
 * The platform floor: a bare node:dgram responder that copies the query and appends one fixed
 * A record (no parsing, no chain). Shows how much of the gap to dnsmasq is Node itself.
 */
const FLOOR_SOURCE = `
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', lookup: (a, o, cb) => cb(null, a, 4) });
const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
s.on('message', (m, r) => {
  const out = Buffer.allocUnsafe(m.length + rr.length);
  m.copy(out);
  out[2] = 0x85; out[3] = 0x80; out[6] = 0; out[7] = 1; out[10] = 0; out[11] = 0;
  rr.copy(out, m.length);
  s.send(out, r.port, r.address);
});
s.bind(0, '127.0.0.1', () => console.log(s.address().port));
`;

async function startFloor(): Promise<{ port: number; pid: number; stop: () => void }> {
  const child = spawn(process.execPath, ['-e', FLOOR_SOURCE], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', () => reject(new Error('node:dgram floor did not start')));
  });
  const pid = child.pid ?? 0;
  return { port, pid, stop: () => void (child.exitCode === null && process.kill(pid, 'SIGTERM')) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function version(cmd: string, args: string[], re: RegExp): Promise<string> {
  try {
    return re.exec(await run(cmd, args))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-dns-'));
  const file = join(dir, 'queries.txt');
  await writeFile(file, Array.from({ length: NAMES }, (_, i) => `svc${i + 1} A`).join('\n') + '\n');
  const address = (i: number): string => `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`;

  // Shoal: the standard chain with metrics, as the daemon runs it.
  const registry = new MemoryRegistry();
  registry.upsertNetwork({ id: 'n1', name: 'bench' });
  for (let i = 0; i < NAMES; i++) {
    registry.upsertService({ id: `s${i}`, name: `svc${i + 1}`, endpointMode: 'vip', networks: [{ network: 'n1', vip: { v4: address(i) } }] });
  }
  const metrics = createDnsMetrics(new PromRegistry());
  const shoal = new DnsServer({ address: '127.0.0.1', port: 0, handler: standardChain({ registry, metrics }), scope: scopeOf(['n1'], 'bench'), metrics });
  const shoalPort = (await shoal.start()).port;

  const floor = await startFloor();
  const dnsmasq = await startDnsmasq({
    args: ['--local-ttl=5', ...Array.from({ length: NAMES }, (_, i) => `--host-record=svc${i + 1},${address(i)}`)],
  });

  try {
    // Warm-up (JIT, caches) for both.
    await run('dnsperf', ['-s', '127.0.0.1', '-p', String(shoalPort), '-d', file, '-l', '2']);
    await run('dnsperf', ['-s', '127.0.0.1', '-p', String(dnsmasq.port), '-d', file, '-l', '2']);
    await run('dnsperf', ['-s', '127.0.0.1', '-p', String(floor.port), '-d', file, '-l', '2']);
    const shoalRuns: Run[] = [];
    const dnsmasqRuns: Run[] = [];
    const floorRuns: Run[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      shoalRuns.push(await throughput(shoalPort, file, process.pid));
      dnsmasqRuns.push(await throughput(dnsmasq.port, file, dnsmasq.pid));
      floorRuns.push(await throughput(floor.port, file, floor.pid));
      console.log(`round ${r + 1}: shoal ${shoalRuns[r]?.qps.toFixed(0)} QPS, dnsmasq ${dnsmasqRuns[r]?.qps.toFixed(0)} QPS, node:dgram floor ${floorRuns[r]?.qps.toFixed(0)} QPS`);
    }
    const shoalP99 = await p99(shoalPort, file);
    const dnsmasqP99 = await p99(dnsmasq.port, file);
    const floorP99 = await p99(floor.port, file);

    const sq = median(shoalRuns.map((x) => x.qps));
    const dq = median(dnsmasqRuns.map((x) => x.qps));
    const fq = median(floorRuns.map((x) => x.qps));
    const usPerQuery = (runs: Run[]): number => median(runs.map((x) => (x.cpuSeconds / (x.qps * SECONDS)) * 1e6));
    const ratio = sq / dq;
    const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
    const date = new Date().toISOString();
    const [dnsperfV, dnsmasqV] = await Promise.all([
      version('dnsperf', ['-h'], /Version ([\d.]+)/),
      version('dnsmasq', ['--version'], /version ([\d.]+)/i),
    ]);
    const lines = [
      `| server | QPS (median of ${ROUNDS} x ${SECONDS} s) | all runs | CPU per query | p99 latency at ${LATENCY_QPS} QPS |`,
      '|---|---:|---|---:|---:|',
      `| shoal | ${sq.toFixed(0)} | ${shoalRuns.map((x) => x.qps.toFixed(0)).join(', ')} | ${usPerQuery(shoalRuns).toFixed(1)} µs | ${shoalP99.toFixed(3)} ms |`,
      `| dnsmasq | ${dq.toFixed(0)} | ${dnsmasqRuns.map((x) => x.qps.toFixed(0)).join(', ')} | ${usPerQuery(dnsmasqRuns).toFixed(1)} µs | ${dnsmasqP99.toFixed(3)} ms |`,
      `| node:dgram floor (fixed answer, no parsing) | ${fq.toFixed(0)} | ${floorRuns.map((x) => x.qps.toFixed(0)).join(', ')} | ${usPerQuery(floorRuns).toFixed(1)} µs | ${floorP99.toFixed(3)} ms |`,
    ];
    console.log(`\n${lines.join('\n')}\n\nratio shoal/dnsmasq: ${ratio.toFixed(2)} (target >= 0.80); shoal/node:dgram floor: ${(sq / fq).toFixed(2)}`);

    const key = `<!-- bench-dns:${hostname()}:${machine} -->`;
    const section = [
      key,
      `## ${machine}, ${date.slice(0, 10)}`,
      '',
      `Host \`${hostname()}\`, Linux ${release()}, Node ${process.version}, dnsperf ${dnsperfV}, dnsmasq ${dnsmasqV}; run at ${date}.`,
      `Workload: ${NAMES} service names, A queries (\`svcN A\`), both servers on 127.0.0.1 answering from memory with TTL 5;`,
      `Shoal runs the standard chain (hygiene, metrics, registry) in one Node process. Command:`,
      `\`dnsperf -s 127.0.0.1 -p <port> -d <names> -l ${SECONDS}\`, rounds alternating between the servers;`,
      `latency: \`dnsperf ... -l 5 -Q ${LATENCY_QPS} -v\`. CPU per query is the server's CPU time / queries answered.`,
      '',
      ...lines,
      '',
      `**Ratio shoal/dnsmasq: ${ratio.toFixed(2)}** (target >= 0.80); shoal/node:dgram floor: ${(sq / fq).toFixed(2)}.`,
      `<!-- /bench-dns -->`,
    ].join('\n');
    await writeSection(DOC, key, '<!-- /bench-dns -->', section, '');
  } finally {
    floor.stop();
    await shoal.close();
    await dnsmasq.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
