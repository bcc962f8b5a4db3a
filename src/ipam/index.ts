/**
 * IPAM: address math, pools and cluster-wide allocation through store transactions.
 * See README.md for the key layout and the compare-and-swap design.
 */
export * from './cidr.js';
export * from './pools.js';
export * from './allocator.js';
export type { Allocation } from './keys.js';
/** Key builders of the IPAM layout (for watchers and tests); only allocator.ts writes these keys. */
export * as ipamKeys from './keys.js';
