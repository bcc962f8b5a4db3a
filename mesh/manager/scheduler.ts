/**
 * The scheduler: a reconciler (DESIGN.md's loop) that turns services' replicas into tasks.
 * Store events only request a sync; the bounded-frequency runner coalesces them; each sync
 * lists the objects, plans with the pure `plan()` and applies every step as its own
 * compare-and-swap transaction (a step that lost a race is simply re-planned next sync).
 * Several managers may run it on one store: CAS keeps their writes consistent.
 */
import { isShoalError, messageOf } from '../../src/errors.js';
import { newId } from '../../src/ids.js';
import { ROOT } from '../../src/model/keys.js';
import type { Network, Service, Task, UpdateStatus } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import type { Store, TxnOp, Watcher } from '../../src/store/types.js';
import { alloc, type Claim } from './alloc.js';
import { ingressNetwork, publishes } from './ingress.js';
import { listObjects, putObject, deleteObject, unchanged, getObject } from './objects.js';
import { plan, specHash, type PlanStep } from './plan.js';
import { rollbackService } from './services.js';
import { assertClaimUnchanged, claimSlot, dropStaleClaims, listSlotClaims, slotIdOf, type SlotClaim } from './slots.js';

export interface SchedulerOptions {
  historyLimit?: number;
  minIntervalMs?: number;
  onError?: (err: unknown) => void;
  /** Clock of rolling updates (delays, monitor periods); default Date.now. */
  now?: () => number;
}

export class Scheduler {
  private readonly runner: BoundedFrequencyRunner;
  private watcher: Watcher | undefined;
  /** Wakes the runner when a planned delay ends (rolling update delay or monitor period). */
  private wakeTimer: NodeJS.Timeout | undefined;
  private stopped = false;
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
    this.stopped = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
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
    const svcRev = new Map(services.map((s) => [s.obj.id, s.modRevision]));
    const steps = plan(services.map((s) => s.obj), nodes.map((n) => n.obj), tasks.map((t) => t.obj), this.opts.historyLimit ?? 5, (this.opts.now ?? Date.now)());
    const wake = Math.min(...steps.map((s) => (s.kind === 'wake' ? s.inMs : Infinity)));
    if (Number.isFinite(wake)) this.wakeIn(wake);
    let failures = 0;
    let lastErr: unknown;
    for (const step of steps) {
      try {
        if (step.kind === 'wake') continue;
        if (step.kind === 'update-status' || step.kind === 'rollback') await this.applyToService(step, svcRev.get(step.service.id) ?? 0);
        else await this.apply(step, rev, slots);
      } catch (e) {
        failures++;
        lastErr = e;
      }
    }
    await dropStaleClaims(this.store, slots, services.map((v) => v.obj)).catch((e: unknown) => { failures++; lastErr = e; });
    this.lastFailures = failures;
    if (failures > 0) throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  private wakeIn(ms: number): void {
    if (this.stopped) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => { this.wakeTimer = undefined; this.runner.run(); }, Math.max(10, Math.ceil(ms)));
    this.wakeTimer.unref();
  }

  /** A rolling update's progress, or its automatic rollback: guarded by the service's revision. */
  private async applyToService(step: Extract<PlanStep, { kind: 'update-status' | 'rollback' }>, modRevision: number): Promise<void> {
    const svc: Service = step.service;
    let status: UpdateStatus;
    if (step.kind === 'rollback') {
      try {
        await rollbackService(this.store, svc.id, { reason: step.reason, expectVersion: svc.version });
        return;
      } catch (e) {
        // Changed meanwhile: plan again. Otherwise (the previous spec's port is taken now...)
        // the update pauses and says why, instead of retrying a rollback that cannot succeed.
        if (isShoalError(e) && (e.code === 'SHOAL_ERR_VERSION_MISMATCH' || e.kind === 'NotFound')) throw e;
        status = { state: 'paused', startedAt: svc.updateStatus?.startedAt ?? svc.updatedAt, message: `${step.reason}, but the rollback failed: ${messageOf(e)}` };
      }
    } else status = step.status;
    const res = await this.store.txn({
      compare: [unchanged('services', svc.id, modRevision)],
      success: [putObject('services', svc.id, { ...svc, updateStatus: status })],
    });
    if (!res.succeeded) throw new Error(`service ${svc.spec.name} changed meanwhile; re-planning`);
  }

  private async apply(step: Exclude<PlanStep, { kind: 'update-status' | 'rollback' | 'wake' }>, rev: Map<string, number>, slots: ReadonlyMap<string, SlotClaim>): Promise<void> {
    const now = new Date().toISOString();
    if (step.kind === 'create') return this.createTask(step.service, step.slot, step.nodeId, now, slots, step.message);
    const t = step.task;
    const guard = unchanged('tasks', t.id, rev.get(t.id) ?? 0);
    let next: Task | undefined;
    let extra: TxnOp[] = [];
    switch (step.kind) {
      case 'assign':
        next = { ...t, nodeId: step.nodeId, status: { state: 'assigned', message: 'assigned to node', since: now } };
        break;
      case 'pending':
        next = { ...t, status: { state: 'pending', message: step.message, since: t.status.state === 'pending' ? t.status.since : now } };
        break;
      case 'shutdown':
        next = { ...t, desiredState: 'shutdown', status: { ...t.status, message: `shutting down: ${step.reason}` } };
        break;
      case 'end':
        next = { ...t, desiredState: 'shutdown', addressesReleased: true, status: { state: step.state, message: step.reason, since: now } };
        extra = releaseTaskAddresses(t);
        break;
      case 'release':
        // A task the agent ended for good (its restart policy) is no longer meant to run.
        next = { ...t, desiredState: 'shutdown', addressesReleased: true };
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

  private async createTask(svcIn: { id: string }, slot: number, nodeId: string, now: string, slots: ReadonlyMap<string, SlotClaim>, pendingWhy = 'no suitable node'): Promise<void> {
    const id = newId();
    // Fails the create if another scheduler claimed the slot since our listing (slots.ts). A
    // global service's tasks (slot 0) have one slot per node.
    const slotId = slotIdOf(slot, nodeId);
    const slotClaim = claimSlot(slots, svcIn.id, slotId, id);
    await alloc.commit(this.store, async () => {
      const cur = await getObject(this.store, 'services', svcIn.id);
      if (!cur) throw new Error('service removed meanwhile');
      await assertClaimUnchanged(this.store, slots, svcIn.id, slotId);
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
        status: nodeId ? { state: 'assigned', message: 'assigned to node', since: now } : { state: 'pending', message: pendingWhy, since: now },
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
