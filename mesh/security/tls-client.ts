/**
 * The client side of the manager's TLS: how the CLI and agents reach a manager's TCP listener.
 *
 * Two ways to trust the manager, neither using the system trust store:
 * - **pinned** (the CLI, and an agent's first join, holding only a URL and a token): the
 *   server's chain must lead, signature by signature, to a CA certificate whose SHA-256 is the
 *   token's fingerprint, and the leaf must be a manager's (OU `shoal-manager`). The check runs
 *   on the finished handshake *before* the socket is handed to HTTP or WebSocket, so nothing
 *   (no token) is sent to a server that fails it.
 * - **bundle** (an agent after joining): OpenSSL verifies the chain against the CA certificates
 *   the agent keeps (`ca`), plus the same role check; the agent presents its node certificate.
 *
 * Hostnames are not checked (Swarm does the same: every manager of the cluster is equally
 * trusted; the role and the CA are what matter). Servers carry their addresses as SANs anyway,
 * for tools like `curl --cacert`.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { connect as tlsConnect, type ConnectionOptions, type DetailedPeerCertificate, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { ShoalError } from '../../src/errors.js';
import { base32 } from './tokens.js';

/** OU of managers' server certificates. */
export const MANAGER_ROLE = 'shoal-manager';
/** OU of node certificates. */
export const WORKER_ROLE = 'shoal-worker';

/** How a client trusts the manager, and what it presents. */
export interface ClientTrust {
  /** Base32 CA fingerprints from tokens (pinned mode). */
  pins?: readonly string[];
  /** CA certificates, PEM (bundle mode). */
  cas?: readonly string[];
  /** The node certificate and key to present (agents). */
  cert?: { certPem: string; keyPem: string };
}

const tlsError = (msg: string): ShoalError => new ShoalError('Unavailable', 'TLS_UNTRUSTED', msg);

/** The OU of a peer certificate's subject. */
const ouOf = (c: PeerCertificate): string | undefined => {
  const ou = (c.subject as unknown as Record<string, string | string[] | undefined>)['OU'];
  return Array.isArray(ou) ? ou[0] : ou;
};

/** Checks that a server certificate is a manager's (for `checkServerIdentity`). */
export function checkManagerRole(_host: string, cert: PeerCertificate): Error | undefined {
  return ouOf(cert) === MANAGER_ROLE ? undefined : tlsError(`the server's certificate is not a Shoal manager's (OU ${ouOf(cert) ?? 'none'}, want ${MANAGER_ROLE})`);
}

/**
 * Checks a finished handshake against pinned CA fingerprints: leaf valid now and a manager's,
 * each link signed by the next, ending at a CA whose fingerprint is pinned. Returns the
 * problem as a sentence, or undefined when the chain is good.
 */
export function pinProblem(peer: DetailedPeerCertificate, pins: readonly string[], now = Date.now()): string | undefined {
  if (!peer.raw) return 'the server presented no certificate';
  const path: X509Certificate[] = [];
  const seen = new Set<string>();
  for (let c: DetailedPeerCertificate | undefined = peer; c?.raw && path.length < 6; c = c.issuerCertificate) {
    const fp = c.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    path.push(new X509Certificate(c.raw));
  }
  const leaf = path[0] as X509Certificate;
  if (Date.parse(leaf.validTo) < now || Date.parse(leaf.validFrom) > now) return `the server's certificate is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`;
  if (!/(^|\n)OU=shoal-manager(\n|$)/.test(leaf.subject)) return 'the server\'s certificate is not a Shoal manager\'s';
  const fps: string[] = [];
  for (let i = 0; i + 1 < path.length; i++) {
    const child = path[i] as X509Certificate;
    const parent = path[i + 1] as X509Certificate;
    if (!parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey)) break;
    if (Date.parse(parent.validTo) < now) break;
    const fp = base32(createHash('sha256').update(parent.raw).digest());
    fps.push(fp);
    if (pins.includes(fp)) return undefined;
  }
  const shown = fps.length ? fps.map((f) => `${f.slice(0, 12)}…`).join(', ') : 'none';
  return `the server's certificate does not lead to the CA the token pins (${pins.map((p) => `${p.slice(0, 12)}…`).join(', ')}; the server's chain has ${shown}): another cluster, someone in the middle, or the cluster's CA was rotated (get a current token)`;
}

/** Node's TLS options for a client with `trust`, without where to connect. */
export function tlsClientOptions(trust: ClientTrust): ConnectionOptions {
  const o: ConnectionOptions = { minVersion: 'TLSv1.2' };
  if (trust.cert) { o.cert = trust.cert.certPem; o.key = trust.cert.keyPem; }
  if (trust.cas?.length) {
    o.ca = [...trust.cas];
    o.checkServerIdentity = checkManagerRole;
  } else {
    // Verified by pinProblem on the finished handshake instead (there is no CA certificate yet).
    o.rejectUnauthorized = false;
  }
  return o;
}

type Oncreate = (err: Error | null, socket?: Socket) => void;

/**
 * A `createConnection` for node:http(s) and `ws`: connects with TLS, verifies the manager as
 * {@link ClientTrust} says and only then hands over the socket (an error otherwise: nothing
 * was sent).
 */
export function tlsConnector(trust: ClientTrust): (opts: { host?: string | null; hostname?: string | null; port?: number | string | null; servername?: string }, oncreate: Oncreate) => undefined {
  return (opts, oncreate) => {
    const host = (opts.hostname ?? opts.host ?? 'localhost').replace(/^\[|\]$/g, '');
    const socket: TLSSocket = tlsConnect({ ...tlsClientOptions(trust), host, port: Number(opts.port), ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }) });
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      socket.off('error', onError);
      if (err) {
        socket.destroy();
        oncreate(err);
      } else oncreate(null, socket);
    };
    const onError = (e: Error): void => finish(e);
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      if (!trust.cas?.length) {
        const problem = pinProblem(socket.getPeerCertificate(true), trust.pins ?? []);
        if (problem) return finish(tlsError(`manager at ${host}:${String(opts.port)}: ${problem}`));
      }
      finish(null);
    });
    return undefined;
  };
}
