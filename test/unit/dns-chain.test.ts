import { Registry as PromRegistry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  createDnsMetrics,
  DnsRequest,
  MemoryRegistry,
  scopeOf,
  standardChain,
  toWire,
  type Handler,
  type Plugin,
  type Scope,
} from '../../dns/index.js';
import { buildQuery } from '../../dns/testing/client.js';
import { decodeMessage, Flag, Rcode, reverseName, sectionLines, type DecodedMessage } from '../../dns/wire/index.js';

// Networks: app (default TTL 5), backend, other (TTL 30).
const APP = 'n-app';
const BACK = 'n-back';
const OTHER = 'n-other';

function fixture(): MemoryRegistry {
  const r = new MemoryRegistry();
  r.upsertNetwork({ id: APP, name: 'app' });
  r.upsertNetwork({ id: BACK, name: 'backend' });
  r.upsertNetwork({ id: OTHER, name: 'other', ttl: 30 });
  r.upsertService({
    id: 's-web', name: 'web', endpointMode: 'vip',
    networks: [
      { network: APP, aliases: ['www'], vip: { v4: '10.0.1.2', v6: 'fd00:1::2' } },
      { network: BACK, vip: { v4: '10.0.2.2' } },
    ],
    ports: [{ name: 'http', protocol: 'tcp', port: 80 }],
  });
  r.upsertTask({ id: 'tw1', serviceId: 's-web', serviceName: 'web', slot: 1, healthy: true, networks: [{ network: APP, v4: '10.0.1.21', aliases: ['web-primary'] }, { network: BACK, v4: '10.0.2.21' }] });
  r.upsertTask({ id: 'tw2', serviceId: 's-web', serviceName: 'web', slot: 2, healthy: true, networks: [{ network: APP, v4: '10.0.1.22' }] });
  r.upsertService({
    id: 's-api', name: 'api', endpointMode: 'dnsrr',
    networks: [{ network: APP }, { network: BACK }],
    ports: [{ name: 'grpc', protocol: 'tcp', port: 9000 }],
  });
  r.upsertTask({ id: 'ta1', serviceId: 's-api', serviceName: 'api', slot: 1, healthy: true, networks: [{ network: APP, v4: '10.0.1.11', v6: 'fd00:1::11' }, { network: BACK, v4: '10.0.2.11' }] });
  r.upsertTask({ id: 'ta2', serviceId: 's-api', serviceName: 'api', slot: 2, healthy: true, networks: [{ network: APP, v4: '10.0.1.12' }] });
  r.upsertTask({ id: 'ta3', serviceId: 's-api', serviceName: 'api', slot: 3, healthy: false, networks: [{ network: APP, v4: '10.0.1.13' }] });
  r.upsertService({ id: 's-db', name: 'db', endpointMode: 'vip', networks: [{ network: BACK, aliases: ['database'], vip: { v4: '10.0.2.3' } }] });
  r.upsertService({ id: 's-secret', name: 'secret', endpointMode: 'vip', networks: [{ network: OTHER, vip: { v4: '10.0.9.9' } }] });
  return r;
}

let registry: MemoryRegistry;
let forwarded: string[];
let chain: Handler;

/** Stands in for cache+forward: records what reached it and answers NXDOMAIN. */
const fakeForward: Plugin = () => (req) => {
  forwarded.push(req.query?.name ?? '?');
  return Rcode.NXDOMAIN;
};

beforeEach(() => {
  registry = fixture();
  forwarded = [];
  chain = standardChain({ registry, forward: fakeForward });
});

interface Asked {
  msg: DecodedMessage | undefined;
  wire: Buffer | undefined;
}

async function ask(scope: Scope, raw: Buffer, transport: 'udp' | 'tcp' = 'udp', handler = chain): Promise<Asked> {
  const req = new DnsRequest(raw, transport, '127.0.0.1', 5353, scope);
  const wire = toWire(req, await handler(req));
  return { wire, msg: wire ? decodeMessage(wire) : undefined };
}

const S = {
  app: scopeOf([APP], 'app'),
  back: scopeOf([BACK], 'backend'),
  appBack: scopeOf([APP, BACK], 'app'),
  backApp: scopeOf([BACK, APP], 'backend'),
  other: scopeOf([OTHER], 'other'),
};

const FWD = 'forwarded' as const;

// [scope, question name, type, expected answer as zone lines (any order) | FWD]
const table: Array<[keyof typeof S, string, string, string[] | typeof FWD]> = [
  // Service name in vip mode, both families, case preserved from the question.
  ['app', 'web', 'A', ['web. 5 IN A 10.0.1.2']],
  ['app', 'WeB', 'A', ['WeB. 5 IN A 10.0.1.2']],
  ['app', 'web.', 'AAAA', ['web. 5 IN AAAA fd00:1::2']],
  ['app', 'web', 'ANY', ['web. 5 IN A 10.0.1.2', 'web. 5 IN AAAA fd00:1::2']],
  // Exists but lacks the family or type: NOERROR, empty, not forwarded.
  ['back', 'web', 'AAAA', []],
  ['app', 'web', 'MX', []],
  // Network alias of a service.
  ['app', 'www', 'A', ['www. 5 IN A 10.0.1.2']],
  ['back', 'www', 'A', FWD],
  // dnsrr: healthy tasks only (ta3 is unhealthy).
  ['app', 'api', 'A', ['api. 5 IN A 10.0.1.11', 'api. 5 IN A 10.0.1.12']],
  ['app', 'api', 'AAAA', ['api. 5 IN AAAA fd00:1::11']],
  ['back', 'api', 'A', ['api. 5 IN A 10.0.2.11']],
  // tasks.<svc> for vip and dnsrr services, and tasks.<alias>.
  ['app', 'tasks.web', 'A', ['tasks.web. 5 IN A 10.0.1.21', 'tasks.web. 5 IN A 10.0.1.22']],
  ['app', 'tasks.www', 'A', ['tasks.www. 5 IN A 10.0.1.21', 'tasks.www. 5 IN A 10.0.1.22']],
  ['app', 'Tasks.API', 'A', ['Tasks.API. 5 IN A 10.0.1.11', 'Tasks.API. 5 IN A 10.0.1.12']],
  // <svc>.<network>: that network only, and only when it is in scope.
  ['app', 'web.app', 'A', ['web.app. 5 IN A 10.0.1.2']],
  ['backApp', 'web.app', 'A', ['web.app. 5 IN A 10.0.1.2']],
  ['appBack', 'web.backend', 'A', ['web.backend. 5 IN A 10.0.2.2']],
  ['app', 'web.backend', 'A', FWD],
  ['app', 'tasks.api.app', 'A', ['tasks.api.app. 5 IN A 10.0.1.11', 'tasks.api.app. 5 IN A 10.0.1.12']],
  // First network in order answers; never merged.
  ['backApp', 'web', 'A', ['web. 5 IN A 10.0.2.2']],
  ['appBack', 'web', 'A', ['web. 5 IN A 10.0.1.2']],
  ['backApp', 'web', 'AAAA', []],
  // Task names, long and short, and task aliases.
  ['app', 'web.1.tw1', 'A', ['web.1.tw1. 5 IN A 10.0.1.21']],
  ['app', 'web.1', 'A', ['web.1. 5 IN A 10.0.1.21']],
  ['back', 'web.1', 'A', ['web.1. 5 IN A 10.0.2.21']],
  ['app', 'web.2.tw2.app', 'A', ['web.2.tw2.app. 5 IN A 10.0.1.22']],
  ['app', 'web-primary', 'A', ['web-primary. 5 IN A 10.0.1.21']],
  ['app', 'api.3', 'A', ['api.3. 5 IN A 10.0.1.13']],
  // PTR for VIPs and task addresses, v4 and v6, scoped.
  ['app', reverseName('10.0.1.2') as string, 'PTR', ['2.1.0.10.in-addr.arpa. 5 IN PTR web.app.']],
  ['app', reverseName('10.0.1.21') as string, 'PTR', ['21.1.0.10.in-addr.arpa. 5 IN PTR web.1.tw1.app.']],
  ['app', reverseName('fd00:1::11') as string, 'PTR', [`${reverseName('fd00:1::11') as string} 5 IN PTR api.1.ta1.app.`]],
  ['app', reverseName('10.0.2.3') as string, 'PTR', FWD],
  ['back', reverseName('10.0.2.3') as string, 'PTR', ['3.2.0.10.in-addr.arpa. 5 IN PTR db.backend.']],
  ['app', reverseName('10.0.1.99') as string, 'PTR', FWD],
  // SRV, vip (target is the service) and dnsrr (one per healthy task).
  ['app', '_http._tcp.web', 'SRV', ['_http._tcp.web. 5 IN SRV 0 0 80 web.app.']],
  ['app', '_http._tcp.www', 'SRV', ['_http._tcp.www. 5 IN SRV 0 0 80 web.app.']],
  ['app', '_grpc._tcp.api', 'SRV', ['_grpc._tcp.api. 5 IN SRV 0 0 9000 api.1.ta1.app.', '_grpc._tcp.api. 5 IN SRV 0 0 9000 api.2.ta2.app.']],
  ['app', '_http._tcp.web', 'A', []],
  ['app', '_http._udp.web', 'SRV', FWD],
  // Network B's names are never answered to a query scoped to A.
  ['app', 'db', 'A', FWD],
  ['app', 'database', 'A', FWD],
  ['app', 'tasks.db', 'A', FWD],
  ['back', 'db', 'A', ['db. 5 IN A 10.0.2.3']],
  ['back', 'database', 'A', ['database. 5 IN A 10.0.2.3']],
  ['appBack', 'secret', 'A', FWD],
  ['appBack', 'secret.other', 'A', FWD],
  // TTL is per network.
  ['other', 'secret', 'A', ['secret. 30 IN A 10.0.9.9']],
  // Names nobody owns.
  ['app', 'example.com', 'A', FWD],
  ['app', 'tasks', 'A', FWD],
  ['app', '', 'NS', FWD],
];

describe('registry answers through the standard chain', () => {
  it.each(table)('[%s] %s %s', async (scope, name, type, want) => {
    const { msg } = await ask(S[scope], buildQuery(name, type, { id: 77 }));
    expect(msg).toBeDefined();
    if (!msg) return;
    expect(msg.id).toBe(77);
    expect(msg.question?.name.toLowerCase()).toBe(`${name.replace(/\.$/, '')}.`.toLowerCase().replace(/^\.$/, '.'));
    if (want === FWD) {
      expect(msg.rcode).toBe(Rcode.NXDOMAIN);
      expect(forwarded).toHaveLength(1);
      return;
    }
    expect(forwarded).toEqual([]);
    expect(msg.rcode).toBe(Rcode.NOERROR);
    expect(msg.aa).toBe(true);
    expect(msg.ra).toBe(true);
    expect(sectionLines(msg).sort()).toEqual([...want].sort());
  });

  it('adds A/AAAA glue for SRV targets', async () => {
    const { msg } = await ask(S.app, buildQuery('_http._tcp.web', 'SRV'));
    expect(sectionLines(msg!, 'additional').sort()).toEqual(['web.app. 5 IN A 10.0.1.2', 'web.app. 5 IN AAAA fd00:1::2']);
  });

  it('echoes EDNS with the server payload size only when the client used EDNS', async () => {
    const withEdns = await ask(S.app, buildQuery('web', 'A', { edns: 4096 }));
    expect(withEdns.msg?.edns?.udpPayloadSize).toBe(1232);
    const without = await ask(S.app, buildQuery('web', 'A'));
    expect(without.msg?.edns).toBeUndefined();
  });

  it('shuffles dnsrr answers between responses', async () => {
    for (let i = 0; i < 20; i++) {
      registry.upsertTask({ id: `tx${i}`, serviceId: 's-api', serviceName: 'api', slot: 10 + i, healthy: true, networks: [{ network: APP, v4: `10.0.1.${100 + i}` }] });
    }
    const firsts = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const { msg } = await ask(S.app, buildQuery('api', 'A'));
      expect(msg?.answer).toHaveLength(22);
      firsts.add(sectionLines(msg!)[0] ?? '');
    }
    expect(firsts.size).toBeGreaterThan(1);
  });

  it('truncates a big dnsrr answer to 512 bytes without EDNS, to the EDNS size with it, and not over TCP', async () => {
    for (let i = 0; i < 150; i++) {
      registry.upsertTask({ id: `tb${i}`, serviceId: 's-api', serviceName: 'api', slot: 10 + i, healthy: true, networks: [{ network: APP, v4: `10.0.3.${i}` }] });
    }
    const plain = await ask(S.app, buildQuery('api', 'A'));
    expect(plain.wire!.length).toBeLessThanOrEqual(512);
    expect(plain.msg!.tc).toBe(true);
    expect(plain.msg!.answer.length).toBe(Math.floor((512 - 12 - 8) / 16));
    const edns = await ask(S.app, buildQuery('api', 'A', { edns: 4096 }));
    expect(edns.wire!.length).toBeLessThanOrEqual(1232);
    expect(edns.msg!.tc).toBe(true);
    const tcp = await ask(S.app, buildQuery('api', 'A'), 'tcp');
    expect(tcp.msg!.tc).toBe(false);
    expect(tcp.msg!.answer).toHaveLength(152);
  });

  it('sees registry changes at once (prepared answers are invalidated)', async () => {
    expect(sectionLines((await ask(S.app, buildQuery('web', 'A'))).msg!)).toEqual(['web. 5 IN A 10.0.1.2']);
    registry.upsertService({ id: 's-web', name: 'web', endpointMode: 'vip', networks: [{ network: APP, vip: { v4: '10.0.1.200' } }] });
    expect(sectionLines((await ask(S.app, buildQuery('web', 'A'))).msg!)).toEqual(['web. 5 IN A 10.0.1.200']);
    registry.removeTask('ta1');
    expect(sectionLines((await ask(S.app, buildQuery('api', 'A'))).msg!)).toEqual(['api. 5 IN A 10.0.1.12']);
    registry.upsertTask({ id: 'ta2', serviceId: 's-api', serviceName: 'api', slot: 2, healthy: false, networks: [{ network: APP, v4: '10.0.1.12' }] });
    const empty = (await ask(S.app, buildQuery('api', 'A'))).msg!;
    expect(empty.rcode).toBe(Rcode.NOERROR);
    expect(empty.answer).toEqual([]);
    registry.removeService('s-api');
    expect((await ask(S.app, buildQuery('api', 'A'))).msg!.rcode).toBe(Rcode.NXDOMAIN);
    registry.upsertNetwork({ id: APP, name: 'frontend' });
    expect(sectionLines((await ask(S.app, buildQuery('web.frontend', 'A'))).msg!)).toEqual(['web.frontend. 5 IN A 10.0.1.200']);
    expect((await ask(S.app, buildQuery('web.app', 'A'))).msg!.rcode).toBe(Rcode.NXDOMAIN);
  });
});

describe('MemoryRegistry bookkeeping', () => {
  it('does not bump the version for an identical upsert or an unknown remove', () => {
    const v = registry.version;
    registry.upsertNetwork({ id: APP, name: 'app' });
    registry.upsertService({ id: 's-db', name: 'db', endpointMode: 'vip', networks: [{ network: BACK, aliases: ['database'], vip: { v4: '10.0.2.3' } }] });
    registry.removeTask('nope');
    registry.removeService('nope');
    expect(registry.version).toBe(v);
  });

  it('resolves a task that arrived before its service once the service arrives', () => {
    const r = new MemoryRegistry();
    r.upsertTask({ id: 't1', serviceId: 's1', serviceName: 'late', slot: 1, healthy: true, networks: [{ network: APP, v4: '10.0.5.1' }] });
    expect(r.lookup([APP], 'tasks.late', 1)).toBeUndefined();
    r.upsertService({ id: 's1', name: 'late', endpointMode: 'dnsrr', networks: [{ network: APP }] });
    expect(r.lookup([APP], 'tasks.late', 1)?.answer).toEqual([{ name: 'tasks.late', ttl: 5, type: 'A', address: '10.0.5.1' }]);
  });

  it('keeps a shared alias while another owner still has it', () => {
    registry.upsertService({ id: 's-web2', name: 'web2', endpointMode: 'vip', networks: [{ network: APP, aliases: ['www'], vip: { v4: '10.0.1.3' } }] });
    expect(registry.lookup([APP], 'www', 1)?.answer.map((a) => (a.type === 'A' ? a.address : '')).sort()).toEqual(['10.0.1.2', '10.0.1.3']);
    registry.removeService('s-web');
    expect(registry.lookup([APP], 'www', 1)?.answer).toEqual([{ name: 'www', ttl: 5, type: 'A', address: '10.0.1.3' }]);
  });
});

describe('hygiene', () => {
  const raw = (mutate: (b: Buffer) => void, base = buildQuery('web', 'A')): Buffer => {
    const b = Buffer.from(base);
    mutate(b);
    return b;
  };
  const cases: Array<[string, Buffer, number | 'dropped']> = [
    ['a response (QR=1) is dropped', raw((b) => (b[2] = (b[2] as number) | 0x80)), 'dropped'],
    ['a header fragment is dropped', Buffer.from([1, 2, 3]), 'dropped'],
    ['opcode NOTIFY gets NOTIMP', raw((b) => (b[2] = ((b[2] as number) & 0x87) | (4 << 3))), Rcode.NOTIMP],
    ['opcode UPDATE gets NOTIMP', raw((b) => (b[2] = ((b[2] as number) & 0x87) | (5 << 3))), Rcode.NOTIMP],
    ['qdcount 0 gets FORMERR', raw((b) => b.writeUInt16BE(0, 4)), Rcode.FORMERR],
    ['qdcount 2 gets FORMERR', raw((b) => b.writeUInt16BE(2, 4)), Rcode.FORMERR],
    ['a truncated question gets FORMERR', buildQuery('web', 'A').subarray(0, 16), Rcode.FORMERR],
    ['an oversized packet gets FORMERR', Buffer.concat([buildQuery('web', 'A'), Buffer.alloc(5000)]), Rcode.FORMERR],
    ['AXFR is refused', buildQuery('web', 'AXFR'), Rcode.REFUSED],
    ['class CH is refused', buildQuery('version.bind', 'TXT', { qclass: 3 }), Rcode.REFUSED],
    ['OPT as a question type is FORMERR', buildQuery('web', 41), Rcode.FORMERR],
    ['EDNS version 1 gets BADVERS', raw((b) => (b[b.length - 5] = 1), buildQuery('web', 'A', { edns: 1232 })), Rcode.BADVERS],
  ];
  it.each(cases)('%s', async (_what, msg, want) => {
    const { msg: res } = await ask(S.app, msg);
    if (want === 'dropped') {
      expect(res).toBeUndefined();
    } else {
      expect(res?.rcode).toBe(want);
      expect(res?.qr).toBe(true);
    }
    expect(forwarded).toEqual([]);
  });
});

describe('metrics', () => {
  it('counts queries by network, type and rcode, records served and rejections', async () => {
    const prom = new PromRegistry();
    const metrics = createDnsMetrics(prom);
    const handler = standardChain({ registry, metrics, forward: fakeForward });
    await ask(S.app, buildQuery('web', 'A'), 'udp', handler);
    await ask(S.app, buildQuery('web', 'A'), 'udp', handler);
    await ask(S.app, buildQuery('api', 'A'), 'udp', handler);
    await ask(S.app, buildQuery('nope.example', 'AAAA'), 'udp', handler);
    await ask(S.app, Buffer.from(buildQuery('web', 'A')).fill(0xff, 2, 3), 'udp', handler);
    const text = await prom.metrics();
    expect(text).toContain('shoal_dns_queries_total{network="app",type="A",rcode="NOERROR"} 3');
    expect(text).toContain('shoal_dns_queries_total{network="app",type="AAAA",rcode="NXDOMAIN"} 1');
    expect(text).toContain('shoal_dns_records_served_total{network="app",type="A"} 4');
    expect(text).toContain('shoal_dns_rejected_queries_total{reason="response"} 1');
    expect(text).toMatch(/shoal_dns_request_duration_seconds_count 4/);
    expect(text).toContain('shoal_dns_request_duration_seconds_bucket{le="+Inf"} 4');
    expect(text).toContain('# TYPE shoal_dns_request_duration_seconds histogram');
    // Counters keep their totals across scrapes.
    expect(await prom.metrics()).toContain('shoal_dns_queries_total{network="app",type="A",rcode="NOERROR"} 3');
  });
});

describe('chain order', () => {
  it('answers RD and CD as asked, with RA set', async () => {
    const { msg } = await ask(S.app, buildQuery('web', 'A', { rd: false }));
    expect(msg?.rd).toBe(false);
    expect((msg?.flags ?? 0) & Flag.RA).toBe(Flag.RA);
  });

  it('never lets cache or forward see names the registry owns, even names that exist without data', async () => {
    await ask(S.app, buildQuery('web', 'MX'));
    await ask(S.app, buildQuery('api', 'AAAA'));
    expect(forwarded).toEqual([]);
  });
});

describe('odd registry input', () => {
  it('skips a record it cannot encode instead of failing the answer', async () => {
    registry.upsertTask({ id: 'x'.repeat(70), serviceId: 's-api', serviceName: 'api', slot: 9, healthy: true, networks: [{ network: APP, v4: '10.0.1.19' }] });
    const { msg } = await ask(S.app, buildQuery('_grpc._tcp.api', 'SRV'));
    expect(msg?.rcode).toBe(Rcode.NOERROR);
    expect(sectionLines(msg!)).toHaveLength(2);
    expect(sectionLines((await ask(S.app, buildQuery('api', 'A'))).msg!)).toHaveLength(3);
  });
});
