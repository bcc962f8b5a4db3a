/**
 * The resolver as a chain of plugins. The order lives in one list, {@link standardChain}:
 * hygiene -> metrics -> registry -> cache -> forward. The chain's primitives (`Handler`,
 * `Plugin`, `DnsRequest`, `compose`) are in `handler.ts` and re-exported here.
 */
import { compose, type Handler, type Plugin } from './handler.js';
import type { DnsMetrics } from './metrics.js';
import { hygiene, type HygieneOptions } from './plugins/hygiene/index.js';
import { metricsPlugin } from './plugins/metrics/index.js';
import { registryAnswers } from './plugins/registry/index.js';
import type { Registry } from './registry.js';

export * from './handler.js';

/** What {@link standardChain} needs; `cache` and `forward` are optional plugins built by their modules. */
export interface StandardChainOptions {
  registry: Registry;
  metrics?: DnsMetrics;
  hygiene?: Omit<HygieneOptions, 'metrics'>;
  /** `cachePlugin(cache)` from `plugins/cache`. */
  cache?: Plugin;
  /** `forwardPlugin(forwarder)` from `plugins/forward`. */
  forward?: Plugin;
}

/** The one place the order is decided: hygiene -> metrics -> registry -> cache -> forward. */
export function standardChain(o: StandardChainOptions): Handler {
  const plugins: Plugin[] = [
    hygiene({ ...o.hygiene, ...(o.metrics ? { metrics: o.metrics } : {}) }),
    ...(o.metrics ? [metricsPlugin(o.metrics)] : []),
    registryAnswers(o.registry),
    ...(o.cache ? [o.cache] : []),
    ...(o.forward ? [o.forward] : []),
  ];
  return compose(plugins);
}
