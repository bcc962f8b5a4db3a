/**
 * `--filter` with Docker's semantics on every list: same key repeated = OR, different keys =
 * AND; each command's keys and matching rules (prefix ids, names, labels, fixed values); unknown
 * keys and values refused with the known ones.
 */
import { describe, expect, it } from 'vitest';
import { EVENT_FILTERS } from '../../mesh/cli/events.js';
import { applyFilters, matchLabel, parseFilters, type FilterSpec } from '../../mesh/cli/filters.js';
import { NETWORK_FILTERS, NODE_FILTERS, SERVICE_FILTERS, taskFilters } from '../../mesh/cli/views.js';
import type { ClusterEvent } from '../../mesh/api/events.js';
import { isShoalError } from '../../src/errors.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';

const svc = (id: string, name: string, labels: Record<string, string> = {}, mode?: string): Service => ({
  id, version: 1, vips: {}, createdAt: '', updatedAt: '',
  spec: { name, endpointMode: 'vip', replicas: 1, ports: [], networks: [], command: ['x'], env: {}, labels, ...(mode ? { mode } : {}) } as Service['spec'],
});
const services = [svc('aa11', 'web', { tier: 'front' }), svc('aa22', 'web-admin', { tier: 'back', team: 'x' }), svc('bb33', 'db', { tier: 'back' }), svc('cc44', 'agent', {}, 'global')];

const net = (id: string, name: string, driver: Network['driver'], labels: Record<string, string> = {}): Network => ({
  id, name, driver, scope: driver === 'overlay' ? 'swarm' : 'local', ipam: { v4: { subnet: '10.0.0.0/24', gateway: '10.0.0.1' } }, options: {}, labels, createdAt: '',
});
const networks = [net('n1', 'app', 'overlay', { env: 'prod' }), net('n2', 'backend', 'bridge'), net('n3', 'lan', 'macvlan', { env: 'dev' }), net('n4', 'mapped', 'overlay')];

const node = (id: string, name: string, availability: Node['availability'], labels: Record<string, string> = {}, role?: string): Node => ({
  id, name, address: '10.0.0.1', state: 'ready', availability, lease: 0, labels, createdAt: '', updatedAt: '', ...(role ? { role } : {}),
} as Node);
const nodes = [node('d1', 'node-1', 'active', { zone: 'a' }, 'manager'), node('d2', 'node-2', 'drain', { zone: 'b' }), node('d3', 'other', 'pause')];

const task = (id: string, slot: number, nodeId: string, desired: Task['desiredState'], state: Task['status']['state']): Task => ({
  id, serviceId: 'aa11', serviceName: 'web', slot, nodeId, desiredState: desired, status: { state, message: '', since: '' }, addresses: {}, serviceVersion: 1, specHash: '', createdAt: '',
});
const tasks = [task('t1', 1, 'd1', 'running', 'running'), task('t2', 2, 'd2', 'running', 'starting'), task('t3', 1, 'd1', 'shutdown', 'shutdown'), task('t4', 12, 'd3', 'running', 'running')];

function ids<T extends { id: string }>(objs: T[], list: string[], spec: FilterSpec<T>): string[] {
  return applyFilters(objs, parseFilters(list, spec, 'test'), spec).map((o) => o.id);
}

describe('service ls --filter', () => {
  it.each<[string[], string[]]>([
    [[], ['aa11', 'aa22', 'bb33', 'cc44']],
    [['name=web'], ['aa11', 'aa22']], // a prefix, as Docker
    [['name=web-'], ['aa22']],
    [['name=db', 'name=agent'], ['bb33', 'cc44']], // same key: OR
    [['id=aa'], ['aa11', 'aa22']],
    [['id=aa11'], ['aa11']],
    [['label=tier'], ['aa11', 'aa22', 'bb33']],
    [['label=tier=back'], ['aa22', 'bb33']],
    [['label=tier=back', 'label=team'], ['aa22', 'bb33']], // OR within label
    [['label=tier=back', 'name=web'], ['aa22']], // different keys: AND
    [['mode=replicated'], ['aa11', 'aa22', 'bb33']],
    [['mode=global'], ['cc44']],
    [['name=zzz'], []],
  ])('%j', (list, want) => {
    expect(ids(services, list, SERVICE_FILTERS)).toEqual(want);
  });
});

describe('service ps --filter', () => {
  const spec = taskFilters(nodes);
  it.each<[string[], string[]]>([
    [['desired-state=running'], ['t1', 't2', 't4']],
    [['desired-state=shutdown'], ['t3']],
    [['desired-state=accepted'], ['t2']],
    [['desired-state=running', 'desired-state=shutdown'], ['t1', 't2', 't3', 't4']],
    [['node=node-1'], ['t1', 't3']],
    [['node=d2'], ['t2']],
    [['node=node-1', 'desired-state=running'], ['t1']],
    [['name=web.1'], ['t1', 't3', 't4']], // prefix: web.1 and web.12
    [['name=web.2'], ['t2']],
    [['id=t4'], ['t4']],
  ])('%j', (list, want) => {
    expect(ids(tasks, list, spec)).toEqual(want);
  });
});

describe('network ls --filter', () => {
  it.each<[string[], string[]]>([
    [['name=pp'], ['n1', 'n4']], // a substring, as Docker
    [['name=app'], ['n1', 'n4']],
    [['id=n2'], ['n2']],
    [['driver=overlay'], ['n1', 'n4']],
    [['driver=bridge', 'driver=macvlan'], ['n2', 'n3']],
    [['label=env'], ['n1', 'n3']],
    [['label=env=dev'], ['n3']],
    [['scope=swarm'], ['n1', 'n4']],
    [['scope=local', 'name=lan'], ['n3']],
  ])('%j', (list, want) => {
    expect(ids(networks, list, NETWORK_FILTERS)).toEqual(want);
  });
});

describe('node ls --filter', () => {
  it.each<[string[], string[]]>([
    [['role=manager'], ['d1']],
    [['role=worker'], ['d2', 'd3']],
    [['availability=drain', 'availability=pause'], ['d2', 'd3']],
    [['name=node'], ['d1', 'd2']],
    [['id=d3'], ['d3']],
    [['label=zone=a'], ['d1']],
    [['node.label=zone'], ['d1', 'd2']],
    [['label=zone', 'availability=active'], ['d1']],
  ])('%j', (list, want) => {
    expect(ids(nodes, list, NODE_FILTERS)).toEqual(want);
  });
});

describe('events --filter', () => {
  const ev = (type: ClusterEvent['type'], action: ClusterEvent['action'], id: string, attributes: Record<string, string>): ClusterEvent => ({ time: 0, revision: 1, type, action, id, attributes });
  const events = [
    ev('service', 'create', 's1', { name: 'web' }),
    ev('task', 'update', 'k1', { name: 'web.1.k1', service: 'web', serviceId: 's1', nodeId: 'd1', state: 'running' }),
    ev('node', 'update', 'd1', { name: 'node-1', state: 'down' }),
    ev('network', 'remove', 'n1', { name: 'app' }),
  ];
  it.each<[string[], string[]]>([
    [['type=service', 'type=network'], ['s1', 'n1']],
    [['event=update'], ['k1', 'd1']],
    [['service=web'], ['s1', 'k1']], // the service and its tasks
    [['node=d1'], ['k1', 'd1']],
    [['node=node-1'], ['d1']],
    [['network=app'], ['n1']],
    [['name=web'], ['s1']],
    [['type=task', 'service=s1'], ['k1']],
  ])('%j', (list, want) => {
    expect(applyFilters(events, parseFilters(list, EVENT_FILTERS, 'events'), EVENT_FILTERS).map((e) => e.id)).toEqual(want);
  });
});

describe('refusals', () => {
  function errorOf(fn: () => unknown): string {
    try { fn(); } catch (e) { expect(isShoalError(e) && e.kind).toBe('InvalidParameter'); return (e as Error).message; }
    throw new Error('expected an error');
  }
  it.each<[string, FilterSpec<never>, string, string]>([
    ['unknown key', SERVICE_FILTERS as FilterSpec<never>, 'colour=red', "--filter 'colour' is not a filter of test (known: id, name, label, mode)"],
    ['not KEY=VALUE', SERVICE_FILTERS as FilterSpec<never>, 'web', "--filter 'web' must be KEY=VALUE (test filters: id, name, label, mode)"],
    ['empty key', NETWORK_FILTERS as FilterSpec<never>, '=x', "--filter '=x' must be KEY=VALUE (test filters: id, name, driver, label, scope)"],
    ['bad mode', SERVICE_FILTERS as FilterSpec<never>, 'mode=daemon', "--filter mode='daemon' must be one of replicated, global"],
    ['bad driver', NETWORK_FILTERS as FilterSpec<never>, 'driver=host', "--filter driver='host' must be one of bridge, overlay, macvlan"],
    ['bad role', NODE_FILTERS as FilterSpec<never>, 'role=leader', "--filter role='leader' must be one of manager, worker"],
    ['bad desired state', taskFilters([]) as FilterSpec<never>, 'desired-state=done', "--filter desired-state='done' must be one of running, shutdown, accepted"],
    ['unknown event key', EVENT_FILTERS as FilterSpec<never>, 'container=x', "--filter 'container' is not a filter of test (known: type, event, name, id, service, node, network)"],
  ])('%s', (_n, spec, f, message) => {
    expect(errorOf(() => parseFilters([f], spec, 'test'))).toBe(message);
  });

  it('label= with and without a value', () => {
    expect(matchLabel({ a: '1' }, 'a')).toBe(true);
    expect(matchLabel({ a: '1' }, 'a=1')).toBe(true);
    expect(matchLabel({ a: '1' }, 'a=2')).toBe(false);
    expect(matchLabel({ a: '' }, 'a=')).toBe(true);
    expect(matchLabel(undefined, 'a')).toBe(false);
  });
});
