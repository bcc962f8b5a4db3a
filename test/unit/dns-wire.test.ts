import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildQuery } from '../../dns/testing/client.js';
import {
  addressKey,
  decodeMessage,
  encodeName,
  formatAddress,
  formatRecord,
  indexMessage,
  ipv6Bytes,
  isQueryError,
  MessageBuilder,
  nameKey,
  negativeTtl,
  parseQuery,
  parseZoneLine,
  rcodeResponse,
  reverseName,
  reverseNameKey,
  responseFlags,
  Rcode,
  RRType,
  sectionLines,
  skipName,
  truncateToFit,
  type Query,
} from '../../dns/wire/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const query = (msg: Buffer): Query => {
  const q = parseQuery(msg);
  if (isQueryError(q)) throw new Error(`unexpected parse error ${q.reason}`);
  return q;
};

describe('parseQuery', () => {
  it('parses a plain A query into a lowercase key, keeping the question bytes', () => {
    const msg = buildQuery('Web.App.', 'A', { id: 0xbeef });
    const q = query(msg);
    expect(q).toMatchObject({ id: 0xbeef, name: 'web.app', qtype: RRType.A, qclass: 1, ednsUdpSize: -1, opcode: 0 });
    expect(msg.subarray(12, q.questionEnd).toString('latin1')).toContain('Web');
    expect(q.questionEnd).toBe(msg.length);
  });

  it('reads EDNS payload size and version from the OPT record', () => {
    const q = query(buildQuery('web', 'AAAA', { edns: 4096 }));
    expect(q.edns).toBe(true);
    expect(q.ednsUdpSize).toBe(4096);
    expect(q.ednsVersion).toBe(0);
  });

  it('escapes dots and backslashes inside labels so keys cannot collide', () => {
    // One label "a.b" versus two labels "a", "b".
    const one = hex('0000 0100 0001 0000 0000 0000 03 612e62 00 0001 0001');
    const two = hex('0000 0100 0001 0000 0000 0000 01 61 01 62 00 0001 0001');
    expect(query(one).name).toBe('a\\.b');
    expect(query(two).name).toBe('a.b');
  });

  it('parses the root name', () => {
    expect(query(hex('0000 0100 0001 0000 0000 0000 00 0002 0001')).name).toBe('');
  });

  // Header: id 0, flags RD, counts; then the rest.
  const H = (qd: string, an = '0000', ns = '0000', ar = '0000'): string => `0000 0100 ${qd} ${an} ${ns} ${ar}`;
  const cases: Array<[string, string, string]> = [
    ['shorter than a header', '0000 0100 0001', 'short'],
    ['no question', `${H('0000')}`, 'qdcount'],
    ['two questions', `${H('0002')} 00 0001 0001 00 0001 0001`, 'qdcount'],
    ['name runs past the end', `${H('0001')} 05 6162`, 'truncated'],
    ['missing type and class', `${H('0001')} 01 61 00 0001`, 'truncated'],
    ['pointer in the question', `${H('0001')} c00c 0001 0001`, 'compressed_question'],
    ['reserved label type', `${H('0001')} 41 00 0001 0001`, 'bad_name'],
    ['name longer than 255 bytes', `${H('0001')} ${'3f' + '61'.repeat(63)}`.repeat(1) + ` ${('3f' + '61'.repeat(63)).repeat(4)} 00 0001 0001`, 'bad_name'],
    ['answer record overruns', `${H('0001', '0001')} 00 0001 0001 00 0001 0001 00000000 0010 01`, 'bad_record'],
    ['two OPT records', `${H('0001', '0000', '0000', '0002')} 00 0001 0001 00 0029 1000 00000000 0000 00 0029 1000 00000000 0000`, 'bad_opt'],
    ['OPT not owned by root', `${H('0001', '0000', '0000', '0001')} 00 0001 0001 01 61 00 0029 1000 00000000 0000`, 'bad_opt'],
    ['OPT options not tiling rdata', `${H('0001', '0000', '0000', '0001')} 00 0001 0001 00 0029 1000 00000000 0005 000a 0004 01`, 'bad_opt'],
  ];
  it.each(cases)('rejects %s', (_what, bytes, reason) => {
    const r = parseQuery(hex(bytes));
    expect(isQueryError(r)).toBe(true);
    if (isQueryError(r)) {
      expect(r.reason).toBe(reason);
      expect(r.rcode).toBe(Rcode.FORMERR);
    }
  });

  it('skips unusual answer/authority records and finds OPT after other additional records', () => {
    const msg = hex(`0000 0100 0001 0001 0000 0002 03 77 65 62 00 0001 0001
      c00c 0001 0001 00000005 0004 0a000001
      c00c 0010 0001 00000005 0002 0161
      00 0029 0800 00000000 0000`);
    expect(query(msg)).toMatchObject({ name: 'web', ednsUdpSize: 2048 });
  });

  it('never throws on arbitrary bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const r = parseQuery(Buffer.from(bytes));
        expect(r).toBeDefined();
      }),
      { numRuns: 20_000 },
    );
  });

  it('never throws on mutated valid queries (property)', () => {
    const base = buildQuery('tasks.web.app', 'A', { edns: 1232 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length + 8), fc.nat(255)), { maxLength: 6 }), fc.nat(base.length + 8), (edits, cut) => {
        const m = Buffer.alloc(base.length + 8);
        base.copy(m);
        for (const [at, v] of edits) m[at % m.length] = v;
        parseQuery(m.subarray(0, cut));
        indexMessage(m.subarray(0, cut));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('names', () => {
  it('skipName follows backward pointers and rejects forward pointers and loops', () => {
    // www.web. at 12, a pointer to it at 21, a pointer to its suffix "web." at 23.
    const m = hex('000000000000000000000000 03 777777 03 776562 00 c00c c010');
    expect(skipName(m, 12, m.length)).toBe(21);
    expect(skipName(m, 21, m.length)).toBe(23);
    expect(skipName(m, 23, m.length)).toBe(25);
    // A pointer into the middle of a label lands on a reserved label type.
    expect(skipName(hex('000000000000000000000000 03 777777 00 c00d'), 17, 19)).toBe(-1);
    // A pointer to itself.
    expect(skipName(hex('000000000000000000000000 c00c'), 12, 14)).toBe(-1);
    // A forward pointer.
    expect(skipName(hex('000000000000000000000000 c00e 00'), 12, 15)).toBe(-1);
  });

  it('normalises names to keys', () => {
    expect(nameKey('Web.App.')).toBe('web.app');
    expect(nameKey('.')).toBe('');
    expect(encodeName('a.b.')).toEqual(hex('0161 0162 00'));
    expect(() => encodeName(`${'a'.repeat(64)}.b`)).toThrow(RangeError);
  });
});

describe('addresses and reverse names', () => {
  it.each([
    ['10.0.1.2', '2.1.0.10.in-addr.arpa.'],
    ['fd00:1::2', '2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.'],
  ])('%s <-> %s', (address, name) => {
    expect(reverseName(address)).toBe(name);
    expect(reverseNameKey(nameKey(name))).toBe(addressKey(address));
  });

  it('rejects partial reverse names and formats IPv6 compactly', () => {
    expect(reverseNameKey('1.0.10.in-addr.arpa')).toBeUndefined();
    expect(reverseNameKey('300.1.0.10.in-addr.arpa')).toBeUndefined();
    expect(formatAddress(ipv6Bytes('fd00:0:0:0:0:0:0:2') as Uint8Array)).toBe('fd00::2');
    expect(addressKey('FD00::2')).toBe(addressKey('fd00:0::0:2'));
  });
});

describe('MessageBuilder', () => {
  it('compresses repeated names and keeps SRV targets uncompressed', () => {
    const b = new MessageBuilder().header(7, responseFlags(0x0100, 0, true)).question('web.app', RRType.SRV);
    b.add('answer', parseZoneLine('web.app. 5 IN SRV 0 0 80 web.app.'));
    b.add('additional', parseZoneLine('web.app. 5 IN A 10.0.1.2'));
    const w = b.finish();
    // Owner names are 2-byte pointers to the question at offset 12.
    expect(w.readUInt16BE(25)).toBe(0xc00c);
    // The SRV target is spelled out (9 bytes) after priority, weight, port.
    expect(w.subarray(43, 52)).toEqual(encodeName('web.app'));
    expect(sectionLines(decodeMessage(w)!, 'answer')).toEqual(['web.app. 5 IN SRV 0 0 80 web.app.']);
    expect(sectionLines(decodeMessage(w)!, 'additional')).toEqual(['web.app. 5 IN A 10.0.1.2']);
  });

  it('truncates at the limit, sets TC and still fits the OPT record', () => {
    const b = new MessageBuilder(100).header(1, responseFlags(0, 0, true)).question('x', RRType.A).opt(1232);
    let added = 0;
    for (let i = 0; i < 20; i++) if (b.add('answer', { name: 'x', ttl: 5, type: 'A', address: `10.0.0.${i}` })) added++;
    const w = b.finish();
    const d = decodeMessage(w)!;
    expect(w.length).toBeLessThanOrEqual(100);
    expect(d.tc).toBe(true);
    expect(d.answer).toHaveLength(added);
    expect(d.edns?.udpPayloadSize).toBe(1232);
  });
});

describe('indexMessage and responses', () => {
  const zoneResponse = (): Buffer => {
    const b = new MessageBuilder().header(9, responseFlags(0x0100, Rcode.NXDOMAIN, false)).question('nope.example', RRType.A).opt(1232);
    b.add('authority', parseZoneLine('example. 300 IN SOA ns.example. admin.example. 1 7200 900 1209600 60'));
    return b.finish();
  };

  it('indexes every record and finds the negative TTL from the SOA', () => {
    const w = zoneResponse();
    const ix = indexMessage(w)!;
    expect(ix.qname).toBe('nope.example');
    expect(ix.rcode).toBe(Rcode.NXDOMAIN);
    expect(ix.records.map((r) => r.type)).toEqual([RRType.SOA, RRType.OPT]);
    expect(ix.opt).toBe(1);
    expect(negativeTtl(w, ix)).toBe(60);
  });

  it('rejects counts that overrun the message and records with bad rdlength', () => {
    const w = zoneResponse();
    const more = Buffer.from(w);
    more.writeUInt16BE(5, 6);
    expect(indexMessage(more)).toBeUndefined();
    expect(indexMessage(w.subarray(0, w.length - 3))).toBeUndefined();
  });

  it('rcodeResponse echoes the question and OPT; BADVERS goes into the extended rcode', () => {
    const msg = buildQuery('web', 'A', { id: 42, edns: 1232 });
    const d = decodeMessage(rcodeResponse(msg, query(msg), Rcode.BADVERS, 1232)!)!;
    expect(d).toMatchObject({ id: 42, qr: true, rcode: Rcode.BADVERS, question: { name: 'web.', type: RRType.A } });
    const bare = decodeMessage(rcodeResponse(msg, undefined, Rcode.FORMERR, 1232)!)!;
    expect(bare).toMatchObject({ id: 42, rcode: Rcode.FORMERR, question: undefined });
    expect(rcodeResponse(Buffer.alloc(5), undefined, Rcode.FORMERR, 1232)).toBeUndefined();
  });

  it('truncateToFit keeps a prefix of whole answers plus OPT and sets TC', () => {
    const b = new MessageBuilder().header(1, responseFlags(0x0100, 0, true)).question('many', RRType.A).opt(1232);
    for (let i = 0; i < 60; i++) b.add('answer', { name: 'many', ttl: 5, type: 'A', address: `10.0.0.${i}` });
    const full = b.finish();
    const cut = truncateToFit(full, 512);
    const d = decodeMessage(cut)!;
    expect(cut.length).toBeLessThanOrEqual(512);
    expect(d.tc).toBe(true);
    expect(d.answer.length).toBe(Math.floor((512 - 12 - 10 - 11) / 16));
    expect(d.answer[0]).toMatchObject({ address: '10.0.0.0' });
    expect(d.edns).toBeDefined();
    expect(truncateToFit(full, 4096)).toBe(full);
  });
});

describe('zone lines', () => {
  it.each([
    'web.app. 5 IN A 10.0.1.2',
    'web.app. 5 IN AAAA fd00:1::2',
    '2.1.0.10.in-addr.arpa. 5 IN PTR web.app.',
    '_http._tcp.web. 5 IN SRV 0 0 80 web.app.',
    'mail.example. 60 IN MX 10 mx.example.',
    'txt.example. 60 IN TXT "hello world" "x"',
    'example. 300 IN SOA ns.example. admin.example. 1 7200 900 1209600 60',
    'alias.example. 60 IN CNAME web.app.',
    'odd.example. 60 IN TYPE65 \\# 3 010203',
  ])('round-trips %s through the wire', (line) => {
    const rr = parseZoneLine(line);
    const b = new MessageBuilder().header(1, responseFlags(0, 0, false)).question('q', RRType.ANY);
    b.add('answer', rr);
    expect(sectionLines(decodeMessage(b.finish())!)).toEqual([line]);
    expect(formatRecord(rr)).toBe(line);
  });

  it('rejects lines it does not understand', () => {
    expect(() => parseZoneLine('web.app. five IN A 10.0.0.1')).toThrow(SyntaxError);
    expect(() => parseZoneLine('web.app. 5 IN WAT x')).toThrow(SyntaxError);
  });
});
