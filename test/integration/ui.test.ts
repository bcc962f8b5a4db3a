/**
 * The manager's live view (/ui) in a real browser: headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core from test/fixtures/ui-browser.mjs) runs in the
 * harness's client namespace against the manager's API address. It logs in with the token in
 * the URL (swapped for an HttpOnly cookie), shows a service's 2 running tasks, then the 4 after
 * `shoal service scale web=4` (pushed by the manager's watch, not polled), and the connection
 * counts the agents report for a replica once requests went through the published port. The
 * test saves a screenshot to .tmp/ui.png. curl checks the auth rules: no token, a wrong token
 * or the cookie on an API route get 401.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../harness/cluster.js';
import { killGroup } from '../harness/process.js';
import { until } from '../helpers/cluster.js';
import { REPO_ROOT } from '../helpers/shoal-process.js';

const BROWSER = fileURLToPath(new URL('../fixtures/ui-browser.mjs', import.meta.url));
const BACKEND = fileURLToPath(new URL('../fixtures/lb-backend.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('../fixtures/lb-client.mjs', import.meta.url));
const SHOT = join(REPO_ROOT, '.tmp', 'ui.png');
/** The wait for the page to follow a scale (from the moment the cluster runs the new tasks). */
const FOLLOW_MS = 2000;

let h: Harness;
let browser: ChildProcess | undefined;
let lines: Interface | undefined;
let replies: AsyncIterator<string> | undefined;
const profile = mkdtempSync(join(tmpdir(), 'shoal-ui-chromium-'));

async function ask<T>(cmd: string): Promise<T> {
  browser?.stdin?.write(`${cmd}\n`);
  const r = await replies?.next();
  if (!r || r.done) throw new Error(`the browser driver ended before answering '${cmd}'`);
  return JSON.parse(r.value) as T;
}

async function running(service: string, n: number): Promise<Task[]> {
  return until(async () => {
    const ts = (await h.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return ts.length === n ? ts : undefined;
  }, `${n} running tasks of ${service}`, 60_000, 50);
}

const curl = async (...args: string[]): Promise<{ code: string; body: string; headers: string }> => {
  // The manager serves TLS with a certificate from the cluster CA (its data dir's ca.pem).
  const r = await h.client.exec(['curl', '-sS', '--cacert', join(h.manager.dataDir, 'ca.pem'), '-D', '-', '-o', '/dev/stdout', '-w', '\n%{http_code}', '--max-time', '10', ...args]);
  const lines = r.stdout.trimEnd().split('\n');
  return { code: lines.pop() ?? '', body: r.stdout, headers: r.stdout.split('\r\n\r\n')[0] ?? '' };
};

beforeAll(async () => {
  h = await startHarness({ nodes: 2, agentArgs: ['--lb-dataplane', 'nftables'] });
  expect((await h.shoal('network', 'create', '--subnet', '10.74.0.0/24', 'app')).code).toBe(0);
  const web = await h.shoal('service', 'create', '--name', 'web', '--replicas', '2', '--network', 'app', '-p', '8080:80', '-e', 'PORT=80', '--', process.execPath, BACKEND);
  expect(web.code, web.err).toBe(0);
  await running('web', 2);
}, 120_000);

afterAll(async () => {
  if (browser?.pid && browser.exitCode === null) {
    if (browser.stdin && !browser.stdin.writableEnded) browser.stdin.end('quit\n');
    await new Promise((r) => setTimeout(r, 500));
    killGroup(browser.pid, 'SIGKILL');
  }
  lines?.close();
  await destroyAllHarnesses();
  rmSync(profile, { recursive: true, force: true });
}, 120_000);

describe('/ui in headless Chromium', () => {
  it('refuses without the token, with a wrong one, and the cookie opens nothing of the API', async () => {
    const base = h.manager.url;
    expect((await curl(`${base}/ui`)).code).toBe('401');
    expect((await curl(`${base}/ui/events`)).code).toBe('401');
    expect((await curl(`${base}/ui?token=wrong`)).code).toBe('401');
    const bad = await curl('-X', 'POST', '--data-urlencode', 'token=wrong', `${base}/ui/login`);
    expect(bad.code).toBe('401');
    const good = await curl('-X', 'POST', '--data-urlencode', `token=${h.manager.token}`, `${base}/ui/login`);
    expect(good.code).toBe('303');
    const cookie = /set-cookie: (shoal_ui=[^;]+);([^\r\n]*)/i.exec(good.headers);
    expect(cookie?.[2]).toMatch(/Path=\/ui; HttpOnly; SameSite=Strict/);
    expect(cookie?.[1]).not.toContain(h.manager.token);
    expect((await curl('-H', `cookie: ${cookie?.[1]}`, `${base}/ui`)).code).toBe('200');
    expect((await curl('-H', `cookie: ${cookie?.[1]}`, `${base}/v1/services`)).code).toBe('401');
    expect((await curl('-H', `authorization: Bearer ${h.manager.token}`, `${base}/ui`)).code).toBe('200');
  });

  it('shows web\'s 2 tasks, then the 4 after a scale, pushed live; connection counts per replica; a screenshot', async () => {
    mkdirSync(join(REPO_ROOT, '.tmp'), { recursive: true });
    rmSync(SHOT, { force: true });
    browser = spawn('nsenter', [`--net=/run/netns/${h.client.netns}`, '--', process.execPath, BROWSER, h.manager.url, h.manager.token, 'web', SHOT, profile],
      { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    lines = createInterface({ input: browser.stdout! });
    replies = lines[Symbol.asyncIterator]();
    const first = await replies.next();
    if (first.done) throw new Error('the browser driver ended before logging in');
    const opened = JSON.parse(first.value) as { ok: boolean; url: string; cookies: Array<{ name: string; httpOnly: boolean; path: string; sameSite: string }> };
    expect(opened.url).toBe(`${h.manager.url}/ui`); // the token left the address bar
    expect(opened.cookies).toEqual([{ name: 'shoal_ui', httpOnly: true, path: '/ui', sameSite: 'Strict' }]);
    expect(await ask<{ ok: boolean; errors: string[] }>('count 2 30000')).toMatchObject({ ok: true, errors: [] });

    expect((await h.shoal('service', 'scale', 'web=4')).code).toBe(0);
    await running('web', 4);
    const four = await ask<{ ok: boolean; ms?: number; tasks: string[] }>(`count 4 ${FOLLOW_MS}`);
    expect(four, JSON.stringify(four.tasks)).toMatchObject({ ok: true });
    expect(four.tasks.filter((t) => t.startsWith('running web.'))).toHaveLength(4);
    console.log(`the page showed 4 running tasks ${four.ms} ms after the cluster ran them`);

    // Requests through the published port: the nodes report per-replica flows while the page is open.
    for (const n of h.nodes) await h.client.exec([process.execPath, CLIENT, 'http', n.address, '8080', '8'], { timeoutMs: 30_000 });
    const flows = await ask<{ ok: boolean; text: string }>('flows 30000');
    expect(flows.ok).toBe(true);
    expect(flows.text).toMatch(/web\.\d+.*flows [1-9]/);

    expect((await ask<{ ok: boolean }>('shot')).ok).toBe(true);
    expect(statSync(SHOT).size).toBeGreaterThan(10_000);
    browser.stdin?.end('quit\n');
  }, 120_000);
});
