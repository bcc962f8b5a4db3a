/**
 * The scheduler's pure planning step: cluster objects (and the time) in, a list of intended
 * changes out. No I/O here, so every placement and lifecycle rule is unit-tested with plain objects.
 *
 * Rules (Docker swarm's, simplified):
 * - a replicated service wants tasks in slots 1..replicas, each on an eligible node (ready,
 *   active, satisfying the service's constraints: placement.ts), spread: the node with the
 *   fewest tasks of that service, then the fewest tasks overall, then by name; with no eligible
 *   node a task is created `pending`, its message saying why (Docker's "no suitable node ...");
 * - a global service wants one task on every eligible node (its slot is 0; the node names it);
 *   a node that joins gets one, a node that leaves, drains or stops satisfying the constraints
 *   loses it; a paused node keeps what it runs;
 * - a task on a node that is down or gone becomes `orphaned` and its slot is filled elsewhere;
 * - a task on a draining node or one that no longer satisfies the constraints, in a slot above
 *   `replicas`, or of a removed service is asked to shut down (the agent stops it and reports
 *   `shutdown`); tasks running an outdated spec are replaced by the rolling update
 *   (rolling-update.ts);
 * - a slot whose latest task ended `complete` or `failed` under the current spec stays so (the
 *   agent's restart policy decided that the task is done); a spec change refills it;
 * - a task that ended for good gives its addresses back; at most `historyLimit` ended tasks are
 *   kept per slot for `service ps`.
 */
import { createHash } from 'node:crypto';
import { modeOf, updateConfigOf } from '../../src/model/service-defaults.js';
import type { Node, Service, Task, TaskState, UpdateStatus } from '../../src/model/types.js';
import { constraintsOf, eligibleNodes, pendingMessage, satisfies, type Constraint } from './placement.js';
import { planUpdate, type SlotView } from './rolling-update.js';

export const TERMINAL: ReadonlySet<TaskState> = new Set(['complete', 'failed', 'shutdown', 'orphaned']);

export type PlanStep =
  /** Create a task for `slot` (0 for a global service) on `nodeId` ('' when no node is eligible: pending, with `message`). */
  | { kind: 'create'; service: Service; slot: number; nodeId: string; message?: string }
  /** Give a pending task a node. */
  | { kind: 'assign'; task: Task; nodeId: string }
  /** A pending task's reason changed. */
  | { kind: 'pending'; task: Task; message: string }
  /** Ask the agent to stop the task. */
  | { kind: 'shutdown'; task: Task; reason: string }
  /** Mark a task whose node is down or gone, or that never started, as ended now. */
  | { kind: 'end'; task: Task; state: TaskState; reason: string }
  /** Release the addresses of an ended task. */
  | { kind: 'release'; task: Task }
  /** Delete an ended task from history. */
  | { kind: 'delete'; task: Task }
  /** Record the progress of the service's rolling update. */
  | { kind: 'update-status'; service: Service; status: UpdateStatus }
  /** Roll the service back to its previous spec (the update's failure action). */
  | { kind: 'rollback'; service: Service; reason: string }
  /** Plan again in this many milliseconds (an update delay or monitor period ends). */
  | { kind: 'wake'; inMs: number };

/**
 * Hash of the spec fields a running task depends on: a task with another hash is replaced.
 * Not replicas, labels, published ports, constraints (the constraint check moves only the tasks
 * that must move), update/rollback configs, mode. Optional fields count only when set, so
 * services keep the hash they had before a field existed.
 */
export function specHash(s: Service): string {
  const sp = s.spec;
  const { command, env, networks, healthCheck, ports, endpointMode } = sp;
  const optional = {
    dnsOptions: sp.dnsOptions, restartPolicy: sp.restartPolicy, stopGracePeriodMs: sp.stopGracePeriodMs,
    resources: sp.resources, hostname: sp.hostname, workdir: sp.workdir, user: sp.user, forceUpdate: sp.forceUpdate,
  };
  const set = Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== undefined));
  const fields = { command, env, networks, healthCheck, targets: ports.map((p) => p.target), endpointMode, ...set };
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex').slice(0, 16);
}

const isLive = (t: Task): boolean => t.desiredState === 'running' && !TERMINAL.has(t.status.state);
/** A slot's identity: its number (replicated) or its node (global). */
const slotKey = (t: Task): string => (t.slot === 0 ? `node:${t.nodeId}` : String(t.slot));
const ms = (iso: string): number => Date.parse(iso);

export function plan(services: Service[], nodes: Node[], tasks: Task[], historyLimit = 5, now = Date.now()): PlanStep[] {
  const steps: PlanStep[] = [];
  const nodeById = new Map(nodes.map((n) => [n.id, n]));
  const serviceById = new Map(services.map((s) => [s.id, s]));
  const constraints = new Map(services.map((s) => [s.id, constraintsOf(s.spec)]));
  const load = new Map<string, number>();
  for (const t of tasks) if (isLive(t) && t.nodeId) load.set(t.nodeId, (load.get(t.nodeId) ?? 0) + 1);

  const byService = new Map<string, Task[]>();
  for (const t of tasks) {
    const list = byService.get(t.serviceId) ?? [];
    list.push(t);
    byService.set(t.serviceId, list);
  }

  // 1. Lifecycle of existing tasks.
  const ending = new Set<string>();
  for (const t of tasks) {
    const svc = serviceById.get(t.serviceId);
    const node = t.nodeId ? nodeById.get(t.nodeId) : undefined;
    if (TERMINAL.has(t.status.state)) {
      if (!t.addressesReleased) steps.push({ kind: 'release', task: t });
      continue;
    }
    const neverStarted = t.status.state === 'new' || t.status.state === 'pending' || (t.status.state === 'assigned' && !node);
    if (t.nodeId && (!node || node.state === 'down')) {
      steps.push({ kind: 'end', task: t, state: 'orphaned', reason: node ? `node ${node.name} is down` : 'node was removed' });
      ending.add(t.id);
      continue;
    }
    if (t.desiredState === 'shutdown' && neverStarted) {
      steps.push({ kind: 'end', task: t, state: 'shutdown', reason: 'removed before it started' });
      ending.add(t.id);
      continue;
    }
    if (t.desiredState !== 'running') continue;
    const cs = svc ? constraints.get(svc.id) : undefined;
    const why = !svc ? 'service removed'
      : modeOf(svc.spec) === 'replicated' && t.slot > svc.spec.replicas ? 'scaled down'
      : node && node.availability === 'drain' ? `node ${node.name} is draining`
      : node && cs !== undefined && (cs === 'invalid' || !satisfies(node, cs)) ? `node ${node.name} no longer satisfies the service's constraints`
      : undefined;
    if (why) {
      steps.push({ kind: 'shutdown', task: t, reason: why });
      ending.add(t.id);
    }
  }

  // 2. Each service's slots: fill, place pending tasks, roll updates.
  for (const svc of [...services].sort((a, b) => a.spec.name.localeCompare(b.spec.name))) {
    planService(svc, byService.get(svc.id) ?? [], nodes, nodeById, constraints.get(svc.id) ?? [], ending, load, now, steps);
  }

  // 3. History: ended, released tasks beyond the limit per slot (or of removed services) go.
  const ended = new Map<string, Task[]>();
  for (const t of tasks) {
    if (!TERMINAL.has(t.status.state) || !t.addressesReleased) continue;
    if (!serviceById.has(t.serviceId)) { steps.push({ kind: 'delete', task: t }); continue; }
    const k = `${t.serviceId}/${slotKey(t)}`;
    const list = ended.get(k) ?? [];
    list.push(t);
    ended.set(k, list);
  }
  for (const list of ended.values()) {
    list.sort((a, b) => b.status.since.localeCompare(a.status.since));
    for (const t of list.slice(historyLimit)) steps.push({ kind: 'delete', task: t });
  }
  return steps;
}

interface Slot extends SlotView {
  /** Slot number (0 for global). */
  slot: number;
  /** The node of a global service's slot. */
  nodeId?: string;
  /** Every task of the slot (history included). */
  all: Task[];
}

function planService(
  svc: Service, mine: Task[], nodes: Node[], nodeById: Map<string, Node>, cs: Constraint[] | 'invalid',
  ending: Set<string>, load: Map<string, number>, now: number, steps: PlanStep[],
): void {
  const hash = specHash(svc);
  const global = modeOf(svc.spec) === 'global';
  const elig = eligibleNodes(nodes, cs);
  const order = updateConfigOf(svc.spec).order;
  const live = (t: Task): boolean => isLive(t) && !ending.has(t.id);

  // Spread: the node with the fewest of this service's tasks, then the fewest overall, then by name.
  const serviceLoad = new Map<string, number>();
  for (const t of mine) if (live(t) && t.nodeId) serviceLoad.set(t.nodeId, (serviceLoad.get(t.nodeId) ?? 0) + 1);
  const pick = (): string => {
    let best: Node | undefined;
    for (const n of elig.eligible) {
      if (!best) { best = n; continue; }
      const a = serviceLoad.get(n.id) ?? 0, b = serviceLoad.get(best.id) ?? 0;
      const la = load.get(n.id) ?? 0, lb = load.get(best.id) ?? 0;
      if (a < b || (a === b && (la < lb || (la === lb && n.name < best.name)))) best = n;
    }
    if (!best) return '';
    serviceLoad.set(best.id, (serviceLoad.get(best.id) ?? 0) + 1);
    load.set(best.id, (load.get(best.id) ?? 0) + 1);
    return best.id;
  };
  const create = (slot: number, nodeId: string): void => {
    if (nodeId) steps.push({ kind: 'create', service: svc, slot, nodeId });
    else steps.push({ kind: 'create', service: svc, slot, nodeId: '', message: pendingMessage(elig) });
  };

  // The slots the service wants: 1..replicas, or every eligible node plus the (paused) nodes
  // that keep a live task.
  const slots = new Map<string, Slot>();
  const slotFor = (key: string, slot: number, nodeId?: string): Slot => {
    let s = slots.get(key);
    if (!s) {
      s = { key, slot, fresh: [], outdated: [], holding: false, all: [], ...(nodeId ? { nodeId } : {}) };
      slots.set(key, s);
    }
    return s;
  };
  if (global) {
    for (const n of [...elig.eligible].sort((a, b) => a.name.localeCompare(b.name))) slotFor(`node:${n.id}`, 0, n.id);
    for (const t of mine) if (live(t) && t.slot === 0) slotFor(slotKey(t), 0, t.nodeId);
  } else {
    for (let i = 1; i <= svc.spec.replicas; i++) slotFor(String(i), i);
  }
  for (const t of mine) {
    const s = slots.get(slotKey(t));
    if (!s) continue;
    s.all.push(t);
    if (live(t)) (t.specHash === hash ? s.fresh : s.outdated).push(t);
  }

  for (const s of slots.values()) {
    // An outdated task that never got a node has nothing to keep serving: replaced at once.
    for (const t of s.outdated.filter((x) => x.nodeId === '')) {
      steps.push({ kind: 'shutdown', task: t, reason: 'service updated' });
      ending.add(t.id);
    }
    s.outdated = s.outdated.filter((x) => x.nodeId !== '');
    // A stop-first replacement waits for the old task to end, unless it stops for another
    // reason (its node drains, leaves or no longer fits: then the slot is refilled at once).
    s.holding = order === 'stop-first' && s.all.some((t) => {
      const node = nodeById.get(t.nodeId);
      return t.desiredState === 'shutdown' && !TERMINAL.has(t.status.state) && !ending.has(t.id) && t.specHash !== hash
        && node !== undefined && node.state === 'ready' && node.availability !== 'drain' && cs !== 'invalid' && satisfies(node, cs);
    });
    if (s.fresh.length > 0 || s.outdated.length > 0) {
      // Pending tasks get a node once one is eligible, or a fresh reason.
      for (const t of [...s.fresh, ...s.outdated]) {
        if (t.nodeId !== '') continue;
        if (elig.eligible.length > 0) steps.push({ kind: 'assign', task: t, nodeId: pick() });
        else if (t.status.message !== pendingMessage(elig)) steps.push({ kind: 'pending', task: t, message: pendingMessage(elig) });
      }
      continue;
    }
    if (s.holding) continue;
    // The restart policy ended the slot's latest task for good under the current spec: done.
    const latest = s.all.reduce<Task | undefined>((a, t) => (!a || ms(t.createdAt) > ms(a.createdAt) ? t : a), undefined);
    if (latest && latest.specHash === hash && (latest.status.state === 'complete' || latest.status.state === 'failed')) {
      s.ended = true;
      continue;
    }
    s.filling = true;
    create(s.slot, global ? (s.nodeId ?? '') : pick());
  }

  const ordered = [...slots.values()].sort((a, b) => a.slot - b.slot || a.key.localeCompare(b.key));
  for (const u of planUpdate(svc, ordered, mine, hash, now)) {
    switch (u.kind) {
      case 'shutdown':
        ending.add(u.task.id);
        steps.push({ kind: 'shutdown', task: u.task, reason: u.reason });
        break;
      case 'start': {
        const s = u.slot as Slot;
        create(s.slot, global ? (s.nodeId ?? '') : pick());
        break;
      }
      case 'update-status': steps.push({ kind: 'update-status', service: svc, status: u.status }); break;
      case 'rollback': steps.push({ kind: 'rollback', service: svc, reason: u.reason }); break;
      case 'wake': steps.push(u); break;
    }
  }
}
