/**
 * Runs tasks as plain processes (no container runtime on the machine). Each task's output goes
 * to `<dir>/<taskId>.log`; a task that exits while it should run is restarted with exponential
 * back-off (1 s doubling to 30 s); `stop` sends SIGTERM, then SIGKILL after the grace period.
 * A pid file per task lets a restarted agent adopt the processes it already started instead of
 * starting them twice. (The driver-core issue moves each task into its own network namespace.)
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TaskProcessSpec {
  taskId: string;
  command: string[];
  env: Record<string, string>;
}

export type TaskEvent =
  | { type: 'running'; taskId: string; pid: number; adopted: boolean }
  | { type: 'exited'; taskId: string; exitCode: number | null; signal: string | null; restartInMs: number | undefined }
  | { type: 'failed'; taskId: string; message: string }
  | { type: 'stopped'; taskId: string };

/** The contract the agent's task reconciler programs against (a fake implements it in tests). */
export interface TaskRuntime {
  /** Idempotent: starts the task unless it runs (or is waiting to restart). */
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
  restarts: number;
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

  constructor(private readonly dir: string, private readonly opts: { stopGraceMs?: number; maxBackoffMs?: number } = {}) {
    mkdirSync(dir, { recursive: true });
    this.discover();
  }

  /**
   * Takes over the processes a previous agent started (pid files whose pid still has the
   * recorded start time), so `list()` shows them and the agent either keeps them (ensureRunning)
   * or stops them (tasks that moved away while it was down). Dead records are removed.
   */
  private discover(): void {
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.pid')) continue;
      const taskId = f.slice(0, -'.pid'.length);
      let rec: { pid: number; start: string };
      try {
        rec = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as { pid: number; start: string };
      } catch {
        continue;
      }
      if (procStartTime(rec.pid) !== rec.start) {
        rmSync(join(this.dir, f), { force: true });
        continue;
      }
      const h: Held = { spec: { taskId, command: [], env: {} }, pid: rec.pid, restarts: 0, timer: undefined, exited: undefined, stopping: false, adopted: true };
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

  private emit(e: TaskEvent): void {
    for (const l of this.listeners) l(e);
  }

  ensureRunning(spec: TaskProcessSpec): void {
    const held = this.held.get(spec.taskId);
    if (held) {
      held.spec = spec;
      if (held.adopted && held.pid !== undefined) {
        held.adopted = false; // announce once
        this.emit({ type: 'running', taskId: spec.taskId, pid: held.pid, adopted: true });
      }
      return;
    }
    const h: Held = { spec, pid: undefined, restarts: 0, timer: undefined, exited: undefined, stopping: false, adopted: false };
    this.held.set(spec.taskId, h);
    this.launch(h);
  }

  private launch(h: Held): void {
    const [cmd, ...args] = h.spec.command;
    if (!cmd) {
      this.emit({ type: 'failed', taskId: h.spec.taskId, message: 'empty command' });
      return;
    }
    const fd = openSync(this.logPath(h.spec.taskId), 'a');
    try {
      const child = spawn(cmd, args, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...h.spec.env }, stdio: ['ignore', fd, fd], detached: true });
      child.on('error', (e) => {
        this.emit({ type: 'failed', taskId: h.spec.taskId, message: `cannot start ${cmd}: ${e.message}` });
        this.afterExit(h, 127, null);
      });
      if (child.pid === undefined) return;
      // Tasks outlive the agent (a restarted agent adopts them): they must not keep it running.
      child.unref();
      h.pid = child.pid;
      const start = procStartTime(child.pid);
      if (start) writeFileSync(this.pidPath(h.spec.taskId), JSON.stringify({ pid: child.pid, start }));
      h.exited = new Promise((resolve) => child.on('exit', (code, signal) => { this.afterExit(h, code, signal); resolve(); }));
      this.emit({ type: 'running', taskId: h.spec.taskId, pid: child.pid, adopted: false });
    } finally {
      closeSync(fd);
    }
  }

  private afterExit(h: Held, exitCode: number | null, signal: string | null): void {
    h.pid = undefined;
    if (h.stopping || this.held.get(h.spec.taskId) !== h) return;
    if (h.spec.command.length === 0) {
      // An adopted process that ended before the agent said what it runs: forget it; the next
      // ensureRunning starts it afresh.
      this.held.delete(h.spec.taskId);
      rmSync(this.pidPath(h.spec.taskId), { force: true });
      return;
    }
    const delay = Math.min(1000 * 2 ** h.restarts, this.opts.maxBackoffMs ?? 30_000);
    h.restarts++;
    this.emit({ type: 'exited', taskId: h.spec.taskId, exitCode, signal, restartInMs: delay });
    h.timer = setTimeout(() => { h.timer = undefined; if (!h.stopping) this.launch(h); }, delay);
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
      const grace = new Promise<void>((resolve) => setTimeout(resolve, this.opts.stopGraceMs ?? 10_000).unref());
      await Promise.race([h.exited, grace]);
      if (procStartTime(pid) !== undefined) {
        try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
        await h.exited;
      }
    }
    this.held.delete(taskId);
    rmSync(this.pidPath(taskId), { force: true });
    this.emit({ type: 'stopped', taskId });
  }

  /** Leaves running processes alone (a restarted agent adopts them) and drops timers. */
  async close(): Promise<void> {
    for (const h of this.held.values()) if (h.timer) clearTimeout(h.timer);
    this.held.clear();
  }
}
