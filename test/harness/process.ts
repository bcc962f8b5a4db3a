/**
 * Processes inside a named network namespace, for the multi-node harness.
 *
 * Everything runs through `nsenter --net=/run/netns/<ns>`, NOT `ip netns exec`: the latter
 * also unshares a mount namespace and makes `/` a slave, so a netns that an agent later
 * bind-mounts under /run/netns (a task sandbox) would be invisible to the root mount
 * namespace — `ip netns list` would show a dead name and the harness could neither find
 * the processes in it nor free it. `nsenter --net` switches only the network namespace and
 * execs (no fork), so the spawned pid is the program's own pid.
 *
 * Every process is started in its own session (`detached: true`) so that its process group
 * can be signalled as a whole without touching the harness's own group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { netnsPath } from '../../src/kernel/paths.js';

/** What a finished command printed and how it ended. */
export interface RunResult {
  /** Exit status; 128 + signal number when a signal ended it (the shell's convention). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The command outlived `timeoutMs` and its process group was killed. */
  timedOut: boolean;
}

/** Options of {@link runInNetns} and {@link spawnInNetns}. */
export interface RunOptions {
  /** Environment of the command; default: the harness's own environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to stdin, which is then closed (run only). */
  input?: string;
  /** SIGKILL the process group after this many ms (run only); default 30 s. */
  timeoutMs?: number;
}

/** A long-running process the harness started and will stop in `destroy()`. */
export interface HarnessProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The netns it was started in. */
  readonly netns: string;
  /** The last 64 KiB of stdout. */
  stdout(): string;
  /** The last 64 KiB of stdout and stderr, interleaved as they arrived. */
  output(): string;
  /** False once the process exited (as seen by the harness, which is its parent). */
  running(): boolean;
  /** Resolves when the process has exited. Never rejects. */
  readonly exited: Promise<void>;
  /**
   * Send `signal` to the process group; if it has not exited after `graceMs`, SIGKILL the
   * group. Resolves once it exited. Idempotent; a no-op for an exited process.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const TAIL = 64 * 1024;
const keepTail = (s: string): string => (s.length > TAIL ? s.slice(s.length - TAIL) : s);

/** The argv that runs `cmd` inside `netns`. */
function nsenterArgs(netns: string, cmd: readonly string[]): string[] {
  if (cmd.length === 0) throw new Error('empty command');
  return [`--net=${netnsPath(netns)}`, '--', ...cmd];
}

/** Signal a whole process group; a group that is already gone is not an error. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

/** Start `cmd` inside `netns` in its own process group; stdout and stderr are kept (tails). */
export function spawnInNetns(netns: string, cmd: readonly string[], opts: RunOptions = {}): HarnessProcess {
  const child = spawn('nsenter', nsenterArgs(netns, cmd), {
    cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let both = '';
  let spawnError: Error | undefined;
  child.stdout?.on('data', (d: Buffer) => { out = keepTail(out + d.toString()); both = keepTail(both + d.toString()); });
  child.stderr?.on('data', (d: Buffer) => { both = keepTail(both + d.toString()); });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (e) => { spawnError = e; resolve(); });
  });
  if (child.pid === undefined) {
    throw new Error(`cannot start ${cmd.join(' ')} in netns ${netns}: ${spawnError?.message ?? 'nsenter did not start (util-linux installed?)'}`);
  }
  const pid = child.pid;
  const running = (): boolean => child.exitCode === null && child.signalCode === null && spawnError === undefined;
  let stopping: Promise<void> | undefined;
  return {
    child, pid, netns, exited, running,
    stdout: () => out,
    output: () => both,
    stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
      if (!running()) return exited;
      stopping ??= (async () => {
        // Only while it has not been reaped: afterwards the pid (and group id) could be reused.
        killGroup(pid, signal);
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), graceMs); });
        const outcome = await Promise.race([exited.then(() => 'exited' as const), late]);
        clearTimeout(timer);
        if (outcome === 'late' && running()) killGroup(pid, 'SIGKILL');
        await exited;
      })();
      return stopping;
    },
  };
}

/** Run `cmd` inside `netns` to completion. Resolves with its output whatever its exit status. */
export function runInNetns(netns: string, cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', nsenterArgs(netns, cmd), {
      cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd.join(' ')} in netns ${netns}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? 128 + (signal ? constants.signals[signal] : 0),
        signal, timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    // A command that exits without reading its stdin: EPIPE here, its status comes from 'close'.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
