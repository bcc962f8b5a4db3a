/**
 * Real kernel (root): namespaces, NetnsWorker, and LinkOps over rtnetlink. Every topology
 * lives in namespaces this file created (prefix from makeTestPrefix), with no link to the
 * host's network; only addresses inside those namespaces and loopback are used.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readlinkSync, statSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound, KernelError } from '../../src/errors.js';
import { execTool } from '../../src/kernel/exec.js';
import { NetlinkLinkOps } from '../../src/kernel/netlink.js';
import { deleteNetns, ensureNetns, listNetns, NetnsWorker } from '../../src/kernel/netns.js';
import { NsenterSysctl, ProcSysctl } from '../../src/kernel/sysctl.js';
import { cleanupPrefix, finalCleanup, expectedObservation, idempotencyScenario, kernelError, makeTestPrefix, waitFor } from '../helpers/netns.js';

const prefix = makeTestPrefix();
const HANDLERS = new URL('../helpers/netns.ts', import.meta.url).href;
const workers: NetnsWorker[] = [];

/** A new namespace `${prefix}-${suffix}` with a worker inside it (lo up), closed in afterEach. */
async function sandbox(suffix: string): Promise<NetnsWorker> {
  const w = await NetnsWorker.start({ create: `${prefix}-${suffix}`, modules: { t: HANDLERS } });
  workers.push(w);
  await w.links.setUp('lo');
  return w;
}

async function enter(name: string): Promise<NetnsWorker> {
  const w = await NetnsWorker.start({ netns: name, modules: { t: HANDLERS } });
  workers.push(w);
  return w;
}

const tcp = async (from: NetnsWorker, host: string, port: number, text: string): Promise<unknown> =>
  from.call('t.tcpRequest', host, port, text);

async function inNetns(name: string, cmd: string[]): Promise<string> {
  return (await execTool('test', 'ip', ['netns', 'exec', name, ...cmd])).stdout.trim();
}


beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('kernel integration tests need root (netns, rtnetlink)');
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
  await cleanupPrefix(prefix);
});

afterAll(() => finalCleanup(prefix));

describe('network namespaces', () => {
  it('ensureNetns/deleteNetns/listNetns are idempotent and interoperate with ip netns', async () => {
    const name = `${prefix}-n1`;
    expect([await ensureNetns(name), await ensureNetns(name)]).toEqual([true, false]);
    expect(await listNetns(prefix)).toEqual([name]);
    expect((await execTool('test', 'ip', ['netns', 'list'])).stdout).toContain(name);
    expect(await inNetns(name, ['ip', '-o', 'link', 'show', 'lo'])).toContain('lo:');

    await execTool('test', 'ip', ['netns', 'add', `${prefix}-n2`]);
    const w = await enter(`${prefix}-n2`);
    expect(w.inode).toBe(`net:[${statSync(`/run/netns/${prefix}-n2`).ino}]`);

    await deleteNetns(name);
    await deleteNetns(name);
    expect(await listNetns(prefix)).toEqual([`${prefix}-n2`]);
    expect((await execTool('test', 'ip', ['netns', 'list'])).stdout).not.toContain(name);
  });

  it('setns in a worker moves that worker only, never the main thread', async () => {
    const mainThread = readlinkSync('/proc/thread-self/ns/net');
    const mainProcess = readlinkSync('/proc/self/ns/net');
    const w = await sandbox('s1');
    expect(w.created).toBe(true);
    expect(w.inode).not.toBe(mainThread);
    expect(w.inode).toBe(`net:[${statSync(`/run/netns/${prefix}-s1`).ino}]`);
    expect(await inNetns(`${prefix}-s1`, ['readlink', '/proc/self/ns/net'])).toBe(w.inode);
    expect(await w.call('sys.inode')).toBe(w.inode);
    expect(readlinkSync('/proc/thread-self/ns/net')).toBe(mainThread);
    expect(readlinkSync('/proc/self/ns/net')).toBe(mainProcess);
    // The main thread's netlink still sees the host, not the sandbox.
    const host = new NetlinkLinkOps();
    expect((await host.listLinks()).length).toBeGreaterThan(1);
    await host.close();
  });

  it('enters a namespace by /proc/PID/ns/net', async () => {
    const w = await sandbox('p1');
    // A process we start inside the netns (cat waits on its stdin); ended by its PID below.
    const child = spawn('ip', ['netns', 'exec', `${prefix}-p1`, 'cat'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      const path = `/proc/${child.pid}/ns/net`;
      await waitFor('the child to enter the netns', () => {
        try {
          return readlinkSync(path) === w.inode;
        } catch {
          return false;
        }
      });
      const byPid = await enter(path);
      expect(byPid.inode).toBe(w.inode);
    } finally {
      child.kill();
    }
  });

  it('a worker opens TCP and UDP listeners inside its netns', async () => {
    const w = await sandbox('l1');
    const port = (await w.call('t.listenTcp', '127.0.0.1', 0)) as number;
    // Reached from a tool that knows nothing of our code: bash's /dev/tcp inside the netns.
    const script = `exec 3<>/dev/tcp/127.0.0.1/${port}; printf hello >&3; head -c 5 <&3`;
    expect(await inNetns(`${prefix}-l1`, ['bash', '-c', script])).toBe('hello');
    // ...and not from the host's loopback, which is another namespace.
    const refused = await new Promise<string>((resolve) => {
      const c = connect({ host: '127.0.0.1', port }, () => {
        c.destroy();
        resolve('connected');
      });
      c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    // UDP, from a second worker in the same namespace.
    const udpPort = (await w.call('t.listenUdp', '127.0.0.1', 0)) as number;
    const peer = await enter(`${prefix}-l1`);
    expect(await peer.call('t.udpRequest', '127.0.0.1', udpPort, 'ping')).toBe('ping');
  });

  it('sysctls are per namespace, through the worker and through nsenter', async () => {
    const w = await sandbox('c1');
    const hostForward = await new ProcSysctl().get('net.ipv4.ip_forward');
    await w.sysctl.set('net.ipv4.ip_forward', 1);
    await w.links.ensureBridge('br0');
    await w.sysctl.set('net.ipv4.conf.br0.rp_filter', 2);
    expect(await w.sysctl.get('net.ipv4.ip_forward')).toBe('1');
    expect(await inNetns(`${prefix}-c1`, ['sysctl', '-n', 'net.ipv4.ip_forward'])).toBe('1');
    expect(await new NsenterSysctl(`${prefix}-c1`).get('net.ipv4.conf.br0.rp_filter')).toBe('2');
    expect(await new ProcSysctl().get('net.ipv4.ip_forward')).toBe(hostForward);
    const e = await kernelError(w.sysctl.get('net.ipv4.conf.nope0.rp_filter'));
    expect([e.op, e.errno, isNotFound(e)]).toEqual(['sysctl.get', 'ENOENT', true]);
  });
});

describe('links over rtnetlink', () => {
  it('veth pair between two namespaces carries a TCP connection', async () => {
    const a = await sandbox('va');
    const b = await sandbox('vb');
    await a.links.ensureVeth({ name: 'eth0', peer: 'eth0', peerNetns: `${prefix}-vb` });
    for (const [w, ip] of [[a, '10.231.0.1/24'], [b, '10.231.0.2/24']] as const) {
      await w.links.ensureAddress('eth0', ip);
      await w.links.setUp('eth0');
    }
    expect((await b.links.getLink('eth0'))?.kind).toBe('veth');
    const port = (await b.call('t.listenTcp', '10.231.0.2', 0)) as number;
    expect(await tcp(a, '10.231.0.2', port, 'over veth')).toBe('over veth');
  });

  it('a bridge with two veth ports switches TCP between two namespaces', async () => {
    const sw = await sandbox('br');
    const c1 = await sandbox('c1');
    const c2 = await sandbox('c2');
    await sw.links.ensureBridge('br0');
    await sw.links.setUp('br0');
    for (const [port, ns, ip] of [['p1', 'c1', '10.232.0.1/24'], ['p2', 'c2', '10.232.0.2/24']] as const) {
      await sw.links.ensureVeth({ name: port, peer: 'eth0', peerNetns: `${prefix}-${ns}` });
      await sw.links.setMaster(port, 'br0');
      await sw.links.setUp(port);
      const c = ns === 'c1' ? c1 : c2;
      await c.links.ensureAddress('eth0', ip);
      await c.links.setUp('eth0');
    }
    expect((await sw.links.listLinks('p')).map((l) => [l.name, l.master])).toEqual([['p1', 'br0'], ['p2', 'br0']]);
    const port = (await c2.call('t.listenTcp', '10.232.0.2', 0)) as number;
    expect(await tcp(c1, '10.232.0.2', port, 'across the bridge')).toBe('across the bridge');
  });

  it('VXLAN between two hosts with static FDB and neighbours (learning off) carries TCP', async () => {
    const h1 = await sandbox('h1');
    const h2 = await sandbox('h2');
    // Underlay: one veth between the two "hosts".
    await h1.links.ensureVeth({ name: 'ul0', peer: 'ul0', peerNetns: `${prefix}-h2` });
    const hosts = [
      { w: h1, underlay: '192.168.231.1', overlay: '10.233.0.1' },
      { w: h2, underlay: '192.168.231.2', overlay: '10.233.0.2' },
    ];
    for (const h of hosts) {
      await h.w.links.ensureAddress('ul0', `${h.underlay}/24`);
      await h.w.links.setUp('ul0');
      await h.w.links.ensureVxlan({ name: 'vx0', vni: 4242, local: h.underlay, dev: 'ul0' });
      await h.w.links.ensureAddress('vx0', `${h.overlay}/24`);
      await h.w.links.setUp('vx0');
    }
    const macs = await Promise.all(hosts.map(async (h) => (await h.w.links.getLink('vx0'))?.mac ?? ''));
    for (const [i, h] of hosts.entries()) {
      const other = hosts[1 - i];
      const mac = macs[1 - i];
      if (!other || !mac) throw new Error('topology');
      await h.w.links.appendFdb('vx0', mac, other.underlay);
      await h.w.links.ensureNeighbour('vx0', other.overlay, mac);
    }
    const info = await h1.links.getLink('vx0');
    expect(info?.vxlan).toMatchObject({ vni: 4242, local: '192.168.231.1', dstport: 4789, learning: false });
    expect(await h1.links.listFdb('vx0')).toContainEqual({ mac: macs[1], dst: '192.168.231.2', permanent: true });
    expect(await h1.links.listNeighbours('vx0')).toEqual([{ ip: '10.233.0.2', mac: macs[1], state: ['permanent'] }]);

    const before = [(await h1.links.getLink('vx0'))?.stats, (await h2.links.getLink('vx0'))?.stats];
    const port = (await h2.call('t.listenTcp', '10.233.0.2', 0)) as number;
    expect(await tcp(h1, '10.233.0.2', port, 'through the tunnel')).toBe('through the tunnel');
    const after = [(await h1.links.getLink('vx0'))?.stats, (await h2.links.getLink('vx0'))?.stats];
    for (const i of [0, 1]) {
      expect(after[i]?.txPackets).toBeGreaterThan(before[i]?.txPackets ?? Infinity);
      expect(after[i]?.rxPackets).toBeGreaterThan(before[i]?.rxPackets ?? Infinity);
    }
  });

  it('macvlans in bridge mode on one parent reach each other from two namespaces', async () => {
    // This kernel has no dummy driver: the parent is one end of a veth pair whose peer is up.
    const lan = await sandbox('lan');
    const t1 = await sandbox('t1');
    const t2 = await sandbox('t2');
    await lan.links.ensureVeth({ name: 'lan0', peer: 'lan1' });
    await lan.links.setUp('lan1');
    await lan.links.setUp('lan0');
    for (const [mv, ns] of [['mv1', 't1'], ['mv2', 't2']] as const) {
      await lan.links.ensureMacvlan({ name: mv, parent: 'lan0', mode: 'bridge' });
      await lan.links.moveToNetns(mv, `${prefix}-${ns}`, 'eth0');
    }
    for (const [w, ip] of [[t1, '10.234.0.1/24'], [t2, '10.234.0.2/24']] as const) {
      expect((await w.links.getLink('eth0'))?.kind).toBe('macvlan');
      await w.links.ensureAddress('eth0', ip);
      await w.links.setUp('eth0');
    }
    const port = (await t2.call('t.listenTcp', '10.234.0.2', 0)) as number;
    expect(await tcp(t1, '10.234.0.2', port, 'macvlan bridge')).toBe('macvlan bridge');
  });

  it('is idempotent and fails with the same errnos as FakeLinkOps (shared scenario)', async () => {
    const w = await sandbox('id');
    await ensureNetns(`${prefix}-idp`);
    expect(await idempotencyScenario(w.links, 's', `${prefix}-idp`)).toEqual(expectedObservation('s'));
  });

  it('works on the main thread too; bulk deletes run off it', async () => {
    const ops = new NetlinkLinkOps();
    try {
      const names = [`${prefix}b0`, `${prefix}b1`, `${prefix}b2`];
      for (const n of names) {
        await ops.ensureBridge(n);
        await ops.ensureBridge(n);
      }
      expect((await ops.listLinks(prefix)).map((l) => l.name)).toEqual(names);
      await ops.deleteLinks(names);
      await ops.deleteLinks(names);
      expect(await ops.listLinks(prefix)).toEqual([]);
    } finally {
      await ops.close();
    }
  });

  it('bulk delete removes exactly the links named (veth pairs with both ends listed too)', async () => {
    const w = await sandbox('bd');
    await ensureNetns(`${prefix}-bdp`);
    await w.links.ensureVeth({ name: 'a0', peer: 'a1' });
    await w.links.ensureVeth({ name: 'b0', peer: 'eth0', peerNetns: `${prefix}-bdp` });
    await w.links.ensureBridge('keep0');
    await w.links.ensureBridge('c0');
    await w.links.deleteLinks(['a0', 'a1', 'b0', 'c0', 'gone0']);
    expect((await w.links.listLinks()).map((l) => l.name)).toEqual(['keep0', 'lo']);
  });

  it('errors carry op and errno across the worker boundary', async () => {
    const w = await sandbox('er');
    await w.links.ensureBridge('br0');
    const e = await kernelError(w.links.moveToNetns('br0', `${prefix}-missing`));
    expect(e).toBeInstanceOf(KernelError);
    expect([e.op, e.errno, e.kind, isNotFound(e)]).toEqual(['link.moveToNetns', 'ENOENT', 'NotFound', true]);
    const e2 = await kernelError(w.links.ensureMacvlan({ name: 'mv0', parent: 'nope0' }));
    expect([e2.op, e2.errno]).toEqual(['link.ensureMacvlan', 'ENODEV']);
    const e3 = await kernelError(w.call('t.noSuchHandler'));
    expect(e3.errno).toBe('ENOSYS');
  });
});
