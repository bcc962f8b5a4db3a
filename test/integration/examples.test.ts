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

  it('three-node: six replicas on an overlay over three namespaced nodes', () => {
    const r = runExample('three-node');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/6 distinct replicas answered/);
    expect(r.out).toMatch(/three-node OK/);
  }, 130_000);
});
