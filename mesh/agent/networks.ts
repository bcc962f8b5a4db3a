/**
 * The networks of one node: a network exists on a node while a task there uses it (Docker
 * creates networks on a node lazily too). For overlay networks, the node also programs where
 * every remote task endpoint is (VXLAN FDB + neighbour entries), from cluster state alone.
 *
 * Each network is its own object: one that cannot be created (a macvlan parent missing, a
 * kernel refusal) is reported in `failed` and retried with back-off, never blocking the others.
 * Peers are reprogrammed only for networks a peer-relevant change touched (`touch`), or on a
 * resync, which also re-reads the kernel: a deleted bridge or VXLAN, a flushed FDB or neighbour
 * table, the NAT table gone, forwarding turned off are put back and counted as repairs.
 *
 * Only the agent's sync calls this: `ensure` before tasks start, `prune` after they stopped,
 * `resync` periodically.
 */
import { macFromIPv4 } from '../../src/drivers/mac.js';
import { bridgeName, natTableName, vxlanName } from '../../src/drivers/names.js';
import { isPeerProgrammer, type DriverContext, type NetworkDriver, type Peer } from '../../src/drivers/types.js';
import { isNotFound, messageOf } from '../../src/errors.js';
import type { Network, NetworkDriver as DriverName, Node, Task } from '../../src/model/types.js';
import { TERMINAL } from '../manager/plan.js';
import { AgentCounters, Backoff } from './counters.js';

/** Whether `t` is a peer at all (meant to run, or still draining), whatever its address. */
const peerEligible = (t: Task): boolean => !TERMINAL.has(t.status.state) && (t.desiredState === 'running' || t.status.state === 'running');

/** What overlay peers depend on of a task: equal views need no reprogramming. */
export function peerView(t: Task | undefined): string {
  return t ? JSON.stringify([t.nodeId, peerEligible(t), t.addresses]) : '';
}

/** Remote endpoints of `net` as peers: tasks of other nodes that are meant to run (or still drain) and have an address there (and, on the ingress network, other nodes' ingress sandboxes). */
export function peersOf(net: Network, tasks: Iterable<Task>, nodes: ReadonlyMap<string, Node>, selfId: string): Peer[] {
  const peers: Peer[] = [];
  for (const t of tasks) {
    // A task that is meant to stop but still runs is draining: its established flows still
    // cross the overlay, so its endpoint stays programmed until it has really ended.
    if (t.nodeId === selfId || !t.nodeId || !peerEligible(t)) continue;
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

/** What `ensure` needs of cluster state. */
export interface NetworkView {
  tasksOnNetwork(networkId: string): Task[];
  nodeMap(): Map<string, Node>;
}

export class NodeNetworks {
  /** Networks created on this node: id -> the network as created (a changed subnet or VNI is re-created). */
  private readonly created = new Map<string, Network>();
  /** Last peer set programmed per overlay network, to skip identical work. */
  private readonly programmed = new Map<string, string>();
  /** Networks whose peers a change may have moved. */
  private readonly touched = new Set<string>();
  private readonly backoff: Backoff;
  /** Networks that failed to be created, with the reason (tasks on them report it). */
  readonly failed = new Map<string, string>();

  constructor(
    private readonly drivers: ReadonlyMap<DriverName, NetworkDriver>,
    private readonly ctx?: DriverContext,
    private readonly counters: AgentCounters = new AgentCounters(),
    now: () => number = Date.now,
    private readonly log?: (msg: string) => void,
  ) {
    this.backoff = new Backoff(now);
  }

  private driver(net: Network): NetworkDriver {
    const d = this.drivers.get(net.driver);
    if (!d) throw new Error(`no '${net.driver}' driver on this node`);
    return d;
  }

  /** A change may have moved the peers of `networkId` (or of every network: no argument). */
  touch(networkId?: string): void {
    if (networkId === undefined) for (const id of this.created.keys()) this.touched.add(id);
    else this.touched.add(networkId);
  }

  /**
   * Ensures `wanted` exist here and their peers are current. A network that fails is recorded
   * in {@link failed} (and retried after its back-off); the others go on.
   */
  async ensure(wanted: Network[], view: NetworkView, selfId: string): Promise<void> {
    let nodes: Map<string, Node> | undefined;
    for (const net of wanted) {
      try {
        const had = this.created.get(net.id);
        if (!had || JSON.stringify(had.ipam) !== JSON.stringify(net.ipam) || had.vni !== net.vni || JSON.stringify(had.options) !== JSON.stringify(net.options)) {
          if (!this.backoff.ready(net.id)) continue;
          if (had) await this.driver(had).deleteNetwork(had);
          this.created.delete(net.id);
          await this.driver(net).createNetwork(net);
          this.created.set(net.id, net);
          this.programmed.delete(net.id);
        }
        const d = this.driver(net);
        if (isPeerProgrammer(d) && (this.touched.has(net.id) || !this.programmed.has(net.id))) {
          nodes ??= view.nodeMap();
          const peers = peersOf(net, view.tasksOnNetwork(net.id), nodes, selfId);
          const key = JSON.stringify(peers);
          if (this.programmed.get(net.id) !== key) {
            await d.setPeers(net, peers);
            this.programmed.set(net.id, key);
          }
        }
        this.touched.delete(net.id);
        this.backoff.succeed(net.id);
        this.failed.delete(net.id);
      } catch (e) {
        this.counters.failed('networks');
        this.backoff.fail(net.id, messageOf(e));
        this.failed.set(net.id, `network '${net.name}' could not be set up on this node: ${messageOf(e)}`);
      }
    }
  }

  /**
   * Drift repair: re-reads each created network's links, the drivers' NAT table, forwarding and
   * (overlay) every FDB/neighbour entry, and puts back what is missing. Resolves with the repairs.
   */
  async resync(view: NetworkView, selfId: string): Promise<number> {
    let repaired = 0;
    const nodes = view.nodeMap();
    let natChecked = false;
    for (const net of [...this.created.values()]) {
      try {
        const drift = await this.drift(net, natChecked);
        natChecked = true;
        if (drift.length) {
          this.log?.(`network ${net.name}: drifted (${drift.join(', ')}); repairing`);
          await this.driver(net).createNetwork(net);
          this.counters.repaired('network', drift.length);
          repaired += drift.length;
        }
        const d = this.driver(net);
        if (isPeerProgrammer(d)) {
          const peers = peersOf(net, view.tasksOnNetwork(net.id), nodes, selfId);
          const changes = await d.setPeers(net, peers);
          this.programmed.set(net.id, JSON.stringify(peers));
          const n = changes.added + changes.removed;
          this.counters.repaired('overlay-peers', n);
          repaired += n;
        }
      } catch (e) {
        this.counters.failed('networks');
        this.failed.set(net.id, `network '${net.name}' could not be repaired on this node: ${messageOf(e)}`);
      }
    }
    return repaired;
  }

  /** What is wrong with `net` in the node namespace (empty: nothing). */
  private async drift(net: Network, natChecked: boolean): Promise<string[]> {
    const ctx = this.ctx;
    if (!ctx || net.driver === 'macvlan') return [];
    const out: string[] = [];
    const br = await ctx.links.getLink(bridgeName(ctx.prefix, net.id));
    if (!br || !br.up) out.push('bridge');
    if (net.driver === 'overlay') {
      const vx = await ctx.links.getLink(vxlanName(ctx.prefix, net.id));
      if (!vx || !vx.up || vx.master !== bridgeName(ctx.prefix, net.id)) out.push('vxlan');
    }
    if (!natChecked) {
      try {
        await ctx.nft.list(natTableName(ctx.prefix), 'inet');
      } catch (e) {
        if (!isNotFound(e)) throw e;
        out.push('nat-table');
      }
      if ((await ctx.sysctl.get('net.ipv4.ip_forward')) !== '1') out.push('ip_forward');
    }
    return out;
  }

  /** Deletes networks created here that no local task uses any more. */
  async prune(wanted: ReadonlySet<string>): Promise<void> {
    for (const [id, net] of this.created) {
      if (wanted.has(id)) continue;
      try {
        await this.driver(net).deleteNetwork(net);
        this.created.delete(id);
        this.programmed.delete(id);
        this.touched.delete(id);
      } catch (e) {
        this.counters.failed('networks');
        this.failed.set(id, `network '${net.name}' could not be removed from this node: ${messageOf(e)}`);
      }
    }
    for (const id of this.failed.keys()) if (!wanted.has(id) && !this.created.has(id)) { this.failed.delete(id); this.backoff.forget(id); }
  }

  /** Networks currently created on this node. */
  list(): Network[] { return [...this.created.values()]; }

  /** Milliseconds until a failed network may be tried again (undefined: none waits). */
  retryInMs(): number | undefined { return this.backoff.nextInMs(); }
}
