/**
 * The drivers against the in-tree kernel doubles (FakeKernel, FakeNft, FakeSysctl,
 * FakeLinkExtras): idempotency of every verb, what lands in which namespace, names, the NAT
 * transaction per change, setPeers applying only the difference, cleanupLeftovers.
 */
import { describe, expect, it } from 'vitest';
import { isKind, ShoalError } from '../../src/errors.js';
import { FakeKernel, FakeNft, FakeSysctl, type FakeLinkOps } from '../../src/kernel/index.js';
import type { Network } from '../../src/model/types.js';
import {
  BridgeDriver, cleanupLeftovers, FakeLinkExtras, MacvlanDriver, OverlayDriver, createDrivers, isPeerProgrammer, macFromIPv4,
  type DriverContext, type EndpointSpec, type Peer, type SandboxRef,
} from '../../src/drivers/index.js';

interface Node {
  kernel: FakeKernel;
  links: FakeLinkOps;
  nft: FakeNft;
  sysctl: FakeSysctl;
  extras: FakeLinkExtras;
  ctx: DriverContext;
}

function fakeNode(over: Partial<DriverContext> = {}): Node {
  const kernel = new FakeKernel();
  const links = kernel.ops('node');
  const nft = new FakeNft();
  const sysctl = new FakeSysctl({ 'net.ipv4.ip_forward': 0, 'net.ipv6.conf.all.forwarding': 0 });
  const extras = new FakeLinkExtras(links);
  return { kernel, links, nft, sysctl, extras, ctx: { links, extras, nft, sysctl, prefix: 'sh', underlay: { address: '192.0.2.1' }, ...over } };
}

function sandbox(kernel: FakeKernel, netns: string, ifname = 'eth0'): SandboxRef {
  kernel.addNetns(netns);
  return { netns, ifname, links: kernel.ops(netns) };
}

const NET_A = 'a1b2c3d4e5f60718';
const NET_B = 'b2c3d4e5f6071829';

function network(over: Partial<Network> = {}): Network {
  return {
    id: NET_A, name: 'app', driver: 'bridge', scope: 'local',
    ipam: { v4: { subnet: '10.1.0.0/24', gateway: '10.1.0.1' } },
    options: {}, labels: {}, createdAt: '2024-01-01T00:00:00.000Z', ...over,
  };
}

const ep = (id: string, v4: string, over: Partial<EndpointSpec> = {}): EndpointSpec => ({ id, networkId: NET_A, v4, ...over });

async function rejection(p: Promise<unknown>): Promise<ShoalError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ShoalError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('bridge driver', () => {
  const v6net = network({ ipam: { v4: { subnet: '10.1.0.0/24', gateway: '10.1.0.1' }, v6: { subnet: 'fd00:1::/64', gateway: 'fd00:1::1' } } });

  it('createNetwork makes the bridge with the gateway(s), forwarding and the NAT table; twice changes nothing', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    await d.createNetwork(v6net);
    const once = n.links.dump();
    await d.createNetwork(v6net);
    expect(n.links.dump()).toEqual(once);
    expect(once.links).toEqual([expect.objectContaining({
      name: 'shba1b2c3d4e5', kind: 'bridge', up: true, mtu: 1500, addrs: ['10.1.0.1/24', 'fd00:1::1/64'],
    })]);
    expect((await n.links.getLink('shba1b2c3d4e5'))?.mac).toMatch(/^06:/);
    expect(n.sysctl.dump()).toEqual({ 'net.ipv4.ip_forward': '1', 'net.ipv6.conf.all.forwarding': '1' });
    expect(n.nft.listTables()).toEqual(['inet sh_net']);
    // One transaction per change, each the full table.
    expect(n.nft.applied).toHaveLength(2);
    expect(n.nft.applied[1]).toContain('ip6 saddr fd00:1::/64 oifname != "shba1b2c3d4e5" masquerade');
  });

  it('join puts a veth end into the sandbox: renamed, MAC from the IPv4, addresses, up, MTU, default routes', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    await d.createNetwork(v6net);
    const sb = sandbox(n.kernel, 'task1');
    // FakeLinkOps keeps ONE default route per namespace whatever the family (the kernel keeps
    // one per family), so the routes are checked as requested.
    const routes: string[] = [];
    const sbx = sb.links as FakeLinkOps;
    const ensureRoute = sbx.ensureRoute.bind(sbx);
    sbx.ensureRoute = (r) => {
      routes.push(`${r.dst ?? 'default'} via ${r.via} dev ${r.dev ?? '?'}`);
      return ensureRoute(r);
    };
    const e = ep('t1', '10.1.0.5', { v6: 'fd00:1::5' });
    await d.join(v6net, e, sb, { defaultRoute: true });
    expect(routes).toEqual(['default via 10.1.0.1 dev eth0', 'default via fd00:1::1 dev eth0']);
    const after = n.kernel.dump();
    await d.join(v6net, e, sb, { defaultRoute: true });
    expect(n.kernel.dump()).toEqual(after);

    const inside = n.kernel.dump()['task1'];
    expect(inside?.links).toEqual([expect.objectContaining({ name: 'eth0', kind: 'veth', up: true, mtu: 1500, addrs: ['10.1.0.5/24', 'fd00:1::5/64'] })]);
    expect((await sb.links?.getLink('eth0'))?.mac).toBe('02:42:0a:01:00:05');
    const host = n.links.dump().links.find((l) => l.kind === 'veth');
    expect(host).toMatchObject({ master: 'shba1b2c3d4e5', up: true, peer: 'task1/eth0' });
    expect(host?.name).toMatch(/^shv[0-9a-f]{10}$/);
  });

  it('adds no default route for a second network, and honours -o mtu', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    const net = network({ options: { mtu: '1400' } });
    await d.createNetwork(net);
    const sb = sandbox(n.kernel, 'task1', 'eth1');
    await d.join(net, ep('t1', '10.1.0.5'), sb, { defaultRoute: false });
    expect(n.kernel.dump()['task1']).toMatchObject({ routes: [], links: [expect.objectContaining({ name: 'eth1', mtu: 1400 })] });
    expect(n.links.dump().links.every((l) => l.mtu === 1400)).toBe(true);
  });

  it('leave removes the pair; twice is fine; deleteNetwork removes bridge, leftover endpoints and the table', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    const net = network();
    await d.createNetwork(net);
    const sb1 = sandbox(n.kernel, 'task1');
    const sb2 = sandbox(n.kernel, 'task2');
    await d.join(net, ep('t1', '10.1.0.5'), sb1, { defaultRoute: true });
    await d.join(net, ep('t2', '10.1.0.6'), sb2, { defaultRoute: true });
    await d.leave(net, ep('t1', '10.1.0.5'), sb1);
    await d.leave(net, ep('t1', '10.1.0.5'), sb1);
    expect(n.kernel.dump()['task1']?.links).toEqual([]);
    await d.deleteNetwork(net);
    await d.deleteNetwork(net);
    expect(n.links.dump().links).toEqual([]);
    expect(n.kernel.dump()['task2']?.links).toEqual([]);
    expect(n.nft.listTables()).toEqual([]);
  });

  it('rejects what it cannot do with sentences: ifname taken, join before create, address outside the subnet', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    const net = network();
    const sb = sandbox(n.kernel, 'task1');
    expect((await rejection(d.join(net, ep('t1', '10.1.0.5'), sb, { defaultRoute: true }))).message).toMatch(/createNetwork must run before join/);
    await d.createNetwork(net);
    await d.join(net, ep('t1', '10.1.0.5'), sb, { defaultRoute: true });
    const taken = await rejection(d.join(net, ep('t2', '10.1.0.6'), sb, { defaultRoute: false }));
    expect(taken.kind).toBe('Conflict');
    expect(taken.message).toMatch(/already has an interface eth0/);
    const outside = await rejection(d.join(net, ep('t3', '10.9.0.6'), sandbox(n.kernel, 'task3'), { defaultRoute: false }));
    expect(outside.kind).toBe('InvalidParameter');
    expect(outside.message).toMatch(/outside its subnet 10.1.0.0\/24/);
    expect((await rejection(d.createNetwork(network({ options: { mtu: 'big' } })))).message).toMatch(/mtu=big/);
  });

  it('finishes a join interrupted after the veth was made but before the move', async () => {
    const n = fakeNode();
    const d = new BridgeDriver(n.ctx);
    const net = network();
    await d.createNetwork(net);
    const sb = sandbox(n.kernel, 'task1');
    // The first attempt dies at the move (the sandbox vanished and came back).
    const failing: FakeLinkOps = Object.create(n.links) as FakeLinkOps;
    failing.moveToNetns = () => Promise.reject(new Error('killed'));
    await expect(new BridgeDriver({ ...n.ctx, links: failing }).join(net, ep('t1', '10.1.0.5'), sb, { defaultRoute: true })).rejects.toThrow('killed');
    expect(n.links.dump().links.map((l) => l.name[2])).toEqual(['b', 'p', 'v']);
    await d.join(net, ep('t1', '10.1.0.5'), sb, { defaultRoute: true });
    expect(n.links.dump().links.map((l) => l.name[2])).toEqual(['b', 'v']);
    expect(n.kernel.dump()['task1']?.links[0]).toMatchObject({ name: 'eth0', addrs: ['10.1.0.5/24'] });
  });

  it('recomputes one NAT table for all networks of the node, and isolates them from each other', async () => {
    const n = fakeNode();
    const { bridge, overlay } = createDrivers(n.ctx);
    await bridge.createNetwork(network());
    await overlay.createNetwork(network({ id: NET_B, name: 'ov', driver: 'overlay', vni: 4097, ipam: { v4: { subnet: '10.2.0.0/24', gateway: '10.2.0.1' } } }));
    const last = n.nft.applied.at(-1) ?? '';
    expect(last).toContain('ip saddr 10.1.0.0/24 oifname != "shba1b2c3d4e5" masquerade');
    expect(last).toContain('ip saddr 10.2.0.0/24 oifname != "shbb2c3d4e5f6" masquerade');
    expect(last).toContain('iifname "shbb2c3d4e5f6" oifname "shb*" oifname != "shbb2c3d4e5f6" counter drop');
    await bridge.deleteNetwork(network());
    expect(n.nft.applied.at(-1)).not.toContain('10.1.0.0/24');
  });
});

describe('overlay driver', () => {
  const ov = network({ driver: 'overlay', scope: 'swarm', vni: 4242, ipam: { v4: { subnet: '10.9.0.0/24', gateway: '10.9.0.1' } } });
  const peer = (ip: string, vtep: string): Peer => ({ ip, mac: macFromIPv4(ip), vtep });

  it('createNetwork: bridge + proxy VXLAN enslaved to it, MTU from the underlay device; idempotent', async () => {
    const n = fakeNode({ underlay: { address: '192.0.2.1', device: 'ul0' } });
    await n.links.ensureBridge('ul0', { mtu: 9000 });
    const d = new OverlayDriver(n.ctx);
    await d.createNetwork(ov);
    const once = n.links.dump();
    await d.createNetwork(ov);
    expect(n.links.dump()).toEqual(once);
    expect(once.links.filter((l) => l.name.startsWith('sh'))).toEqual([
      expect.objectContaining({ name: 'shba1b2c3d4e5', kind: 'bridge', up: true, mtu: 8950, addrs: ['10.9.0.1/24'] }),
      expect.objectContaining({
        name: 'shxa1b2c3d4e5', kind: 'vxlan', up: true, mtu: 8950, master: 'shba1b2c3d4e5', lower: 'ul0',
        vxlan: { vni: 4242, local: '192.0.2.1', dstport: 4789, learning: false },
      }),
    ]);
    expect([...n.extras.proxied]).toEqual(['shxa1b2c3d4e5']);
    expect(n.sysctl.dump()['net.ipv4.ip_forward']).toBe('1');
  });

  it('defaults to 1450 without an underlay device, and tasks get the same MTU', async () => {
    const n = fakeNode();
    const d = new OverlayDriver(n.ctx);
    await d.createNetwork(ov);
    const sb = sandbox(n.kernel, 'task1');
    await d.join(ov, ep('t1', '10.9.0.11'), sb, { defaultRoute: true });
    expect(n.links.dump().links.map((l) => l.mtu)).toEqual([1450, 1450, 1450]);
    expect(n.kernel.dump()['task1']?.links[0]?.mtu).toBe(1450);
  });

  it('recreates a VXLAN whose settings changed (it is ours by name)', async () => {
    const n = fakeNode();
    const d = new OverlayDriver(n.ctx);
    await d.createNetwork(ov);
    await d.createNetwork({ ...ov, vni: 5000 });
    expect(n.links.dump().links.find((l) => l.kind === 'vxlan')?.vxlan?.vni).toBe(5000);
  });

  it('setPeers programs FDB mac->vtep and neighbour ip->mac, then applies only the difference', async () => {
    const n = fakeNode();
    const d = new OverlayDriver(n.ctx);
    expect(isPeerProgrammer(d)).toBe(true);
    expect(isPeerProgrammer(new BridgeDriver(n.ctx))).toBe(false);
    await d.createNetwork(ov);
    const vx = 'shxa1b2c3d4e5';
    const b = peer('10.9.0.12', '192.0.2.2');
    const c = peer('10.9.0.13', '192.0.2.3');
    const local = peer('10.9.0.11', '192.0.2.1');

    expect(await d.setPeers(ov, [b, c, local])).toEqual({ added: 4, removed: 0 });
    const dumpVx = (): { fdb: string[]; neigh: string[] } => {
      const l = n.links.dump().links.find((x) => x.name === vx);
      return { fdb: l?.fdb ?? [], neigh: l?.neigh ?? [] };
    };
    expect(dumpVx()).toEqual({
      fdb: ['02:42:0a:09:00:0c 192.0.2.2', '02:42:0a:09:00:0d 192.0.2.3'],
      neigh: ['10.9.0.12 02:42:0a:09:00:0c', '10.9.0.13 02:42:0a:09:00:0d'],
    });

    // Same set: nothing to do, and nothing done.
    const calls: string[] = [];
    for (const m of ['appendFdb', 'deleteFdb', 'ensureNeighbour', 'deleteNeighbour'] as const) {
      const orig = n.links[m].bind(n.links) as (...a: unknown[]) => Promise<void>;
      (n.links as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        calls.push(`${m} ${a.slice(1).join(' ')}`);
        return orig(...a);
      };
    }
    expect(await d.setPeers(ov, [c, b])).toEqual({ added: 0, removed: 0 });
    expect(calls).toEqual([]);

    // c leaves, d arrives, b moves to another node (task rescheduled with the same address).
    const dd = peer('10.9.0.14', '192.0.2.3');
    const bMoved = peer('10.9.0.12', '192.0.2.4');
    expect(await d.setPeers(ov, [bMoved, dd])).toEqual({ added: 3, removed: 3 });
    expect(calls).toEqual([
      'appendFdb 02:42:0a:09:00:0c 192.0.2.4',
      'appendFdb 02:42:0a:09:00:0e 192.0.2.3',
      'ensureNeighbour 10.9.0.14 02:42:0a:09:00:0e',
      'deleteNeighbour 10.9.0.13',
      'deleteFdb 02:42:0a:09:00:0c 192.0.2.2',
      'deleteFdb 02:42:0a:09:00:0d 192.0.2.3',
    ]);
    expect(dumpVx()).toEqual({
      fdb: ['02:42:0a:09:00:0c 192.0.2.4', '02:42:0a:09:00:0e 192.0.2.3'],
      neigh: ['10.9.0.12 02:42:0a:09:00:0c', '10.9.0.14 02:42:0a:09:00:0e'],
    });

    expect(await d.setPeers(ov, [])).toEqual({ added: 0, removed: 4 });
    expect(dumpVx()).toEqual({ fdb: [], neigh: [] });
  });

  it('serializes concurrent setPeers of one network: the last call wins', async () => {
    const n = fakeNode();
    const d = new OverlayDriver(n.ctx);
    await d.createNetwork(ov);
    const sets = [[peer('10.9.0.2', '192.0.2.2')], [peer('10.9.0.3', '192.0.2.3')], [peer('10.9.0.4', '192.0.2.4')]];
    await Promise.all(sets.map((s) => d.setPeers(ov, s)));
    expect(n.links.dump().links.find((l) => l.kind === 'vxlan')?.neigh).toEqual(['10.9.0.4 02:42:0a:09:00:04']);
  });

  it('rejects bad peers and a network that is not there', async () => {
    const n = fakeNode();
    const d = new OverlayDriver(n.ctx);
    expect((await rejection(d.setPeers(ov, []))).kind).toBe('NotFound');
    await d.createNetwork(ov);
    expect((await rejection(d.setPeers(ov, [{ ip: '10.9.0.2', mac: 'nope', vtep: '192.0.2.2' }]))).message).toMatch(/invalid MAC/);
    expect((await rejection(d.setPeers(ov, [{ ip: '10.9.0.2', mac: '02:42:00:00:00:01', vtep: '192.0.2.2' }, { ip: '10.9.0.2', mac: '02:42:00:00:00:02', vtep: '192.0.2.2' }]))).message).toMatch(/two MACs/);
    expect(isKind(await rejection(d.setPeers(ov, [{ ip: '10.9.0.2', mac: '02:42:00:00:00:01', vtep: 'x' }])), 'InvalidParameter')).toBe(true);
    expect((await rejection(d.createNetwork({ ...ov, vni: undefined }))).message).toMatch(/needs a VNI/);
  });
});

describe('macvlan driver', () => {
  const lan = network({ driver: 'macvlan', options: { parent: 'lan0' }, ipam: { v4: { subnet: '192.168.50.0/24', gateway: '192.168.50.1' } } });

  it('refuses a network without parent, or whose parent is missing, with a sentence', async () => {
    const n = fakeNode();
    const d = new MacvlanDriver(n.ctx);
    const none = await rejection(d.createNetwork({ ...lan, options: {} }));
    expect(none.message).toMatch(/needs a parent interface: create it with -o parent=<interface>/);
    const missing = await rejection(d.createNetwork(lan));
    expect(missing.kind).toBe('NotFound');
    expect(missing.message).toMatch(/parent interface 'lan0' of macvlan network 'app' not found/);
  });

  it('join creates the macvlan on the parent and moves it in; leave deletes only its own interface', async () => {
    const n = fakeNode();
    await n.links.ensureVeth({ name: 'lan0', peer: 'lan1' });
    const d = new MacvlanDriver(n.ctx);
    await d.createNetwork(lan);
    const sb = sandbox(n.kernel, 'task1');
    const e = ep('t1', '192.168.50.10');
    await d.join(lan, e, sb, { defaultRoute: true });
    const after = n.kernel.dump();
    await d.join(lan, e, sb, { defaultRoute: true });
    expect(n.kernel.dump()).toEqual(after);
    expect(after['task1']).toMatchObject({
      links: [expect.objectContaining({ name: 'eth0', kind: 'macvlan', up: true, addrs: ['192.168.50.10/24'] })],
      routes: ['default via 192.168.50.1 dev eth0'],
    });
    expect((await sb.links?.getLink('eth0'))?.mac).toBe('02:42:c0:a8:32:0a');
    expect(n.links.dump().links.map((l) => l.name)).toEqual(['lan0', 'lan1']);
    expect(n.nft.applied).toEqual([]);

    await d.leave(lan, ep('t2', '192.168.50.11'), sb); // not its interface: untouched
    expect(n.kernel.dump()['task1']?.links).toHaveLength(1);
    await d.leave(lan, e, sb);
    await d.leave(lan, e, sb);
    expect(n.kernel.dump()['task1']?.links).toEqual([]);
  });
});

describe('cleanupLeftovers', () => {
  it('removes owned links of networks not kept, unmoved endpoint halves, and regenerates NAT', async () => {
    const n = fakeNode();
    const { bridge, overlay } = createDrivers(n.ctx);
    const keep = network();
    const gone = network({ id: NET_B, name: 'gone', driver: 'overlay', vni: 7, ipam: { v4: { subnet: '10.2.0.0/24', gateway: '10.2.0.1' } } });
    await bridge.createNetwork(keep);
    await overlay.createNetwork(gone);
    await bridge.join(keep, ep('t1', '10.1.0.5'), sandbox(n.kernel, 'task1'), { defaultRoute: true });
    await overlay.join(gone, ep('t2', '10.2.0.5', { networkId: NET_B }), sandbox(n.kernel, 'task2'), { defaultRoute: true });
    await n.links.ensureVeth({ name: 'shp0123456789', peer: 'shv0123456789' }); // interrupted join
    await n.links.ensureBridge('shb_notours'); // our prefix, not our pattern
    await n.links.ensureVeth({ name: 'eth9', peer: 'eth10' });

    const deleted = await cleanupLeftovers(n.ctx, new Set([NET_A]));
    expect(deleted.sort()).toHaveLength(5);
    const left = n.links.dump().links.map((l) => l.name).sort();
    expect(left).toEqual(['eth10', 'eth9', 'shb_notours', 'shba1b2c3d4e5', expect.stringMatching(/^shv/)]);
    expect(n.kernel.dump()['task1']?.links).toHaveLength(1);
    expect(n.kernel.dump()['task2']?.links).toEqual([]);
    expect(n.nft.applied.at(-1)).not.toContain('10.2.0.0/24');
    expect(n.nft.applied.at(-1)).toContain('10.1.0.0/24');

    expect(await cleanupLeftovers(n.ctx, new Set())).toHaveLength(2);
    expect(n.links.dump().links.map((l) => l.name).sort()).toEqual(['eth10', 'eth9', 'shb_notours']);
    expect(n.nft.listTables()).toEqual([]);
  });
});
