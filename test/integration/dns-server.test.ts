/**
 * The resolver end to end with real clients and a real upstream: `dig` against a DnsServer on
 * 127.0.0.1 (port 0), forwarding to a dnsmasq the test starts on 127.0.0.x (stopped by PID).
 * Needs: dig (dnsutils), dnsmasq.
 */
import { connect, type Socket } from 'node:net';
import { Registry as PromRegistry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cachePlugin,
  createDnsMetrics,
  DnsCache,
  DnsServer,
  Forwarder,
  forwardPlugin,
  MemoryRegistry,
  scopeOf,
  standardChain,
  type Plugin,
} from '../../dns/index.js';
import { buildQuery, tcpExchange, udpExchange } from '../../dns/testing/client.js';
import { dig } from '../../dns/testing/dig.js';
import { startDnsmasq, type Dnsmasq } from '../../dns/testing/dnsmasq.js';
import { decodeMessage, Rcode } from '../../dns/wire/index.js';

const HOST = '127.0.0.1';
const UPSTREAM_ADDR = '127.0.0.53';

let upstream: Dnsmasq;
let server: DnsServer;
let port: number;
let prom: PromRegistry;
let clockOffset = 0;
let forwarder: Forwarder;

function registry(): MemoryRegistry {
  const r = new MemoryRegistry();
  r.upsertNetwork({ id: 'n-app', name: 'app' });
  r.upsertNetwork({ id: 'n-back', name: 'backend' });
  r.upsertService({
    id: 's-web', name: 'web', endpointMode: 'vip',
    networks: [{ network: 'n-app', aliases: ['www'], vip: { v4: '10.0.1.2', v6: 'fd00:1::2' } }],
    ports: [{ name: 'http', protocol: 'tcp', port: 80 }],
  });
  r.upsertService({ id: 's-api', name: 'api', endpointMode: 'dnsrr', networks: [{ network: 'n-app' }] });
  for (let i = 1; i <= 100; i++) {
    r.upsertTask({ id: `ta${i}`, serviceId: 's-api', serviceName: 'api', slot: i, healthy: true, networks: [{ network: 'n-app', v4: `10.0.3.${i}` }] });
  }
  r.upsertService({ id: 's-db', name: 'db', endpointMode: 'vip', networks: [{ network: 'n-back', vip: { v4: '10.0.2.3' } }] });
  return r;
}

beforeAll(async () => {
  upstream = await startDnsmasq({
    address: UPSTREAM_ADDR,
    hosts: Array.from({ length: 120 }, (_, i) => `198.51.100.${i + 1} big.test`),
    args: ['--host-record=ext.test,192.0.2.1', '--host-record=stale.test,192.0.2.7', '--local=/test/', '--local=/backend/', '--local-ttl=60'],
  });
  prom = new PromRegistry();
  const metrics = createDnsMetrics(prom);
  forwarder = new Forwarder({ upstreams: [{ address: upstream.address, port: upstream.port }], metrics, timeoutMs: 1000 });
  const cache = new DnsCache({ metrics, now: () => Date.now() + clockOffset });
  const handler = standardChain({ registry: registry(), metrics, cache: cachePlugin(cache), forward: forwardPlugin(forwarder) });
  server = new DnsServer({ address: HOST, port: 0, handler, scope: scopeOf(['n-app'], 'app'), metrics });
  port = (await server.start()).port;
});

afterAll(async () => {
  await server?.close();
  forwarder?.close();
  await upstream?.stop();
});

describe('dig against the resolver', () => {
  it('answers a service name over UDP, authoritative, low TTL, with EDNS echoed', async () => {
    const r = await dig(HOST, port, ['web', 'A']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toEqual(expect.arrayContaining(['qr', 'aa', 'rd', 'ra']));
    expect(r.answer).toEqual(['web. 5 IN A 10.0.1.2']);
    expect(r.ednsUdp).toBe(1232);
  });

  it('answers over TCP (+tcp) and without EDNS (+noedns)', async () => {
    expect((await dig(HOST, port, ['+tcp', 'www', 'AAAA'])).answer).toEqual(['www. 5 IN AAAA fd00:1::2']);
    const r = await dig(HOST, port, ['+noedns', 'web', 'A']);
    expect(r.answer).toEqual(['web. 5 IN A 10.0.1.2']);
    expect(r.ednsUdp).toBeUndefined();
  });

  it('keeps the question spelling and answers NODATA for a missing family', async () => {
    expect((await dig(HOST, port, ['WeB.App', 'A'])).answer).toEqual(['WeB.App. 5 IN A 10.0.1.2']);
    const r = await dig(HOST, port, ['api', 'AAAA']);
    expect(r.status).toBe('NOERROR');
    expect(r.counts.answer).toBe(0);
  });

  it('answers PTR and SRV', async () => {
    expect((await dig(HOST, port, ['-x', '10.0.1.2'])).answer).toEqual(['2.1.0.10.in-addr.arpa. 5 IN PTR web.app.']);
    const srv = await dig(HOST, port, ['_http._tcp.web', 'SRV']);
    expect(srv.answer).toEqual(['_http._tcp.web. 5 IN SRV 0 0 80 web.app.']);
    expect(srv.counts.additional).toBe(3); // A + AAAA glue + OPT
  });

  it('does not answer another network\'s names: they go upstream like any unknown name', async () => {
    // dnsmasq is authoritative for backend/ here and has no upstream for anything else.
    expect((await dig(HOST, port, ['db.backend', 'A'])).status).toBe('NXDOMAIN');
    const bare = await dig(HOST, port, ['db', 'A']);
    expect(bare.status).toBe('SERVFAIL');
    expect(bare.counts.answer).toBe(0);
  });

  it('truncates a big dnsrr answer over UDP without EDNS, and gives it whole over TCP', async () => {
    const udp = await dig(HOST, port, ['+noedns', '+ignore', 'api', 'A']);
    expect(udp.flags).toContain('tc');
    expect(udp.counts.answer).toBeGreaterThan(0);
    expect(udp.counts.answer).toBeLessThan(100);
    const retried = await dig(HOST, port, ['+noedns', 'api', 'A']);
    expect(retried.retriedTcp).toBe(true);
    expect(retried.counts.answer).toBe(100);
    const tcp = await dig(HOST, port, ['+tcp', 'api', 'A']);
    expect(tcp.flags).not.toContain('tc');
    expect(tcp.counts.answer).toBe(100);
    const edns = await dig(HOST, port, ['+bufsize=4096', '+ignore', 'api', 'A']);
    expect(edns.flags).toContain('tc');
    expect(edns.counts.answer).toBe(Math.floor((1232 - 12 - 8 - 11) / 16));
  });
});

describe('forwarding to a real upstream (dnsmasq)', () => {
  it('forwards names the cluster does not own', async () => {
    const r = await dig(HOST, port, ['ext.test', 'A']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual(['ext.test. 60 IN A 192.0.2.1']);
  });

  it('falls back to TCP upstream for a large answer', async () => {
    const r = await dig(HOST, port, ['+tcp', 'big.test', 'A']);
    expect(r.counts.answer).toBe(120);
    expect(await prom.metrics()).toMatch(new RegExp(`shoal_dns_upstream_queries_total\\{upstream="${UPSTREAM_ADDR}:${upstream.port}",transport="tcp"\\} [1-9]`));
  });

  it('serves a stale answer after the upstream is stopped', async () => {
    expect((await dig(HOST, port, ['stale.test', 'A'])).answer).toEqual(['stale.test. 60 IN A 192.0.2.7']);
    await upstream.stop();
    clockOffset = 61_000; // the cached entry has now expired
    const r = await dig(HOST, port, ['stale.test', 'A']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual(['stale.test. 30 IN A 192.0.2.7']);
    expect(await prom.metrics()).toMatch(/shoal_dns_cache_hits_total\{state="stale"\} [1-9]/);
    // Without anything cached the failure shows.
    expect((await dig(HOST, port, ['never-seen.test', 'A'])).status).toBe('SERVFAIL');
    // Registry answers do not depend on the upstream at all.
    expect((await dig(HOST, port, ['web', 'A'])).answer).toEqual(['web. 5 IN A 10.0.1.2']);
  });
});

describe('server robustness', () => {
  const closeWithin = (sock: Socket, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (sock.destroyed) return resolve(true);
      const t = setTimeout(() => resolve(false), ms);
      sock.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });

  it('answers several queries on one TCP connection', async () => {
    const res = await tcpExchange(port, [buildQuery('web', 'A', { id: 1 }), buildQuery('www', 'A', { id: 2 }), buildQuery('api', 'A', { id: 3 })]);
    expect(res.map((r) => decodeMessage(r)?.id).sort()).toEqual([1, 2, 3]);
  });

  it('turns a throwing plugin into SERVFAIL and keeps serving', async () => {
    const boom: Plugin = () => () => {
      throw new Error('boom');
    };
    const s = new DnsServer({ address: HOST, port: 0, handler: standardChain({ registry: registry(), forward: boom }), scope: scopeOf(['n-app']) });
    const p = (await s.start()).port;
    try {
      expect(decodeMessage((await udpExchange(p, buildQuery('nope', 'A')))!)?.rcode).toBe(Rcode.SERVFAIL);
      expect(decodeMessage((await tcpExchange(p, [buildQuery('nope', 'A')]))[0]!)?.rcode).toBe(Rcode.SERVFAIL);
      expect(decodeMessage((await udpExchange(p, buildQuery('web', 'A')))!)?.answer).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it('closes idle TCP connections and ones over the connection limit', async () => {
    const s = new DnsServer({ address: HOST, port: 0, handler: standardChain({ registry: registry() }), scope: scopeOf(['n-app']), tcpIdleTimeoutMs: 300, maxTcpConnections: 2 });
    const p = (await s.start()).port;
    const open = (): Promise<Socket> =>
      new Promise((resolve) => {
        const c = connect({ host: HOST, port: p }, () => resolve(c));
        c.on('error', () => undefined);
      });
    try {
      const a = await open();
      const b = await open();
      const c = await open();
      expect(await closeWithin(c, 1000)).toBe(true); // third connection over the limit
      // A client dribbling a partial frame is not "active": it is closed at the idle timeout.
      a.write(Buffer.from([0x00]));
      expect(await closeWithin(a, 2000)).toBe(true);
      expect(await closeWithin(b, 2000)).toBe(true);
      const res = await tcpExchange(p, [buildQuery('web', 'A')]);
      expect(res).toHaveLength(1);
    } finally {
      await s.close();
    }
  });
});
