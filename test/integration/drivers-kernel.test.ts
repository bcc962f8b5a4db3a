/**
 * The drivers on the real kernel (root). Each simulated node is a netns of its own with the
 * drivers running INSIDE it (netnsDriverContext: a NetnsWorker for links/extras/sysctls, nft
 * via nsenter); task sandboxes, the "outside" host, the LAN peer and the underlay switch are
 * further namespaces. Nothing is connected to the host's network; names carry this file's
 * prefix and are removed after every test, failed or not.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound } from '../../src/errors.js';
import { execTool } from '../../src/kernel/exec.js';
import { ensureNetns, NetnsWorker } from '../../src/kernel/netns.js';
import type { Network } from '../../src/model/types.js';
import {
  BridgeDriver, MacvlanDriver, OverlayDriver, cleanupLeftovers, macFromIPv4, netnsDriverContext, type DriverContext, type EndpointSpec, type Peer,
} from '../../src/drivers/index.js';
import { cleanupPrefix, finalCleanup, kernelError, makeTestPrefix } from '../helpers/netns.js';

const prefix = makeTestPrefix();
const HANDLERS = new URL('../helpers/netns.ts', import.meta.url).href;
const closers: Array<() => Promise<void>> = [];
/** Owner prefix of the drivers inside the node namespaces (fresh namespaces: no clash possible). */
const OWNER = 'sh';

type NodeCtx = DriverContext & { worker: NetnsWorker; close(): Promise<void> };

/** A simulated node: netns `${prefix}-${name}` with the drivers' context bound to it. */
async function node(name: string, underlay: DriverContext['underlay'] = { address: '192.0.2.1' }): Promise<NodeCtx> {
  const ns = `${prefix}-${name}`;
  await ensureNetns(ns);
  const ctx = await netnsDriverContext(ns, { prefix: OWNER, underlay });
  closers.push(() => ctx.close());
  await ctx.links.setUp('lo');
  return ctx;
}

/** A netns with the test's socket handlers (`t.*`) and lo up: a task sandbox or another host. */
async function box(name: string): Promise<{ ns: string; w: NetnsWorker }> {
  const ns = `${prefix}-${name}`;
  const w = await NetnsWorker.start({ create: ns, modules: { t: HANDLERS } });
  closers.push(() => w.close());
  await w.links.setUp('lo');
  return { ns, w };
}

const tcp = (from: NetnsWorker, host: string, port: number, timeoutMs = 3000): Promise<unknown> =>
  from.call('t.tcpRequest', host, port, `hello ${host}`, timeoutMs);
const listen = async (w: NetnsWorker, host = '::'): Promise<number> => Number(await w.call('t.listenTcp', host, 0));
/** Fails with ETIMEDOUT within `ms`: the packets are dropped somewhere. */
async function unreachable(from: NetnsWorker, host: string, port: number, ms = 800): Promise<void> {
  expect((await kernelError(tcp(from, host, port, ms))).errno).toBe('ETIMEDOUT');
}

function network(id: string, name: string, subnet: string, gateway: string, over: Partial<Network> = {}): Network {
  return {
    id, name, driver: 'bridge', scope: 'local', ipam: { v4: { subnet, gateway } }, options: {}, labels: {},
    createdAt: '2024-01-01T00:00:00.000Z', ...over,
  };
}

const ep = (net: Network, id: string, v4: string, v6?: string): EndpointSpec => ({ id, networkId: net.id, v4, ...(v6 ? { v6 } : {}) });

/** Nothing owned left in the node namespace: no link with the owner prefix, no table. */
async function expectNodeClean(ctx: DriverContext): Promise<void> {
  expect((await ctx.links.listLinks(OWNER)).map((l) => l.name)).toEqual([]);
  let err: unknown;
  try {
    await ctx.nft.list(`${OWNER}_net`, 'inet');
  } catch (e) {
    err = e;
  }
  expect(isNotFound(err)).toBe(true);
}

/** Packets counted by the counters of the drivers' table. */
async function countedPackets(ctx: DriverContext): Promise<number> {
  const j = await ctx.nft.list(`${OWNER}_net`, 'inet');
  let n = 0;
  for (const o of j.nftables) {
    const rule = o['rule'] as { expr?: Array<Record<string, { packets?: number }>> } | undefined;
    for (const x of rule?.expr ?? []) n += x['counter']?.packets ?? 0;
  }
  return n;
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('driver integration tests need root (netns, rtnetlink, nftables)');
});

afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
  await cleanupPrefix(prefix);
});

afterAll(() => finalCleanup(prefix));

describe('bridge driver', () => {
  it('connects sandboxes of one network (IPv4 and IPv6) and isolates another network', async () => {
    const n = await node('br');
    const d = new BridgeDriver(n);
    const netA = network('a1a1a1a1a1a1a1a1', 'a', '10.20.1.0/24', '10.20.1.1', { ipam: { v4: { subnet: '10.20.1.0/24', gateway: '10.20.1.1' }, v6: { subnet: 'fd00:20:1::/64', gateway: 'fd00:20:1::1' } } });
    const netB = network('b2b2b2b2b2b2b2b2', 'b', '10.20.2.0/24', '10.20.2.1');
    await d.createNetwork(netA);
    await d.createNetwork(netA);
    await d.createNetwork(netB);
    expect(await n.sysctl.get('net.ipv4.ip_forward')).toBe('1');

    const [a1, a2, b1] = [await box('a1'), await box('a2'), await box('b1')];
    await d.join(netA, ep(netA, 't1', '10.20.1.11', 'fd00:20:1::11'), { netns: a1.ns, ifname: 'eth0', links: a1.w.links }, { defaultRoute: true });
    // Without `links` the driver enters the sandbox with a worker of its own.
    await d.join(netA, ep(netA, 't2', '10.20.1.12', 'fd00:20:1::12'), { netns: a2.ns, ifname: 'eth0' }, { defaultRoute: true });
    await d.join(netA, ep(netA, 't2', '10.20.1.12', 'fd00:20:1::12'), { netns: a2.ns, ifname: 'eth0' }, { defaultRoute: true });
    await d.join(netB, ep(netB, 't3', '10.20.2.11'), { netns: b1.ns, ifname: 'eth0', links: b1.w.links }, { defaultRoute: true });

    const eth0 = await a2.w.links.getLink('eth0');
    expect(eth0).toMatchObject({ kind: 'veth', up: true, mtu: 1500, mac: macFromIPv4('10.20.1.12') });
    expect((await a2.w.links.listAddresses('eth0')).filter((a) => !a.startsWith('fe80'))).toEqual(['10.20.1.12/24', 'fd00:20:1::12/64']);

    const pa2 = await listen(a2.w);
    expect(await tcp(a1.w, '10.20.1.12', pa2)).toBe('hello 10.20.1.12');
    expect(await tcp(a1.w, 'fd00:20:1::12', pa2)).toBe('hello fd00:20:1::12');

    const pb1 = await listen(b1.w);
    const before = await countedPackets(n);
    await unreachable(a1.w, '10.20.2.11', pb1);
    expect(await countedPackets(n)).toBeGreaterThan(before); // dropped by the isolation rule, not lost by chance

    await d.leave(netA, ep(netA, 't1', '10.20.1.11'), { netns: a1.ns, ifname: 'eth0' });
    await d.leave(netA, ep(netA, 't1', '10.20.1.11'), { netns: a1.ns, ifname: 'eth0' });
    expect(await a1.w.links.getLink('eth0')).toBeUndefined();
    await d.deleteNetwork(netA);
    await d.deleteNetwork(netB);
    await d.deleteNetwork(netB);
    expect(await a2.w.links.getLink('eth0')).toBeUndefined();
    await expectNodeClean(n);
  });

  it('masquerades egress: an outside listener with no route to the tasks sees the node address', async () => {
    const n = await node('nat');
    const out = await box('out');
    // The "outside": a veth from the node namespace to a netns that only knows 203.0.113.0/24.
    await n.links.ensureVeth({ name: 'up0', peer: 'out0', peerNetns: out.ns });
    await n.links.ensureAddress('up0', '203.0.113.1/24');
    await n.links.setUp('up0');
    await out.w.links.ensureAddress('out0', '203.0.113.2/24');
    await out.w.links.setUp('out0');

    const d = new BridgeDriver(n);
    const net = network('c3c3c3c3c3c3c3c3', 'c', '10.20.3.0/24', '10.20.3.1');
    await d.createNetwork(net);
    const s = await box('s');
    await d.join(net, ep(net, 't1', '10.20.3.11'), { netns: s.ns, ifname: 'eth0', links: s.w.links }, { defaultRoute: true });

    const port = await listen(out.w, '203.0.113.2');
    expect(await tcp(s.w, '203.0.113.2', port)).toBe('hello 203.0.113.2');
    const ct = (await execTool('test', 'ip', ['netns', 'exec', `${prefix}-nat`, 'conntrack', '-L', '-p', 'tcp', '--dport', String(port)])).stdout;
    // Original direction from the task; the reply goes to the node's address: SNAT by masquerade.
    expect(ct).toMatch(new RegExp(`src=10\\.20\\.3\\.11 dst=203\\.0\\.113\\.2 .*src=203\\.0\\.113\\.2 dst=203\\.0\\.113\\.1 `));

    await d.leave(net, ep(net, 't1', '10.20.3.11'), { netns: s.ns, ifname: 'eth0' });
    await d.deleteNetwork(net);
    await expectNodeClean(n);
  });
});

describe('internal networks', () => {
  it('route nothing in or out (no NAT), still switch between their tasks and reach the node at the gateway; the flag survives other networks\' syncs', async () => {
    const n = await node('int');
    const out = await box('iout');
    await n.links.ensureVeth({ name: 'up0', peer: 'out0', peerNetns: out.ns });
    await n.links.ensureAddress('up0', '203.0.113.1/24');
    await n.links.setUp('up0');
    await out.w.links.ensureAddress('out0', '203.0.113.2/24');
    await out.w.links.setUp('out0');
    // The outside knows the way to both networks (through the node): only the internal one must refuse.
    for (const dst of ['10.20.5.0/24', '10.20.6.0/24']) await out.w.links.ensureRoute({ dst, via: '203.0.113.1' });

    const d = new BridgeDriver(n);
    const internal = network('e5e5e5e5e5e5e5e5', 'i', '10.20.5.0/24', '10.20.5.1', { internal: true });
    const open = network('f6f6f6f6f6f6f6f6', 'o', '10.20.6.0/24', '10.20.6.1');
    await d.createNetwork(internal);
    await d.createNetwork(internal);
    // Created after: its sync must keep the internal network's rules (read back from the table).
    await d.createNetwork(open);
    const [i1, i2, o1] = [await box('i1'), await box('i2'), await box('o1')];
    await d.join(internal, ep(internal, 't1', '10.20.5.11'), { netns: i1.ns, ifname: 'eth0', links: i1.w.links }, { defaultRoute: true });
    await d.join(internal, ep(internal, 't2', '10.20.5.12'), { netns: i2.ns, ifname: 'eth0', links: i2.w.links }, { defaultRoute: true });
    await d.join(open, ep(open, 't3', '10.20.6.11'), { netns: o1.ns, ifname: 'eth0', links: o1.w.links }, { defaultRoute: true });

    const outPort = await listen(out.w, '203.0.113.2');
    expect(await tcp(o1.w, '203.0.113.2', outPort)).toBe('hello 203.0.113.2'); // the open network goes out
    const before = await countedPackets(n);
    await unreachable(i1.w, '203.0.113.2', outPort); // the internal one does not
    expect(await countedPackets(n)).toBeGreaterThan(before);
    const inPort = await listen(i2.w);
    await unreachable(out.w, '10.20.5.12', inPort); // nor can anything be routed in
    expect(await tcp(i1.w, '10.20.5.12', inPort)).toBe('hello 10.20.5.12'); // tasks of the network talk
    expect(await tcp(o1.w, '10.20.6.1', await listen(await nodeShell('int'), '10.20.6.1'))).toBe('hello 10.20.6.1');
    const nodePort = await listen(await nodeShell('int'), '10.20.5.1');
    expect(await tcp(i1.w, '10.20.5.1', nodePort)).toBe('hello 10.20.5.1'); // the node's listeners (the DNS) answer

    const rules = JSON.stringify(await n.nft.list(`${OWNER}_net`, 'inet'));
    expect(rules).not.toMatch(/10\.20\.5\.0[^"]*"[^}]*masquerade/);
    await d.leave(internal, ep(internal, 't1', '10.20.5.11'), { netns: i1.ns, ifname: 'eth0' });
    await d.leave(internal, ep(internal, 't2', '10.20.5.12'), { netns: i2.ns, ifname: 'eth0' });
    await d.leave(open, ep(open, 't3', '10.20.6.11'), { netns: o1.ns, ifname: 'eth0' });
    await d.deleteNetwork(internal);
    await d.deleteNetwork(open);
    await expectNodeClean(n);
  });
});

/** A worker with the test's handlers inside a node's namespace (to listen on its gateway addresses). */
async function nodeShell(name: string): Promise<NetnsWorker> {
  const w = await NetnsWorker.start({ netns: `${prefix}-${name}`, modules: { t: HANDLERS } });
  closers.unshift(() => w.close());
  return w;
}

describe('overlay driver', () => {
  it('carries TCP between sandboxes on three nodes over VXLAN; a removed peer is unreachable and unprogrammed', async () => {
    // The underlay: a switch (bridge) in its own netns, one veth per node.
    const sw = await box('ul');
    await sw.w.links.ensureBridge('ubr');
    await sw.w.links.setUp('ubr');
    const nodes: NodeCtx[] = [];
    for (const i of [1, 2, 3]) {
      const ns = `${prefix}-n${i}`;
      await ensureNetns(ns);
      await sw.w.links.ensureVeth({ name: `port${i}`, peer: 'ul0', peerNetns: ns });
      await sw.w.links.setMaster(`port${i}`, 'ubr');
      await sw.w.links.setUp(`port${i}`);
      const n = await node(`n${i}`, { address: `192.168.77.${i}`, device: 'ul0' });
      await n.links.ensureAddress('ul0', `192.168.77.${i}/24`);
      await n.links.setUp('ul0');
      nodes.push(n);
    }
    const net = network('d4d4d4d4d4d4d4d4', 'ov', '10.9.0.0/24', '10.9.0.1', { driver: 'overlay', scope: 'swarm', vni: 4242 });
    const drivers = nodes.map((n) => new OverlayDriver(n));
    const boxes = [];
    const peers: Peer[] = [];
    for (const [i, d] of drivers.entries()) {
      await d.createNetwork(net);
      const b = await box(`s${i + 1}`);
      const ip = `10.9.0.${11 + i}`;
      await d.join(net, ep(net, `t${i + 1}`, ip), { netns: b.ns, ifname: 'eth0', links: b.w.links }, { defaultRoute: true });
      boxes.push(b);
      peers.push({ ip, mac: macFromIPv4(ip), vtep: `192.168.77.${i + 1}` });
    }
    // Each node gets the full list; its own endpoint is skipped by the driver.
    for (const d of drivers) expect(await d.setPeers(net, peers)).toEqual({ added: 4, removed: 0 });
    for (const d of drivers) expect(await d.setPeers(net, peers)).toEqual({ added: 0, removed: 0 });

    const [n1] = nodes;
    const [s1, s2, s3] = boxes;
    if (!n1 || !s1 || !s2 || !s3) throw new Error('topology incomplete');
    const vx = (await n1.links.listLinks(OWNER)).find((l) => l.kind === 'vxlan');
    expect(vx).toMatchObject({ mtu: 1450, up: true, vxlan: { vni: 4242, local: '192.168.77.1', dstport: 4789, learning: false } });
    expect((await s1.w.links.getLink('eth0'))?.mtu).toBe(1450);
    const vxName = vx?.name ?? '';

    const ports = [await listen(s1.w), await listen(s2.w), await listen(s3.w)];
    expect(await tcp(s1.w, '10.9.0.12', ports[1] ?? 0)).toBe('hello 10.9.0.12');
    expect(await tcp(s2.w, '10.9.0.13', ports[2] ?? 0)).toBe('hello 10.9.0.13');
    expect(await tcp(s3.w, '10.9.0.11', ports[0] ?? 0)).toBe('hello 10.9.0.11');
    expect(await tcp(s1.w, '10.9.0.13', ports[2] ?? 0)).toBe('hello 10.9.0.13');
    // The ARP answers came from node 1's VXLAN proxy, with the MACs computed from the addresses.
    const resolved = (await s1.w.links.listNeighbours('eth0')).filter((x) => x.ip.startsWith('10.9.0.1'));
    expect(resolved.map((x) => `${x.ip} ${x.mac}`).sort()).toEqual([`10.9.0.12 ${macFromIPv4('10.9.0.12')}`, `10.9.0.13 ${macFromIPv4('10.9.0.13')}`]);
    const stats = (await n1.links.getLink(vxName))?.stats;
    expect(stats?.txPackets).toBeGreaterThan(0);
    expect(stats?.rxPackets).toBeGreaterThan(0);

    // Node 1 forgets node 3's endpoint.
    const [d1] = drivers;
    expect(await d1?.setPeers(net, peers.filter((p) => p.ip !== '10.9.0.13'))).toEqual({ added: 0, removed: 2 });
    expect((await n1.links.listFdb(vxName)).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`)).toEqual([`${macFromIPv4('10.9.0.12')} 192.168.77.2`]);
    expect((await n1.links.listNeighbours(vxName)).map((x) => x.ip)).toEqual(['10.9.0.12']);
    // S1 still has 10.9.0.13 in its ARP cache: without the FDB entry the frames go nowhere.
    await unreachable(s1.w, '10.9.0.13', ports[2] ?? 0);
    expect(await tcp(s1.w, '10.9.0.12', ports[1] ?? 0)).toBe('hello 10.9.0.12');

    for (const [i, d] of drivers.entries()) {
      await d.leave(net, ep(net, `t${i + 1}`, `10.9.0.${11 + i}`), { netns: boxes[i]?.ns ?? '', ifname: 'eth0' });
      await d.deleteNetwork(net);
      await d.deleteNetwork(net);
    }
    for (const n of nodes) await expectNodeClean(n);
  });
});

describe('macvlan driver', () => {
  it('puts the sandbox on the parent\'s L2: reachable from the other end of the parent veth, with its derived MAC', async () => {
    const n = await node('mv');
    const lan = await box('lan');
    await n.links.ensureVeth({ name: 'lan0', peer: 'lan1', peerNetns: lan.ns });
    await n.links.setUp('lan0');
    await lan.w.links.ensureAddress('lan1', '10.30.0.100/24');
    await lan.w.links.setUp('lan1');

    const d = new MacvlanDriver(n);
    const missing = network('e5e5e5e5e5e5e5e5', 'nolan', '10.30.0.0/24', '10.30.0.1', { driver: 'macvlan', options: { parent: 'nope0' } });
    await expect(d.createNetwork(missing)).rejects.toThrow(/parent interface 'nope0' of macvlan network 'nolan' not found/);

    const net = network('f6f6f6f6f6f6f6f6', 'lan', '10.30.0.0/24', '10.30.0.1', { driver: 'macvlan', options: { parent: 'lan0' } });
    await d.createNetwork(net);
    const s = await box('s');
    const e = ep(net, 't1', '10.30.0.10');
    await d.join(net, e, { netns: s.ns, ifname: 'eth0', links: s.w.links }, { defaultRoute: true });
    await d.join(net, e, { netns: s.ns, ifname: 'eth0', links: s.w.links }, { defaultRoute: true });
    expect(await s.w.links.getLink('eth0')).toMatchObject({ kind: 'macvlan', up: true, mac: '02:42:0a:1e:00:0a' });

    const port = await listen(s.w);
    expect(await tcp(lan.w, '10.30.0.10', port)).toBe('hello 10.30.0.10');
    const lanPort = await listen(lan.w);
    expect(await tcp(s.w, '10.30.0.100', lanPort)).toBe('hello 10.30.0.100');
    const seen = (await lan.w.links.listNeighbours('lan1')).find((x) => x.ip === '10.30.0.10');
    expect(seen?.mac).toBe('02:42:0a:1e:00:0a');

    await d.leave(net, e, { netns: s.ns, ifname: 'eth0' });
    await d.leave(net, e, { netns: s.ns, ifname: 'eth0' });
    expect(await s.w.links.getLink('eth0')).toBeUndefined();
    await d.deleteNetwork(net);
    expect((await n.links.listLinks()).map((l) => l.name)).toEqual(['lan0', 'lo']);
    await expectNodeClean(n);
  });
});

describe('cleanupLeftovers', () => {
  it('removes the networks not kept (links, endpoints, NAT rules) and keeps the others working', async () => {
    const n = await node('gc');
    const bridge = new BridgeDriver(n);
    const overlay = new OverlayDriver(n);
    const keep = network('a7a7a7a7a7a7a7a7', 'keep', '10.40.1.0/24', '10.40.1.1');
    const gone = network('b8b8b8b8b8b8b8b8', 'gone', '10.40.2.0/24', '10.40.2.1', { driver: 'overlay', vni: 77 });
    await bridge.createNetwork(keep);
    await overlay.createNetwork(gone);
    const [s1, s2, s3] = [await box('g1'), await box('g2'), await box('g3')];
    await bridge.join(keep, ep(keep, 't1', '10.40.1.11'), { netns: s1.ns, ifname: 'eth0', links: s1.w.links }, { defaultRoute: true });
    await bridge.join(keep, ep(keep, 't2', '10.40.1.12'), { netns: s2.ns, ifname: 'eth0', links: s2.w.links }, { defaultRoute: true });
    await overlay.join(gone, ep(gone, 't3', '10.40.2.11'), { netns: s3.ns, ifname: 'eth0', links: s3.w.links }, { defaultRoute: true });

    const deleted = await cleanupLeftovers(n, new Set([keep.id]));
    expect(deleted.map((name) => name.slice(0, 3)).sort()).toEqual(['shb', 'shv', 'shx']);
    expect(await s3.w.links.getLink('eth0')).toBeUndefined();
    const port = await listen(s2.w);
    expect(await tcp(s1.w, '10.40.1.12', port)).toBe('hello 10.40.1.12');
    const table = JSON.stringify((await n.nft.list(`${OWNER}_net`, 'inet')).nftables);
    expect(table).toContain('10.40.1.0');
    expect(table).not.toContain('10.40.2.0');

    expect(await cleanupLeftovers(n, new Set())).toHaveLength(3);
    await expectNodeClean(n);
  });
});
