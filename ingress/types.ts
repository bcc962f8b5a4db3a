/**
 * The L4 load-balancer contract shared by Shoal's three dataplanes (ipvs, nftables, userspace)
 * and by the proxier that drives them. One `LoadBalancer` instance programs ONE place: the
 * network namespace of one sandbox (a task's, or a node's ingress sandbox), or, for userspace,
 * one process.
 *
 * State model: the proxier hands over virtual services (VIP:port/proto -> backends); the
 * dataplane keeps what it applied and turns each call into the difference, in ONE transaction
 * where the dataplane has them (one `nft -f` script; one burst of netlink messages). The cost of
 * a call is proportional to the services it names, never to all services.
 */

/** Transport protocol of a virtual service. */
export type LbProtocol = 'tcp' | 'udp';

/**
 * Scheduling: `rr` round robin, `wrr` weighted round robin, `random`, `lc` least connections
 * (ipvs only), `sh` source hashing, `mh` maglev hashing (ipvs only). A dataplane that lacks one
 * maps it to the nearest it has (documented per dataplane), never refuses.
 */
export type LbScheduler = 'rr' | 'wrr' | 'random' | 'lc' | 'sh' | 'mh';

export interface LbBackend {
  /** IPv4 or IPv6 address of the replica. */
  address: string;
  port: number;
  /**
   * Relative weight, 1..256. `0` = draining: no new flows (and no new affinity), established
   * flows go on until they end or the backend is removed.
   */
  weight: number;
}

/**
 * Frontend addresses meaning "every local address of the namespace" (like a socket bound to
 * INADDR_ANY): a node's published ports. For IPv4 the loopback addresses answer too, to
 * traffic from the namespace itself (nftables dataplane: matched with `fib daddr type local`,
 * flows from 127.0.0.0/8 masqueraded, as kube-proxy does with route_localnet).
 */
export const EVERY_LOCAL_V4 = '0.0.0.0';
export const EVERY_LOCAL_V6 = '::';

/** Whether a frontend address means every local address ({@link EVERY_LOCAL_V4}, {@link EVERY_LOCAL_V6}). */
export const isEveryLocal = (address: string): boolean => address === EVERY_LOCAL_V4 || address === EVERY_LOCAL_V6;

export interface VirtualService {
  /**
   * Frontend address: the VIP, an ingress sandbox's address, or {@link EVERY_LOCAL_V4} /
   * {@link EVERY_LOCAL_V6} for every local address of the namespace (a node's published ports;
   * nftables and userspace dataplanes).
   */
  address: string;
  /**
   * Frontend port; `0` = every port of `protocol` at `address` not claimed by a virtual
   * service with an explicit port there (the backend keeps the packet's destination port, and
   * the backends' `port` is 0 too). A VIP carries every port of its service this way.
   */
  port: number;
  protocol: LbProtocol;
  scheduler: LbScheduler;
  /** Session affinity by client address: a client keeps its backend while it sends within `timeoutSeconds`. */
  affinity?: { timeoutSeconds: number };
  /**
   * Source-NAT the balanced flows to the sandbox's own address (ingress with `cluster` policy).
   * False keeps the client's address at the backend (task -> VIP, `local` policy, host mode).
   */
  masquerade?: boolean;
  /** Backends; empty = the frontend refuses (TCP RST / ICMP unreachable, never a black hole). */
  backends: LbBackend[];
  /** For metrics and logs: the service's name (or id). */
  service: string;
}

/** The identity of a virtual service: `tcp/10.0.0.2/80` (`tcp/[fd00::2]/80` for IPv6; `tcp/10.0.0.2/0` for every port). */
export function vsKey(vs: Pick<VirtualService, 'protocol' | 'address' | 'port'>): string {
  const a = vs.address.includes(':') ? `[${vs.address}]` : vs.address;
  return `${vs.protocol}/${a}/${vs.port}`;
}

/** Counters of one backend of one virtual service, where the dataplane has them. */
export interface LbBackendStats {
  vs: string;
  service: string;
  address: string;
  port: number;
  /** Open connections now (ipvs: active + inactive; userspace: open flows; nftables: not counted). */
  connections?: number;
  /** Total connections or flows since the backend was programmed. */
  connectionsTotal?: number;
  bytes?: number;
}

export type LbKind = 'ipvs' | 'nftables' | 'userspace';

export interface LoadBalancer {
  readonly kind: LbKind;
  /**
   * Make the dataplane hold exactly `services` (start, periodic resync): anything it owns and
   * `services` lacks is removed, including leftovers of an earlier process.
   */
  syncAll(services: readonly VirtualService[]): Promise<void>;
  /**
   * Apply a change: each of `upsert` replaces the virtual service with the same {@link vsKey}
   * (backends diffed: only added/removed/reweighted ones are touched); each key of `remove` is
   * deleted (absent = success). One transaction where the dataplane has them.
   */
  apply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void>;
  /** What the dataplane believes it applied (for tests and metrics). */
  applied(): ReadonlyMap<string, VirtualService>;
  /** Per-backend counters, where the dataplane can give them. */
  stats(): Promise<LbBackendStats[]>;
  /**
   * Optional drift repair (periodic resync): re-read the kernel and make it hold again what
   * {@link applied} says (a table flushed by someone, a virtual service deleted behind our
   * back), without disturbing what is right (established flows, affinity records, counters).
   * Resolves with the number of objects found wrong and repaired (0 = no drift).
   */
  resync?(): Promise<number>;
  /** Remove everything this instance owns (its table, its virtual services, its listeners). */
  cleanup(): Promise<void>;
  /** Release resources (sockets, listeners) without removing kernel state. */
  close(): Promise<void>;
}
