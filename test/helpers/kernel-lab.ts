/**
 * Running a compiled script in the kernel lab (../shared/kernel-lab: Debian's kernel under
 * QEMU), for the tests of what this machine's kernel lacks (ip_vs). The TypeScript is compiled
 * here on the host (JS runs ~10x slower in the guest); the script runs in ONE VM boot and prints
 * one `ok - <id>: ...` line per check, then `ALL OK` (or `not ok - ...` lines).
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const KERNEL_LAB = fileURLToPath(new URL('../../../shared/kernel-lab/run-in-kernel.sh', import.meta.url));

function run(cmd: string, args: string[], timeoutMs: number, klabTimeoutS: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS']; // the guest runs plain compiled JavaScript
    env['KLAB_TIMEOUT'] ??= String(klabTimeoutS); // the VM gives up before the test does
    const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGTERM'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Compile on the host; what counts is that everything the guest loads (`emitted`) was written just now. */
async function build(emitted: readonly string[]): Promise<void> {
  const started = Date.now() - 1000;
  // tsc emits even when some unrelated file has a type error (typecheck is its own gate).
  const tsc = await run('npx', ['tsc', '-p', 'tsconfig.build.json'], 170_000, 0);
  const stale = emitted.filter((f) => !existsSync(`${ROOT}/${f}`) || statSync(`${ROOT}/${f}`).mtimeMs < started);
  if (stale.length) throw new Error(`tsc did not emit ${stale.join(', ')} (exit ${tsc.code}):\n${tsc.out}`);
}

export interface KernelLabRun {
  /** The compiled script, e.g. `dist/test/kernel-lab/ipvs-lab.js` (first of what must be emitted). */
  script: string;
  /** What else the guest loads, which the build must have written (worker modules loaded by URL...). */
  emitted: readonly string[];
  /** The check ids that must each print `ok - <id>: `. */
  checks: readonly string[];
  /** When the VM gives up (KLAB_TIMEOUT, s); the run itself is killed 30 s later. */
  vmTimeoutS: number;
}

/**
 * Builds, runs `script` in the lab and asserts every check passed. Call it inside the test
 * (not in a hook), so a missing lab counts as a FAILED test, never a skip.
 */
export async function expectKernelLabChecks(r: KernelLabRun): Promise<void> {
  expect(existsSync(KERNEL_LAB), `the kernel lab is missing: ${KERNEL_LAB} (IPVS cannot be tested on this kernel without it)`).toBe(true);
  expect(process.getuid?.(), 'the kernel lab needs root (apt-get, 9p as root)').toBe(0);
  await build([r.script, ...r.emitted]);
  const { code, out } = await run('bash', [KERNEL_LAB, '--', 'node', r.script], (r.vmTimeoutS + 30) * 1000, r.vmTimeoutS);
  for (const id of r.checks) expect(out, out).toMatch(new RegExp(`^ok - ${id}: `, 'm'));
  expect(out, out).not.toMatch(/^not ok/m);
  expect(out, out).toMatch(/^ALL OK/m);
  expect(code, out).toBe(0);
}
