/**
 * The runnable examples are part of the suite: each must exit 0 (it checks its own results)
 * and leave nothing behind.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function runExample(name: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'examples', name, 'run.ts')], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('examples', () => {
  it('quickstart: shoal up, a network and a service, listed and removed', () => {
    const r = runExample('quickstart');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/demo OK/);
  }, 130_000);

  it('three-node (the README demo): published ports on every node, UDP, DNS in a task, metrics', () => {
    const r = runExample('three-node');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/ok: every one of the 6 replicas answered/);
    expect(r.out).toMatch(/ok: the UDP echo service answers on every node/);
    expect(r.out).toMatch(/ok: tasks\.web resolves to the 6 replicas/);
    expect(r.out).not.toMatch(/^FAILED/m);
    expect(r.out).toMatch(/three-node OK/);
  }, 130_000);
});
