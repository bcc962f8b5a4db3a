/**
 * The network drivers of the driver core (libnetwork's CNM verbs): `bridge`, `overlay`,
 * `macvlan` behind one {@link NetworkDriver} contract (types.ts). See README.md in this folder.
 */
import { NetlinkLinkOps, NetnsWorker, ExecNft, ProcSysctl } from '../kernel/index.js';
import type { NetworkDriver as DriverName } from '../model/types.js';
import { BridgeDriver } from './bridge.js';
import { LINK_EXTRAS_MODULE, LINK_EXTRAS_PREFIX, NetlinkLinkExtras, workerLinkExtras } from './link-extras.js';
import { MacvlanDriver } from './macvlan.js';
import { OverlayDriver } from './overlay.js';
import type { DriverContext, NetworkDriver } from './types.js';

export * from './types.js';
export { BridgeDriver, BRIDGE_DEFAULT_MTU } from './bridge.js';
export { OverlayDriver, VXLAN_OVERHEAD, VXLAN_PORT } from './overlay.js';
export { MacvlanDriver } from './macvlan.js';
export { cleanupLeftovers } from './cleanup.js';
export { natRules, ownedBridges, syncNat, type NatNetwork } from './nat.js';
export { bridgeMac, macFromIPv4 } from './mac.js';
export * as driverNames from './names.js';
export { LINK_EXTRAS_MODULE, LINK_EXTRAS_PREFIX, NetlinkLinkExtras, workerLinkExtras } from './link-extras.js';
export { FakeLinkExtras } from './fake-link-extras.js';

/** One driver of each kind, sharing `ctx`. */
export type Drivers = Record<DriverName, NetworkDriver>;

/** The three drivers of one node namespace. */
export function createDrivers(ctx: DriverContext): Drivers {
  return { bridge: new BridgeDriver(ctx), overlay: new OverlayDriver(ctx), macvlan: new MacvlanDriver(ctx) };
}

/** Where the drivers run and what they own, without the kernel adapters. */
export type DriverPlacement = Pick<DriverContext, 'prefix' | 'underlay' | 'vxlanPort'>;

/**
 * A context for the CALLING THREAD's netns (the host, for an agent on the main thread):
 * rtnetlink there, `nft` and /proc/sys of the process. `close()` releases the netlink socket.
 */
export function hostDriverContext(placement: DriverPlacement): DriverContext & { close(): Promise<void> } {
  const links = new NetlinkLinkOps();
  return { ...placement, links, extras: new NetlinkLinkExtras(), nft: new ExecNft(), sysctl: new ProcSysctl(), close: () => links.close() };
}

/**
 * A context whose node namespace is the named netns `netns` (a simulated node in tests and
 * e2e): a NetnsWorker lives there for links, extras and sysctls; nft runs via nsenter.
 * `close()` ends the worker. Extra handler `modules` may be loaded into the same worker.
 */
export async function netnsDriverContext(
  netns: string, placement: DriverPlacement, modules: Record<string, string | URL> = {},
): Promise<DriverContext & { worker: NetnsWorker; close(): Promise<void> }> {
  const worker = await NetnsWorker.start({ netns, modules: { ...modules, [LINK_EXTRAS_PREFIX]: LINK_EXTRAS_MODULE } });
  return {
    ...placement, links: worker.links, extras: workerLinkExtras(worker), nft: new ExecNft({ netns }), sysctl: worker.sysctl,
    worker, close: () => worker.close(),
  };
}
