/**
 * AgentSession against a real `ws` server on a unix socket playing the manager. Only the
 * session's interval timer is faked (`setInterval`): socket I/O and the reconnect back-off run
 * for real and are awaited by polling with a deadline, so "within 3 intervals" is counted in
 * fake ticks, not guessed from wall-clock sleeps.
 */
import { mkdtempSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import { AgentSession, type SessionOptions } from '../../mesh/agent/session.js';

const INTERVAL = 1000;
const realSetTimeout = globalThis.setTimeout;

/** Polls `cond` on real time until it holds; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => realSetTimeout(r, 5));
  }
}

interface Conn { ws: WebSocket; raw: Socket; msgs: Array<Record<string, unknown>>; pings: number; closed: boolean }

/** A manager stand-in: answers join with welcome + an established frame at `revision`. */
class FakeManager {
  readonly conns: Conn[] = [];
  revision = 5;
  private constructor(readonly wss: WebSocketServer, readonly url: string) {}

  static async start(autoPong: boolean): Promise<FakeManager> {
    // On a unix socket, the manager's plain transport (its TCP listener speaks TLS only).
    const path = join(mkdtempSync(join(tmpdir(), 'shoal-fake-mgr-')), 'shoal.sock');
    const server = createHttpServer();
    await new Promise<void>((r) => server.listen(path, r));
    const wss = new WebSocketServer({ server, autoPong });
    const fm = new FakeManager(wss, `unix://${path}`);
    wss.on('close', () => server.close());
    wss.on('connection', (ws, req) => fm.accept(ws, req.socket));
    return fm;
  }

  private accept(ws: WebSocket, raw: Socket): void {
    const c: Conn = { ws, raw, msgs: [], pings: 0, closed: false };
    this.conns.push(c);
    ws.on('ping', () => c.pings++);
    ws.on('close', () => { c.closed = true; });
    ws.on('message', (d) => {
      const msg = JSON.parse(d.toString()) as Record<string, unknown>;
      c.msgs.push(msg);
      if (msg['type'] !== 'join') return;
      ws.send(JSON.stringify({ type: 'welcome', node: { id: 'n1', name: 'a', address: '10.0.0.1' }, leaseTtlSeconds: 10 }));
      const resume = typeof msg['revision'] === 'number';
      ws.send(JSON.stringify(resume
        ? { type: 'established', revision: msg['revision'], relist: false }
        : { type: 'established', revision: this.revision, relist: true, kvs: [{ key: '/shoal/networks/x', value: '{"id":"x"}', modRevision: 2 }] }));
    });
  }

  statuses(c: Conn | undefined): Array<[unknown, unknown]> {
    return (c?.msgs ?? []).filter((m) => m['type'] === 'task-status').map((m) => [m['taskId'], (m['status'] as { state: string }).state]);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

let fm: FakeManager | undefined;
let session: AgentSession | undefined;

function newSession(url: string, extra: Partial<SessionOptions> = {}): { s: AgentSession; index: LocalIndex } {
  const index = new LocalIndex();
  const s = new AgentSession({ managerUrl: url, joinToken: 't', name: 'a', address: '10.0.0.1', index, heartbeatIntervalMs: INTERVAL, ...extra });
  session = s;
  return { s, index };
}

beforeEach(() => { vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); });
afterEach(async () => {
  session?.stop();
  session = undefined;
  await fm?.close();
  fm = undefined;
  vi.useRealTimers();
});

describe('AgentSession liveness', () => {
  it('terminates a connection whose pongs never come on the 3rd interval, reconnects and resumes from its revision', async () => {
    fm = await FakeManager.start(false);
    const m = fm;
    const { s, index } = newSession(m.url);
    s.start();
    await until(() => s.connected && index.revision === 5, 'first join');
    const first = m.conns[0];
    expect(first?.msgs[0]).toMatchObject({ type: 'join', name: 'a' });
    expect(first?.msgs[0]).not.toHaveProperty('revision');

    vi.advanceTimersByTime(INTERVAL);
    await until(() => first?.pings === 1, 'first ping');
    vi.advanceTimersByTime(INTERVAL);
    await until(() => first?.pings === 2, 'second ping');
    expect(first?.closed).toBe(false);
    expect(s.stats.pingTimeouts).toBe(0);

    vi.advanceTimersByTime(INTERVAL);
    expect(s.stats.pingTimeouts).toBe(1);
    await until(() => first?.closed === true, 'the dead connection to close');
    await until(() => m.conns.length === 2 && s.connected, 'reconnect and re-join');
    expect(m.conns[1]?.msgs[0]).toMatchObject({ type: 'join', revision: 5 });
    expect(s.stats.reconnects).toBe(1);
    expect(index.lists).toBe(1); // resumed, not re-listed
  });

  it('keeps a healthy connection: every pong resets the silence count', async () => {
    fm = await FakeManager.start(true);
    const m = fm;
    const { s } = newSession(m.url);
    s.start();
    await until(() => s.connected, 'join');
    for (let i = 1; i <= 6; i++) {
      vi.advanceTimersByTime(INTERVAL);
      expect(s.silentTicks).toBe(1);
      await until(() => s.silentTicks === 0, `pong ${i}`);
    }
    expect(m.conns).toHaveLength(1);
    expect(s.stats.pingTimeouts).toBe(0);
    expect(m.conns[0]?.msgs.filter((x) => x['type'] === 'heartbeat')).toHaveLength(6);
  });

  it('counts the bytes of a frame still arriving as life: a slow large relist is not cut off', async () => {
    fm = await FakeManager.start(false);
    const m = fm;
    const { s } = newSession(m.url);
    s.start();
    await until(() => s.connected, 'join');
    const raw = m.conns[0]?.raw;
    // A 64 KiB text frame whose payload trickles in, 100 bytes per interval (no pong ever).
    raw?.write(Buffer.from([0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]));
    for (let i = 1; i <= 6; i++) {
      vi.advanceTimersByTime(INTERVAL);
      raw?.write('a'.repeat(100));
      await until(() => s.silentTicks === 0, `chunk ${i}`);
    }
    expect(s.stats.pingTimeouts).toBe(0);
    // The trickle stops: the connection is given up on the 3rd silent interval.
    for (let i = 0; i < 3; i++) vi.advanceTimersByTime(INTERVAL);
    expect(s.stats.pingTimeouts).toBe(1);
    expect(m.conns).toHaveLength(1);
  });

  it('re-lists after a 4008 close: the next join carries no revision', async () => {
    fm = await FakeManager.start(true);
    const m = fm;
    const { s, index } = newSession(m.url);
    s.start();
    await until(() => s.connected && index.synced, 'join');
    m.conns[0]?.ws.close(4008, 'slow consumer');
    await until(() => m.conns.length === 2 && (m.conns[1]?.msgs.length ?? 0) > 0, 're-join');
    expect(m.conns[1]?.msgs[0]).not.toHaveProperty('revision');
  });
});

describe('AgentSession status reports', () => {
  it('coalesces statuses queued while disconnected to the latest per task and sends them after the join', async () => {
    fm = await FakeManager.start(true);
    const m = fm;
    const { s } = newSession(m.url);
    s.reportStatus('t1', { state: 'starting', message: '' });
    s.reportStatus('t2', { state: 'starting', message: '' });
    s.reportStatus('t1', { state: 'running', message: '' });
    expect(s.stats.statusCoalesced).toBe(1);
    s.start();
    await until(() => m.statuses(m.conns[0]).length === 2, 'queued statuses');
    expect(m.statuses(m.conns[0])).toEqual([['t2', 'starting'], ['t1', 'running']]);
    expect(m.conns[0]?.msgs[0]?.['type']).toBe('join');
  });

  it('bounds the queue: past maxPendingStatuses the stalest task is dropped and counted', async () => {
    fm = await FakeManager.start(true);
    const m = fm;
    const { s } = newSession(m.url, { maxPendingStatuses: 2 });
    s.reportStatus('t1', { state: 'running', message: '' });
    s.reportStatus('t2', { state: 'running', message: '' });
    s.reportStatus('t3', { state: 'running', message: '' });
    expect(s.stats.statusDropped).toBe(1);
    s.start();
    await until(() => m.statuses(m.conns[0]).length === 2, 'queued statuses');
    expect(m.statuses(m.conns[0])).toEqual([['t2', 'running'], ['t3', 'running']]);
  });

  it('re-sends after a reconnect what a dead connection swallowed, but not what a pong confirmed', async () => {
    fm = await FakeManager.start(true);
    const m = fm;
    const { s } = newSession(m.url);
    s.start();
    await until(() => s.connected, 'join');
    s.reportStatus('confirmed', { state: 'running', message: '' });
    vi.advanceTimersByTime(INTERVAL);
    await until(() => s.silentTicks === 0, 'pong');
    // The manager goes deaf: its pongs stop, so nothing sent from now on is confirmed.
    m.conns[0]?.ws.pause();
    s.reportStatus('lost', { state: 'failed', message: 'exit 1' });
    for (let i = 0; i < 3; i++) vi.advanceTimersByTime(INTERVAL);
    expect(s.stats.pingTimeouts).toBe(1);
    await until(() => m.conns.length === 2 && m.statuses(m.conns[1]).length === 1, 're-sent status');
    expect(m.statuses(m.conns[1])).toEqual([['lost', 'failed']]);
  });
});
