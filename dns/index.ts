/**
 * Shoal's embedded DNS resolver: the face of `dns/`.
 *
 * ```ts
 * const registry = new MemoryRegistry();
 * const forwarder = await Forwarder.fromResolvConf();
 * const handler = standardChain({ registry, metrics, cache: cachePlugin(new DnsCache()), forward: forwardPlugin(forwarder) });
 * const server = new DnsServer({ address: '127.0.0.11', port: 53, handler, scope: scopeOf([netId], netName) });
 * await server.start();
 * ```
 */
export {
  compose,
  DnsRequest,
  isPending,
  refuse,
  scopeOf,
  standardChain,
  type DnsResponse,
  type Handler,
  type HandlerResult,
  type Plugin,
  type Scope,
  type StandardChainOptions,
} from './chain.js';
export type { Registry, RegistryAnswer, NetworkRecord, ServiceRecord, TaskRecord, ServicePortRecord } from './registry.js';
export { MemoryRegistry, type MemoryRegistryOptions } from './memory-registry.js';
export { networkRecordOf, serviceRecordOf, taskRecordOf } from './model-adapter.js';
export { DnsServer, type DnsServerOptions } from './server.js';
export { createDnsMetrics, noopMetrics, DNS_LATENCY_BUCKETS, type DnsMetrics } from './metrics.js';
export { toWire } from './respond.js';
export { hygiene, type HygieneOptions } from './plugins/hygiene/index.js';
export { metricsPlugin } from './plugins/metrics/index.js';
export { registryAnswers, type RegistryAnswersOptions } from './plugins/registry/index.js';
export { cachePlugin, DnsCache, type DnsCacheOptions } from './plugins/cache/index.js';
export {
  forwardPlugin,
  Forwarder,
  parseResolvConf,
  readResolvConf,
  upstreamsOf,
  type ForwarderOptions,
  type ResolvConf,
  type UpstreamAddress,
} from './plugins/forward/index.js';
