/**
 * {@link LinkOps} over rtnetlink with npm `netlink`: no spawned `ip`/`bridge` at all.
 *
 * Thread/netns ownership: an instance owns ONE netlink socket, opened by the constructor; a
 * netlink socket is bound to the netns of the thread that opened it, so the instance acts on
 * the netns of the thread that constructed it, forever. Use it from that thread only.
 *
 * The library sends synchronously on the calling thread and the kernel does the work inside
 * that send, so a slow operation (a link delete waits for RCU grace periods under RTNL) blocks
 * the event loop; `deleteLinks` therefore hops to a helper worker when called on the main thread.
 */
import { randomInt } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { createRtNetlink, FlagsNew, type RtNetlinkSocket, type rt, type ifla } from 'netlink';
import { isNotFound, KernelError } from '../errors.js';
import { DEFAULT_NETLINK_TIMEOUT_MS, kernelOp, toKernelError } from './errno.js';
import { AF_BRIDGE, AF_INET, AF_INET6, bytesToIp, bytesToMac, ipToBytes, macToBytes, parseCidr } from './inet.js';
import type {
  FdbEntry, LinkInfo, LinkOps, MacvlanSpec, NeighbourEntry, NetnsRef, RouteSpec, VethSpec, VxlanSpec,
} from './netlink.js';
import { netnsPath } from './paths.js';
import { linkInfo, macvlanData, stateNames, toLinkInfo, u32, vethPeer, vxlanData } from './rtnl-codec.js';

const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
// FDB append must not be exclusive: one MAC may have many VTEP destinations.
const CREATE_APPEND = FlagsNew.CREATE | FlagsNew.APPEND;
const RT_TABLE_MAIN = 254;

/** Something that can run `deleteLinks` off the main thread (a NetnsWorker's `links`). */
interface Offload {
  deleteLinks(names: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** Real {@link LinkOps}; see the module doc for its thread/netns ownership. */
export class NetlinkLinkOps implements LinkOps {
  private readonly sock: RtNetlinkSocket;
  private offload: Promise<Offload> | undefined;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly timeout: { timeout: number };

  /**
   * Opens the netlink socket in the calling thread's netns (or adopts `opts.socket`, which tests
   * inject). A request not answered within `requestTimeoutMs` (default
   * {@link DEFAULT_NETLINK_TIMEOUT_MS}) rejects with KernelError(op, 'ETIMEDOUT').
   */
  constructor(opts: { requestTimeoutMs?: number; socket?: RtNetlinkSocket } = {}) {
    this.sock = opts.socket ?? createRtNetlink();
    this.timeout = { timeout: opts.requestTimeoutMs ?? DEFAULT_NETLINK_TIMEOUT_MS };
  }

  async ensureBridge(name: string, opts: { mtu?: number } = {}): Promise<void> {
    const attrs: ifla.LinkAttrs = { ifname: name, linkinfo: linkInfo('bridge') };
    if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
    await this.newLink('link.ensureBridge', name, 'bridge', attrs);
  }

  async ensureVeth(spec: VethSpec): Promise<void> {
    const op = 'link.ensureVeth';
    const peer: ifla.LinkAttrs = { ifname: spec.peer };
    if (spec.mtu !== undefined) peer.mtu = spec.mtu;
    const ns = spec.peerNetns === undefined ? undefined : openNetns(op, spec.peerNetns);
    try {
      if (ns) peer.netNsFd = ns.fd;
      const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo: linkInfo('veth', vethPeer(peer)) };
      if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
      await this.newLink(op, spec.name, 'veth', attrs);
    } finally {
      ns?.close();
    }
  }

  async ensureVxlan(spec: VxlanSpec): Promise<void> {
    const op = 'link.ensureVxlan';
    const local = spec.local === undefined ? undefined : ipToBytes(op, spec.local).bytes;
    const devIndex = spec.dev === undefined ? undefined : await this.index(op, spec.dev);
    const data = vxlanData({ vni: spec.vni, local, dstport: spec.dstport ?? 4789, learning: spec.learning ?? false, devIndex });
    const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo: linkInfo('vxlan', data) };
    if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
    await this.newLink(op, spec.name, 'vxlan', attrs, (l) =>
      l.vxlan?.vni === spec.vni ? undefined : `has VNI ${l.vxlan?.vni}, not ${spec.vni}`);
  }

  async ensureMacvlan(spec: MacvlanSpec): Promise<void> {
    const op = 'link.ensureMacvlan';
    const parent = await this.index(op, spec.parent);
    const attrs: ifla.LinkAttrs = { ifname: spec.name, link: u32(parent), linkinfo: linkInfo('macvlan', macvlanData(spec.mode ?? 'bridge')) };
    if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
    await this.newLink(op, spec.name, 'macvlan', attrs);
  }

  async setUp(name: string, up = true): Promise<void> {
    const op = 'link.setUp';
    const index = await this.index(op, name);
    await this.req(op, (s, t) => s.setLink({ index, flags: up ? { up: true } : {}, change: { up: true } }, {}, t), name);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    const op = 'link.setMtu';
    const index = await this.index(op, name);
    await this.req(op, (s, t) => s.setLink({ index }, { mtu }, t), name);
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const op = 'link.setMaster';
    const index = await this.index(op, name);
    const m = master === null ? 0 : await this.index(op, master);
    await this.req(op, (s, t) => s.setLink({ index }, { master: m }, t), name);
  }

  async moveToNetns(name: string, netns: NetnsRef, newName?: string): Promise<void> {
    const op = 'link.moveToNetns';
    const index = await this.index(op, name);
    const ns = openNetns(op, netns);
    try {
      const attrs: ifla.LinkAttrs = { netNsFd: ns.fd };
      if (newName !== undefined) attrs.ifname = newName;
      await this.req(op, (s, t) => s.setLink({ index }, attrs, t), name);
    } finally {
      ns.close();
    }
  }

  async deleteLink(name: string): Promise<void> {
    await absentIsFine(this.req('link.deleteLink', (s, t) => s.delLink({}, { ifname: name }, t), name));
  }

  async deleteLinks(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    if (isMainThread) return (await this.helper()).deleteLinks(names);
    const [only] = names;
    if (names.length === 1 && only !== undefined) return this.deleteLink(only);
    try {
      await this.groupDelete(names);
    } catch {
      // Whatever stopped the batch (a link that cannot be deleted, a group collision), the
      // one-by-one path deletes what can be and reports the first real failure.
      for (const name of names) await this.deleteLink(name);
    }
  }

  /**
   * Each link delete waits for RCU grace periods under RTNL (~16 ms for a veth): 100 deletes
   * take 1.6 s. RTM_DELLINK by IFLA_GROUP unregisters a whole group in one batch with one
   * wait (~40 ms for 100 veths). So: tag our links with an unused random group, check that
   * the group holds exactly them, delete the group.
   */
  private async groupDelete(names: readonly string[]): Promise<void> {
    const op = 'link.deleteLinks';
    const want = new Set(names);
    const all = await this.req(op, (s, t) => s.getLinks(undefined, undefined, t));
    const targets = all.filter((m) => want.has(m.attrs.ifname ?? '') && m.data.index !== undefined);
    if (targets.length === 0) return;
    const used = new Set(all.map((m) => m.attrs.group ?? 0));
    let group = 0;
    while (group === 0 || used.has(group)) group = randomInt(1, 0x7fffffff);
    for (const m of targets) await absentIsFine(this.req(op, (s, t) => s.setLink({ index: m.data.index }, { group }, t)));
    const tagged = (await this.req(op, (s, t) => s.getLinks(undefined, undefined, t))).filter((m) => m.attrs.group === group);
    if (tagged.length === 0) return;
    if (tagged.some((m) => !want.has(m.attrs.ifname ?? ''))) {
      throw new KernelError(op, 'EBUSY', `link group ${group} also holds links we were not asked to delete`);
    }
    await this.req(op, (s, t) => s.delLink({}, { group }, t), `${tagged.length} links`);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    let msgs: rt.LinkMessage[];
    try {
      msgs = await this.req('link.getLink', (s, t) => s.getLink({}, { ifname: name }, t), name);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const m = msgs[0];
    if (!m) return undefined;
    const names = new Map<number, string>();
    if (m.attrs.master) {
      const [master] = await this.req('link.getLink', (s, t) => s.getLink({ index: m.attrs.master }, undefined, t), name);
      if (master?.attrs.ifname) names.set(m.attrs.master, master.attrs.ifname);
    }
    return toLinkInfo(m, names);
  }

  async listLinks(prefix = ''): Promise<LinkInfo[]> {
    const all = await this.req('link.listLinks', (s, t) => s.getLinks(undefined, undefined, t));
    const names = new Map(all.map((m) => [m.data.index ?? 0, m.attrs.ifname ?? ''] as const));
    return all
      .filter((m) => (m.attrs.ifname ?? '').startsWith(prefix))
      .map((m) => toLinkInfo(m, names))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async ensureAddress(dev: string, cidr: string): Promise<void> {
    const op = 'link.ensureAddress';
    const { data, attrs } = await this.addressMessage(op, dev, cidr);
    try {
      await this.req(op, (s, t) => s.newAddress(data, attrs, { ...t, flags: CREATE_EXCL }), `${cidr} on ${dev}`);
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === 'EEXIST')) throw e;
    }
  }

  async deleteAddress(dev: string, cidr: string): Promise<void> {
    const op = 'link.deleteAddress';
    const msg = await absentIsFine(this.addressMessage(op, dev, cidr));
    if (!msg) return;
    await absentIsFine(this.req(op, (s, t) => s.delAddress(msg.data, msg.attrs, t), `${cidr} on ${dev}`));
  }

  async listAddresses(dev: string): Promise<string[]> {
    const op = 'link.listAddresses';
    const index = await this.index(op, dev);
    const all = await this.req(op, (s, t) => s.getAddresses(undefined, undefined, t));
    return all
      .filter((a) => a.data.index === index)
      .flatMap((a) => {
        const b = a.attrs.local ?? a.attrs.address;
        return b ? [`${bytesToIp(b)}/${a.data.prefixlen ?? 0}`] : [];
      });
  }

  async ensureRoute(spec: RouteSpec): Promise<void> {
    const op = 'link.ensureRoute';
    const { data, attrs } = await this.routeMessage(op, spec);
    await this.req(op, (s, t) => s.newRoute(data, attrs, { ...t, flags: CREATE_REPLACE }), describeRoute(spec));
  }

  async deleteRoute(spec: RouteSpec): Promise<void> {
    const op = 'link.deleteRoute';
    const msg = await absentIsFine(this.routeMessage(op, spec));
    if (!msg) return;
    await absentIsFine(this.req(op, (s, t) => s.delRoute(msg.data, msg.attrs, t), describeRoute(spec)));
  }

  async ensureNeighbour(dev: string, ip: string, mac: string): Promise<void> {
    const op = 'link.ensureNeighbour';
    const dst = ipToBytes(op, ip);
    const lladdr = macToBytes(op, mac);
    const ifindex = await this.index(op, dev);
    await this.req(op, (s, t) => s.newNeighbor(
      { family: dst.family, ifindex, state: { permanent: true } }, { dst: dst.bytes, lladdr }, { ...t, flags: CREATE_REPLACE },
    ), `${ip} on ${dev}`);
  }

  async deleteNeighbour(dev: string, ip: string): Promise<void> {
    const op = 'link.deleteNeighbour';
    const dst = ipToBytes(op, ip);
    const ifindex = await absentIsFine(this.index(op, dev));
    if (ifindex === undefined) return;
    await absentIsFine(this.req(op, (s, t) => s.delNeighbor({ family: dst.family, ifindex }, { dst: dst.bytes }, t), `${ip} on ${dev}`));
  }

  async listNeighbours(dev: string): Promise<NeighbourEntry[]> {
    const op = 'link.listNeighbours';
    const ifindex = await this.index(op, dev);
    // An AF_UNSPEC dump also returns AF_BRIDGE (FDB) entries: keep IPv4/IPv6 ones only. NOARP
    // entries (multicast groups the kernel maps by itself) are not ours to reconcile.
    const all = await this.req(op, (s, t) => s.getNeighbors({ family: 0 }, undefined, t));
    return all
      .filter((n) => n.data.ifindex === ifindex && (n.data.family === AF_INET || n.data.family === AF_INET6) && n.attrs.dst)
      .filter((n) => n.data.state?.noarp !== true)
      .map((n) => ({
        ip: bytesToIp(n.attrs.dst ?? Buffer.alloc(0)),
        mac: n.attrs.lladdr && n.attrs.lladdr.length === 6 ? bytesToMac(n.attrs.lladdr) : undefined,
        state: stateNames(n.data.state),
      }));
  }

  async appendFdb(dev: string, mac: string, dst: string): Promise<void> {
    const op = 'link.appendFdb';
    const lladdr = macToBytes(op, mac);
    const remote = ipToBytes(op, dst);
    const ifindex = await this.index(op, dev);
    await this.req(op, (s, t) => s.newNeighbor(
      { family: AF_BRIDGE, ifindex, state: { permanent: true }, flags: { self: true } },
      { lladdr, dst: remote.bytes },
      { ...t, flags: CREATE_APPEND },
    ), `${mac} dst ${dst} on ${dev}`);
  }

  async deleteFdb(dev: string, mac: string, dst?: string): Promise<void> {
    const op = 'link.deleteFdb';
    const attrs: rt.NeighborAttrs = { lladdr: macToBytes(op, mac) };
    if (dst !== undefined) attrs.dst = ipToBytes(op, dst).bytes;
    const ifindex = await absentIsFine(this.index(op, dev));
    if (ifindex === undefined) return;
    await absentIsFine(this.req(op, (s, t) => s.delNeighbor({ family: AF_BRIDGE, ifindex, flags: { self: true } }, attrs, t), `${mac} on ${dev}`));
  }

  async listFdb(dev: string): Promise<FdbEntry[]> {
    const op = 'link.listFdb';
    const ifindex = await this.index(op, dev);
    const all = await this.req(op, (s, t) => s.getNeighbors({ family: AF_BRIDGE }, undefined, t));
    return all
      .filter((n) => n.data.ifindex === ifindex && n.attrs.lladdr)
      .map((n) => ({
        mac: bytesToMac(n.attrs.lladdr ?? Buffer.alloc(6)),
        dst: n.attrs.dst ? bytesToIp(n.attrs.dst) : undefined,
        permanent: n.data.state?.permanent === true,
      }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Requests already queued still run (they were accepted before close); new ones get EBADF.
    await this.queue;
    this.sock.socket.close();
    const helper = this.offload;
    this.offload = undefined;
    if (helper) await (await helper).close();
  }

  // --- internals ---

  /**
   * One request at a time on the socket: npm `netlink` keeps a single multipart buffer per
   * socket, so two concurrent dumps corrupt each other ("Multipart message not terminated
   * properly"); the kernel serializes rtnetlink under RTNL anyway.
   */
  private req<T>(op: string, fn: (s: RtNetlinkSocket, t: { timeout: number }) => Promise<T>, detail?: string): Promise<T> {
    if (this.closed) return Promise.reject(new KernelError(op, 'EBADF', 'LinkOps is closed'));
    // Every request carries the timeout: the queue is shared, so one lost reply would
    // otherwise stall all link work of this instance forever.
    const run = this.queue.then(() => kernelOp(op, () => fn(this.sock, this.timeout), detail));
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  /** ifindex of `name` in this netns; ENODEV (NotFound) when absent. */
  private async index(op: string, name: string): Promise<number> {
    const [m] = await this.req(op, (s, t) => s.getLink({}, { ifname: name }, t), name);
    if (m?.data.index === undefined) throw new KernelError(op, 'ENODEV', `${name}: no such device`);
    return m.data.index;
  }

  /**
   * RTM_NEWLINK with CREATE|EXCL. EEXIST is a success only when `name` now exists here with
   * the expected kind (and `mismatch` finds nothing wrong); a veth whose PEER name is taken
   * also answers EEXIST, and must not pass for a success.
   */
  private async newLink(op: string, name: string, kind: string, attrs: ifla.LinkAttrs, mismatch?: (l: LinkInfo) => string | undefined): Promise<void> {
    try {
      await this.req(op, (s, t) => s.newLink({}, attrs, { ...t, flags: CREATE_EXCL }), name);
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === 'EEXIST')) throw e;
      const have = await this.getLink(name);
      if (!have) throw new KernelError(op, 'EEXIST', `${name}: a peer/related name already exists`, { cause: e });
      if (have.kind !== kind) throw new KernelError(op, 'EBUSY', `${name} exists but is a ${have.kind ?? 'device'}, not a ${kind}`);
      const why = mismatch?.(have);
      if (why) throw new KernelError(op, 'EBUSY', `${name} exists but ${why}`);
    }
  }

  private async addressMessage(op: string, dev: string, cidr: string): Promise<{ data: rt.Address; attrs: rt.AddressAttrs }> {
    const c = parseCidr(op, cidr);
    const index = await this.index(op, dev);
    // NODAD for IPv6 as libnetwork does: sandbox addresses are allocated by IPAM, and DAD would
    // hold the address "tentative" (unusable) for ~1 s after every join.
    const data: rt.Address = { family: c.family, prefixlen: c.prefixLen, index };
    if (c.family === AF_INET6) data.flags = { nodad: true };
    return { data, attrs: { local: c.bytes, address: c.bytes } };
  }

  private async routeMessage(op: string, spec: RouteSpec): Promise<{ data: rt.Route; attrs: rt.RouteAttrs }> {
    const gw = ipToBytes(op, spec.via);
    const dst = spec.dst === undefined || spec.dst === 'default' ? undefined : parseCidr(op, spec.dst);
    if (dst && dst.family !== gw.family) throw new KernelError(op, 'EINVAL', `${describeRoute(spec)}: mixed address families`);
    const data: rt.Route = {
      family: gw.family, dstLen: dst?.prefixLen ?? 0, table: RT_TABLE_MAIN, protocol: 'BOOT', scope: 'UNIVERSE', type: 'UNICAST',
    };
    const attrs: rt.RouteAttrs = { gateway: gw.bytes };
    if (dst && dst.prefixLen > 0) attrs.dst = dst.bytes;
    if (spec.dev !== undefined) attrs.oif = await this.index(op, spec.dev);
    return { data, attrs };
  }

  private helper(): Promise<Offload> {
    // Dynamic import: netns.ts (the worker host) imports this module for the worker side.
    this.offload ??= import('./netns.js').then(async ({ NetnsWorker }) => {
      const w = await NetnsWorker.start({ unrefWhenIdle: true });
      return { deleteLinks: (names) => w.links.deleteLinks(names), close: () => w.close() };
    });
    return this.offload;
  }
}

function describeRoute(r: RouteSpec): string {
  return `route ${r.dst ?? 'default'} via ${r.via}${r.dev ? ` dev ${r.dev}` : ''}`;
}

/** Resolves to undefined when `p` fails with "not found" (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL). */
async function absentIsFine<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** An fd on a netns for IFLA_NET_NS_FD; `close` only closes what we opened. */
function openNetns(op: string, ref: NetnsRef): { fd: number; close(): void } {
  if (typeof ref !== 'string') return { fd: ref.fd, close: () => undefined };
  const path = netnsPath(ref);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw toKernelError(op, e, `netns ${ref}`);
  }
  return { fd, close: () => closeSync(fd) };
}
