/**
 * Spawning kernel tools (`ip`, `bridge`, `nft`) with argument arrays, never a shell string.
 * A failure becomes a {@link KernelError} carrying the tool's stderr and an errno name read
 * from it, so call sites use `isNotFound` / `isExists` like for netlink errors.
 */
import { spawn } from 'node:child_process';
import { KernelError } from '../errors.js';
import { errnoFromText } from './errno.js';
import { netnsPath } from './paths.js';

/**
 * The command that runs `tool` inside `netns` (a name under /run/netns or an nsfs path), or in
 * the caller's netns when `netns` is undefined: `[cmd, ...leadingArgs]`, tool arguments follow.
 * nsenter (util-linux) rather than `ip netns exec`: it also takes /proc/PID/ns/net paths and
 * does not build a private mount namespace per call.
 */
export function inNetns(tool: string, netns: string | undefined): [string, ...string[]] {
  return netns === undefined ? [tool] : ['nsenter', `--net=${netnsPath(netns)}`, tool];
}

/** What a tool printed. */
export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Options of {@link execTool}. */
export interface ExecOptions {
  /** Written to the tool's stdin, which is then closed (e.g. an `nft -f -` script). */
  input?: string;
  /** Kill the tool (SIGKILL, by its PID) after this many ms; default 30 s. */
  timeoutMs?: number;
}

/**
 * Run `cmd args...` and resolve with its output when it exits 0.
 *
 * Rejects with KernelError(op, errno-from-stderr, first stderr line, {stderr}) on a non-zero
 * exit. A missing binary is NOT reported as ENOENT: that would read as "object not found"
 * and turn a delete into a silent success; it gets no errno and a message saying what to install.
 */
export function execTool(op: string, cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOENT' ? `${cmd} is not installed (or not in PATH)` : `cannot run ${cmd}: ${e.message}`;
      reject(new KernelError(op, e.code === 'ENOENT' ? undefined : e.code, why, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return resolve({ stdout, stderr });
      const first = stderr.trim().split('\n')[0] ?? '';
      const how = timedOut ? `timed out after ${opts.timeoutMs ?? 30_000} ms` : signal ? `killed by ${signal}` : `exit code ${code}`;
      const message = `${cmd} ${args.join(' ')}: ${first || how}`;
      reject(new KernelError(op, timedOut ? 'ETIMEDOUT' : errnoFromText(stderr), message, { stderr }));
    });
    // EPIPE when the tool exits before reading stdin is reported by 'close' with its stderr.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
