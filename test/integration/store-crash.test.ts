/**
 * Crash test of the durable embedded store: a child process writes with several writes in
 * flight and is SIGKILLed at a random point, 50 times on one directory. After every kill the
 * store is reopened here and every write the child saw acknowledged must be there; a key may
 * differ from its last acknowledged state only by a write that was in flight at the kill.
 * No root needed. See test/fixtures/store-writer.ts for the child and its output.
 */
import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { isKind } from '../../src/errors.js';
import { inspectEmbeddedStore, openEmbeddedStore } from '../../src/store/embedded.js';
import type { KeyValue } from '../../src/store/types.js';

const WRITER = fileURLToPath(new URL('../fixtures/store-writer.ts', import.meta.url));
const KILLS = 50;

interface KeyChange { key: string; value: string }
type Line =
  | { op: 'ready'; revision: number }
  | { op: 'begin'; id: number; puts?: KeyChange[]; dels?: string[]; revoke?: number }
  | { op: 'put'; id: number; key: string; value: string; rev: number; lease?: number }
  | { op: 'del'; id: number; key: string; rev: number }
  | { op: 'txn'; id: number; puts: KeyChange[]; rev: number }
  | { op: 'grant'; id: number; lease: number }
  | { op: 'revoke'; id: number; lease: number };
type Begin = Extract<Line, { op: 'begin' }>;

/** What is known to be durable: per key its last acknowledged (or observed) state. */
interface Model {
  keys: Map<string, { value?: string; rev: number }>;
  live: Set<number>;
  revoked: Set<number>;
  /** Highest durable revision known. */
  lastRev: number;
  acked: number;
}

/** Runs one child, SIGKILLs it at a random point, and returns its complete output lines. */
function runAndKill(
  dir: string,
  run: number,
  onReady?: () => Promise<void>,
): Promise<{ lines: Line[]; killedWhileWriting: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, `r${run}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let ready = false;
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    // Mostly kill while writing (20-300 ms after the store opened); every 5th run kill at a
    // random point after spawn instead, which can land in startup or in recovery.
    const fromSpawn = run % 5 === 4;
    if (fromSpawn) setTimeout(kill, 100 + Math.random() * 600);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (!ready && stdout.includes('"ready"')) {
        ready = true;
        const armKill = (): void => {
          if (!fromSpawn) setTimeout(kill, 20 + Math.random() * 280);
        };
        if (onReady) onReady().then(armKill, (err: unknown) => { kill(); reject(err); });
        else armKill();
      }
    });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const guard = setTimeout(kill, 15_000);
    child.on('error', reject);
    // 'close', not 'exit': 'exit' may come before the last stdout chunks were read (seen under
    // load: a begun write's line was missing, and its durable value looked unexplained).
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') {
        reject(new Error(`writer exited by itself (code ${code}): ${stderr}`));
        return;
      }
      // The last line may be cut by the kill: only complete lines count.
      const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1);
      const lines = complete.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
      resolve({ lines, killedWhileWriting: lines.some((l) => l.op !== 'ready' && l.op !== 'begin') });
    });
  });
}

/** Applies acknowledged writes to the model; returns the writes begun but not acknowledged. */
function applyLines(model: Model, lines: Line[]): Begin[] {
  const pending = new Map<number, Begin>();
  for (const line of lines) {
    if (line.op === 'ready') {
      // A new process continues after every revision known durable.
      expect(line.revision).toBeGreaterThanOrEqual(model.lastRev);
      continue;
    }
    if (line.op === 'begin') {
      pending.set(line.id, line);
      continue;
    }
    pending.delete(line.id);
    if (line.op === 'grant') {
      model.live.add(line.lease);
      continue;
    }
    if (line.op === 'revoke') {
      model.live.delete(line.lease);
      model.revoked.add(line.lease);
      for (const key of model.keys.keys()) if (key.startsWith(leasePrefix(line.lease))) model.keys.delete(key);
      continue;
    }
    // Acknowledgements arrive in commit order: revisions strictly increase.
    expect(line.rev, `revision order at ${JSON.stringify(line)}`).toBeGreaterThan(model.lastRev);
    model.lastRev = line.rev;
    model.acked += 1;
    if (line.op === 'put') model.keys.set(line.key, { value: line.value, rev: line.rev });
    else if (line.op === 'del') model.keys.set(line.key, { rev: line.rev });
    else for (const p of line.puts) model.keys.set(p.key, { value: p.value, rev: line.rev });
  }
  return [...pending.values()];
}

const leasePrefix = (lease: number): string => `/crash/l/${lease}/`;

/** Whether a write that was in flight at the kill explains observing `kv` (undefined: absent) for `key`. */
function explainedByPending(pending: Begin[], key: string, kv: KeyValue | undefined): boolean {
  return pending.some((p) =>
    kv
      ? (p.puts ?? []).some((c) => c.key === key && c.value === kv.value)
      : (p.dels ?? []).includes(key) || (p.revoke !== undefined && key.startsWith(leasePrefix(p.revoke))));
}

/** Reopens the store, checks it against the model, then records what the in-flight writes did. */
async function verify(dir: string, model: Model, pending: Begin[]): Promise<{ tornTail: boolean }> {
  // Inspect before opening (opening repairs): any damage must be a torn tail, never worse.
  const report = await inspectEmbeddedStore(dir);
  const store = await openEmbeddedStore({ dir });
  try {
    const revision = await store.currentRevision();
    expect(revision).toBeGreaterThanOrEqual(model.lastRev);
    for (const [key, want] of model.keys) {
      const kv = await store.get(key);
      const asAcked = want.value === undefined ? kv === undefined : kv?.modRevision === want.rev && kv.value === want.value;
      if (asAcked) continue;
      expect(explainedByPending(pending, key, kv), `${key}: acknowledged ${JSON.stringify(want)}, found ${JSON.stringify(kv)}`).toBe(true);
      if (kv) expect(kv.modRevision, key).toBeGreaterThan(Math.max(want.rev, model.lastRev));
    }
    for (const lease of model.revoked) expect((await store.range(leasePrefix(lease))).kvs, `lease ${lease}`).toEqual([]);
    for (const lease of model.live) {
      const alive = await store.keepAlive(lease).then(() => true, (e: unknown) => (isKind(e, 'NotFound') ? false : Promise.reject(e)));
      if (!alive) {
        expect(pending.some((p) => p.revoke === lease), `granted lease ${lease} lost`).toBe(true);
        // The in-flight revoke landed: its keys are gone for good.
        model.live.delete(lease);
        model.revoked.add(lease);
        for (const key of model.keys.keys()) if (key.startsWith(leasePrefix(lease))) model.keys.delete(key);
      }
    }
    // Whatever the in-flight writes did is durable now: the next run is checked against it.
    for (const p of pending) {
      for (const key of [...(p.puts ?? []).map((c) => c.key), ...(p.dels ?? [])]) {
        const kv = await store.get(key);
        model.keys.set(key, kv ? { value: kv.value, rev: kv.modRevision } : { rev: revision });
      }
    }
    model.lastRev = revision;
    return { tornTail: report.tornTail !== undefined };
  } finally {
    await store.close();
  }
}

/**
 * SIGKILL cannot tear a write(2) in the middle, but power loss can: every few runs, add what a
 * write cut short would leave (a frame header and part of its payload) to the tail segment.
 */
async function tearTail(dir: string): Promise<void> {
  const segment = (await readdir(dir)).filter((n) => n.startsWith('wal-')).sort().at(-1);
  if (!segment) return;
  const payload = Buffer.from(JSON.stringify([{ type: 'write', revision: 1e9, mutations: [] }]));
  const header = Buffer.alloc(12);
  header.write('SHL1', 0, 'latin1');
  header.writeUInt32LE(payload.length, 4);
  header.writeUInt32LE(0xdeadbeef, 8);
  const torn = Buffer.concat([header, payload]).subarray(0, 1 + Math.floor(Math.random() * (11 + payload.length)));
  await appendFile(join(dir, segment), torn);
}

let dir = '';
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it(`keeps every acknowledged write across ${KILLS} SIGKILLs`, async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-store-crash-'));
  const model: Model = { keys: new Map(), live: new Set(), revoked: new Set(), lastRev: 0, acked: 0 };
  const started = Date.now();
  let tornTails = 0;
  let killedWhileWriting = 0;
  for (let run = 0; run < KILLS; run++) {
    // While the first child holds the directory, this process must not be able to open it.
    const probe = run === 0 ? async (): Promise<void> => {
      await expect(openEmbeddedStore({ dir })).rejects.toMatchObject({ code: 'SHOAL_ERR_STORE_LOCKED' });
    } : undefined;
    const result = await runAndKill(dir, run, probe);
    if (result.killedWhileWriting) killedWhileWriting += 1;
    const pending = applyLines(model, result.lines);
    const torn = run % 7 === 3;
    if (torn) await tearTail(dir);
    const { tornTail } = await verify(dir, model, pending);
    // (SIGKILL itself may also cut a large write short between pages: a torn tail without `torn`.)
    if (torn) expect(tornTail, `run ${run}: torn tail not found`).toBe(true);
    if (tornTail) tornTails += 1;
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`store crash test: ${KILLS} kills in ${seconds.toFixed(1)} s, ${model.acked} acknowledged writes, ` +
    `${killedWhileWriting} kills mid-write, ${tornTails} torn tails repaired, final revision ${model.lastRev}`);
  expect(killedWhileWriting).toBeGreaterThan(KILLS / 2);
  expect(model.acked).toBeGreaterThan(KILLS * 10);
  expect(tornTails).toBeGreaterThan(0);
}, 120_000);
