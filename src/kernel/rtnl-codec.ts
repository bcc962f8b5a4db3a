/**
 * Encoding/decoding of the rtnetlink attributes npm `netlink` leaves as raw Buffers.
 *
 * `netlink` 0.3.0 types IFLA_LINKINFO, IFLA_INFO_DATA, VETH_INFO_PEER and IFLA_LINK as opaque
 * Buffers; it does ship the per-kind encoders (formatInfo, formatVxlan, formatMacvlan,
 * formatVethInfo), which emit attribute *streams*: {@link flat} turns one into the Buffer the
 * outer attribute wants. Pure functions; no socket here.
 */
import { AttrStream, ifla, rt, type StreamData } from 'netlink';
import { bytesToIp, bytesToMac } from './inet.js';
import type { LinkInfo, LinkStats, MacvlanMode, VxlanInfo } from './netlink.js';

/** Concatenate an attribute stream into one Buffer (the payload of a nested attribute). */
export function flat(data: StreamData): Buffer {
  const s = new AttrStream();
  s.emit(data);
  return Buffer.concat(s.bufs);
}

/** IFLA_LINKINFO payload: `{kind, data}`. */
export function linkInfo(kind: string, data?: Buffer): Buffer {
  return flat(ifla.formatInfo(data ? { kind, data } : { kind }));
}

/** VETH_INFO_PEER payload: an ifinfomsg followed by the peer's own IFLA_* attributes. */
export function vethPeer(attrs: ifla.LinkAttrs): Buffer {
  return flat(ifla.formatVethInfo({ peer: Buffer.concat([rt.formatLink({}), flat(ifla.formatLinkAttrs(attrs))]) }));
}

/** IFLA_INFO_DATA of a vxlan. `dstport` is big-endian on the wire, unlike the other u16s. */
export function vxlanData(v: { vni: number; local?: Buffer; dstport: number; learning: boolean; devIndex?: number }): Buffer {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(v.dstport);
  const attrs: ifla.Vxlan = { id: v.vni, port, learning: v.learning ? 1 : 0 };
  if (v.local) attrs.local = v.local;
  if (v.devIndex !== undefined) attrs.link = v.devIndex;
  return flat(ifla.formatVxlan(attrs));
}

const MACVLAN_MODE: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8 };

/** IFLA_INFO_DATA of a macvlan. */
export function macvlanData(mode: MacvlanMode): Buffer {
  return flat(ifla.formatMacvlan({ mode: MACVLAN_MODE[mode] }));
}

/** A u32 attribute payload in host order (IFLA_LINK is typed as a Buffer by the library). */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function stats(s: ifla.LinkStats64 | undefined): LinkStats {
  const n = (x: bigint | undefined): number => Number(x ?? 0n);
  return {
    rxPackets: n(s?.rxPackets),
    txPackets: n(s?.txPackets),
    rxBytes: n(s?.rxBytes),
    txBytes: n(s?.txBytes),
    rxDropped: n(s?.rxDropped),
    txDropped: n(s?.txDropped),
  };
}

function vxlanInfo(data: Buffer): VxlanInfo {
  const v = ifla.parseVxlan(data);
  return {
    vni: v.id ?? 0,
    local: v.local ? bytesToIp(v.local) : undefined,
    dstport: v.port && v.port.length >= 2 ? v.port.readUInt16BE(0) : 0,
    learning: (v.learning ?? 0) !== 0,
    devIndex: v.link,
  };
}

/** A link message to a {@link LinkInfo}; `names` maps indexes to names for `master`. */
export function toLinkInfo(m: rt.LinkMessage, names: ReadonlyMap<number, string>): LinkInfo {
  const info = m.attrs.linkinfo ? ifla.parseInfo(m.attrs.linkinfo) : undefined;
  const out: LinkInfo = {
    name: m.attrs.ifname ?? '',
    index: m.data.index ?? 0,
    kind: info?.kind,
    mtu: m.attrs.mtu ?? 0,
    up: m.data.flags?.up === true,
    mac: m.attrs.address && m.attrs.address.length === 6 ? bytesToMac(m.attrs.address) : undefined,
    master: m.attrs.master ? names.get(m.attrs.master) ?? `#${m.attrs.master}` : undefined,
    stats: stats(m.attrs.stats64),
  };
  if (info?.kind === 'vxlan' && info.data) out.vxlan = vxlanInfo(info.data);
  return out;
}

/** NUD state flags to their names (`{permanent: true}` -> `['permanent']`). */
export function stateNames(s: rt.NeighborState | undefined): string[] {
  if (!s) return [];
  return Object.entries(s)
    .filter(([k, v]) => v === true && !k.startsWith('__'))
    .map(([k]) => k);
}
