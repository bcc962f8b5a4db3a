/**
 * From Shoal's domain model (`src/model/types.ts`) to the resolver's input records, so the
 * agent can feed {@link MemoryRegistry} straight from its watch index.
 */
import type { Network, Service, Task } from '../src/model/types.js';
import { servesTraffic } from '../src/model/serving.js';
import type { NetworkRecord, ServiceRecord, TaskRecord } from './registry.js';

/** A network's DNS view; `ttl` overrides the registry default for its answers. */
export function networkRecordOf(n: Pick<Network, 'id' | 'name'>, ttl?: number): NetworkRecord {
  return ttl === undefined ? { id: n.id, name: n.name } : { id: n.id, name: n.name, ttl };
}

/** A service's DNS view: aliases per network, VIPs (vip mode) and named ports (SRV). */
export function serviceRecordOf(s: Pick<Service, 'id' | 'spec' | 'vips'>): ServiceRecord {
  return {
    id: s.id,
    name: s.spec.name,
    endpointMode: s.spec.endpointMode,
    networks: s.spec.networks.map((n) => {
      const vip = s.spec.endpointMode === 'vip' ? s.vips[n.network] : undefined;
      return { network: n.network, aliases: n.aliases, ...(vip ? { vip: { v4: vip.v4, ...(vip.v6 ? { v6: vip.v6 } : {}) } } : {}) };
    }),
    ports: s.spec.ports.flatMap((p) => (p.name ? [{ name: p.name, protocol: p.protocol, port: p.target }] : [])),
  };
}

/**
 * A task's DNS view. It counts as healthy (listed under the service name and `tasks.<svc>`)
 * while it should run, does run, and has not failed its health check.
 */
export function taskRecordOf(t: Pick<Task, 'id' | 'serviceId' | 'serviceName' | 'slot' | 'desiredState' | 'status' | 'addresses'> & { nodeId?: string }): TaskRecord {
  return {
    id: t.id,
    serviceId: t.serviceId,
    serviceName: t.serviceName,
    // A global service's task (slot 0) is named after its node, as in Docker.
    slot: t.slot === 0 && t.nodeId ? t.nodeId : t.slot,
    healthy: servesTraffic(t),
    networks: Object.entries(t.addresses).map(([network, a]) => ({ network, v4: a.v4, ...(a.v6 ? { v6: a.v6 } : {}) })),
  };
}
