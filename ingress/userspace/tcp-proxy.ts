/**
 * The TCP frontend of the userspace dataplane: one `net.Server` on the virtual service's
 * address:port; each accepted connection is spliced to a backend picked for it.
 *
 * Per connection: the client socket stays paused (`pauseOnConnect`) until the backend connection
 * is up, then each side's data is written to the other, with backpressure. A connect that fails (refused, unreachable, or
 * slower than `connectTimeoutMs`) is retried on the next backend, up to `connectAttempts`
 * backends; when none is left (or the service has none) the client gets a RST. Half-close is
 * passed through (both sockets `allowHalfOpen`: a FIN from one side ends the other side's
 * writing only). An error on either side destroys both; a reset is passed on as a reset.
 *
 * Backends see the proxy's own address as the source: masquerade is inherent. A connection keeps
 * its backend until it ends, also when the backend is set to weight 0 or removed (it is left to
 * finish; only `destroy()` cuts it).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Backend, Flow, Frontend, Pool } from './load-balancer.js';

/** Options of {@link TcpFrontend}. */
export interface TcpProxyOptions {
  connectTimeoutMs: number;
  /** Backends tried per connection before it is refused. */
  connectAttempts: number;
  log: (msg: string, err?: unknown) => void;
}

/** Close with a RST where Node has `resetAndDestroy` (>= 16.17), else a plain close. */
export function reset(sock: Socket): void {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

/** A listening TCP virtual service. Lifecycle: `listen()` once, then `close()` or `destroy()`. */
export class TcpFrontend implements Frontend {
  readonly flows = new Set<TcpFlow>();
  private readonly server: Server;
  private listening = false;

  constructor(
    readonly key: string,
    private readonly address: string,
    private readonly port: number,
    readonly pool: Pool,
    readonly o: TcpProxyOptions,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    this.server.on('connection', (client: Socket) => new TcpFlow(this, client).start());
  }

  /** Binds; rejects with the system error (EADDRINUSE, EADDRNOTAVAIL, EACCES). */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      this.server.once('error', fail);
      this.server.listen({ host: this.address, port: this.port, exclusive: true, backlog: 1024 }, () => {
        this.server.removeListener('error', fail);
        // Later errors are accept failures (EMFILE...): the listener carries on.
        this.server.on('error', (err) => this.o.log(`${this.key}: accept failed`, err));
        this.listening = true;
        resolve();
      });
    });
  }

  get openFlows(): number {
    return this.flows.size;
  }

  /** TCP connections to a removed backend are left to finish. */
  backendRemoved(_b: Backend): void {}

  /** Stops accepting; open connections go on until they end. */
  close(): void {
    if (!this.listening) return;
    this.listening = false;
    this.server.close();
  }

  /** Stops accepting and destroys every connection. */
  destroy(): void {
    this.close();
    for (const f of [...this.flows]) f.destroy();
  }
}

/**
 * Copies `from`'s data to `to` with backpressure (fewer listeners and ticks than `pipe`), and
 * its FIN: `to` is half-closed, or closed outright when its own peer already sent a FIN and
 * nothing is left to write (one close(2), where `end()` costs a shutdown(2) and a close later).
 */
function forward(from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.once('end', () => {
    if (to.destroyed) return;
    if (to.readableEnded && to.writableLength === 0) to.destroy();
    else to.end();
  });
}

type FlowState = 'connecting' | 'open' | 'done';

/** One client connection and its backend connection. */
class TcpFlow implements Flow {
  private upstream: Socket | undefined;
  private backend: Backend | undefined;
  private tried: Set<string> | undefined;
  private attempts = 0;
  private state: FlowState = 'connecting';
  private readonly clientAddress: string;

  constructor(private readonly fe: TcpFrontend, private readonly client: Socket) {
    // getpeername is a syscall: only made when the scheduler or affinity needs the address.
    this.clientAddress = fe.pool.needsClient ? (client.remoteAddress ?? '') : '';
  }

  start(): void {
    const client = this.client;
    this.fe.flows.add(this);
    client.on('error', (err: NodeJS.ErrnoException) => this.failed(client, err));
    client.once('close', () => {
      if (this.state === 'connecting') this.upstream?.destroy(); // the client gave up first
      this.settle();
    });
    this.connectNext();
  }

  bytes(): number {
    return this.client.bytesRead + this.client.bytesWritten;
  }

  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
    this.settle();
  }

  private connectNext(): void {
    const { pool, o } = this.fe;
    const b = pool.pick(this.clientAddress, this.tried);
    if (!b) {
      reset(this.client);
      this.settle();
      return;
    }
    this.backend = b;
    b.flows.add(this);
    const up = connect({ host: b.address, port: b.port, noDelay: true, allowHalfOpen: true, timeout: o.connectTimeoutMs });
    this.upstream = up;
    const onError = (err: NodeJS.ErrnoException): void => {
      up.removeListener('timeout', onTimeout);
      up.removeListener('connect', onConnect);
      up.destroy();
      this.connectFailed(b, err);
    };
    const onTimeout = (): void => onError(Object.assign(new Error(`connect timed out after ${o.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
    const onConnect = (): void => {
      up.removeListener('error', onError);
      up.removeListener('timeout', onTimeout);
      up.setTimeout(0);
      if (this.client.destroyed) {
        up.destroy();
        this.settle();
        return;
      }
      this.state = 'open';
      b.total++;
      b.failing = false;
      up.on('error', (err: NodeJS.ErrnoException) => this.failed(up, err));
      up.once('close', () => this.settle());
      forward(this.client, up);
      forward(up, this.client);
      this.client.resume();
    };
    up.once('error', onError);
    up.once('timeout', onTimeout);
    up.once('connect', onConnect);
  }

  private connectFailed(b: Backend, err: NodeJS.ErrnoException): void {
    const { pool, o, key } = this.fe;
    b.flows.delete(this);
    pool.release(this.clientAddress);
    this.backend = undefined;
    this.upstream = undefined;
    if (!b.failing) {
      b.failing = true; // logged once until a connect to it succeeds again
      o.log(`${key}: backend ${b.id} unreachable (${err.code ?? err.message}), trying the next`);
    }
    if (this.client.destroyed) return this.settle();
    (this.tried ??= new Set()).add(b.id);
    if (++this.attempts < o.connectAttempts) this.connectNext();
    else {
      reset(this.client);
      this.settle();
    }
  }

  /** An error on one side: the other side goes too (a reset stays a reset). */
  private failed(side: Socket, err: NodeJS.ErrnoException): void {
    const other = side === this.client ? this.upstream : this.client;
    side.destroy();
    if (!other) return;
    if (err.code === 'ECONNRESET') reset(other);
    else other.destroy();
  }

  /** Books the flow as ended once both sockets are closed. Idempotent. */
  private settle(): void {
    if (this.state === 'done') return;
    if (!this.client.destroyed) return;
    if (this.upstream && !this.upstream.destroyed) return;
    this.state = 'done';
    this.fe.flows.delete(this);
    const b = this.backend;
    if (b) {
      b.ended(this);
      this.fe.pool.release(this.clientAddress);
    }
  }
}
