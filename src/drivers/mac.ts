/**
 * MAC addresses of endpoints and bridges.
 *
 * An endpoint's MAC is Docker's: `02:42:` followed by the four bytes of its IPv4 address. Any
 * node can therefore compute a remote task's MAC from cluster state alone, which is what the
 * overlay's static FDB and neighbour entries need (no MAC has to be reported or stored).
 * IPAM never hands one IPv4 to two live endpoints of a network, so MACs are unique per L2 domain.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { invalid } from '../errors.js';

const hex = (n: number): string => n.toString(16).padStart(2, '0');

/** `10.0.1.5` -> `02:42:0a:00:01:05`. InvalidParameter for anything but an IPv4 address. */
export function macFromIPv4(ip: string): string {
  if (!isIPv4(ip)) throw invalid(`cannot derive a MAC address from '${ip}': an IPv4 address is required`);
  return `02:42:${ip.split('.').map((o) => hex(Number(o))).join(':')}`;
}

/**
 * The MAC of a network's bridge on one node: stable (a bridge left to itself takes the lowest
 * MAC of its ports, so it would change as tasks come and go and sandboxes' ARP entries for the
 * gateway would go stale), different per node (overlay gateways share one IP on every node)
 * and outside 02:42 (`06:` is locally administered unicast too), so it never equals a task's.
 */
export function bridgeMac(networkId: string, nodeAddress: string): string {
  const h = createHash('sha256').update(`bridge/${networkId}/${nodeAddress}`).digest();
  return `06:${Array.from(h.subarray(0, 5), hex).join(':')}`;
}
