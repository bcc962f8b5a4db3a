/**
 * Desired state of published ports on one node (pure): what the node's own namespace and its
 * ingress sandbox must balance. Two hops, Docker swarm's routing mesh with kube-proxy's
 * traffic policies:
 *
 * The node's frontends answer on every local address of the node (like Docker: the node's
 * address, its other interfaces' addresses, 127.0.0.1 from the node itself), not only on the
 * address it registered: `0.0.0.0:P` ({@link EVERY_LOCAL_V4}; `[::]:P` for an IPv6 node).
 * Without isolation (`shared`, the userspace proxy) they stay at the node's address: several
 * such agents may share one namespace, each at its own address.
 *
 * - ingress mode, `cluster` policy (default): the node DNATs `<any local address>:P` to its ingress
 *   sandbox's address on the ingress network (same port); the sandbox balances across every
 *   serving replica's ingress address on any node, masquerading to its own address, so replies
 *   come back through it over the overlay. Same backends, health and drain as a VIP.
 * - ingress mode, `local` policy: the node DNATs straight to its OWN serving replicas (no SNAT:
 *   the replica sees the client's address; replies go back through the node, the replica's
 *   default route). A node with no local replica refuses (the frontend exists, no backends).
 * - host mode: like `local`, but the port exists only on nodes where a replica of the service
 *   is meant to run (elsewhere nothing answers on it).
 *
 * A direct (local/host) backend is the replica's address on its default-route network (its
 * first bridge or overlay network; the ingress network when it has no other), which the node
 * reaches over its own bridge and which routes replies back through the node.
 */
import { isDraining, nodeServes, servesTraffic } from '../src/model/serving.js';
import type { Network, Node, PortConfig, Service, Task } from '../src/model/types.js';
import { backendsOf, lbSettings } from './desired.js';
import { EVERY_LOCAL_V4, EVERY_LOCAL_V6, type LbBackend, type VirtualService } from './types.js';

export interface PublishedInput {
  services: Iterable<Service>;
  /** Tasks by service id (ingress/desired.ts `tasksByService`). */
  byService: ReadonlyMap<string, Task[]>;
  nodes: ReadonlyMap<string, Node>;
  networks: ReadonlyMap<string, Network>;
  /** This node: its id, its address (published ports answer on every local address of its family), its ingress sandbox address. */
  self: { id: string; address: string; ingress?: { network: string; v4: string } };
  /**
   * Tasks share their node's namespace (no isolation, no root: the userspace dataplane): a
   * replica is reached at `<its node's address>:<target>`, and cluster-policy ports balance
   * from the node itself (there is no ingress sandbox; a userspace proxy makes new connections).
   */
  shared?: boolean;
}

export interface PublishedState {
  /** Frontends on every local address (the node's address when `shared`), in the node's own namespace. */
  host: VirtualService[];
  /** Frontends at the ingress sandbox's address, in the sandbox. */
  sandbox: VirtualService[];
  /** Per published port, for metrics: serving backends it can reach from this node. */
  ports: Array<{ service: string; port: number; protocol: string; mode: string; serving: number }>;
}

/** The network a direct backend is reached on: the task's default-route network. */
export function directNetwork(svc: Service, networks: ReadonlyMap<string, Network>, ingressId: string | undefined): string | undefined {
  const first = svc.spec.networks[0] ? networks.get(svc.spec.networks[0].network) : undefined;
  if (first) return first.driver === 'macvlan' ? undefined : first.id;
  return ingressId;
}

/** A replica of `svc` on this node that is meant to run or still drains (host-mode ports open while one exists). */
const presentHere = (t: Task, selfId: string): boolean => t.nodeId === selfId && (t.desiredState === 'running' || isDraining(t));

/** Backends of `svc` for `target` when tasks share their node's namespace: `<node address>:target`. */
function sharedBackends(tasks: readonly Task[], target: number, nodes: ReadonlyMap<string, Node>): LbBackend[] {
  const seen = new Map<string, LbBackend>();
  for (const t of tasks) {
    const node = nodes.get(t.nodeId);
    if (!node || !nodeServes(node)) continue;
    const weight = servesTraffic(t) ? 1 : isDraining(t) && t.status.healthy !== false ? 0 : -1;
    const had = seen.get(node.address);
    if (weight >= 0 && (!had || had.weight < weight)) seen.set(node.address, { address: node.address, port: target, weight });
  }
  return [...seen.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

export function publishedServices(input: PublishedInput): PublishedState {
  const { self, nodes } = input;
  if (input.shared) return sharedPublished(input);
  const out: PublishedState = { host: [], sandbox: [], ports: [] };
  const ingressId = self.ingress?.network;
  const anyLocal = self.address.includes(':') ? EVERY_LOCAL_V6 : EVERY_LOCAL_V4;
  const sorted = [...input.services].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  for (const svc of sorted) {
    if (svc.spec.ports.length === 0) continue;
    const tasks = input.byService.get(svc.id) ?? [];
    const local = tasks.filter((t) => t.nodeId === self.id);
    const direct = directNetwork(svc, input.networks, ingressId);
    for (const p of svc.spec.ports) {
      const base = { port: p.published, protocol: p.protocol, service: svc.spec.name };
      const report = (backends: LbBackend[]): void => {
        out.ports.push({ service: svc.spec.name, port: p.published, protocol: p.protocol, mode: modeOf(svc, p), serving: backends.filter((b) => b.weight > 0).length });
      };
      if (p.mode === 'host' || svc.spec.trafficPolicy === 'local') {
        if (p.mode === 'host' && !tasks.some((t) => presentHere(t, self.id))) continue;
        const backends = direct ? backendsOf(svc, direct, p.target, local, nodes) : [];
        out.host.push({ ...base, address: anyLocal, ...lbSettings(svc), backends });
        report(backends);
        continue;
      }
      // ingress mode, cluster policy: node -> its ingress sandbox -> any replica.
      if (!ingressId || !self.ingress) continue;
      const sbox = self.ingress.v4;
      out.host.push({ ...base, address: anyLocal, scheduler: 'rr', backends: [{ address: sbox, port: p.published, weight: 1 }] });
      const backends = backendsOf(svc, ingressId, p.target, tasks, nodes);
      out.sandbox.push({ ...base, address: sbox, ...lbSettings(svc), masquerade: true, backends });
      report(backends);
    }
  }
  return out;
}

function modeOf(svc: Service, p: PortConfig): string {
  return p.mode === 'host' ? 'host' : svc.spec.trafficPolicy === 'local' ? 'ingress-local' : 'ingress';
}


/** {@link publishedServices} when tasks share their node's namespace: every port at the node's address, straight to the replicas. */
function sharedPublished(input: PublishedInput): PublishedState {
  const { self, nodes } = input;
  const out: PublishedState = { host: [], sandbox: [], ports: [] };
  for (const svc of [...input.services].sort((a, b) => a.spec.name.localeCompare(b.spec.name))) {
    const tasks = input.byService.get(svc.id) ?? [];
    for (const p of svc.spec.ports) {
      const direct = p.mode === 'host' || svc.spec.trafficPolicy === 'local';
      if (p.mode === 'host' && !tasks.some((t) => presentHere(t, self.id))) continue;
      const backends = sharedBackends(direct ? tasks.filter((t) => t.nodeId === self.id) : tasks, p.target, nodes);
      out.host.push({ address: self.address, port: p.published, protocol: p.protocol, service: svc.spec.name, ...lbSettings(svc), backends });
      out.ports.push({ service: svc.spec.name, port: p.published, protocol: p.protocol, mode: modeOf(svc, p), serving: backends.filter((b) => b.weight > 0).length });
    }
  }
  return out;
}
