/**
 * Endpoint plumbing shared by the drivers: the veth endpoint of bridge and overlay networks,
 * and the sandbox-side configuration every endpoint kind gets.
 *
 * Join order, chosen so that a join interrupted anywhere is finished by calling it again:
 * 1. node namespace: the veth pair `<p>v…` / `<p>p…`, the peer's MAC set while it is still
 *    here (MAC and MTU survive a move; addresses, routes and IFF_UP do not);
 * 2. the peer is moved into the sandbox and renamed to `ifname` in the same netlink request;
 * 3. sandbox: MTU, address(es), up, default route(s).
 * An interface `ifname` already in the sandbox with our kind and MAC is ours: steps 1-2 are skipped.
 */
import { conflict, isNotFound, notFound } from '../errors.js';
import { NetnsWorker, type LinkInfo, type LinkOps } from '../kernel/index.js';
import type { Network } from '../model/types.js';
import { macFromIPv4 } from './mac.js';
import { vethHostName, vethPeerName } from './names.js';
import { endpointCidrs } from './network.js';
import type { DriverContext, EndpointSpec, JoinOptions, SandboxRef } from './types.js';

/**
 * Run `fn` with LinkOps acting inside the sandbox: `sb.links`, or a NetnsWorker started for
 * this call and closed after it. With `absentOk`, a sandbox netns that no longer exists
 * resolves undefined instead of failing (leave of a task whose namespace is already gone).
 */
export async function withSandbox<T>(sb: SandboxRef, fn: (links: LinkOps) => Promise<T>, absentOk = false): Promise<T | undefined> {
  if (sb.links) return fn(sb.links);
  let worker: NetnsWorker;
  try {
    worker = await NetnsWorker.start({ netns: sb.netns });
  } catch (e) {
    if (absentOk && isNotFound(e)) return undefined;
    throw e;
  }
  try {
    return await fn(worker.links);
  } finally {
    await worker.close();
  }
}

/** Conflict unless `inside` is absent or is this endpoint's interface (same kind and MAC). */
export function checkOwnInterface(inside: LinkInfo | undefined, kind: string, mac: string, net: Network, ep: EndpointSpec, sb: SandboxRef): void {
  if (!inside || (inside.kind === kind && inside.mac === mac)) return;
  throw conflict(`sandbox ${sb.netns} already has an interface ${sb.ifname} that is not endpoint ${ep.id} of network '${net.name}' (leave that network first, or join with another interface name)`);
}

/** Sandbox side of a join: MTU, address(es), up, then the default route(s) when asked. Idempotent. */
export async function configureInside(
  sbx: LinkOps, net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions, mtu: number | undefined,
): Promise<void> {
  const cidrs = endpointCidrs(net, ep);
  const link = await sbx.getLink(sb.ifname);
  if (mtu !== undefined && link?.mtu !== mtu) await sbx.setMtu(sb.ifname, mtu);
  await sbx.ensureAddress(sb.ifname, cidrs.v4);
  if (cidrs.v6 !== undefined) await sbx.ensureAddress(sb.ifname, cidrs.v6);
  // Routes via the gateway need the link up and its connected route present: after the addresses.
  await sbx.setUp(sb.ifname);
  if (!opts.defaultRoute) return;
  await sbx.ensureRoute({ via: net.ipam.v4.gateway, dev: sb.ifname });
  if (cidrs.v6 !== undefined && net.ipam.v6) await sbx.ensureRoute({ via: net.ipam.v6.gateway, dev: sb.ifname });
}

/** Join of a veth endpoint whose host side is enslaved to `bridge` (bridge and overlay drivers). */
export async function joinVeth(
  ctx: DriverContext, net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions, bridge: string, mtu: number,
): Promise<void> {
  endpointCidrs(net, ep); // validate before touching the kernel
  if (!(await ctx.links.getLink(bridge))) throw notFound(`network '${net.name}' on this node`, 'createNetwork must run before join');
  const mac = macFromIPv4(ep.v4);
  const host = vethHostName(ctx.prefix, net.id, ep.id);
  const peer = vethPeerName(ctx.prefix, net.id, ep.id);
  await withSandbox(sb, async (sbx) => {
    const inside = await sbx.getLink(sb.ifname);
    checkOwnInterface(inside, 'veth', mac, net, ep, sb);
    if (!inside) {
      // A host side whose peer is neither here nor in the sandbox is from a lost attempt: start over.
      if ((await ctx.links.getLink(host)) && !(await ctx.links.getLink(peer))) await ctx.links.deleteLink(host);
      await ctx.links.ensureVeth({ name: host, peer, mtu });
      await ctx.extras.setMac(peer, mac);
      await ctx.links.moveToNetns(peer, sb.netns, sb.ifname);
    }
    if ((await ctx.links.getLink(host))?.mtu !== mtu) await ctx.links.setMtu(host, mtu);
    await ctx.links.setMaster(host, bridge);
    await ctx.links.setUp(host);
    await configureInside(sbx, net, ep, sb, opts, mtu);
  });
}

/** Leave of a veth endpoint: deleting the host side takes the sandbox side with it. Absent = success. */
export async function leaveVeth(ctx: DriverContext, net: Network, ep: EndpointSpec): Promise<void> {
  await ctx.links.deleteLinks([vethHostName(ctx.prefix, net.id, ep.id), vethPeerName(ctx.prefix, net.id, ep.id)]);
}
