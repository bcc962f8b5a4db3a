/**
 * The server side of the manager's TLS listener.
 *
 * {@link listenTls}: the TCP listener is a plain `net.Server` in front of the HTTPS server. It
 * reads the first byte of each connection: a TLS handshake (0x16) goes on to the HTTPS server;
 * anything else (plain HTTP to the TLS port, `curl http://...`) gets one plain-text `400` that
 * says to use https, and is closed — as Go's servers do — instead of a silent reset.
 *
 * {@link peerIdentity}: what a client certificate proves, after OpenSSL checked it against the
 * trusted CAs (`requestCert`, `rejectUnauthorized: false`, so every refusal can be explained
 * in an HTTP answer and the log rather than as a bare TLS alert).
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { WORKER_ROLE } from './tls-client.js';

/** TLS handshake record type: the first byte of every TLS connection. */
const HANDSHAKE = 0x16;

const PLAIN_HTTP_ANSWER = (): string => {
  const body = JSON.stringify({ code: 'SHOAL_ERR_TLS_REQUIRED', message: 'this manager port speaks TLS only: use https:// (the CLI and agents pin the cluster CA from the token)' }) + '\n';
  return `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
};

/** Options of {@link listenTls}. */
export interface TlsFrontOptions {
  /** Called for a connection that did not start with a TLS handshake (after it was answered). */
  onPlain?: (remote: string) => void;
  /** How long a connection may stay silent before its first byte, ms (default 10 s). */
  firstByteTimeoutMs?: number;
}

/** Every connection of each front (its TLS socket owns the file descriptor once handed over). */
const frontSockets = new WeakMap<NetServer, Set<Socket>>();

/** Stops listening and destroys every connection the front accepted; resolves once closed. */
export function closeTlsFront(front: NetServer): Promise<void> {
  const closed = new Promise<void>((resolve) => front.close(() => resolve()));
  for (const s of frontSockets.get(front) ?? []) s.destroy();
  return closed;
}

/** Listens on `where` and hands TLS connections to `https`; see the module doc. */
export function listenTls(https: HttpsServer, where: { host: string; port: number }, o: TlsFrontOptions = {}): Promise<NetServer> {
  const sockets = new Set<Socket>();
  const front = createNetServer((socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setTimeout(o.firstByteTimeoutMs ?? 10_000, () => socket.destroy());
    socket.once('error', () => socket.destroy());
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (!first) return socket.destroy();
      socket.setTimeout(0);
      socket.unshift(first);
      if (first[0] === HANDSHAKE) {
        https.emit('connection', socket);
        return;
      }
      o.onPlain?.(`${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`);
      socket.end(PLAIN_HTTP_ANSWER());
    });
  });
  frontSockets.set(front, sockets);
  return new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(where, () => { front.off('error', reject); resolve(front); });
  });
}

/** What a TLS client proved with its certificate. */
export type PeerIdentity =
  | { kind: 'none' }
  | { kind: 'refused'; reason: 'expired' | 'untrusted' | 'wrong_cluster' | 'wrong_role'; message: string }
  | { kind: 'node'; nodeId: string; cert: X509Certificate };

const field = (subject: string, key: string): string | undefined => new RegExp(`(?:^|\\n)${key}=([^\\n]*)`).exec(subject)?.[1];

/**
 * Reads the client certificate of `socket` (undefined when none was presented): refused with a
 * reason unless OpenSSL verified it against the trusted CAs, it names `clusterId` and it is a
 * node's. Revocation is the caller's check (it knows the list).
 */
export function peerIdentity(socket: TLSSocket, clusterId: string): PeerIdentity {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return { kind: 'none' };
  const cert = new X509Certificate(peer.raw);
  const cn = field(cert.subject, 'CN') ?? '?';
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown');
    if (code === 'CERT_HAS_EXPIRED') return { kind: 'refused', reason: 'expired', message: `the certificate of node ${cn} expired at ${new Date(cert.validTo).toISOString()}: the node must join again (delete its data dir's tls/ and start the agent with a join token)` };
    return { kind: 'refused', reason: 'untrusted', message: `the client certificate (CN ${cn}) is not from this cluster's CA (${code})` };
  }
  if (field(cert.subject, 'O') !== clusterId) return { kind: 'refused', reason: 'wrong_cluster', message: `the client certificate (CN ${cn}) is for cluster ${field(cert.subject, 'O') ?? '?'}, not ${clusterId}` };
  const role = field(cert.subject, 'OU') ?? '';
  if (role !== WORKER_ROLE) return { kind: 'refused', reason: 'wrong_role', message: `the client certificate (CN ${cn}) is a ${role || 'role-less'} certificate, not a node's` };
  return { kind: 'node', nodeId: cn, cert };
}
