/**
 * The scheduler's pure planning step: placement (spread), lifecycle (orphan, drain, scale down,
 * spec change, removal), address release and history trimming, as table-driven cases over
 * plain objects, plus a property over random clusters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { plan, specHash, TERMINAL, type PlanStep } from '../../mesh/manager/plan.js';
import type {
  DesiredTaskState, Node, NodeAvailability, NodeState, Service, ServiceSpec, Task, TaskState,
} from '../../src/model/types.js';

const T0 = '2024-01-01T00:00:00.000Z';

// ---- factories -------------------------------------------------------------------------------

function node(name: string, state: NodeState = 'ready', availability: NodeAvailability = 'active'): Node {
  return { id: `n-${name}`, name, address: '192.0.2.1', state, availability, lease: 1, labels: {}, createdAt: T0, updatedAt: T0 };
}

function service(name: string, replicas: number, spec: Partial<ServiceSpec> = {}): Service {
  return {
    id: `s-${name}`,
    version: 1,
    spec: { name, endpointMode: 'vip', replicas, ports: [], networks: [], command: ['sleep', '600'], env: {}, labels: {}, ...spec },
    vips: {},
    createdAt: T0,
    updatedAt: T0,
  };
}

interface TaskOpts {
  state?: TaskState;
  desired?: DesiredTaskState;
  released?: boolean;
  hash?: string;
  since?: string;
  id?: string;
  message?: string;
  createdAt?: string;
  restarts?: number;
  healthy?: boolean;
}

/** A task of `svc` in `slot` on node `nodeName` ('' = pending); running and current by default. */
function task(svc: Service, slot: number, nodeName: string, o: TaskOpts = {}): Task {
  const state = o.state ?? 'running';
  const t: Task = {
    id: o.id ?? `${svc.spec.name}.${slot}@${nodeName || 'pending'}:${state}`,
    serviceId: svc.id,
    serviceName: svc.spec.name,
    slot,
    nodeId: nodeName ? `n-${nodeName}` : '',
    desiredState: o.desired ?? 'running',
    status: { state, message: o.message ?? '', since: o.since ?? T0, ...(o.restarts !== undefined ? { restarts: o.restarts } : {}), ...(o.healthy !== undefined ? { healthy: o.healthy } : {}) },
    addresses: {},
    serviceVersion: svc.version,
    specHash: o.hash ?? specHash(svc),
    createdAt: o.createdAt ?? T0,
  };
  if (o.released !== undefined) t.addressesReleased = o.released;
  return t;
}

/** One line per step, e.g. `create web.2 -> b`, `end web.1@a:running orphaned (node a is down)`. */
function fmt(s: PlanStep): string {
  const nodeName = (id: string): string => (id === '' ? '(pending)' : id.replace(/^n-/, ''));
  switch (s.kind) {
    case 'create': return `create ${s.service.spec.name}.${s.slot} -> ${nodeName(s.nodeId)}`;
    case 'assign': return `assign ${s.task.id} -> ${nodeName(s.nodeId)}`;
    case 'shutdown': return `shutdown ${s.task.id} (${s.reason})`;
    case 'end': return `end ${s.task.id} ${s.state} (${s.reason})`;
    case 'release': return `release ${s.task.id}`;
    case 'delete': return `delete ${s.task.id}`;
    case 'pending': return `pending ${s.task.id} (${s.message})`;
    case 'update-status': return `update-status ${s.service.spec.name} ${s.status.state} (${s.status.message})`;
    case 'rollback': return `rollback ${s.service.spec.name} (${s.reason})`;
    case 'wake': return `wake in ${s.inMs} ms`;
  }
}

const steps = (...args: Parameters<typeof plan>): string[] => plan(...args).map(fmt).sort();

// ---- table -----------------------------------------------------------------------------------

const web1 = service('web', 1);
const web2 = service('web', 2);
const web3 = service('web', 3);
const api1 = service('api', 1);
const api2 = service('api', 2);
const webNewCmd = service('web', 1, { command: ['sleep', '601'] });

interface Case { name: string; services: Service[]; nodes: Node[]; tasks: Task[]; historyLimit?: number; want: string[] }

const cases: Case[] = [
  {
    name: 'replicas fill slots 1..N, one per node',
    services: [web3], nodes: [node('a'), node('b'), node('c')], tasks: [],
    want: ['create web.1 -> a', 'create web.2 -> b', 'create web.3 -> c'],
  },
  {
    name: 'more replicas than nodes: spread evenly, ties by name',
    services: [service('web', 5)], nodes: [node('b'), node('a')], tasks: [],
    want: ['create web.1 -> a', 'create web.2 -> b', 'create web.3 -> a', 'create web.4 -> b', 'create web.5 -> a'],
  },
  {
    name: 'a service that has everything it wants gets no steps',
    services: [web2], nodes: [node('a'), node('b')], tasks: [task(web2, 1, 'a'), task(web2, 2, 'b')],
    want: [],
  },
  {
    name: 'replicas 0 creates nothing',
    services: [service('web', 0)], nodes: [node('a')], tasks: [],
    want: [],
  },
  {
    name: 'spread: the node with the fewest tasks of the service first',
    services: [web2], nodes: [node('a'), node('b')], tasks: [task(web2, 1, 'a')],
    want: ['create web.2 -> b'],
  },
  {
    name: 'spread: fewest tasks of the service wins over fewest tasks overall',
    services: [api2, web2], nodes: [node('a'), node('b')],
    tasks: [task(api2, 1, 'b'), task(api2, 2, 'b'), task(web2, 1, 'a')],
    want: ['create web.2 -> b'],
  },
  {
    name: 'spread: tie on the service, then the fewest tasks overall',
    services: [api1, web1], nodes: [node('a'), node('b')], tasks: [task(api1, 1, 'a')],
    want: ['create web.1 -> b'],
  },
  {
    name: 'spread: tie on both, then by node name (not input order)',
    services: [web1], nodes: [node('c'), node('b'), node('a')], tasks: [],
    want: ['create web.1 -> a'],
  },
  {
    name: 'ended tasks do not count as load',
    services: [web1], nodes: [node('a'), node('b')], tasks: [task(web1, 1, 'a', { state: 'orphaned', released: true, id: 'old' }), task(web1, 1, 'b', { state: 'running', desired: 'shutdown', id: 'going' })],
    // 'going' is not live (desired shutdown), 'old' ended: both nodes are empty, name decides.
    want: ['create web.1 -> a'],
  },
  {
    name: 'only ready and active nodes are eligible',
    services: [web3], nodes: [node('a', 'down'), node('b', 'ready', 'drain'), node('c', 'ready', 'pause'), node('d', 'down', 'active'), node('e')], tasks: [],
    want: ['create web.1 -> e', 'create web.2 -> e', 'create web.3 -> e'],
  },
  {
    name: 'no eligible node: tasks are created pending',
    services: [web2], nodes: [node('a', 'down'), node('b', 'ready', 'drain')], tasks: [],
    want: ['create web.1 -> (pending)', 'create web.2 -> (pending)'],
  },
  {
    name: 'no nodes at all: tasks are created pending',
    services: [web1], nodes: [], tasks: [],
    want: ['create web.1 -> (pending)'],
  },
  {
    name: 'a pending task stays pending while no node is eligible',
    services: [web1], nodes: [node('a', 'ready', 'pause')], tasks: [task(web1, 1, '', { state: 'pending', message: 'no suitable node (1 node not available for new tasks)' })],
    want: [],
  },
  {
    name: 'pending tasks are assigned once a node is eligible, spread',
    services: [web2], nodes: [node('a'), node('b')], tasks: [task(web2, 1, '', { state: 'new' }), task(web2, 2, '', { state: 'new' })],
    want: ['assign web.1@pending:new -> a', 'assign web.2@pending:new -> b'],
  },
  {
    name: 'a task on a down node is orphaned and its slot refilled elsewhere',
    services: [web1], nodes: [node('a', 'down'), node('b')], tasks: [task(web1, 1, 'a')],
    want: ['create web.1 -> b', 'end web.1@a:running orphaned (node a is down)'],
  },
  {
    name: 'a task on a removed node is orphaned and its slot refilled',
    services: [web1], nodes: [node('b')], tasks: [task(web1, 1, 'gone', { state: 'starting' })],
    want: ['create web.1 -> b', 'end web.1@gone:starting orphaned (node was removed)'],
  },
  {
    name: 'an assigned task on a removed node is orphaned too',
    services: [web1], nodes: [], tasks: [task(web1, 1, 'gone', { state: 'assigned' })],
    want: ['create web.1 -> (pending)', 'end web.1@gone:assigned orphaned (node was removed)'],
  },
  {
    name: 'drain: the task is shut down and its slot refilled on another node',
    services: [web1], nodes: [node('a', 'ready', 'drain'), node('b')], tasks: [task(web1, 1, 'a')],
    want: ['create web.1 -> b', 'shutdown web.1@a:running (node a is draining)'],
  },
  {
    name: 'pause keeps running tasks where they are',
    services: [web1], nodes: [node('a', 'ready', 'pause'), node('b')], tasks: [task(web1, 1, 'a')],
    want: [],
  },
  {
    name: 'scale down: slots above replicas are shut down',
    services: [web1], nodes: [node('a'), node('b'), node('c')], tasks: [task(web1, 1, 'a'), task(web1, 2, 'b'), task(web1, 3, 'c')],
    want: ['shutdown web.2@b:running (scaled down)', 'shutdown web.3@c:running (scaled down)'],
  },
  {
    name: 'scale down of a pending task',
    services: [service('web', 0)], nodes: [], tasks: [task(service('web', 0), 1, '', { state: 'new' })],
    want: ['shutdown web.1@pending:new (scaled down)'],
  },
  {
    name: 'spec change (stop-first by default): the outdated task is shut down first',
    services: [webNewCmd], nodes: [node('a'), node('b')], tasks: [task(webNewCmd, 1, 'a', { hash: specHash(web1) })],
    want: ['shutdown web.1@a:running (service updated)'],
  },
  {
    name: 'spec change: the slot is refilled once the outdated task has ended (on the less loaded node)',
    nodes: [node('a'), node('b')],
    services: [webNewCmd, api1],
    tasks: [task(webNewCmd, 1, 'a', { hash: specHash(web1), state: 'shutdown', desired: 'shutdown', released: true }), task(api1, 1, 'a')],
    want: ['create web.1 -> b'],
  },
  {
    name: 'spec change: nothing is created while the outdated task stops (stop-first holds the slot)',
    services: [webNewCmd], nodes: [node('a'), node('b')], tasks: [task(webNewCmd, 1, 'a', { hash: specHash(web1), desired: 'shutdown' })],
    want: [],
  },
  {
    name: 'removed service: its tasks are shut down and nothing is created',
    services: [], nodes: [node('a')], tasks: [task(web1, 1, 'a')],
    want: ['shutdown web.1@a:running (service removed)'],
  },
  {
    name: 'a task asked to stop before it started is ended right away',
    services: [], nodes: [node('a')], tasks: [task(web1, 1, '', { state: 'new', desired: 'shutdown' })],
    want: ['end web.1@pending:new shutdown (removed before it started)'],
  },
  {
    name: 'a running task asked to stop is left to its agent',
    services: [], nodes: [node('a')], tasks: [task(web1, 1, 'a', { desired: 'shutdown' })],
    want: [],
  },
  {
    name: 'terminal tasks not yet released get their addresses released (each terminal state)',
    services: [web1], nodes: [node('a')],
    tasks: [
      task(web1, 1, 'a', { state: 'complete', desired: 'shutdown' }),
      task(web1, 1, 'a', { state: 'failed' }),
      task(web1, 1, 'a', { state: 'shutdown', desired: 'shutdown' }),
      task(web1, 1, 'gone', { state: 'orphaned' }),
      task(web1, 1, 'a', { state: 'running', id: 'live' }),
    ],
    want: ['release web.1@a:complete', 'release web.1@a:failed', 'release web.1@a:shutdown', 'release web.1@gone:orphaned'],
  },
  {
    name: 'a task its restart policy ended (failed, current spec) keeps its slot: released, not replaced',
    services: [web1], nodes: [node('a')], tasks: [task(web1, 1, 'a', { state: 'failed', released: false })],
    want: ['release web.1@a:failed'],
  },
  {
    name: 'a failed task of an older spec is replaced',
    services: [webNewCmd], nodes: [node('a')], tasks: [task(webNewCmd, 1, 'a', { state: 'failed', released: true, hash: specHash(web1) })],
    want: ['create web.1 -> a'],
  },
  {
    name: 'released terminal tasks within the history limit are kept',
    services: [web1], nodes: [node('a')],
    tasks: [task(web1, 1, 'a', { state: 'failed', released: true, id: 'f1' }), task(web1, 1, 'a', { id: 'live' })],
    want: [],
  },
  {
    name: 'history: only the newest historyLimit ended tasks per slot are kept',
    services: [web2], nodes: [node('a')], historyLimit: 2,
    tasks: [
      task(web2, 1, 'a', { id: 'live1' }),
      task(web2, 2, 'a', { id: 'live2' }),
      task(web2, 1, 'a', { state: 'failed', released: true, id: 's1-t3', since: '2024-01-01T00:00:03.000Z' }),
      task(web2, 1, 'a', { state: 'failed', released: true, id: 's1-t1', since: '2024-01-01T00:00:01.000Z' }),
      task(web2, 1, 'a', { state: 'failed', released: true, id: 's1-t4', since: '2024-01-01T00:00:04.000Z' }),
      task(web2, 1, 'a', { state: 'failed', released: true, id: 's1-t2', since: '2024-01-01T00:00:02.000Z' }),
      // Slot 2 has two: at the limit, none deleted.
      task(web2, 2, 'a', { state: 'complete', released: true, id: 's2-t1', since: '2024-01-01T00:00:01.000Z' }),
      task(web2, 2, 'a', { state: 'complete', released: true, id: 's2-t2', since: '2024-01-01T00:00:02.000Z' }),
      // Not released yet: released first, never deleted in the same plan.
      task(web2, 1, 'a', { state: 'failed', released: false, id: 's1-t0', since: '2024-01-01T00:00:00.000Z' }),
    ],
    want: ['delete s1-t1', 'delete s1-t2', 'release s1-t0'],
  },
  {
    name: 'history limit 0 deletes every released ended task',
    services: [web1], nodes: [node('a')], historyLimit: 0,
    tasks: [task(web1, 1, 'a', { id: 'live' }), task(web1, 1, 'a', { state: 'shutdown', released: true, id: 'old' })],
    want: ['delete old'],
  },
  {
    name: 'ended tasks of a removed service are deleted (once released)',
    services: [], nodes: [node('a')],
    tasks: [
      task(web1, 1, 'a', { state: 'complete', released: true, id: 'done' }),
      task(web1, 2, 'a', { state: 'orphaned', released: true, id: 'lost' }),
      task(web1, 3, 'a', { state: 'failed', released: false, id: 'unreleased' }),
    ],
    want: ['delete done', 'delete lost', 'release unreleased'],
  },
];

describe('plan', () => {
  it.each(cases)('$name', ({ services, nodes, tasks, historyLimit, want }) => {
    expect(steps(services, nodes, tasks, historyLimit ?? 5)).toEqual([...want].sort());
  });

  it('uses a history limit of 5 by default', () => {
    const ended = Array.from({ length: 7 }, (_, i) => task(web1, 1, 'a', { state: 'failed', released: true, id: `e${i}`, since: `2024-01-01T00:00:0${i}.000Z` }));
    expect(plan([web1], [node('a')], [task(web1, 1, 'a', { id: 'live' }), ...ended]).map(fmt).sort()).toEqual(['delete e0', 'delete e1']);
  });

  it('create steps carry the service object and place services in name order', () => {
    const zed = service('zed', 1);
    const alpha = service('alpha', 1);
    const out = plan([zed, alpha], [node('a'), node('b')], []);
    // alpha is planned first and takes a; zed then sees a loaded and takes b.
    expect(out).toEqual([
      { kind: 'create', service: alpha, slot: 1, nodeId: 'n-a' },
      { kind: 'create', service: zed, slot: 1, nodeId: 'n-b' },
    ]);
  });

  it('an assign step carries the pending task itself', () => {
    const pending = task(web1, 1, '', { state: 'new' });
    expect(plan([web1], [node('a')], [pending])).toEqual([{ kind: 'assign', task: pending, nodeId: 'n-a' }]);
  });

  it('a node coming back lets pending tasks be placed, a node going down orphans them again', () => {
    const nodesDown = [node('a', 'down')];
    const first = plan([web1], nodesDown, []);
    expect(first.map(fmt)).toEqual(['create web.1 -> (pending)']);
    const pending = task(web1, 1, '', { state: 'pending', message: 'no suitable node (1 node not available for new tasks)' });
    expect(plan([web1], nodesDown, [pending])).toEqual([]);
    expect(plan([web1], [node('a')], [pending]).map(fmt)).toEqual(['assign web.1@pending:pending -> a']);
    const placed = task(web1, 1, 'a', { state: 'assigned' });
    expect(plan([web1], nodesDown, [placed]).map(fmt).sort()).toEqual(['create web.1 -> (pending)', 'end web.1@a:assigned orphaned (node a is down)']);
  });
});

describe('specHash', () => {
  const base = service('web', 2, {
    ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }],
    networks: [{ network: 'net1', aliases: [] }],
    env: { A: '1' },
  });
  const variant = (spec: Partial<ServiceSpec>): Service => ({ ...base, spec: { ...base.spec, ...spec } });

  it('is a stable 16-hex-digit string', () => {
    expect(specHash(base)).toMatch(/^[0-9a-f]{16}$/);
    expect(specHash(base)).toBe(specHash(structuredClone(base)));
  });

  it.each<[string, Partial<ServiceSpec>]>([
    ['replicas', { replicas: 7 }],
    ['labels', { labels: { team: 'x' } }],
    ['published port', { ports: [{ target: 80, published: 9090, protocol: 'tcp', mode: 'ingress' }] }],
    ['name', { name: 'other' }],
  ])('ignores %s', (_what, spec) => {
    expect(specHash(variant(spec))).toBe(specHash(base));
  });

  it.each<[string, Partial<ServiceSpec>]>([
    ['command', { command: ['sleep', '1'] }],
    ['env', { env: { A: '2' } }],
    ['networks', { networks: [{ network: 'net2', aliases: [] }] }],
    ['network aliases', { networks: [{ network: 'net1', aliases: ['x'] }] }],
    ['target port', { ports: [{ target: 81, published: 8080, protocol: 'tcp', mode: 'ingress' }] }],
    ['endpoint mode', { endpointMode: 'dnsrr' }],
    ['health check', { healthCheck: { type: 'tcp', port: 80, intervalMs: 5000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 } }],
  ])('changes with %s', (_what, spec) => {
    expect(specHash(variant(spec))).not.toBe(specHash(base));
  });
});

describe('TERMINAL', () => {
  it.each<[TaskState, boolean]>([
    ['new', false], ['assigned', false], ['starting', false], ['running', false],
    ['complete', true], ['failed', true], ['shutdown', true], ['orphaned', true],
  ])('%s -> %s', (state, terminal) => {
    expect(TERMINAL.has(state)).toBe(terminal);
  });
});

// ---- property --------------------------------------------------------------------------------

const STATES: TaskState[] = ['new', 'assigned', 'starting', 'running', 'complete', 'failed', 'shutdown', 'orphaned'];

const clusterArb = fc.record({
  services: fc.uniqueArray(fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), replicas: fc.integer({ min: 0, max: 5 }) }), { selector: (s) => s.name, maxLength: 4 }),
  nodes: fc.uniqueArray(fc.record({
    name: fc.constantFrom('n1', 'n2', 'n3', 'n4'),
    state: fc.constantFrom<NodeState>('ready', 'down'),
    availability: fc.constantFrom<NodeAvailability>('active', 'drain', 'pause'),
  }), { selector: (n) => n.name, maxLength: 4 }),
  tasks: fc.array(fc.record({
    // 'e' is never a live service: tasks of a removed service.
    service: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
    slot: fc.integer({ min: 1, max: 6 }),
    // '' pending, 'gone' a removed node.
    node: fc.constantFrom('', 'n1', 'n2', 'n3', 'n4', 'gone'),
    state: fc.constantFrom(...STATES),
    desired: fc.constantFrom<DesiredTaskState>('running', 'shutdown'),
    stale: fc.boolean(),
    released: fc.boolean(),
    since: fc.integer({ min: 0, max: 59 }),
  }), { maxLength: 25 }),
  historyLimit: fc.integer({ min: 0, max: 3 }),
});

describe('plan (property)', () => {
  it('never creates two tasks for one slot, never fills a live slot, never places on an ineligible node', () => {
    fc.assert(fc.property(clusterArb, (c) => {
      const services = c.services.map((s) => service(s.name, s.replicas));
      const nodes = c.nodes.map((n) => node(n.name, n.state, n.availability));
      const tasks = c.tasks.map((t, i) => task(service(t.service, 1), t.slot, t.node, {
        id: `t${i}`, state: t.state, desired: t.desired, released: t.released,
        since: `2024-01-01T00:00:${String(t.since).padStart(2, '0')}.000Z`,
        ...(t.stale ? { hash: 'stale' } : {}),
      }));
      const out = plan(services, nodes, tasks, c.historyLimit);

      const eligible = new Set(nodes.filter((n) => n.state === 'ready' && n.availability === 'active').map((n) => n.id));
      const serviceIds = new Set(services.map((s) => s.id));
      const ending = new Set(out.flatMap((s) => (s.kind === 'shutdown' || s.kind === 'end' ? [s.task.id] : [])));
      // Slots that keep a live task after this plan.
      const kept = new Set(tasks
        .filter((t) => t.desiredState === 'running' && !TERMINAL.has(t.status.state) && !ending.has(t.id))
        .map((t) => `${t.serviceId}/${t.slot}`));

      const created = new Set<string>();
      for (const s of out) {
        if (s.kind === 'create') {
          const k = `${s.service.id}/${s.slot}`;
          expect(created.has(k), `two creates for ${k}`).toBe(false);
          expect(kept.has(k), `create for ${k}, which keeps a live task`).toBe(false);
          created.add(k);
          expect(serviceIds.has(s.service.id)).toBe(true);
          expect(s.slot).toBeGreaterThanOrEqual(1);
          expect(s.slot).toBeLessThanOrEqual(s.service.spec.replicas);
          if (s.nodeId === '') expect(eligible.size, 'pending create while a node is eligible').toBe(0);
          else expect(eligible.has(s.nodeId), `create on ineligible node ${s.nodeId}`).toBe(true);
        }
        if (s.kind === 'assign') {
          expect(eligible.has(s.nodeId), `assign to ineligible node '${s.nodeId}'`).toBe(true);
          expect(s.task.nodeId).toBe('');
        }
        if (s.kind === 'delete') {
          expect(TERMINAL.has(s.task.status.state) && s.task.addressesReleased).toBe(true);
        }
        if (s.kind === 'release') {
          expect(TERMINAL.has(s.task.status.state) && !s.task.addressesReleased).toBe(true);
        }
      }
      // Every slot 1..replicas of every service is either kept or created, unless an outdated
      // task of the slot is stopping first (stop-first update: now or already), or the slot's
      // latest task was ended for good by its restart policy under the current spec.
      const updating = new Set(out.flatMap((s) => (s.kind === 'shutdown' && s.reason === 'service updated' ? [`${s.task.serviceId}/${s.task.slot}`] : [])));
      for (const svc of services) {
        for (let slot = 1; slot <= svc.spec.replicas; slot++) {
          const k = `${svc.id}/${slot}`;
          const mine = tasks.filter((t) => t.serviceId === svc.id && t.slot === slot);
          const holding = mine.some((t) => t.specHash === 'stale' && t.desiredState === 'shutdown' && !TERMINAL.has(t.status.state) && !ending.has(t.id)
            && nodes.some((n) => n.id === t.nodeId && n.state === 'ready' && n.availability !== 'drain'));
          const latest = mine[0];
          const done = latest !== undefined && mine.every((t) => t.createdAt === latest.createdAt) && mine.some((t) => t.specHash !== 'stale' && (t.status.state === 'complete' || t.status.state === 'failed'));
          expect(kept.has(k) || created.has(k) || updating.has(k) || holding || done, `slot ${k} left empty`).toBe(true);
        }
      }
      // A task gets at most one step.
      const ids = out.flatMap((s) => ('task' in s ? [s.task.id] : []));
      expect(new Set(ids).size).toBe(ids.length);
    }), { numRuns: 500 });
  });
});
