import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ShoalError, isShoalError } from '../../src/errors.js';
import {
  AUTO_PORT_MAX, AUTO_PORT_MIN, type Claim, GATEWAY_OWNER, VNI_MAX, VNI_MIN, claimAddress, claimGateway, claimPort,
  claimSubnet, claimVni, commitClaims, defaultGateway, mergeClaims, releaseAddress, releaseNetworkAddresses, releasePort,
  releaseSubnet, releaseVni,
} from '../../src/ipam/allocator.js';
import { cidrContains, parseCidr, parseIp } from '../../src/ipam/cidr.js';
import { IPAM_ROOT } from '../../src/model/keys.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store, TxnOp } from '../../src/store/types.js';

let store: Store;
beforeEach(async () => { store = await openEmbeddedStore({}); });
afterEach(async () => { await store.close(); });

/** Build a claim and commit it alone; resolves with the claimed value. */
async function grant<T>(make: () => Promise<Claim<T>>): Promise<T> {
  const r = await commitClaims(store, async () => {
    const c = await make();
    return { ...mergeClaims(c), value: c.value };
  });
  return r.value;
}

async function release(ops: TxnOp[]): Promise<void> {
  await store.txn({ compare: [], success: ops });
}

/** The ShoalError `p` rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<ShoalError> {
  try {
    await p;
  } catch (e) {
    if (isShoalError(e)) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

const smallPools = { global: [{ base: '10.9.0.0/22', size: 24 }], v6: [{ base: 'fd00:9::/62', size: 64 }] };

describe('claimSubnet', () => {
  it('carves defaults per driver and family', async () => {
    const overlay = parseCidr(await grant(() => claimSubnet(store, { driver: 'overlay', network: 'o' })));
    expect(overlay.prefix).toBe(24);
    expect(cidrContains(parseCidr('10.0.0.0/8'), overlay)).toBe(true);
    const bridge = parseCidr(await grant(() => claimSubnet(store, { driver: 'bridge', network: 'b' })));
    expect(bridge.prefix).toBe(16);
    expect(cidrContains(parseCidr('172.17.0.0/16'), bridge)).toBe(true);
    const v6 = parseCidr(await grant(() => claimSubnet(store, { driver: 'overlay', family: 6, network: 'o' })));
    expect(v6.prefix).toBe(64);
    expect(cidrContains(parseCidr('fd00::/8'), v6)).toBe(true);
    const stored = await store.get(`${IPAM_ROOT}subnets/v4/172.17.0.0_16`);
    expect(JSON.parse(stored?.value ?? '{}')).toEqual({ owner: 'network:b', label: "network 'b'", driver: 'bridge' });
  });

  it.each([
    ['10.0.0.0/33', 'InvalidParameter', "invalid subnet '10.0.0.0/33': prefix length must be 0-32"],
    ['10.0.0.1/24', 'InvalidParameter', '10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?'],
    ['10.0.0.0/31', 'InvalidParameter', 'subnet 10.0.0.0/31 is too small for a network: use a /30 or larger'],
    ['banana', 'InvalidParameter', "invalid subnet 'banana': expected address/prefix-length"],
  ])('rejects requested %s', async (requested, kind, message) => {
    const e = await failure(claimSubnet(store, { driver: 'overlay', network: 'x', requested }));
    expect(e.kind).toBe(kind);
    expect(e.message).toContain(message);
  });

  it('rejects a family mismatch', async () => {
    const e = await failure(claimSubnet(store, { driver: 'overlay', network: 'x', requested: 'fd00::/64', family: 4 }));
    expect(e.message).toBe('subnet fd00::/64 is IPv6, but an IPv4 subnet was asked for');
  });

  it.each([
    ['10.0.1.0/24', "subnet 10.0.1.0/24 overlaps network 'app' (10.0.1.0/24)"],
    ['10.0.0.0/16', "subnet 10.0.0.0/16 overlaps network 'app' (10.0.1.0/24)"], // bigger, containing it
    ['10.0.1.128/25', "subnet 10.0.1.128/25 overlaps network 'app' (10.0.1.0/24)"], // smaller, inside it
  ])('refuses %s while 10.0.1.0/24 is allocated', async (requested, message) => {
    await grant(() => claimSubnet(store, { driver: 'overlay', network: 'app', requested: '10.0.1.0/24' }));
    const e = await failure(claimSubnet(store, { driver: 'bridge', network: 'other', requested }));
    expect(e.kind).toBe('Conflict');
    expect(e.code).toBe('SHOAL_ERR_IPAM_SUBNET_OVERLAP');
    expect(e.message).toContain(message);
    // Adjacent space is fine.
    expect(await grant(() => claimSubnet(store, { driver: 'bridge', network: 'n', requested: '10.0.2.0/24' }))).toBe('10.0.2.0/24');
  });

  it('auto-picks around requested subnets, exhausts with a clear error, reuses after release', async () => {
    await grant(() => claimSubnet(store, { driver: 'overlay', network: 'big', requested: '10.9.0.0/23' }));
    const a = await grant(() => claimSubnet(store, { driver: 'overlay', network: 'a', pools: smallPools }));
    const b = await grant(() => claimSubnet(store, { driver: 'overlay', network: 'b', pools: smallPools }));
    expect([a, b].sort()).toEqual(['10.9.2.0/24', '10.9.3.0/24']);
    const e = await failure(claimSubnet(store, { driver: 'overlay', network: 'c', pools: smallPools }));
    expect(e.code).toBe('SHOAL_ERR_IPAM_EXHAUSTED');
    expect(e.message).toBe(
      'no free IPv4 subnet left in the address pools for overlay networks (10.9.0.0/22 as /24s); pass an explicit --subnet, remove unused networks, or configure larger pools',
    );
    await release(releaseSubnet('10.9.0.0/23'));
    const c = await grant(() => claimSubnet(store, { driver: 'overlay', network: 'c', pools: smallPools }));
    expect(['10.9.0.0/24', '10.9.1.0/24']).toContain(c);
  });

  it('falls through to the next pool when the first is full', async () => {
    const pools = { local: [{ base: '192.168.7.0/24', size: 24 }, { base: '192.168.8.0/24', size: 25 }] };
    expect(await grant(() => claimSubnet(store, { driver: 'bridge', network: 'a', pools }))).toBe('192.168.7.0/24');
    expect(await grant(() => claimSubnet(store, { driver: 'bridge', network: 'b', pools }))).toMatch(/^192\.168\.8\.(0|128)\/25$/);
  });

  it('a claim built on a stale read cannot commit, even for a different key (the index CAS)', async () => {
    // Two managers read the same state and claim overlapping subnets with different keys.
    const big = await claimSubnet(store, { driver: 'overlay', network: 'big', requested: '10.0.0.0/16' });
    const small = await claimSubnet(store, { driver: 'overlay', network: 'small', requested: '10.0.5.0/24' });
    expect((await store.txn({ compare: big.compares, success: big.ops })).succeeded).toBe(true);
    expect((await store.txn({ compare: small.compares, success: small.ops })).succeeded).toBe(false);
    // Through commitClaims the loser re-reads and gets the clear overlap error.
    const e = await failure(grant(() => claimSubnet(store, { driver: 'overlay', network: 'small', requested: '10.0.5.0/24' })));
    expect(e.message).toContain("subnet 10.0.5.0/24 overlaps network 'big' (10.0.0.0/16)");
  });

  it('two subnet claims of one family in one transaction see each other through `pending`', async () => {
    const r = await commitClaims(store, async () => {
      const a = await claimSubnet(store, { driver: 'overlay', network: 'a', requested: '10.7.0.0/24' });
      const e = await failure(claimSubnet(store, { driver: 'overlay', network: 'b', requested: '10.7.0.0/16', pending: [a] }));
      expect(e.message).toContain("overlaps network 'a' (10.7.0.0/24)");
      const b = await claimSubnet(store, { driver: 'overlay', network: 'b', requested: '10.8.0.0/24', pending: [a] });
      const v6 = await claimSubnet(store, { driver: 'overlay', family: 6, network: 'a', pending: [a, b] });
      return { ...mergeClaims(a, b, v6), values: [a.value, b.value, v6.value] };
    });
    expect(r.values.slice(0, 2)).toEqual(['10.7.0.0/24', '10.8.0.0/24']);
    expect(r.attempts).toBe(1);
  });
});

describe('claimAddress', () => {
  const net = 'n1';
  const subnet = '10.0.1.0/24';

  it('grants the gateway only to the gateway owner, and never network/broadcast addresses', async () => {
    expect(defaultGateway(subnet)).toBe('10.0.1.1');
    expect(await grant(() => claimGateway(store, net, subnet))).toBe('10.0.1.1');
    const tiny = '10.0.2.0/30'; // network, gateway, one host, broadcast
    expect(await grant(() => claimAddress(store, net, tiny, { owner: 'task:a' }))).toBe('10.0.2.2');
    const e = await failure(claimAddress(store, net, tiny, { owner: 'task:b', networkName: 'app' }));
    expect(e.code).toBe('SHOAL_ERR_IPAM_EXHAUSTED');
    expect(e.message).toBe("no free address left in subnet 10.0.2.0/30 of network 'app': all 1 assignable addresses are in use; remove tasks or use a larger subnet");
    const stored = await store.get(`${IPAM_ROOT}addresses/n1/v4/10.0.1.1`);
    expect(JSON.parse(stored?.value ?? '{}')).toEqual({ owner: GATEWAY_OWNER });
  });

  it.each([
    ['10.0.2.5', 'InvalidParameter', 'address 10.0.2.5 is not in subnet 10.0.1.0/24'],
    ['fd00::5', 'InvalidParameter', 'address fd00::5 is not in subnet 10.0.1.0/24 (it is IPv6, the subnet is IPv4)'],
    ['10.0.1.0', 'InvalidParameter', 'address 10.0.1.0 cannot be assigned: it is the network address of 10.0.1.0/24'],
    ['10.0.1.255', 'InvalidParameter', 'address 10.0.1.255 cannot be assigned: it is the broadcast address of 10.0.1.0/24'],
    ['10.0.1.1', 'InvalidParameter', 'address 10.0.1.1 cannot be assigned: it is the gateway of 10.0.1.0/24'],
    ['10.0.1.9', 'InvalidParameter', 'address 10.0.1.9 cannot be assigned: it is reserved'],
    ['10.0.1.300', 'InvalidParameter', "invalid address '10.0.1.300': octet 300 is out of range 0-255"],
  ])('rejects requested %s', async (requested, kind, message) => {
    const e = await failure(claimAddress(store, net, subnet, { owner: 'task:x', requested, reserved: ['10.0.1.9', '192.0.2.1'] }));
    expect(e.kind).toBe(kind);
    expect(e.message).toBe(message);
  });

  it('stops with an Internal error naming a corrupt key rather than skipping it', async () => {
    await store.put(`${IPAM_ROOT}addresses/${net}/v4/not-an-ip`, '{}');
    const e = await failure(claimAddress(store, net, subnet, { owner: 't' }));
    expect(e.kind).toBe('Internal');
    expect(e.message).toBe(`IPAM state is corrupt: cannot read allocation key ${IPAM_ROOT}addresses/n1/v4/not-an-ip; delete or repair it`);
  });

  it('rejects malformed subnets and network ids', async () => {
    expect((await failure(claimAddress(store, net, '10.0.1.0/33', { owner: 't' }))).message).toBe("invalid subnet '10.0.1.0/33': prefix length must be 0-32");
    expect((await failure(claimAddress(store, 'a/b', subnet, { owner: 't' }))).message).toBe("invalid network id 'a/b': must be non-empty and contain no '/'");
  });

  it('honours a requested address, refuses it to another owner, keeps it for the same owner', async () => {
    expect(await grant(() => claimAddress(store, net, subnet, { owner: 'task:a', requested: '10.0.1.5' }))).toBe('10.0.1.5');
    const e = await failure(claimAddress(store, net, subnet, { owner: 'task:b', label: "task 'web.2'", requested: '10.0.1.5' }));
    expect(e.kind).toBe('Conflict');
    expect(e.message).toBe('address 10.0.1.5 is already in use by task:a on this network; choose another address or omit it');
    const again = await claimAddress(store, net, subnet, { owner: 'task:a', requested: '10.0.1.5' });
    expect(again.ops).toEqual([]);
    expect(again.compares).toHaveLength(1); // still held, unchanged, at commit
    // Other networks are separate address spaces.
    expect(await grant(() => claimAddress(store, 'n2', subnet, { owner: 'task:b', requested: '10.0.1.5' }))).toBe('10.0.1.5');
  });

  it('fills a small subnet, then reuses exactly what was released', async () => {
    const sub = '10.0.3.0/29'; // 8 addresses - network - gateway - broadcast = 5
    const got = new Set<string>();
    for (let i = 0; i < 5; i++) got.add(await grant(() => claimAddress(store, net, sub, { owner: `task:${i}` })));
    expect([...got].sort()).toEqual(['10.0.3.2', '10.0.3.3', '10.0.3.4', '10.0.3.5', '10.0.3.6']);
    expect((await failure(claimAddress(store, net, sub, { owner: 'task:x' }))).code).toBe('SHOAL_ERR_IPAM_EXHAUSTED');
    await release(releaseAddress(net, '10.0.3.4'));
    expect(await grant(() => claimAddress(store, net, sub, { owner: 'task:x' }))).toBe('10.0.3.4');
    await release(releaseNetworkAddresses(net));
    expect((await store.range(`${IPAM_ROOT}addresses/${net}/`)).kvs).toEqual([]);
  });

  it('allocates IPv6 addresses in canonical form, skipping the subnet-router address and gateway', async () => {
    const sub6 = 'fd00:1:2:3::/126';
    const a = await grant(() => claimAddress(store, net, sub6, { owner: 'task:a' }));
    const b = await grant(() => claimAddress(store, net, sub6, { owner: 'task:b' }));
    expect([a, b].sort()).toEqual(['fd00:1:2:3::2', 'fd00:1:2:3::3']);
    const wide = await grant(() => claimAddress(store, net, 'fd00:9::/64', { owner: 'task:c' }));
    expect(cidrContains(parseCidr('fd00:9::/64'), parseIp(wide))).toBe(true);
  });

  it('several claims in one transaction must pass `pending`, or commitClaims refuses the duplicate', async () => {
    const sub = '10.0.4.0/30'; // exactly one assignable address
    const e = await failure(commitClaims(store, async () => {
      const a = await claimAddress(store, net, sub, { owner: 'task:a' });
      const b = await claimAddress(store, net, sub, { owner: 'task:b' });
      return mergeClaims(a, b);
    }));
    expect(e.kind).toBe('Internal');
    expect(e.message).toContain('pass the earlier claims as `pending`');
    const e2 = await failure(commitClaims(store, async () => {
      const a = await claimAddress(store, net, sub, { owner: 'task:a' });
      const b = await claimAddress(store, net, sub, { owner: 'task:b', pending: [a] });
      return mergeClaims(a, b);
    }));
    expect(e2.code).toBe('SHOAL_ERR_IPAM_EXHAUSTED');
  });
});

describe('claimVni', () => {
  it.each([
    [100, `VNI 100 is out of range: must be an integer ${VNI_MIN}-${VNI_MAX}`],
    [VNI_MAX + 1, 'VNI 16777216 is out of range'],
    [4096.5, 'VNI 4096.5 is out of range'],
  ])('rejects %d', async (vni, message) => {
    const e = await failure(claimVni(store, vni, { owner: 'network:x' }));
    expect(e.kind).toBe('InvalidParameter');
    expect(e.message).toContain(message);
  });

  it('grants in range, refuses a taken one, reuses after release', async () => {
    const auto = await grant(() => claimVni(store, undefined, { owner: 'network:a' }));
    expect(auto).toBeGreaterThanOrEqual(VNI_MIN);
    expect(auto).toBeLessThanOrEqual(VNI_MAX);
    expect(await grant(() => claimVni(store, 4097, { owner: 'network:b', label: "network 'b'" }))).toBe(4097);
    const e = await failure(claimVni(store, 4097, { owner: 'network:c' }));
    expect(e.code).toBe('SHOAL_ERR_IPAM_IN_USE');
    expect(e.message).toBe("VNI 4097 is already used by network 'b'; choose another or omit it");
    await release(releaseVni(4097));
    expect(await grant(() => claimVni(store, 4097, { owner: 'network:c' }))).toBe(4097);
  });
});

describe('claimPort', () => {
  it('auto-assigns from the dynamic range (undefined or 0)', async () => {
    for (const requested of [undefined, 0]) {
      const p = await grant(() => claimPort(store, 'tcp', requested, { owner: 'service:a' }));
      expect(p).toBeGreaterThanOrEqual(AUTO_PORT_MIN);
      expect(p).toBeLessThanOrEqual(AUTO_PORT_MAX);
    }
  });

  it('checks explicit ports per protocol', async () => {
    expect(await grant(() => claimPort(store, 'tcp', 8080, { owner: 'service:web', label: "service 'web'" }))).toBe(8080);
    expect(await grant(() => claimPort(store, 'udp', 8080, { owner: 'service:dns' }))).toBe(8080);
    const e = await failure(claimPort(store, 'tcp', 8080, { owner: 'service:api' }));
    expect(e.kind).toBe('Conflict');
    expect(e.message).toBe("port 8080/tcp is already published by service 'web'; choose another port or omit it to get a free one");
    // The holder asking again (a service update that keeps the port) writes nothing.
    expect((await claimPort(store, 'tcp', 8080, { owner: 'service:web' })).ops).toEqual([]);
    await release(releasePort('tcp', 8080));
    expect(await grant(() => claimPort(store, 'tcp', 8080, { owner: 'service:api' }))).toBe(8080);
  });

  it.each([
    [70000, 'published port 70000 is out of range: must be an integer 1-65535 (or 0 to pick one)'],
    [-1, 'published port -1 is out of range'],
    [80.5, 'published port 80.5 is out of range'],
  ])('rejects %d', async (port, message) => {
    const e = await failure(claimPort(store, 'tcp', port, { owner: 's' }));
    expect(e.kind).toBe('InvalidParameter');
    expect(e.message).toContain(message);
  });

  it('rejects an unknown protocol from untyped input', async () => {
    const proto = JSON.parse('"sctp"') as 'tcp';
    expect((await failure(claimPort(store, proto, 80, { owner: 's' }))).message).toBe("invalid protocol 'sctp': must be tcp or udp");
  });
});

describe('commitClaims', () => {
  const noWait = (): Promise<void> => Promise.resolve();

  it('composes with the caller\'s own compares and ops in one transaction', async () => {
    const nameKey = '/shoal/names/networks/app';
    const r = await commitClaims(store, async () => {
      const s = await claimSubnet(store, { driver: 'overlay', network: 'app' });
      const v = await claimVni(store, undefined, { owner: 'network:app' });
      const plan = mergeClaims(s, v);
      return {
        compares: [{ key: nameKey, target: 'createRevision' as const, op: '=' as const, value: 0 }, ...plan.compares],
        success: [...plan.success, { type: 'put' as const, key: nameKey, value: 'n1' }],
        subnet: s.value,
      };
    });
    expect((await store.get(nameKey))?.modRevision).toBe(r.revision);
    expect((await store.get(`${IPAM_ROOT}subnets/v4/${r.subnet.replace('/', '_')}`))?.modRevision).toBe(r.revision);
  });

  it('retries when an allocation raced it, and rebuilds from a fresh read', async () => {
    let stolen = '';
    const r = await commitClaims(store, async (attempt) => {
      const c = await claimAddress(store, 'n', '10.0.0.0/29', { owner: 'task:me' });
      if (attempt === 1) {
        stolen = c.value; // another manager takes the same address between our read and our txn
        await grant(() => claimAddress(store, 'n', '10.0.0.0/29', { owner: 'task:other', requested: c.value }));
      }
      return { ...mergeClaims(c), value: c.value };
    }, { backoff: noWait });
    expect(r.attempts).toBe(2);
    expect(r.value).not.toBe(stolen);
  });

  it('does not retry a failed compare of the caller\'s own, and says which', async () => {
    await store.put('/shoal/names/networks/app', 'other');
    let builds = 0;
    const e = await failure(commitClaims(store, async () => {
      builds++;
      const c = await claimVni(store, undefined, { owner: 'network:app' });
      return { compares: [{ key: '/shoal/names/networks/app', target: 'createRevision' as const, op: '=' as const, value: 0 }, ...c.compares], success: c.ops };
    }));
    expect(builds).toBe(1);
    expect(e.kind).toBe('Conflict');
    expect(e.message).toContain('/shoal/names/networks/app createRevision = 0 no longer holds');
    const custom = await commitClaims(store, async () => ({ compares: [{ key: '/shoal/names/networks/app', target: 'version' as const, op: '=' as const, value: 0 }], success: [] }), {
      onConflict: () => new Error("network name 'app' is already in use"),
    }).catch((err: Error) => err.message);
    expect(custom).toBe("network name 'app' is already in use");
    expect((await store.range(`${IPAM_ROOT}vnis/`)).kvs).toEqual([]);
  });

  it('gives up after maxAttempts with a Conflict when contention never ends', async () => {
    let n = 0;
    const e = await failure(commitClaims(store, async () => {
      const c = await claimPort(store, 'tcp', undefined, { owner: 'service:me' });
      await store.put(`${IPAM_ROOT}ports/tcp/${c.value}`, JSON.stringify({ owner: `service:thief${n++}` }));
      return mergeClaims(c);
    }, { maxAttempts: 3, backoff: noWait }));
    expect(n).toBe(3);
    expect(e.code).toBe('SHOAL_ERR_IPAM_CONTENTION');
    expect(e.message).toMatch(/^could not allocate after 3 attempts: other managers kept allocating at the same time \(last contended: \/shoal\/ipam\/ports\/tcp\/\d+\); retry the request$/);
  });
});
