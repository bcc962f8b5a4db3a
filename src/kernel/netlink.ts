/**
 * The link-layer contract of the driver core: what bridge, overlay and macvlan drivers may
 * ask of the kernel (libnetwork's `netlink` usage, reduced to what Shoal needs).
 *
 * Two implementations share this interface:
 * - {@link NetlinkLinkOps}: real rtnetlink over npm `netlink`. It acts on the netns of the
 *   thread that constructed it: on the main thread that is the host's, inside a NetnsWorker
 *   it is the sandbox's (`worker.links` is a LinkOps proxy to an instance living there).
 * - {@link FakeLinkOps}: an in-memory kernel for unit tests of drivers, with `dump()`.
 *
 * Contract shared by both:
 * - `ensure*` is idempotent: an object that already exists with the same name AND kind is a
 *   success (nothing is changed); a name taken by another kind fails with errno EBUSY.
 * - `delete*` of something absent is a success (ENOENT / ENODEV / EADDRNOTAVAIL swallowed).
 * - Any other failure is a KernelError with `op` (e.g. `link.setMaster`) and `errno`.
 * - Methods naming a device that does not exist (`setUp('nope')`) fail with ENODEV
 *   (`isNotFound(err)` is true): only deletes treat absence as success.
 */
export { NetlinkLinkOps } from './rtnl-link-ops.js';
export { FakeLinkOps, FakeKernel } from './fake-link-ops.js';

/**
 * A network namespace: a name under /run/netns (`'sbx1'`), an absolute path to an nsfs
 * file (`'/proc/1234/ns/net'`, `'/run/netns/sbx1'`), or an open file descriptor on one.
 */
export type NetnsRef = string | { fd: number };

/** Counters of a link (from IFLA_STATS64). */
export interface LinkStats {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  rxDropped: number;
  txDropped: number;
}

/** VXLAN parameters as read back from the kernel. */
export interface VxlanInfo {
  vni: number;
  local: string | undefined;
  dstport: number;
  learning: boolean;
  /** Underlay device index (IFLA_VXLAN_LINK), if bound to one. */
  devIndex: number | undefined;
}

/** One link as listed. */
export interface LinkInfo {
  name: string;
  index: number;
  /** IFLA_INFO_KIND (`'veth'`, `'bridge'`, `'vxlan'`, `'macvlan'`...); undefined for physical/loopback. */
  kind: string | undefined;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  mac: string | undefined;
  /** Name of the bridge this link is enslaved to. */
  master: string | undefined;
  stats: LinkStats;
  vxlan?: VxlanInfo;
}

/** A veth pair. */
export interface VethSpec {
  name: string;
  peer: string;
  /** Create the peer directly inside this netns (no separate move, no name clash in the host). */
  peerNetns?: NetnsRef;
  mtu?: number;
}

/** A VXLAN device (overlay driver). */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** Local underlay (tunnel endpoint) address. */
  local?: string;
  /** UDP destination port; default 4789 (IANA). */
  dstport?: number;
  /** Underlay device to bind to. */
  dev?: string;
  /** MAC learning; default false: Shoal programs FDB/neighbour entries from the control plane. */
  learning?: boolean;
  mtu?: number;
}

/** macvlan modes; Shoal uses `bridge` so that sub-interfaces on one parent reach each other. */
export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru';

/** A macvlan sub-interface of `parent`. */
export interface MacvlanSpec {
  name: string;
  parent: string;
  /** Default `'bridge'`. */
  mode?: MacvlanMode;
  mtu?: number;
}

/** A route; `dst` defaults to the default route of via's family. */
export interface RouteSpec {
  dst?: string;
  via: string;
  dev?: string;
}

/** A static IP -> MAC entry. */
export interface NeighbourEntry {
  ip: string;
  mac: string | undefined;
  /** NUD state names, e.g. `['permanent']`, `['reachable']`. */
  state: string[];
}

/** A bridge FDB entry of a device: MAC -> underlay destination (VXLAN). */
export interface FdbEntry {
  mac: string;
  dst: string | undefined;
  permanent: boolean;
}

/** The link-layer kernel operations of the driver core. See the module doc for the contract. */
export interface LinkOps {
  /** Create a bridge; existing bridge = success. Not brought up. */
  ensureBridge(name: string, opts?: { mtu?: number }): Promise<void>;
  /** Create a veth pair, the peer optionally straight inside another netns; existing veth `name` = success. */
  ensureVeth(spec: VethSpec): Promise<void>;
  /** Create a VXLAN device (learning off by default); existing vxlan with the same VNI = success, another VNI = EBUSY. */
  ensureVxlan(spec: VxlanSpec): Promise<void>;
  /** Create a macvlan on `parent`; existing macvlan = success. */
  ensureMacvlan(spec: MacvlanSpec): Promise<void>;
  /** Set IFF_UP (default) or clear it. Idempotent. */
  setUp(name: string, up?: boolean): Promise<void>;
  /** Set the MTU. Idempotent. */
  setMtu(name: string, mtu: number): Promise<void>;
  /** Enslave to a bridge, or release with `null`. Idempotent. */
  setMaster(name: string, master: string | null): Promise<void>;
  /**
   * Move a link into another netns, optionally renaming it on the way (`eth0`). NOT idempotent:
   * once moved, the name is gone from here and a second call fails with ENODEV.
   */
  moveToNetns(name: string, netns: NetnsRef, newName?: string): Promise<void>;
  /** Delete a link (a veth takes its peer with it); absent = success. */
  deleteLink(name: string): Promise<void>;
  /**
   * Delete many links; absent ones are skipped. Never runs on the main thread: each delete
   * holds the kernel's RTNL lock for milliseconds (RCU grace periods) inside the send call.
   */
  deleteLinks(names: readonly string[]): Promise<void>;
  /** One link, or undefined when absent. */
  getLink(name: string): Promise<LinkInfo | undefined>;
  /** All links whose name starts with `prefix` (all when omitted), sorted by name. */
  listLinks(prefix?: string): Promise<LinkInfo[]>;
  /** Add `cidr` (`'10.0.0.2/24'`) to `dev`; present = success. */
  ensureAddress(dev: string, cidr: string): Promise<void>;
  /** Remove `cidr` from `dev`; absent = success. */
  deleteAddress(dev: string, cidr: string): Promise<void>;
  /** Addresses of `dev` as CIDRs (IPv6 link-local included). */
  listAddresses(dev: string): Promise<string[]>;
  /** Create or replace a route (`ip route replace`): converges, never EEXIST. */
  ensureRoute(spec: RouteSpec): Promise<void>;
  /** Delete a route; absent = success. */
  deleteRoute(spec: RouteSpec): Promise<void>;
  /** Create or replace a permanent IP -> MAC entry on `dev`. */
  ensureNeighbour(dev: string, ip: string, mac: string): Promise<void>;
  /** Delete the entry for `ip` on `dev`; absent = success. */
  deleteNeighbour(dev: string, ip: string): Promise<void>;
  /** IPv4 and IPv6 neighbour entries of `dev`, without the kernel's own NOARP (multicast) entries. */
  listNeighbours(dev: string): Promise<NeighbourEntry[]>;
  /**
   * `bridge fdb append MAC dev DEV dst IP self permanent`: NOT exclusive, so one MAC (notably
   * 00:00:00:00:00:00, the flood entry) may have several destinations. Appending an existing
   * (mac, dst) pair is a success.
   */
  appendFdb(dev: string, mac: string, dst: string): Promise<void>;
  /** Delete one (mac, dst) FDB entry, or every destination of `mac` when dst is omitted; absent = success. */
  deleteFdb(dev: string, mac: string, dst?: string): Promise<void>;
  /** FDB entries of `dev` (for a VXLAN: its remote destinations). */
  listFdb(dev: string): Promise<FdbEntry[]>;
  /** Release the netlink socket and any helper thread. Further calls fail. */
  close(): Promise<void>;
}
