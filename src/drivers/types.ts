/**
 * The contract of Shoal's network drivers (libnetwork's `driverapi`, reduced to the CNM verbs
 * Shoal uses). Drivers: `bridge` (single host), `overlay` (VXLAN), `macvlan` (an existing LAN).
 *
 * Namespaces: a driver works in ONE "node namespace", the netns its {@link DriverContext}
 * adapters are bound to (the host for a real agent; a test's netns for a simulated node).
 * Endpoints end up in sandboxes (further namespaces) named by a {@link SandboxRef}.
 */
import type { LinkOps, Nft, Sysctl, VxlanSpec } from '../kernel/index.js';
import type { Network, NetworkDriver as DriverName } from '../model/types.js';

export type { DriverName };

/**
 * Link operations the drivers need and {@link LinkOps} does not offer (yet): setting a MAC
 * address, and a VXLAN with ARP/ND proxy (`IFLA_VXLAN_PROXY`, which the kernel only accepts
 * at creation). Bound to the same netns as `DriverContext.links`. Implementations:
 * `NetlinkLinkExtras` (calling thread), `workerLinkExtras` (a NetnsWorker), `FakeLinkExtras`.
 */
export interface LinkExtras {
  /** Set `dev`'s MAC address (IFLA_ADDRESS). Idempotent; ENODEV when `dev` is absent. */
  setMac(dev: string, mac: string): Promise<void>;
  /**
   * Create a VXLAN like `LinkOps.ensureVxlan` (learning off unless asked), with the proxy flag
   * set: the device answers ARP requests / neighbour solicitations from its own neighbour table
   * and never sends them over the tunnel. An existing device with the same VNI, local address,
   * port and proxy flag is a success; any difference is EBUSY (the caller may recreate it).
   */
  ensureProxyVxlan(spec: VxlanSpec): Promise<void>;
}

/** Everything a driver needs to know about where it runs (see the module doc on namespaces). */
export interface DriverContext {
  /** Link operations in the node namespace. */
  links: LinkOps;
  /** What `links` cannot do yet, in the same namespace. */
  extras: LinkExtras;
  /** nftables of the node namespace (the driver owns one table there, see nat.ts). */
  nft: Nft;
  /** sysctls of the node namespace (`net.ipv4.ip_forward`). */
  sysctl: Sysctl;
  /**
   * Name prefix of every link and table this node's drivers own: 1-4 characters, `[a-z][a-z0-9]*`,
   * e.g. `'sh'`. Two Shoal instances sharing a namespace need prefixes that do not prefix each other.
   */
  prefix: string;
  /** Underlay of this node: the VXLAN local address and, optionally, the device it is on (its MTU sizes overlays). */
  underlay: { address: string; device?: string };
  /** VXLAN UDP destination port; default 4789. */
  vxlanPort?: number;
}

/** One endpoint of a task on one network. */
export interface EndpointSpec {
  /** Task id: with the network id it names the endpoint's host-side links. */
  id: string;
  networkId: string;
  /** IPv4 address inside the network's subnet (no prefix length); also determines the MAC (mac.ts). */
  v4: string;
  /** IPv6 address; only on a network with `ipam.v6`. */
  v6?: string;
}

/** Where an endpoint goes. */
export interface SandboxRef {
  /** netns name (under /run/netns) or nsfs path (`/run/netns/NAME`, `/proc/PID/ns/net`). */
  netns: string;
  /** Interface name inside the sandbox, e.g. `eth0`, `eth1`. */
  ifname: string;
  /**
   * Link operations acting INSIDE the sandbox (e.g. the sandbox's `NetnsWorker.links`). When
   * absent, join/leave start a NetnsWorker in `netns` for the call (costs a thread start).
   */
  links?: LinkOps;
}

/** Options of {@link NetworkDriver.join}. */
export interface JoinOptions {
  /** Install the default route(s) via this network's gateway: true for the sandbox's FIRST network only. */
  defaultRoute: boolean;
}

/**
 * A network driver (CNM). Every verb is an idempotent "ensure": calling it again after a
 * success, or after a failure half-way, converges to the same kernel state. Kernel failures
 * reject with a KernelError; invalid networks/endpoints with a ShoalError (InvalidParameter,
 * NotFound, Conflict) whose message says what to fix. Calls for one endpoint must not overlap.
 */
export interface NetworkDriver {
  readonly name: DriverName;
  /** Ensure the network's node-level objects exist (bridge, gateway, VXLAN, NAT, ...). */
  createNetwork(net: Network): Promise<void>;
  /** Remove the network's node-level objects, and any host-side endpoint links still attached. Absent = success. */
  deleteNetwork(net: Network): Promise<void>;
  /**
   * Create the endpoint's interface and put it in the sandbox: moved in, renamed to
   * `sb.ifname`, MAC derived from `ep.v4` (mac.ts), address(es) with the subnet's prefix length,
   * up, MTU of the network, and the default route(s) via the gateway when `opts.defaultRoute`.
   * Conflict when `sb.ifname` is already taken in the sandbox by another endpoint.
   */
  join(net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions): Promise<void>;
  /** Remove the endpoint's interface (for a veth, deleting the host side removes the pair). Absent sandbox or link = success. */
  leave(net: Network, ep: EndpointSpec, sb: SandboxRef): Promise<void>;
}

/** A remote endpoint of an overlay network, as every node can compute it from cluster state. */
export interface Peer {
  /** The endpoint's IPv4 or IPv6 address (pass one Peer per address). */
  ip: string;
  /** Its MAC: `macFromIPv4(v4)` (mac.ts) for both of its addresses. */
  mac: string;
  /** Underlay address of the node that hosts it. */
  vtep: string;
}

/** What {@link PeerProgrammer.setPeers} changed in the kernel. */
export interface PeerChanges {
  added: number;
  removed: number;
}

/** Overlay only: programs where remote endpoints are. */
export interface PeerProgrammer {
  /**
   * Make the network's VXLAN forwarding (FDB `mac -> vtep`) and neighbour (`ip -> mac`) entries
   * exactly `peers`: the kernel's current entries are read and only the difference is applied
   * (adds before removes, so a moved MAC is never without a destination). Peers whose vtep is
   * this node's own underlay address are ignored (local endpoints are on the bridge). Calls
   * for one network are serialized. NotFound when the network was not created on this node.
   */
  setPeers(net: Network, peers: readonly Peer[]): Promise<PeerChanges>;
}

/** True for drivers that program remote peers (overlay). */
export function isPeerProgrammer(d: NetworkDriver): d is NetworkDriver & PeerProgrammer {
  return typeof (d as Partial<PeerProgrammer>).setPeers === 'function';
}
