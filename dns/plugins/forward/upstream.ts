/**
 * One upstream server: a small pool of connected UDP sockets, TCP on truncation, a timeout per
 * query, and bounded concurrency (at most `maxInFlight` queries outstanding, then a bounded
 * FIFO queue, then immediate refusal). Each upstream has its own limits; there is no lock
 * shared between upstreams or queries.
 *
 * Spoofing resistance (RFC 5452): every query gets a CSPRNG id unused on its socket; sockets
 * are connected (the kernel drops datagrams from any other address or port) and replaced after
 * `rotateAfter` queries so the source port changes too; a response must also repeat the
 * question (name case-insensitively, type, class) or it is ignored and the query keeps waiting.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { DnsMetrics } from '../../metrics.js';
import { Flag } from '../../wire/constants.js';
import { indexMessage, type MessageIndex } from '../../wire/message.js';
import { randomId } from './random.js';
import type { UpstreamAddress } from './resolv-conf.js';
import { tcpExchange } from './tcp.js';

/** Limits of one upstream. */
export interface UpstreamOptions {
  /** Per-query timeout (ms), for UDP and again for the TCP retry. */
  timeoutMs: number;
  /** Queries outstanding at once. */
  maxInFlight: number;
  /** Queries waiting for a slot; beyond this a query fails at once as `overloaded`. */
  maxQueue: number;
  /** UDP sockets (source ports) used round-robin. */
  sockets: number;
  /** Queries after which a socket is replaced by one with a fresh source port. */
  rotateAfter: number;
  metrics: DnsMetrics;
}

/** The question a response must repeat. */
export interface ExpectedQuestion {
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
}

/** Outcome of {@link Upstream.exchange}. Failures are values, never rejections. */
export type ExchangeResult =
  | { ok: true; msg: Buffer; index: MessageIndex }
  | { ok: false; reason: 'timeout' | 'unreachable' | 'overloaded' | 'tcp' | 'closed' };

type Fail = Extract<ExchangeResult, { ok: false }>;

interface Pending {
  question: ExpectedQuestion;
  settle: (r: ExchangeResult) => void;
}

interface PoolSocket {
  sock: Socket;
  ready: Promise<boolean>;
  pending: Map<number, Pending>;
  uses: number;
  retired: boolean;
}

interface Waiter {
  query: Buffer;
  question: ExpectedQuestion;
  at: number;
  resolve: (r: ExchangeResult) => void;
}

const fail = (reason: Fail['reason']): Fail => ({ ok: false, reason });

/** See module doc. Create one per upstream address; {@link close} when done. */
export class Upstream {
  /** `address:port`, the metrics label. */
  readonly label: string;
  /** Until when (ms since epoch) this upstream counts as failing: the forwarder tries it last. */
  failingUntil = 0;
  private inFlight = 0;
  private queue: Waiter[] = [];
  private queueHead = 0;
  private pool: PoolSocket[] = [];
  private turn = 0;
  private closed = false;

  constructor(
    readonly address: UpstreamAddress,
    private readonly o: UpstreamOptions,
  ) {
    this.label = isIPv6(address.address) ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
  }

  /**
   * Sends `query` (a complete message; its id is replaced) and resolves with the matching
   * response, retried over TCP when it came back truncated.
   */
  exchange(query: Buffer, question: ExpectedQuestion): Promise<ExchangeResult> {
    if (this.closed) return Promise.resolve(fail('closed'));
    if (this.inFlight < this.o.maxInFlight) return this.run(query, question);
    if (this.queue.length - this.queueHead < this.o.maxQueue) {
      return new Promise((resolve) => this.queue.push({ query, question, at: Date.now(), resolve }));
    }
    this.o.metrics.upstreamError(this.label, 'overloaded');
    return Promise.resolve(fail('overloaded'));
  }

  /** Fails everything outstanding with `closed` and closes the sockets. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ps of this.pool) this.shutdown(ps);
    this.pool = [];
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i]?.resolve(fail('closed'));
    this.queue = [];
    this.queueHead = 0;
  }

  private async run(query: Buffer, question: ExpectedQuestion): Promise<ExchangeResult> {
    this.inFlight++;
    try {
      const r = await this.udp(query, question);
      if (!r.ok || (r.index.flags & Flag.TC) === 0) return this.noteHealth(r);
      return this.noteHealth(await this.tcp(query, question));
    } finally {
      this.inFlight--;
      this.pump();
    }
  }

  private noteHealth(r: ExchangeResult): ExchangeResult {
    if (r.ok) this.failingUntil = 0;
    else if (r.reason !== 'overloaded' && r.reason !== 'closed') this.failingUntil = Date.now() + 5000;
    return r;
  }

  /** Starts queued queries while there is room; ones that waited longer than the timeout fail. */
  private pump(): void {
    while (this.inFlight < this.o.maxInFlight && this.queueHead < this.queue.length) {
      const w = this.queue[this.queueHead] as Waiter;
      this.queue[this.queueHead++] = undefined as unknown as Waiter;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      if (Date.now() - w.at > this.o.timeoutMs) {
        this.o.metrics.upstreamTimeout(this.label);
        w.resolve(fail('timeout'));
        continue;
      }
      void this.run(w.query, w.question).then(w.resolve);
    }
  }

  private async udp(query: Buffer, question: ExpectedQuestion): Promise<ExchangeResult> {
    const ps = await this.socket();
    if (!ps) {
      this.o.metrics.upstreamError(this.label, 'unreachable');
      return fail('unreachable');
    }
    let id = randomId();
    while (ps.pending.has(id)) id = randomId();
    const buf = Buffer.from(query);
    buf.writeUInt16BE(id, 0);
    this.o.metrics.upstreamQuery(this.label, 'udp');
    const result = new Promise<ExchangeResult>((resolve) => {
      const timer = setTimeout(() => {
        if (ps.pending.get(id)?.settle !== settle) return;
        ps.pending.delete(id);
        this.o.metrics.upstreamTimeout(this.label);
        resolve(fail('timeout'));
        this.closeIfIdle(ps);
      }, this.o.timeoutMs);
      const settle = (r: ExchangeResult): void => {
        clearTimeout(timer);
        resolve(r);
      };
      ps.pending.set(id, { question, settle });
      const onSendError = (): void => {
        if (ps.pending.get(id)?.settle !== settle) return;
        ps.pending.delete(id);
        this.o.metrics.upstreamError(this.label, 'send');
        settle(fail('unreachable'));
        this.closeIfIdle(ps);
      };
      try {
        ps.sock.send(buf, (err) => {
          if (err) onSendError();
        });
      } catch {
        // The socket was shut down between being picked and now.
        onSendError();
      }
    });
    // Rotate after sending, so the socket closes once this and earlier answers are in.
    if (++ps.uses >= this.o.rotateAfter && !ps.retired) this.retire(ps);
    return result;
  }

  private async tcp(query: Buffer, question: ExpectedQuestion): Promise<ExchangeResult> {
    const id = randomId();
    const buf = Buffer.from(query);
    buf.writeUInt16BE(id, 0);
    this.o.metrics.upstreamQuery(this.label, 'tcp');
    const r = await tcpExchange(this.address, buf, this.o.timeoutMs);
    if (!r.ok) {
      if (r.reason === 'timeout') this.o.metrics.upstreamTimeout(this.label);
      else this.o.metrics.upstreamError(this.label, 'tcp');
      return fail(r.reason);
    }
    const index = r.msg.length >= 2 && r.msg.readUInt16BE(0) === id ? matching(r.msg, question) : undefined;
    if (!index) {
      this.o.metrics.upstreamError(this.label, 'mismatch');
      return fail('tcp');
    }
    return { ok: true, msg: r.msg, index };
  }

  /** A ready socket (round-robin over the pool, created lazily), or undefined if none can be had. */
  private async socket(): Promise<PoolSocket | undefined> {
    if (this.pool.length < this.o.sockets) this.pool.push(this.open());
    const ps = this.pool[this.turn++ % this.pool.length] as PoolSocket;
    if (await ps.ready) return ps;
    this.pool = this.pool.filter((p) => p !== ps);
    this.shutdown(ps);
    return undefined;
  }

  private open(): PoolSocket {
    const sock = createSocket(isIPv6(this.address.address) ? 'udp6' : 'udp4');
    const ps: PoolSocket = { sock, ready: Promise.resolve(false), pending: new Map(), uses: 0, retired: false };
    sock.on('message', (msg: Buffer) => this.onMessage(ps, msg));
    // With a connected socket an ICMP port-unreachable surfaces here (ECONNREFUSED): every query
    // on it is going to the same dead port, so fail them now rather than after the timeout.
    sock.on('error', () => {
      this.o.metrics.upstreamError(this.label, 'unreachable');
      for (const p of ps.pending.values()) p.settle(fail('unreachable'));
      ps.pending.clear();
      this.closeIfIdle(ps);
    });
    ps.ready = new Promise<boolean>((resolve) => {
      sock.connect(this.address.port, this.address.address, (err?: Error) => resolve(!err));
    });
    return ps;
  }

  private onMessage(ps: PoolSocket, msg: Buffer): void {
    if (msg.length < 12) return;
    const p = ps.pending.get(msg.readUInt16BE(0));
    if (!p) return; // late (already timed out) or forged: nothing to do
    const index = matching(msg, p.question);
    if (!index) {
      this.o.metrics.upstreamError(this.label, 'mismatch');
      return;
    }
    ps.pending.delete(msg.readUInt16BE(0));
    p.settle({ ok: true, msg, index });
    this.closeIfIdle(ps);
  }

  private retire(ps: PoolSocket): void {
    ps.retired = true;
    this.pool = this.pool.filter((p) => p !== ps);
    this.closeIfIdle(ps);
  }

  private closeIfIdle(ps: PoolSocket): void {
    if ((ps.retired || this.closed) && ps.pending.size === 0) this.shutdown(ps);
  }

  private shutdown(ps: PoolSocket): void {
    ps.retired = true;
    for (const p of ps.pending.values()) p.settle(fail('closed'));
    ps.pending.clear();
    try {
      ps.sock.close();
    } catch {
      // Already closed.
    }
  }
}

/** The index of `msg` if it is a well-formed response to `q`, else undefined. */
function matching(msg: Buffer, q: ExpectedQuestion): MessageIndex | undefined {
  const ix = indexMessage(msg);
  if (!ix || (ix.flags & Flag.QR) === 0 || ix.qdcount !== 1) return undefined;
  if (ix.qname !== q.name || ix.qtype !== q.qtype || ix.qclass !== q.qclass) return undefined;
  return ix;
}
