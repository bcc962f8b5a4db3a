/**
 * The `bridge` driver: a single-host network. Per network, in the node namespace: a Linux
 * bridge `<prefix>b<net>` holding the gateway address(es); endpoints are veth pairs whose host
 * side is enslaved to it. Egress is masqueraded and Shoal bridges are isolated from each other
 * (nat.ts); `net.ipv4.ip_forward` is turned on.
 */
import type { Network } from '../model/types.js';
import { joinVeth, leaveVeth } from './endpoint.js';
import { bridgeName, checkPrefix } from './names.js';
import { syncNat } from './nat.js';
import { deleteNetworkLinks, enableForwarding, ensureGatewayBridge, networkMtu } from './network.js';
import type { DriverContext, EndpointSpec, JoinOptions, NetworkDriver, SandboxRef } from './types.js';

/** Default MTU of bridge networks (`-o mtu=` overrides it). */
export const BRIDGE_DEFAULT_MTU = 1500;

/** The bridge driver of one node namespace. See {@link NetworkDriver} for the verbs' contract. */
export class BridgeDriver implements NetworkDriver {
  readonly name = 'bridge' as const;

  constructor(private readonly ctx: DriverContext) {
    checkPrefix(ctx.prefix);
  }

  async createNetwork(net: Network): Promise<void> {
    await ensureGatewayBridge(this.ctx, net, networkMtu(net, BRIDGE_DEFAULT_MTU));
    await enableForwarding(this.ctx, net);
    await syncNat(this.ctx, { bridge: bridgeName(this.ctx.prefix, net.id), internal: net.internal === true });
  }

  async deleteNetwork(net: Network): Promise<void> {
    await deleteNetworkLinks(this.ctx, [bridgeName(this.ctx.prefix, net.id)]);
    await syncNat(this.ctx);
  }

  async join(net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions): Promise<void> {
    await joinVeth(this.ctx, net, ep, sb, opts, bridgeName(this.ctx.prefix, net.id), networkMtu(net, BRIDGE_DEFAULT_MTU));
  }

  async leave(net: Network, ep: EndpointSpec, _sb: SandboxRef): Promise<void> {
    await leaveVeth(this.ctx, net, ep);
  }
}
