/**
 * The `overlay` driver: one L2 segment across nodes over VXLAN.
 *
 * Per network, in the node namespace: a bridge `<prefix>b<net>` with the gateway address (the
 * SAME gateway on every node: each node routes its own tasks' egress) and a VXLAN device
 * `<prefix>x<net>` enslaved to it (VNI = `net.vni`, local = the node's underlay address,
 * learning off, ARP/ND proxy on). Endpoints are veth pairs on the bridge, like the bridge driver's.
 *
 * Remote endpoints are programmed from cluster state by {@link OverlayDriver.setPeers}, on the
 * VXLAN device: FDB `mac -> vtep` tells the tunnel where a MAC lives, a permanent neighbour
 * `ip -> mac` lets the device answer a sandbox's ARP request / neighbour solicitation itself
 * (proxy), so no ARP or broadcast ever crosses the underlay and no flood entry is needed. A
 * removed peer is unreachable at once: no neighbour answer, no FDB destination.
 */
import { KernelError, invalid, notFound } from '../errors.js';
import { canonicalIp } from '../ipam/cidr.js';
import { normalizeMac } from '../kernel/inet.js';
import type { Network } from '../model/types.js';
import { joinVeth, leaveVeth } from './endpoint.js';
import { bridgeName, checkPrefix, vxlanName } from './names.js';
import { syncNat } from './nat.js';
import { deleteNetworkLinks, enableForwarding, ensureGatewayBridge, networkMtu } from './network.js';
import { Serializer } from './serial.js';
import type { DriverContext, EndpointSpec, JoinOptions, NetworkDriver, Peer, PeerChanges, PeerProgrammer, SandboxRef } from './types.js';

/** Bytes VXLAN adds to a frame on an IPv4 underlay (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export const VXLAN_OVERHEAD = 50;
/** IANA's VXLAN port. */
export const VXLAN_PORT = 4789;

/** The overlay driver of one node namespace. See {@link NetworkDriver} and {@link PeerProgrammer}. */
export class OverlayDriver implements NetworkDriver, PeerProgrammer {
  readonly name = 'overlay' as const;
  private readonly peerSync = new Serializer();

  constructor(private readonly ctx: DriverContext) {
    checkPrefix(ctx.prefix);
    canonicalIp(ctx.underlay.address);
  }

  /**
   * Ensure bridge + VXLAN. A VXLAN whose settings changed (VNI, local address, port) is
   * recreated, which drops its peers: call setPeers after createNetwork.
   */
  async createNetwork(net: Network): Promise<void> {
    const vni = net.vni;
    if (vni === undefined || !Number.isInteger(vni) || vni < 1 || vni > 0xffffff) {
      throw invalid(`overlay network '${net.name}' needs a VNI between 1 and 16777215 (got ${String(vni)})`);
    }
    const mtu = await this.mtu(net);
    const br = await ensureGatewayBridge(this.ctx, net, mtu);
    const vx = vxlanName(this.ctx.prefix, net.id);
    const spec = {
      name: vx, vni, local: this.ctx.underlay.address, dstport: this.ctx.vxlanPort ?? VXLAN_PORT, learning: false, mtu,
      ...(this.ctx.underlay.device === undefined ? {} : { dev: this.ctx.underlay.device }),
    };
    try {
      await this.ctx.extras.ensureProxyVxlan(spec);
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === 'EBUSY')) throw e;
      await this.ctx.links.deleteLink(vx); // ours (by name) but stale: replace it
      await this.ctx.extras.ensureProxyVxlan(spec);
    }
    if ((await this.ctx.links.getLink(vx))?.mtu !== mtu) await this.ctx.links.setMtu(vx, mtu);
    await this.ctx.links.setMaster(vx, br);
    await this.ctx.links.setUp(vx);
    await enableForwarding(this.ctx, net);
    await syncNat(this.ctx, { bridge: bridgeName(this.ctx.prefix, net.id), internal: net.internal === true });
  }

  async deleteNetwork(net: Network): Promise<void> {
    await deleteNetworkLinks(this.ctx, [vxlanName(this.ctx.prefix, net.id), bridgeName(this.ctx.prefix, net.id)]);
    await syncNat(this.ctx);
  }

  async join(net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions): Promise<void> {
    await joinVeth(this.ctx, net, ep, sb, opts, bridgeName(this.ctx.prefix, net.id), await this.mtu(net));
  }

  async leave(net: Network, ep: EndpointSpec, _sb: SandboxRef): Promise<void> {
    await leaveVeth(this.ctx, net, ep);
  }

  setPeers(net: Network, peers: readonly Peer[]): Promise<PeerChanges> {
    return this.peerSync.run(net.id, () => this.applyPeers(net, peers));
  }

  /** `-o mtu=` or the underlay device's MTU minus the VXLAN overhead (1450 without a device). */
  private async mtu(net: Network): Promise<number> {
    let underlay = 1500;
    const dev = this.ctx.underlay.device;
    if (dev !== undefined) {
      const l = await this.ctx.links.getLink(dev);
      if (!l) throw notFound(`underlay device '${dev}' of this node`, 'check the agent\'s underlay device setting');
      underlay = l.mtu;
    }
    return networkMtu(net, underlay - VXLAN_OVERHEAD);
  }

  private async applyPeers(net: Network, peers: readonly Peer[]): Promise<PeerChanges> {
    const links = this.ctx.links;
    const vx = vxlanName(this.ctx.prefix, net.id);
    if (!(await links.getLink(vx))) throw notFound(`overlay network '${net.name}' on this node`, 'createNetwork must run before setPeers');
    const { fdb: wantFdb, neigh: wantNeigh } = desiredPeers(net, peers, canonicalIp(this.ctx.underlay.address));

    const haveFdb = new Map<string, { mac: string; dst: string }>();
    for (const f of await links.listFdb(vx)) {
      // Entries without a destination are the bridge's (master) view of the port, not ours.
      if (f.dst !== undefined) haveFdb.set(`${f.mac} ${f.dst}`, { mac: f.mac, dst: f.dst });
    }
    const haveNeigh = new Map((await links.listNeighbours(vx)).map((n) => [n.ip, n]));

    let added = 0;
    let removed = 0;
    // Adds first (FDB before the neighbour that makes the MAC reachable), then removes in reverse.
    for (const [key, f] of wantFdb) {
      if (haveFdb.has(key)) continue;
      await links.appendFdb(vx, f.mac, f.dst);
      added++;
    }
    for (const [ip, mac] of wantNeigh) {
      const have = haveNeigh.get(ip);
      if (have?.mac === mac && have.state.includes('permanent')) continue;
      await links.ensureNeighbour(vx, ip, mac);
      added++;
    }
    for (const ip of haveNeigh.keys()) {
      if (wantNeigh.has(ip)) continue;
      await links.deleteNeighbour(vx, ip);
      removed++;
    }
    for (const [key, f] of haveFdb) {
      if (wantFdb.has(key)) continue;
      await links.deleteFdb(vx, f.mac, f.dst);
      removed++;
    }
    return { added, removed };
  }
}

/** Validated, canonical desired entries; peers on `localVtep` are dropped (they are on the bridge). */
function desiredPeers(net: Network, peers: readonly Peer[], localVtep: string): {
  fdb: Map<string, { mac: string; dst: string }>; neigh: Map<string, string>;
} {
  const fdb = new Map<string, { mac: string; dst: string }>();
  const neigh = new Map<string, string>();
  for (const p of peers) {
    const ip = canonicalIp(p.ip);
    const dst = canonicalIp(p.vtep);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(p.mac)) throw invalid(`overlay network '${net.name}': peer ${ip} has an invalid MAC '${p.mac}'`);
    const mac = normalizeMac('overlay.setPeers', p.mac);
    if (dst === localVtep) continue;
    const prev = neigh.get(ip);
    if (prev !== undefined && prev !== mac) throw invalid(`overlay network '${net.name}': peer ${ip} is listed with two MACs (${prev}, ${mac})`);
    neigh.set(ip, mac);
    fdb.set(`${mac} ${dst}`, { mac, dst });
  }
  return { fdb, neigh };
}
