/**
 * Bad input to the HA control plane, through the real `shoal` entry point (runCli): an etcd
 * nobody runs (a clear error naming the endpoints, nothing left listening), malformed
 * `--store` values and flags given to the wrong daemon (one sentence, exit 1), and a second
 * manager with a name already in use on a real etcd.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../mesh/cli/main.js';
import { startManager, type Running } from '../../mesh/daemon/index.js';
import { isKind, messageOf } from '../../src/errors.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'shoal-ha-bad-'));
  dirs.push(d);
  return d;
};
let etcd: EtcdCluster | undefined;
const running: Running[] = [];
afterAll(async () => {
  for (const r of running) await r.stop().catch(() => undefined);
  await etcd?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function shoal(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await runCli(argv, { out: (s) => { out += s; }, err: (s) => { err += s; }, env: {} });
  return { code, out, err };
}

describe('HA control plane: bad input', () => {
  it('refuses to start a manager on an etcd nobody answers at, naming every endpoint', async () => {
    const dir = tempDir();
    const r = await shoal('manager', '--data-dir', dir, '--store', 'etcd://127.0.0.1:1,127.0.0.1:9');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^shoal: cannot reach etcd at 127\.0\.0\.1:1, 127\.0\.0\.1:9 \(127\.0\.0\.1:1: .*; 127\.0\.0\.1:9: .*\); check --store and that etcd is running with a quorum\n$/);
    expect(r.out).toBe('');
    // Nothing announced: no socket, no tokens, and the data dir is not left locked.
    for (const f of ['shoal.sock', 'manager.token', 'join.token', 'LOCK']) expect(existsSync(join(dir, f)), f).toBe(false);
  }, 30_000);

  it('refuses malformed --store values and flags given to the wrong daemon with one sentence', async () => {
    const dir = tempDir();
    // Exit 1: a value is wrong; exit 2: a usage error (a flag of another daemon).
    const cases: Array<[string[], RegExp, number?]> = [
      [['manager', '--data-dir', dir, '--store', 'zk://a:1'], /unknown scheme 'zk:\/\/'/],
      [['manager', '--data-dir', dir, '--store', 'etcd://'], /names no etcd endpoint/],
      [['manager', '--data-dir', dir, '--store', 'etcd://a'], /'a' is not HOST:PORT/],
      [['manager', '--data-dir', dir, '--store', 'etcd://a:1,a:1'], /names a:1 twice/],
      [['manager', '--data-dir', dir, '--node-ttl', '0'], /--node-ttl must be a whole number of seconds from 1 to 3600, got '0'/],
      [['manager', '--data-dir', dir, '--leader-ttl', '1.5'], /--leader-ttl must be a whole number of seconds/],
      [['manager', '--data-dir', dir, '--heartbeat-interval', '1s'], /--heartbeat-interval is not a flag of shoal manager \(only of shoal up and shoal agent\)/, 2],
      [['agent', '--join', 'https://127.0.0.1:1', '--token', 't', '--data-dir', dir, '--store', 'etcd://a:1'], /--store is not a flag of shoal agent \(only of shoal up and shoal manager\)/, 2],
      [['agent', '--join', 'https://127.0.0.1:1,ftp://x', '--token', 't', '--data-dir', dir], /--join 'ftp:\/\/x' must be an https:\/\/ URL or a unix:\/\/ socket path/],
      [['agent', '--join', 'http://127.0.0.1:1', '--token', 't', '--data-dir', dir], /--join 'http:\/\/127\.0\.0\.1:1': managers serve TLS only: use https:\/\/127\.0\.0\.1:1/],
      [['agent', '--join', 'https://127.0.0.1:1', '--token', 't', '--data-dir', dir, '--heartbeat-interval', 'soon'], /--heartbeat-interval must be a duration/],
      [['service', 'ls', '--host', 'https://127.0.0.1:1,https://127.0.0.1:1'], /names https:\/\/127\.0\.0\.1:1 twice/],
    ];
    for (const [argv, want, code] of cases) {
      const r = await shoal(...argv);
      expect(r.code, argv.join(' ')).toBe(code ?? 1);
      expect(r.err, argv.join(' ')).toMatch(want);
      expect(r.err.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    }
    for (const f of ['shoal.sock', 'manager.token', 'LOCK']) expect(existsSync(join(dir, f)), f).toBe(false);
  });

  it('refuses a second live manager with a name already in use', async () => {
    etcd = await startEtcdCluster({ members: 1 });
    const log = (): void => undefined;
    running.push(await startManager({ dataDir: tempDir(), store: etcd.storeUrl, name: 'twin', log }));
    const err = await startManager({ dataDir: tempDir(), store: etcd.storeUrl, name: 'twin', log }).then(() => undefined, (e: unknown) => e);
    expect(isKind(err, 'Conflict')).toBe(true);
    expect(messageOf(err)).toBe("another manager named 'twin' is running on this store (it keeps renewing its session); give each manager its own --name");
    // A second manager with its own name joins the same cluster.
    const other = await startManager({ dataDir: tempDir(), store: etcd.storeUrl, name: 'other', log });
    running.push(other);
    expect(other.manager.cluster.id).toBe(running[0]?.manager.cluster.id);
    expect((await other.manager.managers()).map((m) => [m.name, m.reachable])).toEqual([['other', true], ['twin', true]]);
  }, 60_000);
});
