/**
 * A resolver process for the fuzz test (`test/integration/dns-fuzz.test.ts`), run with
 * `node --import tsx dns/testing/fuzz-target.ts` under `child_process.fork`. It serves a
 * registry with the usual names plus a forwarder to an in-process upstream that mangles its
 * own responses (so the forwarder's parser is fuzzed too), and reports over IPC:
 * `{ port }` once listening, then `{ stats }` on every `'stats'` message.
 *
 * A crash shows as the child exiting; a hang as probes going unanswered.
 */
import { DnsServer } from '../server.js';
import { compose, scopeOf, standardChain, type Plugin } from '../chain.js';
import { MemoryRegistry } from '../memory-registry.js';
import { noopMetrics, type DnsMetrics } from '../metrics.js';
import { cachePlugin, DnsCache } from '../plugins/cache/index.js';
import { Forwarder, forwardPlugin } from '../plugins/forward/index.js';
import { ZoneServer } from './zone-server.js';

/** What the target reports. */
export interface FuzzStats {
  /** Messages that entered the chain (UDP and TCP). */
  received: number;
  /** Errors by kind as the server counted them (`handler` would mean a plugin threw). */
  errors: Record<string, number>;
  rssBytes: number;
}

const stats: FuzzStats = { received: 0, errors: {}, rssBytes: 0 };
const metrics: DnsMetrics = {
  ...noopMetrics,
  error(kind) {
    stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
  },
};

const registry = new MemoryRegistry();
registry.upsertNetwork({ id: 'n-app', name: 'app' });
registry.upsertService({
  id: 's-web', name: 'web', endpointMode: 'vip',
  networks: [{ network: 'n-app', aliases: ['www'], vip: { v4: '10.0.1.2', v6: 'fd00:1::2' } }],
  ports: [{ name: 'http', protocol: 'tcp', port: 80 }],
});
registry.upsertService({ id: 's-api', name: 'api', endpointMode: 'dnsrr', networks: [{ network: 'n-app' }], ports: [{ name: 'grpc', protocol: 'tcp', port: 9000 }] });
for (let i = 1; i <= 120; i++) {
  registry.upsertTask({ id: `t${i}`, serviceId: 's-api', serviceName: 'api', slot: i, healthy: i % 7 !== 0, networks: [{ network: 'n-app', v4: `10.0.3.${i}`, v6: `fd00:3::${i.toString(16)}` }] });
}

const upstream = new ZoneServer(`
test. 300 IN SOA ns.test. admin.test. 1 7200 900 1209600 30
ext.test. 60 IN A 192.0.2.1
ext.test. 60 IN AAAA 2001:db8::1
${Array.from({ length: 100 }, (_, i) => `big.test. 60 IN A 198.51.100.${i}`).join('\n')}
`);
let turn = 0;
upstream.mangle = (w) => {
  // Every fourth response is damaged in a different way; the rest are fine.
  const m = Buffer.from(w);
  switch (turn++ % 16) {
    case 1:
      return undefined;
    case 5:
      m[Math.floor(Math.random() * m.length)] = Math.floor(Math.random() * 256);
      return m;
    case 9:
      return m.subarray(0, Math.floor(Math.random() * m.length));
    case 13:
      m.writeUInt16BE(Math.floor(Math.random() * 65536), 6);
      return m;
    default:
      return m;
  }
};

const counting: Plugin = (next) => (req) => {
  stats.received++;
  return next(req);
};

async function main(): Promise<void> {
  const upstreamPort = await upstream.start();
  const forwarder = new Forwarder({ upstreams: [{ address: '127.0.0.1', port: upstreamPort }], timeoutMs: 200, maxInFlight: 64, maxQueue: 64 });
  const chain = standardChain({ registry, metrics, cache: cachePlugin(new DnsCache({ maxEntries: 1000 })), forward: forwardPlugin(forwarder) });
  const server = new DnsServer({
    address: '127.0.0.1',
    port: 0,
    handler: compose([counting], chain),
    scope: scopeOf(['n-app'], 'app'),
    metrics,
    maxTcpConnections: 64,
    tcpIdleTimeoutMs: 1000,
  });
  const { port } = await server.start();
  process.on('message', (m) => {
    if (m === 'stats') process.send?.({ stats: { ...stats, rssBytes: process.memoryUsage().rss } });
    if (m === 'stop') {
      void Promise.all([server.close(), upstream.close()]).then(() => {
        forwarder.close();
        process.exit(0);
      });
    }
  });
  // If the test process dies, do not linger.
  process.on('disconnect', () => process.exit(0));
  process.send?.({ port });
}

void main();
