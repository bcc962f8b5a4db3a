import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry as PromRegistry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cachePlugin,
  createDnsMetrics,
  DnsCache,
  DnsRequest,
  Forwarder,
  forwardPlugin,
  MemoryRegistry,
  parseResolvConf,
  scopeOf,
  standardChain,
  toWire,
  upstreamsOf,
  type Handler,
} from '../../dns/index.js';
import { buildQuery } from '../../dns/testing/client.js';
import { ZoneServer } from '../../dns/testing/zone-server.js';
import { decodeMessage, Rcode, sectionLines, type DecodedMessage } from '../../dns/wire/index.js';

const ZONE = `
example.        300 IN SOA ns.example. admin.example. 1 7200 900 1209600 60
www.example.    120 IN A 192.0.2.10
www.example.    120 IN AAAA 2001:db8::10
short.example.  2   IN A 192.0.2.11
${Array.from({ length: 120 }, (_, i) => `big.example. 300 IN A 198.51.100.${i}`).join('\n')}
`;

const scope = scopeOf(['n1'], 'app');
const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()?.();
});

async function upstream(zone = ZONE): Promise<{ zs: ZoneServer; port: number }> {
  const zs = new ZoneServer(zone);
  const port = await zs.start();
  closers.push(() => zs.close());
  return { zs, port };
}

function forwarder(ports: number[], o: Partial<ConstructorParameters<typeof Forwarder>[0]> = {}): Forwarder {
  const f = new Forwarder({ upstreams: ports.map((port) => ({ address: '127.0.0.1', port })), timeoutMs: 300, ...o });
  closers.push(() => f.close());
  return f;
}

async function ask(h: Handler, q: Buffer, transport: 'udp' | 'tcp' = 'udp'): Promise<{ msg: DecodedMessage; wire: Buffer }> {
  const req = new DnsRequest(q, transport, '127.0.0.1', 5353, scope);
  const wire = toWire(req, await h(req));
  if (!wire) throw new Error('no response');
  const msg = decodeMessage(wire);
  if (!msg) throw new Error('undecodable response');
  return { msg, wire };
}

const chainWith = (f: Forwarder, cache?: DnsCache): Handler =>
  standardChain({ registry: new MemoryRegistry(), forward: forwardPlugin(f), ...(cache ? { cache: cachePlugin(cache) } : {}) });

describe('resolv.conf', () => {
  it('reads nameservers, search and options, skipping junk', () => {
    const conf = parseResolvConf(`# comment
nameserver 10.255.255.53
nameserver fe80::1%eth0
nameserver not-an-ip
search corp.example example
options timeout:1 attempts:3 rotate ndots:2
garbage line`);
    expect(conf).toEqual({ nameservers: ['10.255.255.53', 'fe80::1%eth0'], search: ['corp.example', 'example'], timeout: 1, attempts: 3, rotate: true });
    expect(upstreamsOf(conf, ['10.255.255.53'])).toEqual([{ address: 'fe80::1%eth0', port: 53 }]);
    expect(parseResolvConf('')).toEqual({ nameservers: [], search: [], rotate: false });
  });
});

describe('forwarding', () => {
  it('forwards with its own random id and answers with the client id and spelling', async () => {
    const { zs, port } = await upstream();
    const seen: number[] = [];
    zs.mangle = (w) => {
      seen.push(w.readUInt16BE(0));
      return w;
    };
    const h = chainWith(forwarder([port]));
    const { msg } = await ask(h, buildQuery('WWW.Example', 'A', { id: 4242 }));
    expect(msg.id).toBe(4242);
    expect(msg.rcode).toBe(Rcode.NOERROR);
    expect(msg.aa).toBe(true);
    expect(sectionLines(msg)).toEqual(['WWW.Example. 120 IN A 192.0.2.10']);
    expect(seen).toHaveLength(1);
    expect(seen[0]).not.toBe(4242);
  });

  it('passes NXDOMAIN through with its SOA', async () => {
    const { port } = await upstream();
    const { msg } = await ask(chainWith(forwarder([port])), buildQuery('nope.example', 'A'));
    expect(msg.rcode).toBe(Rcode.NXDOMAIN);
    expect(sectionLines(msg, 'authority')).toEqual(['example. 300 IN SOA ns.example. admin.example. 1 7200 900 1209600 60']);
  });

  it.each(['servfail', 'refused', 'drop'] as const)('fails over to the next upstream when the first says %s', async (mode) => {
    const a = await upstream();
    const b = await upstream();
    a.zs.mode = mode;
    const { msg } = await ask(chainWith(forwarder([a.port, b.port])), buildQuery('www.example', 'AAAA'));
    expect(sectionLines(msg)).toEqual(['www.example. 120 IN AAAA 2001:db8::10']);
    expect(a.zs.udpQueries).toBe(1);
    expect(b.zs.udpQueries).toBe(1);
  });

  it('fails over at once when the first upstream port is closed (ICMP unreachable)', async () => {
    const dead = await upstream();
    await dead.zs.close();
    const b = await upstream();
    const started = Date.now();
    const { msg } = await ask(chainWith(forwarder([dead.port, b.port], { timeoutMs: 2000 })), buildQuery('www.example', 'A'));
    expect(msg.answer).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('returns SERVFAIL when every upstream fails', async () => {
    const a = await upstream();
    a.zs.mode = 'servfail';
    const { msg } = await ask(chainWith(forwarder([a.port])), buildQuery('www.example', 'A'));
    expect(msg.rcode).toBe(Rcode.SERVFAIL);
  });

  it('retries over TCP when the UDP answer is truncated, then fits the client', async () => {
    const { zs, port } = await upstream();
    const h = chainWith(forwarder([port]));
    const tcp = await ask(h, buildQuery('big.example', 'A'), 'tcp');
    expect(tcp.msg.answer).toHaveLength(120);
    expect(tcp.msg.tc).toBe(false);
    expect(zs.tcpQueries).toBe(1);
    const udp = await ask(h, buildQuery('big.example', 'A'));
    expect(udp.wire.length).toBeLessThanOrEqual(512);
    expect(udp.msg.tc).toBe(true);
  });

  it('ignores responses whose question does not match (anti-spoofing) and times out', async () => {
    const { zs, port } = await upstream();
    const f = forwarder([port]);
    // Rewrite the echoed question type A -> AAAA: right id, right source, wrong question.
    zs.mangle = (w) => {
      const m = Buffer.from(w);
      const typeAt = 12 + 'www.example'.length + 2;
      m.writeUInt16BE(28, typeAt);
      return m;
    };
    const { msg } = await ask(chainWith(f), buildQuery('www.example', 'A'));
    expect(msg.rcode).toBe(Rcode.SERVFAIL);
  });

  it('bounds concurrency per upstream: beyond in-flight plus queue, queries fail at once', async () => {
    const { zs, port } = await upstream();
    zs.mode = 'drop';
    const f = forwarder([port], { maxInFlight: 2, maxQueue: 2, timeoutMs: 400 });
    const h = chainWith(f);
    const started = Date.now();
    const quick: number[] = [];
    const all = Array.from({ length: 10 }, (_, i) =>
      ask(h, buildQuery(`q${i}.example`, 'A')).then((r) => {
        if (Date.now() - started < 200) quick.push(i);
        return r.msg.rcode;
      }),
    );
    expect(await Promise.all(all)).toEqual(new Array(10).fill(Rcode.SERVFAIL));
    expect(quick).toHaveLength(6);
    expect(zs.udpQueries).toBeLessThanOrEqual(4);
  });

  it('counts upstream queries, errors and timeouts', async () => {
    const a = await upstream();
    const b = await upstream();
    a.zs.mode = 'drop';
    const prom = new PromRegistry();
    const metrics = createDnsMetrics(prom);
    const f = forwarder([a.port, b.port], { metrics });
    await ask(standardChain({ registry: new MemoryRegistry(), metrics, forward: forwardPlugin(f) }), buildQuery('www.example', 'A'));
    const text = await prom.metrics();
    expect(text).toContain(`shoal_dns_upstream_timeouts_total{upstream="127.0.0.1:${a.port}"} 1`);
    expect(text).toContain(`shoal_dns_upstream_queries_total{upstream="127.0.0.1:${b.port}",transport="udp"} 1`);
  });
});

describe('cache', () => {
  it('serves repeated questions from the cache, any spelling, with TTLs counting down', async () => {
    const { zs, port } = await upstream();
    let now = 1_000_000;
    const cache = new DnsCache({ now: () => now });
    const h = chainWith(forwarder([port]), cache);
    await ask(h, buildQuery('www.example', 'A'));
    now += 20_500;
    const { msg } = await ask(h, buildQuery('WWW.EXAMPLE', 'A', { id: 9 }));
    expect(zs.udpQueries).toBe(1);
    expect(msg.id).toBe(9);
    expect(sectionLines(msg)).toEqual(['WWW.EXAMPLE. 100 IN A 192.0.2.10']);
    now += 100_000;
    await ask(h, buildQuery('www.example', 'A'));
    expect(zs.udpQueries).toBe(2);
  });

  it('caches NXDOMAIN and NODATA for the SOA minimum', async () => {
    const { zs, port } = await upstream();
    let now = 0;
    const h = chainWith(forwarder([port]), new DnsCache({ now: () => now }));
    for (const [name, type] of [['gone.example', 'A'], ['short.example', 'AAAA']] as const) {
      await ask(h, buildQuery(name, type));
      now += 59_000;
      const hit = await ask(h, buildQuery(name, type));
      expect(hit.msg.authority[0]?.ttl).toBe(1);
      now += 2_000;
      await ask(h, buildQuery(name, type));
    }
    expect(zs.udpQueries).toBe(4);
  });

  it('does not cache negative answers without SOA', async () => {
    const { zs, port } = await upstream('www.example. 60 IN A 192.0.2.1');
    const h = chainWith(forwarder([port]), new DnsCache());
    await ask(h, buildQuery('gone.example', 'A'));
    await ask(h, buildQuery('gone.example', 'A'));
    expect(zs.udpQueries).toBe(2);
  });

  it('serves stale answers with a short TTL when every upstream fails', async () => {
    const { zs, port } = await upstream();
    let now = 0;
    const h = chainWith(forwarder([port]), new DnsCache({ now: () => now, staleTtl: 30, staleFor: 600 }));
    await ask(h, buildQuery('short.example', 'A'));
    now += 5_000;
    zs.mode = 'servfail';
    const stale = await ask(h, buildQuery('short.example', 'A'));
    expect(sectionLines(stale.msg)).toEqual(['short.example. 30 IN A 192.0.2.11']);
    now += 600_000;
    expect((await ask(h, buildQuery('short.example', 'A'))).msg.rcode).toBe(Rcode.SERVFAIL);
  });

  it('is bounded (LRU)', async () => {
    const { zs, port } = await upstream();
    const cache = new DnsCache({ maxEntries: 2 });
    const h = chainWith(forwarder([port]), cache);
    for (const n of ['www.example', 'short.example', 'www.example', 'big.example', 'www.example', 'short.example']) {
      await ask(h, buildQuery(n, 'A', { edns: 4096 }));
    }
    expect(cache.size).toBe(2);
    // www stayed (recently used); short was evicted by big and fetched again.
    expect(zs.udpQueries).toBe(4);
  });
});

describe('Forwarder.fromResolvConf', () => {
  it('uses the nameservers of the file, minus excluded addresses; a missing file has none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-resolv-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'resolv.conf'), 'nameserver 127.0.0.11\nnameserver 127.0.0.1\noptions timeout:30\n');
    const f = await Forwarder.fromResolvConf(join(dir, 'resolv.conf'), { exclude: ['127.0.0.11'] });
    closers.push(() => f.close());
    expect(f.size).toBe(1);
    expect((await Forwarder.fromResolvConf(join(dir, 'missing'))).size).toBe(0);
  });
});

describe('upstreams without EDNS', () => {
  it('asks again without OPT when the upstream answers FORMERR without OPT', async () => {
    const { zs, port } = await upstream();
    let sawOpt = 0;
    zs.mangle = (w) => {
      const m = Buffer.from(w);
      if (m.readUInt16BE(10) === 0) return m; // no OPT in the response: the plain retry
      sawOpt++;
      // An old server: FORMERR, question only, no OPT.
      const end = 12 + 'www.example'.length + 2 + 4;
      const out = Buffer.from(m.subarray(0, end));
      out.writeUInt16BE((out.readUInt16BE(2) & 0xfff0) | Rcode.FORMERR, 2);
      out.writeUInt32BE(0, 6);
      out.writeUInt16BE(0, 10);
      return out;
    };
    const { msg } = await ask(chainWith(forwarder([port])), buildQuery('www.example', 'A', { edns: 1232 }));
    expect(sawOpt).toBe(1);
    expect(sectionLines(msg)).toEqual(['www.example. 120 IN A 192.0.2.10']);
    expect(msg.edns?.udpPayloadSize).toBe(1232);
  });
});
