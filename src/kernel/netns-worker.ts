/**
 * Worker-thread side of {@link NetnsWorker} (never imported by the main thread's code paths).
 *
 * Start-up order matters: the thread enters (or creates) its netns FIRST, and only then opens
 * anything: the netlink socket, handler modules' sockets. A socket belongs to the netns of
 * the thread that created it, for life. Everything is answered in arrival order on this one
 * thread; a handler that awaits lets the next request start (as on any event loop).
 */
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { KernelError } from '../errors.js';
import { enterNetns } from './libc.js';
import { LINK_OPS_METHODS } from './link-ops-methods.js';
import { createOrEnterNetns, enterNetnsPath } from './netns-enter.js';
import { type Request, type Response, toWire, type WorkerInit } from './rpc.js';
import { NetlinkLinkOps } from './rtnl-link-ops.js';
import { ProcSysctl } from './sysctl.js';

type Handler = (...args: unknown[]) => unknown;

const port = parentPort;
if (!port) throw new Error('netns-worker.ts must run as a worker thread');
const init = (workerData ?? {}) as WorkerInit;
const handlers = new Map<string, Handler>();

const selfNs = (): string => readlinkSync('/proc/thread-self/ns/net');

/** `netns.create` for the shared admin worker: create, then come back to where it was. */
function createAndReturn(name: unknown): boolean {
  if (typeof name !== 'string') throw new KernelError('netns.create', 'EINVAL', 'name must be a string');
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    return createOrEnterNetns(name);
  } finally {
    try {
      enterNetns(home);
    } finally {
      closeSync(home);
    }
  }
}

/**
 * npm `netlink` 0.3.0 crashes the whole process (SIGSEGV / std::terminate) when a worker is
 * torn down (terminate(), process exit) while one of its sockets is open. So the socket only
 * lives while link calls are in flight: the first call opens it, the last one to finish
 * closes it. Concurrent calls share it; an idle worker holds none and can die safely.
 */
let links: NetlinkLinkOps | undefined;
let linkCalls = 0;

async function withLinks(method: (typeof LINK_OPS_METHODS)[number], args: unknown[]): Promise<unknown> {
  if (method === 'close') return undefined;
  const ops = (links ??= new NetlinkLinkOps());
  linkCalls++;
  try {
    const fn = ops[method] as (...a: unknown[]) => Promise<unknown>;
    return await fn.apply(ops, args);
  } finally {
    if (--linkCalls === 0) {
      links = undefined;
      await ops.close();
      // The library frees the socket in a libuv close callback: let it run before replying,
      // or a caller that exits on our reply tears the thread down with the socket half-freed.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

const shutdownHooks: Array<() => unknown> = [];

function registerBuiltins(): void {
  handlers.set('sys.inode', () => selfNs());
  handlers.set('netns.create', createAndReturn);
  for (const m of LINK_OPS_METHODS) handlers.set(`link.${m}`, (...args: unknown[]) => withLinks(m, args));
  const sysctl = new ProcSysctl();
  handlers.set('sysctl.get', (key) => sysctl.get(String(key)));
  handlers.set('sysctl.set', (key, value) => sysctl.set(String(key), String(value)));
  handlers.set('sys.shutdown', async () => {
    for (const hook of shutdownHooks) await hook();
  });
}

async function loadModules(modules: Record<string, string>): Promise<void> {
  for (const [prefix, url] of Object.entries(modules)) {
    const mod = (await import(url)) as { handlers?: unknown; shutdown?: unknown };
    if (typeof mod.shutdown === 'function') shutdownHooks.push(mod.shutdown as () => unknown);
    if (typeof mod.handlers !== 'object' || mod.handlers === null) {
      throw new KernelError('netns.worker', 'EINVAL', `${url} does not export a 'handlers' object`);
    }
    for (const [name, fn] of Object.entries(mod.handlers)) {
      if (typeof fn === 'function') handlers.set(`${prefix}.${name}`, fn as Handler);
    }
  }
}

async function serve(req: Request): Promise<Response> {
  const fn = handlers.get(req.method);
  if (!fn) return { id: req.id, ok: false, error: { name: 'KernelError', op: req.method, errno: 'ENOSYS', message: `no such method ${req.method}` } };
  try {
    return { id: req.id, ok: true, value: await fn(...req.args) };
  } catch (e) {
    return { id: req.id, ok: false, error: toWire(e, req.method) };
  }
}

async function main(): Promise<void> {
  try {
    let created: boolean | undefined;
    if (init.create !== undefined) created = createOrEnterNetns(init.create);
    else if (init.enter !== undefined) enterNetnsPath(init.enter);
    registerBuiltins();
    await loadModules(init.modules ?? {});
    port?.postMessage({ id: 0, ok: true, value: { inode: selfNs(), created } } satisfies Response);
  } catch (e) {
    port?.postMessage({ id: 0, ok: false, error: toWire(e, 'netns.worker') } satisfies Response);
    return;
  }
  port?.on('message', (req: Request) => {
    void serve(req).then((res) => {
      try {
        port.postMessage(res);
      } catch (e) {
        // A handler returned something structured clone cannot carry (a function, a socket).
        port.postMessage({ id: req.id, ok: false, error: toWire(e, req.method) } satisfies Response);
      }
      // Closing the port lets the thread end by itself once its handlers' sockets are closed.
      if (req.method === 'sys.shutdown') port.close();
    });
  });
}

void main();
