/**
 * Cached responses as bytes: the records after the question (without OPT), the offset and
 * original value of every TTL, and the header bits worth keeping. Like prepared registry
 * answers, the bytes are valid for any spelling of the same question because the question is
 * echoed verbatim and has the same length (see `plugins/registry/prepared.ts`).
 */
import type { DnsRequest, DnsResponse } from '../../handler.js';
import { Flag, HEADER_SIZE, OPT_RR_SIZE, Rcode, RRType } from '../../wire/constants.js';
import { indexMessage, negativeTtl } from '../../wire/message.js';
import type { Query } from '../../wire/query.js';
import { writeOpt } from '../../wire/response.js';

/** One cached response. Immutable once built. */
export interface CacheEntry {
  /** NOERROR or NXDOMAIN. */
  readonly rcode: number;
  /** AA as the upstream said. */
  readonly authoritative: boolean;
  readonly counts: readonly [number, number, number];
  readonly body: Buffer;
  /** Offset in {@link body} of each record's TTL, and the TTL it had when stored. */
  readonly ttlOffsets: Uint32Array;
  readonly ttls: Uint32Array;
  /** Milliseconds (cache clock). */
  readonly storedAt: number;
  readonly expiresAt: number;
  /** Until when the entry may still be served stale when every upstream fails. */
  readonly staleUntil: number;
}

/** TTL policy for {@link toEntry}. */
export interface TtlPolicy {
  maxTtl: number;
  maxNegativeTtl: number;
  /** Seconds after expiry an entry may be served stale. */
  staleFor: number;
}

/**
 * A cache entry for a response to `q`, or undefined when it must not be cached: truncated,
 * not NOERROR/NXDOMAIN, a TTL of 0, a negative answer without SOA (RFC 2308 5), an OPT record
 * that is not last, or a message that does not index.
 */
export function toEntry(res: DnsResponse, q: Query, now: number, policy: TtlPolicy): CacheEntry | undefined {
  const w = res.wire;
  const ix = indexMessage(w);
  if (!ix || ix.questionEnd !== q.questionEnd || ix.qname !== q.name) return undefined;
  if (ix.flags & Flag.TC) return undefined;
  if (ix.rcode !== Rcode.NOERROR && ix.rcode !== Rcode.NXDOMAIN) return undefined;
  let bodyEnd = ix.end;
  const records = ix.opt >= 0 ? ix.records.slice(0, ix.opt) : ix.records;
  if (ix.opt >= 0) {
    if (ix.opt !== ix.records.length - 1) return undefined;
    bodyEnd = (ix.records[ix.opt] as { start: number }).start;
  }
  const counts: [number, number, number] = [0, 0, 0];
  let minTtl = Infinity;
  for (const r of records) {
    counts[r.section]++;
    if (r.section === 0) minTtl = Math.min(minTtl, r.ttl);
  }
  let ttl: number;
  if (ix.rcode === Rcode.NOERROR && counts[0] > 0) {
    ttl = Math.min(minTtl, policy.maxTtl);
  } else {
    const neg = negativeTtl(w, ix);
    if (neg === undefined) return undefined;
    ttl = Math.min(neg, policy.maxNegativeTtl);
  }
  if (ttl <= 0) return undefined;
  const ttlOffsets = new Uint32Array(records.length);
  const ttls = new Uint32Array(records.length);
  records.forEach((r, i) => {
    ttlOffsets[i] = r.ttlOffset - ix.questionEnd;
    ttls[i] = Math.min(r.ttl, r.type === RRType.SOA ? ttl : policy.maxTtl);
  });
  return {
    rcode: ix.rcode,
    authoritative: (ix.flags & Flag.AA) !== 0,
    counts,
    body: Buffer.from(w.subarray(ix.questionEnd, bodyEnd)),
    ttlOffsets,
    ttls,
    storedAt: now,
    expiresAt: now + ttl * 1000,
    staleUntil: now + (ttl + policy.staleFor) * 1000,
  };
}

/**
 * The response to `req` from an entry. Fresh: TTLs count down from when it was stored.
 * Stale: every TTL is `staleTtl` (RFC 8767 suggests 30 s) so clients come back soon.
 */
export function renderEntry(req: DnsRequest, q: Query, e: CacheEntry, now: number, staleTtl?: number): DnsResponse {
  const msg = req.msg;
  const qEnd = q.questionEnd;
  const opt = q.ednsUdpSize >= 0 ? OPT_RR_SIZE : 0;
  const out = Buffer.allocUnsafe(qEnd + e.body.length + opt);
  out[0] = msg[0] as number;
  out[1] = msg[1] as number;
  const flags =
    Flag.QR | (q.flags & (0x7800 | Flag.RD | Flag.CD)) | Flag.RA | (e.authoritative ? Flag.AA : 0) | e.rcode;
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(e.counts[0], 6);
  out.writeUInt16BE(e.counts[1], 8);
  out.writeUInt16BE(e.counts[2] + (opt ? 1 : 0), 10);
  msg.copy(out, HEADER_SIZE, HEADER_SIZE, qEnd);
  e.body.copy(out, qEnd);
  const elapsed = Math.floor((now - e.storedAt) / 1000);
  for (let i = 0; i < e.ttls.length; i++) {
    const ttl = staleTtl ?? Math.max(0, (e.ttls[i] as number) - elapsed);
    out.writeUInt32BE(ttl, qEnd + (e.ttlOffsets[i] as number));
  }
  if (opt) writeOpt(out, qEnd + e.body.length, req.udpPayloadSize);
  return { wire: out, rcode: e.rcode, answers: e.counts[0] };
}
