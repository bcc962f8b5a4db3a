/**
 * Presentation format: zone lines (`web.app. 5 IN A 10.0.1.2`) to records and back, and a
 * full decoder of messages into records. For tests, fixtures, logs and the fake upstream;
 * nothing here is on a per-query path.
 */
import { RRClass, RRType, typeName, typeOf } from './constants.js';
import { formatAddress } from './ip.js';
import { indexMessage, type RecordIndex } from './message.js';
import { readNamePresentation, skipName } from './name.js';
import type { ResourceRecord } from './records.js';

const CLASS_NAMES: Record<string, number> = { IN: RRClass.IN, CH: RRClass.CH, ANY: RRClass.ANY };

/** Splits a zone line into fields, keeping `"quoted strings"` whole (quotes removed). */
function fields(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] as string));
  return out;
}

/**
 * Parses one zone line: `owner ttl [class] type rdata...`. Throws a `SyntaxError` naming the
 * line when it is not understood (fixtures are code: fail loudly).
 */
export function parseZoneLine(line: string): ResourceRecord {
  const f = fields(line.replace(/;.*$/, '').trim());
  const bad = (why: string): SyntaxError => new SyntaxError(`zone line '${line}': ${why}`);
  const [name, ttlText] = f;
  if (name === undefined || ttlText === undefined || !/^\d+$/.test(ttlText)) throw bad('want "owner ttl [class] type rdata"');
  let i = 2;
  let cls: number = RRClass.IN;
  const maybeClass = CLASS_NAMES[(f[i] ?? '').toUpperCase()];
  if (maybeClass !== undefined) {
    cls = maybeClass;
    i++;
  }
  const type = (f[i] ?? '').toUpperCase();
  const rd = f.slice(i + 1);
  const base = { name, ttl: Number(ttlText), ...(cls !== RRClass.IN ? { class: cls } : {}) };
  const num = (s: string | undefined): number => {
    if (s === undefined || !/^\d+$/.test(s)) throw bad(`expected a number, got '${s ?? ''}'`);
    return Number(s);
  };
  const str = (s: string | undefined): string => {
    if (s === undefined) throw bad('missing rdata');
    return s;
  };
  switch (type) {
    case 'A':
    case 'AAAA':
      return { ...base, type, address: str(rd[0]) };
    case 'PTR':
    case 'CNAME':
    case 'NS':
      return { ...base, type, target: str(rd[0]) };
    case 'SRV':
      return { ...base, type, priority: num(rd[0]), weight: num(rd[1]), port: num(rd[2]), target: str(rd[3]) };
    case 'MX':
      return { ...base, type, preference: num(rd[0]), exchange: str(rd[1]) };
    case 'TXT':
      return { ...base, type, text: rd };
    case 'SOA':
      return {
        ...base, type, mname: str(rd[0]), rname: str(rd[1]),
        serial: num(rd[2]), refresh: num(rd[3]), retry: num(rd[4]), expire: num(rd[5]), minimum: num(rd[6]),
      };
    default: {
      const rrtype = typeOf(type);
      if (rrtype === undefined || rd[0] !== '\\#') throw bad(`unsupported type '${type}' (use TYPEnnn \\# len hex)`);
      const hex = rd.slice(2).join('');
      const rdata = Buffer.from(hex, 'hex');
      if (rdata.length !== num(rd[1])) throw bad('rdata length does not match');
      return { ...base, type: 'RAW', rrtype, rdata };
    }
  }
}

/** Parses several zone lines, ignoring blank lines and `;` comments. */
export function parseZone(text: string): ResourceRecord[] {
  return text
    .split('\n')
    .map((l) => l.replace(/;.*$/, '').trim())
    .filter((l) => l !== '')
    .map(parseZoneLine);
}

const fq = (n: string): string => (n.endsWith('.') ? n : `${n}.`);

/** Formats a record as a zone line (names fully qualified). */
export function formatRecord(rr: ResourceRecord): string {
  const cls = rr.class === undefined || rr.class === RRClass.IN ? 'IN' : rr.class === RRClass.CH ? 'CH' : `CLASS${rr.class}`;
  const head = `${fq(rr.name)} ${rr.ttl} ${cls}`;
  switch (rr.type) {
    case 'A':
    case 'AAAA':
      return `${head} ${rr.type} ${rr.address}`;
    case 'PTR':
    case 'CNAME':
    case 'NS':
      return `${head} ${rr.type} ${fq(rr.target)}`;
    case 'SRV':
      return `${head} SRV ${rr.priority} ${rr.weight} ${rr.port} ${fq(rr.target)}`;
    case 'MX':
      return `${head} MX ${rr.preference} ${fq(rr.exchange)}`;
    case 'TXT':
      return `${head} TXT ${rr.text.map((t) => JSON.stringify(t)).join(' ')}`;
    case 'SOA':
      return `${head} SOA ${fq(rr.mname)} ${fq(rr.rname)} ${rr.serial} ${rr.refresh} ${rr.retry} ${rr.expire} ${rr.minimum}`;
    case 'RAW':
      return `${head} ${typeName(rr.rrtype)} \\# ${rr.rdata.length} ${Buffer.from(rr.rdata).toString('hex')}`;
  }
}

/** A message decoded for humans and tests. */
export interface DecodedMessage {
  id: number;
  flags: number;
  /** Full response code (header low bits plus the OPT extended bits). */
  rcode: number;
  qr: boolean;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  question: { name: string; type: number; class: number } | undefined;
  answer: ResourceRecord[];
  authority: ResourceRecord[];
  /** Additional records other than OPT. */
  additional: ResourceRecord[];
  edns: { udpPayloadSize: number; version: number; do: boolean } | undefined;
}

/** Decodes a whole message; undefined when it is malformed. */
export function decodeMessage(msg: Buffer): DecodedMessage | undefined {
  const ix = indexMessage(msg);
  if (!ix) return undefined;
  const sections: ResourceRecord[][] = [[], [], []];
  let edns: DecodedMessage['edns'];
  let ext = 0;
  for (const r of ix.records) {
    if (r.type === RRType.OPT) {
      ext = msg[r.ttlOffset] as number;
      edns = { udpPayloadSize: msg.readUInt16BE(r.ttlOffset - 2), version: msg[r.ttlOffset + 1] as number, do: ((msg[r.ttlOffset + 2] as number) & 0x80) !== 0 };
      continue;
    }
    const rr = decodeRecord(msg, r);
    if (!rr) return undefined;
    sections[r.section]?.push(rr);
  }
  let question: DecodedMessage['question'];
  if (ix.qdcount === 1) {
    question = { name: readNamePresentation(msg, 12, msg.length) ?? '.', type: ix.qtype, class: ix.qclass };
  }
  const f = ix.flags;
  return {
    id: ix.id,
    flags: f,
    rcode: (ext << 4) | ix.rcode,
    qr: (f & 0x8000) !== 0,
    aa: (f & 0x0400) !== 0,
    tc: (f & 0x0200) !== 0,
    rd: (f & 0x0100) !== 0,
    ra: (f & 0x0080) !== 0,
    question,
    answer: sections[0] ?? [],
    authority: sections[1] ?? [],
    additional: sections[2] ?? [],
    edns,
  };
}

function decodeRecord(msg: Buffer, r: RecordIndex): ResourceRecord | undefined {
  const name = readNamePresentation(msg, r.start, msg.length);
  if (name === undefined) return undefined;
  const cls = msg.readUInt16BE(r.ttlOffset - 2);
  const base = { name, ttl: r.ttl, ...(cls !== RRClass.IN ? { class: cls } : {}) };
  const len = r.end - r.rdata;
  const nameAt = (o: number): string | undefined => (skipName(msg, o, r.end) < 0 ? undefined : readNamePresentation(msg, o, r.end));
  const raw = (): ResourceRecord => ({ ...base, type: 'RAW', rrtype: r.type, rdata: Uint8Array.from(msg.subarray(r.rdata, r.end)) });
  switch (r.type) {
    case RRType.A:
      return len === 4 ? { ...base, type: 'A', address: formatAddress(msg.subarray(r.rdata, r.end)) } : raw();
    case RRType.AAAA:
      return len === 16 ? { ...base, type: 'AAAA', address: formatAddress(msg.subarray(r.rdata, r.end)) } : raw();
    case RRType.PTR:
    case RRType.CNAME:
    case RRType.NS: {
      const target = nameAt(r.rdata);
      const type = r.type === RRType.PTR ? 'PTR' : r.type === RRType.CNAME ? 'CNAME' : 'NS';
      return target === undefined ? raw() : { ...base, type, target };
    }
    case RRType.SRV: {
      const target = len > 6 ? nameAt(r.rdata + 6) : undefined;
      if (target === undefined) return raw();
      return { ...base, type: 'SRV', priority: msg.readUInt16BE(r.rdata), weight: msg.readUInt16BE(r.rdata + 2), port: msg.readUInt16BE(r.rdata + 4), target };
    }
    case RRType.MX: {
      const exchange = len > 2 ? nameAt(r.rdata + 2) : undefined;
      return exchange === undefined ? raw() : { ...base, type: 'MX', preference: msg.readUInt16BE(r.rdata), exchange };
    }
    case RRType.SOA: {
      const m = skipName(msg, r.rdata, r.end);
      const n = m < 0 ? -1 : skipName(msg, m, r.end);
      if (n < 0 || n + 20 !== r.end) return raw();
      const u = (i: number): number => msg.readUInt32BE(n + i * 4);
      return {
        ...base, type: 'SOA', mname: nameAt(r.rdata) ?? '.', rname: nameAt(m) ?? '.',
        serial: u(0), refresh: u(1), retry: u(2), expire: u(3), minimum: u(4),
      };
    }
    case RRType.TXT: {
      const text: string[] = [];
      for (let p = r.rdata; p < r.end; ) {
        const l = msg[p] as number;
        if (p + 1 + l > r.end) return raw();
        text.push(msg.toString('latin1', p + 1, p + 1 + l));
        p += 1 + l;
      }
      return { ...base, type: 'TXT', text };
    }
    default:
      return raw();
  }
}

/** Zone lines of a message's answer (or another) section, for compact assertions. */
export function sectionLines(msg: DecodedMessage, section: 'answer' | 'authority' | 'additional' = 'answer'): string[] {
  return msg[section].map(formatRecord);
}
