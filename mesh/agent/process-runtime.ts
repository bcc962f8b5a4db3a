/**
 * Runs tasks as plain processes (no container runtime on the machine). Each task's output goes
 * to `<dir>/<taskId>.log`; a task that exits while it should run is restarted or ended as its
 * restart policy decides (restart-policy.ts: by default always, with back-off from 1 s doubling
 * to 30 s); `stop` sends SIGTERM, then SIGKILL after the task's grace period. The task's
 * namespace, host name, user, working directory and cgroup limits are applied by the argv of
 * process-exec.ts. A pid file per task lets a restarted agent adopt the processes it already
 * started instead of starting them twice.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_STOP_GRACE_MS } from '../../src/model/service-defaults.js';
import { TaskCgroups } from './cgroups.js';
import { processArgv, resolveUser, type ResolvedUser } from './process-exec.js';
import { decideRestart } from './restart-policy.js';
import type { TaskRunOptions } from './task-spec.js';

export interface TaskProcessSpec extends TaskRunOptions {
  taskId: string;
  command: string[];
  env: Record<string, string>;
}

export type TaskEvent =
  | { type: 'running'; taskId: string; pid: number; adopted: boolean }
  /** The process ended and will be restarted in `restartInMs`; `restarts` counts the restarts so far (this one included). */
  | { type: 'exited'; taskId: string; exitCode: number | null; signal: string | null; restartInMs: number | undefined; restarts: number; message?: string }
  /** The restart policy ended the task for good; the runtime keeps it (not restarted) until ensureStopped. */
  | { type: 'ended'; taskId: string; state: 'complete' | 'failed'; exitCode: number | null; signal: string | null; message: string; restarts: number }
  | { type: 'failed'; taskId: string; message: string }
  | { type: 'stopped'; taskId: string };

/** The contract the agent's task reconciler programs against (a fake implements it in tests). */
export interface TaskRuntime {
  /** Idempotent: starts the task unless it runs, waits to restart or has ended (its restart policy said so). */
  ensureRunning(spec: TaskProcessSpec): void;
  /** Idempotent: stops the task (SIGTERM, then SIGKILL) and forgets it; resolves when it is gone. */
  ensureStopped(taskId: string): Promise<void>;
  /** Ids of the tasks the runtime holds. */
  list(): string[];
  /** The file holding a task's output (stdout and stderr). */
  logPath(taskId: string): string;
  onEvent(cb: (e: TaskEvent) => void): void;
  close(): Promise<void>;
}

interface Held {
  spec: TaskProcessSpec;
  pid: number | undefined;
  /** Times (ms) of the restarts so far, oldest first (the restart policy's history). */
  history: number[];
  /** The `cgroup.procs` files of the task's cgroups (limits), removed when it stops. */
  cgroups: string[];
  /** The restart policy ended the task: it is not restarted. */
  ended: boolean;
  /** How it ended (kept on disk too, so a restarted agent neither restarts it nor forgets it). */
  endedEvent?: Extract<TaskEvent, { type: 'ended' }>;
  timer: NodeJS.Timeout | undefined;
  exited: Promise<void> | undefined;
  stopping: boolean;
  stopped?: Promise<void>;
  /** Found running at start (discover) and not yet announced. */
  adopted: boolean;
}

function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) after the ")" that ends the command name.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export class ProcessRuntime implements TaskRuntime {
  private readonly held = new Map<string, Held>();
  private readonly listeners: Array<(e: TaskEvent) => void> = [];

  private readonly cgroups: TaskCgroups;

  constructor(private readonly dir: string, private readonly opts: { stopGraceMs?: number; maxBackoffMs?: number; now?: () => number; cgroups?: TaskCgroups } = {}) {
    mkdirSync(dir, { recursive: true });
    this.cgroups = opts.cgroups ?? new TaskCgroups();
    this.discover();
  }

  private now(): number { return (this.opts.now ?? Date.now)(); }

  /**
   * Takes over the processes a previous agent started (pid files whose pid still has the
   * recorded start time), so `list()` shows them and the agent either keeps them (ensureRunning)
   * or stops them (tasks that moved away while it was down). Dead records are removed.
   */
  private discover(): void {
    for (const f of readdirSync(this.dir)) {
      if (f.endsWith('.ended')) {
        // Ended by its restart policy before the agent restarted: held, never restarted; the
        // next ensureRunning reports the end again (it may not have reached the manager).
        try {
          const e = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as Extract<TaskEvent, { type: 'ended' }>;
          const taskId = f.slice(0, -'.ended'.length);
          this.held.set(taskId, { spec: { taskId, command: [], env: {} }, pid: undefined, history: [], cgroups: [], ended: true, endedEvent: { ...e, taskId }, timer: undefined, exited: undefined, stopping: false, adopted: true });
        } catch { /* unreadable: forgotten (the manager's record decides) */ }
        continue;
      }
      if (!f.endsWith('.pid')) continue;
      const taskId = f.slice(0, -'.pid'.length);
      let rec: { pid: number; start: string; cgroups?: string[] };
      try {
        rec = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as { pid: number; start: string; cgroups?: string[] };
      } catch {
        continue;
      }
      if (procStartTime(rec.pid) !== rec.start) {
        TaskCgroups.remove(rec.cgroups ?? []);
        rmSync(join(this.dir, f), { force: true });
        continue;
      }
      const h: Held = { spec: { taskId, command: [], env: {} }, pid: rec.pid, history: [], cgroups: rec.cgroups ?? [], ended: false, timer: undefined, exited: undefined, stopping: false, adopted: true };
      // Not our child: poll for its exit.
      h.exited = new Promise((resolve) => {
        const t = setInterval(() => {
          if (procStartTime(rec.pid) === rec.start) return;
          clearInterval(t);
          this.afterExit(h, null, null);
          resolve();
        }, 500);
        t.unref();
      });
      this.held.set(taskId, h);
    }
  }

  onEvent(cb: (e: TaskEvent) => void): void { this.listeners.push(cb); }
  list(): string[] { return [...this.held.keys()]; }
  logPath(taskId: string): string { return join(this.dir, `${taskId}.log`); }
  private pidPath(taskId: string): string { return join(this.dir, `${taskId}.pid`); }
  private endedPath(taskId: string): string { return join(this.dir, `${taskId}.ended`); }

  private emit(e: TaskEvent): void {
    for (const l of this.listeners) l(e);
  }

  ensureRunning(spec: TaskProcessSpec): void {
    const held = this.held.get(spec.taskId);
    if (held) {
      if (held.adopted && held.spec.command.length === 0) held.history = this.seedHistory(spec);
      held.spec = spec;
      if (held.adopted && held.endedEvent) {
        held.adopted = false; // announce once
        this.emit(held.endedEvent);
        return;
      }
      if (held.adopted && held.pid !== undefined) {
        held.adopted = false; // announce once
        this.emit({ type: 'running', taskId: spec.taskId, pid: held.pid, adopted: true });
      }
      return;
    }
    const h: Held = { spec, pid: undefined, history: this.seedHistory(spec), cgroups: [], ended: false, timer: undefined, exited: undefined, stopping: false, adopted: false };
    this.held.set(spec.taskId, h);
    this.launch(h);
  }

  /** Restarts made before this runtime held the task count against its policy (at "now"). */
  private seedHistory(spec: TaskProcessSpec): number[] {
    return Array.from({ length: Math.min(spec.restartsSoFar ?? 0, 10_000) }, () => this.now());
  }

  /** Everything a start needs from the node; throws a sentence when the node cannot run the task as asked. */
  private prepare(h: Held): { argv: string[]; user: ResolvedUser | undefined } {
    const s = h.spec;
    if (s.workdir !== undefined && !(existsSync(s.workdir) && statSync(s.workdir).isDirectory())) {
      throw new Error(`working directory ${s.workdir} does not exist on this node`);
    }
    const user = s.user !== undefined ? resolveUser(s.user) : undefined;
    // Switching user and host name need root (setuid, a UTS namespace): say so instead of
    // letting the tool fail in the task's log.
    const root = process.getuid?.() === 0;
    if (user && !root && user.uid !== process.getuid?.()) throw new Error(`--user ${s.user} needs the agent to run as root`);
    if (s.hostname !== undefined && !root) throw new Error(`--hostname needs the agent to run as root (a UTS namespace per task)`);
    TaskCgroups.remove(h.cgroups);
    h.cgroups = this.cgroups.ensure(s.taskId, s.limits);
    return { argv: processArgv(s.command, s, h.cgroups, user), user };
  }

  private launch(h: Held): void {
    if (h.spec.command.length === 0) {
      this.emit({ type: 'failed', taskId: h.spec.taskId, message: 'empty command' });
      return;
    }
    let prepared: { argv: string[]; user: ResolvedUser | undefined };
    try {
      prepared = this.prepare(h);
    } catch (e) {
      const message = `cannot start: ${(e as Error).message}`;
      this.emit({ type: 'failed', taskId: h.spec.taskId, message });
      this.afterExit(h, 127, null, message);
      return;
    }
    const [cmd = '', ...args] = prepared.argv;
    const fd = openSync(this.logPath(h.spec.taskId), 'a');
    try {
      const home = prepared.user?.home !== undefined ? { HOME: prepared.user.home } : {};
      const child = spawn(cmd, args, {
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...home, ...h.spec.env }, stdio: ['ignore', fd, fd], detached: true,
        ...(h.spec.workdir !== undefined ? { cwd: h.spec.workdir } : {}),
      });
      child.on('error', (e) => {
        const message = `cannot start ${cmd}: ${e.message}`;
        this.emit({ type: 'failed', taskId: h.spec.taskId, message });
        this.afterExit(h, 127, null, message);
      });
      if (child.pid === undefined) return;
      // Tasks outlive the agent (a restarted agent adopts them): they must not keep it running.
      child.unref();
      h.pid = child.pid;
      const start = procStartTime(child.pid);
      if (start) writeFileSync(this.pidPath(h.spec.taskId), JSON.stringify({ pid: child.pid, start, ...(h.cgroups.length ? { cgroups: h.cgroups } : {}) }));
      h.exited = new Promise((resolve) => child.on('exit', (code, signal) => { this.afterExit(h, code, signal); resolve(); }));
      this.emit({ type: 'running', taskId: h.spec.taskId, pid: child.pid, adopted: false });
    } finally {
      closeSync(fd);
    }
  }

  private afterExit(h: Held, exitCode: number | null, signal: string | null, why?: string): void {
    h.pid = undefined;
    if (h.stopping || this.held.get(h.spec.taskId) !== h) return;
    if (h.spec.command.length === 0) {
      // An adopted process that ended before the agent said what it runs: forget it; the next
      // ensureRunning starts it afresh.
      this.held.delete(h.spec.taskId);
      rmSync(this.pidPath(h.spec.taskId), { force: true });
      return;
    }
    const oom = TaskCgroups.oomKills(h.cgroups) > 0 ? 'out of memory (killed at its memory limit)' : undefined;
    const note = why ?? oom;
    const now = this.now();
    const d = decideRestart(h.spec.restartPolicy, { exitCode, signal }, h.history, now, this.opts.maxBackoffMs !== undefined ? { maxBackoffMs: this.opts.maxBackoffMs } : {});
    if (!d.restart) {
      h.ended = true;
      h.endedEvent = { type: 'ended', taskId: h.spec.taskId, state: d.state, exitCode, signal, message: note ? `${note}; ${d.message}` : d.message, restarts: h.history.length };
      writeFileSync(this.endedPath(h.spec.taskId), JSON.stringify(h.endedEvent));
      rmSync(this.pidPath(h.spec.taskId), { force: true });
      this.emit(h.endedEvent);
      return;
    }
    h.history.push(now);
    this.emit({ type: 'exited', taskId: h.spec.taskId, exitCode, signal, restartInMs: d.delayMs, restarts: h.history.length, ...(note ? { message: note } : {}) });
    h.timer = setTimeout(() => { h.timer = undefined; if (!h.stopping) this.launch(h); }, d.delayMs);
    h.timer.unref();
  }

  ensureStopped(taskId: string): Promise<void> {
    const h = this.held.get(taskId);
    if (!h) return Promise.resolve();
    // Concurrent calls share one stop.
    h.stopped ??= this.stop(h);
    return h.stopped;
  }

  private async stop(h: Held): Promise<void> {
    const taskId = h.spec.taskId;
    h.stopping = true;
    if (h.timer) clearTimeout(h.timer);
    if (h.pid !== undefined) {
      const pid = h.pid;
      try { process.kill(-pid, 'SIGTERM'); } catch { /* already gone */ }
      const graceMs = h.spec.stopGraceMs ?? this.opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
      const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([h.exited, grace]);
      if (procStartTime(pid) !== undefined) {
        try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
        await h.exited;
      }
    }
    this.held.delete(taskId);
    rmSync(this.pidPath(taskId), { force: true });
    rmSync(this.endedPath(taskId), { force: true });
    TaskCgroups.remove(h.cgroups);
    this.emit({ type: 'stopped', taskId });
  }

  /** Leaves running processes alone (a restarted agent adopts them) and drops timers. */
  async close(): Promise<void> {
    for (const h of this.held.values()) if (h.timer) clearTimeout(h.timer);
    this.held.clear();
  }
}
