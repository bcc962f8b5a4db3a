/**
 * The planner's Swarm rules over plain objects, with the clock passed in: global services (one
 * task per eligible node, nodes joining, draining, pausing, leaving), placement constraints
 * (pending with Docker's reason, tasks moved off nodes that no longer fit), slots a restart
 * policy ended, and rolling updates (stop-first and start-first order, parallelism, delay,
 * monitor period, failure actions pause / continue / rollback, completion).
 */
import { describe, expect, it } from 'vitest';
import { plan, specHash, type PlanStep } from '../../mesh/manager/plan.js';
import { planUpdate, type SlotView } from '../../mesh/manager/rolling-update.js';
import type { Node, NodeAvailability, NodeState, Service, ServiceSpec, Task, TaskState, UpdateConfig, UpdateStatus } from '../../src/model/types.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const at = (ms: number): string => new Date(T0 + ms).toISOString();

function node(name: string, o: { state?: NodeState; availability?: NodeAvailability; labels?: Record<string, string> } = {}): Node {
  return { id: `n-${name}`, name, address: '192.0.2.1', state: o.state ?? 'ready', availability: o.availability ?? 'active', lease: 1, labels: o.labels ?? {}, createdAt: at(0), updatedAt: at(0) };
}

function service(name: string, spec: Partial<ServiceSpec> = {}, extra: Partial<Service> = {}): Service {
  return {
    id: `s-${name}`, version: 2,
    spec: { name, endpointMode: 'vip', replicas: 1, ports: [], networks: [], command: ['sleep', '600'], env: {}, labels: {}, ...spec },
    vips: {}, createdAt: at(0), updatedAt: at(0), ...extra,
  };
}

interface TaskOpts { state?: TaskState; desired?: 'running' | 'shutdown'; hash?: string; id?: string; created?: number; since?: number; restarts?: number; healthy?: boolean; released?: boolean }

function task(svc: Service, slot: number, nodeName: string, o: TaskOpts = {}): Task {
  const state = o.state ?? 'running';
  return {
    id: o.id ?? `${svc.spec.name}.${slot || nodeName}@${nodeName || 'pending'}:${state}${o.hash ? '(old)' : ''}`,
    serviceId: svc.id, serviceName: svc.spec.name, slot, nodeId: nodeName ? `n-${nodeName}` : '',
    desiredState: o.desired ?? 'running',
    status: { state, message: '', since: at(o.since ?? 0), ...(o.restarts !== undefined ? { restarts: o.restarts } : {}), ...(o.healthy !== undefined ? { healthy: o.healthy } : {}) },
    addresses: {}, serviceVersion: svc.version, specHash: o.hash ?? specHash(svc), createdAt: at(o.created ?? 0),
    ...(o.released !== undefined ? { addressesReleased: o.released } : {}),
  };
}

function fmt(s: PlanStep): string {
  const n = (id: string): string => (id === '' ? '(pending)' : id.replace(/^n-/, ''));
  switch (s.kind) {
    case 'create': return `create ${s.service.spec.name}.${s.slot || n(s.nodeId)} -> ${n(s.nodeId)}${s.message ? ` (${s.message})` : ''}`;
    case 'assign': return `assign ${s.task.id} -> ${n(s.nodeId)}`;
    case 'pending': return `pending ${s.task.id} (${s.message})`;
    case 'shutdown': return `shutdown ${s.task.id} (${s.reason})`;
    case 'end': return `end ${s.task.id} ${s.state} (${s.reason})`;
    case 'release': return `release ${s.task.id}`;
    case 'delete': return `delete ${s.task.id}`;
    case 'update-status': return `status ${s.status.state}: ${s.status.message}`;
    case 'rollback': return `rollback (${s.reason})`;
    case 'wake': return `wake ${s.inMs}`;
  }
}

const steps = (services: Service[], nodes: Node[], tasks: Task[], now = T0): string[] => plan(services, nodes, tasks, 5, now).map(fmt).sort();

// ---- global mode ------------------------------------------------------------------------------

describe('global services', () => {
  const g = service('mon', { mode: 'global', replicas: 0 });
  const abc = [node('a'), node('b'), node('c')];

  it('one task per ready, active node, named by its node (slot 0)', () => {
    expect(steps([g], abc, [])).toEqual(['create mon.a -> a', 'create mon.b -> b', 'create mon.c -> c']);
    const created = plan([g], abc, []).filter((s): s is Extract<PlanStep, { kind: 'create' }> => s.kind === 'create');
    expect(created.every((c) => c.slot === 0)).toBe(true);
  });

  it('has nothing to do when every eligible node runs its task', () => {
    expect(steps([g], abc, abc.map((n) => task(g, 0, n.name)))).toEqual([]);
  });

  it('a node that joins gets a task; the others keep theirs', () => {
    expect(steps([g], [...abc, node('d')], abc.map((n) => task(g, 0, n.name)))).toEqual(['create mon.d -> d']);
  });

  it('a draining node loses its task, which is not placed elsewhere', () => {
    const nodes = [node('a'), node('b', { availability: 'drain' }), node('c')];
    expect(steps([g], nodes, abc.map((n) => task(g, 0, n.name)))).toEqual(['shutdown mon.b@b:running (node b is draining)']);
  });

  it('a node that goes down: its task is orphaned, nothing replaces it', () => {
    const nodes = [node('a'), node('b', { state: 'down' }), node('c')];
    expect(steps([g], nodes, abc.map((n) => task(g, 0, n.name)))).toEqual(['end mon.b@b:running orphaned (node b is down)']);
  });

  it('a paused node keeps its task but a paused node without one gets none', () => {
    const nodes = [node('a', { availability: 'pause' }), node('b', { availability: 'pause' })];
    expect(steps([g], nodes, [task(g, 0, 'a')])).toEqual([]);
  });

  it('a node back to active after a drain gets a new task', () => {
    const old = task(g, 0, 'b', { state: 'shutdown', desired: 'shutdown', released: true });
    expect(steps([g], abc, [task(g, 0, 'a'), old, task(g, 0, 'c')])).toEqual(['create mon.b -> b']);
  });

  it('only nodes that satisfy the constraints; a node whose label changes loses its task', () => {
    const gz = service('mon', { mode: 'global', replicas: 0, constraints: ['node.labels.zone==a'] });
    const nodes = [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } }), node('c', { labels: { zone: 'a' } })];
    expect(steps([gz], nodes, [])).toEqual(['create mon.a -> a', 'create mon.c -> c']);
    const relabelled = [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } }), node('c', { labels: { zone: 'b' } })];
    expect(steps([gz], relabelled, [task(gz, 0, 'a'), task(gz, 0, 'c')])).toEqual(["shutdown mon.c@c:running (node c no longer satisfies the service's constraints)"]);
  });

  it('a global task its restart policy ended stays ended on its node', () => {
    expect(steps([g], [node('a')], [task(g, 0, 'a', { state: 'complete', released: true })])).toEqual([]);
  });

  it('history is kept per node', () => {
    const old = (i: number): Task => task(g, 0, 'a', { state: 'orphaned', released: true, id: `o${i}`, since: i * 1000 });
    const out = plan([g], [node('a')], [task(g, 0, 'a'), ...Array.from({ length: 7 }, (_, i) => old(i))], 5, T0).map(fmt).sort();
    expect(out).toEqual(['delete o0', 'delete o1']);
  });
});

// ---- constraints ------------------------------------------------------------------------------

describe('placement constraints (replicated)', () => {
  const zoned = [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } }), node('c', { labels: { zone: 'a', ssd: 'yes' } })];

  it.each<[string, string[], string[]]>([
    ['node.labels.zone==a spreads over a and c', ['node.labels.zone==a'], ['create web.1 -> a', 'create web.2 -> c', 'create web.3 -> a']],
    ['!= excludes', ['node.labels.zone!=a'], ['create web.1 -> b', 'create web.2 -> b', 'create web.3 -> b']],
    ['several constraints all hold', ['node.labels.zone==a', 'node.labels.ssd==yes'], ['create web.1 -> c', 'create web.2 -> c', 'create web.3 -> c']],
    ['node.hostname', ['node.hostname==b'], ['create web.1 -> b', 'create web.2 -> b', 'create web.3 -> b']],
    ['node.id', ['node.id==n-c'], ['create web.1 -> c', 'create web.2 -> c', 'create web.3 -> c']],
    ['values compare case-insensitively', ['node.hostname==B'], ['create web.1 -> b', 'create web.2 -> b', 'create web.3 -> b']],
    ['a missing label is the empty value: != holds', ['node.labels.ssd!=yes'], ['create web.1 -> a', 'create web.2 -> b', 'create web.3 -> a']],
  ])('%s', (_name, constraints, want) => {
    expect(steps([service('web', { replicas: 3, constraints })], zoned, [])).toEqual(want);
  });

  it('no node satisfies them: pending with Docker\'s reason, counting each kind of node', () => {
    const nodes = [...zoned, node('d', { state: 'down', labels: { zone: 'x' } }), node('e', { availability: 'drain' })];
    expect(steps([service('web', { constraints: ['node.labels.zone==x'] })], nodes, [])).toEqual([
      'create web.1 -> (pending) (no suitable node (2 nodes not available for new tasks; scheduling constraints not satisfied on 3 nodes))',
    ]);
    expect(steps([service('web', { constraints: ['node.labels.zone==x'] })], zoned, [])).toEqual([
      'create web.1 -> (pending) (no suitable node (scheduling constraints not satisfied on 3 nodes))',
    ]);
  });

  it('a pending task gets a node once a label makes one fit, and a fresh reason when the cluster changes', () => {
    const web = service('web', { constraints: ['node.labels.zone==x'] });
    const pending = { ...task(web, 1, '', { state: 'pending' }), status: { state: 'pending' as const, message: 'no suitable node (scheduling constraints not satisfied on 3 nodes)', since: at(0) } };
    expect(steps([web], zoned, [pending])).toEqual([]);
    expect(steps([web], [...zoned, node('d')], [pending])).toEqual(['pending web.1@pending:pending (no suitable node (scheduling constraints not satisfied on 4 nodes))']);
    expect(steps([web], [...zoned, node('d', { labels: { zone: 'x' } })], [pending])).toEqual(['assign web.1@pending:pending -> d']);
  });

  it('a task on a node that no longer fits is shut down and its slot refilled on one that does', () => {
    const web = service('web', { constraints: ['node.labels.zone==a'] });
    expect(steps([web], zoned, [task(web, 1, 'b')])).toEqual(['create web.1 -> a', "shutdown web.1@b:running (node b no longer satisfies the service's constraints)"]);
  });
});

// ---- restart policy ---------------------------------------------------------------------------

describe('slots a restart policy ended', () => {
  const web = service('web', { replicas: 2, restartPolicy: { condition: 'on-failure' } });

  it('complete and failed tasks of the current spec keep their slots empty', () => {
    const tasks = [task(web, 1, 'a', { state: 'complete', released: true }), task(web, 2, 'a', { state: 'failed', released: true })];
    expect(steps([web], [node('a')], tasks)).toEqual([]);
  });

  it('a newer task after an ended one is what counts (an update replaced it)', () => {
    const tasks = [task(web, 1, 'a', { state: 'failed', released: true, created: 0 }), task(web, 1, 'a', { state: 'orphaned', released: true, created: 1000, id: 'later' })];
    expect(steps([web], [node('a')], tasks)).toEqual(['create web.1 -> a', 'create web.2 -> a']);
  });

  it('the scheduler releases an ended task and marks it no longer meant to run', () => {
    expect(steps([web], [node('a')], [task(web, 1, 'a', { state: 'complete' }), task(web, 2, 'a')])).toEqual(['release web.1@a:complete']);
  });
});

// ---- rolling updates --------------------------------------------------------------------------

const cfg = (c: Partial<UpdateConfig>): UpdateConfig => ({ parallelism: 1, delayMs: 0, order: 'stop-first', failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0, ...c });
const updating = (startedAt = 0): UpdateStatus => ({ state: 'updating', startedAt: at(startedAt), message: 'update in progress' });
const OLD = 'old-hash';

/** Replicated service `web` with `n` replicas at the new spec, updating since t=0. */
function webUpdating(n: number, c: Partial<UpdateConfig>, extra: Partial<Service> = {}): Service {
  return service('web', { replicas: n, command: ['sleep', '601'], updateConfig: cfg(c) }, { updateStatus: updating(), ...extra });
}
const old = (svc: Service, slot: number, nodeName: string, o: TaskOpts = {}): Task => task(svc, slot, nodeName, { hash: OLD, ...o });
const nodes3 = [node('a'), node('b'), node('c')];

describe('rolling update', () => {
  it('stop-first, parallelism 1: one old task stops, the others keep running', () => {
    const web = webUpdating(3, {});
    expect(steps([web], nodes3, [old(web, 1, 'a'), old(web, 2, 'b'), old(web, 3, 'c')], T0 + 10)).toEqual(['shutdown web.1@a:running(old) (service updated)']);
  });

  it('stop-first: nothing more while the old task stops; its slot is refilled once it ended', () => {
    const web = webUpdating(3, {});
    const stopping = old(web, 1, 'a', { desired: 'shutdown' });
    expect(steps([web], nodes3, [stopping, old(web, 2, 'b'), old(web, 3, 'c')], T0 + 10)).toEqual([]);
    const ended = old(web, 1, 'a', { desired: 'shutdown', state: 'shutdown', released: true });
    expect(steps([web], nodes3, [ended, old(web, 2, 'b'), old(web, 3, 'c')], T0 + 10)).toEqual(['create web.1 -> a']);
  });

  it('the next slot starts once the new task of the previous one is ready (running and healthy)', () => {
    const web = webUpdating(3, {});
    const fresh = (o: TaskOpts): Task => task(web, 1, 'a', { created: 5, ...o });
    const rest = [old(web, 2, 'b'), old(web, 3, 'c')];
    expect(steps([web], nodes3, [fresh({ state: 'starting' }), ...rest], T0 + 10)).toEqual([]);
    expect(steps([web], nodes3, [fresh({ healthy: false }), ...rest], T0 + 10)).toEqual([]);
    expect(steps([web], nodes3, [fresh({ healthy: true }), ...rest], T0 + 10)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
  });

  it('parallelism 2 replaces two slots at once; 0 replaces all', () => {
    const tasks = (web: Service): Task[] => [old(web, 1, 'a'), old(web, 2, 'b'), old(web, 3, 'c')];
    const two = webUpdating(3, { parallelism: 2 });
    expect(steps([two], nodes3, tasks(two), T0 + 10)).toEqual(['shutdown web.1@a:running(old) (service updated)', 'shutdown web.2@b:running(old) (service updated)']);
    const all = webUpdating(3, { parallelism: 0 });
    expect(steps([all], nodes3, tasks(all), T0 + 10)).toHaveLength(3);
  });

  it('parallelism counts slots in flight: one free place, one more slot', () => {
    const web = webUpdating(3, { parallelism: 2 });
    const tasks = [task(web, 1, 'a', { created: 5, state: 'starting' }), old(web, 2, 'b'), old(web, 3, 'c')];
    expect(steps([web], nodes3, tasks, T0 + 10)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
  });

  it('start-first: a new task starts beside the old one, which stops once the new one is ready', () => {
    const web = webUpdating(2, { order: 'start-first' });
    expect(steps([web], nodes3, [old(web, 1, 'a'), old(web, 2, 'b')], T0 + 10)).toEqual(['create web.1 -> c']);
    const starting = task(web, 1, 'c', { created: 5, state: 'starting' });
    expect(steps([web], nodes3, [old(web, 1, 'a'), starting, old(web, 2, 'b')], T0 + 10)).toEqual([]);
    const ready = task(web, 1, 'c', { created: 5 });
    expect(steps([web], nodes3, [old(web, 1, 'a'), ready, old(web, 2, 'b')], T0 + 10)).toEqual([
      'create web.2 -> a', 'shutdown web.1@a:running(old) (service updated)',
    ]);
  });

  it('delay: the next slot waits until the delay after the last one became ready (and asks to be woken)', () => {
    const web = webUpdating(2, { delayMs: 3000 });
    const tasks = [task(web, 1, 'a', { created: 5, since: 1000 }), old(web, 2, 'b')];
    expect(steps([web], nodes3, tasks, T0 + 2500)).toEqual(['wake 1500']);
    expect(steps([web], nodes3, tasks, T0 + 4000)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
  });

  it('completes when every slot runs the new spec and the monitor period has passed', () => {
    const web = webUpdating(2, { monitorMs: 5000 });
    const tasks = [task(web, 1, 'a', { created: 5, since: 1000 }), task(web, 2, 'b', { created: 6, since: 2000 })];
    expect(steps([web], nodes3, tasks, T0 + 3000)).toEqual(['wake 4000']);
    expect(steps([web], nodes3, tasks, T0 + 7000)).toEqual(['status completed: update completed']);
  });

  it('a completed or paused update has nothing more to do', () => {
    const done = webUpdating(1, {}, { updateStatus: { state: 'completed', startedAt: at(0), completedAt: at(9), message: 'update completed' } });
    expect(steps([done], nodes3, [task(done, 1, 'a', { created: 5 })], T0 + 99_000)).toEqual([]);
    const paused = webUpdating(2, {}, { updateStatus: { state: 'paused', startedAt: at(0), message: 'update paused' } });
    expect(steps([paused], nodes3, [task(paused, 1, 'a', { created: 5 }), old(paused, 2, 'b')], T0 + 99_000)).toEqual([]);
  });

  describe('failure of a new task (failed, or restarted by its policy)', () => {
    const failing = (web: Service): Task[] => [task(web, 1, 'a', { created: 5, restarts: 1 }), old(web, 2, 'b')];

    it('pause (default): the update stops with Docker\'s message', () => {
      const web = webUpdating(2, {});
      const t = failing(web);
      expect(steps([web], nodes3, t, T0 + 10)).toEqual([`status paused: update paused due to failure or early termination of task ${t[0]?.id}`]);
    });

    it('continue: the update goes on', () => {
      const web = webUpdating(2, { failureAction: 'continue' });
      expect(steps([web], nodes3, failing(web), T0 + 10)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
    });

    it('a ratio above the failures lets it go on', () => {
      const web = webUpdating(2, { maxFailureRatio: 0.5 });
      expect(steps([web], nodes3, failing(web), T0 + 10)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
    });

    it('rollback: the service goes back to its previous spec', () => {
      const prev = service('web', { replicas: 2 }).spec;
      const web = webUpdating(2, { failureAction: 'rollback' }, { previousSpec: prev });
      const t = [task(web, 1, 'a', { created: 5, state: 'failed', released: true }), old(web, 2, 'b')];
      expect(steps([web], nodes3, t, T0 + 10)).toEqual([`rollback (update rolled back due to failure or early termination of task ${t[0]?.id})`]);
    });

    it('rollback without a previous spec pauses instead, saying so', () => {
      const web = webUpdating(2, { failureAction: 'rollback' });
      expect(steps([web], nodes3, failing(web), T0 + 10)[0]).toMatch(/^status paused: .*no previous spec/);
    });

    it('tasks of before the update do not count', () => {
      const web = webUpdating(2, {}, { updateStatus: updating(100) });
      const t = [task(web, 1, 'a', { created: 50, restarts: 3 }), old(web, 2, 'b')];
      expect(steps([web], nodes3, t, T0 + 200)).toEqual(['shutdown web.2@b:running(old) (service updated)']);
    });
  });

  it('a rollback rolls out with the rollback config and completes as rollback_completed', () => {
    const web = service('web', { replicas: 2, rollbackConfig: cfg({ parallelism: 0 }), updateConfig: cfg({ parallelism: 1 }) }, { updateStatus: { state: 'rollback_started', startedAt: at(0), message: 'manually requested rollback' } });
    expect(steps([web], nodes3, [old(web, 1, 'a'), old(web, 2, 'b')], T0 + 10)).toEqual([
      'shutdown web.1@a:running(old) (rolled back)', 'shutdown web.2@b:running(old) (rolled back)',
    ]);
    expect(steps([web], nodes3, [task(web, 1, 'a', { created: 1 }), task(web, 2, 'b', { created: 1 })], T0 + 6000)).toEqual(['status rollback_completed: rollback completed']);
  });

  it('a failing rollback pauses as rollback_paused', () => {
    const web = service('web', { replicas: 2, rollbackConfig: cfg({}) }, { updateStatus: { state: 'rollback_started', startedAt: at(0), message: 'x' } });
    expect(steps([web], nodes3, [task(web, 1, 'a', { created: 5, restarts: 2 }), old(web, 2, 'b')], T0 + 10)[0]).toMatch(/^status rollback_paused: rollback paused due to/);
  });

  it('a global service updates node by node', () => {
    const g = service('mon', { mode: 'global', replicas: 0, command: ['new'], updateConfig: cfg({}) }, { updateStatus: updating() });
    const tasks = nodes3.map((n) => old(g, 0, n.name));
    expect(steps([g], nodes3, tasks, T0 + 10)).toEqual(['shutdown mon.a@a:running(old) (service updated)']);
    const next = [old(g, 0, 'a', { desired: 'shutdown', state: 'shutdown', released: true }), old(g, 0, 'b'), old(g, 0, 'c')];
    expect(steps([g], nodes3, next, T0 + 10)).toEqual(['create mon.a -> a']);
  });

  it('a draining node during a stop-first update: its task is replaced at once elsewhere', () => {
    const web = webUpdating(1, {});
    const drainedNodes = [node('a', { availability: 'drain' }), node('b')];
    expect(steps([web], drainedNodes, [old(web, 1, 'a', { desired: 'shutdown' })], T0 + 10)).toEqual(['create web.1 -> b']);
  });

  it('planUpdate alone: slots in flight block the budget', () => {
    const web = webUpdating(2, { parallelism: 1 });
    const slots: SlotView[] = [
      { key: '1', fresh: [], outdated: [], holding: true },
      { key: '2', fresh: [], outdated: [old(web, 2, 'b')], holding: false },
    ];
    expect(planUpdate(web, slots, [], specHash(web), T0 + 10)).toEqual([]);
  });
});
