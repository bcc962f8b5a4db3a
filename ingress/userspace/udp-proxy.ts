/**
 * The UDP frontend of the userspace dataplane: one dgram socket on the virtual service's
 * address:port, and one session per client address:port.
 *
 * A session is created by a client's first datagram (the backend is picked then) and owns one
 * upstream socket connected to that backend, so the kernel delivers only that backend's replies
 * to it; replies are sent back to the client from the frontend socket, i.e. from the address the
 * client sent to. A session ends after `idleMs` without a datagram either way, on an ICMP error
 * from the backend (the next datagram picks again), and when its backend is removed: so no
 * datagram reaches a removed backend. Weight 0 keeps existing sessions. No backend: datagrams
 * are dropped (counted in {@link UdpFrontend.dropped}).
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Backend, Flow, Frontend, Pool } from './load-balancer.js';

/** Options of {@link UdpFrontend}. */
export interface UdpProxyOptions {
  /** A session ends after this long without traffic (ms). */
  idleMs: number;
  /** Datagrams held per session while its upstream socket connects; more are dropped. */
  queueLimit?: number;
  /** Sessions (one socket each) at most; a new client beyond it is dropped. Default 16384. */
  maxSessions?: number;
  log: (msg: string, err?: unknown) => void;
}

/** A dgram socket whose sends skip `dns.lookup` (addresses here are always literal). */
function literalSocket(address: string): UdpSocket {
  const v6 = isIPv6(address);
  const family = v6 ? 6 : 4;
  return createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: (a, _o, cb) => cb(null, a, family) });
}

/** A bound UDP virtual service. Lifecycle: `listen()` once, then `close()` or `destroy()`. */
export class UdpFrontend implements Frontend {
  readonly sessions = new Map<string, UdpSession>();
  readonly socket: UdpSocket;
  /** Datagrams dropped: no backend, too many sessions, or a session's connect queue was full. */
  dropped = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private bound = false;

  constructor(
    readonly key: string,
    private readonly address: string,
    private readonly port: number,
    readonly pool: Pool,
    readonly o: UdpProxyOptions,
  ) {
    this.socket = literalSocket(address);
    this.socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.onMessage(msg, rinfo));
  }

  /** Binds; rejects with the system error (EADDRINUSE, EADDRNOTAVAIL, EACCES). */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      this.socket.once('error', fail);
      this.socket.bind({ address: this.address, port: this.port, exclusive: true }, () => {
        this.socket.removeListener('error', fail);
        // Send failures (buffer full, no route): the datagram is lost, as it would be on the wire.
        this.socket.on('error', (err) => this.o.log(`${this.key}: send failed`, err));
        this.bound = true;
        const every = Math.min(Math.max(this.o.idleMs / 4, 50), 5000);
        this.sweeper = setInterval(() => this.sweep(), every);
        this.sweeper.unref();
        resolve();
      });
    });
  }

  get openFlows(): number {
    return this.sessions.size;
  }

  /** Ends the sessions of a removed backend. */
  backendRemoved(b: Backend): void {
    for (const f of [...b.flows]) f.destroy();
  }

  /** Unbinds; sessions end with it (their replies would have no socket to leave from). */
  close(): void {
    this.destroy();
  }

  destroy(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const s of [...this.sessions.values()]) s.destroy();
    if (this.bound) {
      this.bound = false;
      this.socket.close();
    }
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const id = `${rinfo.address} ${rinfo.port}`;
    let s = this.sessions.get(id);
    if (s === undefined) {
      if (this.sessions.size >= (this.o.maxSessions ?? 16384)) {
        this.dropped++;
        return;
      }
      const b = this.pool.pick(rinfo.address);
      if (!b) {
        this.dropped++;
        return;
      }
      s = new UdpSession(this, id, rinfo.address, rinfo.port, b);
      this.sessions.set(id, s);
    }
    s.send(msg);
  }

  private sweep(): void {
    const before = Date.now() - this.o.idleMs;
    for (const s of this.sessions.values()) if (s.lastSeen <= before) s.destroy();
  }
}

/** One client address:port and its upstream socket. */
class UdpSession implements Flow {
  lastSeen = Date.now();
  private readonly up: UdpSocket;
  private queue: Buffer[] | undefined = [];
  private sent = 0;
  private received = 0;
  private ended = false;

  constructor(
    private readonly fe: UdpFrontend,
    private readonly id: string,
    private readonly clientAddress: string,
    private readonly clientPort: number,
    private readonly backend: Backend,
  ) {
    backend.flows.add(this);
    backend.total++;
    const up = literalSocket(backend.address);
    this.up = up;
    up.on('message', (reply: Buffer) => {
      this.lastSeen = Date.now();
      this.received += reply.length;
      fe.socket.send(reply, clientPort, clientAddress);
    });
    // ECONNREFUSED (ICMP port unreachable) and the like: the session ends, the next datagram picks again.
    up.on('error', () => this.destroy());
    up.connect(backend.port, backend.address, () => {
      const q = this.queue ?? [];
      this.queue = undefined;
      if (!this.ended) for (const m of q) up.send(m);
    });
  }

  send(msg: Buffer): void {
    this.lastSeen = Date.now();
    this.sent += msg.length;
    if (this.queue === undefined) this.up.send(msg);
    else if (this.queue.length < (this.fe.o.queueLimit ?? 64)) this.queue.push(msg);
    else this.fe.dropped++;
  }

  bytes(): number {
    return this.sent + this.received;
  }

  destroy(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.up.close();
    } catch {
      // Already closed by an error.
    }
    if (this.fe.sessions.get(this.id) === this) this.fe.sessions.delete(this.id);
    this.backend.ended(this);
    this.fe.pool.release(this.clientAddress, this.lastSeen);
  }
}
