/**
 * Tests that run Shoal as real processes: the `shoal` CLI from the sources against a manager
 * URL and token, and a free loopback TCP port to listen on.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The CLI's entry point (run with `node --import tsx`). */
export const SHOAL_MAIN = join(REPO_ROOT, 'mesh', 'cli', 'main.ts');

export interface ShoalCli {
  /** Runs `shoal ARGS` to completion. */
  shoal(...args: string[]): { code: number; out: string; err: string };
  /** `shoal ARGS --format json`, parsed. */
  json<T>(...args: string[]): T;
}

/** The CLI against the manager `target()` names (read at each call: a restarted manager may change it). */
export function shoalCli(target: () => { url: string; token: string }): ShoalCli {
  const shoal = (...args: string[]): { code: number; out: string; err: string } => {
    const { url, token } = target();
    const r = spawnSync(process.execPath, ['--import', 'tsx', SHOAL_MAIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, SHOAL_HOST: url, SHOAL_TOKEN: token } });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };
  return { shoal, json: <T>(...args: string[]): T => JSON.parse(shoal(...args, '--format', 'json').out) as T };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Starts `shoal ARGS` from the sources as a long-running process, kept in `children` while it
 * runs; `wrap` may prefix the argv (e.g. setpriv to drop privileges). Its output is collected.
 */
export function startShoal(args: string[], children: Set<ChildProcess>, opts: { wrap?: (argv: string[]) => string[]; env?: NodeJS.ProcessEnv } = {}): { child: ChildProcess; output: () => string } {
  const argv = [process.execPath, '--import', 'tsx', SHOAL_MAIN, ...args];
  const [cmd, ...rest] = opts.wrap ? opts.wrap(argv) : argv;
  const child = spawn(cmd as string, rest, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return { child, output: () => out };
}
