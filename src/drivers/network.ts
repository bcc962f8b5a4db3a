/**
 * Pieces shared by the drivers: reading a Network's IPAM/options, the gateway bridge of the
 * bridge and overlay drivers, forwarding sysctls. All of it acts on the node namespace.
 */
import { invalid } from '../errors.js';
import { cidrContains, formatIp, parseCidr, parseIp } from '../ipam/cidr.js';
import type { Network } from '../model/types.js';
import { bridgeMac } from './mac.js';
import { bridgeName, ownedKind } from './names.js';
import type { DriverContext, EndpointSpec } from './types.js';

/** `options.mtu` when set (68-65535), otherwise `fallback`. */
export function networkMtu(net: Network, fallback: number): number {
  const raw = net.options['mtu'];
  if (raw === undefined || raw === '') return fallback;
  const mtu = Number(raw);
  if (!/^\d+$/.test(raw) || mtu < 68 || mtu > 65535) {
    throw invalid(`network '${net.name}': option mtu=${raw} must be a whole number between 68 and 65535`);
  }
  return mtu;
}

/** `addr/len` for an address of `subnet`; InvalidParameter when it lies outside. */
function inSubnet(net: Network, what: string, addr: string, subnet: string): string {
  const ip = parseIp(addr, what);
  const c = parseCidr(subnet);
  if (!cidrContains(c, ip)) throw invalid(`network '${net.name}': ${what} ${addr} is outside its subnet ${subnet}`);
  return `${formatIp(ip)}/${c.prefix}`;
}

/** The gateway address(es) of `net` with the subnet's prefix length (`10.0.1.1/24`). */
export function gatewayCidrs(net: Network): string[] {
  const out = [inSubnet(net, 'gateway', net.ipam.v4.gateway, net.ipam.v4.subnet)];
  if (net.ipam.v6) out.push(inSubnet(net, 'IPv6 gateway', net.ipam.v6.gateway, net.ipam.v6.subnet));
  return out;
}

/** The endpoint's address(es) with the subnet's prefix length, validated against `net`. */
export function endpointCidrs(net: Network, ep: EndpointSpec): { v4: string; v6?: string } {
  if (ep.networkId !== net.id) throw invalid(`endpoint ${ep.id} belongs to network ${ep.networkId}, not '${net.name}' (${net.id})`);
  const v4 = inSubnet(net, 'endpoint address', ep.v4, net.ipam.v4.subnet);
  if (ep.v6 === undefined) return { v4 };
  if (!net.ipam.v6) throw invalid(`network '${net.name}' has no IPv6 subnet, but endpoint ${ep.id} has IPv6 address ${ep.v6}`);
  return { v4, v6: inSubnet(net, 'endpoint IPv6 address', ep.v6, net.ipam.v6.subnet) };
}

/**
 * Ensure `net`'s bridge: created with `mtu`, a stable per-node MAC (mac.ts), the gateway
 * address(es), up. Returns its name. Idempotent; converges the MTU and MAC of an existing one.
 */
export async function ensureGatewayBridge(ctx: DriverContext, net: Network, mtu: number): Promise<string> {
  const br = bridgeName(ctx.prefix, net.id);
  const gateways = gatewayCidrs(net);
  await ctx.links.ensureBridge(br, { mtu });
  const have = await ctx.links.getLink(br);
  if (have && have.mtu !== mtu) await ctx.links.setMtu(br, mtu);
  const mac = bridgeMac(net.id, ctx.underlay.address);
  if (have?.mac !== mac) await ctx.extras.setMac(br, mac);
  for (const gw of gateways) await ctx.links.ensureAddress(br, gw);
  await ctx.links.setUp(br);
  return br;
}

/** Turn on routing in the node namespace (egress NAT needs it); IPv6 only for networks that have it. */
export async function enableForwarding(ctx: DriverContext, net: Network): Promise<void> {
  await ctx.sysctl.set('net.ipv4.ip_forward', 1);
  if (net.ipam.v6) await ctx.sysctl.set('net.ipv6.conf.all.forwarding', 1);
}

/**
 * Delete `links` (a network's bridge and VXLAN) and every owned endpoint veth still enslaved
 * to them: a network that is gone leaves no half-connected sandboxes. Absent = success.
 */
export async function deleteNetworkLinks(ctx: DriverContext, links: readonly string[]): Promise<void> {
  const doomed = new Set(links);
  for (const l of await ctx.links.listLinks(ctx.prefix)) {
    if (l.master !== undefined && doomed.has(l.master) && ownedKind(ctx.prefix, l.name) === 'veth') doomed.add(l.name);
  }
  await ctx.links.deleteLinks([...doomed]);
}
