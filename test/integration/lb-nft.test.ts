/**
 * The nftables load balancer on the real kernel (root): real TCP and UDP through VIPs in the
 * topology of test/helpers/lb-topology.ts (router with a bridge, a client, three backends,
 * an outside namespace), all in namespaces this file creates and removes, failed or not.
 *
 * The client's load balancer programs the client's own netns (output hook: the backend sees
 * the client's address); the ingress case programs the router (prerouting + masquerade).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound } from '../../src/errors.js';
import { ExecConntrack } from '../../src/kernel/conntrack.js';
import { execTool } from '../../src/kernel/exec.js';
import { ExecNft } from '../../src/kernel/nft.js';
import { netnsPath } from '../../src/kernel/paths.js';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import type { LbBackend, VirtualService } from '../../ingress/types.js';
import { buildLbTopology, startBackend, type BackendServer, type LbTopology } from '../helpers/lb-topology.js';
import { finalCleanup, kernelError, makeTestPrefix } from '../helpers/netns.js';

const prefix = makeTestPrefix();
const TABLE = 'sh_lb';
let topo: LbTopology;
/** `topo` before beforeAll finished (undefined when building it failed). */
const built = (): LbTopology | undefined => topo as LbTopology | undefined;
const servers: BackendServer[] = [];
const lbs: NftLoadBalancer[] = [];
const logs: string[] = [];

function vip(address: string, backends: LbBackend[], over: Partial<VirtualService> = {}): VirtualService {
  return { address, port: 80, protocol: 'tcp', scheduler: 'rr', service: 'web', backends, ...over };
}
const at = (i: number, weight = 1, port = 80): LbBackend => ({ address: `10.77.0.${10 + i}`, port, weight });

/** A load balancer for the netns of `node` (client by default). */
function lbIn(ns: string): NftLoadBalancer {
  const lb = new NftLoadBalancer({ nft: new ExecNft({ netns: ns }), table: TABLE, conntrack: new ExecConntrack({ netns: ns }), log: (m) => logs.push(m) });
  lbs.push(lb);
  return lb;
}

const ask = (host: string, port = 80, ms = 3000): Promise<string> => topo.client.worker.call('lb.ask', host, port, ms) as Promise<string>;
/** `n` connections; how many answers came from each backend name, and the peers the backends saw. */
async function spread(host: string, n: number, port = 80): Promise<{ by: Record<string, number>; peers: Set<string> }> {
  const by: Record<string, number> = {};
  const peers = new Set<string>();
  for (let i = 0; i < n; i++) {
    const [name = '', peer = ''] = (await ask(host, port)).split(' ');
    by[name] = (by[name] ?? 0) + 1;
    peers.add(peer);
  }
  return { by, peers };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('nft load balancer integration tests need root');
  topo = await buildLbTopology(prefix, { backends: 3, outside: true });
  for (const b of topo.backends) servers.push(await startBackend(b.ns, b.name, { tcp: 80, udp: 5353 }));
});

afterEach(async () => {
  await built()?.client.worker.call('lb.closeAll');
  for (const lb of lbs.splice(0)) await lb.cleanup();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await built()?.close();
  await finalCleanup(prefix);
});

describe('NftLoadBalancer on the kernel', () => {
  it('balances 100 connections over 3 backends (rr); the backends see the client; counters rise', async () => {
    const lb = lbIn(topo.client.ns);
    await lb.syncAll([vip('10.77.1.1', [at(1), at(2), at(3)])]);
    const { by, peers } = await spread('10.77.1.1', 100);
    expect(Object.keys(by).sort()).toEqual(['b1', 'b2', 'b3']);
    for (const n of Object.values(by)) expect(n).toBeGreaterThanOrEqual(30);
    expect([...peers]).toEqual(['10.77.0.2']);
    const stats = await lb.stats();
    expect(stats.map((s) => s.address)).toEqual(['10.77.0.11', '10.77.0.12', '10.77.0.13']);
    expect(stats.reduce((a, s) => a + (s.connectionsTotal ?? 0), 0)).toBe(100);
    for (const s of stats) expect(s.connectionsTotal).toBe(by[`b${Number(s.address.split('.')[3]) - 10}`]);
  });

  it('weight 0 drains: an open connection keeps working, new ones avoid the backend; removal keeps it too', async () => {
    const lb = lbIn(topo.client.ns);
    await lb.syncAll([vip('10.77.1.1', [at(1), at(2), at(3)])]);
    await topo.client.worker.call('lb.open', 'keep', '10.77.1.1', 80);
    const [first = ''] = String(await topo.client.worker.call('lb.say', 'keep')).split(' ');
    const i = Number(first.slice(1));
    const others = [1, 2, 3].filter((k) => k !== i);
    await lb.apply([vip('10.77.1.1', [at(i, 0), ...others.map((k) => at(k))])], []);
    expect(String(await topo.client.worker.call('lb.say', 'keep'))).toBe(`${first} 10.77.0.2`);
    expect(Object.keys((await spread('10.77.1.1', 30)).by).sort()).toEqual(others.map((k) => `b${k}`));
    await lb.apply([vip('10.77.1.1', others.map((k) => at(k)))], []);
    expect(String(await topo.client.worker.call('lb.say', 'keep'))).toBe(`${first} 10.77.0.2`);
    expect(Object.keys((await spread('10.77.1.1', 30)).by).sort()).toEqual(others.map((k) => `b${k}`));
  });

  it('affinity: one client sticks to one backend; no backend: connections are refused at once', async () => {
    const lb = lbIn(topo.client.ns);
    await lb.syncAll([
      vip('10.77.1.2', [at(1), at(2), at(3)], { affinity: { timeoutSeconds: 60 } }),
      vip('10.77.1.3', []),
    ]);
    expect(Object.keys((await spread('10.77.1.2', 20)).by)).toHaveLength(1);
    const t0 = Date.now();
    expect((await kernelErrorOrCode(ask('10.77.1.3', 80, 2000)))).toBe('ECONNREFUSED');
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('replaces a backend incrementally; no new connection reaches the removed one', async () => {
    const lb = lbIn(topo.client.ns);
    await lb.syncAll([vip('10.77.1.1', [at(1), at(2)]), vip('10.77.1.4', [at(3)])]);
    expect(Object.keys((await spread('10.77.1.1', 10)).by).sort()).toEqual(['b1', 'b2']);
    await lb.apply([vip('10.77.1.1', [at(2), at(3)])], ['tcp/10.77.1.4/80']);
    expect(Object.keys((await spread('10.77.1.1', 20)).by).sort()).toEqual(['b2', 'b3']);
    // The removed VIP is no longer translated: the router has no route for it.
    expect(await kernelErrorOrCode(ask('10.77.1.4', 80, 800))).toBe('ENETUNREACH');
    expect(logs.filter((l) => l.includes('incremental update failed'))).toEqual([]);
  });

  it('UDP: a removed backend gets no more datagrams from a sticky client, and its conntrack entries are gone', async () => {
    const lb = lbIn(topo.client.ns);
    const dns = (backends: LbBackend[]): VirtualService => vip('10.77.1.53', backends, { protocol: 'udp', port: 53 });
    await lb.syncAll([dns([at(1, 1, 5353), at(2, 1, 5353)])]);
    const udp = (): Promise<string> => topo.client.worker.call('lb.udpAsk', '10.77.1.53', 53, 40053) as Promise<string>;
    const first = await udp();
    expect(first).toMatch(/^b[12] 10\.77\.0\.2$/);
    expect(await udp()).toBe(first); // same 5-tuple: same conntrack flow, same backend
    const gone = first.split(' ')[0] === 'b1' ? 1 : 2;
    const kept = 3 - gone;
    const flowsTo = async (i: number): Promise<boolean> => {
      const { stdout, stderr } = await execTool('test', 'nsenter', [`--net=${netnsPath(topo.client.ns)}`, 'conntrack', '-L', '-p', 'udp']);
      return `${stdout}${stderr}`.includes(`src=10.77.0.${10 + i} `);
    };
    expect(await flowsTo(gone)).toBe(true);
    await lb.apply([dns([at(kept, 1, 5353)])], []);
    expect(await flowsTo(gone)).toBe(false);
    for (let n = 0; n < 5; n++) expect(await udp()).toBe(`b${kept} 10.77.0.2`);
    expect(logs.filter((l) => l.includes('UDP'))).toEqual([]);
  });

  it('IPv6: a VIP balances over IPv6 backends; the backends see the client; counters rise', async () => {
    const lb = lbIn(topo.client.ns);
    const b6 = (i: number): LbBackend => ({ address: `fd77::${10 + i}`, port: 80, weight: 1 });
    await lb.syncAll([vip('fd77:1::1', [b6(1), b6(2)])]);
    const { by, peers } = await spread('fd77:1::1', 10);
    expect(by).toEqual({ b1: 5, b2: 5 });
    expect([...peers]).toEqual(['fd77::2']);
    expect((await lb.stats()).map((s) => s.connectionsTotal)).toEqual([5, 5]);
  });

  it('ingress: traffic from outside through prerouting with masquerade reaches the backends', async () => {
    const outside = topo.outside;
    if (!outside) throw new Error('topology without outside');
    const lb = lbIn(topo.router.ns);
    const published = (masquerade: boolean): VirtualService =>
      vip('10.78.0.1', [at(1), at(2), at(3)], { port: 8080, masquerade, service: 'ingress' });
    await lb.syncAll([published(true)]);
    const seen = new Set<string>();
    for (let n = 0; n < 6; n++) seen.add(String(await outside.worker.call('lb.ask', '10.78.0.1', 8080, 3000)));
    expect([...seen].sort()).toEqual(['b1 10.77.0.1', 'b2 10.77.0.1', 'b3 10.77.0.1']);
    expect((await lb.stats()).reduce((a, s) => a + (s.connectionsTotal ?? 0), 0)).toBe(6);
    // Without masquerade the backends (no route to the outside) cannot answer.
    await lb.apply([published(false)], []);
    expect(await kernelErrorOrCode(outside.worker.call('lb.ask', '10.78.0.1', 8080, 800))).toBe('ETIMEDOUT');
  });

  it('cleanup deletes the table; a fresh process takes over with a full sync', async () => {
    const lb = lbIn(topo.client.ns);
    await lb.syncAll([vip('10.77.1.1', [at(1)])]);
    const again = lbIn(topo.client.ns);
    await again.syncAll([vip('10.77.1.1', [at(2)])]);
    expect(await ask('10.77.1.1')).toBe('b2 10.77.0.2');
    await again.cleanup();
    const e = await kernelError(new ExecNft({ netns: topo.client.ns }).list(TABLE));
    expect(isNotFound(e)).toBe(true);
    await again.cleanup();
  });
});

/** The errno (`ECONNREFUSED`, `ETIMEDOUT`...) a worker call fails with. */
async function kernelErrorOrCode(p: Promise<unknown>): Promise<string> {
  return (await kernelError(p)).errno ?? 'no errno';
}
