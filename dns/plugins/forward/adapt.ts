/**
 * An upstream response rewritten for the client: the client's id, RD and CD, the client's own
 * question bytes (its spelling; same length, so the upstream's compression pointers stay
 * valid), the upstream's records, and our OPT instead of the upstream's (only if the client
 * sent one). AD is cleared: Shoal does not validate DNSSEC, so it must not vouch for it.
 */
import type { DnsResponse } from '../../handler.js';
import { Flag, HEADER_SIZE, OPT_RR_SIZE } from '../../wire/constants.js';
import type { MessageIndex } from '../../wire/message.js';
import type { Query } from '../../wire/query.js';
import { writeOpt } from '../../wire/response.js';

/** See module doc. `ix` must index `upstream` and match `q` (the upstream already checked). */
export function adaptResponse(upstream: Buffer, ix: MessageIndex, clientMsg: Buffer, q: Query, udpPayloadSize: number): DnsResponse {
  // Records after a misplaced OPT are dropped: moving them would break pointers into them.
  const kept = ix.opt >= 0 ? ix.records.slice(0, ix.opt) : ix.records;
  const bodyEnd = ix.opt >= 0 ? (ix.records[ix.opt] as { start: number }).start : ix.end;
  const counts = [0, 0, 0];
  for (const r of kept) counts[r.section] = (counts[r.section] as number) + 1;
  const opt = q.ednsUdpSize >= 0 ? OPT_RR_SIZE : 0;
  const qEnd = q.questionEnd;
  const out = Buffer.allocUnsafe(qEnd + (bodyEnd - ix.questionEnd) + opt);
  out[0] = clientMsg[0] as number;
  out[1] = clientMsg[1] as number;
  const flags = Flag.QR | (q.flags & (0x7800 | Flag.RD | Flag.CD)) | Flag.RA | (ix.flags & Flag.AA) | ix.rcode;
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(counts[0] as number, 6);
  out.writeUInt16BE(counts[1] as number, 8);
  out.writeUInt16BE((counts[2] as number) + (opt ? 1 : 0), 10);
  clientMsg.copy(out, HEADER_SIZE, HEADER_SIZE, qEnd);
  upstream.copy(out, qEnd, ix.questionEnd, bodyEnd);
  if (opt) writeOpt(out, qEnd + (bodyEnd - ix.questionEnd), udpPayloadSize);
  return { wire: out, rcode: ix.rcode, answers: counts[0] as number };
}
