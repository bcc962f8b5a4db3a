/**
 * Health verdicts from probe results (fake probe, real timers with short intervals), and the
 * real probes against servers on loopback.
 */
import { createServer as createHttp, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { HealthMonitor, probe } from '../../mesh/agent/health.js';
import { establishedConnections } from '../../mesh/agent/drain.js';
import type { HealthCheck } from '../../src/model/types.js';

const check = (o: Partial<HealthCheck> = {}): HealthCheck => ({ type: 'tcp', port: 1, intervalMs: 10, timeoutMs: 50, retries: 3, startPeriodMs: 0, ...o });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('HealthMonitor', () => {
  it('healthy at the first pass; unhealthy after `retries` failures in a row; healthy again after a pass', async () => {
    const results: Array<string | undefined> = [undefined, 'x', 'x', undefined, 'x', 'x', 'x'];
    const events: string[] = [];
    const m = new HealthMonitor((id, healthy) => events.push(`${id}:${healthy}`), async () => (results.length ? results.shift() : 'x'));
    m.ensure('t1', '10.0.0.5', check());
    await sleep(400);
    m.close();
    // pass -> healthy; x x pass: still healthy (2 < 3); x x x -> unhealthy
    expect(events).toEqual(['t1:true', 't1:false']);
  });

  it('failures inside the start period do not count, a pass does', async () => {
    const events: string[] = [];
    let n = 0;
    const m = new HealthMonitor((_id, healthy) => events.push(String(healthy)), async () => (++n < 10 ? 'slow start' : undefined));
    m.ensure('t1', '10.0.0.5', check({ startPeriodMs: 10_000, retries: 1 }));
    await sleep(300);
    expect(m.verdict('t1')).toBe(true);
    m.close();
    expect(events).toEqual(['true']);
  });
});

describe('probe (real sockets on loopback)', () => {
  let tcp: Server;
  let http: HttpServer;
  let sick = false;
  afterAll(() => { tcp?.close(); http?.close(); });

  it('tcp: passes while something listens, fails with a reason when nothing does', async () => {
    tcp = createServer((s) => s.end()).listen(0, '127.0.0.1');
    await new Promise((r) => tcp.once('listening', r));
    const port = (tcp.address() as AddressInfo).port;
    expect(await probe('127.0.0.1', check({ port }))).toBeUndefined();
    tcp.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(await probe('127.0.0.1', check({ port }))).toMatch(/ECONNREFUSED/);
  });

  it('http: 2xx passes, 500 fails, and counts established connections of this process on a port', async () => {
    http = createHttp((req, res) => res.writeHead(sick ? 500 : 200).end(req.url)).listen(0, '127.0.0.1');
    await new Promise((r) => http.once('listening', r));
    const port = (http.address() as AddressInfo).port;
    expect(await probe('127.0.0.1', check({ type: 'http', port, path: '/healthz' }))).toBeUndefined();
    sick = true;
    expect(await probe('127.0.0.1', check({ type: 'http', port, path: '/healthz' }))).toMatch(/status 500/);
    expect(establishedConnections(process.pid, new Set([port]))).toBe(0);
    const { connect } = await import('node:net');
    const c = connect(port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    await sleep(20);
    expect(establishedConnections(process.pid, new Set([port]))).toBe(1); // the server side of c
    c.destroy();
  });
});
