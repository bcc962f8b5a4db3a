/**
 * VIP load balancing on one node, Docker-before-19.03 style: every task sandbox holds its own
 * dataplane (an nftables table or IPVS in the sandbox's netns) with the VIPs of the networks
 * the task is attached to. A connection to a VIP is balanced in the caller's own netns, so:
 * backends on this node and on others are reached the same way (straight over the network),
 * the backend sees the caller's own address (no SNAT, unlike Docker 19.03+, moby#39665), and
 * nothing hairpins through a shared LB namespace.
 *
 * Cost of one endpoint change: one `apply` per local sandbox on that service's networks,
 * naming only that service (proportional to what it touches, not to the number of services).
 * Sandboxes with the same networks share one computed desired state per sync.
 *
 * Only the agent calls this: `ensureSandbox` before a task's process starts (its VIPs work
 * from its first instruction), `forgetSandbox` when the sandbox is deleted, and `changed()`
 * from index changes.
 */
import type { Registry } from 'prom-client';
import { vipServicesFor, tasksByService } from '../../ingress/desired.js';
import { createLbMetrics, noopLbMetrics, type LbMetrics } from '../../ingress/metrics.js';
import { Proxier } from '../../ingress/proxier.js';
import type { LbBackendStats, LbKind, LoadBalancer, VirtualService } from '../../ingress/types.js';
import type { Node } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import type { LocalIndex } from './local-index.js';

export interface NodeLbOptions {
  kind: LbKind;
  /** A dataplane acting inside the sandbox netns `netns`. */
  make(netns: string): LoadBalancer;
  metricsRegistry?: Registry;
  log?: (msg: string) => void;
}

interface SandboxLb { netns: string; networks: string[]; proxier: Proxier }

export class NodeLb {
  private readonly sandboxes = new Map<string, SandboxLb>();
  private readonly runner: BoundedFrequencyRunner;
  private readonly metrics: LbMetrics;
  private pendingSince: number | undefined;
  private pendingChanges = 0;
  private summary: Array<{ service: string; serving: number; total: number }> = [];
  syncFailures = 0;

  constructor(private readonly index: LocalIndex, private readonly opts: NodeLbOptions) {
    this.metrics = opts.metricsRegistry
      ? createLbMetrics(opts.metricsRegistry, opts.kind, {
        pending: () => this.pendingChanges,
        backends: () => this.summary,
        stats: () => this.stats(),
      })
      : noopLbMetrics;
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-lb', minIntervalMs: 10, maxIntervalMs: 30_000, burst: 4, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; this.metrics.syncFailed(); opts.log?.(`load-balancer sync failed (will retry): ${String(e)}`); },
      onSuccess: (ms) => this.metrics.syncDone(ms / 1000),
    });
  }

  get kind(): LbKind { return this.opts.kind; }

  start(): void { this.runner.start(); }

  /** Cluster state changed: program the difference soon. */
  changed(count = 1): void {
    this.pendingSince ??= Date.now();
    this.pendingChanges += count;
    this.runner.run();
  }

  /** The sandbox of `taskId` on `networks` gets its dataplane, programmed now (idempotent). */
  async ensureSandbox(taskId: string, netns: string, networks: string[]): Promise<void> {
    let sb = this.sandboxes.get(taskId);
    if (sb && sb.netns === netns && sb.networks.join() === networks.join()) return;
    if (sb) await sb.proxier.close();
    sb = { netns, networks, proxier: new Proxier(this.opts.make(netns)) };
    this.sandboxes.set(taskId, sb);
    try {
      await sb.proxier.sync(this.desiredFor([networks]).get(networks.join()) ?? [], true);
    } catch (e) {
      this.sandboxes.delete(taskId);
      throw e;
    }
  }

  /** The sandbox is gone (its netns took the dataplane's state with it). */
  async forgetSandbox(taskId: string): Promise<void> {
    const sb = this.sandboxes.get(taskId);
    if (!sb) return;
    this.sandboxes.delete(taskId);
    await sb.proxier.close().catch(() => undefined);
  }

  has(taskId: string): boolean { return this.sandboxes.has(taskId); }

  /** What one sandbox's dataplane holds (tests, debugging). */
  appliedIn(taskId: string): ReadonlyMap<string, VirtualService> | undefined {
    return this.sandboxes.get(taskId)?.proxier.lb.applied();
  }

  async stop(): Promise<void> {
    await this.runner.stop();
    for (const sb of this.sandboxes.values()) await sb.proxier.close().catch(() => undefined);
    this.sandboxes.clear();
  }

  /** Desired virtual services per distinct network list. */
  private desiredFor(networkLists: string[][]): Map<string, VirtualService[]> {
    const services = this.index.services();
    const byService = tasksByService(this.index.tasks());
    const nodes = new Map(this.index.nodes().map((n): [string, Node] => [n.id, n]));
    const out = new Map<string, VirtualService[]>();
    for (const nets of networkLists) {
      const k = nets.join();
      if (!out.has(k)) out.set(k, vipServicesFor(nets, services, byService, nodes));
    }
    return out;
  }

  private async sync(): Promise<void> {
    if (!this.index.synced) return; // nothing is programmed before the first full list
    const since = this.pendingSince;
    const seen = this.pendingChanges;
    const desired = this.desiredFor([...this.sandboxes.values()].map((s) => s.networks));
    const failures: unknown[] = [];
    await Promise.all([...this.sandboxes.values()].map(async (sb) => {
      try {
        await sb.proxier.sync(desired.get(sb.networks.join()) ?? []);
      } catch (e) {
        failures.push(e);
      }
    }));
    this.summary = summarize(desired);
    if (failures.length) throw failures[0];
    this.pendingChanges -= seen;
    if (this.pendingChanges === 0) this.pendingSince = undefined;
    if (since !== undefined && seen > 0) this.metrics.programmed((Date.now() - since) / 1000);
  }

  private async stats(): Promise<LbBackendStats[]> {
    const all = await Promise.all([...this.sandboxes.values()].map((sb) => sb.proxier.lb.stats().catch(() => [])));
    return all.flat();
  }
}

function summarize(desired: Map<string, VirtualService[]>): Array<{ service: string; serving: number; total: number }> {
  const out = new Map<string, { service: string; serving: number; total: number }>();
  for (const list of desired.values()) {
    for (const vs of list) {
      if (out.has(vs.service)) continue;
      out.set(vs.service, { service: vs.service, serving: vs.backends.filter((b) => b.weight > 0).length, total: vs.backends.length });
    }
  }
  return [...out.values()];
}
