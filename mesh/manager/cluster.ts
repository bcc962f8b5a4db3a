/**
 * Cluster identity and secrets, created once by the first manager on a store and shared by
 * every manager on it. Kept under `secrets/`, which the watch stream never sends to clients.
 */
import { randomBytes } from 'node:crypto';
import { internal } from '../../src/errors.js';
import { newToken } from '../../src/ids.js';
import { ROOT } from '../../src/model/keys.js';
import type { Store } from '../../src/store/types.js';

export const SECRETS_PREFIX = `${ROOT}secrets/`;
const clusterSecretsKey = `${SECRETS_PREFIX}cluster`;

export interface ClusterInfo {
  id: string;
  /** Bearer token for the API (operators, the CLI). */
  managerToken: string;
  /** Token agents present to join. */
  joinToken: string;
  createdAt: string;
}

/** Returns the cluster's info, creating it (atomically, once) on a fresh store. */
export async function ensureCluster(store: Store): Promise<ClusterInfo> {
  const fresh: ClusterInfo = {
    id: randomBytes(8).toString('hex'),
    managerToken: newToken('SHOALMGR'),
    joinToken: newToken('SHOALJOIN'),
    createdAt: new Date().toISOString(),
  };
  const res = await store.txn({
    compare: [{ key: clusterSecretsKey, target: 'createRevision', op: '=', value: 0 }],
    success: [{ type: 'put', key: clusterSecretsKey, value: JSON.stringify(fresh) }],
    failure: [{ type: 'get', key: clusterSecretsKey }],
  });
  if (res.succeeded) return fresh;
  const kv = res.results[0]?.kvs[0];
  if (!kv) throw internal('cluster info vanished while being read');
  return JSON.parse(kv.value) as ClusterInfo;
}
