/**
 * Finding and ending what a harness left behind: processes living in its namespaces, task
 * processes its agents recorded, the namespaces and links carrying its prefix.
 *
 * Only namespaces whose name starts with the harness's own prefix are looked at, and a
 * process is killed only when it lives in one of them (same test as `ip netns pids`: the
 * nsfs device and inode of `/proc/PID/ns/net` equal those of `/run/netns/NAME`), or when an
 * agent of the harness recorded it with its start time. Everything here is synchronous on
 * purpose: the same code runs from a `process.on('exit')` handler, where nothing async runs.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { NETNS_DIR } from '../../src/kernel/paths.js';

/** `dev:ino` of each named netns starting with `prefix` -> its name. */
function namedNetns(prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(NETNS_DIR).filter((n) => n.startsWith(prefix));
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const st = statSync(join(NETNS_DIR, name));
      out.set(`${st.dev}:${st.ino}`, name);
    } catch {
      // Deleted meanwhile.
    }
  }
  return out;
}

/** `dev:ino` of a process's network namespace, or undefined when it is gone (or a zombie). */
function netnsKeyOfPid(pid: number): string | undefined {
  try {
    const st = statSync(`/proc/${pid}/ns/net`);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Every process (pid) living in a named netns that starts with `prefix`, with that name. */
export function pidsInNetns(prefix: string): Array<{ pid: number; netns: string }> {
  const ns = namedNetns(prefix);
  if (ns.size === 0) return [];
  const out: Array<{ pid: number; netns: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const key = netnsKeyOfPid(pid);
    const name = key === undefined ? undefined : ns.get(key);
    if (name !== undefined) out.push({ pid, netns: name });
  }
  return out;
}

/** The name of the netns (among those starting with `prefix`) that `pid` lives in. */
export function netnsOfPid(pid: number, prefix: string): string | undefined {
  const key = netnsKeyOfPid(pid);
  return key === undefined ? undefined : namedNetns(prefix).get(key);
}

import { procStartTime } from '../../src/kernel/proc.js';

export { procStartTime };

/** True while `pid` exists and is not a zombie (an exited child nobody reaped yet). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already.
  }
}

/** SIGKILL every process in the prefix's namespaces once, but those in `except`; returns the pids signalled. */
export function killNetnsProcessesOnce(prefix: string, except: ReadonlySet<number> = new Set()): number[] {
  const pids = pidsInNetns(prefix).map((p) => p.pid).filter((p) => !except.has(p));
  for (const pid of pids) kill(pid, 'SIGKILL');
  return pids;
}

/**
 * SIGKILL every process in the prefix's namespaces until none is left (a dying parent may
 * still fork), or throw at the deadline listing the survivors.
 */
export async function killNetnsProcesses(prefix: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = killNetnsProcessesOnce(prefix);
    if (pids.length === 0) return;
    if (Date.now() > deadline) throw new Error(`processes still alive in netns ${prefix}*: ${pids.join(' ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Task processes recorded by the agents under `dirs`: every `*.pid` file holding
 * `{pid, start}` (what mesh/agent/process-runtime.ts writes) whose process still has that
 * start time. A second net under the netns sweep, for tasks in namespaces it cannot name.
 */
export function recordedTaskPids(dirs: readonly string[]): number[] {
  const out: number[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory() && depth < 4) walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith('.pid')) {
        try {
          const rec = JSON.parse(readFileSync(p, 'utf8')) as { pid?: unknown; start?: unknown };
          if (typeof rec.pid === 'number' && rec.pid > 1 && procStartTime(rec.pid) === rec.start) out.push(rec.pid);
        } catch {
          // Not a pid record of ours.
        }
      }
    }
  };
  for (const d of dirs) walk(d, 0);
  return out;
}

/** SIGKILL the recorded task processes (and their process groups, as the agent starts them detached). */
export function killRecordedTasks(dirs: readonly string[]): void {
  for (const pid of recordedTaskPids(dirs)) {
    kill(-pid, 'SIGKILL');
    kill(pid, 'SIGKILL');
  }
}

/**
 * Best-effort synchronous removal of everything carrying `prefix` (for `process.on('exit')`):
 * processes in its namespaces, the namespaces, and root-netns links with the prefix.
 */
export function sweepPrefixSync(prefix: string): void {
  if (prefix.length < 4) return;
  killNetnsProcessesOnce(prefix);
  let names: string[] = [];
  try {
    names = readdirSync(NETNS_DIR).filter((n) => n.startsWith(prefix));
  } catch {
    // No /run/netns: nothing to delete.
  }
  for (const n of names) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of links.split('\n')) {
    // "7: name@peer: <...>": the name ends at '@' (veth peer) or ':'.
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name?.startsWith(prefix)) spawnSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  }
}
