/**
 * Who may do what on a manager, decided in one place for both listeners:
 *
 * | need      | TLS listener (`--listen`)                        | unix socket (data dir, mode 0600) |
 * |-----------|--------------------------------------------------|-----------------------------------|
 * | operator  | manager token                                    | manager token (its secret)        |
 * | join      | join token (gets a node certificate, nothing else) | join token                      |
 * | agent     | a valid, unrevoked node certificate (mutual TLS) | join token (an agent beside it)   |
 * | watch     | manager token or a node certificate              | manager or join token             |
 *
 * Every refusal is one sentence for the client (401: no or wrong credentials, 403: a credential
 * that is not good for this), one line in the manager's log, and a count by reason
 * (`shoal_manager_auth_failures_total{reason}`). Nothing is written to the store.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { ShoalError } from '../../src/errors.js';
import type { ClusterSecurity } from './index.js';
import { peerIdentity } from './tls-server.js';
import { parseToken, sameSecret } from './tokens.js';

export type Need = 'operator' | 'join' | 'agent' | 'watch';

/** Who a request proved to be. */
export type Principal =
  | { kind: 'operator' }
  | { kind: 'joiner' }
  /** A node by its certificate (TLS) — `cert` is the certificate's subject id. */
  | { kind: 'node'; nodeId: string; fromCurrentCa: boolean }
  /** An agent on the manager's unix socket, with the join token. */
  | { kind: 'local-agent' };

/** A refusal: the error sent to the client and the reason counted. */
export class Refusal extends ShoalError {
  constructor(status: 401 | 403, readonly reason: string, message: string) {
    // 403s carry their reason as the code (SHOAL_ERR_REVOKED, SHOAL_ERR_EXPIRED, ...): an agent
    // stops retrying on those it cannot cure by itself.
    super(status === 401 ? 'Unauthorized' : 'Forbidden', status === 401 ? 'UNAUTHORIZED' : reason.toUpperCase(), message);
  }
}

/** How a presented token compares with an expected one. */
function tokenMatch(given: string, expected: string, fingerprints: readonly string[]): 'yes' | 'other-ca' | 'no' {
  const g = parseToken(given);
  const e = parseToken(expected);
  if (!g || !e) return sameSecret(given, expected) ? 'yes' : 'no';
  if (!sameSecret(g.secret, e.secret)) return 'no';
  return fingerprints.includes(g.fingerprint) ? 'yes' : 'other-ca';
}

const bearerOf = (h: string | undefined): string | undefined => /^Bearer (.+)$/.exec(h ?? '')?.[1];

/**
 * Authenticates `req` for `need` (see the table above); throws a {@link Refusal} after logging
 * and counting it.
 */
export function authorize(req: IncomingMessage, sec: ClusterSecurity, need: Need, log: (msg: string) => void): Principal {
  try {
    return decide(req, sec, need);
  } catch (e) {
    if (e instanceof Refusal) {
      sec.failures.count('auth', e.reason);
      const url = (req.url ?? '/').split('?')[0];
      log(`refused ${req.method ?? 'GET'} ${url} from ${req.socket.remoteAddress ?? 'the unix socket'}: ${e.message}`);
    }
    throw e;
  }
}

function decide(req: IncomingMessage, sec: ClusterSecurity, need: Need): Principal {
  const c = sec.cluster;
  const fps = sec.acceptedFingerprints;
  const bearer = bearerOf(req.headers.authorization);
  const asManager = bearer ? tokenMatch(bearer, c.managerToken, fps) : 'no';
  const asJoin = bearer ? tokenMatch(bearer, c.joinToken, fps) : 'no';
  const tls = (req.socket as TLSSocket).encrypted === true;

  if (!tls) {
    // No TLS here, so nothing for the token's CA fingerprint to pin: the secret is what counts
    // (a CLI keeps working across a CA rotation that re-pins the tokens).
    const secretOf = (t: string | undefined): string | undefined => (t ? parseToken(t)?.secret ?? t : undefined);
    const given = secretOf(bearer);
    const asManager = given !== undefined && sameSecret(given, secretOf(c.managerToken) ?? '') ? 'yes' : 'no';
    const asJoin = given !== undefined && sameSecret(given, secretOf(c.joinToken) ?? '') ? 'yes' : 'no';
    if (asManager === 'yes' && need !== 'join' && need !== 'agent') return { kind: 'operator' };
    if (asJoin === 'yes' && (need === 'join' || need === 'agent' || need === 'watch')) return { kind: 'local-agent' };
    throw new Refusal(401, bearer ? 'wrong_token' : 'no_token', 'missing or wrong token: pass the manager token as "Authorization: Bearer <token>" (shoal reads it from the data dir or SHOAL_TOKEN)');
  }

  const id = peerIdentity(req.socket as TLSSocket, c.id);
  if (id.kind === 'refused') throw new Refusal(403, id.reason, id.message);
  if (id.kind === 'node') {
    const r = sec.revoked.get(id.nodeId);
    if (r) throw new Refusal(403, 'revoked', `node ${id.nodeId} ('${r.name}') was removed from the cluster at ${r.revokedAt} (shoal node rm): its certificate is revoked; to join again as a new node, delete the agent's tls/ directory and start it with a join token`);
  }
  const node = id.kind === 'node' ? { kind: 'node' as const, nodeId: id.nodeId, fromCurrentCa: sec.isFromCurrentCa(id.cert) } : undefined;
  const otherCa = 'the token pins another CA than this cluster\'s (a token of another cluster, or from before a CA rotation): get the current one (shoal join-token, or the manager\'s data dir)';
  const noToken = (what: string): Refusal => new Refusal(401, bearer ? (asManager === 'other-ca' || asJoin === 'other-ca' ? 'other_ca' : 'wrong_token') : 'no_token',
    bearer ? (asManager === 'other-ca' || asJoin === 'other-ca' ? otherCa : `wrong token: ${what}`) : `no credentials: ${what}`);

  switch (need) {
    case 'operator':
      if (asManager === 'yes') return { kind: 'operator' };
      if (asJoin === 'yes') throw new Refusal(403, 'join_token_as_manager', 'the join token only joins nodes (it gets a node certificate): the API needs the manager token');
      if (node) throw new Refusal(403, 'node_cert_as_manager', `a node certificate (node ${node.nodeId}) does not give access to the API: pass the manager token`);
      throw noToken('pass the manager token as "Authorization: Bearer <token>" (SHOAL_TOKEN, or the manager\'s data dir)');
    case 'join':
      if (asJoin === 'yes') return { kind: 'joiner' };
      if (asManager === 'yes') throw new Refusal(403, 'manager_token_as_join', 'the manager token does not join nodes: use the join token (shoal join-token)');
      throw noToken('joining needs the join token as "Authorization: Bearer <token>" (shoal join-token prints it)');
    case 'agent':
      if (node) return node;
      if (asJoin === 'yes') throw new Refusal(401, 'join_token_as_agent', 'an agent session over TLS needs the node certificate: the join token only gets one (POST /v1/nodes/join)');
      if (asManager === 'yes') throw new Refusal(401, 'manager_token_as_agent', 'the manager token does not open agent sessions: an agent presents its node certificate (mutual TLS)');
      throw noToken('an agent session needs its node certificate (mutual TLS)');
    case 'watch':
      if (asManager === 'yes') return { kind: 'operator' };
      if (node) return node;
      if (asJoin === 'yes') throw new Refusal(403, 'join_token_as_watch', 'the join token only joins nodes; the watch stream needs the manager token or a node certificate');
      throw noToken('the watch stream needs the manager token or a node certificate');
  }
}
