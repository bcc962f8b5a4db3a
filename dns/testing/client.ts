/**
 * A minimal DNS client for tests and benchmarks: build a query, send it over UDP or TCP,
 * get the raw response. Not for production use (one socket per call, no retries).
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { MessageBuilder } from '../wire/builder.js';
import { Flag, RRClass, typeOf } from '../wire/constants.js';

/** Options of {@link buildQuery}. */
export interface QueryOptions {
  id?: number;
  /** EDNS payload size to advertise; undefined sends no OPT record. */
  edns?: number;
  /** Recursion desired (default true). */
  rd?: boolean;
  qclass?: number;
}

/** A query message for `name` and `type` (mnemonic or number). */
export function buildQuery(name: string, type: string | number, o: QueryOptions = {}): Buffer {
  const t = typeof type === 'number' ? type : typeOf(type);
  if (t === undefined) throw new RangeError(`unknown type ${String(type)}`);
  const b = new MessageBuilder().header(o.id ?? 0x1234, o.rd === false ? 0 : Flag.RD).question(name, t, o.qclass ?? RRClass.IN);
  if (o.edns !== undefined) b.opt(o.edns);
  return b.finish();
}

/** Sends one UDP message and resolves with the first datagram back (or undefined after `timeoutMs`). */
export function udpExchange(port: number, msg: Buffer, address = '127.0.0.1', timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket(address.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (r: Buffer | undefined): void => {
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    sock.on('error', () => done(undefined));
    sock.on('message', (m) => done(m));
    sock.send(msg, port, address);
  });
}

/** Sends messages over one TCP connection (framed) and resolves with that many responses, in arrival order. */
export function tcpExchange(port: number, msgs: Buffer[], address = '127.0.0.1', timeoutMs = 2000): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const sock = connect({ host: address, port });
    const timer = setTimeout(() => done(), timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(out);
    };
    sock.on('error', () => done());
    sock.on('close', () => done());
    sock.on('connect', () => {
      for (const m of msgs) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        sock.write(Buffer.concat([len, m]));
      }
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= msgs.length) done();
    });
  });
}
