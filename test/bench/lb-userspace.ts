/**
 * Userspace load balancer benchmark: HTTP requests per second through Shoal's userspace proxy
 * against HAProxy in TCP mode and against the backend directly, same machine, same run, rounds
 * alternating so machine noise hits all three. Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/lb-userspace.ts            # 3 rounds x 10 s per target and workload
 *   BENCH_SECONDS=5 BENCH_ROUNDS=1 node --import tsx test/bench/lb-userspace.ts
 *
 * Needs haproxy and wrk (Debian packages `haproxy`, `wrk`). Processes, all on 127.0.0.1:
 * - backend: HAProxy in HTTP mode answering `200 ok` itself (`http-request return`): a fast
 *   static responder in C, so that the proxy under test is the bottleneck;
 * - proxy under test, each its own process: `shoal` = this file re-run with `--proxy` (a
 *   UserspaceLoadBalancer, one TCP virtual service, one backend); `haproxy` = HAProxy `mode tcp`;
 *   `node floor` = the smallest Node proxy (accept, connect, pipe), what Node itself costs;
 * - load: wrk, `-t1 -c64`, keep-alive (forwarding) and `Connection: close` (a new connection
 *   through the proxy per request: accept + connect + teardown).
 * With BENCH_PIN=1 (default) the proxy under test runs on CPU 1 and wrk + backend on CPU 0
 * (taskset), so the proxies get one core each; BENCH_PIN=0 lets everything share all cores.
 * Prints the table and the ratios and writes docs/bench-lb-userspace.md (one section per machine,
 * replaced on every run). Every child is stopped by its PID.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { cpus, hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserspaceLoadBalancer } from '../../ingress/userspace/index.js';
import { writeSection } from './doc.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const PIN = process.env.BENCH_PIN !== '0' && cpus().length >= 2;
const HOST = '127.0.0.1';
const DOC = 'docs/bench-lb-userspace.md';
const MARK = 'bench-lb-userspace';

type Target = 'shoal' | 'haproxy' | 'node floor' | 'direct';
type Workload = 'keep-alive' | 'new connection per request';
const WORKLOADS: readonly Workload[] = ['keep-alive', 'new connection per request'];
const TARGETS: readonly Target[] = ['shoal', 'haproxy', 'node floor', 'direct'];

interface Run {
  rps: number;
  /** CPU seconds of the proxy process during the run (0 for direct). */
  cpuSeconds: number;
  errors: number;
}

/**
 * The platform floor: the smallest Node TCP proxy (accept, connect, pipe both ways; no picking,
 * no counters, no retry). Shows how much of the gap to HAProxy is Node itself.
 */
const FLOOR_SOURCE = `
const net = require('node:net');
const [port, backend] = process.argv.slice(1).map(Number);
net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
  const u = net.connect({ host: '127.0.0.1', port: backend, noDelay: true, allowHalfOpen: true });
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
}).listen(port, '127.0.0.1', () => console.log('ready'));
`;

/** `--proxy <listenPort> <backendPort>`: the process under test. */
async function proxyMain(listenPort: number, backendPort: number): Promise<void> {
  const lb = new UserspaceLoadBalancer({ log: (m, e) => console.error(m, e ?? '') });
  await lb.apply([{ service: 'bench', protocol: 'tcp', address: HOST, port: listenPort, scheduler: 'rr', backends: [{ address: HOST, port: backendPort, weight: 1 }] }], []);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => void lb.close().then(() => process.exit(0)));
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

const pinned = (cpu: number, cmd: string, args: string[]): [string, string[]] => (PIN ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);

async function freePort(): Promise<number> {
  const s = createServer().listen(0, HOST);
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** CPU seconds a process has used so far (utime + stime from /proc). */
async function cpuOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Child {
  pid: number;
  stop: () => Promise<void>;
}

/** Starts a long-running child; resolves once `ready` accepts what it printed so far. */
async function start(cmd: string, args: string[], ready: (out: string) => boolean): Promise<Child> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (ready(out)) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${cmd} exited (${code}) before it was ready:\n${out}`)));
  });
  const pid = child.pid ?? 0;
  return {
    pid,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(pid, 'SIGTERM');
      await exited;
    },
  };
}

/** HAProxy in the foreground (`-db`) with a generated config; resolves once it listens on `port`. */
async function startHaproxy(dir: string, name: string, config: string, port: number, cpu: number): Promise<Child> {
  const file = join(dir, `${name}.cfg`);
  await writeFile(file, config);
  const [cmd, args] = pinned(cpu, 'haproxy', ['-db', '-f', file]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const pid = child.pid ?? 0;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(pid, 'SIGTERM');
    await exited;
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`haproxy ${name} exited: ${err}`);
    if (await listening(port)) return { pid, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`haproxy ${name} did not listen on ${port}: ${err}`);
}

/** Whether something accepts connections on `port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, HOST, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const GLOBAL = ['global', '  nbthread 1', '  maxconn 4000', 'defaults', '  timeout connect 3s', '  timeout client 30s', '  timeout server 30s'];

const backendConfig = (port: number): string =>
  [...GLOBAL, '  mode http', 'frontend backend', `  bind ${HOST}:${port}`, '  http-request return status 200 content-type text/plain string "ok"', ''].join('\n');

const proxyConfig = (port: number, backend: number): string =>
  [...GLOBAL, '  mode tcp', 'frontend fe', `  bind ${HOST}:${port}`, '  default_backend be', 'backend be', '  balance roundrobin', `  server s1 ${HOST}:${backend}`, ''].join('\n');

async function wrk(port: number, workload: Workload, seconds: number, pid: number): Promise<Run> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`];
  if (workload !== 'keep-alive') args.push('-H', 'Connection: close');
  args.push(`http://${HOST}:${port}/`);
  const [cmd, a] = pinned(0, 'wrk', args);
  const cpu0 = pid ? await cpuOf(pid) : 0;
  const out = await run(cmd, a);
  const cpuSeconds = pid ? (await cpuOf(pid)) - cpu0 : 0;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = non2xx + (socket ? socket.slice(1).reduce((s, x) => s + Number(x), 0) : 0);
  return { rps, cpuSeconds, errors };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function version(cmd: string, args: string[], re: RegExp): Promise<string> {
  try {
    return re.exec(await run(cmd, args).catch((e: Error) => e.message))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-lb-'));
  const children: Child[] = [];
  try {
    const [bport, hport, sport] = [await freePort(), await freePort(), await freePort()];
    const backend = await startHaproxy(dir, 'backend', backendConfig(bport), bport, 0);
    children.push(backend);
    const hap = await startHaproxy(dir, 'proxy', proxyConfig(hport, bport), hport, 1);
    children.push(hap);
    const [ncmd, nargs] = pinned(1, process.execPath, [...process.execArgv, process.argv[1]!, '--proxy', String(sport), String(bport)]);
    const shoal = await start(ncmd, nargs, (out) => out.includes('ready'));
    children.push(shoal);
    const fport = await freePort();
    const [fcmd, fargs] = pinned(1, process.execPath, ['-e', FLOOR_SOURCE, String(fport), String(bport)]);
    const floor = await start(fcmd, fargs, (out) => out.includes('ready'));
    children.push(floor);
    const port: Record<Target, number> = { shoal: sport, haproxy: hport, 'node floor': fport, direct: bport };
    const pid: Record<Target, number> = { shoal: shoal.pid, haproxy: hap.pid, 'node floor': floor.pid, direct: 0 };

    const runs = new Map<string, Run[]>();
    for (const w of WORKLOADS) {
      for (const t of TARGETS) await wrk(port[t], w, 2, 0); // warm-up (JIT, caches)
      for (let r = 0; r < ROUNDS; r++) {
        const order = TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length]!);
        for (const t of order) {
          const x = await wrk(port[t], w, SECONDS, pid[t]);
          runs.set(`${w}/${t}`, [...(runs.get(`${w}/${t}`) ?? []), x]);
        }
        console.log(`${w}, round ${r + 1}: ${TARGETS.map((t) => `${t} ${runs.get(`${w}/${t}`)?.[r]?.rps.toFixed(0)}`).join(', ')} req/s`);
      }
    }

    const lines = [`| workload | target | req/s (median of ${ROUNDS} x ${SECONDS} s) | all runs | proxy CPU per request | errors |`, '|---|---|---:|---|---:|---:|'];
    const summary: string[] = [];
    for (const w of WORKLOADS) {
      const m = (t: Target): number => median((runs.get(`${w}/${t}`) ?? []).map((x) => x.rps));
      for (const t of TARGETS) {
        const rs = runs.get(`${w}/${t}`) ?? [];
        const cpu = t === 'direct' ? '-' : `${median(rs.map((x) => (x.cpuSeconds / (x.rps * SECONDS)) * 1e6)).toFixed(1)} µs`;
        lines.push(`| ${w} | ${t} | ${m(t).toFixed(0)} | ${rs.map((x) => x.rps.toFixed(0)).join(', ')} | ${cpu} | ${rs.reduce((s, x) => s + x.errors, 0)} |`);
      }
      const r = (a: Target, b: Target): string => (m(a) / m(b)).toFixed(2);
      summary.push(`- ${w}: **shoal/haproxy ${r('shoal', 'haproxy')}** (target >= 0.7); shoal/direct ${r('shoal', 'direct')}; haproxy/direct ${r('haproxy', 'direct')}; shoal/node floor ${r('shoal', 'node floor')}.`);
    }
    console.log(`\n${lines.join('\n')}\n\n${summary.join('\n')}`);

    const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
    const date = new Date().toISOString();
    const [haproxyV, wrkV] = await Promise.all([version('haproxy', ['-v'], /version ([\d.]+)/i), version('wrk', ['-v'], /wrk \S*?(\d+\.\d+\.\d+)/)]);
    const key = `<!-- ${MARK}:${hostname()}:${machine}:${PIN ? 'pinned' : 'shared'} -->`;
    const section = [
      key,
      `## ${machine}, ${PIN ? 'proxy pinned to its own core' : 'all processes share all cores'}, ${date.slice(0, 10)}`,
      '',
      `Host \`${hostname()}\`, Linux ${release()}, Node ${process.version} (proxy loaded through tsx), HAProxy ${haproxyV}, wrk ${wrkV}; run at ${date}.`,
      `Command: \`${PIN ? '' : 'BENCH_PIN=0 '}node --import tsx test/bench/lb-userspace.ts\` (BENCH_SECONDS=${SECONDS}, BENCH_ROUNDS=${ROUNDS}).`,
      `Load: \`wrk -t1 -c${CONNECTIONS} -d${SECONDS}s http://127.0.0.1:<port>/\` (+ \`-H 'Connection: close'\` for a new connection per request);`,
      `backend: HAProxy \`http-request return status 200\` (nbthread 1); proxies: Shoal's UserspaceLoadBalancer (one Node process),`,
      `HAProxy \`mode tcp\` (nbthread 1) and the node floor (a bare \`net\` accept/connect/pipe proxy), one backend each;`,
      'rounds rotate the order of the targets.',
      PIN ? 'Pinning: the proxy under test on CPU 1, wrk and the backend on CPU 0 (`taskset`).' : 'No pinning: wrk, backend and proxy compete for all cores.',
      'Proxy CPU per request = the proxy process\'s CPU time (utime + stime) / requests.',
      '',
      ...lines,
      '',
      ...summary,
      `<!-- /${MARK} -->`,
    ].join('\n');
    await writeSection(DOC, key, `<!-- /${MARK} -->`, section, '');
  } finally {
    for (const c of children.reverse()) await c.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--proxy') {
  void proxyMain(Number(process.argv[3]), Number(process.argv[4]));
} else {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
