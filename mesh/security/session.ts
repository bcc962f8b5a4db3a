/**
 * The security side of one agent session on the manager (mesh/api/agent-session.ts):
 *
 * - {@link checkClaim}: a node certificate is good for its own node only. The node id and name
 *   an agent claims (in the upgrade URL `?node=ID&name=NAME`, and again in its join message)
 *   must be the certificate's: another node's name, or another id, is refused (403, or close
 *   4403 once the WebSocket is open) before anything is written.
 * - {@link SessionSecurity}: certificate renewal over the open session (`{type:"renew", csr}` ->
 *   `{type:"certificate", certificate, ca, notAfter}`), the trusted CAs pushed when they change
 *   (`{type:"ca", ca, renew}`: during a CA rotation every agent is asked to renew), and the
 *   session closed (4403) when its node is revoked.
 */
import type { WebSocket } from 'ws';
import { nameKey } from '../../src/model/keys.js';
import type { Store } from '../../src/store/types.js';
import { getObject } from '../manager/objects.js';
import { Refusal } from './auth.js';
import type { ClusterSecurity } from './index.js';

/** Close code for a refused identity (the WebSocket's 403). */
export const CLOSE_FORBIDDEN = 4403;

/** What the session's TLS peer proved. */
export interface SessionIdentity { nodeId: string; fromCurrentCa: boolean }

/**
 * Refuses (a {@link Refusal} 403, `identity_mismatch`) a node certificate of `certNodeId` used
 * to act as another node: another id, or a name that is another node's (or not this node's).
 */
export async function checkClaim(store: Store, certNodeId: string, claim: { nodeId?: string | undefined; name?: string | undefined }): Promise<void> {
  if (claim.nodeId !== undefined && claim.nodeId !== certNodeId) {
    throw new Refusal(403, 'identity_mismatch', `the certificate is node ${certNodeId}'s: it cannot act as node ${claim.nodeId}`);
  }
  if (claim.name === undefined) return;
  const byName = await store.get(nameKey('nodes', claim.name));
  if (byName && byName.value !== certNodeId) {
    throw new Refusal(403, 'identity_mismatch', `the certificate is node ${certNodeId}'s: node '${claim.name}' is another node (${byName.value})`);
  }
  if (!byName) {
    const mine = await getObject(store, 'nodes', certNodeId);
    if (mine) throw new Refusal(403, 'identity_mismatch', `the certificate is node ${certNodeId}'s ('${mine.obj.name}'): it cannot join as '${claim.name}'`);
  }
}

/** Per-session renewal, CA pushes and revocation; `close()` when the session ends. */
export class SessionSecurity {
  private nodeId: string | undefined;
  private readonly off: () => void;

  constructor(private readonly ws: WebSocket, private readonly sec: ClusterSecurity, private readonly identity: SessionIdentity | undefined, private readonly log: (m: string) => void) {
    this.off = sec.on((e) => {
      if (e.type === 'revoked' && e.revoked.nodeId === (this.nodeId ?? identity?.nodeId)) {
        log(`agent session ${e.revoked.nodeId}: node removed, certificate revoked; closing its session`);
        ws.close(CLOSE_FORBIDDEN, 'node removed from the cluster: certificate revoked');
      } else if (e.type === 'ca' && this.identity && this.nodeId) {
        this.send({ type: 'ca', ca: sec.trustedCas, renew: !!e.state.rotation });
      }
    });
    ws.on('close', () => this.off());
  }

  private send(o: object): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(o));
  }

  /** After the welcome: a node on the old CA during a rotation is asked to renew now. */
  joined(nodeId: string): void {
    this.nodeId = nodeId;
    if (this.identity && !this.identity.fromCurrentCa && this.sec.ca.rotation) this.send({ type: 'ca', ca: this.sec.trustedCas, renew: true });
  }

  /** `{type:"renew", csr}`: a new certificate for this session's node. */
  async renew(msg: Record<string, unknown>): Promise<void> {
    if (!this.identity) throw new Refusal(403, 'renew_without_certificate', 'only a session authenticated by a node certificate (TLS) renews one');
    const out = await this.sec.issueNodeCertificate(this.identity.nodeId, msg['csr']);
    this.log(`agent session ${this.identity.nodeId}: certificate renewed, valid until ${out.notAfter}`);
    this.send({ type: 'certificate', ...out });
  }
}
