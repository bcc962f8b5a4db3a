/**
 * The `macvlan` driver: endpoints join an existing LAN directly. Each endpoint is a macvlan
 * sub-interface (mode bridge, so endpoints on one parent also reach each other) of the
 * network's `parent` interface, which must exist in the node namespace (`-o parent=eth0`).
 * It is created in the node namespace, given its MAC there, then moved into the sandbox and
 * renamed. No bridge, no NAT, no sysctl: the gateway (`ipam.v4.gateway`) is the LAN's router.
 * The parent must be up for traffic to flow; the driver does not change the parent.
 */
import { invalid, notFound } from '../errors.js';
import type { LinkInfo } from '../kernel/index.js';
import type { Network } from '../model/types.js';
import { checkOwnInterface, configureInside, withSandbox } from './endpoint.js';
import { macFromIPv4 } from './mac.js';
import { checkPrefix, macvlanTempName } from './names.js';
import { endpointCidrs, gatewayCidrs, networkMtu } from './network.js';
import type { DriverContext, EndpointSpec, JoinOptions, NetworkDriver, SandboxRef } from './types.js';

/** The macvlan driver of one node namespace. See {@link NetworkDriver} for the verbs' contract. */
export class MacvlanDriver implements NetworkDriver {
  readonly name = 'macvlan' as const;

  constructor(private readonly ctx: DriverContext) {
    checkPrefix(ctx.prefix);
  }

  /** Checks the parent interface exists; there is nothing to create at network level. */
  async createNetwork(net: Network): Promise<void> {
    gatewayCidrs(net);
    await this.parent(net);
  }

  /** Nothing at network level; endpoints go with leave (or with their sandbox). */
  async deleteNetwork(_net: Network): Promise<void> {}

  async join(net: Network, ep: EndpointSpec, sb: SandboxRef, opts: JoinOptions): Promise<void> {
    endpointCidrs(net, ep);
    const parent = await this.parent(net);
    // Without -o mtu the macvlan inherits the parent's MTU, which is also its upper bound.
    const mtu = net.options['mtu'] ? networkMtu(net, parent.mtu) : undefined;
    const mac = macFromIPv4(ep.v4);
    const tmp = macvlanTempName(this.ctx.prefix, net.id, ep.id);
    await withSandbox(sb, async (sbx) => {
      const inside = await sbx.getLink(sb.ifname);
      checkOwnInterface(inside, 'macvlan', mac, net, ep, sb);
      if (!inside) {
        await this.ctx.links.ensureMacvlan({ name: tmp, parent: parent.name, mode: 'bridge', ...(mtu === undefined ? {} : { mtu }) });
        await this.ctx.extras.setMac(tmp, mac);
        await this.ctx.links.moveToNetns(tmp, sb.netns, sb.ifname);
      }
      await configureInside(sbx, net, ep, sb, opts, mtu);
    });
  }

  /** Deletes the endpoint's macvlan in the sandbox (only if it is ours: kind and MAC) and any unmoved leftover. */
  async leave(net: Network, ep: EndpointSpec, sb: SandboxRef): Promise<void> {
    const mac = macFromIPv4(ep.v4);
    await withSandbox(sb, async (sbx) => {
      const inside = await sbx.getLink(sb.ifname);
      if (inside?.kind === 'macvlan' && inside.mac === mac) await sbx.deleteLink(sb.ifname);
    }, true);
    await this.ctx.links.deleteLink(macvlanTempName(this.ctx.prefix, net.id, ep.id));
  }

  private async parent(net: Network): Promise<LinkInfo> {
    const name = net.options['parent'];
    if (!name) throw invalid(`macvlan network '${net.name}' needs a parent interface: create it with -o parent=<interface>`);
    const l = await this.ctx.links.getLink(name);
    if (!l) {
      throw notFound(`parent interface '${name}' of macvlan network '${net.name}'`, 'it must exist on this node: check `ip link`, or recreate the network with another -o parent=');
    }
    return l;
  }
}
