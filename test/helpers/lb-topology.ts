/**
 * A small L2 topology for load-balancer tests and benchmarks (any dataplane: nft, ipvs),
 * entirely inside namespaces named `<prefix>-*` (no link or route to the host's network):
 *
 *   <prefix>-r  "router": bridge br0 10.77.0.1/24 and fd77::1/64, forwarding on; with
 *               `outside`, also up0 10.78.0.1/24 towards <prefix>-x (the ingress side)
 *   <prefix>-c  client 10.77.0.2/24 and fd77::2/64, default routes via the router (a VIP needs
 *               a route to connect(); output-hook DNAT then re-routes to the backend)
 *   <prefix>-bN backend N at 10.77.0.(10+N)/24 and fd77::(10+N)/64, NO default route (only
 *               masquerade lets it answer the outside)
 *   <prefix>-x  outside 10.78.0.2/24, default route via 10.78.0.1
 * IPv6 duplicate address detection is off in every namespace (addresses usable at once).
 *
 * Backends are tiny Node servers spawned with `nsenter --net=... node -e` ({@link startBackend}):
 * TCP and UDP answer every line/datagram with `<name> <peer address>`; HTTP answers `ok`.
 * Clients are NetnsWorkers with this file's {@link handlers} (module key `lb`).
 *
 * Cleanup: `close()` stops the backend processes (by PID) and the workers; the caller then
 * removes the namespaces with `cleanupPrefix`/`finalCleanup` (test/helpers/netns.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { NetnsWorker } from '../../src/kernel/netns.js';
import { netnsPath } from '../../src/kernel/paths.js';

/** This module's URL, for `NetnsWorker.start({ modules: { lb: LB_HANDLERS } })`. */
export const LB_HANDLERS = new URL(import.meta.url).href;

/** One namespace of the topology. */
export interface LbNode {
  name: string;
  ns: string;
  /** Its address on the bridge (or, for the outside, on up0's subnet). */
  address: string;
  /** Its IPv6 address on the bridge (none for the outside). */
  address6: string | undefined;
  worker: NetnsWorker;
}

export interface LbTopology {
  router: LbNode;
  client: LbNode;
  backends: LbNode[];
  outside: LbNode | undefined;
  /** Stops every backend process and worker this topology started (not the namespaces). */
  close(): Promise<void>;
}

export interface LbTopologyOptions {
  /** Backends to create (default 3). */
  backends?: number;
  /** Also build the outside namespace and the router's up0 link. */
  outside?: boolean;
}

/** Builds the topology under `prefix` (see the module doc). */
export async function buildLbTopology(prefix: string, opts: LbTopologyOptions = {}): Promise<LbTopology> {
  const workers: NetnsWorker[] = [];
  const start = async (suffix: string): Promise<NetnsWorker> => {
    const w = await NetnsWorker.start({ create: `${prefix}-${suffix}`, modules: { lb: LB_HANDLERS } });
    workers.push(w);
    await w.links.setUp('lo');
    for (const k of ['all', 'default']) await w.sysctl.set(`net.ipv6.conf.${k}.accept_dad`, 0);
    return w;
  };
  const close = async (): Promise<void> => {
    await Promise.all(workers.map((w) => w.close()));
  };
  try {
    const rw = await start('r');
    await rw.links.ensureBridge('br0');
    await rw.links.ensureAddress('br0', '10.77.0.1/24');
    await rw.links.ensureAddress('br0', 'fd77::1/64');
    await rw.links.setUp('br0');
    await rw.sysctl.set('net.ipv4.ip_forward', 1);
    await rw.sysctl.set('net.ipv6.conf.all.forwarding', 1);
    const attach = async (suffix: string, n: number, gateway: boolean): Promise<LbNode> => {
      const address = `10.77.0.${n}`;
      const address6 = `fd77::${n}`;
      const w = await start(suffix);
      const ns = `${prefix}-${suffix}`;
      const port = `p-${suffix}`;
      await rw.links.ensureVeth({ name: port, peer: 'eth0', peerNetns: ns });
      await rw.links.setMaster(port, 'br0');
      await rw.links.setUp(port);
      await w.links.ensureAddress('eth0', `${address}/24`);
      await w.links.ensureAddress('eth0', `${address6}/64`);
      await w.links.setUp('eth0');
      if (gateway) {
        await w.links.ensureRoute({ via: '10.77.0.1' });
        await w.links.ensureRoute({ via: 'fd77::1' });
      }
      return { name: suffix, ns, address, address6, worker: w };
    };
    const client = await attach('c', 2, true);
    const backends: LbNode[] = [];
    for (let i = 1; i <= (opts.backends ?? 3); i++) backends.push(await attach(`b${i}`, 10 + i, false));
    let outside: LbNode | undefined;
    if (opts.outside) {
      const w = await start('x');
      await rw.links.ensureVeth({ name: 'up0', peer: 'eth0', peerNetns: `${prefix}-x` });
      await rw.links.ensureAddress('up0', '10.78.0.1/24');
      await rw.links.setUp('up0');
      await w.links.ensureAddress('eth0', '10.78.0.2/24');
      await w.links.setUp('eth0');
      await w.links.ensureRoute({ via: '10.78.0.1' });
      outside = { name: 'x', ns: `${prefix}-x`, address: '10.78.0.2', address6: undefined, worker: w };
    }
    const router = { name: 'r', ns: `${prefix}-r`, address: '10.77.0.1', address6: 'fd77::1', worker: rw };
    return { router, client, backends, outside, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A backend server process inside a namespace. */
export interface BackendServer {
  name: string;
  pid: number;
  /** Kills the process (SIGKILL, by PID) and waits for it. */
  stop(): Promise<void>;
}

/** Ports the backend listens on (TCP on IPv4 and IPv6, UDP and HTTP on IPv4); omitted ones are not opened. */
export interface BackendPorts {
  tcp?: number;
  udp?: number;
  http?: number;
}

const BACKEND = `
const net = require('net'), dgram = require('dgram'), http = require('http');
const [name, tcp, udp, web] = process.argv.slice(1).map((a, i) => (i === 0 ? a : Number(a)));
let pending = 0;
const ready = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
const peer = (a) => (a || '').replace(/^::ffff:/, '');
if (tcp) { pending++; net.createServer((c) => {
  let buf = '';
  c.setEncoding('utf8');
  c.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { buf = buf.slice(i + 1); c.write(name + ' ' + peer(c.remoteAddress) + '\\n'); } });
  c.on('error', () => {});
}).listen({ port: tcp, host: '::', ipv6Only: false }, ready); }
if (udp) { pending++; const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(name + ' ' + r.address, r.port, r.address));
  s.bind(udp, '0.0.0.0', ready); }
if (web) { pending++; const srv = http.createServer((q, r) => { r.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 }); r.end('ok\\n'); });
  srv.keepAliveTimeout = 60000; srv.listen(web, '0.0.0.0', ready); }
if (pending === 0) process.stdout.write('ready\\n');
`;

/** Starts a backend server in `ns` and resolves once it listens. */
export function startBackend(ns: string, name: string, ports: BackendPorts): Promise<BackendServer> {
  const args = [`--net=${netnsPath(ns)}`, process.execPath, '-e', BACKEND, name, String(ports.tcp ?? 0), String(ports.udp ?? 0), String(ports.http ?? 0)];
  const child: ChildProcess = spawn('nsenter', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`backend ${name} in ${ns} did not start: ${err}`));
    }, 10_000);
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      if (!d.toString().includes('ready')) return;
      clearTimeout(timer);
      resolve({ name, pid: child.pid ?? 0, stop });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`backend ${name} in ${ns} exited (${code}): ${err}`));
    });
  });
}

// ---- handlers run INSIDE a NetnsWorker (modules: { lb: LB_HANDLERS }) ----

const conns = new Map<string, { sock: Socket; lines: string[]; waiters: Array<(l: string) => void> }>();
const udpSockets = new Set<UdpSocket>();

function timeout(op: string, ms: number): Error {
  return Object.assign(new Error(`${op}: no answer within ${ms} ms`), { code: 'ETIMEDOUT' });
}

/** Worker-side client calls, `lb.<name>` through `NetnsWorker.call`. */
export const handlers = {
  /** One TCP connection: send a line, resolve the answer line (`<backend> <peer>`), close. */
  ask(host: unknown, port: unknown, timeoutMs: unknown = 3000): Promise<string> {
    return new Promise((resolve, reject) => {
      let buf = '';
      const c = connect({ host: String(host), port: Number(port) }, () => c.write('hi\n'));
      const timer = setTimeout(() => {
        c.destroy();
        reject(timeout('lb.ask', Number(timeoutMs)));
      }, Number(timeoutMs));
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        buf += d;
        const i = buf.indexOf('\n');
        if (i < 0) return;
        clearTimeout(timer);
        c.destroy();
        resolve(buf.slice(0, i));
      });
      c.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  },

  /** Open a TCP connection kept under `id` (for draining tests); resolves once connected. */
  open(id: unknown, host: unknown, port: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = { sock: connect({ host: String(host), port: Number(port) }, () => resolve()), lines: [] as string[], waiters: [] as Array<(l: string) => void> };
      let buf = '';
      entry.sock.setEncoding('utf8');
      entry.sock.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const w = entry.waiters.shift();
          if (w) w(line);
          else entry.lines.push(line);
        }
      });
      entry.sock.on('error', reject);
      conns.set(String(id), entry);
    });
  },

  /** Send a line on the kept connection `id`; resolve the answer line. */
  say(id: unknown, timeoutMs: unknown = 3000): Promise<string> {
    const entry = conns.get(String(id));
    if (!entry) return Promise.reject(new Error(`no connection ${String(id)}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(timeout('lb.say', Number(timeoutMs))), Number(timeoutMs));
      entry.waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
      entry.sock.write('hi\n');
    });
  },

  /** One datagram from local port `localPort` (0: any); resolve the answer or `'timeout'`. */
  udpAsk(host: unknown, port: unknown, localPort: unknown = 0, timeoutMs: unknown = 1000): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = createSocket({ type: 'udp4', reuseAddr: true });
      udpSockets.add(s);
      const done = (v: string): void => {
        clearTimeout(timer);
        udpSockets.delete(s);
        s.close();
        resolve(v);
      };
      const timer = setTimeout(() => done('timeout'), Number(timeoutMs));
      s.once('message', (m) => done(m.toString()));
      s.once('error', (e) => {
        clearTimeout(timer);
        udpSockets.delete(s);
        reject(e);
      });
      s.bind(Number(localPort), () => s.send('hi', Number(port), String(host)));
    });
  },

  /** Close every connection and socket these handlers opened. */
  closeAll(): void {
    for (const c of conns.values()) c.sock.destroy();
    conns.clear();
    for (const s of udpSockets) s.close();
    udpSockets.clear();
  },
};

/** Run by `NetnsWorker.close()` inside the worker. */
export function shutdown(): void {
  handlers.closeAll();
}
