/**
 * {@link IpvsOps} over generic netlink with npm `netlink` (family `IPVS`): no `ipvsadm` is
 * spawned. Attribute layout: ipvs-codec.ts.
 *
 * Thread/netns ownership: an instance owns ONE generic-netlink socket, opened by
 * {@link GenlIpvs.open} in the calling thread's netns; IPVS state is per netns and the kernel
 * picks it from the socket, so the instance acts on that netns forever. Use it from that
 * thread only. For another netns from the host's main thread use `ipvsIn(netns)`
 * (netns-roamer.ts), which opens a socket inside the target for each call.
 *
 * Requests are serialized (npm `netlink` corrupts concurrent dumps on one socket), so each
 * carries a timeout (one lost reply must not stall every later request). Errors are
 * KernelErrors with op `ipvs.<method>` and the kernel's errno (see ipvs.ts for which);
 * ETIMEDOUT when the kernel did not answer in time.
 */
import { createGenericNetlink, FlagsGet, genl, type GenericNetlinkSocket } from 'netlink';
import { isNotFound, KernelError } from '../errors.js';
import { DEFAULT_NETLINK_TIMEOUT_MS, toKernelError } from './errno.js';
import type {
  IpvsDest, IpvsDestEntry, IpvsOps, IpvsService, IpvsServiceEntry, IpvsServiceKey, IpvsTimeouts,
} from './ipvs.js';
import {
  afOf, Cmd, decodeDest, decodeService, decodeTimeouts, destAttr, encode, IPVS_GENL_NAME, IPVS_GENL_VERSION,
  serviceAttr, timeoutAttrs,
} from './ipvs-codec.js';

/**
 * The IPVS family id. The controller answers ENOENT when ip_vs is not loaded; that becomes
 * EOPNOTSUPP ("this kernel cannot"), so `isNotFound` never mistakes a missing ip_vs for an
 * absent service and turns a delete into a silent success.
 */
async function resolveFamily(sock: GenericNetlinkSocket, timeout: number): Promise<number> {
  try {
    const [fam] = await sock.ctrlRequest(genl.Commands.GET_FAMILY, { familyName: IPVS_GENL_NAME }, { timeout });
    if (fam?.familyId === undefined) throw new KernelError('ipvs.open', 'ENOENT', 'no IPVS family in the answer');
    return fam.familyId;
  } catch (e) {
    const k = toKernelError('ipvs.open', e);
    if (k.errno === 'ENOENT') {
      throw new KernelError('ipvs.open', 'EOPNOTSUPP', 'the kernel has no IPVS generic-netlink family (load ip_vs: modprobe ip_vs)', { cause: e });
    }
    throw k;
  }
}

/** Real {@link IpvsOps}; see the module doc for its thread/netns ownership. */
export class GenlIpvs implements IpvsOps {
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(private readonly sock: GenericNetlinkSocket, private readonly family: number, private readonly timeout: number) {}

  /**
   * Open a socket in the calling thread's netns and resolve the IPVS family. Rejects with
   * `ipvs.open` EOPNOTSUPP when the kernel has no ip_vs ({@link hasIpvs} asks without throwing).
   * Every request (this one included) fails with ETIMEDOUT after `requestTimeoutMs` (default
   * {@link DEFAULT_NETLINK_TIMEOUT_MS}); `socket` lets tests inject a socket.
   */
  static async open(opts: { requestTimeoutMs?: number; socket?: GenericNetlinkSocket } = {}): Promise<GenlIpvs> {
    const sock = opts.socket ?? createGenericNetlink();
    const timeout = opts.requestTimeoutMs ?? DEFAULT_NETLINK_TIMEOUT_MS;
    try {
      return new GenlIpvs(sock, await resolveFamily(sock, timeout), timeout);
    } catch (e) {
      sock.socket.close();
      throw e;
    }
  }

  getServices(): Promise<IpvsServiceEntry[]> {
    const op = 'ipvs.getServices';
    return this.req(op, async () => (await this.send(Cmd.GET_SERVICE, [], true)).map((m) => decodeService(op, m)));
  }

  getDests(svc: IpvsServiceKey): Promise<IpvsDestEntry[]> {
    const op = 'ipvs.getDests';
    return this.req(op, async () => {
      const af = afOf(op, svc.address);
      const msgs = await this.send(Cmd.GET_DEST, encode(serviceAttr(op, svc, false)), true);
      return msgs.map((m) => decodeDest(op, m, af));
    }, svc);
  }

  newService(svc: IpvsService): Promise<void> {
    const op = 'ipvs.newService';
    return this.req(op, () => this.exec(Cmd.NEW_SERVICE, encode(serviceAttr(op, svc, true))), svc);
  }

  editService(svc: IpvsService): Promise<void> {
    const op = 'ipvs.editService';
    return this.req(op, () => this.exec(Cmd.SET_SERVICE, encode(serviceAttr(op, svc, true))), svc);
  }

  delService(svc: IpvsServiceKey): Promise<void> {
    const op = 'ipvs.delService';
    return absentIsFine(this.req(op, () => this.exec(Cmd.DEL_SERVICE, encode(serviceAttr(op, svc, false))), svc));
  }

  newDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void> {
    const op = 'ipvs.newDest';
    return this.req(op, () => this.exec(Cmd.NEW_DEST, encode(serviceAttr(op, svc, false), destAttr(op, dest, true))), svc, dest);
  }

  editDest(svc: IpvsServiceKey, dest: IpvsDest): Promise<void> {
    const op = 'ipvs.editDest';
    return this.req(op, () => this.exec(Cmd.SET_DEST, encode(serviceAttr(op, svc, false), destAttr(op, dest, true))), svc, dest);
  }

  delDest(svc: IpvsServiceKey, dest: Pick<IpvsDest, 'address' | 'port'>): Promise<void> {
    const op = 'ipvs.delDest';
    return absentIsFine(this.req(op, () => this.exec(Cmd.DEL_DEST, encode(serviceAttr(op, svc, false), destAttr(op, dest, false))), svc, dest));
  }

  flush(): Promise<void> {
    return this.req('ipvs.flush', () => this.exec(Cmd.FLUSH, []));
  }

  getTimeouts(): Promise<IpvsTimeouts> {
    return this.req('ipvs.getTimeouts', async () => {
      const [m] = await this.send(Cmd.GET_CONFIG, [], false);
      return decodeTimeouts(m ?? Buffer.alloc(0));
    });
  }

  setTimeouts(t: IpvsTimeouts): Promise<void> {
    return this.req('ipvs.setTimeouts', () => this.exec(Cmd.SET_CONFIG, encode(timeoutAttrs(t))));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.sock.socket.close();
  }

  /** A request expecting only an ACK. */
  private async exec(cmd: number, data: Uint8Array[]): Promise<void> {
    await this.send(cmd, data, false);
  }

  /** Send one request; resolves the attribute payloads of the answer's messages. */
  private async send(cmd: number, data: Uint8Array[], dump: boolean): Promise<Buffer[]> {
    const [msgs] = await this.sock.request(this.family, cmd, IPVS_GENL_VERSION, data, dump ? { flags: FlagsGet.DUMP, timeout: this.timeout } : { timeout: this.timeout });
    return msgs.map((m) => m.data);
  }

  /** Serialize `fn` behind earlier requests; failures become KernelErrors for `op`. */
  private req<T>(op: string, fn: () => Promise<T>, svc?: IpvsServiceKey, dest?: Pick<IpvsDest, 'address' | 'port'>): Promise<T> {
    if (this.closed) return Promise.reject(new KernelError(op, 'EBADF', 'the IPVS socket is closed'));
    const run = this.queue.then(fn).catch((e: unknown) => {
      throw toKernelError(op, e, describe(svc, dest));
    });
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }
}

function describe(svc?: IpvsServiceKey, dest?: Pick<IpvsDest, 'address' | 'port'>): string | undefined {
  if (!svc) return undefined;
  const s = svc.fwmark ? `fwmark ${svc.fwmark}` : `${svc.protocol} ${svc.address.includes(':') ? `[${svc.address}]` : svc.address}:${svc.port}`;
  return dest ? `${s} -> ${dest.address}:${dest.port}` : s;
}

// DEL_SERVICE of an absent service answers ESRCH, DEL_DEST of an absent dest ENOENT.
async function absentIsFine(p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/**
 * Whether the calling thread's kernel has IPVS: the generic-netlink family `IPVS` resolves
 * (ip_vs loaded). False when it does not; any other failure (no netlink at all) rejects.
 */
export async function hasIpvs(): Promise<boolean> {
  try {
    await (await GenlIpvs.open()).close();
    return true;
  } catch (e) {
    if (e instanceof KernelError && e.op === 'ipvs.open' && e.errno === 'EOPNOTSUPP') return false;
    throw e;
  }
}
