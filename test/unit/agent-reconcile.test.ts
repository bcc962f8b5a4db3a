/**
 * The agent's reconcilers against in-tree fakes (no root, no sockets, no real sleeps):
 * NodeLb's change tracking (a status-only change programs nothing, a health change touches
 * its service only), invalid desired state dropped before any transaction, a failing sandbox
 * not blocking the others, drift repair by resync; NodeIngress waking only for what moves a
 * published port; the per-object back-off with an injected clock; the Agent's task reconciler
 * isolating a task that cannot start.
 */
import { describe, expect, it } from 'vitest';
import { IpvsLoadBalancer } from '../../ingress/ipvs/index.js';
import { fwmarkOf } from '../../ingress/ipvs/fwmark.js';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import type { WireKv } from '../../mesh/api/watch.js';
import { Backoff } from '../../mesh/agent/counters.js';
import { Agent } from '../../mesh/agent/index.js';
import { NodeIngress } from '../../mesh/agent/ingress.js';
import { NodeLb, lbView } from '../../mesh/agent/lb.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import type { TaskEvent, TaskProcessSpec, TaskRuntime } from '../../mesh/agent/process-runtime.js';
import { FakeIpvs, FakeNft } from '../../src/kernel/index.js';
import { objectKey } from '../../src/model/keys.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';

const node = (id: string, address = '192.0.2.1'): Node => ({ id, name: id, address, state: 'ready', availability: 'active', lease: 0, labels: {}, createdAt: '', updatedAt: '' });
const svc = (id: string, name: string, vip: string, extra: Partial<Service['spec']> = {}): Service => ({
  id, version: 1, createdAt: '', updatedAt: '', vips: { net: { v4: vip } },
  spec: { name, endpointMode: 'vip', replicas: 2, ports: [{ target: 80, published: 0, protocol: 'tcp', mode: 'ingress' }], networks: [{ network: 'net', aliases: [] }], command: ['x'], env: {}, labels: {}, ...extra },
});
const task = (id: string, s: Service, addr: string, status: Partial<Task['status']> = {}, nodeId = 'n1'): Task => ({
  id, serviceId: s.id, serviceName: s.spec.name, slot: 1, nodeId, desiredState: 'running',
  status: { state: 'running', message: '', since: '', ...status },
  addresses: { net: { v4: addr } }, serviceVersion: 1, specHash: '', createdAt: '',
});
const bridgeNet: Network = { id: 'net', name: 'app', driver: 'bridge', scope: 'local', ipam: { v4: { subnet: '10.0.0.0/24', gateway: '10.0.0.1' } }, options: {}, labels: {}, createdAt: '' };
const kv = (kind: 'services' | 'tasks' | 'nodes' | 'networks', o: { id: string }): WireKv => ({ key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: 1 });
let rev = 10;
const put = (index: LocalIndex, kind: 'services' | 'tasks' | 'nodes', o: object & { id: string }): void => {
  rev++;
  index.applyEvents([{ type: 'put', key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: rev }], rev);
};
/** The calls naming one kernel service (`fwmark/<mark>/inet`: see {@link fw}). */
const callsOf = (ipvs: FakeIpvs, key: string): string[] => ipvs.calls.filter((c) => c.includes(`${key} `));
/** The kernel key of a VIP's every-port (fwmark) service for `protocol`. */
const fw = (vip: string, protocol: 'tcp' | 'udp'): string => `fwmark/${fwmarkOf(vip, protocol)}/inet`;

function setup(): { index: LocalIndex; ipvs: FakeIpvs; lb: NodeLb; web: Service; db: Service } {
  const web = svc('s1', 'web', '10.0.0.2');
  const db = svc('s2', 'db', '10.0.0.3');
  const index = new LocalIndex();
  index.applyList([kv('nodes', node('n1')), kv('services', web), kv('services', db),
    kv('tasks', task('a', web, '10.0.0.11')), kv('tasks', task('b', web, '10.0.0.12')), kv('tasks', task('c', db, '10.0.0.21'))], 5);
  const ipvs = new FakeIpvs();
  const lb = new NodeLb(index, { kind: 'ipvs', make: () => new IpvsLoadBalancer({ ipvs, nft: new FakeNft() }) });
  index.onChange((c) => lb.changed(c));
  return { index, ipvs, lb, web, db };
}

describe('NodeLb change tracking', () => {
  it('a status-only change programs nothing; a health change touches its service only', async () => {
    const { index, ipvs, lb, web } = setup();
    await lb.ensureSandbox('client', 'sbx', ['net']);
    expect(ipvs.dump()).toContain(`FWM  ${fwmarkOf('10.0.0.2', 'tcp')} rr`);
    ipvs.calls.length = 0;
    const applies = lb.applies;
    lb.start();
    put(index, 'tasks', task('b', web, '10.0.0.12', { message: 'still fine' }));
    await lb.idle();
    expect(lb.applies).toBe(applies);
    expect(ipvs.calls).toEqual([]);
    put(index, 'tasks', task('b', web, '10.0.0.12', { healthy: false }));
    await lb.idle();
    await lb.stop();
    expect(lb.applies).toBe(applies + 1);
    // The VIP's two every-port (fwmark) services, TCP and UDP, lose b; nothing else.
    expect(ipvs.calls.sort()).toEqual([`delDest ${fw('10.0.0.2', 'tcp')} 10.0.0.12:0`, `delDest ${fw('10.0.0.2', 'udp')} 10.0.0.12:0`].sort());
  });

  it('lbView ignores messages and timestamps, not health, node, state or addresses', () => {
    const s = svc('s', 'x', '10.0.0.9');
    const t = task('t', s, '10.0.0.10');
    expect(lbView(t)).toBe(lbView({ ...t, status: { ...t.status, message: 'm', since: 'now' } }));
    expect(lbView(t)).not.toBe(lbView({ ...t, status: { ...t.status, healthy: false } }));
    expect(lbView(t)).not.toBe(lbView({ ...t, nodeId: 'n2' }));
    expect(lbView(t)).not.toBe(lbView({ ...t, desiredState: 'shutdown' }));
    expect(lbView(t)).not.toBe(lbView({ ...t, addresses: { net: { v4: '10.0.0.99' } } }));
  });

  it('a node going down removes its backends from every service that has one there', async () => {
    const { index, ipvs, lb, web, db } = setup();
    put(index, 'nodes', node('n2', '192.0.2.2'));
    put(index, 'tasks', task('d', web, '10.0.0.13', {}, 'n2'));
    put(index, 'tasks', task('e', db, '10.0.0.22', {}, 'n2'));
    await lb.ensureSandbox('client', 'sbx', ['net']);
    ipvs.calls.length = 0;
    lb.start();
    const down: Node = { ...node('n2', '192.0.2.2'), state: 'down' };
    put(index, 'nodes', down);
    await lb.idle();
    await lb.stop();
    expect(ipvs.calls.sort()).toEqual([
      `delDest ${fw('10.0.0.2', 'tcp')} 10.0.0.13:0`, `delDest ${fw('10.0.0.2', 'udp')} 10.0.0.13:0`,
      `delDest ${fw('10.0.0.3', 'tcp')} 10.0.0.22:0`, `delDest ${fw('10.0.0.3', 'udp')} 10.0.0.22:0`,
    ].sort());
  });

  it('drops a virtual service that cannot be programmed, counts it, and programs the others', async () => {
    const { index, ipvs, lb } = setup();
    const bad = svc('s3', 'bad', 'not-an-ip');
    const logs: string[] = [];
    const lb2 = new NodeLb(index, { kind: 'ipvs', make: () => new IpvsLoadBalancer({ ipvs, nft: new FakeNft() }), log: (m) => logs.push(m) });
    put(index, 'services', bad);
    await lb2.ensureSandbox('client', 'sbx', ['net']);
    expect(ipvs.dump()).toContain(`FWM  ${fwmarkOf('10.0.0.2', 'tcp')} rr`);
    expect(ipvs.dump()).toContain(`FWM  ${fwmarkOf('10.0.0.3', 'tcp')} rr`);
    expect(lb2.counters.invalid.get('lb')).toBeGreaterThan(0);
    expect(logs.some((l) => l.includes('not-an-ip') && l.includes('left out'))).toBe(true);
    await lb.stop();
    await lb2.stop();
  });

  it('a sandbox whose dataplane fails does not stop the others; it is retried with a full sync', async () => {
    const { index, lb, web } = setup();
    const good = new FakeIpvs();
    const bad = new FakeIpvs();
    const lb2 = new NodeLb(index, { kind: 'ipvs', make: (ns) => new IpvsLoadBalancer({ ipvs: ns === 'bad' ? bad : good, nft: new FakeNft() }) });
    index.onChange((c) => lb2.changed(c));
    await lb2.ensureSandbox('t-good', 'good', ['net']);
    await lb2.ensureSandbox('t-bad', 'bad', ['net']);
    good.calls.length = 0;
    bad.failNext('EIO');
    const failures: number[] = [];
    lb2.start();
    put(index, 'tasks', task('b', web, '10.0.0.12', { healthy: false }));
    for (let i = 0; i < 200 && !(lb2.syncFailures > 0 && bad.dump() === good.dump()); i++) {
      failures.push(lb2.syncFailures);
      await new Promise((r) => setTimeout(r, 5)); // the runner's own retry timer (500 ms) is what we wait for
    }
    await lb2.stop();
    await lb.stop();
    expect(callsOf(good, fw('10.0.0.2', 'tcp'))).toEqual([`delDest ${fw('10.0.0.2', 'tcp')} 10.0.0.12:0`]);
    expect(lb2.syncFailures).toBeGreaterThan(0);
    expect(bad.dump()).toBe(good.dump());
  });

  it('resync puts back what was cleared behind its back (ipvsadm -C) and reports the repairs', async () => {
    const { ipvs, lb } = setup();
    await lb.ensureSandbox('client', 'sbx', ['net']);
    const before = ipvs.dump();
    expect(await lb.resync()).toBe(0);
    await ipvs.flush();
    expect(ipvs.dump()).toBe('');
    expect(await lb.resync()).toBeGreaterThan(0);
    expect(ipvs.dump()).toBe(before);
    expect(lb.counters.repairs.get('lb-ipvs')).toBeGreaterThan(0);
    await lb.stop();
  });

  it('nftables resync replaces the table only when it drifted', async () => {
    const web = svc('s1', 'web', '10.0.0.2');
    const index = new LocalIndex();
    index.applyList([kv('nodes', node('n1')), kv('services', web), kv('tasks', task('a', web, '10.0.0.11'))], 5);
    const nft = new FakeNft();
    const lb = new NodeLb(index, { kind: 'nftables', make: () => new NftLoadBalancer({ nft, table: 'shoal_lb' }) });
    await lb.ensureSandbox('client', 'sbx', ['net']);
    const applied = nft.applied.length;
    await nft.apply('delete table inet shoal_lb\n'); // nft flush ruleset, as far as this table goes
    expect(await lb.resync()).toBeGreaterThan(0);
    expect(nft.applied.length).toBe(applied + 2);
    expect(nft.listTables()).toContain('inet shoal_lb');
    await lb.stop();
  });
});

describe('NodeIngress', () => {
  function ingressSetup(address: string, onInvalid?: (s: string, r: string) => void): { index: LocalIndex; host: NftLoadBalancer; nft: FakeNft; ing: NodeIngress; web: Service } {
    const web = svc('s1', 'web', '10.0.0.2', { ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'host' }] });
    const index = new LocalIndex();
    index.applyList([kv('networks', bridgeNet), kv('nodes', node('n1', address)), kv('services', web), kv('tasks', task('a', web, '10.0.0.11'))], 5);
    const nft = new FakeNft();
    const host = new NftLoadBalancer({ nft, table: 'sh_publish', everyLocal: true });
    const ing = new NodeIngress(index, () => 'n1', { host, ...(onInvalid ? { onInvalid } : {}) });
    index.onChange((c) => ing.changed(c));
    return { index, host, nft, ing, web };
  }

  it('programs a host-mode port; a status-only change of its task does not wake it', async () => {
    const { index, host, nft, ing, web } = ingressSetup('192.0.2.1');
    ing.start();
    await ing.idle();
    expect([...host.applied().keys()]).toEqual(['tcp/0.0.0.0/8080']); // every local address of the node
    const n = nft.applied.length;
    put(index, 'tasks', task('a', web, '10.0.0.11', { message: 'chatter' }));
    await ing.idle();
    expect(nft.applied.length).toBe(n);
    put(index, 'tasks', task('a', web, '10.0.0.11', { healthy: false }));
    await ing.idle();
    expect(nft.applied.length).toBe(n + 1);
    await ing.stop();
  });

  it('an IPv6 node (frontend on every IPv6 local address) meeting IPv4 replicas is dropped and counted, never thrown at the dataplane', async () => {
    const notes: string[] = [];
    const { host, ing } = ingressSetup('2001:db8::1', (svcName, reason) => notes.push(`${svcName}: ${reason}`));
    ing.start();
    await ing.idle();
    expect(ing.syncFailures).toBe(0);
    expect(host.applied().size).toBe(0);
    expect(ing.counters.invalid.get('ingress')).toBeGreaterThan(0);
    expect(notes).toEqual([expect.stringMatching(/^web: published port tcp\/\[::\]\/8080 not programmed on this node: .*IPv6/)]);
    await ing.stop();
  });
});

describe('Backoff (injected clock)', () => {
  it('doubles from 500 ms to 30 s and forgets on success', () => {
    let now = 0;
    const b = new Backoff(() => now);
    expect(b.ready('x')).toBe(true);
    b.fail('x', 'boom');
    expect(b.ready('x')).toBe(false);
    expect(b.error('x')).toBe('boom');
    now = 499;
    expect(b.ready('x')).toBe(false);
    now = 500;
    expect(b.ready('x')).toBe(true);
    for (let i = 0; i < 10; i++) b.fail('x', 'again');
    expect(b.nextInMs()).toBe(30_000);
    b.succeed('x');
    expect(b.ready('x')).toBe(true);
    expect(b.nextInMs()).toBeUndefined();
  });
});

/** A runtime that refuses to start some tasks. */
class PickyRuntime implements TaskRuntime {
  readonly running = new Set<string>();
  readonly attempts = new Map<string, number>();
  constructor(private readonly refuse: Set<string>) {}
  ensureRunning(spec: TaskProcessSpec): void {
    this.attempts.set(spec.taskId, (this.attempts.get(spec.taskId) ?? 0) + 1);
    if (this.refuse.has(spec.taskId)) throw new Error(`cannot run ${spec.taskId}`);
    this.running.add(spec.taskId);
  }
  async ensureStopped(id: string): Promise<void> { this.running.delete(id); }
  list(): string[] { return [...this.running]; }
  logPath(id: string): string { return `/dev/null/${id}`; }
  onEvent(_cb: (e: TaskEvent) => void): void { /* no events */ }
  async close(): Promise<void> { /* nothing */ }
}

describe('Agent task reconciler', () => {
  it('a task that cannot start reports why and backs off; the others start', async () => {
    let now = 1000;
    const rt = new PickyRuntime(new Set(['bad']));
    const agent = new Agent({ managerUrl: 'https://127.0.0.1:1', joinToken: 't', name: 'n1', address: '127.0.0.1', dataDir: '/tmp/shoal-unit-agent', runtime: rt, now: () => now, resyncIntervalMs: 0 });
    const reports: Array<{ id: string; message: string }> = [];
    agent.session.reportStatus = (id, st) => { reports.push({ id, message: st.message }); };
    agent.session.node = node('n1');
    const web = svc('s1', 'web', '10.0.0.2');
    const assigned = { state: 'assigned' as const };
    agent.index.applyList([kv('nodes', node('n1')), kv('services', web),
      kv('tasks', task('bad', web, '10.0.0.11', assigned)), kv('tasks', task('good', web, '10.0.0.12', assigned))], 5);
    const sync = (): Promise<void> => (agent as unknown as { sync(): Promise<void> }).sync();
    await sync();
    expect(rt.running).toEqual(new Set(['good']));
    expect(reports.filter((r) => r.id === 'bad').pop()?.message).toMatch(/task setup failed \(attempt 1; retrying\): cannot run bad/);
    expect(agent.counters.failures.get('tasks')).toBe(1);
    await sync(); // within the back-off: not retried
    expect(rt.attempts.get('bad')).toBe(1);
    now += 600;
    await sync();
    expect(rt.attempts.get('bad')).toBe(2);
    expect(reports.filter((r) => r.id === 'bad').pop()?.message).toMatch(/attempt 2/);
    await agent.stop();
  });
});
