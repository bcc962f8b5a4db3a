/**
 * The scheduler: a reconciler (DESIGN.md's loop) that turns services' replicas into tasks.
 * Store events only request a sync; the bounded-frequency runner coalesces them; each sync
 * lists the objects, plans with the pure `plan()` and applies every step as its own
 * compare-and-swap transaction (a step that lost a race is simply re-planned next sync).
 * Several managers may run it on one store: CAS keeps their writes consistent.
 */
import { newId } from '../../src/ids.js';
import { ROOT } from '../../src/model/keys.js';
import type { Network, Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import type { Store, TxnOp, Watcher } from '../../src/store/types.js';
import { alloc, type Claim } from './alloc.js';
import { ingressNetwork, publishes } from './ingress.js';
import { listObjects, putObject, deleteObject, unchanged, getObject } from './objects.js';
import { plan, specHash, type PlanStep } from './plan.js';
import { assertClaimUnchanged, claimSlot, dropStaleClaims, listSlotClaims, type SlotClaim } from './slots.js';

export interface SchedulerOptions {
  historyLimit?: number;
  minIntervalMs?: number;
  onError?: (err: unknown) => void;
}

export class Scheduler {
  private readonly runner: BoundedFrequencyRunner;
  private watcher: Watcher | undefined;
  /** Steps that failed in the last sync (a lost race or an allocation failure), for metrics/tests. */
  lastFailures = 0;

  constructor(private readonly store: Store, private readonly opts: SchedulerOptions = {}) {
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'scheduler', minIntervalMs: opts.minIntervalMs ?? 20, maxIntervalMs: 10_000, burst: 2, retryAfterMs: 500,
      onError: (e) => opts.onError?.(e),
    });
  }

  start(): void {
    this.watcher = this.store.watch(ROOT, (b) => {
      if (b.events.some((e) => /^\/shoal\/(services|nodes|tasks)\//.test(e.kv.key))) this.runner.run();
    }, { onError: (e) => this.opts.onError?.(e) });
    this.runner.start();
  }

  async stop(): Promise<void> {
    this.watcher?.cancel();
    await this.runner.stop();
  }

  /** Resolves once no sync is running or pending (tests). */
  idle(): Promise<void> { return this.runner.idle(); }

  /** One reconcile pass. Throws when any step failed, so the runner retries and counts it. */
  async sync(): Promise<void> {
    const [services, nodes, tasks, slots] = await Promise.all([
      listObjects(this.store, 'services'), listObjects(this.store, 'nodes'), listObjects(this.store, 'tasks'), listSlotClaims(this.store),
    ]);
    const rev = new Map(tasks.map((t) => [t.obj.id, t.modRevision]));
    const steps = plan(services.map((s) => s.obj), nodes.map((n) => n.obj), tasks.map((t) => t.obj), this.opts.historyLimit);
    let failures = 0;
    let lastErr: unknown;
    for (const step of steps) {
      try {
        await this.apply(step, rev, slots);
      } catch (e) {
        failures++;
        lastErr = e;
      }
    }
    await dropStaleClaims(this.store, slots, services.map((v) => v.obj)).catch((e: unknown) => { failures++; lastErr = e; });
    this.lastFailures = failures;
    if (failures > 0) throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  private async apply(step: PlanStep, rev: Map<string, number>, slots: ReadonlyMap<string, SlotClaim>): Promise<void> {
    const now = new Date().toISOString();
    if (step.kind === 'create') return this.createTask(step.service, step.slot, step.nodeId, now, slots);
    const t = step.task;
    const guard = unchanged('tasks', t.id, rev.get(t.id) ?? 0);
    let next: Task | undefined;
    let extra: TxnOp[] = [];
    switch (step.kind) {
      case 'assign':
        next = { ...t, nodeId: step.nodeId, status: { state: 'assigned', message: 'assigned to node', since: now } };
        break;
      case 'shutdown':
        next = { ...t, desiredState: 'shutdown', status: { ...t.status, message: `shutting down: ${step.reason}` } };
        break;
      case 'end':
        next = { ...t, desiredState: 'shutdown', addressesReleased: true, status: { state: step.state, message: step.reason, since: now } };
        extra = releaseTaskAddresses(t);
        break;
      case 'release':
        next = { ...t, addressesReleased: true };
        extra = releaseTaskAddresses(t);
        break;
      case 'delete': {
        await this.store.txn({ compare: [guard], success: [deleteObject('tasks', t.id)] });
        return;
      }
    }
    const res = await this.store.txn({ compare: [guard], success: [...extra, putObject('tasks', t.id, next)] });
    if (!res.succeeded) throw new Error(`task ${t.id} changed meanwhile; re-planning`);
  }

  private async createTask(svcIn: { id: string }, slot: number, nodeId: string, now: string, slots: ReadonlyMap<string, SlotClaim>): Promise<void> {
    const id = newId();
    // Fails the create if another scheduler claimed the slot since our listing (slots.ts).
    const slotClaim = claimSlot(slots, svcIn.id, slot, id);
    await alloc.commit(this.store, async () => {
      const cur = await getObject(this.store, 'services', svcIn.id);
      if (!cur) throw new Error('service removed meanwhile');
      await assertClaimUnchanged(this.store, slots, svcIn.id, slot);
      const svc = cur.obj;
      const claims: Array<Claim<string>> = [];
      const addresses: Task['addresses'] = {};
      const nets: Network[] = [];
      for (const n of svc.spec.networks) {
        const net = await getObject(this.store, 'networks', n.network);
        if (!net) throw new Error(`network ${n.network} of service ${svc.spec.name} is gone`);
        nets.push(net.obj);
      }
      // A service with published ports: its tasks are reached by every node's ingress sandbox.
      const ingress = publishes(svc) ? await ingressNetwork(this.store) : undefined;
      if (ingress) nets.push(ingress);
      for (const net of nets) {
        const v4 = await alloc.address(this.store, { networkId: net.id, subnet: net.ipam.v4.subnet, gateway: net.ipam.v4.gateway, owner: `task:${id}`, networkName: net.name });
        claims.push(v4);
        addresses[net.id] = { v4: v4.value };
        if (net.ipam.v6) {
          const v6 = await alloc.address(this.store, { networkId: net.id, subnet: net.ipam.v6.subnet, gateway: net.ipam.v6.gateway, owner: `task:${id}`, networkName: net.name });
          claims.push(v6);
          addresses[net.id] = { v4: v4.value, v6: v6.value };
        }
      }
      const task: Task = {
        id, serviceId: svc.id, serviceName: svc.spec.name, slot, nodeId, desiredState: 'running',
        status: nodeId ? { state: 'assigned', message: 'assigned to node', since: now } : { state: 'new', message: 'pending: no suitable node (no ready, active node)', since: now },
        addresses, serviceVersion: svc.version, specHash: specHash(svc), createdAt: now,
      };
      return {
        compares: [unchanged('services', svc.id, cur.modRevision), ...slotClaim.compares, ...claims.flatMap((c) => c.compares)],
        success: [...claims.flatMap((c) => c.ops), ...slotClaim.ops, putObject('tasks', id, task)],
      };
    });
  }
}

function releaseTaskAddresses(t: Task): TxnOp[] {
  if (t.addressesReleased) return [];
  return Object.entries(t.addresses).flatMap(([net, a]) => [
    ...alloc.releaseAddress(net, a.v4),
    ...(a.v6 ? alloc.releaseAddress(net, a.v6) : []),
  ]);
}
