/**
 * Revoked nodes: `shoal node rm` writes `secrets/revoked/<node id>` in the same transaction
 * that deletes the node, so its certificate (CN = node id) is refused from then on by every
 * manager (each keeps the list in memory from a store watch) and its live session is closed.
 * A node id is never reused (a machine that joins again gets a new one), so the list needs
 * no serial numbers: an entry (a few dozen bytes) names the id for good.
 */
import type { Node } from '../../src/model/types.js';
import type { TxnOp } from '../../src/store/types.js';
import { SECRETS } from './ca.js';

export const revokedPrefix = `${SECRETS}revoked/`;
export const revokedKey = (nodeId: string): string => `${revokedPrefix}${nodeId}`;

/** One revoked node. */
export interface Revoked { nodeId: string; name: string; revokedAt: string }

/** The transaction op that revokes `node`'s certificates (part of its removal). */
export function revokeOp(node: Pick<Node, 'id' | 'name'>): TxnOp {
  const r: Revoked = { nodeId: node.id, name: node.name, revokedAt: new Date().toISOString() };
  return { type: 'put', key: revokedKey(node.id), value: JSON.stringify(r) };
}
