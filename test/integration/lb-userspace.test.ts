/**
 * The userspace dataplane end to end on loopback.
 *
 * 1. WITHOUT root: test/fixtures/lb-userspace-child.ts runs as uid/gid 65534 (`setpriv` when the
 *    test runs as root; directly otherwise) and prints its observations as JSON: distribution,
 *    draining, removal, retry, affinity, UDP sessions, a bind it may not do. Asserted here.
 * 2. In this process: bad input (invalid services, bind conflicts) rejects and changes nothing;
 *    syncAll; resets passed on; close.
 * Needs: setpriv (util-linux) when run as root.
 */
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserspaceLoadBalancer } from '../../ingress/userspace/index.js';
import type { LbBackendStats, VirtualService } from '../../ingress/types.js';

const NOBODY = 65534;

/** Runs the child unprivileged; resolves with its JSON. */
async function runChild(): Promise<Record<string, unknown>> {
  const home = await mkdtemp(join(tmpdir(), 'shoal-lb-child-'));
  try {
    const root = process.getuid?.() === 0;
    if (root) await chown(home, NOBODY, NOBODY); // tsx keeps its cache under TMPDIR
    const node = ['node', '--import', 'tsx', 'test/fixtures/lb-userspace-child.ts'];
    const [cmd, ...args] = root ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...node] : node;
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(cmd!, args, { cwd: process.cwd(), env: { ...process.env, TMPDIR: home, HOME: home }, timeout: 60_000 }, (err, out, stderr) =>
        err && !out ? reject(new Error(`child failed: ${err.message}\n${stderr}`)) : resolve(out));
    });
    const line = stdout.trim().split('\n').pop() ?? '';
    return JSON.parse(line) as Record<string, unknown>;
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

describe('userspace load balancer, unprivileged (uid 65534)', () => {
  let r: Record<string, unknown>;
  beforeAll(async () => {
    r = await runChild();
  });

  it('ran without root', () => {
    expect(r.error).toBeUndefined();
    expect(r.uid).not.toBe(0);
    expect(r.gid).not.toBe(0);
  });

  it('spreads 100 TCP connections over all 3 backends (rr: exact) and counts them', () => {
    expect(Object.values(r.distribution as Record<string, number>).sort()).toEqual([33, 33, 34]);
    expect(Object.keys(r.distribution as object).sort()).toEqual(['a', 'b', 'c']);
    expect(r.acceptedAfter100).toEqual(r.distribution);
    const stats = r.tcpStats as LbBackendStats[];
    expect(stats.map((s) => s.connectionsTotal).sort()).toEqual([33, 33, 34]);
    for (const s of stats) {
      expect(s.connections).toBe(0);
      // Each backend says its one-letter name and a newline, then `bye\n` to the client's FIN (if still there).
      expect(s.bytes).toBeGreaterThanOrEqual(2 * s.connectionsTotal!);
      expect(s.bytes).toBeLessThanOrEqual(6 * s.connectionsTotal!);
    }
  });

  it('passes a half-close through', () => {
    expect(r.halfClose).toMatch(/^[abc]\nping\nbye\n$/);
  });

  it('draining (weight 0): the open connection goes on, new ones avoid the backend', () => {
    expect(r.drainTally).toEqual({ a: 15, c: 15 });
    expect(r.drainedConnEcho).toBe('still-there\n');
  });

  it('a removed backend gets no new connections; its open one is left to finish', () => {
    expect(r.removeTally).toEqual({ a: 30 });
    expect(r.removedGotNew).toBe(0);
    expect(r.drainedConnEchoAfterRemove).toBe('after-remove\n');
  });

  it('a refused connect is retried on the next backend; logged once', () => {
    expect(r.retryTally).toEqual({ a: 15, c: 15 });
    expect((r.logs as string[]).filter((l) => l.includes('unreachable (ECONNREFUSED)'))).toHaveLength(1);
  });

  it('affinity: each client address keeps its backend; clients still spread', () => {
    const aff = r.affinity as Record<string, Record<string, number>>;
    const homes = Object.values(aff).map((t) => {
      expect(Object.values(t)).toEqual([10]);
      return Object.keys(t)[0];
    });
    expect(new Set(homes).size).toBe(3);
  });

  it('no backends: a RST; the listener was never re-bound while backends changed', () => {
    expect(r.emptyBackends).toBe('error:ECONNRESET');
    const [first, last] = r.listenerInodes as number[];
    expect(first).toBeGreaterThan(0);
    expect(last).toBe(first);
  });

  it('UDP: sessions per client, replies from the frontend, draining and removal', () => {
    const first = (r.udpFirstAnswers as string[]).map((t) => t.split(':')[0]);
    expect(first.filter((n) => n === 'u1')).toHaveLength(2); // rr over 2 backends, 4 clients
    expect(first[0]).not.toBe(first[1]);
    expect(r.udpSameSession).toBe(true);
    expect(r.udpReplyFrom).toHaveLength(1);
    expect((r.udpReplyFrom as string[])[0]).toMatch(/^127\.0\.0\.77:/);
    expect(r.udpDrainOld).toBe('u1:old');
    expect(r.udpDrainNew).toEqual(['u2:new', 'u2:new']);
    expect(r.udpAfterRemove).toEqual(Array(5).fill('u2:after'));
    expect(r.udpRemovedGotMore).toBe(0);
  });

  it('a bind it may not do (port 80) rejects with EACCES and changes nothing', () => {
    expect(r.eaccesCode).toBe('SHOAL_ERR_KERNEL_EACCES');
    expect(r.eaccesUnchanged).toBe(true);
    expect(r.eaccesGoodPortNotLeft).toBe('error:ECONNREFUSED');
    expect(r.udpAfterBadInput).toBe('u2:still');
  });

  it('cleanup closes every listener', () => {
    expect(r.afterCleanup).toBe('error:ECONNREFUSED');
    expect(r.appliedAfterCleanup).toBe(0);
  });
});

const FRONT = '127.0.0.78';

async function listen(server: Server, host: string, port = 0): Promise<number> {
  server.listen(port, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** First bytes the frontend gives back, or the error code. */
function firstWords(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, FRONT);
    s.once('data', (d) => {
      resolve(d.toString());
      s.destroy();
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(`error:${e.code}`));
    s.once('close', () => resolve('closed'));
  });
}

describe('userspace load balancer, bad input and lifecycle', () => {
  const backend = createServer((s) => s.end('hi'));
  const resetter = createServer((s) => s.resetAndDestroy());
  const squatter = createServer();
  const echo = createServer((s) => s.pipe(s));
  let eport: number;
  let bport: number;
  let rport: number;
  let taken: number;
  let lb: UserspaceLoadBalancer;
  const vs = (port: number, extra: Partial<VirtualService> = {}): VirtualService =>
    ({ service: 'web', protocol: 'tcp', address: FRONT, port, scheduler: 'rr', backends: [{ address: '127.0.0.1', port: bport, weight: 1 }], ...extra });
  const freePort = async (): Promise<number> => {
    const s = createServer();
    const p = await listen(s, FRONT);
    await new Promise((r) => s.close(r));
    return p;
  };

  beforeAll(async () => {
    bport = await listen(backend, '127.0.0.1');
    rport = await listen(resetter, '127.0.0.1');
    taken = await listen(squatter, FRONT);
    eport = await listen(echo, '127.0.0.1');
    lb = new UserspaceLoadBalancer();
  });
  afterAll(async () => {
    await lb.close();
    for (const s of [backend, resetter, squatter, echo]) s.close();
  });

  it('invalid services reject with InvalidParameter and change nothing', async () => {
    const p = await freePort();
    await lb.apply([vs(p)], []);
    const bad: Array<Partial<VirtualService>> = [
      { port: 0 },
      { address: 'not-an-ip' },
      { protocol: 'sctp' as 'tcp' },
      { scheduler: 'wlc' as 'rr' },
      { affinity: { timeoutSeconds: -1 } },
      { backends: [{ address: '127.0.0.1', port: bport, weight: 257 }] },
      { backends: [{ address: '127.0.0.1', port: bport, weight: 1 }, { address: '127.0.0.1', port: bport, weight: 2 }] },
      { backends: [{ address: '127.0.0.1', port: 70000, weight: 1 }] },
    ];
    for (const b of bad) {
      await expect(lb.apply([vs(p, { backends: [] }), vs(p + 1, b)], [])).rejects.toMatchObject({ kind: 'InvalidParameter' });
    }
    await expect(lb.apply([vs(p), vs(p)], [])).rejects.toThrow(/listed twice/);
    // A VIP's every port is a kernel dataplane's (one socket listens on one port): said so.
    await expect(lb.apply([vs(0, { backends: [{ address: '127.0.0.1', port: 0, weight: 1 }] })], [])).rejects.toThrow(/every-port .* need a kernel dataplane/);
    expect([...lb.applied().values()].map((v) => v.backends.length)).toEqual([1]); // the first, valid, one was not applied either
    expect(await firstWords(p)).toBe('hi');
    await lb.apply([], [`tcp/${FRONT}/${p}`]);
  });

  it('a bind conflict rejects naming the frontend; the other new listener is undone; the rest goes on', async () => {
    const keep = await freePort();
    const fresh = await freePort();
    await lb.apply([vs(keep)], []);
    const before = lb.applied();
    const err = await lb.apply([vs(keep, { backends: [] }), vs(fresh), vs(taken, { service: 'clash' })], []).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'SHOAL_ERR_KERNEL_EADDRINUSE', kind: 'Conflict' });
    expect((err as Error).message).toContain(`tcp/${FRONT}/${taken}`);
    expect((err as Error).message).toContain('clash');
    expect(lb.applied()).toEqual(before);
    expect(await firstWords(keep)).toBe('hi'); // its backends were not emptied
    expect(await firstWords(fresh)).toBe('error:ECONNREFUSED'); // bound, then undone
    const notHere = await lb.apply([vs(keep, { address: '192.0.2.1' })], []).then(() => undefined, (e: unknown) => e);
    expect(notHere).toMatchObject({ code: 'SHOAL_ERR_KERNEL_EADDRNOTAVAIL' });
    expect((notHere as Error).message).toContain('192.0.2.1');
    expect(lb.applied()).toEqual(before);
  });

  it('syncAll closes listeners not wanted and keeps (not re-binds) the wanted ones', async () => {
    const a = await freePort();
    const b = await freePort();
    await lb.syncAll([vs(a), vs(b, { protocol: 'udp' }), vs(b)]);
    expect([...lb.applied().keys()].sort()).toEqual([`tcp/${FRONT}/${a}`, `tcp/${FRONT}/${b}`, `udp/${FRONT}/${b}`].sort());
    await lb.syncAll([vs(a, { scheduler: 'mh' })]);
    expect([...lb.applied().keys()]).toEqual([`tcp/${FRONT}/${a}`]);
    expect(lb.applied().get(`tcp/${FRONT}/${a}`)?.scheduler).toBe('mh');
    expect(await firstWords(a)).toBe('hi');
    expect(await firstWords(b)).toBe('error:ECONNREFUSED');
  });

  it('a backend reset reaches the client as a reset', async () => {
    const p = await freePort();
    await lb.apply([vs(p, { backends: [{ address: '127.0.0.1', port: rport, weight: 1 }] })], []);
    expect(await firstWords(p)).toBe('error:ECONNRESET');
  });

  it('a removed service: no new connections, open ones go on until cleanup() ends them', async () => {
    const p = await freePort();
    await lb.apply([vs(p, { backends: [{ address: '127.0.0.1', port: eport, weight: 1 }] })], []);
    const sock = connect(p, FRONT);
    await once(sock, 'connect');
    const echoOf = async (text: string): Promise<string> => {
      sock.write(text);
      const [d] = (await once(sock, 'data')) as [Buffer];
      return d.toString();
    };
    expect(await echoOf('one')).toBe('one');
    await lb.apply([], [`tcp/${FRONT}/${p}`]);
    expect(await firstWords(p)).toBe('error:ECONNREFUSED');
    expect(await echoOf('two')).toBe('two');
    const closed = once(sock, 'close');
    await lb.cleanup();
    await closed;
    expect(sock.destroyed).toBe(true);
  });

  it('UDP without backends: datagrams are dropped, nothing answers', async () => {
    const p = await freePort();
    await lb.apply([vs(p, { protocol: 'udp', backends: [] })], []);
    const client = createSocket('udp4');
    const answered = new Promise<boolean>((resolve) => {
      client.once('message', () => resolve(true));
      setTimeout(() => resolve(false), 300);
    });
    client.send('anyone?', p, FRONT);
    expect(await answered).toBe(false);
    client.close();
  });

    it('after close() every call rejects', async () => {
    const other = new UserspaceLoadBalancer();
    await other.close();
    await expect(other.apply([], [])).rejects.toMatchObject({ kind: 'Unavailable' });
  });
});
