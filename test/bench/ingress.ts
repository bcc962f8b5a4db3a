/**
 * Ingress routing mesh benchmark: HTTP requests per second from a client outside the cluster
 * through a published port on a node WITHOUT the replica (the request crosses the ingress
 * overlay) against the same server code reached straight, same run, rounds alternating so
 * machine noise hits every target alike. Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/ingress.ts                       # 3 rounds x 5 s per target and workload
 *   BENCH_SECONDS=10 BENCH_ROUNDS=5 BENCH_CONNECTIONS=64 BENCH_PIN=0 node --import tsx test/bench/ingress.ts
 *
 * Needs root, iproute2, nftables, nsenter (util-linux), curl, wrk (`scripts/system-deps.sh --bench`).
 * A 2-node harness (test/harness/cluster.ts, agents with `--lb-dataplane nftables`), an overlay
 * network, one service `web` with one replica (test/fixtures/lb-backend.mjs, HTTP health check)
 * published with `-p 8080:80` (ingress mode, cluster policy). Call the replica's node `home`
 * and the other one `other`. wrk runs in the harness's client namespace (outside the cluster,
 * one hop over the underlay bridge) against:
 * - `mesh via other node`: `http://<other>:8080/`: the other node DNATs to its ingress sandbox,
 *   which balances to the replica's ingress address over VXLAN to the home node, masqueraded
 *   (replies come back the same way). What the issue asks for.
 * - `mesh via home node`: `http://<home>:8080/`: the same two NAT hops, but the ingress sandbox
 *   reaches the replica on its own node (no VXLAN): separates the overlay from the NAT hops.
 * - `direct`: `http://<home>:9000/`: the same fixture, started by this script as a plain process
 *   in the home node's namespace (PORT=9000): same server code, same underlay hop, no mesh (the
 *   node's nftables and conntrack still see the packets).
 * Workloads: keep-alive (forwarding cost) and `Connection: close` (a new flow per request:
 * conntrack, DNAT and masquerade on every hop). So that thousands of short flows per second do
 * not exhaust ports, every harness namespace but the ingress sandboxes keeps closed conntrack
 * flows 1 s (instead of 120 s) and the client reuses TIME_WAIT ports; every target runs with
 * these settings. Through the mesh, every flow reaches the replica from one address (the ingress
 * sandbox's masquerade) and, with `Connection: close`, the replica closes first and keeps each
 * flow in TIME_WAIT for 60 s. A SYN masqueraded onto a tuple an earlier flow left there with a
 * newer TCP timestamp is dropped by the replica (PAWS) and retransmitted 1 s later: with
 * `masquerade fully-random` this stalled ~1,000 SYNs per 5-s run and the close workload ran at
 * 0.14-0.18 of direct; the sandbox now keeps the client's source port where it can (one client
 * port = one tuple, timestamps only grow): 0.54-0.63. Each run still records the client's SYN
 * retransmits and the replica's PAWS-rejected SYNs (TcpExt counters). With BENCH_PIN=1 (default on 2+ CPUs) wrk runs on
 * CPU 0 and both servers (replica, direct) on CPU 1 (`taskset`); the rest (agents, the kernel's
 * softirqs on every hop) runs anywhere. Everything shares one machine: the ratios say what the
 * mesh costs on one box, not on a real network.
 *
 * Before that, once (while no TIME_WAIT leftovers can delay a SYN): `shoal service scale web=2`,
 * the time until `service ps` reports the new replica serving and until requests through each
 * node's published port reach it (polled with curl, a new connection each, ~every 20-30 ms);
 * then `scale web=1` again, and `home` is the node of the replica that stays.
 *
 * Prints the table and the ratios and writes docs/bench-ingress.md (one section per machine,
 * replaced on each run). Everything lives in the harness's namespaces (prefix `sht...`),
 * removed at the end, also after a failure or Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { cpus, hostname, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { closeNetnsHelper, listNetns } from '../../src/kernel/netns.js';
import { servesTraffic } from '../../src/model/serving.js';
import type { Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode, type HarnessProcess } from '../harness/cluster.js';
import { runInNetns } from '../harness/process.js';
import { leftovers, waitFor } from '../helpers/netns.js';
import { readFile } from 'node:fs/promises';
import { writeSection } from './doc.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const PIN = process.env.BENCH_PIN !== '0' && cpus().length >= 2;
const PUBLISHED = 8080;
const DIRECT_PORT = 9000;
const DOC = 'docs/bench-ingress.md';
const MARK = 'bench-ingress';
const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const HEALTH = ['--health-type', 'http', '--health-port', '80', '--health-path', '/health', '--health-interval', '500', '--health-retries', '2', '--health-timeout', '500'];

const TARGETS = ['mesh via other node', 'mesh via home node', 'direct'] as const;
type Target = (typeof TARGETS)[number];
const WORKLOADS = ['keep-alive', 'new connection per request'] as const;
type Workload = (typeof WORKLOADS)[number];

interface Run {
  rps: number;
  errors: number;
  /** SYNs the client had to send again (each waits 1 s), during this run. */
  synRetrans: number;
  /** SYNs the replica's namespace rejected against a TIME_WAIT socket (PAWS), during this run. */
  pawsTimewait: number;
}
type Results = Record<Workload, Record<Target, Run[]>>;

interface Propagation {
  /** The node of the first replica. */
  firstOn: string;
  /** The node the new replica landed on. */
  landedOn: string;
  /** ms from `service scale` until `service ps` shows the new replica serving. */
  servingMs: number;
  /** ms from `service scale` until a request through a node's published port reached it, by node name. */
  reachedMs: Array<{ node: string; ms: number }>;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] ?? 0) : ((s[s.length / 2 - 1] ?? 0) + (s[s.length / 2] ?? 0)) / 2;
};
const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const taskName = (t: Task): string => `${t.serviceName}.${t.slot}.${t.id}`;

function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

async function shoal(h: Harness, ...args: string[]): Promise<void> {
  const r = await h.shoal(...args);
  if (r.code !== 0) throw new Error(`shoal ${args.join(' ')} failed (${r.code}): ${r.err.trim()}`);
}

async function servingTasks(h: Harness, service: string): Promise<Task[]> {
  return (await h.json<Task[]>('service', 'ps', service)).filter(servesTraffic);
}

/** One GET from the client namespace (a new connection); the body, or '' on any failure. */
async function get(h: Harness, url: string): Promise<string> {
  const r = await h.client.exec(['curl', '-s', '-m', '2', url], { timeoutMs: 5000 });
  return r.code === 0 ? r.stdout.trim() : '';
}

/** One TcpExt counter of a namespace (/proc/net/netstat is the reader's netns). */
async function tcpExt(ns: string, counter: string): Promise<number> {
  const r = await runInNetns(ns, ['cat', '/proc/net/netstat']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf(counter);
  if (r.code !== 0 || i < 1) throw new Error(`no TcpExt ${counter} in ${ns}: ${r.stderr.trim()}`);
  return Number(values[i]);
}

async function wrk(h: Harness, replicaNs: string, url: string, workload: Workload, seconds: number): Promise<Run> {
  const args = ['wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, ...(workload === 'keep-alive' ? [] : ['-H', 'Connection: close']), url];
  const counters = (): Promise<[number, number]> => Promise.all([tcpExt(h.client.netns, 'TCPSynRetrans'), tcpExt(replicaNs, 'PAWSTimewait')]);
  const before = await counters();
  const r = await h.client.exec(PIN ? ['taskset', '-c', '0', ...args] : args, { timeoutMs: (seconds + 30) * 1000 });
  const after = await counters();
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !rps) throw new Error(`wrk ${url} failed (${r.code}):\n${r.stdout}${r.stderr}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  return {
    rps: Number(rps), errors: non2xx + (socket ? socket.slice(1).reduce((s, x) => s + Number(x), 0) : 0),
    synRetrans: after[0] - before[0], pawsTimewait: after[1] - before[1],
  };
}

/** Every thread of `pid` onto CPU 1 (wrk gets CPU 0). */
async function pinServer(what: string, pid: number): Promise<void> {
  if (!PIN) return;
  const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  if (comm !== 'node') throw new Error(`pid ${pid} (${what}) is ${comm}, not the node server`);
  await run('taskset', ['-a', '-p', '-c', '1', String(pid)]);
}

/**
 * Short flows at thousands per second: see the module doc. Applied to every harness namespace
 * but the ingress sandboxes: their masquerade must not hand out a source port again while the
 * replica still holds that flow in TIME_WAIT (60 s), so their closed flows stay the default 120 s
 * (shortened there, a reused port carries an older TCP timestamp and the replica drops the SYN).
 */
async function tuneForShortFlows(h: Harness): Promise<void> {
  for (const ns of await listNetns(h.prefix)) {
    if (ns.endsWith('-ingress-sbox')) continue;
    const r = await runInNetns(ns, ['sysctl', '-q', '-w', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
    // A namespace where conntrack never ran (the underlay switch) has no such key: nothing to tune.
    if (r.code !== 0 && !/cannot stat|No such file/.test(r.stderr)) throw new Error(`sysctl in ${ns}: ${r.stderr.trim()}`);
  }
  for (const kv of ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']) {
    const r = await h.client.exec(['sysctl', '-q', '-w', kv]);
    if (r.code !== 0) throw new Error(`sysctl ${kv} in the client: ${r.stderr.trim()}`);
  }
}

/**
 * `service scale web=2`, then when the new replica serves and when each node's port reaches it.
 * Run before the wrk runs: their TIME_WAIT leftovers in the replica would delay the polls' SYNs.
 */
async function scaleUp(h: Harness, first: Task, nodeName: (t: Task) => string): Promise<Propagation> {
  const deadline = 30_000;
  const t0 = performance.now();
  await shoal(h, 'service', 'scale', 'web=2');
  const since = (): number => performance.now() - t0;
  const serving = (async (): Promise<{ ms: number; task: Task }> => {
    for (;;) {
      const task = (await servingTasks(h, 'web')).find((t) => t.id !== first.id);
      if (task) return { ms: since(), task };
      if (since() > deadline) throw new Error('the new replica did not serve within 30 s');
      await sleep(10);
    }
  })();
  const reached = async (node: HarnessNode): Promise<number> => {
    const url = `http://${node.address}:${PUBLISHED}/`;
    for (;;) {
      const name = (await get(h, url)).split(' ')[0] ?? '';
      if (name.startsWith('web.') && name !== taskName(first)) return since();
      if (since() > deadline) throw new Error(`requests through ${node.name} did not reach the new replica within 30 s`);
    }
  };
  const [s, ...via] = await Promise.all([serving, ...h.nodes.map(reached)]);
  return { firstOn: nodeName(first), landedOn: nodeName(s.task), servingMs: s.ms, reachedMs: h.nodes.map((n, i) => ({ node: n.name, ms: via[i] ?? NaN })) };
}

async function bench(h: Harness): Promise<{ rps: Results; scale: Propagation }> {
  const nodeById = new Map((await h.json<Node[]>('node', 'ls')).map((n) => [n.id, n]));
  const nodeName = (t: Task): string => nodeById.get(t.nodeId)?.name ?? t.nodeId;
  await shoal(h, 'network', 'create', '--subnet', '10.73.0.0/24', 'app');
  await shoal(h, 'service', 'create', '--name', 'web', '--network', 'app', '-p', `${PUBLISHED}:80`, ...HEALTH, '-e', 'PORT=80', '--', process.execPath, BACKEND);
  const first = await waitFor('web to serve', async () => (await servingTasks(h, 'web'))[0], 60_000, 100);
  for (const n of h.nodes) {
    await waitFor(`web through ${n.name}`, async () => (await get(h, `http://${n.address}:${PUBLISHED}/`)).split(' ')[0] === taskName(first), 15_000, 100);
  }

  console.log(`scale up: replica ${taskName(first)} on ${nodeName(first)}; service scale web=2...`);
  const scale = await scaleUp(h, first, nodeName);
  console.log(`  new replica on ${scale.landedOn}: serving in service ps after ${fmt(scale.servingMs)} ms; reached through `
    + `${scale.reachedMs.map((r) => `${r.node} after ${fmt(r.ms)} ms`).join(', ')}`);
  await shoal(h, 'service', 'scale', 'web=1');
  const replica = await waitFor('web back to 1 replica', async () => {
    const tasks = await h.json<Task[]>('service', 'ps', 'web');
    const serving = tasks.filter(servesTraffic);
    return serving.length === 1 && tasks.filter((t) => t.status.state === 'running').length === 1 && serving[0];
  }, 30_000, 100);
  const home = h.nodes.find((n) => n.name === nodeName(replica));
  const other = h.nodes.find((n) => n !== home);
  if (!home || !other) throw new Error(`replica on ${nodeName(replica)}: no home and other node among ${h.nodes.map((n) => n.name).join(', ')}`);
  console.log(`replica ${taskName(replica)} on ${home.name} (${home.address}); other node ${other.name} (${other.address})`);

  const direct: HarnessProcess = home.spawn([process.execPath, BACKEND], { env: { ...process.env, PORT: String(DIRECT_PORT), SHOAL_TASK_NAME: 'direct' } });
  try {
    const url: Record<Target, string> = {
      'mesh via other node': `http://${other.address}:${PUBLISHED}/`,
      'mesh via home node': `http://${home.address}:${PUBLISHED}/`,
      direct: `http://${home.address}:${DIRECT_PORT}/`,
    };
    const expected: Record<Target, string> = { 'mesh via other node': taskName(replica), 'mesh via home node': taskName(replica), direct: 'direct' };
    for (const t of TARGETS) {
      const answer = await waitFor(`${url[t]} to answer`, async () => {
        if (!direct.running()) throw new Error(`the direct backend exited: ${direct.output().trim()}`);
        const a = await get(h, url[t]);
        return a.split(' ')[0] === expected[t] && a;
      }, 15_000, 100);
      console.log(`  ${t}: ${url[t]} -> ${answer}`);
    }
    await tuneForShortFlows(h);
    const replicaNs = `${home.name}-${replica.id}`;
    if (!(await listNetns(replicaNs)).includes(replicaNs)) throw new Error(`no netns ${replicaNs} for the replica`);
    if (replica.status.pid === undefined) throw new Error(`no pid for ${taskName(replica)}`);
    await pinServer('the replica', replica.status.pid);
    await pinServer('the direct server', direct.pid);

    const rps = Object.fromEntries(WORKLOADS.map((w) => [w, Object.fromEntries(TARGETS.map((t) => [t, [] as Run[]]))])) as Results;
    for (const w of WORKLOADS) {
      for (const t of TARGETS) await wrk(h, replicaNs, url[t], w, 1); // warm-up (JIT, caches, ARP/FDB)
      for (let r = 0; r < ROUNDS; r++) {
        // Rotate the order each round so no target always runs first or last.
        const order = TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length] as Target);
        for (const t of order) {
          const x = await wrk(h, replicaNs, url[t], w, SECONDS);
          rps[w][t].push(x);
          console.log(`  ${w}, ${t}: ${x.rps.toFixed(0)} req/s${x.errors ? `, ${x.errors} errors` : ''}`
            + `${x.synRetrans ? `, ${x.synRetrans} SYN retransmits (${x.pawsTimewait} SYNs rejected by PAWS in the replica)` : ''}`);
        }
      }
    }
    if (!direct.running()) throw new Error(`the direct backend exited during the run: ${direct.output().trim()}`);
    return { rps, scale };
  } finally {
    await direct.stop('SIGTERM', 3000);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the ingress benchmark needs root');
  // Before the harness exists: a Ctrl-C while it is being built must remove it too.
  const interrupted = (): void => {
    console.error('\ninterrupted: removing the harness');
    void destroyAllHarnesses().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const subnet = `192.168.${100 + Math.floor(Math.random() * 150)}.0/24`;
  const loadBefore = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  console.log(`load average ${loadBefore}`);
  let prefix = '';
  let out: Awaited<ReturnType<typeof bench>> | undefined;
  try {
    console.log(`starting a 2-node harness (underlay ${subnet}, nftables dataplane)...`);
    const h = await startHarness({ nodes: 2, underlaySubnet: subnet, agentArgs: ['--lb-dataplane', 'nftables'] });
    prefix = h.prefix;
    try {
      out = await bench(h);
    } catch (e) {
      console.error(h.logs());
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
  const { rps, scale } = out;
  const m = (w: Workload, t: Target): number => median(rps[w][t].map((x) => x.rps));
  const ratios = WORKLOADS.map((w) => ({
    w, other: m(w, 'mesh via other node') / m(w, 'direct'), home: m(w, 'mesh via home node') / m(w, 'direct'),
  }));
  console.log(`\nmedians of ${ROUNDS} x ${SECONDS} s:`);
  for (const w of WORKLOADS) console.log(`  ${w}: ${TARGETS.map((t) => `${t} ${fmt(m(w, t))}`).join(', ')} req/s`);
  for (const r of ratios) console.log(`mesh/direct, ${r.w}: via other node ${r.other.toFixed(3)}, via home node ${r.home.toFixed(3)}`);
  await writeDoc(rps, ratios, scale, loadBefore);
}

async function writeDoc(
  rps: Results, ratios: Array<{ w: Workload; other: number; home: number }>, scale: Propagation, loadBefore: string,
): Promise<void> {
  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
  const key = `<!-- ${MARK}:${hostname()}:${machine} -->`;
  const [nftV, wrkV] = await Promise.all([
    run('nft', ['--version']).then((s) => s.trim(), () => '?'),
    // `wrk -v` prints its version and exits 1.
    new Promise<string>((resolve) => execFile('wrk', ['-v'], (_e, o, err) => resolve(`${o}${err}`))).then((s) => /wrk (\S+)/.exec(s)?.[1] ?? '?'),
  ]);
  const row = (w: Workload, t: Target): string => {
    const runs = rps[w][t];
    const sum = (f: (x: Run) => number): number => runs.reduce((s, x) => s + f(x), 0);
    return `| ${w} | ${t} | ${fmt(median(runs.map((x) => x.rps)))} | ${runs.map((x) => x.rps.toFixed(0)).join(', ')} | ${sum((x) => x.errors)} | ${sum((x) => x.synRetrans)} | ${sum((x) => x.pawsTimewait)} |`;
  };
  const section = [
    key,
    `## ${machine}, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Host \`${hostname()}\`, Linux ${release()}, ${nftV}, Node ${process.version} (through tsx), wrk ${wrkV}; run at ${new Date().toISOString()}.`,
    `Command: \`node --import tsx test/bench/ingress.ts\` (BENCH_SECONDS=${SECONDS}, BENCH_ROUNDS=${ROUNDS}, BENCH_CONNECTIONS=${CONNECTIONS}, BENCH_PIN=${PIN ? 1 : 0}).`,
    '',
    `2-node harness (agents \`--lb-dataplane nftables\`), service \`web\`: 1 replica of test/fixtures/lb-backend.mjs on the \`home\``,
    `node, \`-p ${PUBLISHED}:80\` (ingress mode, cluster policy), HTTP health check every 500 ms. From the client namespace:`,
    `\`wrk -t1 -c${CONNECTIONS} -d${SECONDS}s <url>\` (+ \`-H 'Connection: close'\`), rounds rotating the order of the targets:`,
    `\`mesh via other node\` = \`http://<other>:${PUBLISHED}/\` (DNAT to the ingress sandbox, VXLAN to the replica, masqueraded);`,
    `\`mesh via home node\` = \`http://<home>:${PUBLISHED}/\` (the same NAT hops, no VXLAN); \`direct\` = \`http://<home>:${DIRECT_PORT}/\``,
    '(the same fixture as a plain process in the home node\'s namespace: no mesh). Closed conntrack flows are kept 1 s in every',
    'harness namespace but the ingress sandboxes, the client reuses TIME_WAIT ports. Everything shares one machine; '
      + `${PIN ? 'wrk on CPU 0, the replica and the direct server on CPU 1 (`taskset`), agents and softirqs anywhere.' : 'no pinning.'}`,
    'SYN retransmits: the client\'s (TcpExt TCPSynRetrans, each costs 1 s); PAWS-rejected SYNs: the replica\'s namespace refusing a',
    'SYN against one of its TIME_WAIT sockets (TcpExt PAWSTimewait). Through the mesh every flow reaches the replica from the ingress',
    'sandbox\'s one address, and with `Connection: close` the replica closes first and keeps each flow 60 s in TIME_WAIT; a new',
    'flow masqueraded onto such a tuple with an older timestamp has its SYN dropped until the retransmission 1 s later. With',
    '`masquerade fully-random` in the sandbox that cost ~1,000 stalls per run (close workload 0.14-0.18 of direct); the sandbox',
    'now keeps the client\'s source port where it is free, and the counters stay at or near 0.',
    '',
    `| workload | target | req/s (median of ${ROUNDS} x ${SECONDS} s) | all runs | errors | SYN retransmits | PAWS-rejected SYNs |`,
    '|---|---|---:|---|---:|---:|---:|',
    ...WORKLOADS.flatMap((w) => TARGETS.map((t) => row(w, t))),
    '',
    ...ratios.map((r) => `**mesh/direct, ${r.w}: ${r.other.toFixed(3)}** through the node without the replica; ${r.home.toFixed(3)} through the replica's node.`),
    '',
    `Scale up, before the runs above (\`shoal service scale web=2\`, once; first replica on ${scale.firstOn}, new one on ${scale.landedOn}):`,
    `serving in \`service ps\` after ${fmt(scale.servingMs)} ms; first request reaching it through `
      + `${scale.reachedMs.map((r) => `${r.node}${r.node === scale.landedOn ? ' (its node)' : ''} after ${fmt(r.ms)} ms`).join(', ')}`,
    '(from the scale command, the health check every 500 ms has to pass first; curl polls ~20-30 ms apart).',
    `Load average before the run: ${loadBefore} (other work on the machine competes with every target).`,
    `<!-- /${MARK} -->`,
  ].join('\n');
  await writeSection(DOC, key, `<!-- /${MARK} -->`, section, [
      '# Ingress routing mesh benchmark',
      '',
      'Requests per second from a client outside the cluster through a published port on a node without the replica (across the',
      'ingress overlay) against the same server reached straight. Sections below are written by',
      '`node --import tsx test/bench/ingress.ts` (one per machine, replaced on each run; see the file\'s doc comment for the knobs).',
      'Needs root, nftables, nsenter, curl, wrk (`scripts/system-deps.sh --bench`).',
      '',
    ].join('\n'));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
