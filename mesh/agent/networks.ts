/**
 * The networks of one node: a network exists on a node while a task there uses it (Docker
 * creates networks on a node lazily too). For overlay networks, the node also programs where
 * every remote task endpoint is (VXLAN FDB + neighbour entries), from cluster state alone.
 *
 * Only the agent's sync calls this: `ensure` before tasks start, `prune` after they stopped.
 */
import { macFromIPv4 } from '../../src/drivers/mac.js';
import { isPeerProgrammer, type NetworkDriver, type Peer } from '../../src/drivers/types.js';
import type { Network, NetworkDriver as DriverName, Node, Task } from '../../src/model/types.js';
import { TERMINAL } from '../manager/plan.js';

/** Remote endpoints of `net` as peers: tasks of other nodes that are meant to run (or still drain) and have an address there (and, on the ingress network, other nodes' ingress sandboxes). */
export function peersOf(net: Network, tasks: Task[], nodes: ReadonlyMap<string, Node>, selfId: string): Peer[] {
  const peers: Peer[] = [];
  for (const t of tasks) {
    // A task that is meant to stop but still runs is draining: its established flows still
    // cross the overlay, so its endpoint stays programmed until it has really ended.
    if (t.nodeId === selfId || !t.nodeId || TERMINAL.has(t.status.state)) continue;
    if (t.desiredState !== 'running' && t.status.state !== 'running') continue;
    const node = nodes.get(t.nodeId);
    const addr = t.addresses[net.id];
    if (!node || node.state !== 'ready' || !addr) continue;
    const mac = macFromIPv4(addr.v4);
    peers.push({ ip: addr.v4, mac, vtep: node.address });
    if (addr.v6) peers.push({ ip: addr.v6, mac, vtep: node.address });
  }
  // The ingress network also carries every other node's ingress sandbox: replicas answer the
  // sandbox that balanced (and masqueraded) a flow to them.
  if (net.ingress) {
    for (const node of nodes.values()) {
      if (node.id === selfId || node.state !== 'ready' || node.ingress?.network !== net.id) continue;
      peers.push({ ip: node.ingress.v4, mac: macFromIPv4(node.ingress.v4), vtep: node.address });
    }
  }
  return peers;
}

export class NodeNetworks {
  /** Networks created on this node: id -> the network as created (a changed subnet or VNI is re-created). */
  private readonly created = new Map<string, Network>();
  /** Last peer set programmed per overlay network, to skip identical work. */
  private readonly programmed = new Map<string, string>();

  constructor(private readonly drivers: ReadonlyMap<DriverName, NetworkDriver>) {}

  private driver(net: Network): NetworkDriver {
    const d = this.drivers.get(net.driver);
    if (!d) throw new Error(`no '${net.driver}' driver on this node`);
    return d;
  }

  /** Ensures `wanted` exist here and their peers are current. */
  async ensure(wanted: Network[], tasks: Task[], nodes: ReadonlyMap<string, Node>, selfId: string): Promise<void> {
    for (const net of wanted) {
      const had = this.created.get(net.id);
      if (!had || JSON.stringify(had.ipam) !== JSON.stringify(net.ipam) || had.vni !== net.vni) {
        if (had) await this.driver(had).deleteNetwork(had);
        await this.driver(net).createNetwork(net);
        this.created.set(net.id, net);
        this.programmed.delete(net.id);
      }
      const d = this.driver(net);
      if (isPeerProgrammer(d)) {
        const peers = peersOf(net, tasks, nodes, selfId);
        const key = JSON.stringify(peers);
        if (this.programmed.get(net.id) !== key) {
          await d.setPeers(net, peers);
          this.programmed.set(net.id, key);
        }
      }
    }
  }

  /** Deletes networks created here that no local task uses any more. */
  async prune(wanted: ReadonlySet<string>): Promise<void> {
    for (const [id, net] of this.created) {
      if (wanted.has(id)) continue;
      await this.driver(net).deleteNetwork(net);
      this.created.delete(id);
      this.programmed.delete(id);
    }
  }

  /** Networks currently created on this node. */
  list(): Network[] { return [...this.created.values()]; }
}
