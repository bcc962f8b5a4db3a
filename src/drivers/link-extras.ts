/**
 * {@link LinkExtras} over rtnetlink: the two link operations LinkOps lacks (setting a MAC, a
 * VXLAN with the proxy flag). They belong in src/kernel's LinkOps; until they move there, this
 * is the only place in src/drivers that speaks netlink itself.
 *
 * Netns: like NetlinkLinkOps, a netlink socket acts on the netns of the thread that opens it.
 * {@link NetlinkLinkExtras} opens one per call on the calling thread; {@link workerLinkExtras}
 * runs the same code in a NetnsWorker that loaded this file as a handler module
 * (`modules: { [LINK_EXTRAS_PREFIX]: LINK_EXTRAS_MODULE }`). A socket per call, closed before
 * the call returns, also keeps npm `netlink` from crashing a worker that ends (kernel README).
 */
import { createRtNetlink, FlagsNew, ifla, type RtNetlinkSocket } from 'netlink';
import { KernelError } from '../errors.js';
import { DEFAULT_NETLINK_TIMEOUT_MS, errnoOf, kernelOp } from '../kernel/errno.js';
import type { NetnsWorker, VxlanSpec } from '../kernel/index.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes, normalizeMac } from '../kernel/inet.js';
import { flat, linkInfo } from '../kernel/rtnl-codec.js';
import type { LinkExtras } from './types.js';

/** Handler-module prefix under which a NetnsWorker serves these operations. */
export const LINK_EXTRAS_PREFIX = 'drvx';
/** URL of this module, for `NetnsWorker.start({ modules: { [LINK_EXTRAS_PREFIX]: LINK_EXTRAS_MODULE } })`. */
export const LINK_EXTRAS_MODULE: string = import.meta.url;

// Every request carries a timeout: a lost reply fails the call with ETIMEDOUT instead of hanging it.
const t = { timeout: DEFAULT_NETLINK_TIMEOUT_MS };

/** {@link LinkExtras} in the CALLING THREAD's netns (the host, on the main thread). */
export class NetlinkLinkExtras implements LinkExtras {
  async setMac(dev: string, mac: string): Promise<void> {
    const op = 'link.setMac';
    const address = macToBytes(op, mac);
    await withSocket(op, `${dev} address ${mac}`, async (s) => {
      const [m] = await s.getLink({}, { ifname: dev }, t);
      const index = m?.data.index;
      if (index === undefined) throw new KernelError(op, 'ENODEV', `${dev}: no such device`);
      if (m?.attrs.address && bytesToMac(m.attrs.address) === normalizeMac(op, mac)) return;
      await s.setLink({ index }, { address }, t);
    });
  }

  async ensureProxyVxlan(spec: VxlanSpec): Promise<void> {
    const op = 'link.ensureProxyVxlan';
    const local = spec.local === undefined ? undefined : ipToBytes(op, spec.local).bytes;
    const dstport = spec.dstport ?? 4789;
    await withSocket(op, spec.name, async (s) => {
      const port = Buffer.alloc(2);
      port.writeUInt16BE(dstport); // big-endian on the wire, unlike the other u16 attributes
      const data: ifla.Vxlan = { id: spec.vni, port, learning: spec.learning ? 1 : 0, proxy: 1 };
      if (local) data.local = local;
      if (spec.dev !== undefined) {
        const [d] = await s.getLink({}, { ifname: spec.dev }, t);
        if (d?.data.index === undefined) throw new KernelError(op, 'ENODEV', `${spec.dev}: no such device`);
        data.link = d.data.index;
      }
      const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo: linkInfo('vxlan', flat(ifla.formatVxlan(data))) };
      if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
      try {
        await s.newLink({}, attrs, { ...t, flags: FlagsNew.CREATE | FlagsNew.EXCL });
        return;
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw e;
      }
      // It exists: a success only if it is the same tunnel (the proxy flag cannot be changed later).
      const [have] = await s.getLink({}, { ifname: spec.name }, t);
      const info = have?.attrs.linkinfo ? ifla.parseInfo(have.attrs.linkinfo) : undefined;
      if (info?.kind !== 'vxlan' || !info.data) throw new KernelError(op, 'EBUSY', `${spec.name} exists but is a ${info?.kind ?? 'device'}, not a vxlan`);
      const v = ifla.parseVxlan(info.data);
      const diffs = [
        v.id !== spec.vni && `VNI ${v.id}`,
        (v.proxy ?? 0) === 0 && 'no proxy flag',
        (v.port?.readUInt16BE(0) ?? 0) !== dstport && `port ${v.port?.readUInt16BE(0)}`,
        spec.local !== undefined && (v.local ? bytesToIp(v.local) : undefined) !== spec.local && `local ${v.local ? bytesToIp(v.local) : 'unset'}`,
      ].filter((d): d is string => typeof d === 'string');
      if (diffs.length > 0) throw new KernelError(op, 'EBUSY', `${spec.name} exists with ${diffs.join(', ')}`);
    });
  }
}

/** Open a socket in the calling thread's netns, run `fn`, close it (also on failure). */
async function withSocket<T>(op: string, detail: string, fn: (s: RtNetlinkSocket) => Promise<T>): Promise<T> {
  const s = createRtNetlink();
  try {
    return await kernelOp(op, () => fn(s), detail);
  } finally {
    s.socket.close();
    // npm netlink frees the socket in a libuv close callback: let it run before anyone can end the thread.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const local = new NetlinkLinkExtras();

/** Worker-side handlers (loaded by NetnsWorker `modules`); arguments arrive by structured clone. */
export const handlers = {
  setMac: (dev: unknown, mac: unknown): Promise<void> => local.setMac(String(dev), String(mac)),
  ensureProxyVxlan: (spec: unknown): Promise<void> => local.ensureProxyVxlan(spec as VxlanSpec),
};

/**
 * {@link LinkExtras} executed inside `worker`'s netns. The worker must have been started with
 * `modules: { [prefix]: LINK_EXTRAS_MODULE }`.
 */
export function workerLinkExtras(worker: Pick<NetnsWorker, 'call'>, prefix = LINK_EXTRAS_PREFIX): LinkExtras {
  return {
    setMac: async (dev, mac) => void (await worker.call(`${prefix}.setMac`, dev, mac)),
    ensureProxyVxlan: async (spec) => void (await worker.call(`${prefix}.ensureProxyVxlan`, spec)),
  };
}
