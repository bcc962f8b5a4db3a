/**
 * Building messages: header, question, records with name compression, OPT, and truncation.
 *
 * Used where building cost does not matter per query (answers prepared once per registry
 * version, rcode-less test fixtures, the fake upstream). The per-query paths copy prepared
 * bytes instead (see `dns/plugins/registry/prepared.ts`).
 */
import { Flag, HEADER_SIZE, OPT_RR_SIZE, RRClass, RRType } from './constants.js';
import { ipv4Bytes, ipv6Bytes } from './ip.js';
import { NameCompressor, nameLabels } from './name.js';
import type { ResourceRecord } from './records.js';

/** Where a record goes. */
export type Section = 'answer' | 'authority' | 'additional';

const SECTION_INDEX: Record<Section, number> = { answer: 0, authority: 1, additional: 2 };

/**
 * Writes one message. Call order: {@link header}, then {@link question} or
 * {@link rawQuestion}, then records in section order, then {@link finish}. With a
 * `limit`, a record that does not fit is left out: in the answer or authority section that
 * sets TC and closes the section; in the additional section it is just dropped (RFC 2181 9).
 */
export class MessageBuilder {
  private buf: Buffer;
  private p = HEADER_SIZE;
  private readonly counts = [0, 0, 0];
  private section = 0;
  private closed = [false, false, false];
  private reserved = 0;
  private optBytes: Buffer | undefined;
  private readonly names = new NameCompressor();
  /** True once a record was left out of the answer or authority section. */
  truncated = false;

  /** @param limit largest message to produce (bytes, including a reserved OPT). */
  constructor(private readonly limit = 65535) {
    this.buf = Buffer.alloc(Math.min(limit, 512));
  }

  /** Sets id and flags (QR, opcode, AA, TC, RD, RA, AD, CD, rcode); counts are filled in by {@link finish}. */
  header(id: number, flags: number): this {
    this.buf.writeUInt16BE(id & 0xffff, 0);
    this.buf.writeUInt16BE(flags & 0xffff, 2);
    return this;
  }

  /** Writes the question from text; the name is remembered for compression. */
  question(name: string, qtype: number, qclass: number = RRClass.IN): this {
    const start = this.p;
    this.p = this.names.write(this.ensure(start + 260), start, this.limit, name);
    if (this.p < 0) throw new RangeError('question does not fit the message limit');
    this.ensure(this.p + 4);
    this.buf.writeUInt16BE(qtype, this.p);
    this.buf.writeUInt16BE(qclass, this.p + 2);
    this.p += 4;
    this.buf.writeUInt16BE(1, 4);
    return this;
  }

  /** Copies a question verbatim (e.g. `msg[12, questionEnd)` of a query) and remembers its name. */
  rawQuestion(bytes: Uint8Array): this {
    this.ensure(this.p + bytes.length).set(bytes, this.p);
    this.names.remember(this.buf, this.p, this.p + bytes.length);
    this.p += bytes.length;
    this.buf.writeUInt16BE(1, 4);
    return this;
  }

  /** Reserves room for an OPT record written last, so truncation never squeezes it out. */
  opt(udpPayloadSize: number, extendedRcode = 0, version = 0): this {
    const o = Buffer.alloc(OPT_RR_SIZE);
    o.writeUInt16BE(RRType.OPT, 1);
    o.writeUInt16BE(udpPayloadSize, 3);
    o[5] = extendedRcode;
    o[6] = version;
    this.optBytes = o;
    this.reserved = OPT_RR_SIZE;
    return this;
  }

  /** Adds a record; returns false when it did not fit (see class doc). */
  add(section: Section, rr: ResourceRecord): boolean {
    const s = SECTION_INDEX[section];
    if (s < this.section) throw new RangeError(`records must be added in section order (${section} after a later section)`);
    this.section = s;
    if (this.closed[s]) return false;
    const limit = this.limit - this.reserved;
    const start = this.p;
    const end = this.writeRecord(rr, start, limit);
    if (end < 0) {
      this.p = start;
      this.closed[s] = true;
      if (s < 2) {
        this.truncated = true;
        // A truncated answer must not be followed by authority data that implies completeness.
        this.closed[1] = true;
        this.closed[2] = true;
      }
      return false;
    }
    this.p = end;
    this.counts[s] = (this.counts[s] ?? 0) + 1;
    return true;
  }

  /** Current size in bytes (excluding a reserved OPT). */
  get size(): number {
    return this.p;
  }

  /** Finishes the message: counts, TC flag, OPT; returns a copy of exactly the message bytes. */
  finish(): Buffer {
    const b = this.ensure(this.p + this.reserved);
    b.writeUInt16BE(this.counts[0] ?? 0, 6);
    b.writeUInt16BE(this.counts[1] ?? 0, 8);
    let ar = this.counts[2] ?? 0;
    if (this.optBytes) {
      this.optBytes.copy(b, this.p);
      ar++;
    }
    b.writeUInt16BE(ar, 10);
    if (this.truncated) b[2] = (b[2] as number) | (Flag.TC >> 8);
    return Buffer.from(b.subarray(0, this.p + this.reserved));
  }

  private ensure(size: number): Buffer {
    if (size > this.buf.length) {
      const bigger = Buffer.alloc(Math.min(Math.max(size, this.buf.length * 2), Math.max(size, this.limit)));
      this.buf.copy(bigger);
      this.buf = bigger;
    }
    return this.buf;
  }

  /** Writes a record at `p`; returns the end offset, or -1 if it would pass `limit`. */
  private writeRecord(rr: ResourceRecord, p: number, limit: number): number {
    // Worst case for one record is bounded (name 255 + fixed 10 + rdata <= 65535): grow first.
    this.ensure(Math.min(limit, p + 1100 + rdataHint(rr)));
    const b = this.buf;
    p = this.names.write(b, p, limit, rr.name);
    if (p < 0 || p + 10 > limit) return -1;
    b.writeUInt16BE(rr.type === 'RAW' ? rr.rrtype : RRType[rr.type], p);
    b.writeUInt16BE(rr.class ?? RRClass.IN, p + 2);
    b.writeUInt32BE(rr.ttl >>> 0, p + 4);
    const rdata = p + 10;
    const end = this.writeRdata(rr, rdata, limit);
    if (end < 0 || end - rdata > 0xffff) return -1;
    b.writeUInt16BE(end - rdata, p + 8);
    return end;
  }

  private writeRdata(rr: ResourceRecord, p: number, limit: number): number {
    const b = this.buf;
    const put = (bytes: Uint8Array): number => {
      if (p + bytes.length > limit) return -1;
      b.set(bytes, p);
      return p + bytes.length;
    };
    switch (rr.type) {
      case 'A': {
        const a = ipv4Bytes(rr.address);
        if (!a) throw new RangeError(`not an IPv4 address: ${rr.address}`);
        return put(a);
      }
      case 'AAAA': {
        const a = ipv6Bytes(rr.address);
        if (!a) throw new RangeError(`not an IPv6 address: ${rr.address}`);
        return put(a);
      }
      case 'PTR':
      case 'CNAME':
      case 'NS':
        return this.names.write(b, p, limit, rr.target);
      case 'MX': {
        if (p + 2 > limit) return -1;
        b.writeUInt16BE(rr.preference, p);
        return this.names.write(b, p + 2, limit, rr.exchange);
      }
      case 'SRV': {
        if (p + 6 > limit) return -1;
        b.writeUInt16BE(rr.priority, p);
        b.writeUInt16BE(rr.weight, p + 2);
        b.writeUInt16BE(rr.port, p + 4);
        // RFC 2782: the SRV target is never compressed.
        const target = uncompressed(rr.target);
        if (p + 6 + target.length > limit) return -1;
        b.set(target, p + 6);
        return p + 6 + target.length;
      }
      case 'SOA': {
        let q = this.names.write(b, p, limit, rr.mname);
        if (q < 0) return -1;
        q = this.names.write(b, q, limit, rr.rname);
        if (q < 0 || q + 20 > limit) return -1;
        for (const v of [rr.serial, rr.refresh, rr.retry, rr.expire, rr.minimum]) {
          b.writeUInt32BE(v >>> 0, q);
          q += 4;
        }
        return q;
      }
      case 'TXT': {
        const parts: number[] = [];
        for (const t of rr.text) {
          const bytes = Buffer.from(t, 'latin1');
          if (bytes.length > 255) throw new RangeError('TXT string longer than 255 bytes');
          parts.push(bytes.length, ...bytes);
        }
        return put(Uint8Array.from(parts));
      }
      case 'RAW':
        return put(rr.rdata);
    }
  }
}

function rdataHint(rr: ResourceRecord): number {
  if (rr.type === 'RAW') return rr.rdata.length;
  if (rr.type === 'TXT') return rr.text.reduce((n, t) => n + t.length + 1, 0);
  return 0;
}

function uncompressed(name: string): Uint8Array {
  const labels = nameLabels(name);
  const out: number[] = [];
  for (const l of labels) out.push(l.length, ...l);
  out.push(0);
  return Uint8Array.from(out);
}

/** Header flags for a response to a query with `queryFlags`: QR set, opcode, RD and CD copied, RA set. */
export function responseFlags(queryFlags: number, rcode: number, authoritative: boolean): number {
  return (
    Flag.QR |
    (queryFlags & (0x7800 | Flag.RD | Flag.CD)) |
    Flag.RA |
    (authoritative ? Flag.AA : 0) |
    (rcode & 0xf)
  );
}
