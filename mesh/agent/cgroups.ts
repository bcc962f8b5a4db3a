/**
 * Resource limits of process tasks through cgroup v1 (the memory and cpu controllers), where
 * the node has them: each task gets `<controller mount>/<the agent's own cgroup>/shoal/<task>`
 * (nested under the agent's cgroup, so limits set on the agent still bound its tasks), with
 * `memory.limit_in_bytes` and a CFS quota (`cpu.cfs_quota_us` per 100 ms period). The task's
 * first process joins them before it runs the task's program (process-exec.ts).
 *
 * A node without cgroup v1 memory/cpu controllers (cgroup v2 only, or not mounted, or not
 * writable) refuses a task with limits with a sentence that says so: a limit is never silently
 * ignored. (Container runtimes apply limits themselves.)
 */
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResourceLimits } from '../../src/model/types.js';

/** CFS period used for CPU limits (Docker's). */
export const CFS_PERIOD_US = 100_000;

type Controller = 'memory' | 'cpu';

/** Where a v1 controller is mounted and the agent's cgroup in it, from /proc. */
export function findV1Controllers(mountinfo: string, selfCgroup: string): Partial<Record<Controller, string>> {
  const out: Partial<Record<Controller, string>> = {};
  const own = new Map<string, string>();
  for (const line of selfCgroup.split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls && path !== undefined) for (const c of ctrls.split(',')) own.set(c, path);
  }
  for (const line of mountinfo.split('\n')) {
    // mountinfo: ... MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPEROPTIONS
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOpts = ''] = right.split(' ');
    if (fstype !== 'cgroup') continue;
    const mountPoint = left.split(' ')[4];
    const root = left.split(' ')[3] ?? '/';
    if (!mountPoint) continue;
    for (const c of ['memory', 'cpu'] as const) {
      if (!superOpts.split(',').includes(c) || out[c]) continue;
      // The agent's path is relative to the hierarchy's root; the mount may show a sub-tree.
      const self = own.get(c) ?? '/';
      const rel = root !== '/' && self.startsWith(root) ? self.slice(root.length) : self;
      out[c] = rel === '/' || rel === '' ? mountPoint : join(mountPoint, rel);
    }
  }
  return out;
}

/** Per-task cgroups for limits. One per agent. */
export class TaskCgroups {
  private readonly base: Partial<Record<Controller, string>>;

  constructor(base?: Partial<Record<Controller, string>>) {
    if (base) this.base = base;
    else {
      let mountinfo = '', self = '';
      try {
        mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
        self = readFileSync('/proc/self/cgroup', 'utf8');
      } catch { /* no /proc: no limits */ }
      this.base = findV1Controllers(mountinfo, self);
    }
  }

  /**
   * Makes the task's cgroups with `limits` and returns their `cgroup.procs` files (none without
   * limits). Throws a one-sentence error when this node cannot enforce a limit.
   */
  ensure(taskId: string, limits: ResourceLimits | undefined): string[] {
    if (!limits) return [];
    const want: Array<[Controller, Array<[string, string]>]> = [];
    if (limits.memoryBytes !== undefined) want.push(['memory', [['memory.limit_in_bytes', String(limits.memoryBytes)]]]);
    if (limits.nanoCpus !== undefined) {
      const quota = Math.max(1000, Math.round((limits.nanoCpus / 1e9) * CFS_PERIOD_US));
      want.push(['cpu', [['cpu.cfs_period_us', String(CFS_PERIOD_US)], ['cpu.cfs_quota_us', String(quota)]]]);
    }
    const procs: string[] = [];
    for (const [c, files] of want) {
      const base = this.base[c];
      const what = c === 'memory' ? '--limit-memory' : '--limit-cpu';
      if (!base) throw new Error(`${what} cannot be enforced on this node: it has no cgroup v1 ${c} controller (cgroup v2-only hosts are not supported for process tasks)`);
      const dir = join(base, 'shoal', taskId);
      try {
        mkdirSync(dir, { recursive: true });
        for (const [f, v] of files) writeFileSync(join(dir, f), v);
      } catch (e) {
        throw new Error(`${what} cannot be enforced on this node: writing ${dir} failed (${(e as Error).message})`, { cause: e });
      }
      procs.push(join(dir, 'cgroup.procs'));
    }
    return procs;
  }

  /** Times the kernel's OOM killer killed a process of the cgroup whose procs file is given (v1 `oom_kill`). */
  static oomKills(procsFiles: readonly string[]): number {
    for (const f of procsFiles) {
      if (!f.includes('/memory')) continue;
      try {
        const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(f, '..', 'memory.oom_control'), 'utf8'));
        if (m) return Number(m[1]);
      } catch { /* gone */ }
    }
    return 0;
  }

  /** Removes cgroups made by {@link ensure} (their processes must have exited); missing ones are fine. */
  static remove(procsFiles: readonly string[]): void {
    for (const f of procsFiles) {
      try {
        rmdirSync(join(f, '..'));
      } catch { /* gone, or still busy: the next removal retries */ }
    }
  }
}
