/**
 * {@link IpvsLoadBalancer}: the `ipvs` dataplane of {@link LoadBalancer}, over an
 * {@link IpvsOps} of ONE network namespace (a task's sandbox for task -> VIP traffic, the
 * ingress sandbox for published ports). See README.md in this folder.
 *
 * Kernel objects: one IPVS virtual service per VIP:port/protocol; each backend a real server in
 * masquerade (NAT) mode. Schedulers map 1:1 (`rr wrr lc sh mh`) except `random`, which IPVS
 * lacks and becomes `rr` (the nearest: uniform over the live backends). Weight 0 is IPVS's
 * "quiescent" server: no new connections, established ones go on (draining). Affinity is a
 * persistent service (per client address: netmask /32 or /128) with the affinity timeout.
 * `masquerade: true` adds SNAT after IPVS in an nftables table (masquerade.ts).
 *
 * State ownership: only `syncAll`/`apply`/`cleanup` write `applied` and the nft element
 * record, one call at a time (calls are queued). A call that fails leaves the services it did
 * not finish out of `applied()` ("unknown"): the next call re-reads them from the kernel.
 */
import { invalid, isExists, isNotFound } from '../../src/errors.js';
import {
  ensureDest, ensureService, ipvsDestKey, ipvsServiceKey, type IpvsDest, type IpvsOps, type IpvsService, type IpvsServiceEntry,
  type IpvsServiceKey, type IpvsTimeouts,
} from '../../src/kernel/ipvs.js';
import type { Nft } from '../../src/kernel/nft.js';
import type { Sysctl } from '../../src/kernel/sysctl.js';
import { vsKey, type LbBackendStats, type LbKind, type LbScheduler, type LoadBalancer, type VirtualService } from '../types.js';
import { MARK_TABLE, fwmarkOf, isShoalFwmark, markDeleteScript, markTableScript, type ExactTarget, type MarkTarget } from './fwmark.js';
import { MASQ_TABLE, masqDeleteScript, masqElementsScript, masqTableScript, type MasqTarget } from './masquerade.js';

/**
 * Timeouts set at start. IPVS forgets an idle TCP connection after 900 s by default, long
 * before Linux's first keepalive probe (7200 s), and the connection then hangs (moby#31208).
 * 7500 s keeps every keepalive-enabled connection alive; FIN and UDP keep the kernel defaults
 * but are set explicitly so a netns never runs with someone else's leftovers.
 */
export const DEFAULT_IPVS_TIMEOUTS: IpvsTimeouts = { tcp: 7500, tcpFin: 120, udp: 300 };

/**
 * sysctls of the netns set at start (when a {@link Sysctl} is given):
 * - `vs.conntrack=1`: IPVS keeps conntrack entries (needed by the masquerade table and by any
 *   stateful nft rule in the sandbox);
 * - `vs.expire_nodest_conn=1`: packets of a connection whose backend was removed expire it at
 *   once (the client gets a reset) instead of being dropped until the entry times out;
 * - `vs.expire_quiescent_template=1`: affinity records to a weight-0 backend expire, so a
 *   draining backend gets no new connections from "sticky" clients either.
 */
export const IPVS_SYSCTLS: Readonly<Record<string, number>> = {
  'net.ipv4.vs.conntrack': 1,
  'net.ipv4.vs.expire_nodest_conn': 1,
  'net.ipv4.vs.expire_quiescent_template': 1,
};

/** IPVS scheduler for each {@link LbScheduler}. */
export const IPVS_SCHEDULER: Readonly<Record<LbScheduler, string>> = { rr: 'rr', wrr: 'wrr', random: 'rr', lc: 'lc', sh: 'sh', mh: 'mh' };

/** Options of {@link IpvsLoadBalancer}. */
export interface IpvsLoadBalancerOptions {
  /** IPVS of the target netns (`GenlIpvs.open()` on its thread, or `ipvsIn(netns)`). */
  ipvs: IpvsOps;
  /** sysctls of the same netns: {@link IPVS_SYSCTLS} at start, forwarding once a service masquerades. */
  sysctl?: Sysctl;
  /** nftables of the same netns; required as soon as a service has `masquerade: true`. */
  nft?: Nft;
  /** Connection timeouts set at start; default {@link DEFAULT_IPVS_TIMEOUTS}. */
  timeouts?: IpvsTimeouts;
  /** nft table (family inet) for masquerading; default `shoal-ipvs`. */
  table?: string;
  /** nft table (family inet) marking every-port services' packets (fwmark.ts); default `shoal-ipvs-mark`. */
  markTable?: string;
  /**
   * Which kernel services are this instance's: `syncAll` and `cleanup` remove those it does
   * not want. Default: every service of the netns but fwmark services outside Shoal's range
   * (one load balancer per sandbox).
   */
  owns?: (svc: IpvsServiceKey) => boolean;
}

/** The kernel objects of one virtual service. */
interface Plan {
  svc: IpvsService;
  dests: Map<string, IpvsDest>;
}

/** The IPVS objects for a virtual service (pure). */
export function planOf(vs: VirtualService): Plan {
  const scheduler = IPVS_SCHEDULER[vs.scheduler];
  if (scheduler === undefined) throw invalid(`virtual service ${vsKey(vs)}: unknown scheduler '${String(vs.scheduler)}'`);
  const v6 = vs.address.includes(':');
  // Every port (port 0): a fwmark service, the mark set by nftables on packets to the address (fwmark.ts).
  const every = vs.port === 0;
  if (every && vs.masquerade) throw invalid(`virtual service ${vsKey(vs)}: an every-port service cannot masquerade on IPVS`);
  const svc: IpvsService = {
    protocol: vs.protocol, address: every ? (v6 ? '::' : '0.0.0.0') : vs.address, port: vs.port, scheduler,
    ...(every ? { fwmark: fwmarkOf(vs.address, vs.protocol) } : {}),
    flags: vs.affinity ? { persistent: true } : {},
    timeout: vs.affinity ? vs.affinity.timeoutSeconds : 0,
    netmask: v6 ? '128' : '255.255.255.255',
  };
  const dests = new Map<string, IpvsDest>();
  for (const b of vs.backends) {
    if (!Number.isInteger(b.weight) || b.weight < 0) throw invalid(`virtual service ${vsKey(vs)}: backend ${b.address}:${b.port} has weight ${b.weight}`);
    dests.set(ipvsDestKey(b), { address: b.address, port: b.port, weight: b.weight, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
  }
  return { svc, dests };
}

const sameService = (a: IpvsService, b: IpvsService): boolean =>
  a.scheduler === b.scheduler && Boolean(a.flags.persistent) === Boolean(b.flags.persistent) &&
  (!a.flags.persistent || (a.timeout === b.timeout && a.netmask === b.netmask)) &&
  Boolean(a.flags.onePacket) === Boolean(b.flags.onePacket) && Boolean(a.flags.shFallback) === Boolean(b.flags.shFallback) &&
  Boolean(a.flags.shPort) === Boolean(b.flags.shPort);

const sameDest = (a: IpvsDest, b: IpvsDest): boolean =>
  a.weight === b.weight && a.forward === b.forward && a.upperThreshold === b.upperThreshold && a.lowerThreshold === b.lowerThreshold;

/** The key of a kernel service (`tcp/10.0.0.2/80`, `fwmark/<mark>/inet`): plans are matched on it. */
const keyOfKernel = (s: IpvsServiceKey): string => ipvsServiceKey(s);

/** `tcp/10.0.0.2/80` / `udp/[fd00::2]/53` back to its parts. */
function parseVsKey(key: string): MasqTarget {
  const m = /^(tcp|udp)\/(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))\/(\d+)$/.exec(key);
  if (!m) throw invalid(`'${key}' is not a virtual service key (tcp/10.0.0.2/80)`);
  return { protocol: m[1] as 'tcp' | 'udp', address: (m[2] ?? m[3]) as string, port: Number(m[4]) };
}

/** The kernel identity of the virtual service `key` (a fwmark service for port 0). */
function kernelKeyOf(t: MasqTarget): IpvsServiceKey {
  if (t.port !== 0) return { ...t };
  return { protocol: t.protocol, address: t.address.includes(':') ? '::' : '0.0.0.0', port: 0, fwmark: fwmarkOf(t.address, t.protocol) };
}

const masqTarget = (vs: VirtualService): MasqTarget => ({ protocol: vs.protocol, address: vs.address, port: vs.port });

/** The IPVS dataplane; see the module doc and README.md. */
export class IpvsLoadBalancer implements LoadBalancer {
  readonly kind: LbKind = 'ipvs';
  private readonly ipvs: IpvsOps;
  private readonly table: string;
  private readonly owns: (svc: IpvsServiceKey) => boolean;
  private readonly state = new Map<string, VirtualService>();
  /** Masqueraded frontends whose nft elements are in the table (only sync calls write it). */
  private readonly masq = new Map<string, MasqTarget>();
  private prepared = false;
  /** Whether the nft table is known to exist with exactly {@link masq}. */
  private nftReady = false;
  private forwarding = { v4: false, v6: false };
  private queue: Promise<void> = Promise.resolve();
  /** Kernel objects created, changed or deleted by the current call (resync counts them as repairs). */
  private repairs = 0;
  /** The marking table (every-port services) and what it was last written with (undefined: unknown). */
  private readonly markTable: string;
  private marksSig: string | undefined;

  constructor(private readonly opts: IpvsLoadBalancerOptions) {
    this.ipvs = opts.ipvs;
    this.table = opts.table ?? MASQ_TABLE;
    this.markTable = opts.markTable ?? MARK_TABLE;
    this.owns = opts.owns ?? ((s) => !s.fwmark || isShoalFwmark(s.fwmark));
  }

  syncAll(services: readonly VirtualService[]): Promise<void> {
    return this.serialized(() => this.doSyncAll(services));
  }

  apply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    return this.serialized(() => this.doApply(upsert, remove));
  }

  applied(): ReadonlyMap<string, VirtualService> {
    return this.state;
  }

  async stats(): Promise<LbBackendStats[]> {
    const out: LbBackendStats[] = [];
    for (const [key, vs] of this.state) {
      if (vs.backends.length === 0) continue; // nothing to read: spare the netlink dump
      for (const d of await this.ipvs.getDests(planOf(vs).svc)) {
        out.push({
          vs: key, service: vs.service, address: d.address, port: d.port,
          connections: d.activeConns + d.inactConns, connectionsTotal: d.stats.conns, bytes: d.stats.inBytes + d.stats.outBytes,
        });
      }
    }
    return out;
  }

  /**
   * Drift repair: re-reads the netns's IPVS services and real servers and the masquerade table,
   * and puts back what differs from what was applied (a service deleted by `ipvsadm -C`, a real
   * server removed, the table flushed). What is right is left alone. Resolves with the kernel
   * objects repaired.
   */
  resync(): Promise<number> {
    return this.serialized(async () => {
      this.repairs = 0;
      if (this.opts.nft && this.masq.size > 0) {
        try {
          await this.opts.nft.list(this.table, 'inet');
        } catch (e) {
          if (!isNotFound(e)) throw e;
          this.repairs++;
        }
      }
      this.prepared = false; // timeouts and sysctls again (a recreated netns has defaults)
      await this.prepare();
      // The masquerade table as a whole (atomic; conntrack keeps the flows it already NATs).
      if (this.opts.nft) await this.replaceMasq(new Map(this.masq));
      // What was applied stays the record: a failure half-way is repaired by the next resync.
      await this.writeMarks(this.state.values(), true);
      const kernel = new Map<string, IpvsServiceEntry>();
      for (const s of await this.ipvs.getServices()) if (this.owns(s)) kernel.set(keyOfKernel(s), s);
      const wanted = new Set<string>();
      for (const vs of this.state.values()) {
        const plan = planOf(vs);
        const kk = keyOfKernel(plan.svc);
        wanted.add(kk);
        const have = kernel.get(kk);
        const dests = have ? new Map((await this.ipvs.getDests(have)).map((d) => [ipvsDestKey(d), d as IpvsDest] as const)) : undefined;
        await this.converge(have ? { svc: have, dests: dests ?? new Map() } : undefined, plan);
      }
      for (const [kk, s] of kernel) {
        if (wanted.has(kk)) continue;
        await this.ipvs.delService(s);
        this.repairs++;
      }
      return this.repairs;
    });
  }

  cleanup(): Promise<void> {
    return this.serialized(async () => {
      for (const s of await this.ipvs.getServices()) if (this.owns(s)) await this.ipvs.delService(s);
      if (this.opts.nft) await this.opts.nft.apply(masqDeleteScript(this.table) + markDeleteScript(this.markTable));
      this.marksSig = undefined;
      this.state.clear();
      this.masq.clear();
      this.nftReady = false;
    });
  }

  async close(): Promise<void> {
    await this.queue;
    await this.ipvs.close();
  }

  /** One call at a time: the kernel state and our record of it move together. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  /** First call only: sysctls and timeouts of the netns. */
  private async prepare(): Promise<void> {
    if (this.prepared) return;
    if (this.opts.sysctl) for (const [k, v] of Object.entries(IPVS_SYSCTLS)) await this.opts.sysctl.set(k, v);
    await this.ipvs.setTimeouts(this.opts.timeouts ?? DEFAULT_IPVS_TIMEOUTS);
    this.prepared = true;
  }

  private async doSyncAll(services: readonly VirtualService[]): Promise<void> {
    const want = new Map(services.map((vs) => [vsKey(vs), vs] as const));
    const plans = new Map([...want].map(([k, vs]) => [k, planOf(vs)] as const));
    this.checkMasq(want.values());
    await this.prepare();
    // nft first: the whole tables, atomically, with exactly the wanted elements.
    const masq = new Map([...want].filter(([, vs]) => vs.masquerade).map(([k, vs]) => [k, masqTarget(vs)] as const));
    await this.replaceMasq(masq);
    await this.writeMarks(want.values(), true);

    const kernel = new Map<string, IpvsServiceEntry>();
    for (const s of await this.ipvs.getServices()) if (this.owns(s)) kernel.set(keyOfKernel(s), s);
    this.state.clear();
    const wanted = new Set<string>();
    for (const [key, plan] of plans) {
      const kk = keyOfKernel(plan.svc);
      wanted.add(kk);
      const have = kernel.get(kk);
      const dests = have ? new Map((await this.ipvs.getDests(have)).map((d) => [ipvsDestKey(d), d as IpvsDest] as const)) : undefined;
      await this.converge(have ? { svc: have, dests: dests ?? new Map() } : undefined, plan);
      this.state.set(key, want.get(key) as VirtualService);
    }
    for (const [kk, s] of kernel) {
      if (wanted.has(kk)) continue;
      await this.ipvs.delService(s);
      this.repairs++;
    }
  }

  /**
   * The marking table for every-port services (fwmark.ts): rewritten whole when the set of
   * marked addresses or explicit ports changed (a service added or removed), never for a
   * backend change. `force`: write it (or delete it when empty) whatever was recorded.
   */
  private async writeMarks(services: Iterable<VirtualService>, force: boolean): Promise<void> {
    const marks: MarkTarget[] = [];
    const exact: ExactTarget[] = [];
    for (const vs of services) {
      if (vs.port === 0) marks.push({ address: vs.address, protocol: vs.protocol, mark: fwmarkOf(vs.address, vs.protocol) });
      else exact.push({ address: vs.address, protocol: vs.protocol, port: vs.port });
    }
    const sig = marks.length ? JSON.stringify([marks.map((m) => `${m.address}/${m.protocol}`).sort(), exact.map((e) => `${e.address}/${e.protocol}/${e.port}`).sort()]) : '';
    if (!force && sig === this.marksSig) return;
    if (marks.length && !this.opts.nft) throw invalid('every-port virtual services need the IPVS load balancer\'s nft (pass the \'nft\' option)');
    const nft = this.opts.nft;
    if (!nft) return;
    this.marksSig = undefined; // unknown until the kernel took it
    await nft.apply(marks.length ? markTableScript(this.markTable, marks, exact) : markDeleteScript(this.markTable));
    this.marksSig = sig;
  }

  private async doApply(upsert: readonly VirtualService[], remove: readonly string[]): Promise<void> {
    const removed = new Map(remove.map((k) => [k, parseVsKey(k)] as const));
    const plans = upsert.map((vs) => {
      const key = vsKey(vs);
      if (removed.has(key)) throw invalid(`virtual service ${key} is both upserted and removed`);
      return { key, vs, plan: planOf(vs) };
    });
    this.checkMasq(upsert);
    await this.prepare();

    const wantMasq = new Map(this.masq);
    for (const { key, vs } of plans) {
      if (vs.masquerade) wantMasq.set(key, masqTarget(vs));
      else wantMasq.delete(key);
    }
    for (const key of removed.keys()) wantMasq.delete(key);
    const adds = [...wantMasq].filter(([k]) => !this.masq.has(k));
    const dels = [...this.masq].filter(([k]) => !wantMasq.has(k));
    // SNAT must be in place before IPVS sends the first flow, and stay until the last is gone.
    if (adds.length || (!this.nftReady && wantMasq.size)) await this.updateMasq(adds, [], new Map([...this.masq, ...adds]));
    // Marks before a new every-port service takes flows (and its explicit ports unmarked first).
    const after = new Map(this.state);
    for (const k of removed.keys()) after.delete(k);
    for (const { key, vs } of plans) after.set(key, vs);
    await this.writeMarks(after.values(), false);

    for (const { key, vs, plan } of plans) {
      const prev = this.state.get(key);
      this.state.delete(key); // unknown until converged
      await this.converge(prev ? planOf(prev) : undefined, plan);
      this.state.set(key, vs);
    }
    for (const [key, t] of removed) {
      this.state.delete(key);
      await this.ipvs.delService(kernelKeyOf(t)); // absent = success, known or not
    }
    if (dels.length) await this.updateMasq([], dels, wantMasq);
  }

  /**
   * Bring one service from `prev` (what we believe the kernel holds; undefined = unknown) to
   * `want`, touching only what differs. Adds and reweights come before deletes, so replacing
   * a backend never leaves the service empty.
   */
  private async converge(prev: Plan | undefined, want: Plan): Promise<void> {
    let have = prev?.dests;
    if (!prev) {
      try {
        await this.ipvs.newService(want.svc);
        this.repairs++;
        have = new Map();
      } catch (e) {
        if (!isExists(e)) throw e;
        await this.ipvs.editService(want.svc);
      }
    } else if (!sameService(prev.svc, want.svc)) {
      try {
        await this.ipvs.editService(want.svc);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        await ensureService(this.ipvs, want.svc);
        have = undefined;
      }
    }
    // Unknown real servers: read them (O(this service), never O(all)).
    have ??= new Map((await this.ipvs.getDests(want.svc)).map((d) => [ipvsDestKey(d), d as IpvsDest] as const));
    for (const [k, d] of want.dests) {
      const h = have.get(k);
      if (!h) {
        await ensureDest(this.ipvs, want.svc, d);
        this.repairs++;
      } else if (!sameDest(h, d)) {
        this.repairs++;
        try {
          await this.ipvs.editDest(want.svc, d);
        } catch (e) {
          if (!isNotFound(e)) throw e;
          await ensureDest(this.ipvs, want.svc, d);
        }
      }
    }
    for (const [k, h] of have) {
      if (want.dests.has(k)) continue;
      await this.ipvs.delDest(want.svc, h);
      this.repairs++;
    }
  }

  private checkMasq(services: Iterable<VirtualService>): void {
    for (const vs of services) {
      if (vs.masquerade && !this.opts.nft) throw invalid(`virtual service ${vsKey(vs)} masquerades, but the IPVS load balancer has no nft (pass the 'nft' option)`);
    }
  }

  /** Forwarding on for the families that masquerade (replies are forwarded back to clients). */
  private async ensureForwarding(targets: Iterable<MasqTarget>): Promise<void> {
    if (!this.opts.sysctl) return;
    for (const t of targets) {
      const v6 = t.address.includes(':');
      if (v6 && !this.forwarding.v6) {
        await this.opts.sysctl.set('net.ipv6.conf.all.forwarding', 1);
        this.forwarding.v6 = true;
      } else if (!v6 && !this.forwarding.v4) {
        await this.opts.sysctl.set('net.ipv4.ip_forward', 1);
        this.forwarding.v4 = true;
      }
    }
  }

  /** Rewrite the whole table to hold exactly `masq` (one transaction). */
  private async replaceMasq(masq: Map<string, MasqTarget>): Promise<void> {
    if (!this.opts.nft) return;
    await this.ensureForwarding(masq.values());
    this.nftReady = false;
    await this.opts.nft.apply(masqTableScript(this.table, masq.values()));
    this.masq.clear();
    for (const [k, t] of masq) this.masq.set(k, t);
    this.nftReady = true;
  }

  /**
   * Add/delete elements in one transaction; when the table is not known to be right (first
   * use, or someone changed it and a delete failed), rewrite it whole as `after` instead.
   */
  private async updateMasq(adds: Array<[string, MasqTarget]>, dels: Array<[string, MasqTarget]>, after: Map<string, MasqTarget>): Promise<void> {
    const nft = this.opts.nft;
    if (!nft) return;
    if (!this.nftReady) return this.replaceMasq(after);
    await this.ensureForwarding(adds.map(([, t]) => t));
    try {
      await nft.apply(masqElementsScript(this.table, adds.map(([, t]) => t), dels.map(([, t]) => t)));
    } catch {
      // The transaction changed nothing; whatever drifted, the whole table is rewritten.
      return this.replaceMasq(after);
    }
    for (const [k] of dels) this.masq.delete(k);
    for (const [k, t] of adds) this.masq.set(k, t);
  }
}
