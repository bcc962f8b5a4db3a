/**
 * Cluster identity and secrets, created once by the first manager on a store and shared by
 * every manager on it. Kept under `secrets/`, which the watch stream never sends to clients:
 * the cluster id and tokens here, the CA beside it (mesh/security/ca.ts).
 *
 * Tokens are `SHOAL-1-<CA fingerprint>-<secret>` (mesh/security/tokens.ts). A store made by a
 * Shoal without TLS (no CA, tokens of the old shape) gets a CA and new tokens on first start.
 */
import { randomBytes } from 'node:crypto';
import { internal } from '../../src/errors.js';
import { ROOT } from '../../src/model/keys.js';
import type { Store } from '../../src/store/types.js';
import { caKey, newCaState, pinnedFingerprint, type CaState } from '../security/ca.js';
import { formatToken, newSecret, parseToken } from '../security/tokens.js';

export const SECRETS_PREFIX = `${ROOT}secrets/`;
export const clusterSecretsKey = `${SECRETS_PREFIX}cluster`;

export interface ClusterInfo {
  id: string;
  /** Bearer token for the API (operators, the CLI). */
  managerToken: string;
  /** Token agents present to join. */
  joinToken: string;
  createdAt: string;
}

/** Returns the cluster's info, creating it and its CA (atomically, once) on a fresh store. */
export async function ensureCluster(store: Store): Promise<ClusterInfo> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const [c, ca] = await Promise.all([store.get(clusterSecretsKey), store.get(caKey)]);
    const info = c ? JSON.parse(c.value) as ClusterInfo : undefined;
    if (info && ca && parseToken(info.joinToken) && parseToken(info.managerToken)) return info;
    // A fresh store, or one from before TLS: a CA, and tokens that pin it.
    const id = info?.id ?? randomBytes(8).toString('hex');
    const state: CaState = ca ? JSON.parse(ca.value) as CaState : await newCaState(id);
    const fp = pinnedFingerprint(state);
    const fresh: ClusterInfo = {
      id, createdAt: info?.createdAt ?? new Date().toISOString(),
      managerToken: formatToken(fp, newSecret()), joinToken: formatToken(fp, newSecret()),
    };
    const res = await store.txn({
      compare: [
        { key: clusterSecretsKey, target: 'modRevision', op: '=', value: c?.modRevision ?? 0 },
        { key: caKey, target: 'modRevision', op: '=', value: ca?.modRevision ?? 0 },
      ],
      success: [
        { type: 'put', key: clusterSecretsKey, value: JSON.stringify(fresh) },
        ...(ca ? [] : [{ type: 'put' as const, key: caKey, value: JSON.stringify(state) }]),
      ],
    });
    if (res.succeeded) return fresh;
  }
  throw internal('the cluster record kept changing while being created');
}
