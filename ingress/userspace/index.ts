/**
 * The userspace dataplane: Shoal's embedded default where it lacks root or runs off Linux. A
 * TCP/UDP proxy in this process behind the common {@link LoadBalancer} contract.
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
