/** One DNS exchange over TCP (RFC 7766 framing), used when a UDP answer came back truncated. */
import { connect } from 'node:net';
import type { UpstreamAddress } from './resolv-conf.js';

/** Outcome of {@link tcpExchange}: the response bytes, or why there are none. */
export type TcpResult = { ok: true; msg: Buffer } | { ok: false; reason: 'timeout' | 'tcp' };

/**
 * Sends `query` (an unframed message) and returns the first complete framed response.
 * Never rejects; the connection is always destroyed before resolving.
 */
export function tcpExchange(to: UpstreamAddress, query: Buffer, timeoutMs: number): Promise<TcpResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: to.address, port: to.port });
    let chunks: Buffer[] = [];
    let have = 0;
    let done = false;
    const finish = (r: TcpResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs);
    sock.on('error', () => finish({ ok: false, reason: 'tcp' }));
    sock.on('close', () => finish({ ok: false, reason: 'tcp' }));
    sock.on('connect', () => {
      const frame = Buffer.allocUnsafe(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      have += d.length;
      if (have < 2) return;
      const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
      chunks = [all];
      const len = all.readUInt16BE(0);
      if (have >= 2 + len) finish({ ok: true, msg: Buffer.from(all.subarray(2, 2 + len)) });
    });
  });
}
