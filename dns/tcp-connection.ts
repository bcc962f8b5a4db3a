/**
 * One DNS-over-TCP client connection (RFC 7766): 2-byte length framing, several queries per
 * connection answered as they complete (pipelining, bounded), an idle timeout that only
 * complete queries reset (a client dribbling bytes cannot hold the connection), and
 * backpressure both ways (too many queries in flight or a client not reading: stop reading).
 */
import type { Socket } from 'node:net';

/** Limits of one connection. */
export interface TcpLimits {
  /** Close after this long without a complete query or a response written (ms). */
  idleTimeoutMs: number;
  /** Queries of one connection being resolved at once; reading pauses beyond. */
  maxPipeline: number;
  /** Largest query frame; a larger length prefix closes the connection. */
  maxQuerySize: number;
}

/** Resolves one message to the bytes to send back (undefined: nothing). Must not reject. */
export type ServeOne = (msg: Buffer) => Promise<Buffer | undefined> | Buffer | undefined;

/** Serves `sock` until it closes. Never throws; socket errors just end the connection. */
export function serveTcpConnection(sock: Socket, serve: ServeOne, limits: TcpLimits, onError: (kind: string) => void): void {
  let pending: Buffer | undefined;
  let inFlight = 0;
  let ended = false;
  let writeBlocked = false;
  const timer = setTimeout(onIdle, limits.idleTimeoutMs);
  timer.unref();

  function onIdle(): void {
    if (inFlight > 0) timer.refresh();
    else sock.destroy();
  }

  function reading(): void {
    if (sock.destroyed) return;
    if (inFlight < limits.maxPipeline && !writeBlocked) {
      frames();
      if (inFlight < limits.maxPipeline && !writeBlocked) sock.resume();
    }
    maybeEnd();
  }

  /** After the client half-closed: close our side once every complete query is answered. */
  function maybeEnd(): void {
    if (!ended || inFlight > 0 || sock.destroyed) return;
    if (pending && pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) return;
    sock.end();
  }

  /** Starts every complete frame in `pending`, up to the pipeline limit. */
  function frames(): void {
    let buf = pending;
    if (!buf) return;
    let off = 0;
    while (buf.length - off >= 2 && inFlight < limits.maxPipeline && !sock.destroyed) {
      const len = buf.readUInt16BE(off);
      if (len > limits.maxQuerySize) {
        onError('tcp_oversize');
        sock.destroy();
        return;
      }
      if (buf.length - off < 2 + len) break;
      const msg = buf.subarray(off + 2, off + 2 + len);
      off += 2 + len;
      timer.refresh();
      start(msg);
    }
    buf = off >= buf.length ? undefined : buf.subarray(off);
    pending = buf;
  }

  function start(msg: Buffer): void {
    inFlight++;
    if (inFlight >= limits.maxPipeline) sock.pause();
    let r: Promise<Buffer | undefined> | Buffer | undefined;
    try {
      r = serve(msg);
    } catch {
      onError('tcp_serve');
      r = undefined;
    }
    if (r instanceof Promise) {
      r.then(done, () => {
        onError('tcp_serve');
        done(undefined);
      });
    } else {
      done(r);
    }
  }

  function done(w: Buffer | undefined): void {
    inFlight--;
    if (sock.destroyed) return;
    if (w && w.length <= 0xffff) {
      const frame = Buffer.allocUnsafe(2 + w.length);
      frame.writeUInt16BE(w.length, 0);
      w.copy(frame, 2);
      timer.refresh();
      if (!sock.write(frame)) {
        writeBlocked = true;
        sock.pause();
      }
    }
    // Deferred so a burst of synchronous answers does not recurse through frames().
    if (pending || sock.isPaused() || ended) setImmediate(reading);
  }

  sock.setNoDelay(true);
  sock.on('data', (chunk: Buffer) => {
    pending = pending ? Buffer.concat([pending, chunk]) : chunk;
    frames();
  });
  sock.on('drain', () => {
    writeBlocked = false;
    reading();
  });
  sock.on('end', () => {
    // The client is done sending; answer what is in flight, then close our side.
    ended = true;
    maybeEnd();
  });
  sock.on('error', () => sock.destroy());
  sock.on('close', () => clearTimeout(timer));
}
