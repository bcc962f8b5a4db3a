/**
 * The scheduler's pure planning step: cluster objects in, a list of intended changes out.
 * No I/O here, so every placement and lifecycle rule is unit-tested with plain objects.
 *
 * Rules (Docker swarm's, simplified):
 * - a service wants tasks in slots 1..replicas, each on a ready, active node, spread: the node
 *   with the fewest tasks of that service, then the fewest tasks overall, then by name;
 * - a task on a node that is down or gone becomes `orphaned` and its slot is filled elsewhere;
 * - a task on a draining node, in a slot above `replicas`, of a removed service, or running an
 *   outdated spec is asked to shut down (the agent stops it and reports `shutdown`);
 * - a task that ended for good gives its addresses back; at most `historyLimit` ended tasks are
 *   kept per slot for `service ps`.
 */
import { createHash } from 'node:crypto';
import type { Node, Service, Task, TaskState } from '../../src/model/types.js';

export const TERMINAL: ReadonlySet<TaskState> = new Set(['complete', 'failed', 'shutdown', 'orphaned']);

export type PlanStep =
  /** Create a task for `slot` on `nodeId` ('' when no node is eligible: pending). */
  | { kind: 'create'; service: Service; slot: number; nodeId: string }
  /** Give a pending task a node. */
  | { kind: 'assign'; task: Task; nodeId: string }
  /** Ask the agent to stop the task. */
  | { kind: 'shutdown'; task: Task; reason: string }
  /** Mark a task whose node is down or gone, or that never started, as ended now. */
  | { kind: 'end'; task: Task; state: TaskState; reason: string }
  /** Release the addresses of an ended task. */
  | { kind: 'release'; task: Task }
  /** Delete an ended task from history. */
  | { kind: 'delete'; task: Task };

/** Hash of the spec fields a running task depends on (not replicas or labels). */
export function specHash(s: Service): string {
  const { command, env, networks, healthCheck, ports, endpointMode, dnsOptions } = s.spec;
  // dnsOptions only when set: services without it keep the hash they had before the field existed.
  const fields = { command, env, networks, healthCheck, targets: ports.map((p) => p.target), endpointMode, ...(dnsOptions ? { dnsOptions } : {}) };
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex').slice(0, 16);
}

const isLive = (t: Task): boolean => t.desiredState === 'running' && !TERMINAL.has(t.status.state);

export function plan(services: Service[], nodes: Node[], tasks: Task[], historyLimit = 5): PlanStep[] {
  const steps: PlanStep[] = [];
  const nodeById = new Map(nodes.map((n) => [n.id, n]));
  const serviceById = new Map(services.map((s) => [s.id, s]));
  const eligible = nodes.filter((n) => n.state === 'ready' && n.availability === 'active');
  const load = new Map<string, number>(eligible.map((n) => [n.id, 0]));
  for (const t of tasks) if (isLive(t) && load.has(t.nodeId)) load.set(t.nodeId, (load.get(t.nodeId) ?? 0) + 1);

  const byService = new Map<string, Task[]>();
  for (const t of tasks) {
    const list = byService.get(t.serviceId) ?? [];
    list.push(t);
    byService.set(t.serviceId, list);
  }

  // 1. Lifecycle of existing tasks.
  for (const t of tasks) {
    const svc = serviceById.get(t.serviceId);
    const node = t.nodeId ? nodeById.get(t.nodeId) : undefined;
    const terminal = TERMINAL.has(t.status.state);
    if (!terminal) {
      const neverStarted = t.status.state === 'new' || (t.status.state === 'assigned' && !node);
      if (t.nodeId && (!node || node.state === 'down')) {
        steps.push({ kind: 'end', task: t, state: 'orphaned', reason: node ? `node ${node.name} is down` : 'node was removed' });
        continue;
      }
      if (t.desiredState === 'shutdown' && neverStarted) {
        steps.push({ kind: 'end', task: t, state: 'shutdown', reason: 'removed before it started' });
        continue;
      }
      if (t.desiredState === 'running') {
        const why = !svc ? 'service removed'
          : t.slot > svc.spec.replicas ? 'scaled down'
          : t.specHash !== specHash(svc) ? 'service updated'
          : node && node.availability === 'drain' ? `node ${node.name} is draining`
          : undefined;
        if (why) steps.push({ kind: 'shutdown', task: t, reason: why });
      }
    } else if (!t.addressesReleased) {
      steps.push({ kind: 'release', task: t });
    }
  }

  // 2. Fill empty slots and place pending tasks, spreading over eligible nodes.
  const shuttingDown = new Set(steps.filter((s) => s.kind === 'shutdown' || s.kind === 'end').map((s) => (s as { task: Task }).task.id));
  const pick = (serviceLoad: Map<string, number>): string => {
    let best: Node | undefined;
    for (const n of eligible) {
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
  for (const svc of [...services].sort((a, b) => a.spec.name.localeCompare(b.spec.name))) {
    const mine = (byService.get(svc.id) ?? []).filter((t) => isLive(t) && !shuttingDown.has(t.id));
    const serviceLoad = new Map<string, number>();
    for (const t of mine) if (t.nodeId) serviceLoad.set(t.nodeId, (serviceLoad.get(t.nodeId) ?? 0) + 1);
    const filled = new Set(mine.map((t) => t.slot));
    for (const t of mine) {
      if (t.nodeId === '' && eligible.length > 0) {
        const nodeId = pick(serviceLoad);
        steps.push({ kind: 'assign', task: t, nodeId });
      }
    }
    for (let slot = 1; slot <= svc.spec.replicas; slot++) {
      if (!filled.has(slot)) steps.push({ kind: 'create', service: svc, slot, nodeId: pick(serviceLoad) });
    }
  }

  // 3. History: ended, released tasks beyond the limit per slot (or of removed services) go.
  const ended = new Map<string, Task[]>();
  for (const t of tasks) {
    if (!TERMINAL.has(t.status.state) || !t.addressesReleased) continue;
    if (!serviceById.has(t.serviceId)) { steps.push({ kind: 'delete', task: t }); continue; }
    const k = `${t.serviceId}/${t.slot}`;
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
