/**
 * The nftables load balancer without a kernel: rendered rules (golden), the incremental diff
 * (only named services are touched; cheap nft commands only), leftovers, the fallback to a
 * full sync, sharding, and the conntrack cleanup of removed UDP backends. FakeNft records the
 * scripts; test/integration/lb-nft.test.ts runs the same rules in the kernel.
 */
import { describe, expect, it } from 'vitest';
import { KernelError, isKind } from '../../src/errors.js';
import { FakeConntrack, conntrackDeleteArgs } from '../../src/kernel/conntrack.js';
import { FakeNft, type NftJson } from '../../src/kernel/nft.js';
import {
  NftLoadBalancer, checkVirtualService, fullScript, planIncremental, serviceObjects, shardsFor, slotsOf, type RenderContext,
} from '../../ingress/nft/index.js';
import { vsKey, type LbBackend, type LbScheduler, type VirtualService } from '../../ingress/types.js';

const ctx: RenderContext = { table: 'sh_lb', shards: 1, mark: 0x4000 };

const be = (address: string, weight = 1, port = 8080): LbBackend => ({ address, port, weight });
function vs(address: string, backends: LbBackend[], over: Partial<VirtualService> = {}): VirtualService {
  return { address, port: 80, protocol: 'tcp', scheduler: 'rr', service: 'web', backends, ...over };
}
const rules = (v: VirtualService): string[] => serviceObjects(v, ctx).chain.rules;

/** A load balancer over a FakeNft, synced with `services`; `scripts()` are the scripts applied after that. */
async function synced(services: VirtualService[], opts: { shardObjects?: number; collectAt?: (live: number) => number } = {}) {
  const nft = new FakeNft();
  const conntrack = new FakeConntrack();
  const logs: string[] = [];
  const lb = new NftLoadBalancer({ nft, table: 'sh_lb', conntrack, log: (m) => logs.push(m), ...opts });
  await lb.syncAll(services);
  const base = nft.applied.length;
  return { nft, conntrack, logs, lb, scripts: () => nft.applied.slice(base) };
}

describe('nft rendering (golden)', () => {
  it('rr: one slot per live backend (weights ignored), draining backends out of the slot map', () => {
    const o = serviceObjects(vs('10.96.0.1', [be('10.0.0.3', 5), be('10.0.0.1'), be('10.0.0.2', 0)]), ctx);
    expect(o.chain.rules).toEqual([`meta l4proto tcp dnat ip to numgen inc mod 2 map @${o.map?.name} comment "web"`]);
    expect(o.map?.decl).toBe('typeof numgen inc mod 2 : ip daddr . tcp dport; elements = { 0 : 10.0.0.1 . 8080, 1 : 10.0.0.3 . 8080 };');
    // The draining backend keeps its counter (established flows go on; stats too).
    expect(o.counters.map((c) => c.element.element)).toEqual([
      `tcp . 10.96.0.1 . 80 . 10.0.0.1 . 8080 : "${o.counters[0]?.name}"`,
      `tcp . 10.96.0.1 . 80 . 10.0.0.2 . 8080 : "${o.counters[1]?.name}"`,
      `tcp . 10.96.0.1 . 80 . 10.0.0.3 . 8080 : "${o.counters[2]?.name}"`,
    ]);
    expect(o.vip.element).toBe(`10.96.0.1 . tcp . 80 : goto ${o.chain.name}`);
  });

  it('wrr, random, sh: weighted slots in smooth order; the pick expression per scheduler', () => {
    const backends = [be('10.0.0.1', 6), be('10.0.0.2', 2)];
    const pick = (s: LbScheduler): string => rules(vs('10.96.0.1', backends, { scheduler: s }))[0]?.replace(/ map @m_\w+.*/, '') ?? '';
    expect(pick('wrr')).toBe('meta l4proto tcp dnat ip to numgen inc mod 4');
    expect(pick('random')).toBe('meta l4proto tcp dnat ip to numgen random mod 4');
    expect(pick('sh')).toMatch(/^meta l4proto tcp dnat ip to jhash ip saddr mod 4 seed 0x[0-9a-f]{8}$/);
    expect(pick('mh')).toBe(pick('sh'));
    expect(pick('lc')).toBe('meta l4proto tcp dnat ip to numgen inc mod 2');
    expect(serviceObjects(vs('10.96.0.1', backends, { scheduler: 'wrr' }), ctx).map?.decl)
      .toBe('typeof numgen inc mod 2 : ip daddr . tcp dport; elements = { 0 : 10.0.0.1 . 8080, 1 : 10.0.0.1 . 8080, 2 : 10.0.0.2 . 8080, 3 : 10.0.0.1 . 8080 };');
  });

  it('affinity: per-backend chains and sets (kube-proxy), none for draining backends in the service chain', () => {
    const o = serviceObjects(vs('10.96.0.2', [be('10.0.0.1'), be('10.0.0.2', 0)], { affinity: { timeoutSeconds: 60 } }), ctx);
    const [b1, b2] = o.backendChains;
    const [a1, a2] = o.sets;
    expect(o.sets.map((s) => s.decl)).toEqual(Array(2).fill('type ipv4_addr; flags dynamic,timeout; timeout 60s;'));
    expect(b1?.rules).toEqual([`update @${a1?.name} { ip saddr }`, 'meta l4proto tcp dnat ip to 10.0.0.1:8080']);
    expect(b2?.rules).toEqual([`update @${a2?.name} { ip saddr }`, 'meta l4proto tcp dnat ip to 10.0.0.2:8080']);
    expect(o.chain.rules).toEqual([`ip saddr @${a1?.name} goto ${b1?.name}`, `numgen inc mod 1 vmap @${o.map?.name} comment "web"`]);
    expect(o.map?.decl).toBe(`typeof numgen inc mod 2 : verdict; elements = { 0 : goto ${b1?.name} };`);
  });

  it('no backend taking new flows: TCP reset or ICMP, no slot map', () => {
    expect(rules(vs('10.96.0.3', []))).toEqual(['reject with tcp reset comment "web"']);
    expect(rules(vs('10.96.0.3', [be('10.0.0.1', 0)], { protocol: 'udp' }))).toEqual(['reject comment "web"']);
    expect(serviceObjects(vs('10.96.0.3', []), ctx).map).toBeUndefined();
  });

  it('masquerade marks in the service chain; IPv6 uses ip6 everywhere', () => {
    expect(rules(vs('10.96.0.4', [be('10.0.0.1')], { masquerade: true, service: 'in"gress' }))[0]).toBe('meta mark set meta mark | 0x4000');
    expect(rules(vs('10.96.0.4', [be('10.0.0.1')], { masquerade: true, service: 'in"gress' }))[1]).toMatch(/comment "in_gress"$/);
    const o = serviceObjects(vs('fd00::1', [be('fd00::10'), be('fd00::11')], { scheduler: 'sh', affinity: { timeoutSeconds: 5 } }), ctx);
    expect(o.vip).toMatchObject({ map: 'vip6', key: 'fd00::1 . tcp . 80' });
    expect(o.backendChains[0]?.rules).toEqual([`update @${o.sets[0]?.name} { ip6 saddr }`, 'meta l4proto tcp dnat ip6 to [fd00::10]:8080']);
    expect(o.chain.rules[2]).toMatch(/^jhash ip6 saddr mod 2 seed 0x[0-9a-f]{8} vmap @m_/);
    expect(o.counters[0]?.element.map).toBe('cnt6');
    const plain = serviceObjects(vs('fd00::1', [be('fd00::10')]), ctx);
    expect(plain.map?.decl).toBe('typeof numgen inc mod 2 : ip6 daddr . tcp dport; elements = { 0 : fd00::10 . 8080 };');
  });

  it('the whole table: hooks, dispatch maps, counters, one replace transaction', () => {
    const a = serviceObjects(vs('10.96.0.1', [be('10.0.0.1')]), ctx);
    const script = fullScript([a], ctx, [1, 2]);
    const m = a.map?.name ?? '';
    const c = a.counters[0]?.name ?? '';
    expect(script).toBe(`add table inet sh_lb
delete table inet sh_lb
table inet sh_lb {
	counter ${c} {}
	map vip4 {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {
			10.96.0.1 . tcp . 80 : goto ${a.chain.name}
		}
	}
	map vip6 {
		type ipv6_addr . inet_proto . inet_service : verdict
	}
	map vipa4 {
		type ipv4_addr . inet_proto : verdict
	}
	map vipa6 {
		type ipv6_addr . inet_proto : verdict
	}
	map vipl4 {
		type inet_proto . inet_service : verdict
	}
	map vipl6 {
		type inet_proto . inet_service : verdict
	}
	map cnt4 {
		type inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service : counter
		elements = {
			tcp . 10.96.0.1 . 80 . 10.0.0.1 . 8080 : "${c}"
		}
	}
	map cnt6 {
		type inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service : counter
	}
	map cnta4 {
		type inet_proto . ipv4_addr . ipv4_addr : counter
	}
	map cnta6 {
		type inet_proto . ipv6_addr . ipv6_addr : counter
	}
	map cntl4 {
		type inet_proto . inet_service . ipv4_addr . inet_service : counter
	}
	map cntl6 {
		type inet_proto . inet_service . ipv6_addr . inet_service : counter
	}
	map ${m} { typeof numgen inc mod 2 : ip daddr . tcp dport; elements = { 0 : 10.0.0.1 . 8080 }; }
	chain ${a.chain.name} {
		meta l4proto tcp dnat ip to numgen inc mod 1 map @${m} comment "web"
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr . meta l4proto . th dport vmap @vip4
		ip6 daddr . meta l4proto . th dport vmap @vip6
		ip daddr . meta l4proto vmap @vipa4
		ip6 daddr . meta l4proto vmap @vipa6
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		ip daddr . meta l4proto . th dport vmap @vip4
		ip6 daddr . meta l4proto . th dport vmap @vip6
		ip daddr . meta l4proto vmap @vipa4
		ip6 daddr . meta l4proto vmap @vipa6
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		meta nfproto ipv4 meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ip daddr . ct original proto-dst . ip daddr . th dport map @cnt4
		meta nfproto ipv6 meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ip6 daddr . ct original proto-dst . ip6 daddr . th dport map @cnt6
		meta nfproto ipv4 meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ip daddr . ip daddr map @cnta4
		meta nfproto ipv6 meta l4proto { tcp, udp } ct status dnat counter name meta l4proto . ct original ip6 daddr . ip6 daddr map @cnta6
		meta mark & 0x4000 == 0 return
		meta mark set meta mark ^ 0x4000
		masquerade
	}
}
add table inet sh_lb_1
delete table inet sh_lb_1
add table inet sh_lb_2
delete table inet sh_lb_2
`);
  });

  it('every port (port 0): dispatch on address and protocol, DNAT to the address only (the port is kept), counted per backend', () => {
    const every = (extra: Partial<VirtualService> = {}): VirtualService =>
      vs('10.96.0.9', [{ address: '10.0.0.1', port: 0, weight: 1 }, { address: '10.0.0.2', port: 0, weight: 1 }], { port: 0, ...extra });
    const o = serviceObjects(every(), ctx);
    expect(o.key).toBe('tcp/10.96.0.9/0');
    expect(o.vip).toMatchObject({ map: 'vipa4', element: `10.96.0.9 . tcp : goto ${o.chain.name}` });
    expect(o.chain.rules).toEqual([`meta l4proto tcp dnat ip to numgen inc mod 2 map @${o.map?.name} comment "web"`]);
    expect(o.map?.decl).toBe('typeof numgen inc mod 2 : ip daddr; elements = { 0 : 10.0.0.1, 1 : 10.0.0.2 };');
    expect(o.counters.map((c) => c.element.map)).toEqual(['cnta4', 'cnta4']);
    expect(o.counters[0]?.element.key).toBe('tcp . 10.96.0.9 . 10.0.0.1');
    const aff = serviceObjects(every({ affinity: { timeoutSeconds: 30 } }), ctx);
    expect(aff.backendChains[0]?.rules[1]).toBe('meta l4proto tcp dnat ip to 10.0.0.1');
    const udp6 = serviceObjects(vs('fd00::9', [{ address: 'fd00::1', port: 0, weight: 1 }], { port: 0, protocol: 'udp' }), ctx);
    expect(udp6.vip.map).toBe('vipa6');
    expect(udp6.map?.decl).toBe('typeof numgen inc mod 2 : ip6 daddr; elements = { 0 : fd00::1 };');
    // An explicit port and the every-port service of one address coexist: different maps.
    expect(serviceObjects(vs('10.96.0.9', [be('10.0.0.1')]), ctx).vip.map).toBe('vip4');
  });

  it('every local address (0.0.0.0:P, a node\'s published ports): fib-local dispatch on protocol and port, loopback callers masqueraded, counted without the address', () => {
    const lctx: RenderContext = { ...ctx, everyLocal: true };
    const o = serviceObjects(vs('0.0.0.0', [be('10.255.0.2')], { port: 8080 }), lctx);
    expect(o.key).toBe('tcp/0.0.0.0/8080');
    expect(o.vip).toEqual({ map: 'vipl4', key: 'tcp . 8080', element: `tcp . 8080 : goto ${o.chain.name}` });
    expect(o.chain.rules).toEqual(['ip saddr 127.0.0.0/8 meta mark set meta mark | 0x4000', `meta l4proto tcp dnat ip to numgen inc mod 1 map @${o.map?.name} comment "web"`]);
    expect(o.counters.map((c) => c.element.element)).toEqual([`tcp . 8080 . 10.255.0.2 . 8080 : "${o.counters[0]?.name}"`]);
    // A masqueraded frontend marks every flow anyway; IPv6 has no loopback case.
    expect(serviceObjects(vs('0.0.0.0', [be('10.0.0.1')], { port: 8080, masquerade: true }), lctx).chain.rules[0]).toBe('meta mark set meta mark | 0x4000');
    const v6 = serviceObjects(vs('::', [be('fd00::1')], { port: 8080, protocol: 'udp' }), lctx);
    expect([v6.vip.map, v6.counters[0]?.element.map, v6.chain.rules.length]).toEqual(['vipl6', 'cntl6', 1]);
    const script = fullScript([o], lctx);
    // Loopback destinations only from the namespace itself (output), never from outside (prerouting).
    expect(script).toContain('\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip daddr . meta l4proto . th dport vmap @vip4\n\t\tip6 daddr . meta l4proto . th dport vmap @vip6\n'
      + '\t\tip daddr . meta l4proto vmap @vipa4\n\t\tip6 daddr . meta l4proto vmap @vipa6\n'
      + '\t\tmeta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap @vipl4\n'
      + '\t\tmeta nfproto ipv6 ip6 daddr != ::1 fib daddr type local meta l4proto . th dport vmap @vipl6\n\t}');
    expect(script).toContain('\t\tmeta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @vipl4\n');
    expect(script).toContain('ct status dnat counter name meta l4proto . ct original proto-dst . ip daddr . th dport map @cntl4');
    // Without everyLocal (a VIP sandbox) the hooks do no fib lookup.
    expect(fullScript([], ctx)).not.toContain('fib');
  });

  it('every local address: refused on a port-0 frontend and by a load balancer not made for it', async () => {
    expect(() => checkVirtualService(vs('0.0.0.0', [{ address: '10.0.0.1', port: 0, weight: 1 }], { port: 0 }))).toThrow(/one port at a time/);
    const { lb } = await synced([]);
    await expect(lb.apply([vs('0.0.0.0', [be('10.0.0.1')], { port: 8080 })], [])).rejects.toThrow(/takes no every-local-address frontend/);
    const nft = new FakeNft();
    const host = new NftLoadBalancer({ nft, table: 'sh_publish', everyLocal: true });
    await host.syncAll([vs('0.0.0.0', [be('10.0.0.1')], { port: 8080 })]);
    expect(nft.dump()).toContain('fib daddr type local');
  });

  it('names are deterministic: the same service renders the same in any process', () => {
    const v = vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.2')]);
    const again = serviceObjects({ ...v, backends: [...v.backends].reverse() }, ctx);
    expect(again.signature).toBe(serviceObjects(v, ctx).signature);
  });
});

describe('slots and validation', () => {
  it('wrr divides by the gcd and caps the slot count', () => {
    expect(slotsOf({ scheduler: 'wrr', backends: [be('a', 4), be('b', 2)] }).map((b) => b.address)).toEqual(['a', 'b', 'a']);
    expect(slotsOf({ scheduler: 'wrr', backends: [be('a', 256), be('b', 255), be('c', 1), be('d', 0)] }).length).toBeLessThanOrEqual(1024);
    expect(slotsOf({ scheduler: 'rr', backends: [be('a', 0)] })).toEqual([]);
  });

  it('refuses what it cannot render, with a sentence', () => {
    const bad = (v: VirtualService): string => {
      try {
        checkVirtualService(v);
        return 'accepted';
      } catch (e) {
        return isKind(e, 'InvalidParameter') ? (e as Error).message : 'wrong error';
      }
    };
    expect(bad(vs('10.96.0.1', [be('fd00::1')]))).toMatch(/not an IPv4 address/);
    expect(bad(vs('10.96.0.1', [be('10.0.0.1', 300)]))).toMatch(/weight must be 0..256/);
    expect(bad(vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.1')]))).toMatch(/listed twice/);
    expect(bad(vs('nope', []))).toMatch(/not an IP address/);
    expect(bad(vs('10.96.0.1', [], { port: 70000 }))).toMatch(/port must be 1..65535/);
    expect(bad(vs('10.96.0.1', [be('10.0.0.1')], { port: 0 }))).toMatch(/port must be 0/);
    expect(bad(vs('10.96.0.1', [{ address: '10.0.0.1', port: 0, weight: 1 }], { port: 0 }))).toBe('accepted');
    expect(bad(vs('10.96.0.1', [], { affinity: { timeoutSeconds: 0 } }))).toMatch(/affinity timeout/);
  });

  it('shards double with the objects, up to 64', () => {
    expect([shardsFor(10), shardsFor(4096), shardsFor(4097), shardsFor(10_000), shardsFor(10_000_000)]).toEqual([1, 1, 2, 4, 64]);
  });
});

describe('NftLoadBalancer.apply: incremental, one transaction', () => {
  const three = [
    vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.2')]),
    vs('10.96.0.2', [be('10.0.0.3')]),
    vs('10.96.0.3', [be('10.0.0.4')], { protocol: 'udp' }),
  ];

  it('touches only the named service, with commands that need no nft cache', async () => {
    const t = await synced(three);
    const others = [serviceObjects(three[1] as VirtualService, ctx), serviceObjects(three[2] as VirtualService, ctx)];
    await t.lb.apply([vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.5')])], []);
    const [script] = t.scripts();
    expect(t.scripts()).toHaveLength(1);
    for (const o of others) {
      expect(script).not.toContain(o.chain.name);
      expect(script).not.toContain(o.vs.address);
    }
    expect(script).not.toMatch(/^(add rule|add element|delete|insert|replace)/m);
    const s1 = serviceObjects(vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.5')]), ctx);
    const old = serviceObjects(three[0] as VirtualService, ctx);
    expect(script).toBe(`add map inet sh_lb ${s1.map?.name} { ${s1.map?.decl} }
flush chain inet sh_lb ${s1.chain.name}
add chain inet sh_lb ${s1.chain.name} {
	${s1.chain.rules[0]}
}
add counter inet sh_lb ${s1.counters[1]?.name}
add map inet sh_lb cnt4 { type inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service : counter; elements = { ${s1.counters[1]?.element.element} }; }
`);
    expect(t.lb.applied().get('tcp/10.96.0.1/80')?.backends.map((b) => b.address)).toEqual(['10.0.0.1', '10.0.0.5']);
    expect(old.counters[1]?.name).not.toBe(s1.counters[1]?.name);
  });

  it('an unchanged upsert costs no transaction; a new service adds its dispatch element', async () => {
    const t = await synced(three);
    await t.lb.apply([three[1] as VirtualService], []);
    expect(t.scripts()).toEqual([]);
    await t.lb.apply([vs('10.96.0.9', [be('10.0.0.9')])], []);
    const s9 = serviceObjects(vs('10.96.0.9', [be('10.0.0.9')]), ctx);
    expect(t.scripts()[0]).toContain(`add map inet sh_lb vip4 { type ipv4_addr . inet_proto . inet_service : verdict; elements = { 10.96.0.9 . tcp . 80 : goto ${s9.chain.name} }; }`);
    expect(t.scripts()[0]).not.toContain(`flush chain inet sh_lb ${s9.chain.name}`);
  });

  it('removal flushes (no delete) and leaves leftovers that a later apply collects in bulk', async () => {
    const t = await synced(three, { collectAt: () => 5 });
    const gone = serviceObjects(three[1] as VirtualService, ctx);
    await t.lb.apply([], ['tcp/10.96.0.2/80', 'tcp/10.0.0.99/80']);
    expect(t.scripts()[0]).toBe(`flush chain inet sh_lb ${gone.chain.name}\n`);
    expect([...t.lb.applied().keys()]).toEqual(['tcp/10.96.0.1/80', 'udp/10.96.0.3/80']);
    // Re-adding it reuses the leftovers: no new dispatch element, no new counter.
    await t.lb.apply([three[1] as VirtualService], []);
    expect(t.scripts()[1]).not.toMatch(/vip4|add counter/);
    // Leftovers beyond the threshold: deleted in the same transaction, elements first.
    await t.lb.apply([], ['tcp/10.96.0.2/80', 'tcp/10.96.0.1/80']);
    const collect = (t.scripts()[2] ?? '').split('\n').filter((l) => l.startsWith('delete'));
    expect(collect.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual([
      'delete element', 'delete element', 'delete element', 'delete element', 'delete element',
      'delete map', 'delete map', 'delete chain', 'delete chain', 'delete counter', 'delete counter', 'delete counter',
    ]);
    expect(collect).toContain('delete element inet sh_lb vip4 { 10.96.0.2 . tcp . 80 }');
  });

  it('falls back to a full replace of the state when the incremental script fails', async () => {
    const t = await synced(three);
    t.nft.failNext('ENOENT', 'Error: No such file or directory');
    await t.lb.apply([vs('10.96.0.1', [be('10.0.0.7')])], ['udp/10.96.0.3/80']);
    const [full] = t.scripts();
    expect(full?.startsWith('add table inet sh_lb\ndelete table inet sh_lb\ntable inet sh_lb {')).toBe(true);
    expect(full).toContain('10.0.0.7 . 8080');
    expect(full).not.toContain('10.96.0.3');
    expect(t.logs[0]).toMatch(/incremental update failed .*replacing the tables/);
    expect([...t.lb.applied().keys()]).toEqual(['tcp/10.96.0.1/80', 'tcp/10.96.0.2/80']);
  });

  it('a failing full sync changes nothing it remembers and rejects', async () => {
    const t = await synced(three);
    t.nft.failNext();
    await expect(t.lb.syncAll([])).rejects.toBeInstanceOf(KernelError);
    expect(t.lb.applied().size).toBe(3);
  });

  it('apply before any full sync programs the whole table (and removes leftovers)', async () => {
    const nft = new FakeNft();
    const lb = new NftLoadBalancer({ nft, table: 'sh_lb' });
    await lb.apply([three[0] as VirtualService], []);
    expect(nft.applied[0]).toMatch(/^add table inet sh_lb\ndelete table inet sh_lb\ntable inet sh_lb \{/);
    // Shard tables of an earlier process are deleted too, whatever their number was.
    expect(nft.applied[0]).toContain('delete table inet sh_lb_63');
    expect(nft.listTables()).toEqual(['inet sh_lb']);
  });

  it('spreads services over shard tables; a change touches one table', async () => {
    const many = Array.from({ length: 12 }, (_, i) => vs(`10.96.1.${i + 1}`, [be('10.0.0.1')]));
    const t = await synced(many, { shardObjects: 2 });
    expect(t.nft.listTables()).toEqual(['inet sh_lb', ...[1, 2, 3, 4, 5, 6, 7].map((k) => `inet sh_lb_${k}`)].sort());
    await t.lb.apply([vs('10.96.1.5', [be('10.0.0.2')])], []);
    const tables = new Set([...(t.scripts()[0] ?? '').matchAll(/inet (sh_lb\w*)/g)].map((m) => m[1]));
    const shard = serviceObjects(vs('10.96.1.5', []), { ...ctx, shards: 8 }).shard;
    // Its own table, plus the first one for counters.
    expect([...tables].sort()).toEqual([...new Set(['sh_lb', shard === 0 ? 'sh_lb' : `sh_lb_${shard}`])].sort());
    // Growing past the shards' size re-spreads with a full sync.
    await t.lb.apply(Array.from({ length: 8 }, (_, i) => vs(`10.96.2.${i + 1}`, [])), []);
    expect(t.scripts()[1]).toContain('table inet sh_lb_15 {');
  });

  it('cleanup deletes every table it may own; absent ones are fine', async () => {
    const t = await synced(three);
    await t.lb.cleanup();
    expect(t.nft.listTables()).toEqual([]);
    expect(t.lb.applied().size).toBe(0);
    await t.lb.cleanup();
  });
});

describe('NftLoadBalancer and conntrack', () => {
  const udp = (backends: LbBackend[]): VirtualService => vs('10.96.0.53', backends, { port: 53, protocol: 'udp' });

  it('deletes the UDP flows of a removed backend, not of kept, draining or TCP ones', async () => {
    const t = await synced([udp([be('10.0.0.1'), be('10.0.0.2'), be('10.0.0.3')]), vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.2')])]);
    await t.lb.apply([udp([be('10.0.0.1'), be('10.0.0.3', 0)]), vs('10.96.0.1', [be('10.0.0.1')])], []);
    expect(t.conntrack.calls).toEqual([{ protocol: 'udp', origDst: '10.96.0.53', origDstPort: 53, replySrc: '10.0.0.2' }]);
    await t.lb.apply([], [vsKey(udp([]))]);
    expect(t.conntrack.calls.slice(1).map((c) => c.replySrc)).toEqual(['10.0.0.1', '10.0.0.3']);
  });

  it('a full sync that drops a UDP backend deletes its flows too; a conntrack failure is logged', async () => {
    const t = await synced([udp([be('10.0.0.1'), be('10.0.0.2')])]);
    t.conntrack.deleteFlows = async () => {
      throw new KernelError('conntrack.delete', 'EPERM', 'not allowed');
    };
    await t.lb.syncAll([udp([be('10.0.0.1')])]);
    expect(t.logs[0]).toMatch(/deleting UDP flows of udp\/10.96.0.53\/53 -> 10.0.0.2: .*not allowed/);
  });

  it('builds the conntrack -D arguments for both families', () => {
    expect(conntrackDeleteArgs({ protocol: 'udp', origDst: '10.96.0.53', origDstPort: 53, replySrc: '10.0.0.2' }))
      .toEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', '10.96.0.53', '--orig-port-dst', '53', '--reply-src', '10.0.0.2']);
    expect(conntrackDeleteArgs({ protocol: 'udp', replySrc: 'fd00::2' })).toEqual(['-D', '-f', 'ipv6', '-p', 'udp', '--reply-src', 'fd00::2']);
  });
});

describe('NftLoadBalancer.stats', () => {
  it('reads the named counters of the first table per backend', async () => {
    const t = await synced([vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.2', 0)])]);
    const [c1, c2] = serviceObjects(vs('10.96.0.1', [be('10.0.0.1'), be('10.0.0.2', 0)]), ctx).counters;
    const listing: NftJson = {
      nftables: [
        { metainfo: {} },
        { counter: { family: 'inet', table: 'sh_lb', name: c1?.name, packets: 7, bytes: 420 } },
        { counter: { family: 'inet', table: 'sh_lb', name: c2?.name, packets: 2, bytes: 120 } },
      ],
    };
    t.nft.list = async () => listing;
    const want = [
      { vs: 'tcp/10.96.0.1/80', service: 'web', address: '10.0.0.1', port: 8080, connectionsTotal: 7 },
      { vs: 'tcp/10.96.0.1/80', service: 'web', address: '10.0.0.2', port: 8080, connectionsTotal: 2 },
    ];
    expect(await t.lb.stats()).toEqual(want);
    // An adapter that can list the counters alone is asked for them only (no full listing).
    const asked: string[] = [];
    t.nft.list = async () => { throw new Error('full listing not wanted'); };
    (t.nft as { listCounters?: (table: string) => Promise<NftJson> }).listCounters = async (table) => { asked.push(table); return listing; };
    expect(await t.lb.stats()).toEqual(want);
    expect(asked).toEqual(['sh_lb']);
  });
});

describe('planIncremental', () => {
  it('changing affinity rewrites backend chains and retires the old sets', () => {
    const a = serviceObjects(vs('10.96.0.1', [be('10.0.0.1')], { affinity: { timeoutSeconds: 10 } }), ctx);
    const b = serviceObjects(vs('10.96.0.1', [be('10.0.0.1')], { affinity: { timeoutSeconds: 20 } }), ctx);
    const plan = planIncremental((k) => (k === a.key ? a : undefined), new Map(), [b], [], ctx);
    expect(plan.script).toContain(`add set inet sh_lb ${b.sets[0]?.name} { type ipv4_addr; flags dynamic,timeout; timeout 20s; }`);
    expect(plan.script).toContain(`flush chain inet sh_lb ${b.backendChains[0]?.name}\nadd chain inet sh_lb ${b.backendChains[0]?.name} {`);
    expect(plan.leftoversAdded.map((o) => `${o.kind} ${o.name}`)).toEqual([`set ${a.sets[0]?.name}`]);
  });
});
