/**
 * `shoal down`: leave the machine as it was before `shoal up`. Stopping a daemon with SIGTERM
 * keeps its tasks and kernel state (a restart adopts them, established connections survive);
 * `down` is the opposite: it stops the local daemon, then every task it ran, and removes every
 * namespace, link, nft table and sysctl change Shoal made here, as the agent's footprint
 * (footprint.ts) records them. It works whether or not the daemon is still running. IPVS
 * services live only in sandboxes, so they go with the namespaces. The data dir (cluster state,
 * logs) is kept: a later `shoal up` on it brings the services back.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupLeftovers } from '../../src/drivers/cleanup.js';
import { hostDriverContext } from '../../src/drivers/index.js';
import { messageOf } from '../../src/errors.js';
import { deleteNetns, execTool, listNetns, ProcSysctl } from '../../src/kernel/index.js';
import { procStartTime } from '../../src/kernel/proc.js';
import { ProcessRuntime } from '../agent/process-runtime.js';

export { procStartTime };
import { readFootprint, type Footprint } from './footprint.js';

/** Where a daemon announces its pid (written at start, removed at a clean exit). */
export const pidPath = (dataDir: string): string => join(dataDir, 'shoal.pid');

export interface PidRecord { pid: number; start: string; kind: string }

/** What `down` did, for the user. */
export interface DownReport {
  daemon: string;
  tasks: number;
  netns: string[];
  links: string[];
  nftTables: string[];
  sysctls: string[];
  errors: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SIGTERM to the daemon recorded in `dataDir`, SIGKILL after `graceMs`; what happened. */
async function stopDaemon(dataDir: string, graceMs: number): Promise<string> {
  const p = pidPath(dataDir);
  if (!existsSync(p)) return `no daemon running (none recorded in ${dataDir})`;
  const rec = JSON.parse(readFileSync(p, 'utf8')) as PidRecord;
  const alive = (): boolean => procStartTime(rec.pid) === rec.start;
  if (!alive()) {
    rmSync(p, { force: true });
    return `shoal ${rec.kind} (pid ${rec.pid}) was not running`;
  }
  process.kill(rec.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(50);
  let how = 'stopped';
  if (alive()) {
    process.kill(rec.pid, 'SIGKILL');
    while (alive()) await sleep(20);
    how = `killed after ${graceMs} ms`;
  }
  rmSync(p, { force: true });
  return `shoal ${rec.kind} (pid ${rec.pid}) ${how}`;
}

/** The agent data dirs under `dataDir`: `shoal up` keeps its agent in `agent/`, `shoal agent` uses the dir itself. */
function agentDirs(dataDir: string): string[] {
  return [join(dataDir, 'agent'), dataDir].filter((d) => existsSync(join(d, 'footprint.json')) || existsSync(join(d, 'tasks')));
}

/** Every node nft table of the footprint's prefix (`<prefix>_net`, `<prefix>_publish`...), as `family name`. */
async function ownedTables(prefix: string): Promise<string[]> {
  const { stdout } = await execTool('nft.list', 'nft', ['list', 'tables']);
  return stdout.split('\n').map((l) => /^table (\S+) (\S+)$/.exec(l.trim())).filter((m): m is RegExpExecArray => m !== null)
    .filter((m) => (m[2] ?? '').startsWith(`${prefix}_`)).map((m) => `${m[1]} ${m[2]}`);
}

/** Takes back what one agent's footprint says it made (tasks already stopped). */
async function undoFootprint(fp: Footprint, r: DownReport): Promise<void> {
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      r.errors.push(`${what}: ${messageOf(e)}`);
    }
  };
  await step('namespaces', async () => {
    for (const ns of await listNetns(fp.netnsPrefix)) {
      await deleteNetns(ns);
      rmSync(join(fp.etcNetnsDir, ns), { recursive: true, force: true });
      r.netns.push(ns);
    }
  });
  await step('links', async () => {
    const ctx = hostDriverContext({ prefix: fp.linkPrefix, underlay: { address: '0.0.0.0' } });
    try {
      r.links.push(...await cleanupLeftovers(ctx, new Set()));
    } finally {
      await ctx.close();
    }
  });
  await step('nft tables', async () => {
    const tables = await ownedTables(fp.linkPrefix);
    if (tables.length) await execTool('nft.apply', 'nft', ['-f', '-'], { input: tables.map((t) => `delete table ${t}\n`).join('') });
    r.nftTables.push(...tables);
  });
  if (fp.claimFile) rmSync(fp.claimFile, { force: true });
  await step('sysctls', async () => {
    const sysctl = new ProcSysctl();
    for (const [k, v] of Object.entries(fp.sysctls)) {
      await sysctl.set(k, v);
      r.sysctls.push(`${k}=${v}`);
    }
  });
}

/**
 * Stops the daemon of `dataDir` and every task it ran, then removes what its agent made on
 * this machine. Each step on its own: one that fails is reported and the others still run.
 */
export async function shoalDown(dataDir: string, opts: { graceMs?: number } = {}): Promise<DownReport> {
  const r: DownReport = { daemon: '', tasks: 0, netns: [], links: [], nftTables: [], sysctls: [], errors: [] };
  r.daemon = await stopDaemon(dataDir, opts.graceMs ?? 30_000);
  for (const dir of agentDirs(dataDir)) {
    const runtime = new ProcessRuntime(join(dir, 'tasks'));
    const ids = runtime.list();
    // The runtime watches adopted processes with unref'd timers (an agent must not be kept
    // alive by them): here they are all this process waits for, so hold the loop open.
    const hold = setInterval(() => undefined, 1000);
    try {
      await Promise.all(ids.map((id) => runtime.ensureStopped(id).catch((e: unknown) => { r.errors.push(`task ${id}: ${messageOf(e)}`); })));
    } finally {
      clearInterval(hold);
    }
    await runtime.close();
    r.tasks += ids.length;
    const fp = readFootprint(dir);
    if (fp?.isolation === 'netns') await undoFootprint(fp, r);
    // Namespaces, links and tables are gone; what is left to restore next time is nothing.
    if (fp) rmSync(join(dir, 'footprint.json'), { force: true });
  }
  return r;
}

/** The report as lines for the terminal. */
export function formatDown(r: DownReport): string {
  const lines = [
    r.daemon,
    `stopped ${r.tasks} task${r.tasks === 1 ? '' : 's'}`,
    `removed ${r.netns.length} namespace${r.netns.length === 1 ? '' : 's'}, ${r.links.length} link${r.links.length === 1 ? '' : 's'}, ${r.nftTables.length} nft table${r.nftTables.length === 1 ? '' : 's'}${r.nftTables.length ? ` (${r.nftTables.join(', ')})` : ''}`,
    r.sysctls.length ? `restored ${r.sysctls.join(', ')}` : 'no sysctl to restore',
    ...r.errors.map((e) => `error: ${e}`),
  ];
  return lines.join('\n') + '\n';
}
