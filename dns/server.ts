/**
 * `DnsServer`: one listening address, UDP and TCP on the same port, feeding a handler chain.
 *
 * Robustness contract: nothing a client sends can throw out of the server or stall it. Handler
 * exceptions and rejections become SERVFAIL (counted as errors); socket errors are counted and
 * the socket carries on; TCP connections are bounded in number, pipelining and idle time.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import { DnsRequest, isPending, type Handler, type HandlerResult, type Scope } from './handler.js';
import { noopMetrics, type DnsMetrics } from './metrics.js';
import { toWire } from './respond.js';
import { serveTcpConnection } from './tcp-connection.js';
import { DEFAULT_UDP_PAYLOAD, Rcode } from './wire/constants.js';
import { truncateToFit } from './wire/response.js';

/** Options of {@link DnsServer}. */
export interface DnsServerOptions {
  /** Address to listen on (`127.0.0.11`, a network's gateway, `::1`). */
  address: string;
  /** Port; 0 picks a free one (the same for UDP and TCP). */
  port: number;
  /** The chain, usually from `standardChain()`. */
  handler: Handler;
  /** Networks a query sees when {@link scopeOfClient} gives none. */
  scope: Scope;
  /** Per-client scope (e.g. from the task owning the source address); undefined falls back to {@link scope}. */
  scopeOfClient?: (address: string) => Scope | undefined;
  /** EDNS payload size advertised, and the cap on UDP responses. Default 1232. */
  udpPayloadSize?: number;
  /** Simultaneous TCP connections; more are closed at once. Default 256. */
  maxTcpConnections?: number;
  /** TCP idle timeout (ms). Default 10000. */
  tcpIdleTimeoutMs?: number;
  /** Queries in flight per TCP connection. Default 32. */
  maxTcpPipeline?: number;
  /** Largest TCP query frame accepted. Default 4096. */
  maxQuerySize?: number;
  /** Kernel receive buffer for the UDP socket (bytes). Default 4 MiB (capped by net.core.rmem_max). */
  udpRecvBufferSize?: number;
  metrics?: DnsMetrics;
}

/**
 * A DNS listener. Lifecycle: `start()` once, then `close()` once; `close()` stops accepting,
 * ends TCP connections and drops responses still being resolved.
 */
export class DnsServer {
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;
  private readonly connections = new Set<Socket>();
  private readonly o: DnsServerOptions;
  private readonly payload: number;
  private readonly metrics: DnsMetrics;
  private boundPort = 0;
  private closed = false;

  constructor(options: DnsServerOptions) {
    this.o = options;
    this.payload = options.udpPayloadSize ?? DEFAULT_UDP_PAYLOAD;
    this.metrics = options.metrics ?? noopMetrics;
  }

  /** The bound port (after {@link start}). */
  get port(): number {
    return this.boundPort;
  }

  /** Binds UDP and TCP. With port 0, retries until one free port serves both. */
  async start(): Promise<{ address: string; port: number }> {
    const attempts = this.o.port === 0 ? 20 : 1;
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      const udp = this.createUdp();
      try {
        const port = await bindUdp(udp, this.o.address, this.o.port);
        try {
          this.tcp = await this.listenTcp(port);
        } catch (e) {
          udp.close();
          lastError = e;
          continue;
        }
        this.udp = udp;
        this.boundPort = port;
        try {
          udp.setRecvBufferSize(this.o.udpRecvBufferSize ?? 4 << 20);
        } catch {
          // Best effort: the kernel caps it at net.core.rmem_max anyway.
        }
        return { address: this.o.address, port };
      } catch (e) {
        lastError = e;
        try {
          udp.close();
        } catch {
          // Never bound.
        }
        if (this.o.port !== 0) break;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }

  /** Stops listening and closes every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.connections) c.destroy();
    const tcp = this.tcp;
    await Promise.all([
      new Promise<void>((resolve) => (tcp ? tcp.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => {
        if (!this.udp) return resolve();
        try {
          this.udp.close(() => resolve());
        } catch {
          resolve();
        }
      }),
    ]);
  }

  private scopeFor(address: string): Scope {
    return this.o.scopeOfClient?.(address) ?? this.o.scope;
  }

  /** Runs the chain; a throw or rejection becomes SERVFAIL. */
  private run(req: DnsRequest): Promise<HandlerResult> | HandlerResult {
    try {
      const r = this.o.handler(req);
      if (isPending(r)) {
        return r.catch(() => {
          this.metrics.error('handler');
          return Rcode.SERVFAIL;
        });
      }
      return r;
    } catch {
      this.metrics.error('handler');
      return Rcode.SERVFAIL;
    }
  }

  private wire(req: DnsRequest, r: HandlerResult): Buffer | undefined {
    try {
      return toWire(req, r);
    } catch {
      this.metrics.error('encode');
      return undefined;
    }
  }

  private createUdp(): UdpSocket {
    const v6 = isIPv6(this.o.address);
    const family = v6 ? 6 : 4;
    const sock = createSocket({
      type: v6 ? 'udp6' : 'udp4',
      // Client addresses are always literal: skip dns.lookup and its extra tick per send.
      lookup: (address, _opts, cb) => cb(null, address, family),
    });
    const send = (req: DnsRequest, r: HandlerResult): void => {
      const w = this.wire(req, r);
      if (!w || this.closed) return;
      try {
        sock.send(w, req.clientPort, req.clientAddress);
      } catch {
        this.metrics.error('udp_send');
      }
    };
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const req = new DnsRequest(msg, 'udp', rinfo.address, rinfo.port, this.scopeFor(rinfo.address), this.payload);
      const r = this.run(req);
      if (isPending(r)) void r.then((v) => send(req, v));
      else send(req, r);
    });
    // Send failures (no route, buffer full) and ICMP errors: count and carry on.
    sock.on('error', () => this.metrics.error('udp'));
    return sock;
  }

  private listenTcp(port: number): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    server.maxConnections = this.o.maxTcpConnections ?? 256;
    const limits = {
      idleTimeoutMs: this.o.tcpIdleTimeoutMs ?? 10_000,
      maxPipeline: this.o.maxTcpPipeline ?? 32,
      maxQuerySize: this.o.maxQuerySize ?? 4096,
    };
    server.on('connection', (sock: Socket) => {
      this.connections.add(sock);
      sock.on('close', () => this.connections.delete(sock));
      const address = sock.remoteAddress ?? '';
      const clientPort = sock.remotePort ?? 0;
      const scope = this.scopeFor(address);
      serveTcpConnection(
        sock,
        (msg) => {
          const req = new DnsRequest(msg, 'tcp', address, clientPort, scope, this.payload);
          const r = this.run(req);
          const out = (v: HandlerResult): Buffer | undefined => {
            const w = this.wire(req, v);
            return w && w.length > 0xffff ? truncateToFit(w, 0xffff) : w;
          };
          return isPending(r) ? r.then(out) : out(r);
        },
        limits,
        (kind) => this.metrics.error(kind),
      );
    });
    server.on('drop', () => this.metrics.error('tcp_max_connections'));
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen({ host: this.o.address, port, exclusive: true }, () => {
        server.off('error', onError);
        server.on('error', () => this.metrics.error('tcp_server'));
        resolve(server);
      });
    });
  }
}

function bindUdp(sock: UdpSocket, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    sock.once('error', onError);
    sock.bind({ address, port, exclusive: true }, () => {
      sock.off('error', onError);
      resolve(sock.address().port);
    });
  });
}
