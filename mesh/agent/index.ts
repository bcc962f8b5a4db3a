/**
 * The agent: joins a manager, keeps the local index in sync, and reconciles the tasks assigned
 * to its node with the task runtime (desired running -> ensureRunning; shutdown -> ensureStopped
 * and report). Nothing is started before the first full list arrived.
 */
import { dirname, join } from 'node:path';
import { cleanupLeftovers } from '../../src/drivers/cleanup.js';
import { closeSharedNetnsRoamer } from '../../src/kernel/index.js';
import type { DriverContext, NetworkDriver } from '../../src/drivers/types.js';
import { messageOf } from '../../src/errors.js';
import { listNetns } from '../../src/kernel/index.js';
import { taskName, type Network, type NetworkDriver as DriverName, type Service, type Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import { TERMINAL } from '../manager/plan.js';
import { NodeDns, type NodeDnsOptions } from './dns.js';
import { drainConnections } from './drain.js';
import { HealthMonitor } from './health.js';
import { INGRESS_SANDBOX_ID, INGRESS_SANDBOX_SYSCTLS, NodeIngress, type NodeIngressOptions } from './ingress.js';
import { lbStatsRows, NodeLb, type NodeLbOptions } from './lb.js';
import { AgentCounters, Backoff } from './counters.js';
import { LocalIndex, type IndexChange } from './local-index.js';
import { NodeNetworks, peerView } from './networks.js';
import { Sandboxes, type SandboxOptions } from './sandboxes.js';
import { LogTimes } from './log-times.js';
import { streamLogFiles } from './logs.js';
import { ProcessRuntime, type TaskEvent, type TaskRuntime } from './process-runtime.js';
import { AgentSession } from './session.js';
import { runOptionsOf } from './task-spec.js';

/** How long a stopping task may keep established connections when its service does not say. */
export const DEFAULT_DRAIN_MS = 10_000;
/** Default period of the full resync that re-reads the kernel and repairs drift. */
export const DEFAULT_RESYNC_MS = 30_000;

export interface AgentOptions {
  managerUrl: string;
  /** The join token, or a function returning the current one. */
  joinToken: string | (() => string);
  /** Called when a manager refused this node for good (its certificate revoked or expired). */
  onFatal?: (msg: string) => void;
  name: string;
  address: string;
  dataDir: string;
  runtime?: TaskRuntime;
  /**
   * Network isolation: each task in its own namespace with one endpoint per network, made by
   * these drivers. Without it, tasks run in the agent's namespace (tests, non-root).
   */
  network?: { ctx: DriverContext; drivers: ReadonlyMap<DriverName, NetworkDriver>; nsPrefix: string; etcNetnsDir?: string };
  /** The node's embedded DNS (with `network` only): listeners on local networks' gateways. */
  dns?: NodeDnsOptions;
  /** VIP load balancing in every task sandbox (with `network` only). */
  lb?: NodeLbOptions;
  /** Published ports: the node's host hop and, with `network`, its ingress sandbox (without: the userspace proxy, `shared`). */
  ingress?: NodeIngressOptions;
  /** The ports processes on the node listen on (`8080/tcp`), reported so they are not published over. */
  boundPorts?: () => string[];
  /** Period of the full resync (recompute everything, re-read the kernel, repair drift); default 30 s. */
  resyncIntervalMs?: number;
  /** Heartbeat interval, ms (default: a quarter of the node lease TTL the manager announces). */
  heartbeatIntervalMs?: number;
  /** Clock of the per-object back-off (tests). */
  now?: () => number;
  log?: (msg: string) => void;
}

export class Agent {
  readonly index = new LocalIndex();
  readonly session: AgentSession;
  readonly runtime: TaskRuntime;
  /** When each part of each task's log was written (service logs --since/--timestamps). */
  private readonly logTimes: LogTimes;
  /** Repairs, failures and invalid objects of every reconciler (exported by mesh/metrics.ts). */
  readonly counters = new AgentCounters();
  private readonly runner: BoundedFrequencyRunner;
  /** Last status reported per task, so a status is sent once per change. */
  private readonly reported = new Map<string, string>();
  syncFailures = 0;
  /** Sandboxes and node networks, when tasks are isolated (only sync() uses them). */
  private readonly net: { ctx: DriverContext; sandboxes: Sandboxes; networks: NodeNetworks } | undefined;
  private leftoversCleaned = false;
  /** The node's resolver, fed from the index (with network isolation). */
  readonly dns: NodeDns | undefined;
  /** VIP balancing in the node's task sandboxes (with network isolation and a dataplane). */
  readonly lb: NodeLb | undefined;
  /** Published ports (routing mesh) on this node. */
  readonly ingress: NodeIngress | undefined;
  /** Health checks of the node's tasks. */
  readonly health: HealthMonitor;
  /** Pid of each task process as last reported running (health reports carry it). */
  private readonly pids = new Map<string, number>();
  /** Restarts of each task's process (its restart policy), carried in every status of the task. */
  private readonly restarts = new Map<string, number>();
  /** Tasks being drained and stopped in the background, by id. */
  private readonly stopping = new Map<string, Promise<void>>();
  /** Ends drains early when the agent stops. */
  private readonly drainAbort = new AbortController();
  /** Per-task back-off after a failed start (its sandbox could not be made...). */
  private readonly backoff: Backoff;
  private retryTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  /** Completed full resyncs (tests wait for one). */
  resyncs = 0;
  private stopped = false;

  constructor(private readonly opts: AgentOptions) {
    this.backoff = new Backoff(opts.now ?? Date.now);
    this.runtime = opts.runtime ?? new ProcessRuntime(join(opts.dataDir, 'tasks'));
    this.logTimes = new LogTimes(dirname(this.runtime.logPath('x')), opts.log ? { log: opts.log } : {});
    if (opts.network) {
      const sb: SandboxOptions = { drivers: opts.network.drivers, nsPrefix: opts.network.nsPrefix };
      if (opts.network.etcNetnsDir) sb.etcNetnsDir = opts.network.etcNetnsDir;
      this.net = { ctx: opts.network.ctx, sandboxes: new Sandboxes(sb), networks: new NodeNetworks(opts.network.drivers, opts.network.ctx, this.counters, opts.now, opts.log) };
    }
    this.session = new AgentSession({
      managerUrl: opts.managerUrl, joinToken: opts.joinToken, name: opts.name, address: opts.address,
      index: this.index, log: (m) => opts.log?.(m), dataDir: opts.dataDir, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      ...(opts.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: opts.heartbeatIntervalMs } : {}),
      ...(opts.boundPorts ? { boundPorts: () => this.foreignBoundPorts(opts.boundPorts as () => string[]) } : {}),
      onWelcome: () => { this.reported.clear(); this.runner.run(); },
      onLogs: (tasks, o, sink) => streamLogFiles(tasks.map((t) => ({ taskId: t.id, path: this.runtime.logPath(t.id) })), o, this.logTimes, sink),
      lbStats: () => lbStatsRows(this.lb, this.ingress),
    });
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-tasks', minIntervalMs: 20, maxIntervalMs: 5000, burst: 2, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; this.counters.failed('tasks'); opts.log?.(`task sync failed (will retry): ${messageOf(e)}`); },
    });
    if (this.net) {
      const dns = new NodeDns({ ...opts.dns, ...(opts.log ? { log: opts.log } : {}) });
      this.dns = dns;
      this.index.onChange((changes) => dns.apply(changes));
    }
    if (this.net && opts.lb) {
      const lb = new NodeLb(this.index, { ...opts.lb, counters: this.counters, onInvalid: (s, r) => this.noteInvalid(s, r), ...(opts.log ? { log: opts.log } : {}) });
      this.lb = lb;
      this.index.onChange((changes) => lb.changed(changes));
    }
    if (opts.ingress) {
      const ingress = new NodeIngress(this.index, () => this.nodeId, { ...opts.ingress, counters: this.counters, onInvalid: (s, r) => this.noteInvalid(s, r), ...(opts.log ? { log: opts.log } : {}) });
      this.ingress = ingress;
      this.index.onChange((changes) => ingress.changed(changes));
    }
    this.health = new HealthMonitor((id, healthy, message) => this.onHealth(id, healthy, message));
    this.index.onChange((changes) => this.onIndexChange(changes));
    this.runtime.onEvent((e) => this.onTaskEvent(e));
  }

  get nodeId(): string | undefined { return this.session.node?.id; }

  /**
   * Wakes the task reconciler only for changes that concern this node: its own tasks, the
   * services and networks they use, this node, and (for overlay peers) a task elsewhere whose
   * address or liveness moved. A task elsewhere changing only its health or message costs nothing.
   */
  private onIndexChange(changes: readonly IndexChange[]): void {
    const self = this.nodeId;
    let wake = !self;
    for (const c of changes) {
      if (wake) break;
      if (c.kind === 'tasks') {
        const b = c.before as Task | undefined;
        const a = c.after as Task | undefined;
        if (b?.nodeId === self || a?.nodeId === self) { wake = true; break; }
        if (peerView(b) !== peerView(a)) {
          for (const t of [b, a]) for (const n of Object.keys(t?.addresses ?? {})) this.net?.networks.touch(n);
          wake = true;
        }
      } else if (c.kind === 'services' && c.id) {
        if (self && this.index.tasksOf(c.id).some((t) => t.nodeId === self)) wake = true;
      } else if (c.kind === 'nodes') {
        this.net?.networks.touch(); // a node's state or address moves every overlay's peers
        wake = true;
      } else if (c.kind === 'networks') wake = true;
    }
    if (wake) this.runner.run();
  }

  /**
   * Desired state of a service could not be programmed here (dropped before any transaction):
   * its tasks on this node say so in their status message (`shoal service ps`).
   */
  private noteInvalid(serviceName: string, reason: string): void {
    const self = this.nodeId;
    if (!self) return;
    for (const t of this.index.tasksOnNode(self)) {
      if (t.serviceName !== serviceName || t.desiredState !== 'running') continue;
      const pid = this.pids.get(t.id);
      if (pid === undefined) continue;
      this.report(t, 'running', `running; ${reason}`, { pid, ...this.healthField(t.id) });
    }
  }

  /** Bound ports of the node without those this agent's own published-port proxies hold. */
  private foreignBoundPorts(scan: () => string[]): string[] {
    const own = this.ingress?.listening() ?? new Set<string>();
    return scan().filter((p) => !own.has(p));
  }

  start(): void {
    this.stopped = false;
    this.logTimes.start().catch((e: unknown) => this.opts.log?.(`log times: ${messageOf(e)} (log lines are dated when read)`));
    this.session.start();
    this.runner.start();
    this.lb?.start();
    this.ingress?.start();
    this.scheduleResync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.session.stop();
    this.logTimes.stop();
    this.health.close();
    await this.runner.stop();
    await this.resyncing;
    this.drainAbort.abort();
    await Promise.all(this.stopping.values());
    await this.lb?.stop();
    await this.ingress?.stop();
    await this.dns?.close();
    if (this.net) await closeSharedNetnsRoamer();
    await this.runtime.close();
  }

  private scheduleResync(): void {
    if (this.stopped) return;
    const every = this.opts.resyncIntervalMs ?? DEFAULT_RESYNC_MS;
    if (!(every > 0)) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncing = this.resync().finally(() => { this.resyncing = undefined; this.scheduleResync(); });
    }, every);
    this.resyncTimer.unref();
  }

  /**
   * The periodic full resync (kube-proxy's): recompute desired state from the whole index and
   * re-read the kernel instead of trusting what was programmed. Each reconciler repairs its own
   * drift (counted as `shoal_agent_repairs_total{kind}`); a failing one is counted and does not
   * stop the others. Also callable directly (tests, `SIGHUP`-style triggers).
   */
  async resync(): Promise<void> {
    const nodeId = this.nodeId;
    if (!nodeId || !this.index.synced || this.stopped) return;
    const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        this.counters.failed(name);
        this.opts.log?.(`resync: ${name} failed (will retry): ${messageOf(e)}`);
      }
    };
    const net = this.net;
    if (net) {
      await step('networks', () => net.networks.resync(this.index, nodeId));
      await step('sandboxes', () => this.resyncSandboxes(net.sandboxes, nodeId));
    }
    // Sandboxes found broken are re-made by the task sync, before the dataplanes are checked.
    await step('tasks', async () => { this.runner.run(); await this.runner.idle(); });
    if (this.lb) await step('lb', () => (this.lb as NodeLb).resync());
    if (this.ingress) await step('ingress', () => (this.ingress as NodeIngress).resync());
    this.resyncs++;
  }

  /** Sandboxes (tasks' and the ingress one) checked against the kernel; broken ones are made again. */
  private async resyncSandboxes(sandboxes: Sandboxes, nodeId: string): Promise<void> {
    const present = new Set(await listNetns());
    for (const t of this.index.tasksOnNode(nodeId)) {
      if (!sandboxes.isMade(t.id)) continue;
      const svc = this.index.service(t.serviceId);
      if (!svc) continue;
      const nets = this.netsOf(t, svc);
      const drift = await sandboxes.drift(t, nets, this.dnsConfig(nets, svc), present);
      if (drift.length === 0) continue;
      this.counters.repaired('sandbox', drift.length);
      this.opts.log?.(`task ${t.id}: sandbox drifted (${drift.join(', ')}); repairing`);
      sandboxes.invalidate(t.id);
      // A namespace deleted under a running task cannot be given back to it: restart the task
      // in a new one (its process keeps the old, unreachable namespace otherwise), whose
      // dataplane starts from scratch. Otherwise the dataplane checks its own state (lb resync).
      if (drift.includes('netns')) {
        await this.lb?.forgetSandbox(t.id);
        await this.runtime.ensureStopped(t.id);
      }
    }
    if (sandboxes.isMade(INGRESS_SANDBOX_ID)) {
      const self = this.index.node(nodeId);
      const ingressNet = self?.ingress ? this.index.network(self.ingress.network) : undefined;
      if (self?.ingress && ingressNet) {
        const owner = { id: INGRESS_SANDBOX_ID, addresses: { [ingressNet.id]: { v4: self.ingress.v4 } } };
        const drift = await sandboxes.drift(owner, [ingressNet], {}, present, INGRESS_SANDBOX_SYSCTLS);
        if (drift.length) {
          this.counters.repaired('ingress-sandbox', drift.length);
          this.opts.log?.(`ingress sandbox drifted (${drift.join(', ')}); repairing`);
          sandboxes.invalidate(INGRESS_SANDBOX_ID);
          this.ingress?.invalidateSandbox();
        }
      }
    }
  }

  private report(t: Pick<Task, 'id'>, state: Task['status']['state'], message: string, extra: { pid?: number; exitCode?: number; healthy?: boolean } = {}): void {
    const sig = `${state}|${message}|${String(extra.healthy)}`;
    if (this.reported.get(t.id) === sig) return;
    this.reported.set(t.id, sig);
    const restarts = this.restarts.get(t.id);
    this.session.reportStatus(t.id, { state, message, ...extra, ...(restarts ? { restarts } : {}) });
  }

  /** The networks of a task's sandbox: its service's, then the ingress network where it has an address. */
  private netsOf(t: Task, svc: Service | undefined): Network[] {
    const out: Network[] = [];
    for (const n of svc?.spec.networks ?? []) {
      const net = this.index.network(n.network);
      if (net) out.push(net);
    }
    for (const id of Object.keys(t.addresses)) {
      const net = this.index.network(id);
      if (net?.ingress) out.push(net);
    }
    return out;
  }

  /** The resolver of a sandbox: the first network that has a listener (not macvlan; the ingress network only when it has no other). */
  private dnsConfig(nets: Network[], svc: Service): { gateway?: string; options?: string[] } {
    const dnsNet = nets.find((n) => n.driver !== 'macvlan' && !n.ingress) ?? nets.find((n) => n.ingress);
    return { ...(dnsNet ? { gateway: dnsNet.ipam.v4.gateway } : {}), ...(svc.spec.dnsOptions ? { options: svc.spec.dnsOptions } : {}) };
  }

  private async sync(): Promise<void> {
    const nodeId = this.nodeId;
    if (!nodeId || !this.index.synced) return;
    const mine = this.index.tasksOnNode(nodeId);
    // The cluster's ingress network: tasks of services with published ports have an endpoint
    // there (after their own networks), and so does this node's ingress sandbox.
    const self = this.index.node(nodeId);
    const ingressNet = self?.ingress ? this.index.network(self.ingress.network) : undefined;
    const sboxAddr = this.net && this.ingress && ingressNet?.ingress && self?.ingress ? self.ingress.v4 : undefined;
    // A task whose restart policy ended it (complete, failed) is not started again.
    const runnable = mine.filter((t) => t.desiredState === 'running' && !TERMINAL.has(t.status.state) && this.index.service(t.serviceId));
    const wanted = new Set(runnable.map((t) => t.id));
    const net = this.net;
    // Tasks meant to stop that have not ended yet drain in the background: their networks stay.
    const ending = mine.filter((t) => t.desiredState === 'shutdown' && !TERMINAL.has(t.status.state));
    const neededNets = new Set([...runnable, ...ending].flatMap((t) => this.netsOf(t, this.index.service(t.serviceId)).map((n) => n.id)));
    if (ingressNet && sboxAddr) neededNets.add(ingressNet.id);
    if (net && !this.leftoversCleaned) {
      // Once, with the first full view: sandboxes, links and networks that nothing assigned here
      // needs are leftovers of a crash; what is still needed is kept (and adopted below).
      await net.sandboxes.cleanupLeftovers(sboxAddr ? new Set([...wanted, INGRESS_SANDBOX_ID]) : wanted);
      await cleanupLeftovers(net.ctx, neededNets);
      this.leftoversCleaned = true;
    }
    if (net) {
      // Each network on its own: one that fails is retried with back-off, the others go on.
      await net.networks.ensure([...neededNets].map((id) => this.index.network(id)).filter((n): n is Network => n !== undefined), this.index, nodeId);
      try {
        await this.dns?.ensureListeners(net.networks.list());
      } catch (e) {
        this.counters.failed('dns');
        this.opts.log?.(`dns listeners failed (will retry): ${messageOf(e)}`);
      }
      if (ingressNet && sboxAddr && this.backoff.ready(INGRESS_SANDBOX_ID) && !net.networks.failed.has(ingressNet.id)) {
        try {
          await this.ingress?.ensureSandbox(net.sandboxes, ingressNet, sboxAddr);
          this.backoff.succeed(INGRESS_SANDBOX_ID);
        } catch (e) {
          this.counters.failed('ingress');
          this.backoff.fail(INGRESS_SANDBOX_ID, messageOf(e));
          this.opts.log?.(`ingress sandbox failed (will retry): ${messageOf(e)}`);
        }
      }
    }
    // Each task on its own: one whose sandbox cannot be made reports why and retries with
    // back-off; every other task still starts.
    for (const t of runnable) {
      if (!this.backoff.ready(t.id)) continue;
      try {
        await this.startTask(t);
        this.backoff.succeed(t.id);
      } catch (e) {
        this.counters.failed('tasks');
        const n = this.backoff.fail(t.id, messageOf(e));
        if (n === 1 || n % 10 === 0) this.opts.log?.(`task ${t.id}: setup failed (attempt ${n}; retrying with back-off): ${messageOf(e)}`);
        this.report(t, 'starting', `task setup failed (attempt ${n}; retrying): ${messageOf(e)}`);
      }
    }
    const stops: Array<Promise<void>> = [];
    const stop = async (t: Task | undefined, id: string): Promise<void> => {
      this.health.forget(id);
      await this.runtime.ensureStopped(id);
      this.pids.delete(id);
      this.backoff.forget(id);
      await this.lb?.forgetSandbox(id);
      if (net) await (t ? net.sandboxes.remove(t, this.netsOf(t, this.index.service(t.serviceId))) : net.sandboxes.removeNamespace(id));
    };
    // A running task that is meant to stop first drains: every balancer gives it no new flows,
    // its established connections finish (up to the service's drain window).
    const drainThenStop = async (t: Task): Promise<void> => {
      const svc = this.index.service(t.serviceId);
      if (svc && t.status.state === 'running' && this.runtime.list().includes(t.id)) {
        const started = Date.now();
        const pid = this.pids.get(t.id) ?? t.status.pid;
        // In its own sandbox: every port the task listens on (a VIP carries all of them). Sharing
        // the agent's namespace, only the declared ports are the task's (the rest is the host's).
        const declared = new Set(svc.spec.ports.map((p) => p.target));
        if (net || declared.size > 0) {
          const how = await drainConnections(pid, net ? new Set() : declared, { timeoutMs: svc.spec.drainTimeoutMs ?? DEFAULT_DRAIN_MS, signal: this.drainAbort.signal });
          this.opts.log?.(`task ${t.id}: drained (${how}, pid ${String(pid)}) after ${Date.now() - started} ms`);
        }
      }
      await stop(t, t.id);
    };
    // Drains run in the background (up to the service's window), never holding up this sync:
    // new tasks start while old ones drain. Each task is drained and stopped once.
    for (const t of ending) {
      if (this.stopping.has(t.id)) continue;
      const done = drainThenStop(t)
        .then(() => { this.report(t, 'shutdown', 'stopped by the agent'); this.restarts.delete(t.id); })
        .catch((e: unknown) => { this.syncFailures++; this.counters.failed('stops'); this.opts.log?.(`stopping task ${t.id} failed (will retry): ${messageOf(e)}`); })
        .finally(() => { this.stopping.delete(t.id); this.runner.run(); });
      this.stopping.set(t.id, done);
    }
    // Anything else the runtime holds is no longer meant to run here (removed, moved away,
    // orphaned while this agent was down): stop it without a report. Each stop on its own.
    for (const id of this.runtime.list()) {
      if (wanted.has(id) || this.stopping.has(id)) continue;
      stops.push(stop(this.index.task(id), id).then(() => { this.restarts.delete(id); }, (e: unknown) => {
        this.counters.failed('stops');
        this.opts.log?.(`stopping task ${id} failed (will retry): ${messageOf(e)}`);
        this.scheduleRetry(500);
      }));
    }
    // Stops run side by side: each may wait out a task's grace period.
    await Promise.all(stops);
    if (net) {
      try {
        await this.dns?.ensureListeners(net.networks.list().filter((n) => neededNets.has(n.id)));
      } catch (e) {
        this.counters.failed('dns');
        this.opts.log?.(`dns listeners failed (will retry): ${messageOf(e)}`);
      }
      await net.networks.prune(neededNets);
    }
    const retry = [this.backoff.nextInMs(), net?.networks.retryInMs()].filter((x): x is number => x !== undefined);
    if (retry.length) this.scheduleRetry(Math.min(...retry));
  }

  /** Runs the task sync again in `ms` (a failed object's back-off ends). */
  private scheduleRetry(ms: number): void {
    if (this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.runner.run(); }, Math.max(10, ms));
    this.retryTimer.unref();
  }

  /** Sandbox, VIP dataplane, health check and process of one runnable task (idempotent). */
  private async startTask(t: Task): Promise<void> {
    const svc = this.index.service(t.serviceId);
    if (!svc) return;
    const net = this.net;
    const nets = this.netsOf(t, svc);
    const broken = nets.map((n) => net?.networks.failed.get(n.id)).find((m) => m !== undefined);
    if (broken) throw new Error(broken);
    // Only when the runtime takes the task on: the index may still show "assigned" after the
    // task was reported running, and a second "starting" would overwrite "running".
    const fresh = !this.runtime.list().includes(t.id);
    if (fresh) this.report(t, 'starting', 'starting');
    let netns: string | undefined;
    if (net) {
      netns = await net.sandboxes.ensure(t, nets, this.dnsConfig(nets, svc));
      // VIPs work from the task's first instruction: its dataplane is programmed before it starts.
      await this.lb?.ensureSandbox(t.id, netns, nets.map((n) => n.id));
    }
    // Restarts recorded before this agent (a restart of the agent) still count against the policy.
    if (!this.restarts.has(t.id) && t.status.restarts) this.restarts.set(t.id, t.status.restarts);
    const hc = svc.spec.healthCheck;
    if (hc && hc.type !== 'none') {
      const first = net ? nets[0] : undefined;
      this.health.ensure(t.id, first ? (t.addresses[first.id]?.v4 ?? '127.0.0.1') : '127.0.0.1', hc);
    } else this.health.forget(t.id);
    this.runtime.ensureRunning({
      taskId: t.id, command: svc.spec.command, ...runOptionsOf(svc.spec, this.restarts.get(t.id)), ...(netns ? { netns } : {}),
      env: { ...svc.spec.env, SHOAL_TASK_NAME: taskName(t), SHOAL_TASK_SLOT: String(t.slot), SHOAL_SERVICE_NAME: t.serviceName, SHOAL_TASK_ID: t.id, SHOAL_NODE_ADDRESS: this.opts.address },
    });
  }

  /** `healthy` for a report of `taskId`: absent without a health check, false until one passed. */
  private healthField(taskId: string): { healthy?: boolean } {
    if (!this.health.has(taskId)) {
      const t = this.index.task(taskId);
      const hc = t ? this.index.service(t.serviceId)?.spec.healthCheck : undefined;
      return hc && hc.type !== 'none' ? { healthy: false } : {};
    }
    return { healthy: this.health.verdict(taskId) === true };
  }

  private onHealth(taskId: string, healthy: boolean, message: string): void {
    const pid = this.pids.get(taskId);
    if (pid === undefined) return; // not running (any more): the next start reports again
    this.report({ id: taskId }, 'running', message, { pid, healthy });
  }

  private onTaskEvent(e: TaskEvent): void {
    const t = { id: e.taskId };
    switch (e.type) {
      case 'running':
        this.pids.set(e.taskId, e.pid);
        this.report(t, 'running', e.adopted ? 'running (adopted after agent restart)' : 'running', { pid: e.pid, ...this.healthField(e.taskId) });
        this.runner.run(); // (re)starts its health checks
        break;
      case 'exited':
        this.pids.delete(e.taskId);
        this.restarts.set(e.taskId, e.restarts);
        this.health.forget(e.taskId); // a restarted process is checked from scratch
        this.report(t, 'starting', `${e.message ?? `exited (${e.signal ?? `code ${e.exitCode}`})`}; restarting in ${e.restartInMs} ms`, e.exitCode !== null ? { exitCode: e.exitCode } : {}); break;
      case 'ended':
        // The restart policy ended it: reported for good; the next sync stops and cleans it up.
        this.pids.delete(e.taskId);
        this.restarts.set(e.taskId, e.restarts);
        this.health.forget(e.taskId);
        this.report(t, e.state, e.message, e.exitCode !== null ? { exitCode: e.exitCode } : {});
        break;
      case 'failed': this.report(t, 'starting', e.message); break;
      case 'stopped': break;
    }
  }
}
