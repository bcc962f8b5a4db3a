/**
 * Real etcd clusters for tests and benchmarks: Debian's `etcd` binary, N members started by
 * the test, each on loopback (ports picked free) or on an address inside a network namespace
 * (the multi-node harness). Health is checked with `etcdctl`, the real client.
 *
 * Members are killed only by their own pid; `stop()` and a process 'exit' hook end every
 * member this process started and remove the data dirs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { netnsPath } from '../../src/kernel/paths.js';

export interface EtcdClusterOptions {
  members?: number;
  /** Per member: the netns and address it listens on (default: loopback in this netns). */
  placement?: Array<{ netns: string; address: string }>;
  /** etcd `--heartbeat-interval` / `--election-timeout`, ms (default etcd's 100 / 1000: robust on a loaded machine). */
  heartbeatMs?: number;
  electionMs?: number;
  /** Where data dirs and logs go (default a new temp dir, removed by stop()). */
  dir?: string;
  /** Wait this long for the cluster to be healthy (default 30 s). */
  readyTimeoutMs?: number;
}

export interface EtcdMember {
  readonly name: string;
  /** `host:port` of its client URL. */
  readonly endpoint: string;
  readonly netns: string | undefined;
  readonly pid: number | undefined;
  running(): boolean;
  /** SIGKILL (or `signal`) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again on its data dir (it rejoins the cluster). */
  start(): void;
  /** Its log file. */
  readonly logFile: string;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's `host:port`. */
  readonly endpoints: string[];
  /** `etcd://a,b,c`: Shoal's --store value. */
  readonly storeUrl: string;
  /** Runs etcdctl against the cluster (in the first member's netns when placed). */
  etcdctl(args: string[], opts?: { endpoints?: string[]; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Waits until every running member reports healthy. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });
}

/** Two consecutive free TCP ports on 127.0.0.1 (client, peer) per member. */
async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = 20000 + Math.floor(Math.random() * 40000);
    if (out.includes(p)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) out.push(p);
  }
  return out;
}

function run(cmd: string, args: string[], netns: string | undefined, timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const [file, argv] = netns ? ['nsenter', [`--net=${netnsPath(netns)}`, '--', cmd, ...args]] : [cmd, args];
  return new Promise((resolve) => {
    execFile(file, argv, { timeout: timeoutMs, maxBuffer: 512 << 20, env: { ...process.env, ETCDCTL_API: '3' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function startEtcdCluster(o: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  hookExit();
  const n = o.placement?.length ?? o.members ?? 3;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'shoal-etcd-'));
  const ownDir = o.dir === undefined;
  mkdirSync(dir, { recursive: true });
  const ports = o.placement ? [] : await freePorts(2 * n);
  const token = `shoal-test-${process.pid}-${Date.now()}`;
  const spec = Array.from({ length: n }, (_, i) => {
    const p = o.placement?.[i];
    const host = p?.address ?? '127.0.0.1';
    const client = p ? 2379 : (ports[2 * i] as number);
    const peer = p ? 2380 : (ports[2 * i + 1] as number);
    return { name: `m${i + 1}`, host, client, peer, netns: p?.netns };
  });
  const initial = spec.map((s) => `${s.name}=http://${s.host}:${s.peer}`).join(',');
  const members = spec.map((s) => {
    let child: ChildProcess | undefined;
    const logFile = join(dir, `${s.name}.log`);
    const args = [
      '--name', s.name, '--data-dir', join(dir, s.name),
      '--listen-client-urls', `http://${s.host}:${s.client}`, '--advertise-client-urls', `http://${s.host}:${s.client}`,
      '--listen-peer-urls', `http://${s.host}:${s.peer}`, '--initial-advertise-peer-urls', `http://${s.host}:${s.peer}`,
      '--initial-cluster', initial, '--initial-cluster-token', token, '--initial-cluster-state', 'new',
      '--heartbeat-interval', String(o.heartbeatMs ?? 100), '--election-timeout', String(o.electionMs ?? 1000),
      '--logger', 'zap', '--log-outputs', logFile,
    ];
    const m: EtcdMember = {
      name: s.name, endpoint: `${s.host}:${s.client}`, netns: s.netns, logFile,
      get pid() { return child?.pid; },
      running: () => !!child && child.exitCode === null && child.signalCode === null,
      start() {
        if (m.running()) throw new Error(`etcd member ${s.name} is running`);
        const [file, argv] = s.netns ? ['nsenter', [`--net=${netnsPath(s.netns)}`, '--', 'etcd', ...args]] : ['etcd', args];
        const c = spawn(file, argv, { stdio: 'ignore' });
        c.once('error', () => undefined);
        child = c;
        live.add(c);
        c.once('exit', () => live.delete(c));
      },
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        const c = child;
        if (!c || !m.running()) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill(signal);
        await exited;
      },
    };
    return m;
  });
  const endpoints = members.map((m) => m.endpoint);
  const firstNetns = spec[0]?.netns;
  const cluster: EtcdCluster = {
    members, endpoints, storeUrl: `etcd://${endpoints.join(',')}`,
    etcdctl: (args, eo = {}) => run('etcdctl', [`--endpoints=${(eo.endpoints ?? endpoints).join(',')}`, '--dial-timeout=1s', '--command-timeout=3s', ...args], firstNetns, eo.timeoutMs ?? 10_000),
    async waitHealthy(timeoutMs = o.readyTimeoutMs ?? 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const up = members.filter((m) => m.running());
        if (up.length < members.length && members.every((m) => !m.running())) throw new Error('no etcd member is running');
        const r = await cluster.etcdctl(['endpoint', 'health'], { endpoints: up.map((m) => m.endpoint) });
        if (r.code === 0) return;
        if (Date.now() > until) throw new Error(`etcd not healthy after ${timeoutMs} ms: ${`${r.stdout}${r.stderr}`.trim()}`);
        await new Promise((r2) => setTimeout(r2, 100));
      }
    },
    async stop() {
      await Promise.all(members.map((m) => m.kill('SIGKILL')));
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const m of members) m.start();
  try {
    await cluster.waitHealthy();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
