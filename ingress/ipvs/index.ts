/**
 * The IPVS dataplane of Shoal's load balancer ({@link IpvsLoadBalancer}): kernel L4 balancing
 * per network namespace, spoken over generic netlink. See README.md in this folder.
 */
export {
  DEFAULT_IPVS_TIMEOUTS, IPVS_SCHEDULER, IPVS_SYSCTLS, IpvsLoadBalancer, planOf, type IpvsLoadBalancerOptions,
} from './load-balancer.js';
export { MASQ_TABLE, masqDeleteScript, masqElementsScript, masqTableScript, type MasqTarget } from './masquerade.js';
