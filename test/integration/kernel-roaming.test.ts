/**
 * Real kernel (root): NetnsRoamer, one worker thread that configures many namespaces by
 * visiting them (setns in, rtnetlink socket, calls, socket closed, setns home). Every topology
 * lives in namespaces this file created (prefix from makeTestPrefix); no link to the host.
 */
import { spawn } from 'node:child_process';
import { readlinkSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound, KernelError } from '../../src/errors.js';
import { execTool } from '../../src/kernel/exec.js';
import { listNetns, NetnsWorker } from '../../src/kernel/netns.js';
import { closeSharedNetnsRoamer, NetnsRoamer, netnsLinks, sharedNetnsRoamer } from '../../src/kernel/netns-roamer.js';
import { ProcSysctl } from '../../src/kernel/sysctl.js';
import { cleanupPrefix, finalCleanup, kernelError, makeTestPrefix } from '../helpers/netns.js';

const prefix = makeTestPrefix();
const roamers: NetnsRoamer[] = [];
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HANDLERS = new URL('../helpers/netns.ts', import.meta.url).href;

async function roamer(): Promise<NetnsRoamer> {
  const r = await NetnsRoamer.start();
  roamers.push(r);
  return r;
}

const ip = async (...args: string[]): Promise<string> => (await execTool('test', 'ip', args)).stdout.trim();
/** IPv4 addresses of every link of a netns, as `dev cidr` lines (sorted). */
const v4 = async (ns: string): Promise<string[]> =>
  (await ip('-n', ns, '-4', '-o', 'addr', 'show')).split('\n').filter(Boolean).map((l) => {
    const f = l.split(/\s+/);
    return `${f[1]} ${f[3]}`;
  }).sort();
const inode = (ns: string): string => `net:[${statSync(`/run/netns/${ns}`).ino}]`;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('kernel integration tests need root (netns, rtnetlink)');
});

afterEach(async () => {
  await Promise.all(roamers.splice(0).map((r) => r.close()));
  await closeSharedNetnsRoamer();
  await cleanupPrefix(prefix);
});

afterAll(() => finalCleanup(prefix));

describe('NetnsRoamer', () => {
  it('configures two namespaces alternately through one thread; each address lands in its own netns', async () => {
    const mainBefore = readlinkSync('/proc/thread-self/ns/net');
    const [a, b] = [`${prefix}-a`, `${prefix}-b`];
    const r = await roamer();

    expect(await r.ensureNetns(a, [['setUp', 'lo']])).toEqual({ created: true, results: [undefined] });
    expect(await r.ensureNetns(b, [['setUp', 'lo']])).toEqual({ created: true, results: [undefined] });
    expect((await r.ensureNetns(a)).created).toBe(false);
    expect(await listNetns(prefix)).toEqual([a, b]);
    expect((await ip('netns', 'list'))).toContain(a);

    const la = r.links(a);
    const lb = r.links(b);
    // Same link names in both: only the namespace tells them apart.
    await la.ensureVeth({ name: 'x0', peer: 'x1' });
    await lb.ensureVeth({ name: 'x0', peer: 'x1' });
    await la.ensureAddress('x0', '10.61.0.1/24');
    await lb.ensureAddress('x0', '10.62.0.1/24');
    await la.setUp('x0');
    await lb.setUp('x0');
    await r.run(a, [['ensureAddress', 'x1', '10.61.0.2/24'], ['setUp', 'x1']]);
    await r.run(b, [['ensureAddress', 'x1', '10.62.0.2/24'], ['setUp', 'x1']]);

    expect(await v4(a)).toEqual(['lo 127.0.0.1/8', 'x0 10.61.0.1/24', 'x1 10.61.0.2/24']);
    expect(await v4(b)).toEqual(['lo 127.0.0.1/8', 'x0 10.62.0.1/24', 'x1 10.62.0.2/24']);
    expect((await la.listLinks('x')).map((l) => [l.name, l.up])).toEqual([['x0', true], ['x1', true]]);
    expect(await lb.listAddresses('x0')).toContain('10.62.0.1/24');
    // lo is up in both (set by the create request).
    expect((await ip('-n', a, '-o', 'link', 'show', 'lo'))).toMatch(/[<,]UP[,>]/);

    // Nothing landed in the namespace of the test process, and no thread moved for good.
    expect(await ip('-o', 'addr', 'show')).not.toMatch(/10\.6[12]\./);
    expect(readlinkSync('/proc/thread-self/ns/net')).toBe(mainBefore);
    expect(readlinkSync('/proc/self/ns/net')).toBe(mainBefore);
    expect(await r.where()).toEqual({ home: mainBefore, current: mainBefore });
  });

  it('serializes concurrent requests for different namespaces', async () => {
    const r = await roamer();
    const names = [0, 1, 2, 3].map((i) => `${prefix}-c${i}`);
    await Promise.all(names.map((n) => r.ensureNetns(n, [['setUp', 'lo'], ['ensureBridge', 'br0']])));
    // 4 namespaces x 20 addresses, all posted at once: interleaved on the worker's queue.
    await Promise.all(names.flatMap((n, i) => Array.from({ length: 20 }, (_, j) => r.links(n).ensureAddress('br0', `10.70.${i}.${j + 1}/24`))));
    for (const [i, n] of names.entries()) {
      const addrs = (await v4(n)).filter((l) => l.startsWith('br0 '));
      expect(addrs).toHaveLength(20);
      expect(addrs.every((l) => l.startsWith(`br0 10.70.${i}.`))).toBe(true);
    }
    const main = readlinkSync('/proc/thread-self/ns/net');
    expect(await r.where()).toEqual({ home: main, current: main });
  });

  it('crosses namespaces by name: a veth from one sandbox into another carries traffic', async () => {
    const [a, b] = [`${prefix}-pa`, `${prefix}-pb`];
    const r = await roamer();
    await r.ensureNetns(a, [['setUp', 'lo']]);
    await r.ensureNetns(b, [['setUp', 'lo']]);
    await r.run(a, [
      ['ensureVeth', { name: 'eth0', peer: 'eth0', peerNetns: b }],
      ['ensureAddress', 'eth0', '10.63.0.1/24'],
      ['setUp', 'eth0'],
    ]);
    await r.run(b, [['ensureAddress', 'eth0', '10.63.0.2/24'], ['setUp', 'eth0'], ['ensureRoute', { via: '10.63.0.1' }]]);
    expect(await ip('-n', b, 'route', 'show', 'default')).toContain('via 10.63.0.1 dev eth0');
    // An echo server in b (a NetnsWorker living there), reached from a by a tool that knows nothing of our code.
    const server = await NetnsWorker.start({ netns: b, modules: { t: HANDLERS } });
    try {
      const port = (await server.call('t.listenTcp', '10.63.0.2', 0)) as number;
      const script = `exec 3<>/dev/tcp/10.63.0.2/${port}; printf hello >&3; head -c 5 <&3`;
      expect(await ip('netns', 'exec', a, 'timeout', '5', 'bash', '-c', script).catch((e: unknown) => String(e))).toBe('hello');
    } finally {
      await server.close();
    }
  });

  it('reports failures with op, errno and netns, and stays usable and home afterwards', async () => {
    const r = await roamer();
    const ns = `${prefix}-e`;
    await r.ensureNetns(ns);

    const missing = await kernelError(r.links(`${prefix}-nope`).setUp('lo'));
    expect(missing.op).toBe('netns.enter');
    expect(isNotFound(missing)).toBe(true);

    const nodev = await kernelError(r.links(ns).setUp('eth9'));
    expect([nodev.op, nodev.errno]).toEqual(['link.setUp', 'ENODEV']);
    expect(nodev.message).toContain(`in netns ${ns}`);

    // A failing call ends its request; the calls before it are done.
    const half = await kernelError(r.run(ns, [['ensureBridge', 'br0'], ['setMaster', 'br0', 'nope'], ['setUp', 'br0']]));
    expect(half.op).toBe('link.setMaster');
    expect((await r.links(ns).getLink('br0'))?.up).toBe(false);

    const bad = await kernelError(r.run('../etc', []));
    expect(bad.errno).toBe('EINVAL');

    // The facade's close() disables that facade only.
    const l = r.links(ns);
    await l.close();
    expect((await kernelError(l.setUp('lo'))).errno).toBe('EBADF');
    await r.links(ns).setUp('lo');

    const main = readlinkSync('/proc/thread-self/ns/net');
    expect(await r.where()).toEqual({ home: main, current: main });
  });

  it('reads and writes sysctls of the visited netns only', async () => {
    const r = await roamer();
    const [a, b] = [`${prefix}-sa`, `${prefix}-sb`];
    await r.ensureNetns(a);
    await r.ensureNetns(b);
    const host = await new ProcSysctl().get('net.ipv4.conf.lo.forwarding');
    await r.sysctl(a).set('net.ipv4.conf.lo.forwarding', host === '1' ? 0 : 1);
    expect(await r.sysctl(a).get('net.ipv4.conf.lo.forwarding')).toBe(host === '1' ? '0' : '1');
    // b was not visited: it keeps what a new namespace gets (IPv4 settings inherited from the host's).
    expect(await r.sysctl(b).get('net.ipv4.conf.lo.forwarding')).toBe(host);
    expect(await new ProcSysctl().get('net.ipv4.conf.lo.forwarding')).toBe(host);
  });

  it('the shared roamer backs netnsLinks and enters by nsfs path as well', async () => {
    const ns = `${prefix}-sh`;
    const r = await sharedNetnsRoamer();
    expect(await sharedNetnsRoamer()).toBe(r);
    await r.ensureNetns(ns);
    await netnsLinks(ns).setUp('lo');
    const byPath = netnsLinks(`/run/netns/${ns}`);
    await byPath.ensureBridge('br0');
    expect((await ip('-n', ns, '-o', 'link', 'show', 'br0'))).toContain('br0');
    expect(inode(ns)).not.toBe(readlinkSync('/proc/thread-self/ns/net'));
  });

  it('a process that never closes its roamer exits cleanly (no netlink socket left open)', async () => {
    const ns = `${prefix}-x`;
    const url = new URL('../../src/kernel/netns-roamer.ts', import.meta.url).href;
    const script = `
      import { NetnsRoamer } from ${JSON.stringify(url)};
      const r = await NetnsRoamer.start();
      await r.ensureNetns(${JSON.stringify(ns)}, [['setUp', 'lo']]);
      await r.links(${JSON.stringify(ns)}).ensureBridge('br0');
      console.log('done');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
    expect({ code, signal, out: out.trim(), err }).toEqual({ code: 0, signal: null, out: 'done', err: '' });
    expect(await ip('-n', ns, '-o', 'link', 'show', 'br0')).toContain('br0');
  });
});

describe('KernelError across the roaming thread', () => {
  it('is a KernelError instance on the main side', async () => {
    const r = await roamer();
    await expect(r.links(`${prefix}-none`).getLink('lo')).rejects.toBeInstanceOf(KernelError);
  });
});
