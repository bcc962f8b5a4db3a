/**
 * `UserspaceLoadBalancer`: the {@link LoadBalancer} of the userspace dataplane, a TCP/UDP proxy
 * inside this process (no root, no kernel state). Each virtual service is a listener on its
 * frontend address:port ({@link TcpFrontend}, {@link UdpFrontend}); its backends live in a
 * {@link Pool} that the listener asks for a backend per new flow.
 *
 * Changes are applied in place: changing only the backends (or weights, scheduler, affinity) of
 * a listening service never re-binds it. A call first validates everything and binds every new
 * listener; if any of that fails it rejects and nothing is changed (listeners it just bound are
 * closed again). So new listeners are bound before removed ones close: replacing a listener by
 * one that overlaps it (127.0.0.5:80 by 0.0.0.0:80) takes two calls. Calls are serialized.
 *
 * Semantics (see also the frontends):
 * - masquerade is inherent: backends see the proxy's address, whatever `masquerade` says.
 * - weight 0 = draining: no new flows, no new affinity; open flows go on.
 * - a removed backend gets no new flows; its TCP connections are left to finish, its UDP sessions
 *   are ended at once (so no datagram reaches it).
 * - no backend: TCP connections get a RST, UDP datagrams are dropped.
 * - a removed service: its listener closes; its TCP connections are left to finish.
 * - stats: `connections` = open flows (TCP connections, UDP sessions; connects in progress
 *   included), `connectionsTotal` = flows established since the backend was programmed, `bytes`
 *   = both directions.
 */
import { isIP } from 'node:net';
import { invalid, KernelError, unavailable } from '../../src/errors.js';
import { vsKey, type LbBackend, type LbBackendStats, type LbKind, type LoadBalancer, type LbScheduler, type VirtualService } from '../types.js';
import { Picker, type Candidate } from './pick.js';
import { TcpFrontend } from './tcp-proxy.js';
import { UdpFrontend } from './udp-proxy.js';

/** Options of {@link UserspaceLoadBalancer}. */
export interface UserspaceLoadBalancerOptions {
  log?: (msg: string, err?: unknown) => void;
  /** UDP session idle timeout (ms). Default 30000. */
  udpIdleMs?: number;
  /** TCP connect timeout per backend (ms). Default 3000. */
  connectTimeoutMs?: number;
  /** Backends tried per TCP connection before it is refused. Default 3. */
  connectAttempts?: number;
  /** Clock of the affinity tables (ms). Default `Date.now`. */
  now?: () => number;
}

/** One open flow (TCP connection, UDP session) as its backend counts it. */
export interface Flow {
  /** Bytes both ways so far. */
  bytes(): number;
  /** Ends it now. */
  destroy(): void;
}

/** What the load balancer needs of a listener. */
export interface Frontend {
  readonly key: string;
  readonly pool: Pool;
  /** TCP connections or UDP sessions open. */
  readonly openFlows: number;
  listen(): Promise<void>;
  backendRemoved(b: Backend): void;
  /** Stop listening (TCP connections go on). */
  close(): void;
  /** Stop listening and end every flow. */
  destroy(): void;
}

/** One backend of one virtual service, with its counters. */
export class Backend implements Candidate {
  weight: number;
  /** Flows connecting or open. */
  readonly flows = new Set<Flow>();
  /** Flows established since it was programmed. */
  total = 0;
  /** A connect to it failed and none succeeded since (logged once). */
  failing = false;
  private closedBytes = 0;

  constructor(readonly id: string, readonly address: string, readonly port: number, weight: number) {
    this.weight = weight;
  }

  /** A flow of this backend ended. */
  ended(flow: Flow): void {
    if (this.flows.delete(flow)) this.closedBytes += flow.bytes();
  }

  bytes(): number {
    let n = this.closedBytes;
    for (const f of this.flows) n += f.bytes();
    return n;
  }
}

/** `address:port` (`[v6]:port`): a backend's identity within its virtual service. */
export const backendId = (b: Pick<LbBackend, 'address' | 'port'>): string =>
  b.address.includes(':') ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`;

/** The backends of one virtual service and its scheduler. */
export class Pool {
  readonly backends = new Map<string, Backend>();
  private readonly picker: Picker<Backend>;

  constructor(vs: VirtualService, now: () => number) {
    this.picker = new Picker<Backend>({ scheduler: vs.scheduler, affinityMs: affinityMs(vs), load: (b) => b.flows.size, now });
    this.update(vs);
  }

  /** Takes the backends, scheduler and affinity of `vs`; returns the backends removed. */
  update(vs: VirtualService): Backend[] {
    const wanted = new Map(vs.backends.map((b) => [backendId(b), b]));
    const removed: Backend[] = [];
    for (const [id, b] of this.backends) {
      if (!wanted.has(id)) {
        removed.push(b);
        this.backends.delete(id);
      }
    }
    for (const [id, b] of wanted) {
      const have = this.backends.get(id);
      if (have) have.weight = b.weight;
      else this.backends.set(id, new Backend(id, b.address, b.port, b.weight));
    }
    this.picker.configure(vs.scheduler, affinityMs(vs));
    this.picker.setBackends([...this.backends.values()]);
    return removed;
  }

  /** Whether {@link pick} looks at the client address (affinity, sh, mh). */
  get needsClient(): boolean {
    return this.picker.needsClient;
  }

  pick(client: string, exclude?: ReadonlySet<string>): Backend | undefined {
    return this.picker.pick(client, exclude);
  }

  release(client: string, at?: number): void {
    this.picker.release(client, at);
  }
}

const affinityMs = (vs: VirtualService): number => (vs.affinity ? vs.affinity.timeoutSeconds * 1000 : 0);

const SCHEDULERS: readonly LbScheduler[] = ['rr', 'wrr', 'random', 'lc', 'sh', 'mh'];
const isPort = (p: unknown): boolean => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535;

/** Throws an InvalidParameter error naming the first thing wrong with `vs`. */
export function validateService(vs: VirtualService): void {
  if (typeof vs !== 'object' || vs === null) throw invalid('a virtual service must be an object');
  const where = `virtual service ${JSON.stringify(vs.service)} (${vs.protocol}/${vs.address}/${vs.port})`;
  if (vs.protocol !== 'tcp' && vs.protocol !== 'udp') throw invalid(`${where}: protocol must be tcp or udp`);
  if (!isIP(vs.address)) throw invalid(`${where}: address must be an IPv4 or IPv6 address`);
  // A socket listens on one port: every port of an address (port 0) would need a listener per
  // port or TPROXY (root), so the every-port VIP stays a kernel dataplane's feature.
  if (vs.port === 0) throw invalid(`${where}: every-port virtual services (port 0) need a kernel dataplane (nftables or IPVS); the userspace proxy balances declared ports only`);
  if (!isPort(vs.port)) throw invalid(`${where}: port must be 1..65535`);
  if (!SCHEDULERS.includes(vs.scheduler)) throw invalid(`${where}: scheduler must be one of ${SCHEDULERS.join(', ')}`);
  if (vs.affinity && !(Number.isFinite(vs.affinity.timeoutSeconds) && vs.affinity.timeoutSeconds > 0)) {
    throw invalid(`${where}: affinity.timeoutSeconds must be a positive number`);
  }
  if (!Array.isArray(vs.backends)) throw invalid(`${where}: backends must be a list`);
  const seen = new Set<string>();
  for (const b of vs.backends) {
    if (typeof b !== 'object' || b === null) throw invalid(`${where}: a backend must be an object`);
    const id = backendId(b);
    if (!isIP(b.address)) throw invalid(`${where}: backend ${id}: address must be an IPv4 or IPv6 address`);
    if (!isPort(b.port)) throw invalid(`${where}: backend ${id}: port must be 1..65535`);
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > 256) throw invalid(`${where}: backend ${id}: weight must be 0..256`);
    if (seen.has(id)) throw invalid(`${where}: backend ${id} is listed twice`);
    seen.add(id);
  }
}

/** A deep copy, so that later changes to the caller's objects do not leak into `applied()`. */
const copyOf = (vs: VirtualService): VirtualService => ({
  ...vs,
  ...(vs.affinity ? { affinity: { ...vs.affinity } } : {}),
  backends: vs.backends.map((b) => ({ ...b })),
});

interface Entry {
  vs: VirtualService;
  frontend: Frontend;
}

/** The userspace dataplane: one instance per process. */
export class UserspaceLoadBalancer implements LoadBalancer {
  readonly kind: LbKind = 'userspace';
  private readonly services = new Map<string, Entry>();
  /** Listeners of removed services whose TCP connections have not all ended yet (for cleanup). */
  private readonly retired = new Set<Frontend>();
  private readonly log: (msg: string, err?: unknown) => void;
  private readonly udpIdleMs: number;
  private readonly connectTimeoutMs: number;
  private readonly connectAttempts: number;
  private readonly now: () => number;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(opts: UserspaceLoadBalancerOptions = {}) {
    this.log = opts.log ?? (() => {});
    this.udpIdleMs = opts.udpIdleMs ?? 30_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 3000;
    this.connectAttempts = Math.max(1, opts.connectAttempts ?? 3);
    this.now = opts.now ?? Date.now;
  }

  syncAll(services: readonly VirtualService[]): Promise<void> {
    return this.serial(() => {
      for (const vs of services) validateService(vs);
      const wanted = new Set(services.map(vsKey));
      return this.applyNow(services, [...this.services.keys()].filter((k) => !wanted.has(k)));
    });
  }

  apply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    return this.serial(() => this.applyNow(upsert, remove));
  }

  applied(): ReadonlyMap<string, VirtualService> {
    return new Map([...this.services].map(([k, e]) => [k, copyOf(e.vs)]));
  }

  async stats(): Promise<LbBackendStats[]> {
    const out: LbBackendStats[] = [];
    for (const [key, { vs, frontend }] of this.services) {
      for (const b of frontend.pool.backends.values()) {
        out.push({ vs: key, service: vs.service, address: b.address, port: b.port, connections: b.flows.size, connectionsTotal: b.total, bytes: b.bytes() });
      }
    }
    return out;
  }

  /** Closes every listener and ends every flow; the instance stays usable. */
  cleanup(): Promise<void> {
    return this.serial(async () => this.destroyAll());
  }

  /** As {@link cleanup} (a userspace dataplane has no kernel state), and the instance is done. */
  async close(): Promise<void> {
    await this.serial(async () => {
      this.closed = true;
      this.destroyAll();
    });
  }

  private destroyAll(): void {
    for (const { frontend } of this.services.values()) frontend.destroy();
    for (const frontend of this.retired) frontend.destroy();
    this.services.clear();
    this.retired.clear();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      if (this.closed) throw unavailable('userspace load balancer is closed');
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    const keys = new Set<string>();
    for (const vs of upsert) {
      validateService(vs);
      const key = vsKey(vs);
      if (keys.has(key)) throw invalid(`virtual service ${key} is listed twice`);
      keys.add(key);
    }
    // 1. Bind every new listener; on any failure undo those and change nothing.
    const fresh = new Map<string, Entry>();
    const binding: Array<Promise<void>> = [];
    for (const vs of upsert) {
      const key = vsKey(vs);
      if (this.services.has(key)) continue;
      const copy = copyOf(vs);
      const frontend = this.frontendOf(key, copy);
      fresh.set(key, { vs: copy, frontend });
      binding.push(frontend.listen().catch((err: NodeJS.ErrnoException) => {
        throw new KernelError(`userspace load balancer: listen on ${key} (service ${vs.service})`, err.code, bindHint(err), { cause: err });
      }));
    }
    const results = await Promise.allSettled(binding);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const { frontend } of fresh.values()) frontend.destroy();
      throw failed.reason;
    }
    // 2. Nothing can fail from here on: update in place, add, remove.
    for (const vs of upsert) {
      const key = vsKey(vs);
      const entry = this.services.get(key);
      if (!entry) continue;
      entry.vs = copyOf(vs);
      for (const b of entry.frontend.pool.update(entry.vs)) entry.frontend.backendRemoved(b);
    }
    for (const [key, entry] of fresh) {
      this.services.set(key, entry);
      if (entry.vs.masquerade === false) this.log(`${key} (service ${entry.vs.service}): masquerade=false is not possible in userspace; backends see the proxy's address`);
    }
    for (const f of this.retired) if (f.openFlows === 0) this.retired.delete(f);
    for (const key of remove) {
      if (keys.has(key)) continue; // also upserted: the upsert wins
      const entry = this.services.get(key);
      if (!entry) continue;
      entry.frontend.close();
      if (entry.frontend.openFlows > 0) this.retired.add(entry.frontend);
      this.services.delete(key);
    }
  }

  private frontendOf(key: string, vs: VirtualService): Frontend {
    const pool = new Pool(vs, this.now);
    if (vs.protocol === 'udp') return new UdpFrontend(key, vs.address, vs.port, pool, { idleMs: this.udpIdleMs, log: this.log });
    return new TcpFrontend(key, vs.address, vs.port, pool, { connectTimeoutMs: this.connectTimeoutMs, connectAttempts: this.connectAttempts, log: this.log });
  }
}

/** The bind error as a sentence a user can act on. */
function bindHint(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'the address and port are already in use (another service or process listens there)';
    case 'EADDRNOTAVAIL':
      return 'the address is not assigned to any interface of this host';
    case 'EACCES':
      return 'permission denied (ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)';
    default:
      return err.message;
  }
}
