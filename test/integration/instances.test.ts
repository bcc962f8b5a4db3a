/**
 * Two `shoal up` on one host, each in a network namespace of the test (like two VMs' worth of
 * Shoal on one kernel), both with the default names: their namespace names (host-wide) and
 * link prefixes differ, one starting (its leftover cleanup) and restarting does not touch the
 * other's task sandboxes, each deletes its own leftovers and never a link with another
 * instance's prefix, and tasks on both keep running. Names come from each data dir's instance
 * tag (mesh/daemon/instance.ts); both are named after the host, as two instances on one machine
 * would be (the old default names collided). Only loopback inside the test's namespaces.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../mesh/cli/main.js';
import { INSTANCE_FILE } from '../../mesh/daemon/instance.js';
import { linkPrefixOf } from '../../src/drivers/names.js';
import { ensureNetns, listNetns } from '../../src/kernel/netns.js';
import type { Task } from '../../src/model/types.js';
import { spawnInNetns, runInNetns, type HarnessProcess } from '../harness/process.js';
import { killNetnsProcesses, killRecordedTasks } from '../harness/sweep.js';
import { until } from '../helpers/cluster.js';
import { cleanupPrefix, makeTestPrefix } from '../helpers/netns.js';
import { REPO_ROOT, SHOAL_MAIN } from '../helpers/shoal-process.js';

const P = makeTestPrefix();
const root = mkdtempSync(join(tmpdir(), 'shoal-instances-'));

interface Instance { name: 'a' | 'b'; netns: string; dataDir: string; proc?: HarnessProcess; tag?: string }
const inst: Record<'a' | 'b', Instance> = {
  a: { name: 'a', netns: `${P}a`, dataDir: join(root, 'a') },
  b: { name: 'b', netns: `${P}b`, dataDir: join(root, 'b') },
};

const tagOf = (i: Instance): string => (JSON.parse(readFileSync(join(i.dataDir, 'agent', INSTANCE_FILE), 'utf8')) as { tag: string }).tag;
const inode = (ns: string): number => statSync(`/run/netns/${ns}`).ino;

async function shoal(i: Instance, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const env = { ...process.env, SHOAL_HOST: `unix://${join(i.dataDir, 'shoal.sock')}`, SHOAL_TOKEN: readFileSync(join(i.dataDir, 'manager.token'), 'utf8').trim() };
  const code = await runCli(args, { out: (s) => { out += s; }, err: (s) => { err += s; }, env });
  return { code, out, err };
}

async function up(i: Instance): Promise<void> {
  const p = spawnInNetns(i.netns, [process.execPath, '--import', 'tsx', SHOAL_MAIN, 'up', '--data-dir', i.dataDir,
    '--address', '127.0.0.1', '--metrics-addr', '127.0.0.1:0', '--dns-upstream', '127.0.0.1:53', '--lb-dataplane', 'nftables'], { cwd: REPO_ROOT });
  i.proc = p;
  await until(async () => {
    if (!p.running()) throw new Error(`shoal up (${i.name}) exited: ${p.output()}`);
    const r = await shoal(i, 'node', 'ls', '--format', 'json').catch(() => undefined);
    return r?.code === 0 && (JSON.parse(r.out) as Array<{ state: string }>).some((n) => n.state === 'ready');
  }, `shoal up ${i.name} ready`, 60_000, 200);
  i.tag = tagOf(i);
}

async function running(i: Instance, service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const r = await shoal(i, 'service', 'ps', service, '--format', 'json');
    const ts = (JSON.parse(r.out) as Task[]).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service} on ${i.name}`, 60_000, 200);
}

/** The task and ingress namespaces of an instance, with their inodes (a recreated one has another). */
async function sandboxes(i: Instance): Promise<Map<string, number>> {
  return new Map((await listNetns(`shoal-${i.tag}-`)).map((ns) => [ns, inode(ns)]));
}

beforeAll(async () => {
  for (const i of Object.values(inst)) {
    await ensureNetns(i.netns);
    expect((await runInNetns(i.netns, ['ip', 'link', 'set', 'lo', 'up'])).code).toBe(0);
  }
}, 30_000);

afterAll(async () => {
  for (const i of Object.values(inst)) await i.proc?.stop('SIGTERM', 3000);
  killRecordedTasks([inst.a.dataDir, inst.b.dataDir].map((d) => join(d, 'agent')));
  for (const i of Object.values(inst)) {
    const tag = i.tag ?? (() => { try { return tagOf(i); } catch { return undefined; } })();
    if (tag) {
      await killNetnsProcesses(`shoal-${tag}-`);
      await cleanupPrefix(`shoal-${tag}-`);
    }
  }
  await killNetnsProcesses(P);
  await cleanupPrefix(P);
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe('two instances on one host, default names', () => {
  it('each has its own tag, link prefix and namespace prefix; starting the second leaves the first\'s sandboxes alone', async () => {
    await up(inst.a);
    expect((await shoal(inst.a, 'network', 'create', '-d', 'bridge', '--subnet', '10.201.1.0/24', 'app')).code).toBe(0);
    expect((await shoal(inst.a, 'service', 'create', '--name', 'web', '--replicas', '2', '--network', 'app', '--', 'sleep', '600')).code).toBe(0);
    const webA = await running(inst.a, 'web', 2);
    const before = await sandboxes(inst.a);
    // Two task sandboxes and the ingress sandbox, named after A's tag.
    expect([...before.keys()].sort()).toEqual([...webA.map((t) => `shoal-${inst.a.tag}-${t.id}`), `shoal-${inst.a.tag}-ingress-sbox`].sort());

    // Both run at 127.0.0.1: each says, at start, that no other node could reach it.
    expect(inst.a.proc?.output()).toMatch(/warning: the node address is 127\.0\.0\.1, a loopback address: other nodes cannot reach this one/);

    await up(inst.b);
    expect(inst.b.tag).not.toBe(inst.a.tag);
    expect(linkPrefixOf(inst.b.tag as string)).not.toBe(linkPrefixOf(inst.a.tag as string));
    expect((await shoal(inst.b, 'network', 'create', '-d', 'bridge', '--subnet', '10.202.1.0/24', 'app')).code).toBe(0);
    expect((await shoal(inst.b, 'service', 'create', '--name', 'web', '--replicas', '1', '--network', 'app', '--', 'sleep', '600')).code).toBe(0);
    const [webB] = await running(inst.b, 'web', 1) as [Task];
    expect((await sandboxes(inst.b)).has(`shoal-${inst.b.tag}-${webB.id}`)).toBe(true);

    // A's sandboxes are the very same namespaces, and A's tasks the same processes.
    expect(await sandboxes(inst.a)).toEqual(before);
    expect((await running(inst.a, 'web', 2)).map((t) => t.status.pid).sort()).toEqual(webA.map((t) => t.status.pid).sort());
    // Each instance's tables carry its own link prefix.
    for (const i of [inst.a, inst.b]) {
      const tables = (await runInNetns(i.netns, ['nft', 'list', 'tables'])).stdout;
      expect(tables).toContain(`table inet ${linkPrefixOf(i.tag as string)}_net`);
      expect(tables).toContain(`table inet ${linkPrefixOf(i.tag as string)}_publish`);
    }
  }, 180_000);

  it('a restart cleans up only its own leftovers: not the other\'s namespaces, not a link with another prefix', async () => {
    const a = inst.a;
    const b = inst.b;
    const pa = linkPrefixOf(a.tag as string);
    const pb = linkPrefixOf(b.tag as string);
    // Leftovers of B: a namespace with B's prefix and no task, a bridge named like B's in A's netns
    // (as if B had run there), and one named like A's own (a real leftover of A).
    expect((await runInNetns(b.netns, ['ip', 'netns', 'add', `shoal-${b.tag}-0123456789abcdef`])).code).toBe(0);
    expect((await runInNetns(a.netns, ['ip', 'link', 'add', `${pb}b0123456789`, 'type', 'bridge'])).code).toBe(0);
    expect((await runInNetns(a.netns, ['ip', 'link', 'add', `${pa}b0123456789`, 'type', 'bridge'])).code).toBe(0);
    const aBefore = await sandboxes(a);

    await b.proc?.stop('SIGTERM', 3000);
    await up(b);
    await until(async () => !(await listNetns(`shoal-${b.tag}-0123456789abcdef`)).length, 'B deleted its leftover namespace', 30_000, 200);
    expect(await sandboxes(a)).toEqual(aBefore);

    await a.proc?.stop('SIGTERM', 3000);
    await up(a);
    await until(async () => (await runInNetns(a.netns, ['ip', 'link', 'show', `${pa}b0123456789`])).code !== 0, 'A deleted its own leftover bridge', 30_000, 200);
    expect((await runInNetns(a.netns, ['ip', 'link', 'show', `${pb}b0123456789`])).code).toBe(0);
    // Both still run their tasks, adopted across the restarts.
    await running(a, 'web', 2);
    await running(b, 'web', 1);
    expect(await sandboxes(a)).toEqual(aBefore);
  }, 180_000);
});
