/**
 * The multi-node harness: N Shoal nodes on one machine, for integration and end-to-end tests
 * and for `examples/three-node/`.
 *
 * Topology (every name starts with the harness's prefix `P`):
 *
 * ```
 *   netns Pul: bridge br0 (the underlay switch; no uplink, no route to the host)
 *     |-- veth P-m  <-> eth0 in netns Pm   manager   .2   `shoal manager --listen .2:4242`
 *     |-- veth P-c  <-> eth0 in netns Pc   client    .3   (outside the cluster: curl, dig, ...)
 *     |-- veth P-n1 <-> eth0 in netns Pn1  node Pn1  .11  `shoal agent --join https://.2:4242`
 *     `-- veth P-n2 <-> eth0 in netns Pn2  node Pn2  .12  ...
 * ```
 *
 * With `etcd: {members: K}` and `managers: M` (HA): etcd members in netns `Pe1..PeK` at .6
 * upwards (client port 2379), started by the harness; managers `Pm` (.2), `Pm2` (.4), `Pm3`
 * (.5) all with `--store etcd://...` and `--name` their netns; every agent gets every manager
 * in `--join` (starting with a different one per node, so sessions spread).
 *
 * Nothing is created in the root network namespace, so nothing the harness starts can reach
 * the host's interfaces. Each daemon is a child process in its netns with its own data dir
 * under one temp dir; a node's name is its netns name, so anything its agent names after the
 * node (task namespaces `Pn1-...`) carries the prefix and is swept with the rest.
 *
 * Clean-up: `destroy()` (idempotent) stops the daemons, kills every process still living in a
 * `P*` namespace and every task process an agent recorded, deletes the `P*` namespaces and
 * links, and removes the temp dir. {@link destroyAllHarnesses} is meant for `afterAll`; a
 * `process.on('exit')` hook does the same synchronously for a harness nobody destroyed; and
 * {@link startHarness} first sweeps harnesses whose owning process died without cleaning up.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../mesh/cli/main.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { INSTANCE_FILE } from '../../mesh/daemon/instance.js';
import { linkPrefixOf } from '../../src/drivers/names.js';
import { ensureNetns, listNetns, NetnsWorker } from '../../src/kernel/netns.js';
import type { Node } from '../../src/model/types.js';
import { cleanupPrefix, makeTestPrefix, waitFor } from '../helpers/netns.js';
import { runInNetns, spawnInNetns, type HarnessProcess, type RunOptions, type RunResult } from './process.js';
import { isAlive, killNetnsProcesses, killNetnsProcessesOnce, killRecordedTasks, netnsOfPid, pidsInNetns, procStartTime, sweepPrefixSync } from './sweep.js';

export type { HarnessProcess, RunOptions, RunResult } from './process.js';
export { isAlive } from './sweep.js';

/** Options of {@link startHarness}. */
export interface HarnessOptions {
  /** Number of agent nodes (1..99). */
  nodes: number;
  /** Name prefix of everything created (4-9 of [a-z0-9]); default {@link makeTestPrefix}. */
  prefix?: string;
  /** IPv4 underlay subnet, prefix length 16..26; default `192.168.<random>.0/24`. */
  underlaySubnet?: string;
  /** The manager's `--node-ttl`: seconds without a heartbeat before a node is down. */
  nodeTtlSeconds?: number;
  /** TCP port of the manager's API on the underlay; default 4242. */
  managerPort?: number;
  /** Extra arguments for every `shoal agent` (flags that later issues add). */
  agentArgs?: string[];
  /** Extra arguments for `shoal manager`. */
  managerArgs?: string[];
  /** How long to wait for the manager and for every node to be ready; default 30 s. */
  readyTimeoutMs?: number;
  /** Number of managers (1..3); more than one needs `etcd`. Default 1. */
  managers?: number;
  /** Run the managers on an etcd cluster the harness starts on the underlay (1..5 members). */
  etcd?: { members: number; heartbeatMs?: number; electionMs?: number };
}

/** What a `shoal` command printed and its exit status. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** A namespace on the underlay with one address. */
export interface HarnessHost {
  /** Netns name (under /run/netns, usable with `ip netns exec` / `ip -n`). */
  readonly netns: string;
  /** Underlay IPv4 address (on `eth0` in {@link netns}). */
  readonly address: string;
  /** Run a command inside the netns to completion (argument array, no shell). */
  exec(cmd: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Start a long-running command inside the netns; `destroy()` stops it. */
  spawn(cmd: readonly string[], opts?: Omit<RunOptions, 'input' | 'timeoutMs'>): HarnessProcess;
}

/** The manager: `shoal manager` in its own netns. */
export interface HarnessManager extends HarnessHost {
  /** The API on the underlay, `https://<address>:<port>`, TLS only (reachable from nodes and client only). */
  readonly url: string;
  /** Its data dir; `shoal.sock` there is the API on a unix socket, usable from any netns. */
  readonly dataDir: string;
  /** The manager token (CLI / API). */
  readonly token: string;
  /** The join token agents present. */
  readonly joinToken: string;
  /** The running manager process (replaced by {@link restart}). */
  readonly process: HarnessProcess;
  /**
   * Stop the manager with `signal` (SIGKILL after 3 s) and start it again on the same data
   * dir; resolves when it serves again. Agents reconnect by themselves.
   */
  restart(signal?: NodeJS.Signals): Promise<void>;
  /** Its name among several managers (its netns). */
  readonly name: string;
  /** Stop it (SIGTERM, or SIGKILL for a crash); resolves once it exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again (same data dir); resolves once it serves. */
  start(): Promise<void>;
  /** True while its process runs. */
  running(): boolean;
}

/** One node: a netns with an agent in it. */
export interface HarnessNode extends HarnessHost {
  /** Node name, equal to {@link netns} (so the agent's own objects can carry the prefix). */
  readonly name: string;
  /** The agent's data dir. */
  readonly dataDir: string;
  /** The current agent child process (replaced by {@link startAgent}). */
  readonly agent: ChildProcess;
  /** The current agent as a {@link HarnessProcess} (its output, its exit). */
  readonly agentProcess: HarnessProcess;
  /**
   * Stop the agent: SIGTERM (then SIGKILL after 3 s) or e.g. SIGKILL to simulate a crash.
   * Its task processes are not stopped (a restarted agent adopts them). Resolves once it exited.
   */
  stopAgent(signal?: NodeJS.Signals): Promise<void>;
  /** Start the agent again (same name and data dir); resolves when the manager shows it ready. */
  startAgent(): Promise<void>;
  /**
   * Node death: SIGKILL every process in the node's netns and its task namespaces (agent and
   * tasks), and take its underlay port down. {@link revive} brings the port back.
   */
  kill(): Promise<void>;
  /** Bring the underlay port of a killed node back up (then {@link startAgent}). */
  revive(): Promise<void>;
  /** The prefix of the links and nft tables its agent owns (from the instance tag in its data dir). */
  linkPrefix(): string;
}

/** A running harness. See the module doc for the topology and the clean-up guarantees. */
export interface Harness {
  readonly prefix: string;
  /** The underlay subnet, e.g. `192.168.57.0/24`. */
  readonly subnet: string;
  /** The netns holding the underlay bridge. */
  readonly underlayNetns: string;
  /** The first manager. */
  readonly manager: HarnessManager;
  /** Every manager (one unless `managers` was given). */
  readonly managers: readonly HarnessManager[];
  /** The etcd cluster, when the managers run on etcd. */
  readonly etcd: EtcdCluster | undefined;
  readonly nodes: readonly HarnessNode[];
  /** A namespace on the underlay outside the cluster (no agent): where outside clients run. */
  readonly client: HarnessHost;
  /** Where the harness keeps data dirs and logs; removed by {@link destroy}. */
  readonly dir: string;
  /** Run the shoal CLI (in-process) against the manager. Never throws for a failed command. */
  shoal(...args: string[]): Promise<CliResult>;
  /** `shoal ARGS --format json`, parsed; throws with the CLI's message when it fails. */
  json<T>(...args: string[]): Promise<T>;
  /** The name of the harness netns `pid` lives in (a node's, a task's `Pn1-...`), or undefined. */
  netnsOf(pid: number): string | undefined;
  /** Manager and agent output (tails), for a failing test's message. */
  logs(): string;
  /** Remove everything the harness created. Idempotent; safe after a failed start. */
  destroy(): Promise<void>;
}

// ---- where the shoal program is ----

const here = dirname(fileURLToPath(import.meta.url));
// Sources run under tsx (tests, `node --import tsx examples/...`); the build runs plain JS.
const fromSources = import.meta.url.endsWith('.ts');
const treeRoot = join(here, '..', '..');
const repoRoot = fromSources ? treeRoot : join(treeRoot, '..');
const shoalProgram: readonly string[] = fromSources
  ? [process.execPath, '--import', 'tsx', join(treeRoot, 'mesh', 'cli', 'main.ts')]
  : [process.execPath, join(treeRoot, 'mesh', 'cli', 'main.js')];

const DIR_PREFIX = 'shoal-harness-';
const OWNER_FILE = 'owner.json';
const STOP_GRACE_MS = 3000;

// ---- addresses ----

function parseSubnet(s: string): { base: number; len: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const len = Number(m?.[5]);
  if (!m || octets.some((o) => o > 255) || len < 16 || len > 26) {
    throw new Error(`underlaySubnet '${s}' must be an IPv4 CIDR with a prefix length of 16 to 26`);
  }
  const ip = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - len);
  return { base: ip - (ip % size), len };
}

const ipOf = (n: number): string => [24, 16, 8, 0].map((b) => Math.floor(n / 2 ** b) % 256).join('.');

// ---- live harnesses, exit hook, stale sweep ----

const live = new Set<HarnessImpl>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for a harness nobody destroyed (a test runner exiting early): synchronous.
  process.on('exit', () => {
    for (const h of live) h.sweepSync();
  });
}

interface Owner { pid: number; start: string | undefined; prefix: string }

const PREFIX_RE = /^[a-z0-9]{4,9}$/;

/**
 * Remove harnesses left by processes that died without cleaning up (SIGKILL of a test
 * runner): each harness temp dir records its owner (pid and start time) and its prefix; a
 * dir whose owner is gone is swept like `destroy()` would. Harnesses of live processes (other
 * test runs on the machine) are left alone. Called by {@link startHarness}.
 */
export async function sweepStaleHarnesses(): Promise<string[]> {
  const swept: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return swept;
  }
  for (const e of entries) {
    const dir = join(tmpdir(), e);
    let owner: Owner;
    try {
      owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as Owner;
    } catch {
      continue;
    }
    if (!PREFIX_RE.test(owner.prefix)) continue;
    // A zombie owner is dead too (its parent may not have reaped it yet).
    if (isAlive(owner.pid) && procStartTime(owner.pid) === owner.start) continue;
    killRecordedTasks([dir]);
    await killNetnsProcesses(owner.prefix);
    await cleanupPrefix(owner.prefix);
    rmSync(dir, { recursive: true, force: true });
    swept.push(owner.prefix);
  }
  return swept;
}

/** Destroy every harness this process started and has not destroyed yet (for `afterAll`). */
export async function destroyAllHarnesses(): Promise<void> {
  const results = await Promise.allSettled([...live].map((h) => h.destroy()));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) throw new AggregateError(failed.map((f) => f.reason as unknown), 'harness clean-up failed');
}

/**
 * Build the topology, start the manager and one agent per node, and resolve once every node
 * is `ready` with its underlay address. On any failure everything created so far is removed
 * before the promise rejects (the error carries the daemons' output).
 *
 * Needs root (namespaces, links), util-linux `nsenter`, and tsx when run from sources.
 */
export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 99) throw new Error(`nodes must be 1..99 (got ${opts.nodes})`);
  const prefix = opts.prefix ?? makeTestPrefix();
  // 9 leaves room for the longest link name in the underlay netns: `P-n99`.
  if (!PREFIX_RE.test(prefix)) throw new Error(`prefix '${prefix}' must be 4 to 9 of [a-z0-9]`);
  const subnet = opts.underlaySubnet ?? `192.168.${100 + Math.floor(Math.random() * 150)}.0/24`;
  const { base, len } = parseSubnet(subnet);
  if (10 + opts.nodes >= 2 ** (32 - len) - 1) throw new Error(`${subnet} is too small for ${opts.nodes} nodes at .11 upwards`);
  await sweepStaleHarnesses();
  // Never adopt (and later delete) namespaces someone else made under this prefix.
  const taken = await listNetns(prefix);
  if (taken.length) throw new Error(`prefix '${prefix}' is in use (netns ${taken.join(', ')})`);

  const dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${prefix}-`));
  const owner: Owner = { pid: process.pid, start: procStartTime(process.pid), prefix };
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify(owner));
  const h = new HarnessImpl(prefix, subnet, base, len, dir, opts);
  live.add(h);
  installExitHook();
  try {
    await h.build();
    return h;
  } catch (e) {
    const logs = h.logs();
    await h.destroy().catch((d: unknown) => console.error('harness clean-up after a failed start:', d));
    throw new Error(`harness did not start: ${e instanceof Error ? e.message : String(e)}${logs ? `\n${logs}` : ''}`, { cause: e });
  }
}

// ---- implementation ----

class Host implements HarnessHost {
  constructor(
    readonly netns: string,
    readonly address: string,
    /** The veth end on the underlay bridge. */
    readonly port: string,
    protected readonly h: HarnessImpl,
  ) {}

  exec(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return runInNetns(this.netns, cmd, { cwd: repoRoot, ...opts });
  }

  spawn(cmd: readonly string[], opts: Omit<RunOptions, 'input' | 'timeoutMs'> = {}): HarnessProcess {
    this.h.assertOpen();
    return this.h.track(spawnInNetns(this.netns, cmd, { cwd: repoRoot, ...opts }));
  }
}

class ManagerImpl extends Host implements HarnessManager {
  readonly url: string;
  readonly dataDir: string;
  token = '';
  joinToken = '';
  /** The latest manager process, if started. */
  current: HarnessProcess | undefined;

  constructor(netns: string, address: string, port: string, h: HarnessImpl, private readonly apiPort: number, index = 0) {
    super(netns, address, port, h);
    this.url = `https://${address}:${apiPort}`;
    this.dataDir = join(h.dir, index === 0 ? 'manager' : `manager${index + 1}`);
  }

  get name(): string { return this.netns; }

  running(): boolean { return !!this.current?.running(); }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.current?.stop(signal, STOP_GRACE_MS);
  }

  get process(): HarnessProcess {
    if (!this.current) throw new Error('the manager has not been started');
    return this.current;
  }

  /** Start `shoal manager`; resolves once it printed its join token (it serves from then on). */
  async start(): Promise<void> {
    const o = this.h.opts;
    const p = this.spawn([
      ...shoalProgram, 'manager', '--data-dir', this.dataDir, '--listen', `${this.address}:${this.apiPort}`,
      ...(o.nodeTtlSeconds !== undefined ? ['--node-ttl', String(o.nodeTtlSeconds)] : []),
      ...(this.h.etcd ? ['--store', this.h.etcd.storeUrl, '--name', this.name] : []), ...(o.managerArgs ?? []),
    ]);
    this.current = p;
    const joinToken = await waitFor('the manager to print its join token', () => {
      this.h.assertOpen();
      if (!p.running()) throw new Error(`shoal manager exited: ${p.output().trim()}`);
      return /join token: (\S+)/.exec(p.stdout())?.[1];
    }, o.readyTimeoutMs ?? 30_000, 50);
    this.joinToken = joinToken;
    // Written before the join token is printed (mesh/daemon/index.ts).
    this.token = readFileSync(join(this.dataDir, 'manager.token'), 'utf8').trim();
  }

  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.current?.stop(signal, STOP_GRACE_MS);
    await this.start();
  }
}

class NodeImpl extends Host implements HarnessNode {
  readonly dataDir: string;
  /** The latest agent process, if started. */
  current: HarnessProcess | undefined;

  constructor(readonly name: string, address: string, port: string, h: HarnessImpl, private readonly index = 0) {
    super(name, address, port, h);
    this.dataDir = join(h.dir, name);
  }

  async kill(): Promise<void> {
    const mine = (ns: string): boolean => ns === this.netns || ns.startsWith(`${this.netns}-`);
    for (let round = 0; round < 100; round++) {
      const pids = pidsInNetns(this.netns).filter((p) => mine(p.netns)).map((p) => p.pid);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.current?.exited;
    await runInNetns(this.h.underlayNetns, ['ip', 'link', 'set', this.port, 'down']);
  }

  async revive(): Promise<void> {
    await runInNetns(this.h.underlayNetns, ['ip', 'link', 'set', this.port, 'up']);
  }

  get agentProcess(): HarnessProcess {
    if (!this.current) throw new Error(`the agent of ${this.name} has not been started`);
    return this.current;
  }

  get agent(): ChildProcess { return this.agentProcess.child; }

  /** Start the agent; resolves with the time before the spawn (see {@link waitReady}). */
  launch(): number {
    if (this.current?.running()) throw new Error(`the agent of ${this.name} is running`);
    const since = Date.now();
    // Every manager, starting with a different one per node so that sessions spread.
    const ms = this.h.managers;
    const join = ms.map((_, i) => (ms[(i + this.index) % ms.length] as ManagerImpl).url).join(',');
    this.current = this.spawn([
      ...shoalProgram, 'agent', '--join', join, '--token', this.h.manager.joinToken,
      '--data-dir', this.dataDir, '--name', this.name, '--address', this.address,
      // Task namespaces are named after the node, so the harness's prefix sweep finds them.
      '--netns-prefix', `${this.name}-`, ...(this.h.opts.agentArgs ?? []),
    ]);
    return since;
  }

  /** A node is up-to-date ready when the manager updated it (its join) after `since`. */
  isReady(nodes: readonly Node[], since: number): boolean {
    const n = nodes.find((x) => x.name === this.name);
    return !!n && n.state === 'ready' && n.address === this.address && Date.parse(n.updatedAt) >= since;
  }

  async startAgent(): Promise<void> {
    const since = this.launch();
    await this.h.waitReady([{ node: this, since }]);
  }

  async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.current?.stop(signal, STOP_GRACE_MS);
  }

  linkPrefix(): string {
    const { tag } = JSON.parse(readFileSync(join(this.dataDir, INSTANCE_FILE), 'utf8')) as { tag: string };
    return linkPrefixOf(tag);
  }
}

class HarnessImpl implements Harness {
  readonly underlayNetns: string;
  readonly manager: ManagerImpl;
  readonly managers: ManagerImpl[];
  readonly nodes: NodeImpl[];
  readonly client: Host;
  /** Netns and address of each etcd member (HA). */
  readonly etcdHosts: Host[];
  etcd: EtcdCluster | undefined;
  private readonly processes = new Set<HarnessProcess>();
  private destroying: Promise<void> | undefined;
  private building: Promise<void> | undefined;
  /** Set by destroy(): an unfinished build() stops at its next step, nothing new is spawned. */
  private closing = false;

  constructor(
    readonly prefix: string,
    readonly subnet: string,
    private readonly base: number,
    private readonly len: number,
    readonly dir: string,
    readonly opts: HarnessOptions,
  ) {
    this.underlayNetns = `${prefix}ul`;
    const at = (offset: number): string => ipOf(this.base + offset);
    const managers = opts.managers ?? 1;
    if (!Number.isInteger(managers) || managers < 1 || managers > 3) throw new Error(`managers must be 1..3 (got ${managers})`);
    if (managers > 1 && !opts.etcd) throw new Error('several managers need etcd (HarnessOptions.etcd)');
    const members = opts.etcd?.members ?? 0;
    if (opts.etcd && (!Number.isInteger(members) || members < 1 || members > 5)) throw new Error(`etcd members must be 1..5 (got ${members})`);
    this.managers = Array.from({ length: managers }, (_, i) => i === 0
      ? new ManagerImpl(`${prefix}m`, at(2), `${prefix}-m`, this, opts.managerPort ?? 4242)
      : new ManagerImpl(`${prefix}m${i + 1}`, at(3 + i), `${prefix}-m${i + 1}`, this, opts.managerPort ?? 4242, i));
    this.manager = this.managers[0] as ManagerImpl;
    this.client = new Host(`${prefix}c`, at(3), `${prefix}-c`, this);
    this.etcdHosts = Array.from({ length: members }, (_, i) => new Host(`${prefix}e${i + 1}`, at(6 + i), `${prefix}-e${i + 1}`, this));
    this.nodes = Array.from({ length: opts.nodes }, (_, i) => new NodeImpl(`${prefix}n${i + 1}`, at(11 + i), `${prefix}-n${i + 1}`, this, i));
  }

  private get hosts(): Host[] { return [...this.managers, this.client, ...this.etcdHosts, ...this.nodes]; }

  assertOpen(): void {
    if (this.closing) throw new Error(`harness ${this.prefix} is being destroyed`);
  }

  track(p: HarnessProcess): HarnessProcess {
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    return p;
  }

  build(): Promise<void> {
    this.building ??= this.buildSteps();
    return this.building;
  }

  private async buildSteps(): Promise<void> {
    for (const ns of [this.underlayNetns, ...this.hosts.map((x) => x.netns)]) {
      this.assertOpen();
      await ensureNetns(ns);
    }
    this.assertOpen();
    // The switch: a bridge in its own netns, one veth port per host; the host end is eth0.
    const ul = await NetnsWorker.start({ netns: this.underlayNetns });
    try {
      await ul.links.setUp('lo');
      await ul.links.ensureBridge('br0');
      await ul.links.setUp('br0');
      for (const x of this.hosts) {
        await ul.links.ensureVeth({ name: x.port, peer: 'eth0', peerNetns: x.netns });
        await ul.links.setMaster(x.port, 'br0');
        await ul.links.setUp(x.port);
      }
    } finally {
      await ul.close();
    }
    // Workers are closed before anything else: a worker thread would keep its netns alive.
    this.assertOpen();
    await Promise.all(this.hosts.map(async (x) => {
      const w = await NetnsWorker.start({ netns: x.netns });
      try {
        await w.links.setUp('lo');
        await w.links.ensureAddress('eth0', `${x.address}/${this.len}`);
        await w.links.setUp('eth0');
      } finally {
        await w.close();
      }
    }));
    if (this.opts.etcd) {
      this.assertOpen();
      this.etcd = await startEtcdCluster({
        placement: this.etcdHosts.map((x) => ({ netns: x.netns, address: x.address })), dir: join(this.dir, 'etcd'),
        ...(this.opts.etcd.heartbeatMs !== undefined ? { heartbeatMs: this.opts.etcd.heartbeatMs } : {}),
        ...(this.opts.etcd.electionMs !== undefined ? { electionMs: this.opts.etcd.electionMs } : {}),
      });
    }
    for (const m of this.managers) {
      this.assertOpen();
      await m.start();
    }
    const started = this.nodes.map((node) => ({ node, since: node.launch() }));
    await this.waitReady(started);
  }

  /** Poll `node ls` until each node was (re)joined after its `since` and is ready. */
  async waitReady(which: ReadonlyArray<{ node: NodeImpl; since: number }>): Promise<void> {
    let last: Node[] = [];
    try {
      await waitFor('nodes to be ready', async () => {
        for (const { node } of which) {
          if (!node.agentProcess.running()) throw new Error(`the agent of ${node.name} exited: ${node.agentProcess.output().trim()}`);
        }
        this.assertOpen();
        const r = await this.shoal('node', 'ls', '--format', 'json');
        if (r.code !== 0) return false;
        last = JSON.parse(r.out) as Node[];
        return which.every(({ node, since }) => node.isReady(last, since));
      }, this.opts.readyTimeoutMs ?? 30_000, 100);
    } catch (e) {
      const seen = last.map((n) => `${n.name} ${n.state} ${n.address}`).join('; ') || 'none';
      throw new Error(`${e instanceof Error ? e.message : String(e)} (nodes: ${seen})`, { cause: e });
    }
  }

  async shoal(...args: string[]): Promise<CliResult> {
    let out = '';
    let err = '';
    // In-process: a tsx child per command would cost about a second each. The unix socket is
    // not tied to a netns, so the root netns reaches the manager without an underlay route.
    // Every manager's socket: the CLI moves on to the next when one is down.
    const env = { ...process.env, SHOAL_HOST: this.managers.map((m) => `unix://${join(m.dataDir, 'shoal.sock')}`).join(','), SHOAL_TOKEN: this.manager.token };
    const code = await runCli(args, { out: (s) => { out += s; }, err: (s) => { err += s; }, env });
    return { code, out, err };
  }

  async json<T>(...args: string[]): Promise<T> {
    const r = await this.shoal(...args, '--format', 'json');
    if (r.code !== 0) throw new Error(`shoal ${args.join(' ')} failed (${r.code}): ${r.err.trim()}`);
    return JSON.parse(r.out) as T;
  }

  netnsOf(pid: number): string | undefined {
    return netnsOfPid(pid, this.prefix);
  }

  logs(): string {
    const parts: string[] = [];
    const add = (name: string, p: HarnessProcess | undefined): void => {
      if (p && p.output().trim()) parts.push(`--- ${name} (pid ${p.pid}${p.running() ? '' : ', exited'}) ---\n${p.output().trimEnd()}`);
    };
    for (const m of this.managers) add(`manager ${m.name}`, m.current);
    for (const n of this.nodes) add(`agent ${n.name}`, n.current);
    return parts.join('\n');
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    // A build still under way (a signal during startHarness) stops first: it must not spawn
    // or create anything after the sweeps below.
    this.closing = true;
    await this.building?.catch(() => undefined);
    const errors: unknown[] = [];
    const step = async (f: () => Promise<void> | void): Promise<void> => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    // Tasks first: a stopping agent leaves its tasks running (for adoption), and a `shoal agent`
    // that still has task children does not exit on SIGTERM (their handles keep its event
    // loop alive), so it would sit out the whole grace period. Daemons are spared here so
    // that they get their SIGTERM; a task an agent restarts meanwhile is caught further down.
    const daemons = new Set([...this.processes].map((p) => p.pid));
    await step(() => killRecordedTasks([this.dir]));
    await step(() => { killNetnsProcessesOnce(this.prefix, daemons); });
    // Agents before the manager, so none reports against a manager that is going away.
    await step(() => Promise.all(this.nodes.map((n) => n.stopAgent('SIGTERM'))).then(() => undefined));
    await step(() => Promise.all(this.managers.map((m) => m.current?.stop('SIGTERM', STOP_GRACE_MS))).then(() => undefined));
    await step(() => this.etcd?.stop());
    await step(() => Promise.all([...this.processes].map((p) => p.stop('SIGKILL'))).then(() => undefined));
    await step(() => killRecordedTasks([this.dir]));
    await step(() => killNetnsProcesses(this.prefix));
    await step(() => cleanupPrefix(this.prefix));
    await step(() => rmSync(this.dir, { recursive: true, force: true }));
    live.delete(this);
    if (errors.length) throw new AggregateError(errors, `harness ${this.prefix}: clean-up failed`);
  }

  /** The exit hook's version of destroy(): synchronous, best effort. */
  sweepSync(): void {
    for (const p of this.processes) {
      try {
        if (p.running()) process.kill(-p.pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    killRecordedTasks([this.dir]);
    sweepPrefixSync(this.prefix);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
