/**
 * Worker side of {@link NetnsRoamer} (netns-roamer.ts): a handler module loaded into a
 * NetnsWorker that stays in its HOME netns (the netns of the thread that started it) and
 * visits other namespaces one request at a time.
 *
 * One request = enter the target (setns by path, or unshare + bind mount to create it), open
 * an rtnetlink socket there (and, for `ipvs.*` calls, a generic-netlink IPVS socket: IPVS state
 * is per netns and follows the socket), run the request's calls in order, close the sockets,
 * let npm `netlink` free them (a libuv close callback), setns back home, reply. So:
 * - no socket outlives its request: an idle roamer holds none, and the thread may end safely
 *   (npm `netlink` crashes the process when a worker dies with one open);
 * - every socket is used only in the netns it was created in;
 * - requests are strictly serialized (the thread's netns is state shared by all of them),
 *   although NetnsWorker starts handlers as messages arrive.
 * After every request the thread checks it is home again; if it cannot get back, it refuses
 * all further requests (EIO) rather than act on the wrong namespace.
 */
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { KernelError } from '../errors.js';
import { toKernelError } from './errno.js';
import { IPVS_OPS_METHODS } from './ipvs.js';
import { GenlIpvs } from './ipvs-genl.js';
import { enterNetns } from './libc.js';
import { LINK_OPS_METHODS } from './link-ops-methods.js';
import type { RoamLinkMethod, RoamRequest, RoamResult } from './netns-roamer.js';
import { createOrEnterNetns, enterNetnsPath } from './netns-enter.js';
import { netnsPath } from './paths.js';
import { NetlinkLinkOps } from './rtnl-link-ops.js';
import { ProcSysctl } from './sysctl.js';

const SELF = '/proc/thread-self/ns/net';
const LINK_METHODS: ReadonlySet<string> = new Set(LINK_OPS_METHODS.filter((m) => m !== 'close'));
const IPVS_METHODS: ReadonlySet<string> = new Set(IPVS_OPS_METHODS.filter((m) => m !== 'close').map((m) => `ipvs.${m}`));

// Loaded after the NetnsWorker's start-up, which entered nothing: this is the home netns.
const home = openSync(SELF, 'r');
const homeInode = readlinkSync(SELF);
let stranded: KernelError | undefined;
let chain: Promise<unknown> = Promise.resolve();
const sysctl = new ProcSysctl();

function goHome(): void {
  try {
    enterNetns(home);
    const now = readlinkSync(SELF);
    if (now !== homeInode) throw new KernelError('netns.roam', 'EIO', `back in ${now}, not home ${homeInode}`);
  } catch (e) {
    stranded = new KernelError('netns.roam', 'EIO', `the roaming thread cannot return to its home netns: ${e instanceof Error ? e.message : String(e)}`);
    throw stranded;
  }
}

/** Say in which netns a failure happened (the kernel's errno and op are kept). */
function located(e: unknown, netns: string): KernelError {
  const k = toKernelError('netns.roam', e);
  const prefix = `${k.op}: `;
  const message = k.message.startsWith(prefix) ? k.message.slice(prefix.length) : k.message;
  return new KernelError(k.op, k.errno, `${message} (in netns ${netns})`, { stderr: k.stderr, cause: k });
}

async function runCalls(req: RoamRequest): Promise<unknown[]> {
  const results: unknown[] = [];
  let ops: NetlinkLinkOps | undefined;
  let ipvs: GenlIpvs | undefined;
  try {
    for (const [method, ...args] of req.calls) {
      if (method === 'sysctl.get') results.push(await sysctl.get(String(args[0])));
      else if (method === 'sysctl.set') results.push(await sysctl.set(String(args[0]), String(args[1])));
      else if (LINK_METHODS.has(method)) {
        ops ??= new NetlinkLinkOps(); // opened here, inside the target netns
        const fn = ops[method as RoamLinkMethod] as (...a: unknown[]) => Promise<unknown>;
        results.push(await fn.apply(ops, args));
      } else if (IPVS_METHODS.has(method)) {
        ipvs ??= await GenlIpvs.open(); // opened here, inside the target netns
        const fn = ipvs[method.slice('ipvs.'.length) as keyof GenlIpvs] as (...a: unknown[]) => Promise<unknown>;
        results.push(await fn.apply(ipvs, args));
      } else throw new KernelError('netns.roam', 'ENOSYS', `no such call ${String(method)}`);
    }
  } finally {
    if (ops) await ops.close();
    if (ipvs) await ipvs.close();
    // A socket is freed in a libuv close callback: let it run before leaving or replying.
    if (ops || ipvs) await new Promise((resolve) => setImmediate(resolve));
  }
  return results;
}

async function roamOnce(req: RoamRequest): Promise<RoamResult> {
  if (stranded) throw stranded;
  if (typeof req?.netns !== 'string' || !Array.isArray(req.calls)) {
    throw new KernelError('netns.roam', 'EINVAL', 'a request is { netns: string, create?: boolean, calls: [...] }');
  }
  let created: boolean | undefined;
  if (req.create) created = createOrEnterNetns(req.netns, goHome);
  else enterNetnsPath(netnsPath(req.netns));
  let results: unknown[];
  try {
    results = await runCalls(req);
  } catch (e) {
    throw located(e, req.netns);
  } finally {
    goHome();
  }
  return created === undefined ? { results } : { created, results };
}

/** Queue `fn` behind every request already accepted. */
function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = chain.then(fn);
  chain = run.then(() => undefined, () => undefined);
  return run;
}

/** Handlers, called by the main side as `<prefix>.<name>` through NetnsWorker.call. */
export const handlers = {
  /** Run one {@link RoamRequest}. */
  run: (req: unknown): Promise<RoamResult> => serialized(() => roamOnce(req as RoamRequest)),
  /** `net:[inode]` of home and of where the thread is now, between requests. */
  where: (): Promise<{ home: string; current: string }> => serialized(async () => ({ home: homeInode, current: readlinkSync(SELF) })),
};

/** Run by NetnsWorker.close(): finish accepted requests, release the home fd. */
export async function shutdown(): Promise<void> {
  await chain;
  closeSync(home);
}
