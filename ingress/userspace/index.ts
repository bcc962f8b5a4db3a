/**
 * The userspace dataplane: Shoal's embedded default where it lacks root or runs off Linux. A
 * TCP/UDP proxy in this process behind the common {@link LoadBalancer} contract.
 *
 * What it can do: every scheduler, affinity, weights and drain (weight 0), TCP and UDP, on
 * declared ports (one listening socket per virtual service). What it cannot: a VIP's every
 * port (`port: 0`, refused with a clear error: a socket listens on one port; IPVS fwmark and
 * nftables do it in the kernel), the caller's own address at the backend (the proxy opens the
 * backend connection itself), and intercepting traffic to an address no local interface holds.
 *
 * ```ts
 * const lb = new UserspaceLoadBalancer({ log: (m, e) => console.warn(m, e ?? '') });
 * await lb.apply([{ service: 'web', protocol: 'tcp', address: '127.0.0.5', port: 8080, scheduler: 'rr',
 *   backends: [{ address: '127.0.0.1', port: 9001, weight: 1 }] }], []);
 * ```
 */
export type { LoadBalancer } from '../types.js';
export { UserspaceLoadBalancer, validateService, backendId, type UserspaceLoadBalancerOptions } from './load-balancer.js';
export { Picker, hash32, MH_TABLE_SIZE, SH_TABLE_SIZE, type Candidate, type PickerOptions } from './pick.js';
