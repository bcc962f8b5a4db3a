/**
 * Desired load-balancer state from cluster state (pure): what a sandbox attached to some
 * networks must balance. Each VIP-mode service on one of those networks gets one virtual
 * service per (target port, protocol) at its VIP on that network; backends are the service's
 * tasks with an address there: serving tasks with weight 1, draining ones with weight 0 (their
 * flows finish, no new ones), tasks on down nodes and unhealthy tasks not at all.
 *
 * Cost: O(services + tasks) in memory per call; the dataplane is touched only for what
 * differs (see {@link diffVirtualServices}).
 */
import { isDraining, nodeServes, servesTraffic } from '../src/model/serving.js';
import type { Node, Service, Task } from '../src/model/types.js';
import { vsKey, type LbBackend, type LbScheduler, type VirtualService } from './types.js';

/** Tasks grouped by service id, the way every caller needs them. */
export function tasksByService(tasks: Iterable<Task>): Map<string, Task[]> {
  const out = new Map<string, Task[]>();
  for (const t of tasks) {
    const list = out.get(t.serviceId);
    if (list) list.push(t);
    else out.set(t.serviceId, [t]);
  }
  return out;
}

/** Backends of `svc` on `networkId` for `port` (weights: 1 serving, 0 draining). */
export function backendsOf(svc: Service, networkId: string, port: number, tasks: readonly Task[], nodes: ReadonlyMap<string, Node>, v6 = false): LbBackend[] {
  const out: LbBackend[] = [];
  for (const t of tasks) {
    const addr = t.addresses[networkId];
    const address = v6 ? addr?.v6 : addr?.v4;
    if (!address || !nodeServes(nodes.get(t.nodeId))) continue;
    if (servesTraffic(t)) out.push({ address, port, weight: 1 });
    else if (isDraining(t) && t.status.healthy !== false) out.push({ address, port, weight: 0 });
  }
  return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** Common per-service LB settings (scheduler, affinity), for VIPs and published ports. */
export function lbSettings(svc: Service): Pick<VirtualService, 'scheduler' | 'affinity'> {
  const scheduler: LbScheduler = svc.spec.scheduler ?? 'rr';
  const aff = svc.spec.affinityTimeoutSeconds ?? 0;
  return aff > 0 ? { scheduler, affinity: { timeoutSeconds: aff } } : { scheduler };
}

/** The protocols whose every port a VIP carries (Swarm balances every port of a VIP). */
export const EVERY_PORT_PROTOCOLS = ['tcp', 'udp'] as const;

/**
 * Virtual services of a sandbox on `networkIds`: every VIP-mode service's VIPs on those
 * networks (IPv4, and IPv6 where the service has a v6 VIP), with its backends: one every-port
 * service (port 0: the backend keeps the destination port) per protocol, so a VIP answers on
 * any port its tasks listen on, declared or not (Swarm parity).
 *
 * Declared ports get no virtual service of their own: a service's balancing settings
 * (scheduler, affinity) are the service's, the same on every port, so a declared-port service
 * would repeat the every-port one exactly and triple the dataplane's objects (at 10,000 services
 * a cold nftables sync went from ~10 s to ~30 s). The dataplanes still take both kinds on one
 * address (a declared port wins), should per-port settings ever exist.
 */
export function vipServicesFor(
  networkIds: readonly string[], services: Iterable<Service>, byService: ReadonlyMap<string, Task[]>, nodes: ReadonlyMap<string, Node>,
): VirtualService[] {
  const nets = new Set(networkIds);
  const out: VirtualService[] = [];
  for (const svc of services) {
    if (svc.spec.endpointMode !== 'vip') continue;
    const ports = EVERY_PORT_PROTOCOLS.map((protocol) => ({ port: 0, protocol }));
    const tasks = byService.get(svc.id) ?? [];
    for (const { network } of svc.spec.networks) {
      if (!nets.has(network)) continue;
      const vip = svc.vips[network];
      if (!vip) continue;
      for (const { port, protocol } of ports) {
        out.push({ address: vip.v4, port, protocol, ...lbSettings(svc), backends: backendsOf(svc, network, port, tasks, nodes), service: svc.spec.name });
        if (vip.v6) out.push({ address: vip.v6, port, protocol, ...lbSettings(svc), backends: backendsOf(svc, network, port, tasks, nodes, true), service: svc.spec.name });
      }
    }
  }
  return out;
}

/** A virtual service as a string that ignores field order and backend order. */
export function canonical(v: VirtualService): string {
  const backends = v.backends.map((b) => `${b.address}|${b.port}|${b.weight}`).sort();
  return JSON.stringify([v.address, v.port, v.protocol, v.scheduler, v.affinity?.timeoutSeconds ?? 0, v.masquerade ?? false, v.service, backends]);
}

/** What to hand to `LoadBalancer.apply` to go from `applied` to `desired`: changed or new services, removed keys. */
export function diffVirtualServices(applied: ReadonlyMap<string, VirtualService>, desired: readonly VirtualService[]): { upsert: VirtualService[]; remove: string[] } {
  const want = new Map(desired.map((v) => [vsKey(v), v]));
  const upsert: VirtualService[] = [];
  for (const [k, v] of want) {
    const had = applied.get(k);
    if (!had || canonical(had) !== canonical(v)) upsert.push(v);
  }
  const remove = [...applied.keys()].filter((k) => !want.has(k));
  return { upsert, remove };
}
