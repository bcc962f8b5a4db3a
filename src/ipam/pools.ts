/**
 * Default address pools, Docker-like, and their validation.
 *
 * A pool is Docker's `default-address-pools` entry: a `base` block carved into subnets of
 * prefix length `size`. Pools are tried in order: a later pool is used only when every
 * earlier one is full.
 *
 * | networks | IPv4 | IPv6 |
 * |---|---|---|
 * | overlay (swarm scope) | 10.0.0.0/8 as /24s (65,536 networks) | fd00::/8 as /64s |
 * | bridge, macvlan (local) | 172.17.0.0/16 ... 172.31.0.0/16 as /16s, then 192.168.0.0/16 as /20s | fd00::/8 as /64s |
 *
 * The local fallback follows Docker (192.168.0.0/16 carved into sixteen /20s) rather than /24s:
 * bridge networks are few and long-lived, and Docker users expect that shape.
 *
 * IPv6: Docker needs a user-supplied pool; Shoal defaults to the ULA block fd00::/8 carved into
 * /64s so `--ipv6` without `--subnet` just works. The allocator starts its search at a random
 * /64, which gives the collision resistance RFC 4193 gets from a random 40-bit global ID.
 */
import { invalid } from '../errors.js';
import type { NetworkDriver } from '../model/types.js';
import { type Cidr, type IpFamily, familyBits, familyName, formatCidr, parseCidr } from './cidr.js';

/** One pool as configured (Docker's `{"base": "...", "size": N}`). */
export interface AddressPool {
  base: string;
  size: number;
}

/** Pool configuration of a cluster: which pools each kind of network draws from. */
export interface PoolConfig {
  /** IPv4 pools for swarm-scope (overlay) networks. */
  global: AddressPool[];
  /** IPv4 pools for local-scope (bridge, macvlan) networks. */
  local: AddressPool[];
  /** IPv6 pools for every driver. */
  v6: AddressPool[];
}

/** A validated pool. */
export interface ParsedPool {
  base: Cidr;
  size: number;
}

const localV4: AddressPool[] = [
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: '192.168.0.0/16', size: 20 },
];

/** Shoal's defaults; see the module comment for the reasoning. Frozen: copy to change. */
export const DEFAULT_POOLS: Readonly<PoolConfig> = Object.freeze({
  global: [{ base: '10.0.0.0/8', size: 24 }],
  local: localV4,
  v6: [{ base: 'fd00::/8', size: 64 }],
});

/**
 * Smallest subnet a network may have, per family: a v4 network needs a network address, a
 * gateway, a broadcast address and at least one task (/30); v6 has no broadcast (/126 leaves
 * the subnet-router anycast address, a gateway and two tasks).
 */
export const MAX_NETWORK_PREFIX: Readonly<Record<IpFamily, number>> = Object.freeze({ 4: 30, 6: 126 });

/** Validate one pool; `family` is the family it must be. Throws InvalidParameter. */
export function parsePool(pool: AddressPool, family: IpFamily): ParsedPool {
  const base = parseCidr(pool.base, { what: 'address pool' });
  if (base.family !== family) {
    throw invalid(`address pool ${pool.base} is ${familyName(base.family)}, but it is configured as an ${familyName(family)} pool`);
  }
  const max = MAX_NETWORK_PREFIX[family];
  if (!Number.isInteger(pool.size) || pool.size < base.prefix || pool.size > max) {
    throw invalid(
      `address pool ${pool.base} has size ${pool.size}: size is the prefix length of the subnets carved from it and must be ${base.prefix}-${max}`,
    );
  }
  return { base, size: pool.size };
}

/**
 * Validate a whole configuration (e.g. from the cluster settings), filling missing lists
 * with the defaults. Throws InvalidParameter naming the first bad pool.
 */
export function resolvePools(config: Partial<PoolConfig> = {}): PoolConfig {
  const out: PoolConfig = {
    global: config.global ?? DEFAULT_POOLS.global,
    local: config.local ?? DEFAULT_POOLS.local,
    v6: config.v6 ?? DEFAULT_POOLS.v6,
  };
  for (const p of out.global) parsePool(p, 4);
  for (const p of out.local) parsePool(p, 4);
  for (const p of out.v6) parsePool(p, 6);
  return out;
}

/** Which pools a network of this driver and family draws from, in order of preference. */
export function poolsFor(driver: NetworkDriver, family: IpFamily, config: Partial<PoolConfig> = {}): ParsedPool[] {
  if (family === 6) return (config.v6 ?? DEFAULT_POOLS.v6).map((p) => parsePool(p, 6));
  const list = driver === 'overlay' ? (config.global ?? DEFAULT_POOLS.global) : (config.local ?? DEFAULT_POOLS.local);
  return list.map((p) => parsePool(p, 4));
}

/** "10.0.0.0/8 as /24s, ..." for messages. */
export function describePools(pools: ParsedPool[]): string {
  return pools.map((p) => `${formatCidr(p.base)} as /${p.size}s`).join(', ');
}

/** True when a subnet of this size in this family is big enough for a network. */
export const isUsableNetworkPrefix = (family: IpFamily, prefix: number): boolean =>
  prefix >= 0 && prefix <= MAX_NETWORK_PREFIX[family] && prefix <= familyBits(family);
