/**
 * Named network namespaces (compatible with `ip netns`: bind mounts under /run/netns) and
 * {@link NetnsWorker}, a thread that lives inside one namespace and runs requests there.
 *
 * Why a thread: Node has no setns, and setns(2) moves only the calling thread. A worker that
 * called setns (through koffi) opens its netlink and TCP/UDP sockets in that namespace, while
 * the main thread never moves. Creation is native as well (unshare + bind mount in a worker):
 * measured ~0.5 ms per namespace against ~3 ms for spawning `ip netns add`.
 */
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { KernelError } from '../errors.js';
import { toKernelError } from './errno.js';
import { detachMount } from './libc.js';
import { LINK_OPS_METHODS } from './link-ops-methods.js';
import type { LinkOps } from './netlink.js';
import { checkNetnsName, NETNS_DIR, netnsPath } from './paths.js';
import { fromWire, type Response, type WorkerInit } from './rpc.js';
import type { Sysctl } from './sysctl.js';

export { NETNS_DIR, netnsPath } from './paths.js';

/** Options of {@link NetnsWorker.start}. */
export interface NetnsWorkerOptions {
  /** Enter this netns: a name under /run/netns or an nsfs path such as `/proc/PID/ns/net`. */
  netns?: string;
  /** Create this named netns (if absent) and enter it. Exclusive with `netns`. */
  create?: string;
  /**
   * Handler modules loaded INSIDE the worker after it entered the netns: `{prefix: url}`.
   * A module exports `handlers: Record<string, (...args) => unknown>`; `call('prefix.name', ...)`
   * runs one. Arguments and results cross threads by structured clone. It may export
   * `shutdown()`, run by `close()`: it must close the module's sockets (and any npm `netlink`
   * socket it opened, whose teardown in a dying worker crashes the process). Inside the worker,
   * async fs and dns.lookup run on libuv's pool threads, which are NOT in the netns: read
   * `/proc/sys/net` and `/proc/thread-self/net` with sync fs.
   */
  modules?: Record<string, string | URL>;
  /** Let the process exit while this worker idles (no call pending). Default false. */
  unrefWhenIdle?: boolean;
}

/**
 * A worker thread living in one network namespace, driven by a small RPC.
 *
 * Ownership: the worker owns every socket it opens (netlink, listeners from handler modules);
 * they live in its netns and die with it. `close()` terminates the thread; a namespace is only
 * freed by the kernel once no thread or socket is left in it, so close workers before
 * `deleteNetns` if the namespace must really go away.
 * Errors: a failed call rejects with a KernelError (op, errno, stderr preserved across threads).
 */
export class NetnsWorker {
  /** Link operations executed inside the worker's netns (a {@link LinkOps} over RPC). */
  readonly links: LinkOps;
  /** sysctls of the worker's netns. */
  readonly sysctl: Sysctl;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void; method: string }>();
  private nextId = 1;
  private exited: KernelError | undefined;

  private constructor(
    private readonly worker: Worker,
    /** `net:[inode]` of the namespace the worker is in, as the worker itself read it. */
    readonly inode: string,
    /** Whether `create` made a new namespace (false: it existed and was entered). */
    readonly created: boolean | undefined,
    private readonly unrefWhenIdle: boolean,
  ) {
    this.links = proxy<LinkOps>(this, 'link', LINK_OPS_METHODS);
    this.sysctl = proxy<Sysctl>(this, 'sysctl', ['get', 'set']);
    worker.on('message', (m: Response) => this.settle(m));
    worker.on('error', (e) => this.fail(toKernelError('netns.worker', e)));
    worker.on('exit', (code) => this.fail(new KernelError('netns.worker', undefined, `worker exited (code ${code})`)));
    if (unrefWhenIdle) worker.unref();
  }

  /** Start a worker and wait until it has entered (or created) its netns and loaded its modules. */
  static async start(opts: NetnsWorkerOptions = {}): Promise<NetnsWorker> {
    if (opts.netns !== undefined && opts.create !== undefined) {
      throw new KernelError('netns.worker', 'EINVAL', 'give netns or create, not both');
    }
    const init: WorkerInit = {};
    if (opts.netns !== undefined) init.enter = netnsPath(opts.netns);
    if (opts.create !== undefined) init.create = opts.create;
    if (opts.modules) init.modules = Object.fromEntries(Object.entries(opts.modules).map(([k, v]) => [k, String(v)]));
    const worker = spawnWorker(init);
    // Remove exactly our listeners afterwards: Worker wires its message port through its own
    // 'newListener' handlers, which removeAllListeners() would silently break.
    let onMessage: (m: Response) => void = () => undefined;
    let onError: (e: Error) => void = () => undefined;
    let onExit: (code: number) => void = () => undefined;
    const ready = await new Promise<Response>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new KernelError('netns.worker', undefined, `worker exited during start-up (code ${code})`));
      worker.once('message', onMessage).once('error', onError).once('exit', onExit);
    }).catch((e: unknown) => {
      throw toKernelError('netns.worker', e);
    }).finally(() => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    });
    if (!ready.ok) {
      await worker.terminate();
      throw fromWire(ready.error, 'netns.worker');
    }
    const v = ready.value as { inode: string; created?: boolean };
    return new NetnsWorker(worker, v.inode, v.created, opts.unrefWhenIdle ?? false);
  }

  /**
   * Run `method` inside the worker: built-ins are `link.<LinkOps method>`, `sysctl.get|set`,
   * `sys.inode`; plus `<prefix>.<name>` from handler modules.
   */
  call(method: string, ...args: unknown[]): Promise<unknown> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      if (this.unrefWhenIdle && this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ id, method, args });
    });
  }

  /**
   * Stop the worker: it runs its modules' `shutdown` hooks and ends by itself; if it has not
   * exited within `graceMs` (a handler left a socket open), it is terminated. Calls still
   * pending reject. Idempotent.
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    // A worker that cannot shut down cleanly (or in time) is terminated all the same.
    const clean = this.call('sys.shutdown').then(() => exited, () => exited).then(() => 'clean' as const);
    const outcome = await Promise.race([clean, late]);
    clearTimeout(timer);
    this.fail(new KernelError('netns.worker', undefined, 'worker closed'));
    if (outcome === 'late') await this.worker.terminate();
  }

  private settle(m: Response): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.unrefWhenIdle && this.pending.size === 0) this.worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject(fromWire(m.error, p.method));
  }

  private fail(e: KernelError): void {
    this.exited ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

/** An object whose methods `m` call `prefix.m` in the worker. */
function proxy<T>(w: NetnsWorker, prefix: string, methods: readonly string[]): T {
  const o: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const m of methods) o[m] = (...args) => w.call(`${prefix}.${m}`, ...args);
  // The method list is checked against T where it is defined (link-ops-methods.ts).
  return o as T;
}

/**
 * Under tsx/vitest this module is TypeScript and the worker needs tsx's loader. Neither a .ts
 * worker filename nor an inherited `--import tsx` works on Node 20, so the worker is an eval'd
 * bootstrap that registers tsx's ESM API and then imports the entry.
 */
function spawnWorker(init: WorkerInit): Worker {
  const ts = import.meta.url.endsWith('.ts');
  const entry = new URL(ts ? './netns-worker.ts' : './netns-worker.js', import.meta.url);
  if (!ts) return new Worker(entry, { workerData: init });
  const api = JSON.stringify(tsxEsmApiUrl());
  const code = `import(${api}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { eval: true, workerData: init, execArgv: [] });
}

/** URL of tsx's ESM register API, resolved from tsx's package.json `exports` (a dev dependency). */
function tsxEsmApiUrl(): string {
  const pkgPath = createRequire(import.meta.url).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports?: Record<string, { import?: { default?: string } } | string> };
  const e = pkg.exports?.['./esm/api'];
  const target = typeof e === 'object' ? e.import?.default : undefined;
  if (!target) throw new KernelError('netns.worker', 'ENOENT', 'tsx has no ./esm/api export: cannot run the worker from TypeScript sources');
  return new URL(target, pathToFileURL(pkgPath)).href;
}

let admin: Promise<NetnsWorker> | undefined;

/**
 * Create the named netns unless it exists (idempotent), like `ip netns add` (bind mount
 * under /run/netns, visible to `ip netns list/exec`). Resolves true when it was created.
 * Runs in a shared helper worker (unshare must not touch the main thread); the helper never
 * keeps the process alive.
 */
export async function ensureNetns(name: string): Promise<boolean> {
  checkNetnsName('netns.create', name);
  admin ??= NetnsWorker.start({ unrefWhenIdle: true }).catch((e: unknown) => {
    admin = undefined;
    throw e;
  });
  const w = await admin;
  return (await w.call('netns.create', name)) as boolean;
}

/**
 * Delete the named netns like `ip netns del`: detach its bind mount and remove the file.
 * Absent = success. The kernel frees the namespace (and its links) once nothing holds it.
 */
export async function deleteNetns(name: string): Promise<void> {
  const op = 'netns.delete';
  checkNetnsName(op, name);
  const path = `${NETNS_DIR}/${name}`;
  detachMount(op, path);
  try {
    unlinkSync(path);
  } catch (e) {
    const err = toKernelError(op, e, name);
    if (err.errno !== 'ENOENT') throw err;
  }
}

/** Named namespaces (names under /run/netns) starting with `prefix`, sorted. */
export async function listNetns(prefix = ''): Promise<string[]> {
  try {
    return readdirSync(NETNS_DIR).filter((n) => n.startsWith(prefix)).sort();
  } catch (e) {
    const err = toKernelError('netns.list', e);
    if (err.errno === 'ENOENT') return [];
    throw err;
  }
}

/** Stop the shared helper behind {@link ensureNetns} (tests; it is unref'd anyway). */
export async function closeNetnsHelper(): Promise<void> {
  const w = admin;
  admin = undefined;
  if (w) await (await w).close();
}
