/**
 * Registry answers prepared once as wire bytes and copied per query.
 *
 * Why this works: the response echoes the question verbatim at offset 12, and every name with
 * the same key has the same wire length whatever its case, so compression pointers computed
 * once (owner names point at offset 12, which then shows the client's own spelling) are valid
 * for every later query of that name and type. Per query the cost is one allocation and a few
 * copies; dnsrr answers are shuffled by permuting fixed-size A/AAAA records.
 */
import type { DnsRequest, DnsResponse } from '../../handler.js';
import type { RegistryAnswer } from '../../registry.js';
import { MessageBuilder, responseFlags } from '../../wire/builder.js';
import { Flag, HEADER_SIZE, OPT_RR_SIZE, Rcode } from '../../wire/constants.js';
import type { Query } from '../../wire/query.js';
import { writeOpt } from '../../wire/response.js';

/** An answer as bytes, valid for any spelling of one question (name key, type, class). */
export interface Prepared {
  /** Number of answer records. */
  readonly answers: number;
  /** Number of additional (glue) records after them. */
  readonly additional: number;
  /** Answer then additional records, laid out to follow the question. */
  readonly body: Buffer;
  /** End offset in {@link body} of each answer record. */
  readonly answerEnds: Uint32Array;
  /** Size of every answer record when they may be shuffled (same-size A or AAAA), else 0. */
  readonly shuffleSize: number;
}

/** Encodes a registry answer for the question `msg[12, q.questionEnd)`. */
export function prepare(answer: RegistryAnswer, q: Query, msg: Buffer): Prepared {
  const b = new MessageBuilder(65535).header(0, 0).rawQuestion(msg.subarray(HEADER_SIZE, q.questionEnd));
  const ends: number[] = [];
  // A record the builder cannot encode (a name with a 64-byte label, say) is skipped rather
  // than failing the whole answer: the registry takes names as the cluster spells them.
  const add = (section: 'answer' | 'additional', rr: RegistryAnswer['answer'][number]): boolean | undefined => {
    try {
      return b.add(section, rr);
    } catch {
      return undefined;
    }
  };
  for (const rr of answer.answer) {
    const ok = add('answer', rr);
    if (ok === false) break;
    if (ok) ends.push(b.size - q.questionEnd);
  }
  let additional = 0;
  for (const rr of answer.additional) if (add('additional', rr)) additional++;
  const body = b.finish().subarray(q.questionEnd);
  let shuffleSize = 0;
  if (answer.shuffle && ends.length > 1) {
    const size = ends[0] as number;
    // Only records that are exactly pointer + fixed fields + address may be permuted freely.
    if ((size === 16 || size === 28) && ends.every((e, i) => e === size * (i + 1))) shuffleSize = size;
  }
  return { answers: ends.length, additional, body: Buffer.from(body), answerEnds: Uint32Array.from(ends), shuffleSize };
}

let perm = new Uint16Array(256);

/**
 * The response to `req` from a prepared answer: header from the query, question copied
 * verbatim, records copied (shuffled if allowed), OPT if the client sent one. If it does not fit
 * `req.maxSize`, glue goes first, then trailing answers with TC set.
 */
export function render(req: DnsRequest, q: Query, p: Prepared): DnsResponse {
  const msg = req.msg;
  const qEnd = q.questionEnd;
  const opt = q.ednsUdpSize >= 0 ? OPT_RR_SIZE : 0;
  let an = p.answers;
  let ar = p.additional;
  let bodyLen = p.body.length;
  let tc = 0;
  if (qEnd + bodyLen + opt > req.maxSize) {
    ar = 0;
    bodyLen = an > 0 ? (p.answerEnds[an - 1] as number) : 0;
    if (qEnd + bodyLen + opt > req.maxSize) {
      tc = Flag.TC;
      const room = req.maxSize - qEnd - opt;
      while (an > 0 && (p.answerEnds[an - 1] as number) > room) an--;
      bodyLen = an > 0 ? (p.answerEnds[an - 1] as number) : 0;
    }
  }
  const out = Buffer.allocUnsafe(qEnd + bodyLen + opt);
  out[0] = msg[0] as number;
  out[1] = msg[1] as number;
  const flags = responseFlags(q.flags, Rcode.NOERROR, true) | tc;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  out[4] = 0;
  out[5] = 1;
  out[6] = an >> 8;
  out[7] = an & 0xff;
  out[8] = 0;
  out[9] = 0;
  const arCount = ar + (opt ? 1 : 0);
  out[10] = arCount >> 8;
  out[11] = arCount & 0xff;
  msg.copy(out, HEADER_SIZE, HEADER_SIZE, qEnd);
  const size = p.shuffleSize;
  if (size !== 0) {
    // Fisher-Yates over record indices; with truncation the client gets a random subset.
    const total = p.answers;
    if (perm.length < total) perm = new Uint16Array(total * 2);
    for (let i = 0; i < total; i++) perm[i] = i;
    for (let i = total - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      const t = perm[i] as number;
      perm[i] = perm[j] as number;
      perm[j] = t;
    }
    for (let i = 0; i < an; i++) {
      const from = (perm[i] as number) * size;
      p.body.copy(out, qEnd + i * size, from, from + size);
    }
    if (ar > 0) p.body.copy(out, qEnd + an * size, an * size, bodyLen);
  } else {
    p.body.copy(out, qEnd, 0, bodyLen);
  }
  if (opt) writeOpt(out, qEnd + bodyLen, req.udpPayloadSize);
  return { wire: out, rcode: Rcode.NOERROR, answers: an };
}
