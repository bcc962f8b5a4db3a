/**
 * The in-tree kernel doubles behave like the kernel where drivers depend on it: idempotent
 * ensure/delete, the same errnos, atomic nft scripts. The link scenario is the one the
 * integration test runs against the real kernel (test/helpers/netns.ts).
 */
import { describe, expect, it } from 'vitest';
import { isExists, isNotFound } from '../../src/errors.js';
import { FakeKernel, FakeLinkOps } from '../../src/kernel/netlink.js';
import { FakeNft } from '../../src/kernel/nft.js';
import { FakeSysctl } from '../../src/kernel/sysctl.js';
import { expectedObservation, idempotencyScenario, kernelError as errorOf } from '../helpers/netns.js';


describe('FakeLinkOps', () => {
  it('passes the shared idempotency scenario with the kernel\'s answers', async () => {
    const kernel = new FakeKernel();
    kernel.addNetns('peer');
    const ops = kernel.ops('sbx');
    expect(await idempotencyScenario(ops, 's', 'peer')).toEqual(expectedObservation('s'));
    // The peer of the cross-netns veth went where it was asked.
    expect(kernel.dump()['peer']?.links.map((l) => l.name)).toEqual(['sx1']);
  });

  it('models kernel side effects of deletes and moves', async () => {
    const kernel = new FakeKernel();
    kernel.addNetns('task');
    const host = kernel.ops();
    await host.ensureBridge('br0');
    await host.ensureVeth({ name: 've0', peer: 've1' });
    await host.setMaster('ve0', 'br0');
    await host.ensureMacvlan({ name: 'mv0', parent: 've1' });
    await host.ensureAddress('mv0', '10.0.0.2/24');
    await host.setUp('mv0');

    await host.moveToNetns('mv0', '/run/netns/task', 'eth0');
    const moved = kernel.ops('task').dump().links[0];
    expect(moved).toMatchObject({ name: 'eth0', kind: 'macvlan', up: false, addrs: [] });

    await host.deleteLink('br0');
    expect((await host.getLink('ve0'))?.master).toBeUndefined();
    await host.deleteLink('ve1'); // takes its peer ve0 with it
    expect(await host.listLinks()).toEqual([]);
  });

  it('deleting a netns deletes its links and the veth peers outside it', async () => {
    const kernel = new FakeKernel();
    kernel.addNetns('sbx');
    const host = kernel.ops();
    await host.ensureVeth({ name: 'h0', peer: 'eth0', peerNetns: 'sbx' });
    kernel.deleteNetns('sbx');
    expect(await host.listLinks()).toEqual([]);
    expect(kernel.listNetns()).toEqual(['host']);
  });

  it('fails like the kernel: errno, op, predicates', async () => {
    const ops = new FakeLinkOps();
    const e1 = await errorOf(ops.setMtu('nope', 1400));
    expect([e1.op, e1.errno, isNotFound(e1)]).toEqual(['link.setMtu', 'ENODEV', true]);
    await ops.ensureVeth({ name: 'a0', peer: 'a1' });
    const e2 = await errorOf(ops.ensureVeth({ name: 'b0', peer: 'a1' }));
    expect([e2.errno, isExists(e2)]).toEqual(['EEXIST', true]);
    const e3 = await errorOf(ops.setMtu('a0', 20));
    expect(e3.errno).toBe('EINVAL');
    await ops.close();
    expect((await errorOf(ops.listLinks())).errno).toBe('EBADF');
  });

  it('dump() is plain, sorted data', async () => {
    const ops = new FakeLinkOps();
    await ops.ensureBridge('zz');
    await ops.ensureBridge('aa');
    await ops.ensureAddress('aa', '10.1.0.1/16');
    await ops.ensureRoute({ via: '10.1.0.254' });
    await ops.ensureRoute({ via: '10.1.0.253' }); // replaces: one default route
    expect(ops.dump()).toEqual({
      links: [
        { name: 'aa', kind: 'bridge', up: false, mtu: 1500, addrs: ['10.1.0.1/16'], neigh: [], fdb: [] },
        { name: 'zz', kind: 'bridge', up: false, mtu: 1500, addrs: [], neigh: [], fdb: [] },
      ],
      routes: ['default via 10.1.0.253'],
    });
  });
});

describe('FakeNft', () => {
  const table = 'add table inet shoal\ntable inet shoal {\n  chain pre { type nat hook prerouting priority -100; }\n}\n';

  it.each([
    ['add table twice', [table, table], ['inet shoal']],
    ['add then delete', [table, 'delete table inet shoal'], []],
    ['replace idiom on a fresh kernel', ['add table inet shoal; delete table inet shoal; table inet shoal { }'], ['inet shoal']],
  ])('%s', async (_name, scripts, tables) => {
    const nft = new FakeNft();
    for (const s of scripts) await nft.apply(s);
    expect(nft.listTables()).toEqual(tables);
    expect(nft.dump()).toBe(scripts.join('\n'));
  });

  it('a failing script changes nothing (atomic), like nft -f', async () => {
    const nft = new FakeNft();
    await nft.apply(table);
    const e = await errorOf(nft.apply('add table ip other\ndelete table ip missing\n'));
    expect([e.op, e.errno, isNotFound(e)]).toEqual(['nft.apply', 'ENOENT', true]);
    expect(e.stderr).toContain('No such file or directory');
    expect(nft.listTables()).toEqual(['inet shoal']);
    expect(nft.applied).toEqual([table]);
  });

  it('create table of an existing table fails EEXIST; failNext injects once', async () => {
    const nft = new FakeNft();
    await nft.apply(table);
    expect(isExists(await errorOf(nft.apply('create table inet shoal')))).toBe(true);
    nft.failNext('EINVAL', 'Error: syntax error');
    expect((await errorOf(nft.apply(table))).errno).toBe('EINVAL');
    await nft.apply(table);
    expect(nft.applied).toHaveLength(2);
  });

  it('list answers for present tables and ENOENT otherwise', async () => {
    const nft = new FakeNft();
    await nft.apply(table);
    expect((await nft.list('shoal')).nftables).toContainEqual({ table: { family: 'inet', name: 'shoal' } });
    expect(isNotFound(await errorOf(nft.list('shoal', 'ip')))).toBe(true);
  });
});

describe('FakeSysctl', () => {
  it('reads, writes idempotently, and rejects unknown keys with ENOENT', async () => {
    const s = new FakeSysctl({ 'net.ipv4.ip_forward': 0 });
    await s.set('net.ipv4.ip_forward', 1);
    await s.set('net.ipv4.ip_forward', 1);
    expect(await s.get('net.ipv4.ip_forward')).toBe('1');
    expect(isNotFound(await errorOf(s.get('net.ipv4.nope')))).toBe(true);
    expect(s.dump()).toEqual({ 'net.ipv4.ip_forward': '1' });
  });
});
