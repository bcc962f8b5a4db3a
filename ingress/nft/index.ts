/**
 * The nftables dataplane of Shoal's load balancer ({@link NftLoadBalancer}): kernel L4
 * balancing per network namespace where ip_vs is missing, as kube-proxy's nftables mode.
 */
export { NftLoadBalancer, type NftLoadBalancerOptions } from './load-balancer.js';
export {
  DEFAULT_MASQ_MARK, DEFAULT_SHARD_OBJECTS, MAX_SHARDS, MAX_SLOTS, checkVirtualService, cleanupScript, fullScript,
  planIncremental, serviceObjects, shardTable, shardsFor, slotsOf,
  type ChainDecl, type CounterDecl, type IncrementalPlan, type Leftover, type MapElement, type NamedDecl, type RenderContext, type ServiceObjects,
} from './render.js';
