/**
 * The ingress routing mesh on the IPVS dataplane: this machine's kernel has no ip_vs, so the
 * 2-node harness (test/harness/cluster.ts) runs in the kernel lab (../shared/kernel-lab:
 * Debian's kernel under QEMU) with `--lb-dataplane ipvs`. The TypeScript is compiled here on
 * the host (JS runs ~10x slower in the guest) and test/kernel-lab/ingress-lab.ts runs in ONE VM
 * boot, printing one `ok - <id>: ...` line per check. A missing lab is a failure, not a skip.
 * The same mesh on nftables, on this kernel: ingress-mesh.test.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LAB = fileURLToPath(new URL('../../../shared/kernel-lab/run-in-kernel.sh', import.meta.url));
const SCRIPT = 'dist/test/kernel-lab/ingress-lab.js';
/** What the guest runs: the lab script, the harness, the `shoal` program and what it loads by URL at run time (worker threads). */
const EMITTED = [
  SCRIPT, 'dist/test/harness/cluster.js', 'dist/mesh/cli/main.js', 'dist/mesh/agent/ingress.js', 'dist/ingress/published.js',
  'dist/mesh/daemon/dataplane.js', 'dist/ingress/ipvs/load-balancer.js', 'dist/src/kernel/ipvs-genl.js',
  'dist/src/kernel/netns-roamer-handlers.js', 'dist/src/kernel/netns-worker.js',
];

const CHECKS = ['has-ipvs', 'harness', 'ingress-sandboxes', 'services', 'every-node', 'all-replicas', 'no-local-replica', 'ipvsadm', 'host-hop', 'remove', 'cleanup'];

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS']; // the guest runs plain compiled JavaScript
    env['KLAB_TIMEOUT'] ??= '420'; // the VM gives up before the test does
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

/** Compile on the host; what counts is that everything the guest loads was written just now. */
async function build(): Promise<void> {
  const started = Date.now() - 1000;
  // tsc emits even when some unrelated file has a type error (typecheck is its own gate).
  const tsc = await run('npx', ['tsc', '-p', 'tsconfig.build.json'], 170_000);
  const stale = EMITTED.filter((f) => !existsSync(`${ROOT}/${f}`) || statSync(`${ROOT}/${f}`).mtimeMs < started);
  if (stale.length) throw new Error(`tsc did not emit ${stale.join(', ')} (exit ${tsc.code}):\n${tsc.out}`);
}

describe('ingress routing mesh on IPVS in the kernel lab', () => {
  // Everything inside the test (not in a hook), so a missing lab counts as a FAILED test.
  it('every node publishes, reaches every replica through its sandbox\'s IPVS (masqueraded); ipvsadm agrees; removal cleans up', async () => {
    expect(existsSync(LAB), `the kernel lab is missing: ${LAB} (IPVS cannot be tested on this kernel without it)`).toBe(true);
    expect(process.getuid?.(), 'the kernel lab needs root (apt-get, 9p as root)').toBe(0);
    await build();
    const { code, out } = await run('bash', [LAB, '--', 'node', SCRIPT], 450_000);
    for (const id of CHECKS) expect(out, out).toMatch(new RegExp(`^ok - ${id}: `, 'm'));
    expect(out, out).not.toMatch(/^not ok/m);
    expect(out, out).toMatch(/^ALL OK/m);
    expect(code, out).toBe(0);
  }, 660_000);
});
