/**
 * Task start/remove benchmark: the time to start and remove N (100) tasks on one node, each a
 * sandbox (netns, lo up, veth on a bridge network, address, default route, resolv.conf) plus
 * a process inside it, against the same work done with `ip` spawns, same machine, same run.
 * Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/tasks.ts                # 3 rounds of 100 tasks per variant
 *   BENCH_TASKS=20 BENCH_ROUNDS=1 node --import tsx test/bench/tasks.ts
 *   # as built JavaScript (what an agent runs; worker threads start 3-5x faster than under tsx):
 *   npx tsc -p tsconfig.build.json --outDir BUILD && ln -s "$PWD/node_modules" BUILD/ \
 *     && echo '{"type":"module"}' > BUILD/package.json && node BUILD/test/bench/tasks.js
 *
 * Needs root, iproute2, nsenter (util-linux), nftables. Variants:
 * - `ip`: one `ip` process per step (netns add, veth with the peer created in the netns, master
 *   + up, addr, link up eth0 and lo, default route), `ip netns exec NS sleep 600`; remove: kill,
 *   `ip link del`, `ip netns del`;
 * - `shoal`: mesh/agent/sandboxes.ts as it is in the tree (sandboxes configured through the
 *   shared NetnsRoamer, src/kernel/netns-roamer.ts), the task run by ProcessRuntime as
 *   `ip netns exec NS sleep 600` like the agent does; remove: SIGTERM through ProcessRuntime,
 *   `Sandboxes.remove`;
 * - `worker-per-sandbox`: the same with the previous `Sandboxes.ensure`, which started a
 *   NetnsWorker per sandbox ({@link openWithWorker} below), kept to show what that costs.
 *   Leave it out with `BENCH_VARIANTS=ip,shoal` (it takes ~25 s per round under tsx).
 * "Start" ends when every task's process runs `sleep` inside its sandbox; tasks are started
 * and removed one after the other (the agent's sync starts them that way).
 *
 * Everything happens in a node netns this script creates (no route out); each (round, variant)
 * runs in a fresh child process moved there with `nsenter --net=` (not `ip netns exec`, whose
 * private mount namespace would hide the netns bind mounts we create), so the agent code sees
 * the node namespace as "the host", and no variant inherits another's heap or threads (a
 * bigger process forks slower, which skews the `ip` variant). Each child warms up with 3 tasks. The parent removes every namespace, process and file carrying the
 * run's prefix afterwards, also after a failure, and writes docs/bench-tasks.md (one section
 * per machine and loader, replaced on each run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDrivers, driverNames, macFromIPv4, type NetworkDriver } from '../../src/drivers/index.js';
import { netnsDriverContext } from '../../src/drivers/index.js';
import { deleteNetns, ensureNetns, execTool, listNetns, NetnsWorker } from '../../src/kernel/index.js';
import type { Network, NetworkDriver as DriverName, Task } from '../../src/model/types.js';
import { ProcessRuntime } from '../../mesh/agent/process-runtime.js';
import { Sandboxes, type SandboxAccess, type SandboxOptions } from '../../mesh/agent/sandboxes.js';
import { makeTestPrefix } from '../helpers/netns.js';
import { writeSection } from './doc.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = 3;
const DOC = 'docs/bench-tasks.md';
const SELF = fileURLToPath(import.meta.url);
const ALL_VARIANTS = ['ip', 'shoal', 'worker-per-sandbox'] as const;
type Variant = (typeof ALL_VARIANTS)[number];
const VARIANTS: readonly Variant[] = process.env.BENCH_VARIANTS
  ? ALL_VARIANTS.filter((v) => v === 'ip' || process.env.BENCH_VARIANTS?.split(',').includes(v))
  : ALL_VARIANTS;
const LOADER = SELF.endsWith('.ts') ? 'tsx' : 'compiled';

interface Timing {
  startMs: number;
  removeMs: number;
}
type Results = Partial<Record<Variant, Timing[]>>;

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const ip = async (...args: string[]): Promise<string> => (await execTool('bench', 'ip', args)).stdout;

// ---------------------------------------------------------------------------------------------
// The previous Sandboxes.ensure (a NetnsWorker per sandbox), measured side by side with the tree's.

/** The previous way to reach a sandbox during set-up: a NetnsWorker started in each one. */
async function openWithWorker(ns: string): Promise<SandboxAccess> {
  await ensureNetns(ns);
  const worker = await NetnsWorker.start({ netns: ns });
  await worker.links.setUp('lo');
  return { links: worker.links, done: () => worker.close() };
}

// ---------------------------------------------------------------------------------------------
// Child: runs inside the node netns.

interface ChildArgs {
  prefix: string;
  node: string;
  variant: Variant;
  /** Scratch directory of this child (ProcessRuntime's pid and log files). */
  dir: string;
  /** Where the child writes its {@link Timing}. */
  out: string;
}

/** The `sleep` of every [pid, netns] pair runs inside its netns (polled; part of "start"). */
async function allRunning(procs: Array<[number, string]>): Promise<void> {
  const want = new Map(procs.map(([pid, ns]) => [pid, `net:[${statSync(`/run/netns/${ns}`).ino}]`]));
  const deadline = Date.now() + 30_000;
  while (want.size > 0) {
    for (const [pid, inode] of want) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep' && readlinkSync(`/proc/${pid}/ns/net`) === inode) want.delete(pid);
      } catch {
        // not there yet (or gone: the deadline reports it)
      }
    }
    if (want.size === 0) break;
    if (Date.now() > deadline) throw new Error(`processes not running in their sandbox after 30 s: ${[...want.keys()].join(' ')}`);
    await sleep(2);
  }
}

/** What a started sandbox must look like (not timed). */
async function check(ns: string, v4: string, gateway: string, resolv: boolean): Promise<void> {
  const addrs = await ip('-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0');
  const route = await ip('-n', ns, 'route', 'show', 'default');
  const lo = await ip('-n', ns, '-o', 'link', 'show', 'lo');
  const ok = addrs.includes(`${v4}/24`) && route.includes(`via ${gateway} dev eth0`) && /[<,]UP[,>]/.test(lo)
    && (!resolv || readFileSync(`/etc/netns/${ns}/resolv.conf`, 'utf8').includes(`nameserver ${gateway}`));
  if (!ok) throw new Error(`sandbox ${ns} is not configured as expected:\n${addrs}${route}${lo}`);
}

async function child(args: ChildArgs): Promise<void> {
  const { prefix, node } = args;
  if (readlinkSync('/proc/self/ns/net') !== `net:[${statSync(`/run/netns/${node}`).ino}]`) {
    throw new Error('the measuring child must run inside the node netns (nsenter --net=)');
  }
  const ctx = await netnsDriverContext(node, { prefix: 'sb', underlay: { address: '192.0.2.10' } });
  const drivers = createDrivers(ctx);
  const net: Network = {
    id: '5b7e0c1a2d3f4e56', name: 'bench', driver: 'bridge', scope: 'swarm',
    ipam: { v4: { subnet: '10.77.0.0/24', gateway: '10.77.0.1' } }, options: {}, labels: {}, createdAt: new Date().toISOString(),
  };
  const gateway = net.ipam.v4.gateway;
  const bridge = driverNames.bridgeName('sb', net.id);
  const driverMap = new Map<DriverName, NetworkDriver>(Object.entries(drivers) as Array<[DriverName, NetworkDriver]>);
  const runtime = new ProcessRuntime(args.dir, { stopGraceMs: 5000 });
  const pids = new Map<string, number>();
  runtime.onEvent((e) => {
    if (e.type === 'running') pids.set(e.taskId, e.pid);
    if (e.type === 'failed' || e.type === 'exited') console.error(`task ${e.taskId}: ${JSON.stringify(e)}`);
  });
  const ipProcs = new Map<number, { child: ChildProcess; exited: Promise<void> }>();
  const addressOf = (i: number): string => `10.77.0.${10 + i}`;
  const taskOf = (id: string, i: number): Task => ({
    id, serviceId: 'svc', serviceName: 'bench', slot: i + 1, nodeId: 'node', desiredState: 'running',
    status: { state: 'assigned', message: '', since: new Date().toISOString() },
    addresses: { [net.id]: { v4: addressOf(i) } }, serviceVersion: 1, specHash: 'x', createdAt: new Date().toISOString(),
  });
  const slaves = async (): Promise<number> => (await ip('-o', 'link', 'show', 'master', bridge)).split('\n').filter(Boolean).length;

  type Sbx = { ensure(t: Task, n: Network[], dns: { gateway: string }): Promise<string>; remove(t: Task, n: Network[]): Promise<void> };
  const shoal = (kind: 'shoal' | 'worker-per-sandbox', letter: string) => {
    // resolv.conf names the gateway, as the `ip` variant writes it (no 127.0.0.11 redirect to compare).
    const opts: SandboxOptions = { drivers: driverMap, nsPrefix: `${prefix}-`, loopbackResolver: false };
    const sbx: Sbx = kind === 'shoal' ? new Sandboxes(opts) : new Sandboxes({ ...opts, open: openWithWorker });
    return async (n: number): Promise<Timing> => {
      const tasks = Array.from({ length: n }, (_, i) => taskOf(`${letter}${i}`, i));
      let t0 = process.hrtime.bigint();
      const procs: Array<[number, string]> = [];
      for (const t of tasks) {
        const ns = await sbx.ensure(t, [net], { gateway });
        runtime.ensureRunning({ taskId: t.id, command: ['sleep', '600'], netns: ns, env: {} });
        procs.push([pids.get(t.id) ?? -1, ns]);
      }
      await allRunning(procs);
      const startMs = ms(t0);
      await check(`${prefix}-${letter}0`, addressOf(0), gateway, true);
      await check(`${prefix}-${letter}${n - 1}`, addressOf(n - 1), gateway, true);
      if ((await slaves()) !== n) throw new Error(`${kind}: expected ${n} veths on ${bridge}`);
      t0 = process.hrtime.bigint();
      for (const t of tasks) {
        await runtime.ensureStopped(t.id);
        await sbx.remove(t, [net]);
      }
      const removeMs = ms(t0);
      if ((await listNetns(`${prefix}-${letter}`)).length > 0 || (await slaves()) !== 0) throw new Error(`${kind}: leftovers after remove`);
      return { startMs, removeMs };
    };
  };

  const viaIp = async (n: number): Promise<Timing> => {
    const names = Array.from({ length: n }, (_, i) => ({ ns: `${prefix}-i${i}`, veth: `sbi${i}`, v4: addressOf(i) }));
    let t0 = process.hrtime.bigint();
    const procs: Array<[number, string]> = [];
    for (const { ns, veth, v4 } of names) {
      await ip('netns', 'add', ns);
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/resolv.conf`, `nameserver ${gateway}\noptions ndots:0\n`);
      await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'address', macFromIPv4(v4), 'netns', ns);
      await ip('link', 'set', veth, 'master', bridge, 'up');
      await ip('-n', ns, 'addr', 'add', `${v4}/24`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'route', 'add', 'default', 'via', gateway);
      const c = spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore', detached: true });
      c.unref();
      const pid = c.pid ?? -1;
      ipProcs.set(pid, { child: c, exited: new Promise((r) => c.once('exit', () => r())) });
      procs.push([pid, ns]);
    }
    await allRunning(procs);
    const startMs = ms(t0);
    await check(names[0]?.ns ?? '', addressOf(0), gateway, true);
    await check(names[n - 1]?.ns ?? '', addressOf(n - 1), gateway, true);
    if ((await slaves()) !== n) throw new Error(`ip: expected ${n} veths on ${bridge}`);
    t0 = process.hrtime.bigint();
    for (const [i, { ns, veth }] of names.entries()) {
      const [pid] = procs[i] ?? [-1];
      const p = ipProcs.get(pid);
      process.kill(-pid, 'SIGTERM');
      await p?.exited;
      ipProcs.delete(pid);
      await ip('link', 'del', veth);
      await ip('netns', 'del', ns);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    const removeMs = ms(t0);
    if ((await listNetns(`${prefix}-i`)).length > 0 || (await slaves()) !== 0) throw new Error('ip: leftovers after remove');
    return { startMs, removeMs };
  };

  const runners: Record<Variant, (n: number) => Promise<Timing>> = { ip: viaIp, shoal: shoal('shoal', 's'), 'worker-per-sandbox': shoal('worker-per-sandbox', 'w') };
  try {
    await drivers.bridge.createNetwork(net);
    // Warm-up (not measured): first-time costs such as module loading and helper threads.
    await runners[args.variant](WARMUP);
    // Let the kernel finish freeing the warm-up's namespaces (cleanup_net) first.
    await sleep(1000);
    writeFileSync(args.out, JSON.stringify(await runners[args.variant](TASKS)));
  } finally {
    for (const id of runtime.list()) await runtime.ensureStopped(id);
    for (const pid of ipProcs.keys()) {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await runtime.close();
    await drivers.bridge.deleteNetwork(net).catch(() => undefined);
    await ctx.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: node netns, child process, cleanup, report.

/** Kill every process inside the run's namespaces, delete them and their /etc/netns dirs. */
async function cleanup(prefix: string, node: string): Promise<void> {
  const all = await listNetns(prefix);
  for (const ns of all) {
    const pids = (await ip('netns', 'pids', ns).catch(() => '')).split('\n').filter(Boolean).map(Number);
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  for (const ns of all.filter((n) => n !== node)) await deleteNetns(ns);
  await deleteNetns(node);
  if (existsSync('/etc/netns')) {
    for (const d of readdirSync('/etc/netns')) if (d.startsWith(prefix)) rmSync(join('/etc/netns', d), { recursive: true, force: true });
  }
}

async function writeDoc(results: Results, command: string): Promise<void> {
  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
  const date = new Date().toISOString();
  const runsOf = (v: Variant): Timing[] => results[v] ?? [];
  const ipStart = median(runsOf('ip').map((t) => t.startMs));
  const ipRemove = median(runsOf('ip').map((t) => t.removeMs));
  const row = (v: Variant): string => {
    const s = median(runsOf(v).map((t) => t.startMs));
    const r = median(runsOf(v).map((t) => t.removeMs));
    const runs = runsOf(v).map((t) => `${t.startMs.toFixed(0)}/${t.removeMs.toFixed(0)}`).join(', ');
    return `| ${v} | ${s.toFixed(0)} ms | ${(s / TASKS).toFixed(2)} ms | ${(s / ipStart).toFixed(2)} | ${r.toFixed(0)} ms | ${(r / TASKS).toFixed(2)} ms | ${(r / ipRemove).toFixed(2)} | ${runs} |`;
  };
  const lines = [
    `| variant | start ${TASKS} (median of ${ROUNDS}) | per task | ratio /ip | remove ${TASKS} | per task | ratio /ip | all runs start/remove (ms) |`,
    '|---|---:|---:|---:|---:|---:|---:|---|',
    ...VARIANTS.map(row),
  ];
  console.log(`\n${lines.join('\n')}\n`);
  const key = `<!-- bench-tasks:${hostname()}:${machine}:${LOADER} -->`;
  const section = [
    key,
    `## ${machine}, ${LOADER}, ${date.slice(0, 10)}`,
    '',
    `Host \`${hostname()}\`, Linux ${release()}, Node ${process.version}, loaded ${LOADER === 'tsx' ? 'from TypeScript through tsx (worker threads start slower than built JavaScript)' : 'as built JavaScript'}; run at ${date}. Command: \`${command}\`.`,
    `Workload: ${TASKS} tasks started one after the other, then removed one after the other, in a node netns with one bridge network`,
    `(BridgeDriver); a task = netns, lo up, veth on the bridge, address, default route, resolv.conf, and \`ip netns exec NS sleep 600\`;`,
    `"start" ends when every \`sleep\` runs inside its sandbox; remove = SIGTERM + wait, endpoint and netns deleted.`,
    `\`ip\`: one \`ip\` process per step; \`shoal\`: mesh/agent/sandboxes.ts as in the tree (NetnsRoamer) + ProcessRuntime;`,
    `\`worker-per-sandbox\`: the same with the previous Sandboxes.ensure (a NetnsWorker started per sandbox).`,
    `Each round and variant runs in a fresh process (after ${WARMUP} warm-up tasks); rounds rotate the order of the variants.`,
    '',
    ...lines,
    '<!-- /bench-tasks -->',
  ].join('\n');
  await writeSection(DOC, key, '<!-- /bench-tasks -->', section, '# Task start/remove benchmark\n\nWritten by `node --import tsx test/bench/tasks.ts`; one section per machine and loader, replaced on each run.\n');
}

async function parent(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the task benchmark needs root (netns, rtnetlink, mounts)');
  const prefix = makeTestPrefix();
  const node = `${prefix}-node`;
  console.error(`namespaces of this run: ${prefix}-*`);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-tasks-'));
  let kid: ChildProcess | undefined;
  const interrupted = (): void => {
    if (kid?.pid !== undefined) kid.kill('SIGKILL');
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await ip('netns', 'add', node);
    const results: Results = {};
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate the order so that machine noise and the kernel's background netns cleanup hit every variant.
      for (const variant of [...VARIANTS.slice(r % VARIANTS.length), ...VARIANTS.slice(0, r % VARIANTS.length)]) {
        const args: ChildArgs = { prefix, node, variant, dir: join(dir, `${r}-${variant}`), out: join(dir, `${r}-${variant}.json`) };
        kid = spawn('nsenter', [`--net=/run/netns/${node}`, '--', process.execPath, ...process.execArgv, SELF, '--child', JSON.stringify(args)], { stdio: 'inherit' });
        const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => kid?.once('exit', (c, s) => resolve([c, s])));
        if (code !== 0) throw new Error(`the measuring child failed (${signal ? `killed by ${signal}` : `exit code ${code}`})`);
        const t = JSON.parse(readFileSync(args.out, 'utf8')) as Timing;
        (results[variant] ??= []).push(t);
        console.error(`round ${r + 1}/${ROUNDS} ${variant.padEnd(18)} start ${t.startMs.toFixed(0)} ms, remove ${t.removeMs.toFixed(0)} ms`);
        await sleep(2000);
      }
    }
    const command = `${LOADER === 'tsx' ? 'node --import tsx test/bench/tasks.ts' : 'node BUILD/test/bench/tasks.js'}${TASKS !== 100 ? ` (BENCH_TASKS=${TASKS})` : ''}${ROUNDS !== 3 ? ` (BENCH_ROUNDS=${ROUNDS})` : ''}`;
    await writeDoc(results, command);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await cleanup(prefix, node);
    rmSync(dir, { recursive: true, force: true });
    const left = await listNetns(prefix);
    if (left.length > 0) console.error(`leftover namespaces: ${left.join(' ')}`);
  }
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  await child(JSON.parse(process.argv[childAt + 1] ?? '{}') as ChildArgs);
} else {
  await parent();
}
