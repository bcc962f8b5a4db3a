/**
 * An in-memory kernel for unit tests of drivers: {@link FakeKernel} holds namespaces, and
 * {@link FakeLinkOps} is the {@link LinkOps} of one of them.
 *
 * It mirrors what drivers rely on from the real thing, checked by test/unit/kernel-fakes.test.ts
 * against the same cases the integration tests run on the kernel:
 * - idempotency (ensure twice, delete absent) and the same errnos (ENODEV, EEXIST, EBUSY,
 *   ENOENT for a missing netns, EOPNOTSUPP for enslaving to a non-bridge);
 * - kernel side effects: deleting a veth deletes its peer; deleting a device deletes the
 *   macvlans/vxlans stacked on it and releases a bridge's ports; moving a link to another
 *   netns takes it down and drops its addresses and master.
 * It does not model packets, gateway reachability or counters (stats stay 0).
 */
import { KernelError } from '../errors.js';
import { ipToBytes, normalizeMac, parseCidr } from './inet.js';
import type {
  FdbEntry, LinkInfo, LinkOps, MacvlanSpec, NeighbourEntry, NetnsRef, RouteSpec, VethSpec, VxlanSpec,
} from './netlink.js';
import { NETNS_DIR } from './paths.js';

interface FakeLink {
  name: string;
  index: number;
  kind: string;
  mtu: number;
  up: boolean;
  mac: string;
  master?: string;
  /** veth peer as `{ns, name}` (followed on delete). */
  peer?: { ns: string; name: string };
  /** Lower device (macvlan parent, vxlan dev) in the same netns. */
  lower?: string;
  vxlan?: { vni: number; local?: string; dstport: number; learning: boolean };
  addrs: string[];
  neigh: Map<string, string>;
  fdb: Array<{ mac: string; dst: string }>;
}

interface FakeNs {
  links: Map<string, FakeLink>;
  routes: Map<string, RouteSpec>;
}

/** Plain-data snapshot of one namespace, stable for `toEqual` / golden files. */
export interface FakeNsDump {
  links: Array<{
    name: string; kind: string; up: boolean; mtu: number; master?: string; peer?: string; lower?: string;
    vxlan?: { vni: number; local?: string; dstport: number; learning: boolean };
    addrs: string[]; neigh: string[]; fdb: string[];
  }>;
  routes: string[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A fake kernel: network namespaces by name; `'host'` always exists. */
export class FakeKernel {
  private readonly nss = new Map<string, FakeNs>([['host', emptyNs()]]);
  private nextIndex = 1;

  /** Create a namespace (idempotent). */
  addNetns(name: string): void {
    if (!this.nss.has(name)) this.nss.set(name, emptyNs());
  }

  /** Delete a namespace and its links (a veth peer outside goes too, as in the kernel). */
  deleteNetns(name: string): void {
    const ns = this.nss.get(name);
    if (!ns || name === 'host') return;
    for (const l of [...ns.links.values()]) this.removeLink(name, l.name);
    this.nss.delete(name);
  }

  /** Namespace names, sorted. */
  listNetns(): string[] {
    return [...this.nss.keys()].sort(byName);
  }

  /** A LinkOps acting on namespace `ns` (created if needed). */
  ops(ns = 'host'): FakeLinkOps {
    this.addNetns(ns);
    return new FakeLinkOps(this, ns);
  }

  /** Snapshot of every namespace. */
  dump(): Record<string, FakeNsDump> {
    return Object.fromEntries(this.listNetns().map((n) => [n, this.dumpNs(n)]));
  }

  /** @internal */ ns(op: string, name: string): FakeNs {
    const ns = this.nss.get(name);
    if (!ns) throw new KernelError(op, 'ENOENT', `netns ${name}: no such namespace`);
    return ns;
  }

  /** @internal */ allocIndex(): number {
    return this.nextIndex++;
  }

  /** @internal Remove a link with its kernel side effects. */
  removeLink(nsName: string, name: string): void {
    const ns = this.nss.get(nsName);
    const l = ns?.links.get(name);
    if (!ns || !l) return;
    ns.links.delete(name);
    for (const other of [...ns.links.values()]) {
      if (other.master === name) delete other.master;
      if (other.lower === name) this.removeLink(nsName, other.name);
    }
    for (const [k, r] of ns.routes) if (r.dev === name) ns.routes.delete(k);
    if (l.peer) this.removeLink(l.peer.ns, l.peer.name);
  }

  /** @internal */ dumpNs(name: string): FakeNsDump {
    const ns = this.ns('dump', name);
    const links = [...ns.links.values()].sort((a, b) => byName(a.name, b.name)).map((l) => ({
      name: l.name, kind: l.kind, up: l.up, mtu: l.mtu,
      ...(l.master ? { master: l.master } : {}),
      ...(l.peer ? { peer: `${l.peer.ns}/${l.peer.name}` } : {}),
      ...(l.lower ? { lower: l.lower } : {}),
      ...(l.vxlan ? { vxlan: { ...l.vxlan } } : {}),
      addrs: [...l.addrs].sort(byName),
      neigh: [...l.neigh].map(([ip, mac]) => `${ip} ${mac}`).sort(byName),
      fdb: l.fdb.map((f) => `${f.mac} ${f.dst}`).sort(byName),
    }));
    return { links, routes: [...ns.routes.keys()].sort(byName) };
  }
}

function emptyNs(): FakeNs {
  return { links: new Map(), routes: new Map() };
}

function routeKey(r: RouteSpec): string {
  const dst = r.dst === undefined || r.dst === 'default' ? 'default' : r.dst;
  return `${dst} via ${r.via}${r.dev ? ` dev ${r.dev}` : ''}`;
}

/** {@link LinkOps} of one namespace of a {@link FakeKernel}. See the module doc. */
export class FakeLinkOps implements LinkOps {
  private closed = false;

  /** A fresh kernel's `'host'` namespace by default. */
  constructor(readonly kernel: FakeKernel = new FakeKernel(), readonly netns = 'host') {
    kernel.addNetns(netns);
  }

  /** Snapshot of this namespace. */
  dump(): FakeNsDump {
    return this.kernel.dumpNs(this.netns);
  }

  async ensureBridge(name: string, opts: { mtu?: number } = {}): Promise<void> {
    this.create('link.ensureBridge', { name, kind: 'bridge', mtu: opts.mtu });
  }

  async ensureVeth(spec: VethSpec): Promise<void> {
    const op = 'link.ensureVeth';
    const peerNs = spec.peerNetns === undefined ? this.netns : this.resolveNs(op, spec.peerNetns);
    if (this.exists(op, spec.name, 'veth')) return;
    if (this.kernel.ns(op, peerNs).links.has(spec.peer) || (peerNs === this.netns && spec.peer === spec.name)) {
      throw new KernelError(op, 'EEXIST', `${spec.name}: a peer/related name already exists`);
    }
    this.create(op, { name: spec.name, kind: 'veth', mtu: spec.mtu, peer: { ns: peerNs, name: spec.peer } });
    this.insert(peerNs, { name: spec.peer, kind: 'veth', mtu: spec.mtu, peer: { ns: this.netns, name: spec.name } });
  }

  async ensureVxlan(spec: VxlanSpec): Promise<void> {
    const op = 'link.ensureVxlan';
    if (spec.local !== undefined) ipToBytes(op, spec.local);
    if (spec.dev !== undefined) this.link(op, spec.dev);
    const have = this.ns(op).links.get(spec.name);
    if (have?.kind === 'vxlan' && have.vxlan?.vni !== spec.vni) {
      throw new KernelError(op, 'EBUSY', `${spec.name} exists but has VNI ${have.vxlan?.vni}, not ${spec.vni}`);
    }
    const vxlan = { vni: spec.vni, dstport: spec.dstport ?? 4789, learning: spec.learning ?? false, ...(spec.local ? { local: spec.local } : {}) };
    this.create(op, { name: spec.name, kind: 'vxlan', mtu: spec.mtu ?? 1450, lower: spec.dev, vxlan });
  }

  async ensureMacvlan(spec: MacvlanSpec): Promise<void> {
    const op = 'link.ensureMacvlan';
    const parent = this.link(op, spec.parent);
    this.create(op, { name: spec.name, kind: 'macvlan', mtu: spec.mtu ?? parent.mtu, lower: spec.parent });
  }

  async setUp(name: string, up = true): Promise<void> {
    this.link('link.setUp', name).up = up;
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    const l = this.link('link.setMtu', name);
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new KernelError('link.setMtu', 'EINVAL', `${name}: invalid MTU ${mtu}`);
    l.mtu = mtu;
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const op = 'link.setMaster';
    const l = this.link(op, name);
    if (master === null) {
      delete l.master;
      return;
    }
    const m = this.link(op, master);
    if (m.kind !== 'bridge') throw new KernelError(op, 'EOPNOTSUPP', `${master} is not a bridge`);
    l.master = master;
  }

  async moveToNetns(name: string, netns: NetnsRef, newName?: string): Promise<void> {
    const op = 'link.moveToNetns';
    const l = this.link(op, name);
    const target = this.resolveNs(op, netns);
    const to = newName ?? name;
    if (this.kernel.ns(op, target).links.has(to)) throw new KernelError(op, 'EEXIST', `${to} already exists in netns ${target}`);
    this.ns(op).links.delete(name);
    // The kernel takes a moved device down and flushes its addresses, neighbours and master.
    Object.assign(l, { name: to, up: false, addrs: [], neigh: new Map<string, string>() });
    delete l.master;
    delete l.lower;
    this.kernel.ns(op, target).links.set(to, l);
    if (l.peer) {
      const peer = this.kernel.ns(op, l.peer.ns).links.get(l.peer.name);
      if (peer) peer.peer = { ns: target, name: to };
    }
  }

  async deleteLink(name: string): Promise<void> {
    this.guard('link.deleteLink');
    checkName('link.deleteLink', name);
    this.kernel.removeLink(this.netns, name);
  }

  async deleteLinks(names: readonly string[]): Promise<void> {
    for (const n of names) await this.deleteLink(n);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    checkName('link.getLink', name);
    const l = this.ns('link.getLink').links.get(name);
    return l && info(l);
  }

  async listLinks(prefix = ''): Promise<LinkInfo[]> {
    return [...this.ns('link.listLinks').links.values()]
      .filter((l) => l.name.startsWith(prefix))
      .sort((a, b) => byName(a.name, b.name))
      .map(info);
  }

  async ensureAddress(dev: string, cidr: string): Promise<void> {
    const op = 'link.ensureAddress';
    const c = parseCidr(op, cidr);
    const l = this.link(op, dev);
    const key = `${c.ip}/${c.prefixLen}`;
    if (!l.addrs.includes(key)) l.addrs.push(key);
  }

  async deleteAddress(dev: string, cidr: string): Promise<void> {
    const op = 'link.deleteAddress';
    const c = parseCidr(op, cidr);
    const l = this.ns(op).links.get(dev);
    if (l) l.addrs = l.addrs.filter((a) => a !== `${c.ip}/${c.prefixLen}`);
  }

  async listAddresses(dev: string): Promise<string[]> {
    return [...this.link('link.listAddresses', dev).addrs];
  }

  async ensureRoute(spec: RouteSpec): Promise<void> {
    const op = 'link.ensureRoute';
    this.checkRoute(op, spec);
    const ns = this.ns(op);
    // Replace semantics: one route per destination, like `ip route replace`.
    for (const [k, r] of ns.routes) if ((r.dst ?? 'default') === (spec.dst ?? 'default')) ns.routes.delete(k);
    ns.routes.set(routeKey(spec), { ...spec });
  }

  async deleteRoute(spec: RouteSpec): Promise<void> {
    const op = 'link.deleteRoute';
    ipToBytes(op, spec.via);
    this.ns(op).routes.delete(routeKey(spec));
  }

  async ensureNeighbour(dev: string, ip: string, mac: string): Promise<void> {
    const op = 'link.ensureNeighbour';
    ipToBytes(op, ip);
    const m = normalizeMac(op, mac);
    this.link(op, dev).neigh.set(ip, m);
  }

  async deleteNeighbour(dev: string, ip: string): Promise<void> {
    const op = 'link.deleteNeighbour';
    ipToBytes(op, ip);
    this.ns(op).links.get(dev)?.neigh.delete(ip);
  }

  async listNeighbours(dev: string): Promise<NeighbourEntry[]> {
    return [...this.link('link.listNeighbours', dev).neigh].map(([ip, mac]) => ({ ip, mac, state: ['permanent'] }));
  }

  async appendFdb(dev: string, mac: string, dst: string): Promise<void> {
    const op = 'link.appendFdb';
    const m = normalizeMac(op, mac);
    ipToBytes(op, dst);
    const l = this.link(op, dev);
    if (!l.fdb.some((f) => f.mac === m && f.dst === dst)) l.fdb.push({ mac: m, dst });
  }

  async deleteFdb(dev: string, mac: string, dst?: string): Promise<void> {
    const op = 'link.deleteFdb';
    const m = normalizeMac(op, mac);
    const l = this.ns(op).links.get(dev);
    if (l) l.fdb = l.fdb.filter((f) => !(f.mac === m && (dst === undefined || f.dst === dst)));
  }

  async listFdb(dev: string): Promise<FdbEntry[]> {
    return this.link('link.listFdb', dev).fdb.map((f) => ({ mac: f.mac, dst: f.dst, permanent: true }));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // --- internals ---

  private guard(op: string): void {
    if (this.closed) throw new KernelError(op, 'EBADF', 'LinkOps is closed');
  }

  private ns(op: string): FakeNs {
    this.guard(op);
    return this.kernel.ns(op, this.netns);
  }

  private link(op: string, name: string): FakeLink {
    checkName(op, name);
    const l = this.ns(op).links.get(name);
    if (!l) throw new KernelError(op, 'ENODEV', `${name}: no such device`);
    return l;
  }

  private resolveNs(op: string, ref: NetnsRef): string {
    if (typeof ref !== 'string') throw new KernelError(op, 'EBADF', 'FakeLinkOps cannot follow netns file descriptors');
    const name = ref.startsWith(`${NETNS_DIR}/`) ? ref.slice(NETNS_DIR.length + 1) : ref;
    this.kernel.ns(op, name);
    return name;
  }

  /** True when `name` already exists with `kind`; EBUSY when another kind holds the name. */
  private exists(op: string, name: string, kind: string): boolean {
    const have = this.ns(op).links.get(name);
    if (!have) return false;
    if (have.kind !== kind) throw new KernelError(op, 'EBUSY', `${name} exists but is a ${have.kind}, not a ${kind}`);
    return true;
  }

  private create(op: string, l: Partial<FakeLink> & { name: string; kind: string; mtu?: number | undefined }): void {
    if (this.exists(op, l.name, l.kind)) return;
    checkName(op, l.name);
    if (!/^[^\s/:]+$/.test(l.name)) throw new KernelError(op, 'EINVAL', `'${l.name}' is not a valid interface name`);
    this.insert(this.netns, l);
  }

  private insert(ns: string, l: Partial<FakeLink> & { name: string; kind: string; mtu?: number | undefined }): void {
    const index = this.kernel.allocIndex();
    const mac = `02:00:00:${[index >> 16, index >> 8, index].map((b) => (b & 0xff).toString(16).padStart(2, '0')).join(':')}`;
    const link: FakeLink = { ...l, name: l.name, kind: l.kind, index, mtu: l.mtu ?? 1500, up: false, mac, addrs: [], neigh: new Map(), fdb: [] };
    if (l.lower === undefined) delete link.lower;
    this.kernel.ns('link.create', ns).links.set(l.name, link);
  }

  private checkRoute(op: string, spec: RouteSpec): void {
    const gw = ipToBytes(op, spec.via);
    if (spec.dst !== undefined && spec.dst !== 'default' && parseCidr(op, spec.dst).family !== gw.family) {
      throw new KernelError(op, 'EINVAL', 'mixed address families');
    }
    if (spec.dev !== undefined) this.link(op, spec.dev);
  }
}

/** Same answer as rtnetlink, whose attribute policy caps IFLA_IFNAME at 15 bytes: ERANGE. */
function checkName(op: string, name: string): void {
  if (Buffer.byteLength(name) > 15) throw new KernelError(op, 'ERANGE', `'${name}' is longer than 15 bytes`);
}

function info(l: FakeLink): LinkInfo {
  const out: LinkInfo = {
    name: l.name, index: l.index, kind: l.kind, mtu: l.mtu, up: l.up, mac: l.mac, master: l.master,
    stats: { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, rxDropped: 0, txDropped: 0 },
  };
  if (l.vxlan) out.vxlan = { vni: l.vxlan.vni, local: l.vxlan.local, dstport: l.vxlan.dstport, learning: l.vxlan.learning, devIndex: undefined };
  return out;
}
