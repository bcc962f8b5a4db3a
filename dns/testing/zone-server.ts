/**
 * `ZoneServer`: a tiny authoritative DNS server over UDP and TCP answering from zone lines.
 * A test double for upstreams (forwarding, cache and fuzz tests) that needs no root and no
 * external binary. Its `mode` makes it misbehave on purpose.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { MessageBuilder, responseFlags } from '../wire/builder.js';
import { MAX_UDP_NO_EDNS, RRType, Rcode } from '../wire/constants.js';
import { nameKey } from '../wire/name.js';
import { isQueryError, parseQuery, type Query } from '../wire/query.js';
import type { ResourceRecord } from '../wire/records.js';
import { parseZone } from '../wire/text.js';

/** How the server behaves. */
export type ZoneServerMode = 'answer' | 'servfail' | 'refused' | 'drop';

/** See module doc. */
export class ZoneServer {
  /** Current behaviour; change it at any time. */
  mode: ZoneServerMode = 'answer';
  /** Queries received over UDP and TCP. */
  udpQueries = 0;
  tcpQueries = 0;
  /** Optional hook to rewrite or replace a UDP response (fuzzing the forwarder). */
  mangle: ((wire: Buffer) => Buffer | undefined) | undefined;
  private readonly byName = new Map<string, ResourceRecord[]>();
  private soa: ResourceRecord | undefined;
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;
  private readonly conns = new Set<Socket>();

  /** @param zone zone lines (`name ttl IN type rdata`); a SOA line is used for negative answers. */
  constructor(zone: string) {
    for (const rr of parseZone(zone)) {
      if (rr.type === 'SOA') this.soa = rr;
      const k = nameKey(rr.name);
      const list = this.byName.get(k) ?? [];
      list.push(rr);
      this.byName.set(k, list);
    }
  }

  /** Listens on `address` (UDP and TCP, same port); returns the port. Port 0 picks a free one. */
  async start(address = '127.0.0.1', port = 0): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.listen(address, port);
      } catch (e) {
        // The UDP port's TCP twin may be taken (an ephemeral client port): try another.
        await this.close();
        if (port !== 0 || attempt >= 20) throw e;
      }
    }
  }

  private async listen(address: string, port: number): Promise<number> {
    const udp = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, address, () => resolve());
    });
    const bound = udp.address().port;
    this.udp = udp;
    udp.on('error', () => undefined);
    udp.on('message', (msg, rinfo) => {
      this.udpQueries++;
      let out = this.respond(msg, 'udp');
      if (out && this.mangle) out = this.mangle(out);
      if (out) udp.send(out, rinfo.port, rinfo.address);
    });
    const tcp = createServer((sock) => {
      this.conns.add(sock);
      sock.on('close', () => this.conns.delete(sock));
      sock.on('error', () => sock.destroy());
      let buf = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          this.tcpQueries++;
          const out = this.respond(msg, 'tcp');
          if (!out) continue;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(bound, address, () => resolve());
    });
    this.tcp = tcp;
    return bound;
  }

  /** Stops both listeners. Idempotent. */
  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    const { tcp, udp } = this;
    this.tcp = undefined;
    this.udp = undefined;
    await Promise.all([
      new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r())),
      new Promise<void>((r) => (udp ? udp.close(() => r()) : r())),
    ]);
  }

  private respond(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    if (this.mode === 'drop') return undefined;
    const q = parseQuery(msg);
    if (isQueryError(q)) return undefined;
    const rcode = this.mode === 'servfail' ? Rcode.SERVFAIL : this.mode === 'refused' ? Rcode.REFUSED : undefined;
    const limit = transport === 'tcp' ? 65535 : q.edns ? Math.max(q.ednsUdpSize, MAX_UDP_NO_EDNS) : MAX_UDP_NO_EDNS;
    const b = new MessageBuilder(limit);
    const question = msg.subarray(12, q.questionEnd);
    if (rcode !== undefined) return this.finish(b, q, question, rcode, []);
    const records = this.byName.get(q.name);
    if (!records) return this.finish(b, q, question, Rcode.NXDOMAIN, [], true);
    const answer = records.filter((r) => q.qtype === RRType.ANY || (r.type === 'RAW' ? r.rrtype : RRType[r.type]) === q.qtype);
    return this.finish(b, q, question, Rcode.NOERROR, answer, answer.length === 0);
  }

  private finish(b: MessageBuilder, q: Query, question: Buffer, rcode: number, answer: ResourceRecord[], negative = false): Buffer {
    b.header(q.id, responseFlags(q.flags, rcode, true)).rawQuestion(question);
    if (q.edns) b.opt(1232);
    for (const rr of answer) b.add('answer', rr);
    if (negative && this.soa) b.add('authority', this.soa);
    return b.finish();
  }
}
