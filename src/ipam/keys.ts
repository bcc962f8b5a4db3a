/**
 * Key layout of IPAM allocations under {@link IPAM_ROOT}, and the JSON value each key holds.
 * Only this file builds IPAM keys, so the layout reads in one place (see README.md):
 *
 * ```
 * <IPAM_ROOT>subnets/v4/~index            bumped by every subnet claim (CAS for overlap, see allocator.ts)
 * <IPAM_ROOT>subnets/v4/10.0.1.0_24        {"owner":"network:n1","label":"network 'app'","driver":"overlay"}
 * <IPAM_ROOT>subnets/v6/fd00:1::_64
 * <IPAM_ROOT>addresses/<networkId>/v4/10.0.1.7   {"owner":"task:t1"}
 * <IPAM_ROOT>addresses/<networkId>/v6/fd00:1::7
 * <IPAM_ROOT>vnis/4097                     {"owner":"network:n1"}
 * <IPAM_ROOT>ports/tcp/30001               {"owner":"service:s1","label":"service 'web'"}
 * ```
 * The '/' of a CIDR is written '_' so that a key never contains a path separator of its own.
 */
import { IPAM_ROOT } from '../model/keys.js';
import type { Protocol } from '../model/types.js';
import { invalid } from '../errors.js';
import type { IpFamily } from './cidr.js';

/** The value stored under every allocation key. */
export interface Allocation {
  /** Machine-readable owner, e.g. `task:<id>`, `vip:<serviceId>`, `gateway`, `network:<id>`. */
  owner: string;
  /** Human name for messages, e.g. "network 'app'"; the owner when absent. */
  label?: string;
  /** Subnets only: the driver of the network that holds it. */
  driver?: string;
}

const fam = (family: IpFamily): string => (family === 4 ? 'v4' : 'v6');

/** Name of the per-family subnet index key inside the subnet prefix; '~' never starts a CIDR. */
const INDEX_NAME = '~index';

export const subnetPrefix = (family: IpFamily): string => `${IPAM_ROOT}subnets/${fam(family)}/`;
export const subnetIndexKey = (family: IpFamily): string => `${subnetPrefix(family)}${INDEX_NAME}`;
/** `cidr` must be canonical (formatCidr). */
export const subnetKey = (family: IpFamily, cidr: string): string => `${subnetPrefix(family)}${cidr.replace('/', '_')}`;

/** The CIDR text of a subnet key's last segment, or undefined for the index key. */
export function cidrOfSubnetKey(family: IpFamily, key: string): string | undefined {
  const name = key.slice(subnetPrefix(family).length);
  return name === INDEX_NAME ? undefined : name.replace('_', '/');
}

/** Network ids become key segments: they must not be empty or contain '/'. Throws InvalidParameter. */
export function checkNetworkId(networkId: string): void {
  if (networkId === '' || networkId.includes('/')) throw invalid(`invalid network id '${networkId}': must be non-empty and contain no '/'`);
}

/** All addresses of a network (both families); deleting this prefix frees them all. */
export const networkAddressesPrefix = (networkId: string): string => `${IPAM_ROOT}addresses/${networkId}/`;
export const addressPrefix = (networkId: string, family: IpFamily): string => `${networkAddressesPrefix(networkId)}${fam(family)}/`;
/** `address` must be canonical (formatIp). */
export const addressKey = (networkId: string, family: IpFamily, address: string): string => `${addressPrefix(networkId, family)}${address}`;

export const vniPrefix = `${IPAM_ROOT}vnis/`;
export const vniKey = (vni: number): string => `${vniPrefix}${vni}`;

export const portPrefix = (protocol: Protocol): string => `${IPAM_ROOT}ports/${protocol}/`;
export const portKey = (protocol: Protocol, port: number): string => `${portPrefix(protocol)}${port}`;

/** Serialize an allocation value (stable field order, absent fields omitted). */
export function encodeAllocation(a: Allocation): string {
  const out: Allocation = { owner: a.owner };
  if (a.label !== undefined) out.label = a.label;
  if (a.driver !== undefined) out.driver = a.driver;
  return JSON.stringify(out);
}

/**
 * Parse an allocation value. A value that is not ours (hand-written, older format) still counts
 * as allocated: better to skip an address than to hand out one somebody holds.
 */
export function decodeAllocation(value: string): Allocation {
  try {
    const v: unknown = JSON.parse(value);
    if (typeof v === 'object' && v !== null && 'owner' in v && typeof v.owner === 'string') {
      const out: Allocation = { owner: v.owner };
      if ('label' in v && typeof v.label === 'string') out.label = v.label;
      if ('driver' in v && typeof v.driver === 'string') out.driver = v.driver;
      return out;
    }
  } catch {
    // fall through: unknown format
  }
  return { owner: 'unknown' };
}

/** "network 'app'" / "task:abc": how messages name the holder. */
export const holderOf = (a: Allocation): string => a.label ?? a.owner;
