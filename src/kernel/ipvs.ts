/**
 * IPVS (the kernel's L4 load balancer, `ip_vs`): virtual services and their real servers
 * ("destinations"), as the generic-netlink family `IPVS` (uapi `linux/ip_vs.h`) sees them.
 *
 * IPVS state is PER NETWORK NAMESPACE and the netns is the one of the netlink socket: an
 * {@link IpvsOps} acts on the netns its socket was opened in (`GenlIpvs.open()` in the calling
 * thread's netns, `ipvsIn(netns)` through the roaming thread). Real: `GenlIpvs`
 * (ipvs-genl.ts); fake: `FakeIpvs` (fake-ipvs.ts).
 *
 * Error contract (the kernel's own errnos, as KernelError with op `ipvs.<method>`):
 * - `newService` / `newDest` of something present reject with EEXIST (`isExists`): an ensure is
 *   "new, and on EEXIST edit" ({@link ensureService}, {@link ensureDest});
 * - `editService` of an absent service and any dest call on an absent service reject with
 *   ESRCH, `editDest` of an absent dest with ENOENT (both `isNotFound`);
 * - `delService` / `delDest` of something absent RESOLVE (delete semantics);
 * - an unknown scheduler rejects with ENOENT (the kernel could not load `ip_vs_<name>`);
 * - a kernel without ip_vs rejects every call with `ipvs.open` EOPNOTSUPP (never ENOENT, which
 *   would read as "absent"); `hasIpvs()` (ipvs-genl.ts) asks without throwing.
 */
import { isExists, isNotFound } from '../errors.js';

/** Transport protocol of a virtual service. */
export type IpvsProtocol = 'tcp' | 'udp' | 'sctp';

/**
 * Forwarding method of a real server: `masq` (NAT: the director rewrites the destination, and
 * replies must come back through it), `local`, `tunnel` (IPIP), `route` (direct routing).
 */
export type IpvsForward = 'masq' | 'local' | 'tunnel' | 'route';

/**
 * Identity of a virtual service: protocol + VIP + port, or a firewall mark (`fwmark` > 0; then
 * `address` only gives the family, `'0.0.0.0'` or `'::'`, and protocol/port are ignored).
 */
export interface IpvsServiceKey {
  protocol: IpvsProtocol;
  /** The VIP (IPv4 or IPv6). */
  address: string;
  port: number;
  fwmark?: number;
}

/** Virtual-service flags (`IP_VS_SVC_F_*`) that userspace may set. */
export interface IpvsServiceFlags {
  /** Persistence (session affinity): a client keeps its real server for `timeout` seconds. */
  persistent?: boolean;
  /** One-packet scheduling (UDP: every datagram scheduled on its own). */
  onePacket?: boolean;
  /** `sh` scheduler: fall back to another server when the hashed one is unavailable. */
  shFallback?: boolean;
  /** `sh` scheduler: hash the source port too. */
  shPort?: boolean;
}

/** A virtual service as written to the kernel. */
export interface IpvsService extends IpvsServiceKey {
  /** Scheduler module name without `ip_vs_`: `rr`, `wrr`, `lc`, `wlc`, `sh`, `mh`, ... */
  scheduler: string;
  flags: IpvsServiceFlags;
  /** Persistence timeout in seconds (meaningful with `flags.persistent`; kernel default 300). */
  timeout: number;
  /**
   * Persistence granularity: IPv4 a dotted mask (`'255.255.255.255'`: per client address),
   * IPv6 a prefix length as text (`'128'`).
   */
  netmask: string;
}

/** Counters of a service or destination (`IPVS_*_ATTR_STATS64`). */
export interface IpvsStats {
  /** Connections scheduled since creation (or the last zeroing). */
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
  /** Current connection rate (per second, estimated by the kernel). */
  cps: number;
}

/** A virtual service as dumped: what was written, plus what the kernel adds. */
export interface IpvsServiceEntry extends IpvsService {
  /** `IP_VS_SVC_F_HASHED`: set by the kernel on every live service. */
  hashed: boolean;
  stats: IpvsStats;
}

/** A real server of a virtual service, as written to the kernel. */
export interface IpvsDest {
  address: string;
  port: number;
  /** 0..65535; `0` = quiescent: no new connections, established ones go on. */
  weight: number;
  forward: IpvsForward;
  /** Upper connection threshold (0 = none): above it the server gets no new connections. */
  upperThreshold: number;
  /** Lower threshold (0 = none): below it an overloaded server is taken back. */
  lowerThreshold: number;
}

/** A real server as dumped, with its connection counts. */
export interface IpvsDestEntry extends IpvsDest {
  activeConns: number;
  inactConns: number;
  persistConns: number;
  stats: IpvsStats;
}

/** IPVS connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`); 0 = leave unchanged. */
export interface IpvsTimeouts {
  /** Idle timeout of an established TCP connection (kernel default 900). */
  tcp: number;
  /** Timeout after a FIN (kernel default 120). */
  tcpFin: number;
  /** Idle timeout of a UDP "connection" (kernel default 300). */
  udp: number;
}

/**
 * IPVS of ONE network namespace (see the module doc for which one and for the errors).
 * Calls may be issued concurrently; implementations serialize them (npm `netlink` corrupts
 * concurrent dumps on one socket).
 */
export interface IpvsOps {
  /** Every virtual service of the netns (a dump). */
  getServices(): Promise<IpvsServiceEntry[]>;
  /** The real servers of one service (a dump); an absent service dumps as `[]`, like the kernel's. */
  getDests(svc: IpvsServiceKey): Promise<IpvsDestEntry[]>;
  /** Add a service; EEXIST when it is there. */
  newService(svc: IpvsService): Promise<void>;
  /** Change scheduler, flags, timeout, netmask of a service; ESRCH when absent. */
  editService(svc: IpvsService): Promise<void>;
  /** Delete a service with its real servers; absent = success. */
  delService(svc: IpvsServiceKey): Promise<void>;
  /** Add a real server; EEXIST when it is there, ESRCH when the service is absent. */
  newDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void>;
  /** Change weight, thresholds, forwarding of a real server; ENOENT when absent. */
  editDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void>;
  /** Delete a real server; absent (or its service absent) = success. */
  delDest(svc: IpvsServiceKey, dest: Pick<IpvsDest, 'address' | 'port'>): Promise<void>;
  /** Delete every service of the netns (`ipvsadm -C`). */
  flush(): Promise<void>;
  /** The netns's IPVS connection timeouts. */
  getTimeouts(): Promise<IpvsTimeouts>;
  /** Set the timeouts; a 0 field keeps the current value (the kernel's rule). */
  setTimeouts(t: IpvsTimeouts): Promise<void>;
  /** Release the socket; later calls reject with EBADF. Idempotent. */
  close(): Promise<void>;
}

/** The method names of {@link IpvsOps}, as a runtime list (the RPC surface of the roamer). */
export const IPVS_OPS_METHODS = [
  'getServices', 'getDests', 'newService', 'editService', 'delService', 'newDest', 'editDest', 'delDest',
  'flush', 'getTimeouts', 'setTimeouts', 'close',
] as const satisfies ReadonlyArray<keyof IpvsOps>;

type Unlisted = Exclude<keyof IpvsOps, (typeof IPVS_OPS_METHODS)[number]>;
const everyMethodListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyMethodListed;

/** `tcp/10.0.0.2/80`, `udp/[fd00::2]/53`, `fwmark/257/inet`: a stable text key of a service. */
export function ipvsServiceKey(svc: IpvsServiceKey): string {
  if (svc.fwmark) return `fwmark/${svc.fwmark}/${svc.address.includes(':') ? 'inet6' : 'inet'}`;
  const a = svc.address.includes(':') ? `[${svc.address}]` : svc.address;
  return `${svc.protocol}/${a}/${svc.port}`;
}

/** `10.0.1.5:8080` / `[fd00::5]:8080`: a stable text key of a real server. */
export function ipvsDestKey(d: Pick<IpvsDest, 'address' | 'port'>): string {
  return d.address.includes(':') ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
}

/** Add `svc`, or bring it to `svc` when it exists (idempotent). */
export async function ensureService(ops: IpvsOps, svc: IpvsService): Promise<void> {
  try {
    await ops.newService(svc);
  } catch (e) {
    if (!isExists(e)) throw e;
    await ops.editService(svc);
  }
}

/** Add `dest` to `svc`, or bring it to `dest` when it exists (idempotent). */
export async function ensureDest(ops: IpvsOps, svc: IpvsServiceKey, dest: IpvsDest): Promise<void> {
  try {
    await ops.newDest(svc, dest);
  } catch (e) {
    if (!isExists(e)) throw e;
    try {
      await ops.editDest(svc, dest);
    } catch (e2) {
      // Deleted between the two calls by someone else: add it once more.
      if (!isNotFound(e2)) throw e2;
      await ops.newDest(svc, dest);
    }
  }
}
