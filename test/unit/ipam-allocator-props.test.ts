/**
 * Property tests of the allocator against the embedded store: random allocate/release
 * sequences checked against a model, and two "manager instances" interleaving commits on one
 * store (interleavings chosen by fast-check's scheduler, so failures replay from a seed).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isShoalError } from '../../src/errors.js';
import {
  type Claim, type CommitOptions, claimAddress, claimPort, claimSubnet, claimVni, commitClaims, mergeClaims,
  releaseAddress, releasePort, releaseSubnet, releaseVni,
} from '../../src/ipam/allocator.js';
import { type Cidr, cidrOf, cidrsOverlap, formatCidr, nthSubnet, parseCidr, parseIp } from '../../src/ipam/cidr.js';
import { IPAM_ROOT } from '../../src/model/keys.js';
import type { Protocol } from '../../src/model/types.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';

const NET = 'n';
const ADDR_SUBNET = '10.0.0.0/28'; // 13 assignable: exhaustion is reached often
const POOL = { global: [{ base: '10.9.0.0/20', size: 24 }] }; // 16 subnets

async function grant<T>(store: Store, make: () => Promise<Claim<T>>, opts?: CommitOptions): Promise<T> {
  const r = await commitClaims(store, async () => {
    const c = await make();
    return { ...mergeClaims(c), value: c.value };
  }, opts);
  return r.value;
}

/** The error code a rejection carries (rethrows anything that is not a ShoalError). */
async function outcome<T>(p: Promise<T>): Promise<{ ok: T } | { code: string }> {
  try {
    return { ok: await p };
  } catch (e) {
    if (isShoalError(e)) return { code: e.code };
    throw e;
  }
}

type Action =
  | { kind: 'addr'; requested?: number }
  | { kind: 'subnet'; requested?: { prefix: number; index: number } }
  | { kind: 'vni'; requested?: number }
  | { kind: 'port'; protocol: Protocol; requested?: number }
  | { kind: 'release'; what: 'addr' | 'subnet' | 'vni' | 'port'; pick: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('addr' as const), requested: fc.option(fc.nat(15), { nil: undefined }) }, { requiredKeys: ['kind'] }),
  fc.record({
    kind: fc.constant('subnet' as const),
    requested: fc.option(fc.record({ prefix: fc.integer({ min: 21, max: 26 }), index: fc.nat() }), { nil: undefined }),
  }, { requiredKeys: ['kind'] }),
  fc.record({ kind: fc.constant('vni' as const), requested: fc.option(fc.integer({ min: 4096, max: 4099 }), { nil: undefined }) }, { requiredKeys: ['kind'] }),
  fc.record({
    kind: fc.constant('port' as const),
    protocol: fc.constantFrom<Protocol>('tcp', 'udp'),
    requested: fc.option(fc.constantFrom(80, 8080, 30000, 30001), { nil: undefined }),
  }, { requiredKeys: ['kind', 'protocol'] }),
  fc.record({ kind: fc.constant('release' as const), what: fc.constantFrom('addr', 'subnet', 'vni', 'port'), pick: fc.nat() }),
);

/** Keys of the store under `prefix` (sorted), to compare with the model. */
async function keysUnder(store: Store, prefix: string): Promise<string[]> {
  return (await store.range(prefix)).kvs.map((kv) => kv.key).filter((k) => !k.endsWith('~index')).sort();
}

describe('allocate/release sequences against a model', () => {
  it('never grant a held value twice, refuse only for a true reason, and leave exactly the model in the store', async () => {
    await fc.assert(fc.asyncProperty(fc.array(action, { maxLength: 60 }), async (actions) => {
      const store = await openEmbeddedStore({});
      const addrs = new Set<string>();
      const subnets = new Map<string, Cidr>();
      const vnis = new Set<number>();
      const ports = new Set<string>();
      const pool = parseCidr('10.9.0.0/20');
      let owner = 0;
      for (const a of actions) {
        const who = `o:${owner++}`;
        if (a.kind === 'addr') {
          const requested = a.requested === undefined ? undefined : `10.0.0.${a.requested}`;
          const r = await outcome(grant(store, () => claimAddress(store, NET, ADDR_SUBNET, { owner: who, requested })));
          if ('ok' in r) {
            expect(addrs.has(r.ok)).toBe(false);
            const last = parseIp(r.ok).value & 0xffn;
            expect(last === 0n || last === 1n || last === 15n).toBe(false); // network, gateway, broadcast
            addrs.add(r.ok);
          } else if (requested === undefined) {
            expect([r.code, addrs.size]).toEqual(['SHOAL_ERR_IPAM_EXHAUSTED', 13]);
          } else {
            const excluded = a.requested === 0 || a.requested === 1 || a.requested === 15;
            expect(r.code).toBe(excluded ? 'SHOAL_ERR_INVALID_PARAMETER' : 'SHOAL_ERR_IPAM_IN_USE');
            if (!excluded) expect(addrs.has(requested)).toBe(true);
          }
        } else if (a.kind === 'subnet') {
          const req = a.requested && nthSubnet(pool, a.requested.prefix, BigInt(a.requested.index) % (1n << BigInt(a.requested.prefix - 20)));
          const r = await outcome(grant(store, () => claimSubnet(store, {
            driver: 'overlay', network: who, pools: POOL, requested: req && formatCidr(req),
          })));
          const clash = (c: Cidr): boolean => [...subnets.values()].some((s) => cidrsOverlap(s, c));
          if ('ok' in r) {
            const c = parseCidr(r.ok);
            expect(clash(c)).toBe(false);
            subnets.set(r.ok, c);
          } else if (req) {
            expect([r.code, clash(req)]).toEqual(['SHOAL_ERR_IPAM_SUBNET_OVERLAP', true]);
          } else {
            expect(r.code).toBe('SHOAL_ERR_IPAM_EXHAUSTED');
            for (let i = 0n; i < 16n; i++) expect(clash(nthSubnet(pool, 24, i))).toBe(true);
          }
        } else if (a.kind === 'vni') {
          const r = await outcome(grant(store, () => claimVni(store, a.requested, { owner: who })));
          if ('ok' in r) {
            expect(vnis.has(r.ok)).toBe(false);
            vnis.add(r.ok);
          } else {
            expect([r.code, a.requested !== undefined && vnis.has(a.requested)]).toEqual(['SHOAL_ERR_IPAM_IN_USE', true]);
          }
        } else if (a.kind === 'port') {
          const r = await outcome(grant(store, () => claimPort(store, a.protocol, a.requested, { owner: who })));
          if ('ok' in r) {
            expect(ports.has(`${r.ok}/${a.protocol}`)).toBe(false);
            ports.add(`${r.ok}/${a.protocol}`);
          } else {
            expect([r.code, ports.has(`${a.requested}/${a.protocol}`)]).toEqual(['SHOAL_ERR_IPAM_IN_USE', true]);
          }
        } else {
          const held: string[] = [...(a.what === 'addr' ? addrs : a.what === 'subnet' ? subnets.keys() : a.what === 'vni' ? [...vnis].map(String) : ports)];
          const victim = held[a.pick % Math.max(1, held.length)];
          if (victim === undefined) continue;
          const ops = a.what === 'addr' ? releaseAddress(NET, victim)
            : a.what === 'subnet' ? releaseSubnet(victim)
              : a.what === 'vni' ? releaseVni(Number(victim))
                : releasePort(victim.split('/')[1] as Protocol, Number(victim.split('/')[0]));
          await store.txn({ compare: [], success: ops });
          if (a.what === 'addr') addrs.delete(victim);
          else if (a.what === 'subnet') subnets.delete(victim);
          else if (a.what === 'vni') vnis.delete(Number(victim));
          else ports.delete(victim);
        }
      }
      // The store holds exactly the model: nothing leaked, nothing lost.
      expect(await keysUnder(store, `${IPAM_ROOT}addresses/`)).toEqual([...addrs].map((x) => `${IPAM_ROOT}addresses/${NET}/v4/${x}`).sort());
      expect(await keysUnder(store, `${IPAM_ROOT}subnets/`)).toEqual([...subnets.keys()].map((x) => `${IPAM_ROOT}subnets/v4/${x.replace('/', '_')}`).sort());
      expect(await keysUnder(store, `${IPAM_ROOT}vnis/`)).toEqual([...vnis].map((x) => `${IPAM_ROOT}vnis/${x}`).sort());
      expect(await keysUnder(store, `${IPAM_ROOT}ports/`)).toEqual([...ports].map((x) => `${IPAM_ROOT}ports/${x.split('/')[1]}/${x.split('/')[0]}`).sort());
      await store.close();
    }), { numRuns: 150 });
  });
});

/** A store whose range and txn calls start only when the fast-check scheduler says so. */
function scheduledStore(store: Store, s: fc.Scheduler): Store {
  const gate = (label: string): Promise<void> => s.schedule(Promise.resolve(), label);
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'range') return async (...args: Parameters<Store['range']>) => { await gate('range'); return target.range(...args); };
      if (prop === 'txn') return async (...args: Parameters<Store['txn']>) => { await gate('txn'); return target.txn(...args); };
      const v: unknown = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

interface Grants { addrs: string[]; subnets: string[]; vnis: number[]; ports: string[] }

/** Explicit requests of one manager instance, from small shared sets so the two really contend. */
interface Explicit { ports: number[]; subnets: string[] }

/**
 * One manager instance: `n` requests, each allocating an address, a subnet, a VNI and a port
 * (plus an explicit udp port and an explicit subnet of varying size) in ONE transaction, the
 * way the manager composes claims with its own writes.
 */
async function manager(store: Store, name: string, n: number, explicit: Explicit, opts: CommitOptions): Promise<Grants> {
  const out: Grants = { addrs: [], subnets: [], vnis: [], ports: [] };
  for (let i = 0; i < n; i++) {
    const owner = `${name}:${i}`;
    const wantPort = explicit.ports[i];
    const wantSubnet = explicit.subnets[i];
    const r = await commitClaims(store, async () => {
      const addr = await claimAddress(store, NET, '10.0.0.0/27', { owner });
      const subnet = await claimSubnet(store, { driver: 'overlay', network: owner, pools: POOL });
      const vni = await claimVni(store, undefined, { owner });
      const port = await claimPort(store, 'tcp', undefined, { owner });
      // Explicit values may legitimately be taken (or overlap) already: those claims are left out.
      const extra = wantPort === undefined ? undefined : await claimPort(store, 'udp', wantPort, { owner }).catch(() => undefined);
      const sub2 = wantSubnet === undefined ? undefined
        : await claimSubnet(store, { driver: 'overlay', network: `${owner}b`, requested: wantSubnet, pending: [subnet] }).catch(() => undefined);
      return {
        ...mergeClaims(addr, subnet, vni, port, ...(extra ? [extra] : []), ...(sub2 ? [sub2] : [])),
        grants: {
          addr: addr.value, subnets: [subnet.value, ...(sub2 ? [sub2.value] : [])], vni: vni.value,
          ports: [`${port.value}/tcp`, ...(extra ? [`${extra.value}/udp`] : [])],
        },
      };
    }, opts);
    out.addrs.push(r.grants.addr);
    out.subnets.push(...r.grants.subnets);
    out.vnis.push(r.grants.vni);
    out.ports.push(...r.grants.ports);
  }
  return out;
}

function expectNoCollision(a: Grants, b: Grants): void {
  const all = <T>(x: T[], y: T[]): T[] => [...x, ...y];
  const addrs = all(a.addrs, b.addrs);
  expect(new Set(addrs).size).toBe(addrs.length);
  const vnis = all(a.vnis, b.vnis);
  expect(new Set(vnis).size).toBe(vnis.length);
  const ports = all(a.ports, b.ports);
  expect(new Set(ports).size).toBe(ports.length);
  const subnets = all(a.subnets, b.subnets).map((s) => parseCidr(s));
  subnets.forEach((x, i) => subnets.slice(i + 1).forEach((y) => expect(cidrsOverlap(x, y)).toBe(false)));
}

describe('two manager instances on one store', () => {
  it('never collide, and all succeed while capacity remains (scheduler-chosen interleavings)', async () => {
    const perManager = fc.integer({ min: 1, max: 8 }); // 2 x 8 = the 16 subnets of POOL; 16 <= 29 addresses
    // Overlapping requests of different sizes: only the per-family index CAS can keep them apart.
    const explicit = fc.record({
      ports: fc.array(fc.constantFrom(53, 8080, 9000), { maxLength: 8 }),
      subnets: fc.array(fc.constantFrom('10.8.0.0/16', '10.8.1.0/24', '10.8.0.0/23', '10.8.2.0/24', '10.8.128.0/17'), { maxLength: 8 }),
    });
    await fc.assert(fc.asyncProperty(fc.scheduler(), perManager, perManager, explicit, explicit, async (s, n1, n2, e1, e2) => {
      const base = await openEmbeddedStore({});
      const store = scheduledStore(base, s);
      // Retries wait on the scheduler too; an adversarial scheduler can make one manager lose
      // many rounds in a row, which real jitter makes improbable, hence the generous bound.
      const opts: CommitOptions = { backoff: () => s.schedule(Promise.resolve(), 'backoff'), maxAttempts: 500 };
      const [a, b] = await s.waitFor(Promise.all([manager(store, 'm1', n1, e1, opts), manager(store, 'm2', n2, e2, opts)]));
      expect(a.addrs).toHaveLength(n1);
      expect(b.addrs).toHaveLength(n2);
      expectNoCollision(a, b);
      // Every explicit port asked for was granted to exactly one manager.
      expect(new Set([...a.ports, ...b.ports].filter((p) => p.endsWith('/udp')))).toEqual(new Set([...e1.ports.slice(0, n1), ...e2.ports.slice(0, n2)].map((p) => `${p}/udp`)));
      await base.close();
    }), { numRuns: 60 });
  });

  it('exhaust a subnet together without double grants, with the default backoff', async () => {
    const store = await openEmbeddedStore({});
    const sub = '10.0.0.0/26'; // 61 assignable addresses for 2 x 40 requests
    const run = async (name: string): Promise<{ got: string[]; exhausted: number }> => {
      const got: string[] = [];
      let exhausted = 0;
      for (let i = 0; i < 40; i++) {
        const r = await outcome(grant(store, () => claimAddress(store, NET, sub, { owner: `${name}:${i}` })));
        if ('ok' in r) got.push(r.ok);
        else if (r.code === 'SHOAL_ERR_IPAM_EXHAUSTED') exhausted++;
        else throw new Error(`unexpected ${r.code}`);
      }
      return { got, exhausted };
    };
    const [a, b] = await Promise.all([run('m1'), run('m2')]);
    const all = [...a.got, ...b.got];
    expect(all).toHaveLength(61);
    expect(new Set(all).size).toBe(61);
    expect(a.exhausted + b.exhausted).toBe(80 - 61);
    expect(all.every((x) => cidrOf(parseIp(x), 26).base === parseCidr(sub).base)).toBe(true);
    await store.close();
  });
});
