/**
 * An index over a complete message (typically an upstream's response): where each record
 * starts and ends, its type and where its TTL lives, so the forwarder and the cache can
 * rewrite ids, TTLs and OPT without decoding names. Validation is complete (every name, every
 * rdlength, counts match the bytes), so an indexed message is safe to slice and copy.
 */
import { HEADER_SIZE, RRType } from './constants.js';
import { readNameKey, skipName } from './name.js';

/** One record's position in the message. */
export interface RecordIndex {
  /** 0 answer, 1 authority, 2 additional. */
  section: 0 | 1 | 2;
  start: number;
  type: number;
  /** Offset of the 32-bit TTL. */
  ttlOffset: number;
  ttl: number;
  rdata: number;
  end: number;
}

/** A validated message layout. */
export interface MessageIndex {
  id: number;
  flags: number;
  /** Low 4 bits of the rcode (the header's). */
  rcode: number;
  qdcount: number;
  /** Question name key ('' when there is no question). */
  qname: string;
  qtype: number;
  qclass: number;
  /** Offset after the question section. */
  questionEnd: number;
  /** Offset after the last record that the counts announce (trailing bytes are ignored). */
  end: number;
  records: RecordIndex[];
  /** Index into {@link records} of the OPT record, or -1. */
  opt: number;
}

/** Indexes `msg`; undefined when it is malformed in any way or has more than one question. */
export function indexMessage(msg: Buffer): MessageIndex | undefined {
  const end = msg.length;
  if (end < HEADER_SIZE) return undefined;
  const u16 = (o: number): number => msg.readUInt16BE(o);
  const qdcount = u16(4);
  if (qdcount > 1) return undefined;
  let p = HEADER_SIZE;
  let qname = '';
  let qtype = 0;
  let qclass = 0;
  if (qdcount === 1) {
    const nameEnd = skipName(msg, p, end);
    if (nameEnd < 0 || nameEnd + 4 > end) return undefined;
    qname = readNameKey(msg, p, end) ?? '';
    qtype = u16(nameEnd);
    qclass = u16(nameEnd + 2);
    p = nameEnd + 4;
  }
  const questionEnd = p;
  const counts = [u16(6), u16(8), u16(10)] as const;
  const records: RecordIndex[] = [];
  let opt = -1;
  for (let s = 0; s < 3; s++) {
    for (let i = counts[s] as number; i > 0; i--) {
      const start = p;
      const nameEnd = skipName(msg, p, end);
      if (nameEnd < 0 || nameEnd + 10 > end) return undefined;
      const type = u16(nameEnd);
      const rdlen = u16(nameEnd + 8);
      const rdata = nameEnd + 10;
      if (rdata + rdlen > end) return undefined;
      if (type === RRType.OPT) {
        if (s !== 2 || opt >= 0) return undefined;
        opt = records.length;
      }
      const ttl = msg.readUInt32BE(nameEnd + 4);
      records.push({ section: s as 0 | 1 | 2, start, type, ttlOffset: nameEnd + 4, ttl, rdata, end: rdata + rdlen });
      p = rdata + rdlen;
    }
  }
  return {
    id: u16(0),
    flags: u16(2),
    rcode: (msg[3] as number) & 0xf,
    qdcount,
    qname,
    qtype,
    qclass,
    questionEnd,
    end: p,
    records,
    opt,
  };
}

/**
 * The negative-caching TTL of a response (RFC 2308 5): min(SOA TTL, SOA MINIMUM) of the first
 * SOA in the authority section, or undefined when there is none.
 */
export function negativeTtl(msg: Buffer, index: MessageIndex): number | undefined {
  for (const r of index.records) {
    if (r.section !== 1 || r.type !== RRType.SOA) continue;
    const m = skipName(msg, r.rdata, r.end);
    const n = m < 0 ? -1 : skipName(msg, m, r.end);
    if (n < 0 || n + 20 > r.end) return undefined;
    const minimum = msg.readUInt32BE(n + 16);
    return Math.min(r.ttl, minimum);
  }
  return undefined;
}
