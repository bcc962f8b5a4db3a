/**
 * The quickstart demo: `shoal up` on the embedded default store (a fresh data dir), then the
 * CLI as an operator uses it: create a network, deploy a service, list and inspect, scale, and
 * clean up. Exits 0 only if every step did what it should; removes everything it made.
 *
 *   npm ci && npm run demo
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// Built: plain JS next to this file; from sources (tests run it with tsx): the .ts through tsx.
const fromSources = import.meta.url.endsWith('.ts');
const shoalArgv = fromSources ? ['--import', 'tsx', join(root, 'mesh', 'cli', 'main.ts')] : [join(root, 'mesh', 'cli', 'main.js')];
const dataDir = mkdtempSync(join(tmpdir(), 'shoal-demo-'));
const env = { ...process.env, SHOAL_DATA_DIR: dataDir };

function shoal(...args: string[]): string {
  process.stdout.write(`\n$ shoal ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [...shoalArgv, ...args], { env, encoding: 'utf8', cwd: root });
  process.stdout.write(r.stdout);
  if (r.status !== 0) throw new Error(`shoal ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

async function until(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  process.stdout.write(`$ shoal up --data-dir ${dataDir} --name demo-node   (in the background)\n`);
  const up = spawn(process.execPath, [...shoalArgv, 'up', '--data-dir', dataDir, '--name', 'demo-node', '--metrics-addr', '127.0.0.1:0', '--isolation', 'none'], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let upLog = '';
  up.stdout.on('data', (d: Buffer) => { upLog += d.toString(); });
  up.stderr.on('data', (d: Buffer) => { upLog += d.toString(); });
  try {
    await until('the manager socket', () => existsSync(join(dataDir, 'shoal.sock')) && existsSync(join(dataDir, 'manager.token')));
    shoal('network', 'create', '--subnet', '10.200.1.0/24', 'app');
    shoal('network', 'create', '-d', 'bridge', 'backend');
    shoal('network', 'ls');
    shoal('service', 'create', '--name', 'web', '--replicas', '3', '-p', '8080:80', '--network', 'app', '--', 'sleep', '3600');
    await until('3 running replicas', () => /web\s+replicated\s+3\/3/.test(shoal('service', 'ls')));
    const ps = shoal('service', 'ps', 'web');
    if ((ps.match(/Running/g) ?? []).length !== 3) throw new Error('expected 3 running tasks');
    shoal('node', 'ls');
    const inspect = JSON.parse(shoal('service', 'inspect', 'web')) as Array<{ vips: Record<string, { v4: string }> }>;
    const vip = Object.values(inspect[0]?.vips ?? {})[0]?.v4 ?? '';
    if (!/^10\.200\.1\.\d+$/.test(vip)) throw new Error(`expected a VIP in 10.200.1.0/24, got '${vip}'`);
    process.stdout.write(`\nweb's VIP on network app: ${vip}\n`);
    const metricsUrl = /metrics: (http:\/\/\S+)/.exec(upLog)?.[1];
    if (!metricsUrl) throw new Error('shoal up did not print its metrics address');
    const metrics = await (await fetch(metricsUrl)).text();
    process.stdout.write(`\n$ curl ${metricsUrl}   (a few lines)\n${metrics.split('\n').filter((l) => /^shoal_(cluster|agent_connected|store)/.test(l)).join('\n')}\n`);
    if (!/^shoal_cluster_tasks\{state="running"\} 3$/m.test(metrics)) throw new Error('metrics do not show 3 running tasks');
    shoal('service', 'scale', 'web=1');
    await until('scale down to 1', () => /web\s+replicated\s+1\/1/.test(shoal('service', 'ls')));
    shoal('service', 'rm', 'web');
    // The agent stops the task processes and removes their pid files.
    const tasksDir = join(dataDir, 'agent', 'tasks');
    await until('the task processes to stop', () => !existsSync(tasksDir) || readdirSync(tasksDir).every((f) => !f.endsWith('.pid')));
    shoal('network', 'rm', 'app', 'backend');
    process.stdout.write('\ndemo OK\n');
  } catch (e) {
    process.stderr.write(`demo FAILED: ${(e as Error).message}\n--- shoal up log ---\n${upLog}\n`);
    process.exitCode = 1;
  } finally {
    up.kill('SIGTERM');
    await new Promise((r) => up.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

void main();
