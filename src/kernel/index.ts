/**
 * Kernel adapters of the driver core: rtnetlink links/addresses/routes/neighbours/FDB
 * ({@link LinkOps}), network namespaces and the worker threads that live in them
 * ({@link NetnsWorker}), nftables ({@link Nft}) and sysctls ({@link Sysctl}); each with an
 * in-tree fake for unit tests. See README.md in this folder.
 */
export type {
  FdbEntry, LinkInfo, LinkOps, LinkStats, MacvlanMode, MacvlanSpec, NeighbourEntry, NetnsRef, RouteSpec,
  VethSpec, VxlanInfo, VxlanSpec,
} from './netlink.js';
export { NetlinkLinkOps } from './rtnl-link-ops.js';
export { FakeKernel, FakeLinkOps, type FakeNsDump } from './fake-link-ops.js';
export { closeNetnsHelper, deleteNetns, ensureNetns, listNetns, NetnsWorker, type NetnsWorkerOptions } from './netns.js';
export { NETNS_DIR, netnsPath } from './paths.js';
export { ExecNft, FakeNft, type Nft, type NftFamily, type NftJson, type ExecNftOptions } from './nft.js';
export { ExecConntrack, FakeConntrack, type Conntrack, type ConntrackFlowFilter, type ExecConntrackOptions } from './conntrack.js';
export { FakeSysctl, NsenterSysctl, ProcSysctl, type Sysctl } from './sysctl.js';
export { execTool, type ExecOptions, type ExecResult } from './exec.js';
export {
  closeSharedNetnsRoamer, NetnsRoamer, netnsLinks, sharedNetnsRoamer,
  type NetnsRoamerOptions, type RoamCall, type RoamLinkMethod,
} from './netns-roamer.js';
export type {
  IpvsDest, IpvsDestEntry, IpvsForward, IpvsOps, IpvsProtocol, IpvsService, IpvsServiceEntry, IpvsServiceFlags, IpvsServiceKey,
  IpvsStats, IpvsTimeouts,
} from './ipvs.js';
export { ensureDest, ensureService } from './ipvs.js';
export { GenlIpvs, hasIpvs } from './ipvs-genl.js';
export { FakeIpvs } from './fake-ipvs.js';
export { ipvsIn, netnsSysctl } from './netns-roamer.js';
