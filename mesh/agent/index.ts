/**
 * The agent: joins a manager, keeps the local index in sync, and reconciles the tasks assigned
 * to its node with the task runtime (desired running -> ensureRunning; shutdown -> ensureStopped
 * and report). Nothing is started before the first full list arrived.
 */
import { join } from 'node:path';
import { cleanupLeftovers } from '../../src/drivers/cleanup.js';
import { closeSharedNetnsRoamer } from '../../src/kernel/index.js';
import type { DriverContext, NetworkDriver } from '../../src/drivers/types.js';
import { taskName, type Network, type NetworkDriver as DriverName, type Node, type Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import { TERMINAL } from '../manager/plan.js';
import { NodeDns, type NodeDnsOptions } from './dns.js';
import { drainConnections } from './drain.js';
import { HealthMonitor } from './health.js';
import { INGRESS_SANDBOX_ID, NodeIngress, type NodeIngressOptions } from './ingress.js';
import { NodeLb, type NodeLbOptions } from './lb.js';
import { LocalIndex } from './local-index.js';
import { NodeNetworks } from './networks.js';
import { Sandboxes, type SandboxOptions } from './sandboxes.js';
import { streamLogFiles } from './logs.js';
import { ProcessRuntime, type TaskEvent, type TaskRuntime } from './process-runtime.js';
import { AgentSession } from './session.js';

/** How long a stopping task may keep established connections when its service does not say. */
export const DEFAULT_DRAIN_MS = 10_000;

export interface AgentOptions {
  managerUrl: string;
  joinToken: string;
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
  log?: (msg: string) => void;
}

export class Agent {
  readonly index = new LocalIndex();
  readonly session: AgentSession;
  readonly runtime: TaskRuntime;
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
  /** Tasks being drained and stopped in the background, by id. */
  private readonly stopping = new Map<string, Promise<void>>();
  /** Ends drains early when the agent stops. */
  private readonly drainAbort = new AbortController();

  constructor(private readonly opts: AgentOptions) {
    this.runtime = opts.runtime ?? new ProcessRuntime(join(opts.dataDir, 'tasks'));
    if (opts.network) {
      const sb: SandboxOptions = { drivers: opts.network.drivers, nsPrefix: opts.network.nsPrefix };
      if (opts.network.etcNetnsDir) sb.etcNetnsDir = opts.network.etcNetnsDir;
      this.net = { ctx: opts.network.ctx, sandboxes: new Sandboxes(sb), networks: new NodeNetworks(opts.network.drivers) };
    }
    this.session = new AgentSession({
      managerUrl: opts.managerUrl, joinToken: opts.joinToken, name: opts.name, address: opts.address,
      index: this.index, log: (m) => opts.log?.(m),
      ...(opts.boundPorts ? { boundPorts: () => this.foreignBoundPorts(opts.boundPorts as () => string[]) } : {}),
      onWelcome: () => { this.reported.clear(); this.runner.run(); },
      onLogs: (tasks, follow, send, end) => streamLogFiles(tasks.map((t) => ({ taskId: t.id, path: this.runtime.logPath(t.id) })), follow, send, end),
    });
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-tasks', minIntervalMs: 20, maxIntervalMs: 5000, burst: 2, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; opts.log?.(`task sync failed (will retry): ${String(e)}`); },
    });
    if (this.net) {
      const dns = new NodeDns({ ...opts.dns, ...(opts.log ? { log: opts.log } : {}) });
      this.dns = dns;
      this.index.onChange((changes) => dns.apply(changes));
    }
    if (this.net && opts.lb) {
      const lb = new NodeLb(this.index, { ...opts.lb, ...(opts.log ? { log: opts.log } : {}) });
      this.lb = lb;
      this.index.onChange((changes) => lb.changed(changes.length));
    }
    if (opts.ingress) {
      const ingress = new NodeIngress(this.index, () => this.nodeId, { ...opts.ingress, ...(opts.log ? { log: opts.log } : {}) });
      this.ingress = ingress;
      this.index.onChange(() => ingress.changed());
    }
    this.health = new HealthMonitor((id, healthy, message) => this.onHealth(id, healthy, message));
    this.index.onChange(() => this.runner.run());
    this.runtime.onEvent((e) => this.onTaskEvent(e));
  }

  get nodeId(): string | undefined { return this.session.node?.id; }

  /** Bound ports of the node without those this agent's own published-port proxies hold. */
  private foreignBoundPorts(scan: () => string[]): string[] {
    const own = this.ingress?.listening() ?? new Set<string>();
    return scan().filter((p) => !own.has(p));
  }

  start(): void {
    this.session.start();
    this.runner.start();
    this.lb?.start();
    this.ingress?.start();
  }

  async stop(): Promise<void> {
    this.session.stop();
    this.health.close();
    await this.runner.stop();
    this.drainAbort.abort();
    await Promise.all(this.stopping.values());
    await this.lb?.stop();
    await this.ingress?.stop();
    await this.dns?.close();
    if (this.net) await closeSharedNetnsRoamer();
    await this.runtime.close();
  }

  private report(t: Pick<Task, 'id'>, state: Task['status']['state'], message: string, extra: { pid?: number; exitCode?: number; healthy?: boolean } = {}): void {
    const sig = `${state}|${message}|${String(extra.healthy)}`;
    if (this.reported.get(t.id) === sig) return;
    this.reported.set(t.id, sig);
    this.session.reportStatus(t.id, { state, message, ...extra });
  }

  private async sync(): Promise<void> {
    const nodeId = this.nodeId;
    if (!nodeId || !this.index.synced) return;
    const all = this.index.tasks();
    const mine = all.filter((t) => t.nodeId === nodeId);
    const services = new Map(this.index.services().map((s) => [s.id, s]));
    const networks = new Map(this.index.networks().map((n) => [n.id, n]));
    // The cluster's ingress network: tasks of services with published ports have an endpoint
    // there (after their own networks), and so does this node's ingress sandbox.
    const ingressNet = [...networks.values()].find((n) => n.ingress);
    const self = this.index.get<Node>(`/shoal/nodes/${nodeId}`);
    const sboxAddr = this.net && this.ingress && ingressNet && self?.ingress?.network === ingressNet.id ? self.ingress.v4 : undefined;
    const netsOf = (t: Task): Network[] => [
      ...(services.get(t.serviceId)?.spec.networks ?? []).map((n) => networks.get(n.network)).filter((n): n is Network => n !== undefined),
      ...(ingressNet && t.addresses[ingressNet.id] ? [ingressNet] : []),
    ];
    const runnable = mine.filter((t) => t.desiredState === 'running' && t.status.state !== 'orphaned' && services.has(t.serviceId));
    const wanted = new Set(runnable.map((t) => t.id));
    const net = this.net;
    // Tasks meant to stop that have not ended yet drain in the background: their networks stay.
    const ending = mine.filter((t) => t.desiredState === 'shutdown' && !TERMINAL.has(t.status.state));
    const neededNets = new Set([...runnable, ...ending].flatMap((t) => netsOf(t).map((n) => n.id)));
    if (ingressNet && sboxAddr) neededNets.add(ingressNet.id);
    if (net && !this.leftoversCleaned) {
      // Once, with the first full view: sandboxes, links and networks that nothing assigned here
      // needs are leftovers of a crash; what is still needed is kept (and adopted below).
      await net.sandboxes.cleanupLeftovers(sboxAddr ? new Set([...wanted, INGRESS_SANDBOX_ID]) : wanted);
      await cleanupLeftovers(net.ctx, neededNets);
      this.leftoversCleaned = true;
    }
    if (net) {
      await net.networks.ensure([...neededNets].map((id) => networks.get(id) as Network), all, new Map(this.index.nodes().map((n) => [n.id, n])), nodeId);
      await this.dns?.ensureListeners(net.networks.list());
      if (ingressNet && sboxAddr) await this.ingress?.ensureSandbox(net.sandboxes, ingressNet, sboxAddr);
    }
    for (const t of runnable) {
      const svc = services.get(t.serviceId);
      if (!svc) continue;
      // Only when the runtime takes the task on: the index may still show "assigned" after the
      // task was reported running, and a second "starting" would overwrite "running".
      const fresh = !this.runtime.list().includes(t.id);
      if (fresh) this.report(t, 'starting', 'starting');
      let command = svc.spec.command;
      if (net) {
        const nets = netsOf(t);
        // The resolver is reached on the first network that has a listener (not macvlan; the
        // ingress network only when the task has no other).
        const dnsNet = nets.find((n) => n.driver !== 'macvlan' && !n.ingress) ?? nets.find((n) => n.ingress);
        const ns = await net.sandboxes.ensure(t, nets, { ...(dnsNet ? { gateway: dnsNet.ipam.v4.gateway } : {}), ...(svc.spec.dnsOptions ? { options: svc.spec.dnsOptions } : {}) });
        // VIPs work from the task's first instruction: its dataplane is programmed before it starts.
        await this.lb?.ensureSandbox(t.id, ns, nets.map((n) => n.id));
        command = ['ip', 'netns', 'exec', ns, ...command];
      }
      const hc = svc.spec.healthCheck;
      if (hc && hc.type !== 'none') {
        const first = net ? netsOf(t)[0] : undefined;
        this.health.ensure(t.id, first ? (t.addresses[first.id]?.v4 ?? '127.0.0.1') : '127.0.0.1', hc);
      } else this.health.forget(t.id);
      this.runtime.ensureRunning({
        taskId: t.id, command,
        env: { ...svc.spec.env, SHOAL_TASK_NAME: taskName(t), SHOAL_TASK_SLOT: String(t.slot), SHOAL_SERVICE_NAME: t.serviceName, SHOAL_TASK_ID: t.id, SHOAL_NODE_ADDRESS: this.opts.address },
      });
    }
    const stops: Array<Promise<void>> = [];
    const stop = async (t: Task | undefined, id: string): Promise<void> => {
      this.health.forget(id);
      await this.runtime.ensureStopped(id);
      this.pids.delete(id);
      await this.lb?.forgetSandbox(id);
      if (net) await (t ? net.sandboxes.remove(t, netsOf(t)) : net.sandboxes.removeNamespace(id));
    };
    // A running task that is meant to stop first drains: every balancer gives it no new flows,
    // its established connections finish (up to the service's drain window).
    const drainThenStop = async (t: Task): Promise<void> => {
      const svc = services.get(t.serviceId);
      if (svc && t.status.state === 'running' && this.runtime.list().includes(t.id)) {
        const ports = new Set(svc.spec.ports.map((p) => p.target));
        const started = Date.now();
        const pid = this.pids.get(t.id) ?? t.status.pid;
        const how = await drainConnections(pid, ports, { timeoutMs: svc.spec.drainTimeoutMs ?? DEFAULT_DRAIN_MS, signal: this.drainAbort.signal });
        this.opts.log?.(`task ${t.id}: drained (${how}, pid ${String(pid)}) after ${Date.now() - started} ms`);
      }
      await stop(t, t.id);
    };
    // Drains run in the background (up to the service's window), never holding up this sync:
    // new tasks start while old ones drain. Each task is drained and stopped once.
    for (const t of ending) {
      if (this.stopping.has(t.id)) continue;
      const done = drainThenStop(t)
        .then(() => this.report(t, 'shutdown', 'stopped by the agent'))
        .catch((e: unknown) => { this.syncFailures++; this.opts.log?.(`stopping task ${t.id} failed (will retry): ${String(e)}`); })
        .finally(() => { this.stopping.delete(t.id); this.runner.run(); });
      this.stopping.set(t.id, done);
    }
    // Anything else the runtime holds is no longer meant to run here (removed, moved away,
    // orphaned while this agent was down): stop it without a report.
    const byId = new Map(all.map((t) => [t.id, t]));
    for (const id of this.runtime.list()) {
      if (!wanted.has(id) && !this.stopping.has(id)) stops.push(stop(byId.get(id), id));
    }
    // Stops run side by side: each may wait out a task's grace period.
    await Promise.all(stops);
    if (net) {
      await this.dns?.ensureListeners(net.networks.list().filter((n) => neededNets.has(n.id)));
      await net.networks.prune(neededNets);
    }
  }

  /** `healthy` for a report of `taskId`: absent without a health check, false until one passed. */
  private healthField(taskId: string): { healthy?: boolean } {
    if (!this.health.has(taskId)) {
      const t = this.index.tasks().find((x) => x.id === taskId);
      const hc = t ? this.index.services().find((s) => s.id === t.serviceId)?.spec.healthCheck : undefined;
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
        this.health.forget(e.taskId); // a restarted process is checked from scratch
        this.report(t, 'starting', `exited (${e.signal ?? `code ${e.exitCode}`}); restarting in ${e.restartInMs} ms`, e.exitCode !== null ? { exitCode: e.exitCode } : {}); break;
      case 'failed': this.report(t, 'starting', e.message); break;
      case 'stopped': break;
    }
  }
}
