/** The method names of {@link LinkOps}, as a runtime list: the RPC surface of a NetnsWorker. */
import type { LinkOps } from './netlink.js';

/** Every LinkOps method; the compile-time check below fails when one is added and not listed. */
export const LINK_OPS_METHODS = [
  'ensureBridge', 'ensureVeth', 'ensureVxlan', 'ensureMacvlan', 'setUp', 'setMtu', 'setMaster',
  'moveToNetns', 'deleteLink', 'deleteLinks', 'getLink', 'listLinks', 'ensureAddress', 'deleteAddress',
  'listAddresses', 'ensureRoute', 'deleteRoute', 'ensureNeighbour', 'deleteNeighbour', 'listNeighbours',
  'appendFdb', 'deleteFdb', 'listFdb', 'close',
] as const satisfies ReadonlyArray<keyof LinkOps>;

type Unlisted = Exclude<keyof LinkOps, (typeof LINK_OPS_METHODS)[number]>;
const everyMethodListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyMethodListed;
