/**
 * The manager's WebSockets over real sockets: the watch stream (`/v1/watch`: established
 * frame, events in revision order, resume, relist fallback, auth, secrets never sent, slow
 * consumers closed with 4008) and the agent session (`/v1/agent`: node certificate, join first),
 * over the manager's TLS listener.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { WatchFrame } from '../../mesh/api/watch.js';
import { SECRETS_PREFIX } from '../../mesh/manager/cluster.js';
import { ROOT } from '../../src/model/keys.js';
import type { Network, Node } from '../../src/model/types.js';
import { api, joinCert, startTestManager, until, wssUrl, wsTls, type TestManager, type TestNodeCert } from '../helpers/cluster.js';

type EventsFrame = Extract<WatchFrame, { type: 'events' }>;
type EstablishedFrame = Extract<WatchFrame, { type: 'established' }>;

/** A WebSocket client that records every frame and how the socket closed. */
class Client {
  readonly frames: Array<Record<string, unknown>> = [];
  closed: { code: number; reason: string } | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => { this.frames.push(JSON.parse(data.toString()) as Record<string, unknown>); });
    ws.on('close', (code: number, reason: Buffer) => { this.closed = { code, reason: reason.toString() }; });
  }

  get established(): EstablishedFrame {
    const f = this.frames[0];
    if (f?.['type'] !== 'established') throw new Error(`first frame is not established: ${JSON.stringify(f)}`);
    return f as unknown as EstablishedFrame;
  }

  get events(): EventsFrame[] {
    return this.frames.filter((f) => f['type'] === 'events') as unknown as EventsFrame[];
  }

  /** The frame at `i`, waiting for it with a deadline. */
  async frame(i: number, what = `frame ${i}`): Promise<Record<string, unknown>> {
    return until(() => this.frames[i], what);
  }

  /** Waits until an events frame at or after `revision` arrived. */
  async reach(revision: number): Promise<void> {
    await until(() => this.events.some((f) => f.revision >= revision), `events up to revision ${revision}`);
  }

  async waitClosed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return until(() => this.closed, 'the socket to close', timeoutMs);
  }
}

const clients: WebSocket[] = [];
const managers: TestManager[] = [];

/** Connects; resolves once open, rejects with the HTTP status when the upgrade is refused. */
function connect(m: TestManager, path: string, token: string | undefined, cert?: TestNodeCert): Promise<Client> {
  const ws = new WebSocket(wssUrl(m, path), { ...wsTls(m, cert), ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) });
  clients.push(ws);
  const c = new Client(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      reject(Object.assign(new Error(`upgrade refused: ${res.statusCode ?? 0}`), { status: res.statusCode }));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** The HTTP status an upgrade is refused with. */
async function refusedWith(p: Promise<Client>): Promise<number | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { status?: number }).status;
  }
  throw new Error('the upgrade was accepted');
}

async function createNetwork(m: TestManager, name: string): Promise<Network> {
  const r = await api(m, 'POST', '/v1/networks', { name });
  expect(r.status, r.text).toBe(201);
  return r.body as Network;
}

/** Every visible key and value of the store now, as the established frame would list them. */
async function visibleState(m: TestManager): Promise<{ revision: number; kvs: Array<{ key: string; value: string; modRevision: number }> }> {
  const { kvs, revision } = await m.store.range(ROOT);
  return { revision, kvs: kvs.filter((kv) => !kv.key.startsWith(SECRETS_PREFIX)).map((kv) => ({ key: kv.key, value: kv.value, modRevision: kv.modRevision })) };
}

let m: TestManager;

beforeAll(async () => {
  m = await startTestManager();
  await createNetwork(m, 'first');
  await m.manager.scheduler.idle();
});

afterEach(() => {
  for (const ws of clients.splice(0)) {
    // terminate() on a socket still connecting emits 'error': expected here, not a failure.
    ws.on('error', () => undefined);
    ws.terminate();
  }
});

afterAll(async () => {
  for (const x of managers) await x.close();
  await m?.close();
});

describe('/v1/watch', () => {
  it('starts with an established frame holding the full list, without secrets', async () => {
    // The store does hold secrets: the filter is what keeps them out.
    expect(await m.store.get(`${SECRETS_PREFIX}cluster`)).toBeDefined();
    const c = await connect(m, '/v1/watch', m.token);
    await c.frame(0);
    const est = c.established;
    const now = await visibleState(m);
    expect(est.relist).toBe(true);
    expect(est.revision).toBe(now.revision);
    expect(est.kvs).toEqual(now.kvs);
    expect(est.kvs?.some((kv) => kv.key.startsWith(SECRETS_PREFIX))).toBe(false);
    expect(JSON.stringify(est)).not.toContain(m.token);
    expect(JSON.stringify(est)).not.toContain(m.joinToken);
    const names = (est.kvs ?? []).filter((kv) => kv.key.startsWith(`${ROOT}networks/`)).map((kv) => (JSON.parse(kv.value) as Network).name);
    expect(names).toContain('first');
  });

  it('streams later changes as events frames, in revision order', async () => {
    const c = await connect(m, '/v1/watch', m.token);
    await c.frame(0);
    const start = c.established.revision;
    const made: Network[] = [];
    for (const name of ['ev-a', 'ev-b', 'ev-c']) made.push(await createNetwork(m, name));
    const end = await m.store.currentRevision();
    await c.reach(end);

    const revs = c.events.map((f) => f.revision);
    expect(revs[0]).toBeGreaterThan(start);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
    for (const f of c.events) {
      expect(f.events.length).toBeGreaterThan(0);
      for (const e of f.events) {
        expect(e.key.startsWith(SECRETS_PREFIX)).toBe(false);
        if (e.type === 'put') expect(e.modRevision).toBe(f.revision);
      }
    }
    // Each network object arrives as a put, in creation order, with its stored value.
    const revOf = (n: Network): number => {
      const f = c.events.find((x) => x.events.some((e) => e.type === 'put' && e.key === `${ROOT}networks/${n.id}`));
      expect(f, `no put for network ${n.name}`).toBeDefined();
      const e = f?.events.find((x) => x.key === `${ROOT}networks/${n.id}`);
      expect((JSON.parse(e?.value ?? '{}') as Network).name).toBe(n.name);
      return f?.revision ?? -1;
    };
    const order = made.map(revOf);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    // What the stream says matches the store.
    for (const n of made) expect((await m.store.get(`${ROOT}networks/${n.id}`))?.value).toBeDefined();
  });

  it('sends deletes as delete events', async () => {
    const n = await createNetwork(m, 'ev-del');
    const c = await connect(m, '/v1/watch', m.token);
    await c.frame(0);
    expect((await api(m, 'DELETE', `/v1/networks/${n.id}`)).status).toBe(200);
    await c.reach(await m.store.currentRevision());
    const dels = c.events.flatMap((f) => f.events.filter((e) => e.type === 'delete').map((e) => ({ ...e, frame: f.revision })));
    const del = dels.find((e) => e.key === `${ROOT}networks/${n.id}`);
    expect(del).toBeDefined();
    expect(del?.value).toBeUndefined();
    expect(del?.modRevision).toBe(del?.frame);
  });

  it('resuming with ?revision=R gives relist:false and exactly the events after R', async () => {
    const live = await connect(m, '/v1/watch', m.token);
    await live.frame(0);
    const r = await m.store.currentRevision();
    await createNetwork(m, 'res-a');
    await createNetwork(m, 'res-b');
    await api(m, 'POST', '/v1/networks/res-a/update', { labels: { x: '1' } });
    const end = await m.store.currentRevision();
    expect(end).toBeGreaterThan(r);
    await live.reach(end);

    const resumed = await connect(m, `/v1/watch?revision=${r}`, m.token);
    await resumed.frame(0);
    expect(resumed.established).toEqual({ type: 'established', revision: r, relist: false });
    await resumed.reach(end);
    const after = (c: Client): EventsFrame[] => c.events.filter((f) => f.revision > r && f.revision <= end);
    expect(resumed.events.filter((f) => f.revision <= end)).toEqual(after(live));
    expect(resumed.events.every((f) => f.revision > r)).toBe(true);
    expect(after(live).length).toBeGreaterThanOrEqual(3);
  });

  it('resuming at the current revision gives no events until something changes', async () => {
    const r = await m.store.currentRevision();
    const c = await connect(m, `/v1/watch?revision=${r}`, m.token);
    await c.frame(0);
    expect(c.established).toEqual({ type: 'established', revision: r, relist: false });
    await createNetwork(m, 'res-now');
    await c.reach(r + 1);
    expect(c.events[0]?.revision).toBe(r + 1);
  });

  it('falls back to a relist for a future revision or a malformed one', async () => {
    const cur = await m.store.currentRevision();
    for (const q of [`?revision=${cur + 1000}`, '?revision=abc', '?revision=-1', '?revision=']) {
      const c = await connect(m, `/v1/watch${q}`, m.token);
      await c.frame(0, `established for ${q}`);
      expect(c.established.relist, q).toBe(true);
      expect(c.established.kvs, q).toEqual((await visibleState(m)).kvs);
    }
  });

  it('falls back to a relist for a compacted revision', async () => {
    // Own manager: compaction must not affect the other tests' resumes.
    const mc = await startTestManager();
    managers.push(mc);
    await createNetwork(mc, 'c1');
    const old = await mc.store.currentRevision();
    await createNetwork(mc, 'c2');
    await createNetwork(mc, 'c3');
    const cur = await mc.store.currentRevision();
    await mc.store.compact(cur);
    expect(await mc.store.compactedRevision()).toBeGreaterThan(old);

    const c = await connect(mc, `/v1/watch?revision=${old}`, mc.token);
    await c.frame(0);
    expect(c.established.relist).toBe(true);
    expect(c.established.revision).toBe(cur);
    expect(c.established.kvs).toEqual((await visibleState(mc)).kvs);
    // And it then streams from there.
    await createNetwork(mc, 'c4');
    await c.reach(cur + 1);
    expect(c.events[0]?.revision).toBe(cur + 1);
  });

  it('refuses the join token (403: it only joins); accepts a node certificate', async () => {
    expect(await refusedWith(connect(m, '/v1/watch', m.joinToken))).toBe(403);
    const c = await connect(m, '/v1/watch', undefined, await joinCert(m, 'watcher'));
    await c.frame(0);
    expect(c.established.relist).toBe(true);
    expect(c.established.kvs?.some((kv) => kv.key.startsWith(SECRETS_PREFIX))).toBe(false);
  });

  it.each<[string, string | undefined]>([
    ['a wrong token', 'SHOALMGR-not-the-token'],
    ['no token', undefined],
    ['an empty token', ''],
  ])('refuses %s with 401', async (_name, token) => {
    expect(await refusedWith(connect(m, '/v1/watch', token))).toBe(401);
  });

  it('refuses a token given without the Bearer scheme', async () => {
    const ws = new WebSocket(wssUrl(m, '/v1/watch'), { ...wsTls(m), headers: { authorization: m.token } });
    clients.push(ws);
    const status = await new Promise<number | undefined>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res: IncomingMessage) => { resolve(res.statusCode); res.resume(); });
      ws.once('open', () => reject(new Error('the upgrade was accepted')));
    });
    expect(status).toBe(401);
  });

  it('answers 404 for an unknown WebSocket path', async () => {
    expect(await refusedWith(connect(m, '/v1/nope', m.token))).toBe(404);
  });

  it('closes a slow consumer with 4008; it re-lists on reconnect', async () => {
    const ms = await startTestManager({ maxBufferedBytes: 1024 });
    managers.push(ms);
    const net = await createNetwork(ms, 'slow');
    const c = await connect(ms, '/v1/watch', ms.token);
    await c.frame(0);
    // Stop reading: the kernel buffers fill, then the server's own buffer.
    const sock = (c.ws as unknown as { _socket: Socket })._socket;
    sock.pause();
    const big = 'x'.repeat(64 * 1024);
    const updates = 200;
    for (let i = 0; i < updates; i++) {
      const r = await api(ms, 'POST', `/v1/networks/${net.id}/update`, { labels: { i: String(i), pad: big } });
      expect(r.status, r.text).toBe(200);
    }
    const end = await ms.store.currentRevision();
    sock.resume();
    const closed = await c.waitClosed(20_000);
    expect(closed.code).toBe(4008);
    expect(closed.reason).toMatch(/slow consumer/);
    // What it got before the close is a gap-free prefix in revision order, cut short.
    const revs = c.events.map((f) => f.revision);
    const first = c.established.revision + 1;
    expect(revs).toEqual(revs.map((_, i) => first + i));
    expect(revs.length).toBeLessThan(updates);
    expect(revs.at(-1) ?? 0).toBeLessThan(end);
    // Reconnecting without a revision re-lists the current state.
    const again = await connect(ms, '/v1/watch', ms.token);
    await again.frame(0);
    expect(again.established.relist).toBe(true);
    const kv = again.established.kvs?.find((x) => x.key === `${ROOT}networks/${net.id}`);
    expect((JSON.parse(kv?.value ?? '{}') as Network).labels['i']).toBe(String(updates - 1));
  });

  it('keeps a client that reads, under the same load', async () => {
    const ms = await startTestManager({ maxBufferedBytes: 1 << 20 });
    managers.push(ms);
    const net = await createNetwork(ms, 'fast');
    const c = await connect(ms, '/v1/watch', ms.token);
    await c.frame(0);
    for (let i = 0; i < 20; i++) await api(ms, 'POST', `/v1/networks/${net.id}/update`, { labels: { i: String(i) } });
    await c.reach(await ms.store.currentRevision());
    expect(c.closed).toBeUndefined();
    expect(c.events.length).toBe(20);
  });
});

describe('/v1/agent', () => {
  it('refuses the manager token, the join token and a wrong token with 401 (agents use their node certificate)', async () => {
    expect(await refusedWith(connect(m, '/v1/agent', m.token))).toBe(401);
    expect(await refusedWith(connect(m, '/v1/agent', m.joinToken))).toBe(401);
    expect(await refusedWith(connect(m, '/v1/agent', 'SHOALJOIN-wrong'))).toBe(401);
    expect(await refusedWith(connect(m, '/v1/agent', undefined))).toBe(401);
  });

  it('requires join as the first message: a heartbeat first gets an error and a close', async () => {
    const c = await connect(m, '/v1/agent', undefined, await joinCert(m, 'first-hb'));
    c.ws.send(JSON.stringify({ type: 'heartbeat' }));
    const f = await c.frame(0);
    expect(f).toEqual({ type: 'error', message: expect.stringMatching(/send join first/) as string });
    const closed = await c.waitClosed();
    expect(closed.code).toBe(4400);
    expect(closed.reason).toMatch(/send join first/);
  });

  it('closes a session whose message is not a JSON object', async () => {
    const c = await connect(m, '/v1/agent', undefined, await joinCert(m, 'not-json'));
    c.ws.send('hello');
    expect((await c.waitClosed()).code).toBe(4400);
  });

  it('refuses an invalid join with an error naming the problem', async () => {
    const c = await connect(m, '/v1/agent', undefined, await joinCert(m, 'bad-join'));
    c.ws.send(JSON.stringify({ type: 'join', name: 'bad name', address: '127.0.0.1' }));
    expect(await c.frame(0)).toEqual({ type: 'error', message: expect.stringMatching(/node name 'bad name' is invalid/) as string });
    expect((await c.waitClosed()).code).toBe(4400);
  });

  it('answers a valid join with welcome, then the established watch frame', async () => {
    const id = await joinCert(m, 'agent-1');
    const c = await connect(m, '/v1/agent', undefined, id);
    c.ws.send(JSON.stringify({ type: 'join', name: 'agent-1', address: '127.0.0.1' }));
    const welcome = await c.frame(0, 'welcome');
    expect(welcome['type']).toBe('welcome');
    const node = welcome['node'] as Node;
    expect(node).toMatchObject({ id: id.nodeId, name: 'agent-1', address: '127.0.0.1', state: 'ready', availability: 'active' });
    expect(welcome['leaseTtlSeconds']).toBe(m.manager.nodeLeaseTtlSeconds);
    const est = await c.frame(1, 'established');
    expect(est['type']).toBe('established');
    expect(est['relist']).toBe(true);
    const kvs = est['kvs'] as Array<{ key: string; value: string }>;
    expect(kvs.some((kv) => kv.key === `${ROOT}nodes/${node.id}`)).toBe(true);
    expect(kvs.some((kv) => kv.key.startsWith(SECRETS_PREFIX))).toBe(false);
    // The node is registered, and a heartbeat is accepted (no error, no close).
    const nodes = (await api(m, 'GET', '/v1/nodes')).body as Node[];
    expect(nodes.find((n) => n.id === node.id)?.state).toBe('ready');
    c.ws.send(JSON.stringify({ type: 'heartbeat' }));
    // Then a change shows up on the session's stream.
    await createNetwork(m, 'seen-by-agent');
    await until(() => c.frames.some((f) => f['type'] === 'events' && JSON.stringify(f).includes('seen-by-agent')), 'the network on the agent stream');
    expect(c.frames.some((f) => f['type'] === 'error')).toBe(false);
    expect(c.closed).toBeUndefined();
    // A second join on the same session is refused.
    c.ws.send(JSON.stringify({ type: 'join', name: 'agent-1', address: '127.0.0.1' }));
    await until(() => c.frames.some((f) => f['type'] === 'error'), 'an error for the second join');
    expect(c.frames.find((f) => f['type'] === 'error')?.['message']).toMatch(/already joined/);
  });
});
