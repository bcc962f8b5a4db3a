/**
 * Small responses written directly (no builder): bare response codes, the OPT record,
 * and truncation of an oversized response to a UDP client's limit.
 */
import { Flag, HEADER_SIZE, OPT_RR_SIZE, RRType } from './constants.js';
import { indexMessage } from './message.js';
import type { Query } from './query.js';

/** Writes an option-less OPT record at `off`; returns the offset after it. */
export function writeOpt(buf: Buffer, off: number, udpPayloadSize: number, extendedRcode = 0): number {
  buf[off] = 0;
  buf.writeUInt16BE(RRType.OPT, off + 1);
  buf.writeUInt16BE(udpPayloadSize, off + 3);
  // TTL field: extended rcode, version 0, no flags (no DNSSEC, so DO is not echoed).
  buf.writeUInt32BE(((extendedRcode & 0xff) << 24) >>> 0, off + 5);
  buf.writeUInt16BE(0, off + 9);
  return off + OPT_RR_SIZE;
}

/**
 * A response carrying only a response code, for a handler that returned a number.
 * With a parsed query the question is echoed (and OPT when the client sent one; rcodes above
 * 15 go in the OPT's extended field); without one the header alone says what was wrong.
 * Undefined when `msg` is too short to even carry an id.
 */
export function rcodeResponse(msg: Buffer, query: Query | undefined, rcode: number, udpPayloadSize: number): Buffer | undefined {
  if (msg.length < HEADER_SIZE) return undefined;
  const qFlags = msg.readUInt16BE(2);
  const flags = Flag.QR | (qFlags & (0x7800 | Flag.RD | Flag.CD)) | Flag.RA | (rcode & 0xf);
  if (!query) {
    const out = Buffer.alloc(HEADER_SIZE);
    out[0] = msg[0] as number;
    out[1] = msg[1] as number;
    out.writeUInt16BE(flags, 2);
    return out;
  }
  const withOpt = query.edns;
  const size = query.questionEnd + (withOpt ? OPT_RR_SIZE : 0);
  const out = Buffer.allocUnsafe(size);
  out[0] = msg[0] as number;
  out[1] = msg[1] as number;
  out.writeUInt16BE(flags, 2);
  out.writeUInt32BE(0x00010000, 4);
  out.writeUInt32BE(withOpt ? 1 : 0, 8);
  msg.copy(out, HEADER_SIZE, HEADER_SIZE, query.questionEnd);
  if (withOpt) writeOpt(out, query.questionEnd, udpPayloadSize, rcode >> 4);
  return out;
}

/**
 * Cuts a response down to `limit` bytes for a UDP client: keeps the header, the question and as
 * many whole answer records as fit (compression pointers only point backwards, so a prefix stays
 * valid), drops authority and additional records except OPT, and sets TC. A message that does
 * not index (never produced by Shoal) degrades to a bare header.
 */
export function truncateToFit(wire: Buffer, limit: number): Buffer {
  if (wire.length <= limit) return wire;
  const ix = indexMessage(wire);
  const questionEnd = ix ? ix.questionEnd : HEADER_SIZE;
  const optRec = ix && ix.opt >= 0 ? ix.records[ix.opt] : undefined;
  const optSize = optRec ? OPT_RR_SIZE : 0;
  let keepEnd = Math.min(questionEnd, Math.max(HEADER_SIZE, limit - optSize));
  let answers = 0;
  if (ix && keepEnd === questionEnd) {
    for (const r of ix.records) {
      if (r.section !== 0 || r.end + optSize > limit) break;
      keepEnd = r.end;
      answers++;
    }
  }
  const out = Buffer.allocUnsafe(keepEnd + optSize);
  wire.copy(out, 0, 0, keepEnd);
  out[2] = (out[2] as number) | (Flag.TC >> 8);
  if (keepEnd < questionEnd) out.writeUInt16BE(0, 4);
  out.writeUInt16BE(answers, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(optRec ? 1 : 0, 10);
  if (optRec) {
    // Same payload size and extended rcode as the original OPT, without options.
    writeOpt(out, keepEnd, wire.readUInt16BE(optRec.ttlOffset - 2), wire[optRec.ttlOffset] as number);
  }
  return out;
}
