/**
 * {@link NetnsRoamer}: ONE worker thread that acts in any number of network namespaces, one
 * request at a time, instead of a {@link NetnsWorker} started per namespace (a thread start
 * costs 80-95 ms compiled, 300-500 ms under tsx; a roaming request costs well under 1 ms).
 *
 * Per request the thread setns()es into the target (a name under /run/netns or an nsfs path;
 * or creates it, like `ip netns add`), opens an rtnetlink socket there, runs the request's
 * calls in order, closes the socket and setns()es back to its home netns (the netns of the
 * thread that started the roamer). Requests are serialized; no socket outlives its request,
 * so an idle roamer holds none (see README.md on npm `netlink`). Worker side:
 * netns-roamer-handlers.ts.
 *
 * ```ts
 * const roamer = await NetnsRoamer.start();
 * await roamer.ensureNetns('sbx-1', [['setUp', 'lo']]);      // create + configure: one request
 * const links = roamer.links('sbx-1');                       // a LinkOps acting inside sbx-1
 * await links.ensureAddress('eth0', '10.0.1.5/24');          // one request per call
 * const ipvs = roamer.ipvs('sbx-1');                         // IPVS of sbx-1 (or ipvsIn('sbx-1'))
 * await ipvs.setTimeouts({ tcp: 7500, tcpFin: 120, udp: 300 }); // one request per call
 * await roamer.run('sbx-1', [['setUp', 'eth0'], ['ensureRoute', { via: '10.0.1.1' }]]);  // one request
 * ```
 *
 * Not for handler modules with long-lived sockets (a DNS listener inside a sandbox): those
 * need a thread that stays in the namespace, i.e. a NetnsWorker.
 */
import { KernelError } from '../errors.js';
import { IPVS_OPS_METHODS, type IpvsOps } from './ipvs.js';
import { LINK_OPS_METHODS } from './link-ops-methods.js';
import type { LinkOps } from './netlink.js';
import { NetnsWorker } from './netns.js';
import { checkNetnsName, netnsPath } from './paths.js';
import type { Sysctl } from './sysctl.js';

/** The LinkOps methods a request may call (`close` belongs to the facade, not the kernel). */
export type RoamLinkMethod = Exclude<(typeof LINK_OPS_METHODS)[number], 'close'>;

/** The IpvsOps methods a request may call, as `ipvs.<method>` (`close` belongs to the facade). */
export type RoamIpvsMethod = Exclude<(typeof IPVS_OPS_METHODS)[number], 'close'>;

/**
 * One call of a request: a LinkOps method and its arguments (`['setUp', 'lo']`,
 * `['ensureRoute', { via: '10.0.1.1' }]`), a sysctl of the target netns, or an IPVS call
 * (`['ipvs.newDest', svc, dest]`: IPVS state is per netns, the socket is opened inside it).
 * Arguments cross threads by structured clone: a `NetnsRef` `{ fd }` stays valid (fds are
 * per process), names and paths are resolved by the worker.
 */
export type RoamCall =
  | { [M in RoamLinkMethod]: [M, ...Parameters<LinkOps[M]>] }[RoamLinkMethod]
  | ['sysctl.get', string]
  | ['sysctl.set', string, string | number]
  | { [M in RoamIpvsMethod]: [`ipvs.${M}`, ...Parameters<IpvsOps[M]>] }[RoamIpvsMethod];

/** What the main side posts (wire format, structured clone only). */
export interface RoamRequest {
  /** Target: a name under /run/netns, or an nsfs path (`/proc/PID/ns/net`). */
  netns: string;
  /** Create the named netns when absent (names only), like `ip netns add`. */
  create?: boolean;
  calls: RoamCall[];
}

/** The worker's answer to a {@link RoamRequest}: one result per call, in order. */
export interface RoamResult {
  /** Only for `create`: whether the netns was created (false: it existed). */
  created?: boolean;
  results: unknown[];
}

/** Options of {@link NetnsRoamer.start}. */
export interface NetnsRoamerOptions {
  /** Let the process exit while the roamer idles. Default true. */
  unrefWhenIdle?: boolean;
}

const PREFIX = 'roam';
/** URL of the worker-side handler module (TypeScript under tsx/vitest, JavaScript when built). */
const HANDLERS = new URL(import.meta.url.endsWith('.ts') ? './netns-roamer-handlers.ts' : './netns-roamer-handlers.js', import.meta.url).href;

/**
 * One long-lived worker thread serving link and sysctl calls in any netns; see the module doc.
 * Errors: a failed call rejects with the KernelError of the operation (op and errno kept, the
 * message names the netns); the calls before it in the same request stay done. A target that
 * does not exist rejects with `netns.enter` ENOENT (`isNotFound`).
 */
export class NetnsRoamer {
  private constructor(private readonly worker: NetnsWorker) {}

  /** Start the thread in the calling thread's netns (its home). */
  static async start(opts: NetnsRoamerOptions = {}): Promise<NetnsRoamer> {
    const worker = await NetnsWorker.start({ modules: { [PREFIX]: HANDLERS }, unrefWhenIdle: opts.unrefWhenIdle ?? true });
    return new NetnsRoamer(worker);
  }

  /** Run `calls` inside `netns` in ONE request (one setns, one socket); resolves their results in order. */
  async run(netns: string, calls: readonly RoamCall[]): Promise<unknown[]> {
    netnsPath(netns); // EINVAL for a bad name, before anything crosses the thread
    const res = (await this.worker.call(`${PREFIX}.run`, { netns, calls: [...calls] } satisfies RoamRequest)) as RoamResult;
    return res.results;
  }

  /**
   * Create the named netns unless it exists (like `ensureNetns`: bind mount under /run/netns,
   * visible to `ip netns`), then run `calls` inside it, all in ONE request.
   */
  async ensureNetns(name: string, calls: readonly RoamCall[] = []): Promise<{ created: boolean; results: unknown[] }> {
    checkNetnsName('netns.create', name);
    const res = (await this.worker.call(`${PREFIX}.run`, { netns: name, create: true, calls: [...calls] } satisfies RoamRequest)) as RoamResult;
    return { created: res.created ?? false, results: res.results };
  }

  /**
   * A {@link LinkOps} acting inside `netns` (e.g. a sandbox's `SandboxRef.links`): every method
   * is one request. Its `close()` only disables this facade; the roamer goes on.
   */
  links(netns: string): LinkOps {
    netnsPath(netns);
    return linksFacade((call) => this.run(netns, [call]).then((r) => r[0]));
  }

  /** sysctls of `netns` (read and written by the roaming thread while inside it). */
  sysctl(netns: string): Sysctl {
    netnsPath(netns);
    return {
      get: async (key) => (await this.run(netns, [['sysctl.get', key]]))[0] as string,
      set: async (key, value) => void (await this.run(netns, [['sysctl.set', key, value]])),
    };
  }

  /**
   * An {@link IpvsOps} acting on the IPVS of `netns`: every method is one request (setns, a
   * generic-netlink socket opened inside, the call, socket closed). Batch a burst of calls in
   * one request with `run(netns, [['ipvs.newService', svc], ['ipvs.newDest', svc, d], ...])`.
   * Its `close()` only disables this facade.
   */
  ipvs(netns: string): IpvsOps {
    netnsPath(netns);
    return ipvsFacade((call) => this.run(netns, [call]).then((r) => r[0]));
  }

  /** `net:[inode]` of the thread's home netns and of where it is now, both read between requests. */
  async where(): Promise<{ home: string; current: string }> {
    return (await this.worker.call(`${PREFIX}.where`)) as { home: string; current: string };
  }

  /** End the thread once the accepted requests are done. Idempotent. */
  close(): Promise<void> {
    return this.worker.close();
  }
}

/** A LinkOps whose every method becomes one call through `exec`. */
function linksFacade(exec: (call: RoamCall) => Promise<unknown>): LinkOps {
  let closed = false;
  const o: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const m of LINK_OPS_METHODS) {
    if (m === 'close') continue;
    o[m] = (...args) => {
      if (closed) return Promise.reject(new KernelError(`link.${m}`, 'EBADF', 'LinkOps is closed'));
      return exec([m, ...args] as RoamCall);
    };
  }
  o['close'] = async () => {
    closed = true;
  };
  // Every LinkOps method is in LINK_OPS_METHODS (checked in link-ops-methods.ts).
  return o as unknown as LinkOps;
}

/** An IpvsOps whose every method becomes one call through `exec`. */
function ipvsFacade(exec: (call: RoamCall) => Promise<unknown>): IpvsOps {
  let closed = false;
  const o: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const m of IPVS_OPS_METHODS) {
    if (m === 'close') continue;
    o[m] = (...args) => {
      if (closed) return Promise.reject(new KernelError(`ipvs.${m}`, 'EBADF', 'IpvsOps is closed'));
      return exec([`ipvs.${m}`, ...args] as RoamCall);
    };
  }
  o['close'] = async () => {
    closed = true;
  };
  // Every IpvsOps method is in IPVS_OPS_METHODS (checked in ipvs.ts).
  return o as unknown as IpvsOps;
}

let shared: Promise<NetnsRoamer> | undefined;

/**
 * The process-wide roamer, started on first use in the calling thread's netns (the host, for
 * an agent); it never keeps the process alive. Close it with {@link closeSharedNetnsRoamer}.
 */
export function sharedNetnsRoamer(): Promise<NetnsRoamer> {
  shared ??= NetnsRoamer.start({ unrefWhenIdle: true }).catch((e: unknown) => {
    shared = undefined;
    throw e;
  });
  return shared;
}

/** {@link NetnsRoamer.links} of the shared roamer (started on the first call). */
export function netnsLinks(netns: string): LinkOps {
  netnsPath(netns);
  return linksFacade(async (call) => (await (await sharedNetnsRoamer()).run(netns, [call]))[0]);
}

/**
 * The IPVS of `netns` (a name under /run/netns or an nsfs path), reached from any thread
 * through the shared roamer: each call is one request that enters the netns, opens a
 * generic-netlink socket there, runs, closes it and comes home. For an agent's load balancer
 * in a sandbox: `new IpvsLoadBalancer({ ipvs: ipvsIn('sbx-1'), sysctl: netnsSysctl('sbx-1') })`.
 */
export function ipvsIn(netns: string): IpvsOps {
  netnsPath(netns);
  return ipvsFacade(async (call) => (await (await sharedNetnsRoamer()).run(netns, [call]))[0]);
}

/** {@link NetnsRoamer.sysctl} of the shared roamer: sysctls of `netns`, one request per call. */
export function netnsSysctl(netns: string): Sysctl {
  netnsPath(netns);
  const run = async (call: RoamCall): Promise<unknown> => (await (await sharedNetnsRoamer()).run(netns, [call]))[0];
  return {
    get: async (key) => (await run(['sysctl.get', key])) as string,
    set: async (key, value) => void (await run(['sysctl.set', key, value])),
  };
}

/** Stop the shared roamer (tests, orderly shutdown); the next use starts a new one. */
export async function closeSharedNetnsRoamer(): Promise<void> {
  const r = shared;
  shared = undefined;
  if (r) await (await r.catch(() => undefined))?.close();
}
