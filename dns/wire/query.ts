/**
 * Parsing a DNS query: header, exactly one question, EDNS0 OPT from the additional section.
 *
 * Malformed input never throws: {@link parseQuery} returns a {@link QueryError} value carrying
 * the response code to answer with. The common query (one question, no answer/authority
 * records, at most an OPT record) takes the straight-line path; anything else walks the
 * records generically but with the same bounds checks.
 */
import { HEADER_SIZE, MAX_LABEL, MAX_NAME_WIRE, RRType, Rcode } from './constants.js';
import { skipName } from './name.js';

/** A parsed query. `name` is the lookup key (see `name.ts`); the original bytes stay in the message. */
export class Query {
  constructor(
    /** Message id, echoed in the response. */
    readonly id: number,
    /** The raw second header word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
    readonly flags: number,
    /** Lowercased key of the question name (`web.app`, root is `''`). */
    readonly name: string,
    readonly qtype: number,
    readonly qclass: number,
    /** Offset just past the question (name, type, class): `msg[12, questionEnd)` is echoed verbatim. */
    readonly questionEnd: number,
    /** UDP payload size the client advertised in OPT, or -1 when it sent no OPT record. */
    readonly ednsUdpSize: number,
    /** EDNS version from the OPT record (0 when absent). */
    readonly ednsVersion: number,
  ) {}

  /** Opcode from the header (0 = QUERY). */
  get opcode(): number {
    return (this.flags >> 11) & 0xf;
  }

  /** True when the client sent an OPT record. */
  get edns(): boolean {
    return this.ednsUdpSize >= 0;
  }
}

/** Why a query could not be parsed, and the response code it deserves. */
export class QueryError {
  constructor(
    /** Short machine-readable reason, also a metric label value. */
    readonly reason: string,
    readonly rcode: number,
  ) {}
}

const err = (reason: string): QueryError => new QueryError(reason, Rcode.FORMERR);
// Preallocated: a flood of junk must not allocate an error object per packet.
const E_SHORT = err('short');
const E_QDCOUNT = err('qdcount');
const E_NAME = err('bad_name');
const E_POINTER = err('compressed_question');
const E_TRUNCATED = err('truncated');
const E_RECORD = err('bad_record');
const E_OPT = err('bad_opt');

/** Type guard for the error branch of {@link parseQuery}. */
export const isQueryError = (q: Query | QueryError): q is QueryError => q instanceof QueryError;

// Scratch for building keys: at most 255 wire bytes, each of which may gain an escape.
const scratch = Buffer.allocUnsafe(MAX_NAME_WIRE * 2);

/** Parses a query message. Never throws; never reads outside `msg`. */
export function parseQuery(msg: Buffer): Query | QueryError {
  const end = msg.length;
  if (end < HEADER_SIZE) return E_SHORT;
  if (msg[4] !== 0 || msg[5] !== 1) return E_QDCOUNT;
  const id = (msg[0] as number) << 8 | (msg[1] as number);
  const flags = (msg[2] as number) << 8 | (msg[3] as number);

  // Question name, uncompressed by necessity: nothing precedes it that a pointer could name.
  let p = HEADER_SIZE;
  let k = 0;
  for (;;) {
    if (p >= end) return E_TRUNCATED;
    const len = msg[p] as number;
    if (len === 0) {
      p++;
      break;
    }
    if (len > MAX_LABEL) return (len & 0xc0) === 0xc0 ? E_POINTER : E_NAME;
    if (p + 1 + len > end) return E_TRUNCATED;
    if (p + 1 + len - HEADER_SIZE + 1 > MAX_NAME_WIRE) return E_NAME;
    if (k !== 0) scratch[k++] = 0x2e;
    for (let i = p + 1, stop = p + 1 + len; i < stop; i++) {
      const c = msg[i] as number;
      if (c >= 0x41 && c <= 0x5a) scratch[k++] = c | 0x20;
      else {
        if (c === 0x2e || c === 0x5c) scratch[k++] = 0x5c;
        scratch[k++] = c;
      }
    }
    p += 1 + len;
  }
  if (p + 4 > end) return E_TRUNCATED;
  const qtype = (msg[p] as number) << 8 | (msg[p + 1] as number);
  const qclass = (msg[p + 2] as number) << 8 | (msg[p + 3] as number);
  const questionEnd = p + 4;
  const name = k === 0 ? '' : scratch.toString('latin1', 0, k);

  const an = (msg[6] as number) << 8 | (msg[7] as number);
  const ns = (msg[8] as number) << 8 | (msg[9] as number);
  const ar = (msg[10] as number) << 8 | (msg[11] as number);
  if (an === 0 && ns === 0 && ar === 0) {
    return new Query(id, flags, name, qtype, qclass, questionEnd, -1, 0);
  }

  p = questionEnd;
  // Answer and authority records are unusual in a query; skip them with full bounds checks.
  for (let i = an + ns; i > 0; i--) {
    p = skipRecord(msg, p, end);
    if (p < 0) return E_RECORD;
  }
  let udpSize = -1;
  let version = 0;
  for (let i = ar; i > 0; i--) {
    const start = p;
    const nameEnd = skipName(msg, p, end);
    if (nameEnd < 0 || nameEnd + 10 > end) return E_RECORD;
    const type = (msg[nameEnd] as number) << 8 | (msg[nameEnd + 1] as number);
    const rdlen = (msg[nameEnd + 8] as number) << 8 | (msg[nameEnd + 9] as number);
    const rdata = nameEnd + 10;
    if (rdata + rdlen > end) return E_RECORD;
    if (type === RRType.OPT) {
      // RFC 6891 6.1.1: one OPT, owned by the root name; options must tile the rdata exactly.
      if (udpSize >= 0 || msg[start] !== 0 || nameEnd !== start + 1) return E_OPT;
      if (!optionsWellFormed(msg, rdata, rdata + rdlen)) return E_OPT;
      udpSize = (msg[nameEnd + 2] as number) << 8 | (msg[nameEnd + 3] as number);
      version = msg[nameEnd + 5] as number;
    }
    p = rdata + rdlen;
  }
  return new Query(id, flags, name, qtype, qclass, questionEnd, udpSize, version);
}

/** Offset after the resource record at `p`, or -1 when it overruns the message. */
export function skipRecord(msg: Uint8Array, p: number, end: number): number {
  const nameEnd = skipName(msg, p, end);
  if (nameEnd < 0 || nameEnd + 10 > end) return -1;
  const rdlen = (msg[nameEnd + 8] as number) << 8 | (msg[nameEnd + 9] as number);
  const next = nameEnd + 10 + rdlen;
  return next > end ? -1 : next;
}

function optionsWellFormed(msg: Uint8Array, p: number, end: number): boolean {
  while (p < end) {
    if (p + 4 > end) return false;
    p += 4 + ((msg[p + 2] as number) << 8 | (msg[p + 3] as number));
  }
  return p === end;
}
