/**
 * How the process runtime starts a task with the options of task-spec.ts, as one argv of
 * standard tools (so every step happens before the task's own program, in the right order):
 *
 *   sh -c 'join cgroups'  ->  unshare --uts (hostname)  ->  ip netns exec NS  ->  setpriv (user)  ->  COMMAND
 *
 * Root steps come first; the user is dropped last, just before the task's program. The working
 * directory is the spawn's (every step keeps it). Users are resolved from the node's
 * /etc/passwd and /etc/group, as Docker resolves them in the container's.
 */
import { readFileSync } from 'node:fs';
import { invalid } from '../../src/errors.js';
import type { TaskRunOptions } from './task-spec.js';

/** A user resolved on the node. */
export interface ResolvedUser { uid: number; gid: number; name?: string; home?: string }

interface PasswdEntry { name: string; uid: number; gid: number; home: string }

function readTable(path: string): string[][] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/**
 * Resolves Docker's `--user` (`name`, `uid`, `name:group`, `uid:gid`) on this node. A name that
 * does not exist is an error; a bare uid without a passwd entry runs with gid 0, as in Docker.
 */
export function resolveUser(user: string, files: { passwd?: string; group?: string } = {}): ResolvedUser {
  const passwd: PasswdEntry[] = readTable(files.passwd ?? '/etc/passwd').map((f) => ({ name: f[0] ?? '', uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' }));
  const groups = readTable(files.group ?? '/etc/group').map((f) => ({ name: f[0] ?? '', gid: Number(f[2]) }));
  const [u = '', g] = user.split(':');
  const numeric = (s: string): boolean => /^\d+$/.test(s);
  const entry = numeric(u) ? passwd.find((p) => p.uid === Number(u)) : passwd.find((p) => p.name === u);
  if (!entry && !numeric(u)) throw invalid(`user '${u}' does not exist on this node (no /etc/passwd entry)`);
  const uid = entry?.uid ?? Number(u);
  let gid = entry?.gid ?? 0;
  if (g !== undefined) {
    const grp = numeric(g) ? { gid: Number(g) } : groups.find((x) => x.name === g);
    if (!grp) throw invalid(`group '${g}' does not exist on this node (no /etc/group entry)`);
    gid = grp.gid;
  }
  return { uid, gid, ...(entry ? { name: entry.name, home: entry.home } : {}) };
}

/** Shell that writes its own pid into each file given before `--`, then runs the rest. */
const JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
/** Shell (in a fresh UTS namespace) that sets the host name, then runs the rest. */
const SET_HOSTNAME = 'hostname "$1" || exit 125; shift; exec "$@"';

/**
 * The argv that runs `command` with `o` applied. `cgroupProcs` are the `cgroup.procs` files of
 * the task's cgroups (made beforehand); `user` the resolved user, when `o.user` is set.
 */
export function processArgv(command: readonly string[], o: TaskRunOptions, cgroupProcs: readonly string[] = [], user?: ResolvedUser): string[] {
  let argv = [...command];
  if (user) {
    argv = ['setpriv', '--reuid', String(user.uid), '--regid', String(user.gid), user.name ? '--init-groups' : '--clear-groups', '--', ...argv];
  }
  if (o.netns) argv = ['ip', 'netns', 'exec', o.netns, ...argv];
  if (o.hostname) argv = ['unshare', '--uts', '--', 'sh', '-c', SET_HOSTNAME, 'shoal-hostname', o.hostname, ...argv];
  if (cgroupProcs.length) argv = ['sh', '-c', JOIN_CGROUPS, 'shoal-cgroups', ...cgroupProcs, '--', ...argv];
  return argv;
}
