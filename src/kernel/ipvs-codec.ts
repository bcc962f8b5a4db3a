/**
 * Encoding and decoding of IPVS generic-netlink attributes, after the kernel uapi header
 * `linux/ip_vs.h` (Debian's linux-libc-dev) and what `net/netfilter/ipvs/ip_vs_ctl.c` expects.
 * Pure functions (no socket), so they are unit-tested on a kernel without ip_vs.
 *
 * Layout notes the header does not spell out:
 * - addresses are a 16-byte `union nf_inet_addr` (IPv4 in the first 4 bytes);
 * - ports and the IPv4 netmask are big-endian; everything else is host-endian;
 * - an IPv6 netmask is a prefix length (1..128) in a host-endian u32;
 * - `IPVS_SVC_ATTR_FLAGS` is `struct ip_vs_flags {flags, mask}`: we always send mask ~0, so the
 *   flags we send are the flags the service gets (the kernel adds HASHED);
 * - a "full" service (NEW/SET) must carry scheduler, flags, timeout and netmask; a full dest
 *   (NEW/SET) forwarding method, weight and both thresholds.
 */
import {
  AttrStream, getString, getU16, getU16be, getU32, getU64, parseAttributes, putString, putU16, putU16be, putU32,
} from 'netlink';
import { KernelError } from '../errors.js';
import { AF_INET, AF_INET6, bytesToIp, ipToBytes } from './inet.js';
import type {
  IpvsDest, IpvsDestEntry, IpvsForward, IpvsProtocol, IpvsService, IpvsServiceEntry, IpvsServiceFlags, IpvsServiceKey,
  IpvsStats, IpvsTimeouts,
} from './ipvs.js';

/** Generic-netlink family name and version (`IPVS_GENL_NAME`, `IPVS_GENL_VERSION`). */
export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

/** `IPVS_CMD_*`. */
export const Cmd = {
  NEW_SERVICE: 1, SET_SERVICE: 2, DEL_SERVICE: 3, GET_SERVICE: 4,
  NEW_DEST: 5, SET_DEST: 6, DEL_DEST: 7, GET_DEST: 8,
  SET_CONFIG: 12, GET_CONFIG: 13, FLUSH: 17,
} as const;

/** `IPVS_CMD_ATTR_*`. */
const CmdAttr = { SERVICE: 1, DEST: 2, TIMEOUT_TCP: 4, TIMEOUT_TCP_FIN: 5, TIMEOUT_UDP: 6 } as const;
/** `IPVS_SVC_ATTR_*`. */
const Svc = { AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9, STATS: 10, STATS64: 12 } as const;
/** `IPVS_DEST_ATTR_*`. */
const Dest = {
  ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8,
  PERSIST_CONNS: 9, STATS: 10, ADDR_FAMILY: 11, STATS64: 12,
} as const;
/** `IPVS_STATS_ATTR_*`. */
const Stats = { CONNS: 1, INPKTS: 2, OUTPKTS: 3, INBYTES: 4, OUTBYTES: 5, CPS: 6 } as const;

/** `IP_VS_SVC_F_*`. */
const F_PERSISTENT = 0x1;
const F_HASHED = 0x2;
const F_ONEPACKET = 0x4;
const F_SH_FALLBACK = 0x8;
const F_SH_PORT = 0x10;

const PROTO: Record<IpvsProtocol, number> = { tcp: 6, udp: 17, sctp: 132 };
const FORWARD: Record<IpvsForward, number> = { masq: 0, local: 1, tunnel: 2, route: 3 };
const SCHED_MAX = 16; // IP_VS_SCHEDNAME_MAXLEN, with the NUL

type Attrs = Map<number, Buffer>;

/** The attributes of a stream, by type (the last one wins, as in the kernel's nla_parse). */
export function attrMap(data: Buffer): Attrs {
  const m: Attrs = new Map();
  parseAttributes(data, (a) => m.set(a.type, a.data));
  return m;
}

function familyOf(op: string, address: string): { af: number; bytes: Buffer } {
  const { family, bytes } = ipToBytes(op, address);
  const full = Buffer.alloc(16);
  bytes.copy(full);
  return { af: family, bytes: full };
}

function need<T>(op: string, v: T | undefined, what: string): T {
  if (v === undefined) throw new KernelError(op, 'EPROTO', `the kernel's answer has no ${what}`);
  return v;
}

function checkPort(op: string, port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new KernelError(op, 'EINVAL', `port ${port} is out of range`);
  return port;
}

function flagBits(f: IpvsServiceFlags): number {
  return (f.persistent ? F_PERSISTENT : 0) | (f.onePacket ? F_ONEPACKET : 0) | (f.shFallback ? F_SH_FALLBACK : 0) | (f.shPort ? F_SH_PORT : 0);
}

function netmaskBytes(op: string, af: number, netmask: string): Buffer {
  if (af === AF_INET6) {
    const plen = Number(netmask);
    if (!/^\d+$/.test(netmask) || plen < 1 || plen > 128) throw new KernelError(op, 'EINVAL', `IPv6 netmask must be a prefix length 1..128, not '${netmask}'`);
    return putU32(plen);
  }
  const { family, bytes } = ipToBytes(op, netmask);
  if (family !== AF_INET) throw new KernelError(op, 'EINVAL', `IPv4 netmask must be dotted, not '${netmask}'`);
  return bytes;
}

/**
 * The nested `IPVS_CMD_ATTR_SERVICE` of a request. `full` (NEW/SET) adds scheduler, flags,
 * timeout and netmask; without it only the identity is sent (DEL, GET_DEST, dest commands).
 */
export function serviceAttr(op: string, svc: IpvsServiceKey | IpvsService, full: boolean): (out: AttrStream) => void {
  const { af, bytes } = familyOf(op, svc.address);
  return (out) => out.push(CmdAttr.SERVICE, (s: AttrStream) => {
    s.push(Svc.AF, putU16(af));
    if (svc.fwmark) s.push(Svc.FWMARK, putU32(svc.fwmark));
    else {
      const proto = PROTO[svc.protocol];
      if (proto === undefined) throw new KernelError(op, 'EINVAL', `unknown protocol '${String(svc.protocol)}'`);
      s.push(Svc.PROTOCOL, putU16(proto));
      s.push(Svc.ADDR, bytes);
      s.push(Svc.PORT, putU16be(checkPort(op, svc.port)));
    }
    if (!full) return;
    const f = svc as IpvsService;
    if (!f.scheduler || Buffer.byteLength(f.scheduler) >= SCHED_MAX) throw new KernelError(op, 'EINVAL', `bad scheduler name '${f.scheduler}'`);
    s.push(Svc.SCHED_NAME, putString(f.scheduler));
    s.push(Svc.FLAGS, Buffer.concat([putU32(flagBits(f.flags)), putU32(0xffffffff)]));
    s.push(Svc.TIMEOUT, putU32(f.timeout));
    s.push(Svc.NETMASK, netmaskBytes(op, af, f.netmask));
  });
}

/** The nested `IPVS_CMD_ATTR_DEST` of a request; `full` for NEW/SET. */
export function destAttr(op: string, dest: Pick<IpvsDest, 'address' | 'port'> | IpvsDest, full: boolean): (out: AttrStream) => void {
  const { af, bytes } = familyOf(op, dest.address);
  return (out) => out.push(CmdAttr.DEST, (s: AttrStream) => {
    s.push(Dest.ADDR, bytes);
    s.push(Dest.PORT, putU16be(checkPort(op, dest.port)));
    s.push(Dest.ADDR_FAMILY, putU16(af));
    if (!full) return;
    const d = dest as IpvsDest;
    const fwd = FORWARD[d.forward];
    if (fwd === undefined) throw new KernelError(op, 'EINVAL', `unknown forwarding method '${String(d.forward)}'`);
    if (!Number.isInteger(d.weight) || d.weight < 0 || d.weight > 65535) throw new KernelError(op, 'EINVAL', `weight ${d.weight} is out of range 0..65535`);
    s.push(Dest.FWD_METHOD, putU32(fwd));
    s.push(Dest.WEIGHT, putU32(d.weight));
    s.push(Dest.U_THRESH, putU32(d.upperThreshold));
    s.push(Dest.L_THRESH, putU32(d.lowerThreshold));
  });
}

/** Top-level timeout attributes of SET_CONFIG (0 fields are left out: "unchanged"). */
export function timeoutAttrs(t: IpvsTimeouts): (out: AttrStream) => void {
  return (out) => {
    if (t.tcp) out.push(CmdAttr.TIMEOUT_TCP, putU32(t.tcp));
    if (t.tcpFin) out.push(CmdAttr.TIMEOUT_TCP_FIN, putU32(t.tcpFin));
    if (t.udp) out.push(CmdAttr.TIMEOUT_UDP, putU32(t.udp));
  };
}

/** Attribute bytes of a request built from the given parts, in order. */
export function encode(...parts: Array<(out: AttrStream) => void>): Uint8Array[] {
  const out = new AttrStream();
  for (const p of parts) p(out);
  return out.bufs;
}

function decodeStats(attrs: Attrs): IpvsStats {
  // STATS64 (kernel >= 4.1) has every counter as u64; the old STATS has u32 counts.
  // (Service and dest use the same attribute numbers for both.)
  const s64 = attrs.get(Svc.STATS64);
  const wide = s64 !== undefined;
  const raw = s64 ?? attrs.get(Svc.STATS);
  const m = raw ? attrMap(raw) : new Map<number, Buffer>();
  const num = (type: number, u64: boolean): number => {
    const b = m.get(type);
    if (!b) return 0;
    return u64 || b.length === 8 ? Number(getU64(b)) : getU32(b);
  };
  return {
    conns: num(Stats.CONNS, wide), inPkts: num(Stats.INPKTS, wide), outPkts: num(Stats.OUTPKTS, wide),
    inBytes: num(Stats.INBYTES, true), outBytes: num(Stats.OUTBYTES, true), cps: num(Stats.CPS, wide),
  };
}

function addrOf(op: string, af: number, raw: Buffer | undefined): string {
  const b = need(op, raw, 'address');
  return bytesToIp(af === AF_INET6 ? b.subarray(0, 16) : b.subarray(0, 4));
}

function protocolOf(n: number | undefined): IpvsProtocol {
  const hit = (Object.keys(PROTO) as IpvsProtocol[]).find((k) => PROTO[k] === n);
  return hit ?? 'tcp';
}

/** One service of a GET_SERVICE dump message (its attribute payload). */
export function decodeService(op: string, payload: Buffer): IpvsServiceEntry {
  const top = attrMap(payload);
  const a = attrMap(need(op, top.get(CmdAttr.SERVICE), 'service attribute'));
  const af = getU16(need(op, a.get(Svc.AF), 'service family'));
  const fwmark = a.get(Svc.FWMARK) ? getU32(a.get(Svc.FWMARK) as Buffer) : 0;
  const flagsRaw = a.get(Svc.FLAGS);
  const flags = flagsRaw ? getU32(flagsRaw.subarray(0, 4)) : 0;
  const nm = a.get(Svc.NETMASK);
  const svc: IpvsServiceEntry = {
    protocol: protocolOf(a.get(Svc.PROTOCOL) ? getU16(a.get(Svc.PROTOCOL) as Buffer) : undefined),
    address: fwmark ? (af === AF_INET6 ? '::' : '0.0.0.0') : addrOf(op, af, a.get(Svc.ADDR)),
    port: a.get(Svc.PORT) ? getU16be(a.get(Svc.PORT) as Buffer) : 0,
    scheduler: a.get(Svc.SCHED_NAME) ? getString(a.get(Svc.SCHED_NAME) as Buffer) : '',
    flags: {},
    timeout: a.get(Svc.TIMEOUT) ? getU32(a.get(Svc.TIMEOUT) as Buffer) : 0,
    netmask: nm === undefined ? '' : af === AF_INET6 ? String(getU32(nm)) : bytesToIp(nm.subarray(0, 4)),
    hashed: (flags & F_HASHED) !== 0,
    stats: decodeStats(a),
  };
  if (fwmark) svc.fwmark = fwmark;
  if (flags & F_PERSISTENT) svc.flags.persistent = true;
  if (flags & F_ONEPACKET) svc.flags.onePacket = true;
  if (flags & F_SH_FALLBACK) svc.flags.shFallback = true;
  if (flags & F_SH_PORT) svc.flags.shPort = true;
  return svc;
}

/** One real server of a GET_DEST dump message; `svcAf` is the family of its service. */
export function decodeDest(op: string, payload: Buffer, svcAf: number): IpvsDestEntry {
  const top = attrMap(payload);
  const a = attrMap(need(op, top.get(CmdAttr.DEST), 'dest attribute'));
  const u32 = (t: number): number => (a.get(t) ? getU32(a.get(t) as Buffer) : 0);
  const af = a.get(Dest.ADDR_FAMILY) ? getU16(a.get(Dest.ADDR_FAMILY) as Buffer) : svcAf;
  const fwd = u32(Dest.FWD_METHOD) & 0x7;
  return {
    address: addrOf(op, af, a.get(Dest.ADDR)),
    port: getU16be(need(op, a.get(Dest.PORT), 'dest port')),
    weight: u32(Dest.WEIGHT),
    forward: (Object.keys(FORWARD) as IpvsForward[]).find((k) => FORWARD[k] === fwd) ?? 'masq',
    upperThreshold: u32(Dest.U_THRESH),
    lowerThreshold: u32(Dest.L_THRESH),
    activeConns: u32(Dest.ACTIVE_CONNS),
    inactConns: u32(Dest.INACT_CONNS),
    persistConns: u32(Dest.PERSIST_CONNS),
    stats: decodeStats(a),
  };
}

/** The timeouts of a GET_CONFIG answer. */
export function decodeTimeouts(payload: Buffer): IpvsTimeouts {
  const a = attrMap(payload);
  const u32 = (t: number): number => (a.get(t) ? getU32(a.get(t) as Buffer) : 0);
  return { tcp: u32(CmdAttr.TIMEOUT_TCP), tcpFin: u32(CmdAttr.TIMEOUT_TCP_FIN), udp: u32(CmdAttr.TIMEOUT_UDP) };
}

/** AF_INET / AF_INET6 of an address (for decoding the dests of a service). */
export function afOf(op: string, address: string): number {
  return ipToBytes(op, address).family;
}
