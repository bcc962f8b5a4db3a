/**
 * From cluster state to load-balancer state (pure), and the proxier's diffing, against a
 * recording fake dataplane: which tasks are backends (serving, draining, unhealthy, down
 * node), one virtual service per VIP and port, and that a change touches only its service.
 */
import { describe, expect, it } from 'vitest';
import { canonical, diffVirtualServices, tasksByService, vipServicesFor } from '../../ingress/desired.js';
import { Proxier } from '../../ingress/proxier.js';
import { vsKey, type LbBackendStats, type LoadBalancer, type VirtualService } from '../../ingress/types.js';
import type { Node, Service, Task } from '../../src/model/types.js';

const node = (id: string, state: Node['state'] = 'ready'): Node => ({ id, name: id, address: '192.0.2.1', state, availability: 'active', lease: 0, labels: {}, createdAt: '', updatedAt: '' });
const service = (id: string, name: string, extra: Partial<Service['spec']> = {}, vips: Service['vips'] = { n1: { v4: `10.0.0.${id.length + 1}` } }): Service => ({
  id, version: 1, createdAt: '', updatedAt: '', vips,
  spec: { name, endpointMode: 'vip', replicas: 1, ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }], networks: [{ network: 'n1', aliases: [] }], command: ['x'], env: {}, labels: {}, ...extra },
});
let seq = 0;
const task = (svc: Service, addr: string, o: { desired?: Task['desiredState']; state?: Task['status']['state']; healthy?: boolean; node?: string } = {}): Task => ({
  id: `t${++seq}`, serviceId: svc.id, serviceName: svc.spec.name, slot: seq, nodeId: o.node ?? 'a', desiredState: o.desired ?? 'running',
  status: { state: o.state ?? 'running', message: '', since: '', ...(o.healthy !== undefined ? { healthy: o.healthy } : {}) },
  addresses: { n1: { v4: addr } }, serviceVersion: 1, specHash: '', createdAt: '',
});
const nodes = new Map([['a', node('a')], ['b', node('b')], ['down', node('down', 'down')]]);

describe('vipServicesFor', () => {
  it('lists serving tasks with weight 1 and draining ones with weight 0; skips unhealthy, starting and down-node tasks', () => {
    const web = service('w', 'web');
    const tasks = [
      task(web, '10.0.0.11'),
      task(web, '10.0.0.12', { node: 'b', healthy: true }),
      task(web, '10.0.0.13', { desired: 'shutdown' }), // draining
      task(web, '10.0.0.14', { healthy: false }), // failed (or not yet passed) its check
      task(web, '10.0.0.15', { state: 'starting' }),
      task(web, '10.0.0.16', { node: 'down' }),
      task(web, '10.0.0.17', { desired: 'shutdown', state: 'shutdown' }), // gone
    ];
    const all = vipServicesFor(['n1'], [web], tasksByService(tasks), nodes);
    // Every port of the VIP, TCP and UDP (the declared port 80 included): the destination port kept (0).
    expect(all.map(vsKey)).toEqual(['tcp/10.0.0.2/0', 'udp/10.0.0.2/0']);
    expect(all[0]).toEqual({
      address: '10.0.0.2', port: 0, protocol: 'tcp', scheduler: 'rr', service: 'web',
      backends: [{ address: '10.0.0.11', port: 0, weight: 1 }, { address: '10.0.0.12', port: 0, weight: 1 }, { address: '10.0.0.13', port: 0, weight: 0 }],
    });
    expect(all[1]?.backends).toEqual(all[0]?.backends);
  });

  it('a vip service with no declared port still gets its every-port services (Swarm: a VIP carries every port)', () => {
    const db = service('d', 'db', { ports: [] });
    const got = vipServicesFor(['n1'], [db], tasksByService([task(db, '10.0.0.31')]), nodes);
    expect(got.map(vsKey)).toEqual(['tcp/10.0.0.2/0', 'udp/10.0.0.2/0']);
    expect(got[0]?.backends).toEqual([{ address: '10.0.0.31', port: 0, weight: 1 }]);
  });

  it('one every-port virtual service per VIP family and protocol, declared ports included, with the service\'s settings; only networks the sandbox is on; dnsrr has none', () => {
    const web = service('w', 'web', {
      ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }, { target: 53, published: 5353, protocol: 'udp', mode: 'ingress' }, { target: 80, published: 9090, protocol: 'tcp', mode: 'host' }],
      scheduler: 'wrr', affinityTimeoutSeconds: 30,
    }, { n1: { v4: '10.0.0.2', v6: 'fd00::2' } });
    const other = service('o', 'other', { networks: [{ network: 'n2', aliases: [] }] }, { n2: { v4: '10.9.0.2' } });
    const rr = service('r', 'rr', { endpointMode: 'dnsrr' }, {});
    const got = vipServicesFor(['n1'], [web, other, rr], new Map(), nodes);
    expect(got.map(vsKey).sort()).toEqual(['tcp/10.0.0.2/0', 'tcp/[fd00::2]/0', 'udp/10.0.0.2/0', 'udp/[fd00::2]/0']);
    expect(got.every((v) => v.scheduler === 'wrr' && v.affinity?.timeoutSeconds === 30)).toBe(true);
  });
});

describe('diffVirtualServices', () => {
  const vs = (addr: string, backends: string[]): VirtualService => ({ address: addr, port: 80, protocol: 'tcp', scheduler: 'rr', service: addr, backends: backends.map((b) => ({ address: b, port: 80, weight: 1 })) });
  it('names only changed, new and removed services; backend order does not matter', () => {
    const applied = new Map([vs('10.0.0.1', ['a', 'b']), vs('10.0.0.2', ['c']), vs('10.0.0.3', ['d'])].map((v) => [vsKey(v), v]));
    const desired = [vs('10.0.0.1', ['b', 'a']), vs('10.0.0.2', ['c', 'e']), vs('10.0.0.4', [])];
    const d = diffVirtualServices(applied, desired);
    expect(d.upsert.map(vsKey)).toEqual(['tcp/10.0.0.2/80', 'tcp/10.0.0.4/80']);
    expect(d.remove).toEqual(['tcp/10.0.0.3/80']);
    expect(canonical(vs('1', ['a', 'b']))).toBe(canonical(vs('1', ['b', 'a'])));
  });
});

/** A dataplane that records calls. */
class RecordingLb implements LoadBalancer {
  readonly kind = 'userspace' as const;
  readonly calls: string[] = [];
  private readonly state = new Map<string, VirtualService>();
  failNext = false;
  async syncAll(services: readonly VirtualService[]): Promise<void> {
    this.calls.push(`syncAll ${services.map(vsKey).join(',')}`);
    this.state.clear();
    for (const s of services) this.state.set(vsKey(s), s);
  }
  async apply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    if (this.failNext) { this.failNext = false; throw new Error('injected'); }
    this.calls.push(`apply +${upsert.map(vsKey).join(',')} -${remove.join(',')}`);
    for (const s of upsert) this.state.set(vsKey(s), s);
    for (const k of remove) this.state.delete(k);
  }
  applied(): ReadonlyMap<string, VirtualService> { return this.state; }
  async stats(): Promise<LbBackendStats[]> { return []; }
  async cleanup(): Promise<void> { this.calls.push('cleanup'); }
  async close(): Promise<void> { /* nothing */ }
}

describe('Proxier', () => {
  const vs = (addr: string, b: string): VirtualService => ({ address: addr, port: 80, protocol: 'tcp', scheduler: 'rr', service: addr, backends: [{ address: b, port: 80, weight: 1 }] });
  it('first sync is a full sync; then only differences; no change = no call; a failure forces a full resync', async () => {
    const lb = new RecordingLb();
    const p = new Proxier(lb);
    await p.sync([vs('10.0.0.1', 'a'), vs('10.0.0.2', 'b')]);
    expect(await p.sync([vs('10.0.0.1', 'a'), vs('10.0.0.2', 'b')])).toBe(0);
    await p.sync([vs('10.0.0.1', 'a'), vs('10.0.0.2', 'c')]);
    lb.failNext = true;
    await expect(p.sync([vs('10.0.0.1', 'z')])).rejects.toThrow('injected');
    await p.sync([vs('10.0.0.1', 'z')]);
    expect(lb.calls).toEqual([
      'syncAll tcp/10.0.0.1/80,tcp/10.0.0.2/80',
      'apply +tcp/10.0.0.2/80 -',
      'syncAll tcp/10.0.0.1/80',
    ]);
  });

  it('serializes concurrent syncs', async () => {
    const lb = new RecordingLb();
    const p = new Proxier(lb);
    await Promise.all([p.sync([vs('10.0.0.1', 'a')]), p.sync([vs('10.0.0.1', 'b')]), p.sync([vs('10.0.0.1', 'c')])]);
    expect(lb.calls).toEqual(['syncAll tcp/10.0.0.1/80', 'apply +tcp/10.0.0.1/80 -', 'apply +tcp/10.0.0.1/80 -']);
    expect(lb.applied().get('tcp/10.0.0.1/80')?.backends[0]?.address).toBe('c');
  });
});
