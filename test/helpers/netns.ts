/**
 * Test helpers for kernel tests: unique name prefixes, cleanup of everything carrying one,
 * polling with a deadline, worker-side socket handlers, and one conformance scenario run by
 * both the fake (unit) and the real kernel (integration) so the fake cannot drift.
 *
 * Rule for integration tests: build topologies only inside namespaces the test created, with
 * no link or route to the host's real network; only loopback and in-namespace addresses.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { connect, createServer, type Server } from 'node:net';
import type { Socket as UdpSocket } from 'node:dgram';
import { KernelError } from '../../src/errors.js';
import type { LinkOps } from '../../src/kernel/netlink.js';
import { closeNetnsHelper, deleteNetns, listNetns } from '../../src/kernel/netns.js';
import { NetlinkLinkOps } from '../../src/kernel/rtnl-link-ops.js';

/**
 * A fresh prefix: `sht` + 4 random base36 chars (7 chars), leaving 8 of Linux's 15 ifname
 * characters for the test's own suffix.
 */
export function makeTestPrefix(): string {
  const r = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0');
  return `sht${r}`;
}

/** Netns names and root-netns link names still carrying `prefix`. */
export async function leftovers(prefix: string): Promise<{ netns: string[]; links: string[] }> {
  const ops = new NetlinkLinkOps();
  try {
    return { netns: await listNetns(prefix), links: (await ops.listLinks(prefix)).map((l) => l.name) };
  } finally {
    await ops.close();
  }
}

/**
 * Delete every named netns and every root-netns link whose name starts with `prefix`.
 * Safe to call repeatedly and after a failed test. Close the test's NetnsWorkers first: a
 * namespace only dies once no thread is left in it.
 */
export async function cleanupPrefix(prefix: string): Promise<void> {
  if (prefix.length < 4) throw new Error(`refusing to clean up the short prefix '${prefix}'`);
  for (const ns of await listNetns(prefix)) await deleteNetns(ns);
  // Per-namespace files that agents write for `ip netns exec` (resolv.conf) go with them.
  if (existsSync('/etc/netns')) {
    for (const f of readdirSync('/etc/netns')) if (f.startsWith(prefix)) rmSync(join('/etc/netns', f), { recursive: true, force: true });
  }
  const ops = new NetlinkLinkOps();
  try {
    await ops.deleteLinks((await ops.listLinks(prefix)).map((l) => l.name));
  } finally {
    await ops.close();
  }
}

/**
 * End of a kernel test file: remove what carries `prefix`, stop the netns helper thread, and
 * fail if anything with the prefix is still there.
 */
export async function finalCleanup(prefix: string): Promise<void> {
  await cleanupPrefix(prefix);
  await closeNetnsHelper();
  const left = await leftovers(prefix);
  if (left.netns.length || left.links.length) throw new Error(`left behind with prefix ${prefix}: ${JSON.stringify(left)}`);
}

/** Poll `check` until it returns a value other than undefined/false, or fail at the deadline. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---- handlers run INSIDE a NetnsWorker (modules: { t: new URL('../helpers/netns.ts', ...) }) ----

const servers = new Map<number, Server | UdpSocket>();

/** The thrown error when a client gives up. */
function timeoutError(op: string, ms: number): KernelError {
  return new KernelError(op, 'ETIMEDOUT', `no answer within ${ms} ms`);
}

/** Worker-side socket handlers, callable as `t.<name>` through `NetnsWorker.call`. */
export const handlers = {
  /** A TCP echo server on host:port (port 0: any) in the worker's netns; resolves the port. */
  listenTcp(host: unknown, port: unknown = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const srv = createServer((c) => {
        c.on('data', (d) => c.write(d));
        c.on('error', () => undefined);
      });
      srv.once('error', reject);
      srv.listen(Number(port), String(host), () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        servers.set(p, srv);
        resolve(p);
      });
    });
  },

  /** A UDP echo socket on host:port; resolves the port. */
  listenUdp(host: unknown, port: unknown = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = createSocket(String(host).includes(':') ? 'udp6' : 'udp4');
      s.on('message', (m, r) => s.send(m, r.port, r.address));
      s.once('error', reject);
      s.bind(Number(port), String(host), () => {
        servers.set(s.address().port, s);
        resolve(s.address().port);
      });
    });
  },

  /** Connect over TCP, send `text`, half-close, resolve everything read back. */
  tcpRequest(host: unknown, port: unknown, text: unknown, timeoutMs: unknown = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const c = connect({ host: String(host), port: Number(port) }, () => c.end(String(text)));
      const timer = setTimeout(() => {
        c.destroy();
        reject(timeoutError('t.tcpRequest', Number(timeoutMs)));
      }, Number(timeoutMs));
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('end', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString());
      });
      c.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  },

  /** Send one UDP datagram and resolve the first reply. */
  udpRequest(host: unknown, port: unknown, text: unknown, timeoutMs: unknown = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = createSocket(String(host).includes(':') ? 'udp6' : 'udp4');
      const timer = setTimeout(() => {
        s.close();
        reject(timeoutError('t.udpRequest', Number(timeoutMs)));
      }, Number(timeoutMs));
      s.once('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve(m.toString());
      });
      s.send(String(text), Number(port), String(host));
    });
  },

  /** Close every server this worker opened. */
  closeAll(): void {
    for (const s of servers.values()) s.close();
    servers.clear();
  },
};

// ---- one scenario, two kernels ----

/** What {@link idempotencyScenario} observed; equal for FakeLinkOps and NetlinkLinkOps. */
export interface Observed {
  links: Array<{ name: string; kind: string | undefined; master: string | undefined; up: boolean }>;
  addrs: string[];
  fdb: Array<{ mac: string; dst: string | undefined }>;
  neigh: Array<{ ip: string; mac: string | undefined }>;
  errors: Record<string, string | undefined>;
}

async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return e instanceof KernelError ? `${e.op} ${e.errno ?? '?'}` : `not a KernelError: ${String(e)}`;
  }
}

/**
 * Every ensure twice, every delete of something absent, and the errors drivers branch on.
 * `s` is a short suffix-free prefix for link names; `peerNs` an existing netns name; the
 * ops must act on an otherwise empty namespace (or one where only `lo` exists).
 */
export async function idempotencyScenario(ops: LinkOps, s: string, peerNs: string): Promise<Observed> {
  const twice = async (f: () => Promise<void>): Promise<void> => {
    await f();
    await f();
  };
  await twice(() => ops.ensureBridge(`${s}br`));
  await twice(() => ops.ensureVeth({ name: `${s}v0`, peer: `${s}v1` }));
  await twice(() => ops.ensureVeth({ name: `${s}x0`, peer: `${s}x1`, peerNetns: peerNs }));
  await twice(() => ops.setUp(`${s}v1`));
  await twice(() => ops.ensureVxlan({ name: `${s}vx`, vni: 4242, local: '192.0.2.1', dev: `${s}v1` }));
  await twice(() => ops.ensureMacvlan({ name: `${s}mv`, parent: `${s}v1` }));
  await twice(() => ops.setMaster(`${s}v0`, `${s}br`));
  await twice(() => ops.setUp(`${s}br`));
  await twice(() => ops.ensureAddress(`${s}br`, '198.51.100.1/24'));
  await twice(() => ops.ensureAddress(`${s}br`, '2001:db8::1/64'));
  await twice(() => ops.ensureNeighbour(`${s}br`, '198.51.100.9', '02:00:00:00:00:09'));
  await twice(() => ops.ensureRoute({ via: '198.51.100.254' }));
  await twice(() => ops.appendFdb(`${s}vx`, '02:00:00:00:00:aa', '192.0.2.2'));
  await twice(() => ops.appendFdb(`${s}vx`, '00:00:00:00:00:00', '192.0.2.2'));
  await ops.appendFdb(`${s}vx`, '00:00:00:00:00:00', '192.0.2.3');

  await twice(() => ops.deleteLink(`${s}nope`));
  await twice(() => ops.deleteAddress(`${s}br`, '198.51.100.77/24'));
  await twice(() => ops.deleteNeighbour(`${s}br`, '198.51.100.77'));
  await twice(() => ops.deleteFdb(`${s}vx`, '02:00:00:00:00:77', '192.0.2.77'));
  await twice(() => ops.deleteRoute({ dst: '203.0.113.0/24', via: '198.51.100.254' }));
  await ops.deleteLinks([`${s}nope1`, `${s}nope2`]);

  const links = (await ops.listLinks(s)).map((l) => ({ name: l.name, kind: l.kind, master: l.master, up: l.up }));
  const addrs = (await ops.listAddresses(`${s}br`)).filter((a) => !a.startsWith('fe80:')).sort();
  const fdb = (await ops.listFdb(`${s}vx`))
    .filter((f) => f.dst !== undefined)
    .map((f) => ({ mac: f.mac, dst: f.dst }))
    .sort((a, b) => `${a.mac}${a.dst}`.localeCompare(`${b.mac}${b.dst}`));
  const neigh = (await ops.listNeighbours(`${s}br`)).map((n) => ({ ip: n.ip, mac: n.mac }));
  // Last: a failed setMaster releases the old master in the kernel before failing.
  const errors: Record<string, string | undefined> = {
    bridgeOnVethName: await errnoOf(ops.ensureBridge(`${s}v0`)),
    vxlanOtherVni: await errnoOf(ops.ensureVxlan({ name: `${s}vx`, vni: 7, local: '192.0.2.1', dev: `${s}v1` })),
    setUpMissing: await errnoOf(ops.setUp(`${s}nope`)),
    moveToMissingNetns: await errnoOf(ops.moveToNetns(`${s}v0`, `${s}nons`)),
    masterNotBridge: await errnoOf(ops.setMaster(`${s}v0`, `${s}mv`)),
    addressOnMissingDev: await errnoOf(ops.ensureAddress(`${s}nope`, '198.51.100.2/24')),
    badAddress: await errnoOf(ops.ensureAddress(`${s}br`, '198.51.100.300/24')),
    nameTooLong: await errnoOf(ops.ensureBridge(`${s}${'x'.repeat(16)}`)),
  };
  return { links, addrs, fdb, neigh, errors };
}

/** What {@link idempotencyScenario} must observe on any LinkOps. */
export function expectedObservation(s: string): Observed {
  return {
    links: [
      { name: `${s}br`, kind: 'bridge', master: undefined, up: true },
      { name: `${s}mv`, kind: 'macvlan', master: undefined, up: false },
      { name: `${s}v0`, kind: 'veth', master: `${s}br`, up: false },
      { name: `${s}v1`, kind: 'veth', master: undefined, up: true },
      { name: `${s}vx`, kind: 'vxlan', master: undefined, up: false },
      { name: `${s}x0`, kind: 'veth', master: undefined, up: false },
    ],
    addrs: ['198.51.100.1/24', '2001:db8::1/64'],
    fdb: [
      { mac: '00:00:00:00:00:00', dst: '192.0.2.2' },
      { mac: '00:00:00:00:00:00', dst: '192.0.2.3' },
      { mac: '02:00:00:00:00:aa', dst: '192.0.2.2' },
    ],
    neigh: [{ ip: '198.51.100.9', mac: '02:00:00:00:00:09' }],
    errors: {
      bridgeOnVethName: 'link.ensureBridge EBUSY',
      vxlanOtherVni: 'link.ensureVxlan EBUSY',
      setUpMissing: 'link.setUp ENODEV',
      moveToMissingNetns: 'link.moveToNetns ENOENT',
      masterNotBridge: 'link.setMaster EOPNOTSUPP',
      addressOnMissingDev: 'link.ensureAddress ENODEV',
      badAddress: 'link.ensureAddress EINVAL',
      nameTooLong: 'link.ensureBridge ERANGE',
    },
  };
}

/** Run by `NetnsWorker.close()` inside the worker: closes the servers {@link handlers} opened. */
export function shutdown(): void {
  handlers.closeAll();
}

/** The KernelError `p` rejects with (fails the test if it resolves or rejects otherwise). */
export async function kernelError(p: Promise<unknown>): Promise<KernelError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KernelError) return e;
    throw e;
  }
  throw new Error('expected a KernelError');
}
