/**
 * First plugin of every chain: rejects what must never reach resolution, cheapest checks
 * first, before the message is parsed:
 * - shorter than a header: dropped (no id to answer to);
 * - QR set (a response): dropped, so two resolvers can never ping-pong and spoofed
 *   "responses" are not reflected;
 * - longer than `maxQuerySize`: FORMERR;
 * - opcode other than QUERY: NOTIMP;
 * - qdcount != 1, or anything `parseQuery` rejects: FORMERR;
 * then on the parsed query: EDNS version > 0: BADVERS; meta types as questions: FORMERR /
 * NOTIMP; zone transfers and non-IN classes: REFUSED.
 * On success it sets `req.query` and `req.maxSize` for the rest of the chain.
 */
import type { Plugin } from '../../handler.js';
import { noopMetrics, type DnsMetrics } from '../../metrics.js';
import { DROP, HEADER_SIZE, MAX_UDP_NO_EDNS, RRClass, RRType, Rcode } from '../../wire/constants.js';
import { isQueryError, parseQuery } from '../../wire/query.js';

/** Options of {@link hygiene}. */
export interface HygieneOptions {
  /** Largest query accepted, in bytes (default 4096: real queries are under 300). */
  maxQuerySize?: number;
  metrics?: DnsMetrics;
}

/** The hygiene plugin; must be first in the chain (later plugins rely on `req.query`). */
export function hygiene(options: HygieneOptions = {}): Plugin {
  const maxQuerySize = options.maxQuerySize ?? 4096;
  const m = options.metrics ?? noopMetrics;
  return (next) => (req) => {
    const msg = req.msg;
    if (msg.length < HEADER_SIZE) {
      m.rejected('short');
      return DROP;
    }
    const b2 = msg[2] as number;
    if (b2 & 0x80) {
      m.rejected('response');
      return DROP;
    }
    if (msg.length > maxQuerySize) {
      m.rejected('oversize');
      return Rcode.FORMERR;
    }
    if ((b2 & 0x78) !== 0) {
      m.rejected('opcode');
      return Rcode.NOTIMP;
    }
    if (msg[4] !== 0 || msg[5] !== 1) {
      m.rejected('qdcount');
      return Rcode.FORMERR;
    }
    const q = parseQuery(msg);
    if (isQueryError(q)) {
      m.rejected(q.reason);
      return q.rcode;
    }
    req.query = q;
    if (q.ednsUdpSize >= 0) {
      if (q.ednsVersion !== 0) {
        m.rejected('edns_version');
        return Rcode.BADVERS;
      }
      if (req.transport === 'udp') req.maxSize = Math.min(Math.max(MAX_UDP_NO_EDNS, q.ednsUdpSize), req.udpPayloadSize);
    }
    const t = q.qtype;
    if (t === RRType.OPT || t === RRType.TSIG || t === 0) {
      m.rejected('meta_type');
      return Rcode.FORMERR;
    }
    if (t === RRType.AXFR || t === RRType.IXFR) {
      m.rejected('transfer');
      return Rcode.REFUSED;
    }
    if (t === RRType.MAILA || t === RRType.MAILB) {
      m.rejected('obsolete_type');
      return Rcode.NOTIMP;
    }
    if (q.qclass !== RRClass.IN && q.qclass !== RRClass.ANY) {
      m.rejected('class');
      return Rcode.REFUSED;
    }
    return next(req);
  };
}
