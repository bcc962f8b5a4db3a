import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKind } from '../../src/errors.js';
import {
  type Cidr, type IpAddress, canonicalIp, cidrContains, cidrOf, cidrSize, cidrsOverlap, formatCidr, formatIp,
  nthAddress, nthSubnet, offsetOf, parseCidr, parseIp, subnetCount, subnetsOf, tryParseIp,
} from '../../src/ipam/cidr.js';
import { DEFAULT_POOLS, parsePool, poolsFor, resolvePools } from '../../src/ipam/pools.js';

/** Message of the InvalidParameter error `fn` throws (fails the test if it throws anything else). */
function invalidMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isKind(e, 'InvalidParameter')).toBe(true);
    return (e as Error).message;
  }
  throw new Error('expected an InvalidParameter error');
}

describe('parseIp / formatIp', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1', 4],
    ['0.0.0.0', '0.0.0.0', 4],
    ['255.255.255.255', '255.255.255.255', 4],
    ['::', '::', 6],
    ['::1', '::1', 6],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1', 6],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 6], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 6], // a single zero group is not compressed
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1', 6],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3', 6], // the longest run wins
    ['fe80::', 'fe80::', 6],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', 6],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3', 6],
    ['::ffff:a01:203', '::ffff:10.1.2.3', 6],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', 6],
  ] as const)('%s -> %s', (input, canonical, family) => {
    const a = parseIp(input);
    expect(a.family).toBe(family);
    expect(formatIp(a)).toBe(canonical);
  });

  it.each([
    ['10.0.0', 'expected four decimal octets'],
    ['10.0.0.256', 'octet 256 is out of range 0-255'],
    ['10.0.0.01', "octet '01' has a leading zero"],
    ['10.0.0.a', "octet 'a' is not a decimal number"],
    ['', 'expected four decimal octets'],
    ['1::2::3', "'::' may appear only once"],
    ['1:2:3:4:5:6:7:8:9', 'expected 8 groups, got 9'],
    ['1:2:3:4:5:6:7:8::', "too many groups for '::'"],
    ['12345::', "group '12345' is not 1-4 hex digits"],
    ['fe80::1%eth0', 'zone ids'],
    [':1::', 'empty group'],
    ['::1.2.3.256', "embedded IPv4 '1.2.3.256': octet 256"],
  ])('rejects %j (%s)', (input, reason) => {
    const msg = invalidMessage(() => parseIp(input));
    expect(msg).toContain(`invalid IP address '${input}'`);
    expect(msg).toContain(reason);
    expect(tryParseIp(input)).toBeUndefined();
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['10.1.2.3/32', '10.1.2.3/32'],
    ['fd00:0::/64', 'fd00::/64'],
    ['::/0', '::/0'],
  ])('%s -> %s', (input, canonical) => {
    expect(formatCidr(parseCidr(input))).toBe(canonical);
  });

  it.each([
    ['10.0.0.0/33', "invalid subnet '10.0.0.0/33': prefix length must be 0-32"],
    ['fd00::/129', "invalid subnet 'fd00::/129': prefix length must be 0-128"],
    ['10.0.0.0/-1', "invalid subnet '10.0.0.0/-1': prefix length must be 0-32"],
    ['10.0.0.0/024', "invalid subnet '10.0.0.0/024': prefix length must be 0-32"],
    ['10.0.0.0/', "invalid subnet '10.0.0.0/': prefix length must be 0-32"],
    ['10.0.0.0', "invalid subnet '10.0.0.0': expected address/prefix-length, e.g. 10.0.1.0/24"],
    ['10.0.0/24', "invalid subnet '10.0.0/24': '10.0.0' is not an IP address: expected four decimal octets like 10.0.0.1"],
    ['10.0.0.1/24', '10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?'],
    ['fd00::1/64', 'fd00::1/64 has host bits set; did you mean fd00::/64?'],
  ])('rejects %s', (input, message) => {
    expect(invalidMessage(() => parseCidr(input))).toBe(message);
  });

  it('masks host bits only when asked (interface addresses)', () => {
    expect(formatCidr(parseCidr('10.0.0.5/24', { allowHostBits: true }))).toBe('10.0.0.0/24');
  });
});

describe('sizes, nth, contains, overlap, subnets', () => {
  const c24 = parseCidr('10.0.1.0/24');
  it('computes size and nth addresses (negative from the end)', () => {
    expect(cidrSize(c24)).toBe(256n);
    expect(cidrSize(parseCidr('fd00::/64'))).toBe(2n ** 64n);
    expect(formatIp(nthAddress(c24, 1))).toBe('10.0.1.1');
    expect(formatIp(nthAddress(c24, -1))).toBe('10.0.1.255');
    expect(formatIp(nthAddress(parseCidr('fd00::/64'), 2n ** 64n - 1n))).toBe('fd00::ffff:ffff:ffff:ffff');
    expect(invalidMessage(() => nthAddress(c24, 256))).toContain('index 256 is outside it');
  });

  it.each([
    ['10.0.0.0/8', '10.0.1.0/24', true, true],
    ['10.0.1.0/24', '10.0.0.0/8', false, true],
    ['10.0.1.0/24', '10.0.2.0/24', false, false],
    ['10.0.1.0/24', '10.0.1.0/24', true, true],
    ['10.0.0.0/8', 'fd00::/8', false, false],
    ['fd00::/8', 'fd12:3456::/64', true, true],
  ])('%s contains %s: %s, overlaps: %s', (a, b, contains, overlaps) => {
    expect(cidrContains(parseCidr(a), parseCidr(b))).toBe(contains);
    expect(cidrsOverlap(parseCidr(a), parseCidr(b))).toBe(overlaps);
  });

  it('carves pools into subnets, lazily and wrapping from a start', () => {
    const pool = parseCidr('192.168.0.0/16');
    expect(subnetCount(pool, 20)).toBe(16n);
    expect(subnetCount(pool, 8)).toBe(0n);
    expect([...subnetsOf(pool, 18)].map(formatCidr)).toEqual(['192.168.0.0/18', '192.168.64.0/18', '192.168.128.0/18', '192.168.192.0/18']);
    expect([...subnetsOf(pool, 18, 2n, true)].map(formatCidr)).toEqual(['192.168.128.0/18', '192.168.192.0/18', '192.168.0.0/18', '192.168.64.0/18']);
    const first = subnetsOf(parseCidr('fd00::/8'), 64).next();
    expect(first.done === false && formatCidr(first.value)).toBe('fd00::/64');
    expect(formatCidr(nthSubnet(parseCidr('10.0.0.0/8'), 24, 65535n))).toBe('10.255.255.0/24');
  });
});

describe('pools', () => {
  it('has Docker-like defaults', () => {
    expect(poolsFor('overlay', 4).map((p) => `${formatCidr(p.base)}:${p.size}`)).toEqual(['10.0.0.0/8:24']);
    const local = poolsFor('bridge', 4).map((p) => `${formatCidr(p.base)}:${p.size}`);
    expect(local[0]).toBe('172.17.0.0/16:16');
    expect(local[14]).toBe('172.31.0.0/16:16');
    expect(local[15]).toBe('192.168.0.0/16:20');
    expect(local).toHaveLength(16);
    expect(poolsFor('macvlan', 6).map((p) => `${formatCidr(p.base)}:${p.size}`)).toEqual(['fd00::/8:64']);
    expect(resolvePools()).toEqual(DEFAULT_POOLS);
  });

  it.each([
    [{ base: '10.0.0.0/8', size: 7 }, 4, 'address pool 10.0.0.0/8 has size 7: size is the prefix length of the subnets carved from it and must be 8-30'],
    [{ base: '10.0.0.0/8', size: 31 }, 4, 'must be 8-30'],
    [{ base: 'fd00::/8', size: 64 }, 4, 'address pool fd00::/8 is IPv6, but it is configured as an IPv4 pool'],
    [{ base: '10.0.0.1/8', size: 24 }, 4, '10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?'],
  ] as const)('rejects %j', (pool, family, message) => {
    expect(invalidMessage(() => parsePool(pool, family))).toContain(message);
    expect(invalidMessage(() => resolvePools(family === 4 ? { global: [pool] } : { v6: [pool] }))).toContain(message);
  });
});

// ---------------------------------------------------------------------------------- properties

const v4Addr = fc.bigInt({ min: 0n, max: 2n ** 32n - 1n }).map((value): IpAddress => ({ family: 4, value }));
const v6Addr = fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }).map((value): IpAddress => ({ family: 6, value }));
// v6 values biased towards runs of zero groups, where compression is interesting.
const v6Sparse = fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0xabc), { minLength: 8, maxLength: 8 })
  .map((groups): IpAddress => ({ family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n) }));
const anyAddr = fc.oneof(v4Addr, v6Addr, v6Sparse);
const anyCidr = anyAddr.chain((a) => fc.integer({ min: 0, max: a.family === 4 ? 32 : 128 }).map((p): Cidr => cidrOf(a, p)));

describe('properties', () => {
  it('format(parse(x)) round-trips, and parse(format(a)) is a', () => {
    fc.assert(fc.property(anyAddr, (a) => {
      const text = formatIp(a);
      expect(parseIp(text)).toEqual(a);
      expect(canonicalIp(text)).toBe(text);
    }), { numRuns: 2000 });
    fc.assert(fc.property(anyCidr, (c) => {
      expect(parseCidr(formatCidr(c))).toEqual(c);
    }), { numRuns: 1000 });
  });

  it('canonical v6 text follows RFC 5952 (lowercase, no ":::", no compressed single group)', () => {
    fc.assert(fc.property(fc.oneof(v6Addr, v6Sparse), (a) => {
      const text = formatIp(a);
      expect(text).toBe(text.toLowerCase());
      expect(text).not.toContain(':::');
      expect(text.split('::').length).toBeLessThanOrEqual(2);
      expect(text).not.toMatch(/(^|:)0[0-9a-f]/);
    }), { numRuns: 2000 });
  });

  it('nth and contains agree, offsetOf inverts nth', () => {
    fc.assert(fc.property(anyCidr, fc.bigInt({ min: 0n, max: 2n ** 128n }), (c, raw) => {
      const n = raw % cidrSize(c);
      const a = nthAddress(c, n);
      expect(cidrContains(c, a)).toBe(true);
      expect(offsetOf(c, a)).toBe(n);
      expect(cidrContains(c, cidrOf(a, c.prefix))).toBe(true);
    }), { numRuns: 1000 });
  });

  it('overlap is symmetric and equals "one contains the other"', () => {
    fc.assert(fc.property(anyCidr, anyCidr, (a, b) => {
      expect(cidrsOverlap(a, b)).toBe(cidrsOverlap(b, a));
      expect(cidrsOverlap(a, b)).toBe(cidrContains(a, b) || cidrContains(b, a));
    }), { numRuns: 2000 });
    // Same-family blocks drawn around one address overlap often: exercise that branch too.
    fc.assert(fc.property(v4Addr, fc.nat(32), fc.nat(32), (a, p, q) => {
      const x = cidrOf(a, p);
      const y = cidrOf(a, q);
      expect(cidrsOverlap(x, y)).toBe(true);
      expect(cidrContains(p <= q ? x : y, p <= q ? y : x)).toBe(true);
    }));
  });

  it('subnets of a pool are disjoint, inside the pool and cover it', () => {
    fc.assert(fc.property(anyCidr, fc.nat(4), (pool, extra) => {
      const prefix = Math.min(pool.prefix + extra, pool.family === 4 ? 32 : 128);
      const subs = [...subnetsOf(pool, prefix)];
      expect(BigInt(subs.length)).toBe(subnetCount(pool, prefix));
      expect(subs.reduce((acc, s) => acc + cidrSize(s), 0n)).toBe(cidrSize(pool));
      subs.forEach((s, i) => {
        expect(cidrContains(pool, s)).toBe(true);
        const next = subs[i + 1];
        if (next) expect(cidrsOverlap(s, next)).toBe(false);
      });
    }));
  });
});
