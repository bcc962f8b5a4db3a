/**
 * {@link FakeIpvs}: IPVS of one pretend netns, in memory, with the kernel's errnos (see ipvs.ts),
 * for unit tests of reconcilers. `dump()` prints the state like `ipvsadm -Ln` (for golden
 * text), `calls` records every mutating call (to assert a diff touched only what changed),
 * `failNext()` injects a failure, `connect()` is a tiny scheduler for "where would a new flow
 * go" assertions.
 */
import { KernelError } from '../errors.js';
import {
  ipvsDestKey, ipvsServiceKey, type IpvsDest, type IpvsDestEntry, type IpvsOps, type IpvsService, type IpvsServiceEntry,
  type IpvsServiceKey, type IpvsStats, type IpvsTimeouts,
} from './ipvs.js';

/** Schedulers the fake accepts (the kernel loads `ip_vs_<name>`; others fail ENOENT). */
const SCHEDULERS = new Set(['rr', 'wrr', 'lc', 'wlc', 'sh', 'mh', 'sed', 'nq', 'dh', 'lblc', 'lblcr', 'fo', 'ovf', 'twos']);

const zeroStats = (): IpvsStats => ({ conns: 0, inPkts: 0, outPkts: 0, inBytes: 0, outBytes: 0, cps: 0 });

interface FakeService {
  svc: IpvsService;
  dests: Map<string, IpvsDestEntry>;
  stats: IpvsStats;
  /** Round-robin cursor for {@link FakeIpvs.connect}. */
  next: number;
}

/** In-memory {@link IpvsOps}; see the module doc. */
export class FakeIpvs implements IpvsOps {
  /** Mutating calls that succeeded, in order: `newDest tcp/10.0.0.2/80 10.0.1.5:80 w=1`. */
  readonly calls: string[] = [];
  private readonly services = new Map<string, FakeService>();
  private timeouts: IpvsTimeouts = { tcp: 900, tcpFin: 120, udp: 300 };
  private injected: KernelError | undefined;
  private closed = false;

  async getServices(): Promise<IpvsServiceEntry[]> {
    this.check('ipvs.getServices');
    return this.sorted().map((s) => ({ ...clone(s.svc), hashed: true, stats: { ...s.stats } }));
  }

  async getDests(svc: IpvsServiceKey): Promise<IpvsDestEntry[]> {
    this.check('ipvs.getDests');
    // Like the kernel's dump: an absent service has no dests (not an error).
    const s = this.services.get(ipvsServiceKey(svc));
    return s ? [...s.dests.values()].map((d) => ({ ...d, stats: { ...d.stats } })) : [];
  }

  async newService(svc: IpvsService): Promise<void> {
    const op = 'ipvs.newService';
    this.check(op);
    const key = ipvsServiceKey(svc);
    if (this.services.has(key)) throw err(op, 'EEXIST', key);
    checkService(op, svc);
    this.services.set(key, { svc: clone(svc), dests: new Map(), stats: zeroStats(), next: 0 });
    this.calls.push(`newService ${describeService(svc)}`);
  }

  async editService(svc: IpvsService): Promise<void> {
    const op = 'ipvs.editService';
    this.check(op);
    const s = this.need(op, svc);
    checkService(op, svc);
    s.svc = clone(svc);
    this.calls.push(`editService ${describeService(svc)}`);
  }

  async delService(svc: IpvsServiceKey): Promise<void> {
    this.check('ipvs.delService');
    const key = ipvsServiceKey(svc);
    if (this.services.delete(key)) this.calls.push(`delService ${key}`);
  }

  async newDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void> {
    const op = 'ipvs.newDest';
    this.check(op);
    const s = this.need(op, svc);
    const key = ipvsDestKey(dest);
    if (s.dests.has(key)) throw err(op, 'EEXIST', `${ipvsServiceKey(svc)} -> ${key}`);
    checkDest(op, dest);
    s.dests.set(key, { ...dest, activeConns: 0, inactConns: 0, persistConns: 0, stats: zeroStats() });
    this.calls.push(`newDest ${ipvsServiceKey(svc)} ${describeDest(dest)}`);
  }

  async editDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void> {
    const op = 'ipvs.editDest';
    this.check(op);
    const s = this.need(op, svc);
    const cur = s.dests.get(ipvsDestKey(dest));
    if (!cur) throw err(op, 'ENOENT', `${ipvsServiceKey(svc)} -> ${ipvsDestKey(dest)}`);
    checkDest(op, dest);
    Object.assign(cur, dest);
    this.calls.push(`editDest ${ipvsServiceKey(svc)} ${describeDest(dest)}`);
  }

  async delDest(svc: IpvsServiceKey, dest: Pick<IpvsDest, 'address' | 'port'>): Promise<void> {
    this.check('ipvs.delDest');
    const s = this.services.get(ipvsServiceKey(svc));
    if (s?.dests.delete(ipvsDestKey(dest))) this.calls.push(`delDest ${ipvsServiceKey(svc)} ${ipvsDestKey(dest)}`);
  }

  async flush(): Promise<void> {
    this.check('ipvs.flush');
    this.services.clear();
    this.calls.push('flush');
  }

  async getTimeouts(): Promise<IpvsTimeouts> {
    this.check('ipvs.getTimeouts');
    return { ...this.timeouts };
  }

  async setTimeouts(t: IpvsTimeouts): Promise<void> {
    this.check('ipvs.setTimeouts');
    this.timeouts = { tcp: t.tcp || this.timeouts.tcp, tcpFin: t.tcpFin || this.timeouts.tcpFin, udp: t.udp || this.timeouts.udp };
    this.calls.push(`setTimeouts tcp=${this.timeouts.tcp} tcpfin=${this.timeouts.tcpFin} udp=${this.timeouts.udp}`);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Make the next call (any method) fail with `errno` without changing anything. */
  failNext(errno = 'EIO', op = 'ipvs.injected'): void {
    this.injected = new KernelError(op, errno, 'injected failure');
  }

  /**
   * The state as `ipvsadm -Ln` prints it (services and real servers sorted, no counters):
   * ```
   * TCP  10.0.0.2:80 rr persistent 60
   *   -> 10.0.1.5:80  Masq  1
   * ```
   */
  dump(): string {
    const lines: string[] = [];
    for (const s of this.sorted()) {
      const v = s.svc;
      const head = v.fwmark ? `FWM  ${v.fwmark}` : `${v.protocol.toUpperCase().padEnd(4)} ${ipvsDestKey(v)}`;
      const opts = [v.scheduler];
      if (v.flags.persistent) opts.push(`persistent ${v.timeout}`);
      if (v.flags.persistent && v.netmask !== '255.255.255.255' && v.netmask !== '128') opts.push(`mask ${v.netmask}`);
      if (v.flags.onePacket) opts.push('ops');
      lines.push(`${head} ${opts.join(' ')}`);
      const dests = [...s.dests.values()].sort((a, b) => cmp(ipvsDestKey(a), ipvsDestKey(b)));
      for (const d of dests) lines.push(`  -> ${ipvsDestKey(d)}  ${FWD_NAME[d.forward]}  ${d.weight}`);
    }
    return lines.join('\n');
  }

  /** Timeouts as `ipvsadm -L --timeout` prints them. */
  dumpTimeouts(): string {
    return `Timeout (tcp tcpfin udp): ${this.timeouts.tcp} ${this.timeouts.tcpFin} ${this.timeouts.udp}`;
  }

  /**
   * Where a new flow from `client` to `svc` goes, by the service's scheduler, modelled only as
   * far as the tests need: weight-0 servers never get new flows; `rr`, `wrr`, `lc` rotate over
   * the others (wrr/lc without weights or counts), `sh`/`mh` and persistent services hash the
   * client. Undefined when no server may take it (the kernel then answers ICMP unreachable).
   */
  connect(svc: IpvsServiceKey, client: string): string | undefined {
    const s = this.services.get(ipvsServiceKey(svc));
    if (!s) return undefined;
    const live = [...s.dests.values()].filter((d) => d.weight > 0).sort((a, b) => cmp(ipvsDestKey(a), ipvsDestKey(b)));
    if (live.length === 0) return undefined;
    const hashing = s.svc.flags.persistent === true || s.svc.scheduler === 'sh' || s.svc.scheduler === 'mh';
    const i = hashing ? hash(client) % live.length : s.next++ % live.length;
    const d = live[i] as IpvsDestEntry;
    d.stats.conns++;
    s.stats.conns++;
    return ipvsDestKey(d);
  }

  private check(op: string): void {
    if (this.closed) throw err(op, 'EBADF', 'the IPVS socket is closed');
    if (this.injected) {
      const e = this.injected;
      this.injected = undefined;
      throw new KernelError(op, e.errno, 'injected failure');
    }
  }

  private need(op: string, svc: IpvsServiceKey): FakeService {
    const s = this.services.get(ipvsServiceKey(svc));
    if (!s) throw err(op, 'ESRCH', `${ipvsServiceKey(svc)}: no such service`);
    return s;
  }

  private sorted(): FakeService[] {
    return [...this.services.entries()].sort(([a], [b]) => cmp(a, b)).map(([, s]) => s);
  }
}

const FWD_NAME = { masq: 'Masq', local: 'Local', tunnel: 'Tunnel', route: 'Route' } as const;

function err(op: string, errno: string, what: string): KernelError {
  return new KernelError(op, errno, `${what} (fake IPVS)`);
}

function checkService(op: string, svc: IpvsService): void {
  if (!SCHEDULERS.has(svc.scheduler)) throw err(op, 'ENOENT', `scheduler ${svc.scheduler} not found`);
  if (svc.address.includes(':') && !/^\d+$/.test(svc.netmask)) throw err(op, 'EINVAL', `bad IPv6 netmask ${svc.netmask}`);
}

function checkDest(op: string, d: IpvsDest): void {
  if (!Number.isInteger(d.weight) || d.weight < 0 || d.weight > 65535) throw err(op, 'EINVAL', `weight ${d.weight}`);
  if (d.lowerThreshold > d.upperThreshold) throw err(op, 'EINVAL', 'lower threshold above upper');
}

function clone(svc: IpvsService): IpvsService {
  return { ...svc, flags: { ...svc.flags } };
}

function describeService(svc: IpvsService): string {
  const p = svc.flags.persistent ? ` persistent=${svc.timeout}` : '';
  return `${ipvsServiceKey(svc)} ${svc.scheduler}${p}`;
}

function describeDest(d: IpvsDest): string {
  return `${ipvsDestKey(d)} ${d.forward} w=${d.weight}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// FNV-1a: stable across runs, so golden tests of "sh sends this client there" hold.
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
