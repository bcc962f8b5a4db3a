/**
 * Cluster-wide allocation of subnets, addresses, VXLAN ids and published ports, done through
 * store transactions so two managers on one store never hand out the same thing.
 *
 * Every `claim*` reads the current allocations of its kind (one range read of one prefix),
 * picks a free value starting at a random offset, and returns a {@link Claim}: compares that
 * hold only while the value is still free, plus the put ops that take it. Commit claims in
 * the caller's own transaction with {@link commitClaims} (which retries on concurrent
 * allocations). Several claims of one kind in one transaction must see each other: pass the
 * earlier ones as `pending`, or both may pick the same value (commitClaims refuses that).
 *
 * Subnets overlap without sharing a key (a /16 and a /24 inside it), so per-key CAS cannot
 * catch two managers claiming overlapping subnets at once. Every subnet claim therefore also
 * compares the modRevision of a per-family index key (read in the same range read) and
 * rewrites it: two subnet claims of one family that read the same state cannot both commit,
 * so the overlap check is always made against every subnet committed before ours. Subnet
 * claims are rare (network creation), so serializing them per family costs nothing.
 */
import { ShoalError, internal, invalid } from '../errors.js';
import type { NetworkDriver, Protocol } from '../model/types.js';
import type { Compare, Store, TxnOp } from '../store/types.js';
import {
  type Cidr, type IpAddress, type IpFamily, cidrContains, cidrSize, cidrsOverlap, familyName, formatCidr, formatIp,
  lastValue, nthAddress, nthSubnet, offsetOf, parseCidr, parseIp, subnetCount,
} from './cidr.js';
import type { Claim } from './commit.js';
import {
  type Allocation, addressKey, addressPrefix, checkNetworkId, cidrOfSubnetKey, decodeAllocation, encodeAllocation,
  holderOf, networkAddressesPrefix, portKey, portPrefix, subnetIndexKey, subnetKey, subnetPrefix, vniKey, vniPrefix,
} from './keys.js';
import { freeBlock, firstFree, randomBelow, type Interval } from './pick.js';
import { MAX_NETWORK_PREFIX, type PoolConfig, describePools, poolsFor } from './pools.js';

export { type Claim, type CommitOptions, type Committed, type TxnPlan, commitClaims, mergeClaims } from './commit.js';

/** Owner recorded for a network's gateway address; only this owner may be granted the gateway. */
export const GATEWAY_OWNER = 'gateway';
/** VXLAN ids Shoal hands out (Swarm's range: below 4096 is left to operators and VLAN-like use). */
export const VNI_MIN = 4096;
export const VNI_MAX = 16_777_215;
/** Range for published ports given without a number (Swarm's dynamic range). */
export const AUTO_PORT_MIN = 30_000;
export const AUTO_PORT_MAX = 32_767;

/** Options every claim takes. */
export interface ClaimOptions {
  /** Claims already made for the same transaction: their values count as taken. */
  pending?: ReadonlyArray<Claim<unknown>>;
}

/** Who holds a claimed value: `owner` is machine-readable, `label` is for messages. */
export interface OwnerOptions extends ClaimOptions {
  owner: string;
  label?: string;
}

const exhausted = (message: string): ShoalError => new ShoalError('Conflict', 'IPAM_EXHAUSTED', message);
const inUse = (message: string): ShoalError => new ShoalError('Conflict', 'IPAM_IN_USE', message);

interface Held {
  alloc: Allocation;
  /** modRevision of the stored key; 0 when the value is taken by a pending claim. */
  modRevision: number;
}

/** One range read of `prefix`, plus the puts of pending claims under it; keyed by full key. */
async function readHeld(store: Store, prefix: string, pending: ClaimOptions['pending']): Promise<Map<string, Held>> {
  const { kvs } = await store.range(prefix);
  const held = new Map<string, Held>(kvs.map((kv) => [kv.key, { alloc: decodeAllocation(kv.value), modRevision: kv.modRevision }]));
  for (const op of (pending ?? []).flatMap((c) => c.ops)) {
    if (op.type === 'put' && op.key.startsWith(prefix)) held.set(op.key, { alloc: decodeAllocation(op.value), modRevision: 0 });
  }
  return held;
}

/**
 * Parse a value out of a stored key. A key we cannot read is not skipped (that could grant a
 * held value twice): it stops allocation with an Internal error that names it.
 */
function stored<T>(key: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw internal(`IPAM state is corrupt: cannot read allocation key ${key}; delete or repair it`, e);
  }
}

/** Claim a free key: it must still not exist at commit time. */
function take<T>(value: T, key: string, alloc: Allocation): Claim<T> {
  return {
    value,
    compares: [{ key, target: 'createRevision', op: '=', value: 0 }],
    ops: [{ type: 'put', key, value: encodeAllocation(alloc) }],
  };
}

/**
 * The owner asks again for a value it already holds (committed, not merely pending in this
 * transaction): grant it without writing, on condition that the holding is unchanged at commit
 * (so a concurrent release-and-reuse is detected). A value pending in the same transaction is
 * never "kept": asking twice in one transaction is a duplicate, reported as in use.
 */
const mayKeep = (h: Held, owner: string): boolean => h.modRevision > 0 && h.alloc.owner === owner;

function keep<T>(value: T, key: string, h: Held): Claim<T> {
  return { value, compares: [{ key, target: 'modRevision', op: '=', value: h.modRevision }], ops: [] };
}

const ownerOf = (o: OwnerOptions): Allocation => (o.label === undefined ? { owner: o.owner } : { owner: o.owner, label: o.label });

// ---------------------------------------------------------------------------------- subnets

/** What {@link claimSubnet} needs. */
export interface SubnetRequest extends ClaimOptions {
  driver: NetworkDriver;
  /** Default: the family of `requested`, else 4. */
  family?: IpFamily;
  /** An explicit subnet (`--subnet`); it must not overlap any allocated subnet. */
  requested?: string;
  /** Network name, for messages ("overlaps network 'app'"). */
  network: string;
  /** Network id, recorded as the owner (`network:<id>`); the name when absent. */
  networkId?: string;
  /** Pool configuration (cluster settings); defaults to DEFAULT_POOLS. */
  pools?: Partial<PoolConfig>;
}

/**
 * Claim a subnet for a network: `requested` if given and free, else a free subnet from the
 * driver's pools (see pools.ts), searched from a random offset. Value: the canonical CIDR.
 * A requested subnet is checked against every allocated subnet of the family, whatever its size.
 *
 * Throws InvalidParameter for a malformed or too small subnet or a family mismatch, Conflict
 * IPAM_SUBNET_OVERLAP ("subnet 10.0.1.0/24 overlaps network 'app' (10.0.1.0/24)"), Conflict
 * IPAM_EXHAUSTED when the pools are full.
 */
export async function claimSubnet(store: Store, req: SubnetRequest): Promise<Claim<string>> {
  const requested = req.requested === undefined ? undefined : parseCidr(req.requested);
  const family: IpFamily = req.family ?? requested?.family ?? 4;
  if (requested) checkSubnetShape(requested, family);
  const prefix = subnetPrefix(family);
  const held = await readHeld(store, prefix, req.pending);
  const indexKey = subnetIndexKey(family);
  const allocated: Array<{ cidr: Cidr; alloc: Allocation }> = [];
  for (const [key, h] of held) {
    const text = cidrOfSubnetKey(family, key);
    if (text !== undefined) allocated.push({ cidr: stored(key, () => parseCidr(text)), alloc: h.alloc });
  }

  let chosen: Cidr;
  if (requested) {
    const hit = allocated.find((a) => cidrsOverlap(a.cidr, requested));
    if (hit) {
      throw new ShoalError('Conflict', 'IPAM_SUBNET_OVERLAP',
        `subnet ${formatCidr(requested)} overlaps ${holderOf(hit.alloc)} (${formatCidr(hit.cidr)}); choose another subnet or omit it to get a free one`);
    }
    chosen = requested;
  } else {
    chosen = pickSubnet(req, family, allocated.map((a) => ({ start: a.cidr.base, end: lastValue(a.cidr) })));
  }

  const cidr = formatCidr(chosen);
  const alloc: Allocation = { owner: `network:${req.networkId ?? req.network}`, label: `network '${req.network}'`, driver: req.driver };
  const claim = take(cidr, subnetKey(family, cidr), alloc);
  // The index CAS (see the module comment). A pending claim of this family already carries it.
  const index = held.get(indexKey);
  if (index?.modRevision !== 0) {
    const compare: Compare = { key: indexKey, target: 'modRevision', op: '=', value: index?.modRevision ?? 0 };
    const put: TxnOp = { type: 'put', key: indexKey, value: '{"owner":"ipam","label":"subnet claim index"}' };
    claim.compares.push(compare);
    claim.ops.push(put);
  }
  return claim;
}

function checkSubnetShape(c: Cidr, family: IpFamily): void {
  const text = formatCidr(c);
  if (c.family !== family) throw invalid(`subnet ${text} is ${familyName(c.family)}, but an ${familyName(family)} subnet was asked for`);
  const max = MAX_NETWORK_PREFIX[family];
  if (c.prefix > max) {
    throw invalid(`subnet ${text} is too small for a network: use a /${max} or larger (a network needs its own address, a gateway${family === 4 ? ', a broadcast address' : ''} and room for tasks)`);
  }
}

function pickSubnet(req: SubnetRequest, family: IpFamily, used: Interval[]): Cidr {
  const pools = poolsFor(req.driver, family, req.pools);
  for (const pool of pools) {
    const count = subnetCount(pool.base, pool.size);
    const blockSize = 1n << BigInt((family === 4 ? 32 : 128) - pool.size);
    const i = freeBlock(pool.base.base, blockSize, count, randomBelow(count), used);
    if (i !== undefined) return nthSubnet(pool.base, pool.size, i);
  }
  throw exhausted(
    `no free ${familyName(family)} subnet left in the address pools for ${req.driver} networks (${describePools(pools)}); ` +
    'pass an explicit --subnet, remove unused networks, or configure larger pools',
  );
}

/** Delete ops that free a subnet (its addresses are freed separately: {@link releaseNetworkAddresses}). */
export function releaseSubnet(cidr: string): TxnOp[] {
  const c = parseCidr(cidr);
  return [{ type: 'delete', key: subnetKey(c.family, formatCidr(c)) }];
}

// -------------------------------------------------------------------------------- addresses

/** What {@link claimAddress} needs. */
export interface AddressRequest extends OwnerOptions {
  /** An explicit address; it must be in the subnet, not reserved and free (or held by `owner`). */
  requested?: string;
  /** Addresses never handed out (e.g. auxiliary addresses); those outside the subnet are ignored. */
  reserved?: readonly string[];
  /** The network's gateway; default the first usable address. Granted only to GATEWAY_OWNER. */
  gateway?: string;
  /** Network name, for messages; the id when absent. */
  networkName?: string;
}

/** The default gateway of a subnet: its first address after the network address. */
export function defaultGateway(subnet: string): string {
  return formatIp(nthAddress(parseCidr(subnet), 1));
}

/**
 * Claim an address of `subnet` in network `networkId` for `owner`. Never grants the network
 * address, the v4 broadcast address, the gateway (except to GATEWAY_OWNER) or a reserved
 * address. Idempotent for the same owner: asking again for an address it holds grants it
 * without a write. Value: the canonical address.
 *
 * Throws InvalidParameter (malformed input, address outside the subnet or not assignable),
 * Conflict IPAM_IN_USE (requested address held by another owner), Conflict IPAM_EXHAUSTED.
 */
export async function claimAddress(store: Store, networkId: string, subnet: string, req: AddressRequest): Promise<Claim<string>> {
  checkNetworkId(networkId);
  const net = parseCidr(subnet);
  const netText = formatCidr(net);
  checkSubnetShape(net, net.family);
  const size = cidrSize(net);
  const excluded = new Map<bigint, string>([[0n, `the network address of ${netText}`]]);
  if (net.family === 4) excluded.set(size - 1n, `the broadcast address of ${netText}`);
  const gateway = req.gateway === undefined ? nthAddress(net, 1) : inSubnet(parseIp(req.gateway, 'gateway'), net, 'gateway');
  if (req.owner !== GATEWAY_OWNER) excluded.set(offsetOf(net, gateway), `the gateway of ${netText}`);
  for (const r of req.reserved ?? []) {
    const a = parseIp(r, 'reserved address');
    if (cidrContains(net, a)) excluded.set(offsetOf(net, a), 'reserved');
  }

  const prefix = addressPrefix(networkId, net.family);
  const held = await readHeld(store, prefix, req.pending);
  const heldAt = new Map<bigint, Held>();
  for (const [key, h] of held) {
    const a = stored(key, () => parseIp(key.slice(prefix.length)));
    if (cidrContains(net, a)) heldAt.set(offsetOf(net, a), h);
  }

  if (req.requested !== undefined) {
    const a = inSubnet(parseIp(req.requested, 'address'), net, 'address');
    const text = formatIp(a);
    const why = excluded.get(offsetOf(net, a));
    if (why !== undefined) throw invalid(`address ${text} cannot be assigned: it is ${why}`);
    const h = heldAt.get(offsetOf(net, a));
    const key = addressKey(networkId, net.family, text);
    if (h && mayKeep(h, req.owner)) return keep(text, key, h);
    if (h) throw inUse(`address ${text} is already in use by ${holderOf(h.alloc)} on this network; choose another address or omit it`);
    return take(text, key, ownerOf(req));
  }

  const takenCount = BigInt(new Set([...excluded.keys(), ...heldAt.keys()]).size);
  const free = takenCount >= size
    ? undefined
    : firstFree(0n, size - 1n, randomBelow(size), (v) => excluded.has(v) || heldAt.has(v), takenCount + 1n);
  if (free === undefined) {
    throw exhausted(`no free address left in subnet ${netText} of network '${req.networkName ?? networkId}': all ${size - BigInt(excluded.size)} assignable addresses are in use; remove tasks or use a larger subnet`);
  }
  const text = formatIp({ family: net.family, value: net.base + free });
  return take(text, addressKey(networkId, net.family, text), ownerOf(req));
}

/** Claim the gateway address of a network (owner GATEWAY_OWNER); default the first usable address. */
export function claimGateway(store: Store, networkId: string, subnet: string, requested?: string, opts: ClaimOptions = {}): Promise<Claim<string>> {
  const gw = requested ?? defaultGateway(subnet);
  return claimAddress(store, networkId, subnet, { ...opts, owner: GATEWAY_OWNER, requested: gw, gateway: gw });
}

function inSubnet(a: IpAddress, net: Cidr, what: string): IpAddress {
  if (!cidrContains(net, a)) {
    const why = a.family === net.family ? '' : ` (it is ${familyName(a.family)}, the subnet is ${familyName(net.family)})`;
    throw invalid(`${what} ${formatIp(a)} is not in subnet ${formatCidr(net)}${why}`);
  }
  return a;
}

/** Delete ops that free one address of a network. */
export function releaseAddress(networkId: string, address: string): TxnOp[] {
  checkNetworkId(networkId);
  const a = parseIp(address);
  return [{ type: 'delete', key: addressKey(networkId, a.family, formatIp(a)) }];
}

/** Delete ops that free every address of a network (both families), e.g. when it is removed. */
export function releaseNetworkAddresses(networkId: string): TxnOp[] {
  checkNetworkId(networkId);
  return [{ type: 'delete', key: networkAddressesPrefix(networkId), prefix: true }];
}

// ------------------------------------------------------------------------------------- VNIs

/**
 * Claim a VXLAN network identifier: `requested` if free (or held by the same owner), else a
 * free one in VNI_MIN..VNI_MAX from a random offset. Throws InvalidParameter for an id out of
 * range, Conflict IPAM_IN_USE / IPAM_EXHAUSTED.
 */
export async function claimVni(store: Store, requested: number | undefined, opts: OwnerOptions): Promise<Claim<number>> {
  if (requested !== undefined && (!Number.isInteger(requested) || requested < VNI_MIN || requested > VNI_MAX)) {
    throw invalid(`VNI ${requested} is out of range: must be an integer ${VNI_MIN}-${VNI_MAX}`);
  }
  const held = await readHeld(store, vniPrefix, opts.pending);
  if (requested !== undefined) {
    const key = vniKey(requested);
    const h = held.get(key);
    if (h && mayKeep(h, opts.owner)) return keep(requested, key, h);
    if (h) throw inUse(`VNI ${requested} is already used by ${holderOf(h.alloc)}; choose another or omit it`);
    return take(requested, key, ownerOf(opts));
  }
  const lo = BigInt(VNI_MIN);
  const hi = BigInt(VNI_MAX);
  const v = firstFree(lo, hi, lo + randomBelow(hi - lo + 1n), (n) => held.has(vniKey(Number(n))), BigInt(held.size) + 1n);
  if (v === undefined) throw exhausted(`no free VNI left in ${VNI_MIN}-${VNI_MAX}; remove unused overlay networks`);
  return take(Number(v), vniKey(Number(v)), ownerOf(opts));
}

/** Delete ops that free a VNI. */
export function releaseVni(vni: number): TxnOp[] {
  return [{ type: 'delete', key: vniKey(vni) }];
}

// ------------------------------------------------------------------------------------ ports

function checkProtocol(protocol: string): asserts protocol is Protocol {
  if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(`invalid protocol '${protocol}': must be tcp or udp`);
}

/**
 * Claim a published port for `protocol` (tcp and udp are separate: 8080/tcp and 8080/udp
 * coexist). `requested` 1-65535 must be free (or held by the same owner); undefined or 0
 * picks a free port in AUTO_PORT_MIN..AUTO_PORT_MAX from a random offset.
 * Throws InvalidParameter (bad protocol or port), Conflict IPAM_IN_USE / IPAM_EXHAUSTED.
 */
export async function claimPort(store: Store, protocol: Protocol, requested: number | undefined, opts: OwnerOptions & { avoid?: (port: number) => boolean }): Promise<Claim<number>> {
  checkProtocol(protocol);
  const explicit = requested !== undefined && requested !== 0;
  if (explicit && (!Number.isInteger(requested) || requested < 1 || requested > 65_535)) {
    throw invalid(`published port ${requested} is out of range: must be an integer 1-65535 (or 0 to pick one)`);
  }
  const held = await readHeld(store, portPrefix(protocol), opts.pending);
  if (explicit) {
    const key = portKey(protocol, requested);
    const h = held.get(key);
    if (h && mayKeep(h, opts.owner)) return keep(requested, key, h);
    if (h) throw inUse(`port ${requested}/${protocol} is already published by ${holderOf(h.alloc)}; choose another port or omit it to get a free one`);
    return take(requested, key, ownerOf(opts));
  }
  const lo = BigInt(AUTO_PORT_MIN);
  const hi = BigInt(AUTO_PORT_MAX);
  const avoid = opts.avoid;
  // Held ports alone: one free port is within held.size + 1 steps; with ports to avoid, walk the range.
  const p = firstFree(lo, hi, lo + randomBelow(hi - lo + 1n), (n) => held.has(portKey(protocol, Number(n))) || (avoid?.(Number(n)) ?? false), avoid ? undefined : BigInt(held.size) + 1n);
  if (p === undefined) throw exhausted(`no free ${protocol} port left in ${AUTO_PORT_MIN}-${AUTO_PORT_MAX}; publish an explicit port or remove unused services`);
  return take(Number(p), portKey(protocol, Number(p)), ownerOf(opts));
}

/** Delete ops that free a published port. */
export function releasePort(protocol: Protocol, port: number): TxnOp[] {
  checkProtocol(protocol);
  return [{ type: 'delete', key: portKey(protocol, port) }];
}
