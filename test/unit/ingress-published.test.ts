/**
 * Published ports from cluster state (pure, ingress/published.ts), the ingress network's
 * overlay peers (other nodes' ingress sandboxes) and the node's bound-port scan: the logic
 * behind test/integration/ingress-mesh.test.ts, case by case.
 */
import { describe, expect, it } from 'vitest';
import { tasksByService } from '../../ingress/desired.js';
import { publishedServices } from '../../ingress/published.js';
import { parseSocketTable } from '../../mesh/agent/bound-ports.js';
import { peersOf } from '../../mesh/agent/networks.js';
import type { Network, Node, PortConfig, Service, Task } from '../../src/model/types.js';

const INGRESS = 'ing';
const APP = 'app';
const net = (id: string, extra: Partial<Network> = {}): Network => ({
  id, name: id, driver: 'overlay', scope: 'swarm', ipam: { v4: { subnet: '10.0.0.0/24', gateway: '10.0.0.1' } }, vni: 4097, options: {}, labels: {}, createdAt: '', ...extra,
});
const networks = new Map([[INGRESS, net(INGRESS, { ingress: true })], [APP, net(APP)], ['mv', net('mv', { driver: 'macvlan' })]]);
const node = (id: string, n: number, state: Node['state'] = 'ready'): Node => ({
  id, name: id, address: `192.0.2.${n}`, state, availability: 'active', lease: 0, labels: {}, createdAt: '', updatedAt: '',
  ingress: { network: INGRESS, v4: `10.255.0.${n}` },
});
const nodes = new Map([['a', node('a', 1)], ['b', node('b', 2)], ['c', node('c', 3, 'down')]]);
const tcp = (published: number, target: number, mode: PortConfig['mode'] = 'ingress'): PortConfig => ({ published, target, protocol: 'tcp', mode });
const service = (id: string, ports: PortConfig[], extra: Partial<Service['spec']> = {}): Service => ({
  id, version: 1, createdAt: '', updatedAt: '', vips: {},
  spec: { name: id, endpointMode: 'vip', replicas: 1, ports, networks: [{ network: APP, aliases: [] }], command: ['x'], env: {}, labels: {}, ...extra },
});
let seq = 0;
const task = (svc: Service, nodeId: string, o: { desired?: Task['desiredState']; state?: Task['status']['state']; healthy?: boolean } = {}): Task => {
  const n = ++seq;
  return {
    id: `t${n}`, serviceId: svc.id, serviceName: svc.spec.name, slot: n, nodeId, desiredState: o.desired ?? 'running',
    status: { state: o.state ?? 'running', message: '', since: '', ...(o.healthy !== undefined ? { healthy: o.healthy } : {}) },
    addresses: { [APP]: { v4: `10.1.0.${n}` }, [INGRESS]: { v4: `10.255.1.${n}` } }, serviceVersion: 1, specHash: '', createdAt: '',
  };
};
const selfA = { id: 'a', address: '192.0.2.1', ingress: { network: INGRESS, v4: '10.255.0.1' } };
const run = (services: Service[], tasks: Task[], self = selfA) => publishedServices({ services, byService: tasksByService(tasks), nodes, networks, self });

describe('publishedServices', () => {
  it('cluster policy: every local address of the node -> own ingress sandbox; sandbox -> every serving replica on any node, masqueraded', () => {
    const web = service('web', [tcp(8080, 80)], { scheduler: 'wrr', affinityTimeoutSeconds: 30 });
    const tasks = [task(web, 'a'), task(web, 'b'), task(web, 'b', { healthy: false }), task(web, 'c'), task(web, 'b', { desired: 'shutdown' })];
    const s = run([web], tasks);
    expect(s.host).toEqual([{ address: '0.0.0.0', port: 8080, protocol: 'tcp', service: 'web', scheduler: 'rr', backends: [{ address: '10.255.0.1', port: 8080, weight: 1 }] }]);
    expect(s.sandbox).toEqual([{
      address: '10.255.0.1', port: 8080, protocol: 'tcp', service: 'web', scheduler: 'wrr', affinity: { timeoutSeconds: 30 }, masquerade: true,
      // serving on a and b (weight 1), the draining one on b (weight 0); not the unhealthy one, not the down node's
      backends: [{ address: tasks[0]!.addresses[INGRESS]!.v4, port: 80, weight: 1 }, { address: tasks[1]!.addresses[INGRESS]!.v4, port: 80, weight: 1 }, { address: tasks[4]!.addresses[INGRESS]!.v4, port: 80, weight: 0 }],
    }]);
    expect(s.ports).toEqual([{ service: 'web', port: 8080, protocol: 'tcp', mode: 'ingress', serving: 2 }]);
  });

  it('a node with no replica of a cluster-policy service still publishes it (through its sandbox)', () => {
    const web = service('web', [tcp(8080, 80), { published: 5353, target: 53, protocol: 'udp', mode: 'ingress' }]);
    const s = run([web], [task(web, 'b')]);
    expect(s.host.map((v) => `${v.protocol}/${v.port}`)).toEqual(['tcp/8080', 'udp/5353']);
    expect(s.sandbox.map((v) => v.backends.length)).toEqual([1, 1]);
  });

  it('local policy: straight to this node\'s own replicas on their default-route network, no SNAT; none here = refuse (empty)', () => {
    const loc = service('loc', [tcp(8070, 80)], { trafficPolicy: 'local' });
    const here = task(loc, 'a');
    const s = run([loc], [here, task(loc, 'b')]);
    expect(s.sandbox).toEqual([]);
    expect(s.host).toEqual([{ address: '0.0.0.0', port: 8070, protocol: 'tcp', service: 'loc', scheduler: 'rr', backends: [{ address: here.addresses[APP]!.v4, port: 80, weight: 1 }] }]);
    expect(s.host[0]?.masquerade).toBeUndefined();
    const onB = run([loc], [task(loc, 'b')]);
    expect(onB.host).toEqual([{ address: '0.0.0.0', port: 8070, protocol: 'tcp', service: 'loc', scheduler: 'rr', backends: [] }]);
  });

  it('host mode: only where a replica is meant to run (an unhealthy one keeps the port, refusing)', () => {
    const hst = service('hst', [tcp(8081, 80, 'host')]);
    expect(run([hst], [task(hst, 'b')]).host).toEqual([]);
    const sick = run([hst], [task(hst, 'a', { healthy: false })]);
    expect(sick.host).toEqual([{ address: '0.0.0.0', port: 8081, protocol: 'tcp', service: 'hst', scheduler: 'rr', backends: [] }]);
    expect(sick.ports).toEqual([{ service: 'hst', port: 8081, protocol: 'tcp', mode: 'host', serving: 0 }]);
    const ended = run([hst], [task(hst, 'a', { desired: 'shutdown', state: 'shutdown' })]);
    expect(ended.host).toEqual([]);
  });

  it('a direct backend without its own network is reached on the ingress network; macvlan-first services are not reachable directly', () => {
    const bare = service('bare', [tcp(8082, 80)], { trafficPolicy: 'local', networks: [] });
    const t = task(bare, 'a');
    expect(run([bare], [t]).host[0]?.backends).toEqual([{ address: t.addresses[INGRESS]!.v4, port: 80, weight: 1 }]);
    const mv = service('mv', [tcp(8083, 80)], { trafficPolicy: 'local', networks: [{ network: 'mv', aliases: [] }] });
    expect(run([mv], [task(mv, 'a')]).host[0]?.backends).toEqual([]);
  });

  it('without an ingress sandbox, cluster-policy ports are not published (local and host ones still are)', () => {
    const web = service('web', [tcp(8080, 80)]);
    const hst = service('hst', [tcp(8081, 80, 'host')]);
    const s = run([web, hst], [task(web, 'a'), task(hst, 'a')], { id: 'a', address: '192.0.2.1' } as typeof selfA);
    expect(s.host.map((v) => v.port)).toEqual([8081]);
    expect(s.sandbox).toEqual([]);
  });

  it('frontends are on every local address of the node\'s family (0.0.0.0 / ::); with shared namespaces at the node\'s address', () => {
    const web = service('web', [tcp(8080, 80)], { trafficPolicy: 'local' });
    expect(run([web], [task(web, 'a')]).host.map((v) => v.address)).toEqual(['0.0.0.0']);
    expect(run([web], [task(web, 'a')], { ...selfA, address: '2001:db8::1' }).host.map((v) => v.address)).toEqual(['::']);
    const shared = publishedServices({ services: [web], byService: tasksByService([task(web, 'a')]), nodes, networks, self: selfA, shared: true });
    expect(shared.host.map((v) => v.address)).toEqual(['192.0.2.1']);
  });

  it('services without ports publish nothing', () => {
    const s = run([service('x', [])], []);
    expect(s).toEqual({ host: [], sandbox: [], ports: [] });
  });
});

describe('publishedServices, tasks sharing their node\'s namespace (userspace, no root)', () => {
  it('cluster: straight from the node to every serving replica at its node\'s address; local and host: this node\'s', () => {
    const web = service('web', [tcp(8080, 80)]);
    const loc = service('loc', [tcp(8070, 80)], { trafficPolicy: 'local' });
    const hst = service('hst', [tcp(8081, 80, 'host')]);
    const tasks = [task(web, 'a'), task(web, 'b'), task(web, 'c'), task(web, 'b', { healthy: false }), task(loc, 'a'), task(loc, 'b'), task(hst, 'b')];
    const s = publishedServices({ services: [web, loc, hst], byService: tasksByService(tasks), nodes, networks, self: selfA, shared: true });
    expect(s.sandbox).toEqual([]);
    expect(s.host.map((v) => [v.service, v.address, v.port, v.backends.map((b) => `${b.address}:${b.port}/${b.weight}`)])).toEqual([
      ['loc', '192.0.2.1', 8070, ['192.0.2.1:80/1']],
      ['web', '192.0.2.1', 8080, ['192.0.2.1:80/1', '192.0.2.2:80/1']], // not the down node's, not the unhealthy one
    ]);
  });
});

describe('peersOf (ingress network)', () => {
  it('adds every other ready node\'s ingress sandbox to the remote task endpoints; not on other networks', () => {
    const web = service('web', [tcp(8080, 80)]);
    const t = task(web, 'b');
    const peers = peersOf(networks.get(INGRESS) as Network, [t], nodes, 'a');
    expect(peers.map((p) => [p.ip, p.vtep])).toEqual([[t.addresses[INGRESS]!.v4, '192.0.2.2'], ['10.255.0.2', '192.0.2.2']]);
    expect(peersOf(networks.get(APP) as Network, [t], nodes, 'a').map((p) => p.ip)).toEqual([t.addresses[APP]!.v4]);
  });
});

describe('parseSocketTable (/proc/net)', () => {
  const tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0B0211AC:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0B0211AC:1F93 0300A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   4: 0C0211AC:1F94 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
`;
  it('counts listeners on the wildcard and on the node address only (not loopback, not other addresses, not established)', () => {
    // 0B0211AC = 172.17.2.11 (little-endian hex), ports 0x1F90.. = 8080..
    expect(parseSocketTable(tcp4, '0A', false, '172.17.2.11')).toEqual([8080, 8082]);
  });
  it('IPv6: only the wildcard counts', () => {
    const tcp6 = `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:0051 00000000000000000000000000000000:0000 0A 0
`;
    expect(parseSocketTable(tcp6, '0A', true, '172.17.2.11')).toEqual([80]);
  });
});
