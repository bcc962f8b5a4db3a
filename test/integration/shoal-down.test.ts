/**
 * Leaving a machine clean: `shoal up` stopped with SIGTERM keeps its tasks and kernel state (a
 * restart adopts them); `shoal down` stops the daemon and every task, and removes every
 * namespace, link, nft table and sysctl change Shoal made, so `ip netns`, `ip link`,
 * `nft list ruleset` and the sysctls read exactly as before `shoal up`. Also when the daemon
 * was killed with SIGKILL first.
 *
 * "The machine" is a fresh namespace of this test (loopback and an address on a veth whose both ends are in it: no route out):
 * `shoal up` and `shoal down` run inside it, so what they do to "the host" is done there.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureNetns, listNetns } from '../../src/kernel/netns.js';
import type { Task } from '../../src/model/types.js';
import { isAlive } from '../harness/sweep.js';
import { runInNetns, spawnInNetns, type HarnessProcess } from '../harness/process.js';
import { until } from '../helpers/cluster.js';
import { cleanupPrefix, makeTestPrefix } from '../helpers/netns.js';
import { REPO_ROOT, SHOAL_MAIN } from '../helpers/shoal-process.js';

const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const P = makeTestPrefix();
const machine = `${P}m`;
const address = `198.18.${10 + Math.floor(Math.random() * 200)}.2`;
const dir = mkdtempSync(join(tmpdir(), 'shoal-down-'));
const shoalArgv = [process.execPath, '--import', 'tsx', SHOAL_MAIN];
let up: HarnessProcess | undefined;
const seenPids = new Set<number>();

const inMachine = async (...cmd: string[]): Promise<string> => {
  const r = await runInNetns(machine, cmd, { timeoutMs: 60_000, cwd: REPO_ROOT });
  if (r.code !== 0) throw new Error(`${cmd.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
};
const shoal = (...args: string[]): Promise<string> => inMachine(...shoalArgv, ...args);
const cli = (...args: string[]): Promise<string> => inMachine('env', `SHOAL_DATA_DIR=${dir}`, ...shoalArgv, ...args);

/** What must read the same before `shoal up` and after `shoal down`. */
async function snapshot(): Promise<Record<string, string>> {
  return {
    netns: (await listNetns(P)).join('\n'),
    links: (await inMachine('ip', '-o', 'link', 'show')).replace(/^\d+: /gm, ''),
    addresses: (await inMachine('ip', '-o', 'addr', 'show')).replaceAll(' tentative', ''), // IPv6 DAD finishing is not Shoal's
    routes: await inMachine('ip', 'route', 'show'),
    nft: await inMachine('nft', 'list', 'ruleset'),
    sysctls: await inMachine('sysctl', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding', 'net.ipv4.conf.all.route_localnet'),
    etcNetns: (() => { try { return readdirSync('/etc/netns').filter((f) => f.startsWith(P)).join('\n'); } catch { return ''; } })(),
  };
}

function startUp(): HarnessProcess {
  up = spawnInNetns(machine, [
    ...shoalArgv, 'up', '--data-dir', dir, '--name', P, '--address', address, '--netns-prefix', `${P}-`,
    '--metrics-addr', '', '--dns-upstream', '127.0.0.1:1', '--lb-dataplane', 'nftables',
  ], { cwd: REPO_ROOT });
  return up;
}

/** `n` web tasks running (as the cluster says), none with a pid in `not` (tasks of an earlier start). */
async function running(n: number, not: ReadonlySet<number> = new Set()): Promise<Task[]> {
  return until(async () => {
    const ts = (JSON.parse(await cli('service', 'ps', 'web', '--format', 'json')) as Task[])
      .filter((t) => t.desiredState === 'running' && t.status.state === 'running' && !not.has(t.status.pid ?? 0) && isAlive(t.status.pid ?? 0));
    for (const t of ts) if (t.status.pid) seenPids.add(t.status.pid);
    return ts.length === n ? ts : undefined;
  }, `${n} running web tasks (shoal up log:\n${up?.output() ?? ''})`, 40_000, 250);
}

const published = async (): Promise<string> => inMachine('curl', '-sS', '-m', '3', `http://${address}:8099/`);

beforeAll(async () => {
  await ensureNetns(machine);
  await inMachine('ip', 'link', 'set', 'lo', 'up');
  await inMachine('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1'); // both ends here: an address with no way out
  await inMachine('ip', 'link', 'set', 'd1', 'up');
  await inMachine('ip', 'addr', 'add', `${address}/24`, 'dev', 'd0');
  await inMachine('ip', 'link', 'set', 'd0', 'up');
  // A new namespace inherits the host's IPv4 forwarding: start from "off", whatever the host has.
  await inMachine('sysctl', '-qw', 'net.ipv4.ip_forward=0');
}, 30_000);

afterAll(async () => {
  await up?.stop('SIGKILL');
  for (const p of seenPids) if (isAlive(p)) { try { process.kill(-p, 'SIGKILL'); } catch { /* gone */ } }
  await cleanupPrefix(P);
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('shoal down', () => {
  it('SIGTERM keeps tasks and kernel state; down removes all of it; a killed daemon is cleaned up too', async () => {
    const before = await snapshot();
    startUp();
    await until(async () => (await cli('node', 'ls')).includes(P), 'shoal up to serve', 30_000, 250);
    await cli('network', 'create', '--subnet', '10.93.0.0/24', 'app');
    await cli('service', 'create', '--name', 'web', '--replicas', '2', '--network', 'app', '-p', '8099:80', '-e', 'PORT=80', '--', process.execPath, BACKEND);
    const tasks = await running(2);
    await until(async () => (await published()).startsWith('web.'), 'the published port to answer', 20_000, 250);
    const during = await snapshot();
    expect((during.netns ?? '').split('\n').length).toBeGreaterThanOrEqual(3); // 2 tasks + the ingress sandbox
    expect(during.nft).toMatch(/table inet \w+_publish/);
    expect(during.sysctls).toMatch(/net.ipv4.ip_forward = 1/);
    expect(during.sysctls).toMatch(/net.ipv4.conf.all.route_localnet = 1/); // published ports on 127.0.0.1

    // SIGTERM: the daemon goes, its tasks and everything they need stay.
    await up?.stop('SIGTERM', 20_000);
    for (const t of tasks) expect(isAlive(t.status.pid as number), `task ${t.id} survives SIGTERM of shoal up`).toBe(true);
    expect((await snapshot()).netns).toBe(during.netns);
    expect((await published()).startsWith('web.')).toBe(true); // the kernel keeps serving without the daemon

    const out = await shoal('down', '--data-dir', dir);
    expect(out).toMatch(/no daemon running/); // it had stopped cleanly (and said so): nothing to signal
    expect(out).toMatch(/stopped 2 tasks/);
    expect(out).toMatch(/restored .*net.ipv4.ip_forward=0/);
    expect(out).toMatch(/restored .*net.ipv4.conf.all.route_localnet=0/);
    for (const t of tasks) expect(isAlive(t.status.pid as number), `task ${t.id} after shoal down`).toBe(false);
    expect(await snapshot()).toEqual(before);
    await expect(published()).rejects.toThrow();

    // The data dir is kept: up again brings the service back; then SIGKILL, and down still cleans.
    startUp();
    await running(2, new Set(seenPids));
    await until(async () => (await published()).startsWith('web.'), 'the published port to answer again', 20_000, 250);
    await up?.stop('SIGKILL');
    const out2 = await shoal('down', '--data-dir', dir);
    expect(out2).toMatch(/shoal up \(pid \d+\) was not running/); // killed: its pid file stayed behind
    expect(out2).toMatch(/stopped 2 tasks/);
    expect(await snapshot()).toEqual(before);
    for (const p of seenPids) expect(isAlive(p), `task pid ${p} after the second shoal down`).toBe(false);
  }, 240_000);

  it('stops a running daemon itself', async () => {
    startUp();
    await until(async () => (await cli('node', 'ls')).includes(P), 'shoal up to serve', 30_000, 250);
    const out = await shoal('down', '--data-dir', dir);
    expect(out).toMatch(/shoal up \(pid \d+\) stopped/);
    await up?.exited;
    expect(up?.running()).toBe(false);
  }, 120_000);
});
