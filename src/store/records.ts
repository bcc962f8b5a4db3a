/**
 * The state-machine commands of the embedded store. A write is planned into one record, the
 * record is logged (durable mode), and only then applied: replaying the log applies the very
 * same records, so recovery cannot drift from what was acknowledged.
 *
 * Records carry their effects (whole key-values, explicit revisions), not the requests that
 * produced them, so replay needs no evaluation and checks revision continuity as it goes.
 */
import type { KeyValue } from './types.js';

/** One key change inside a revision. A put carries the complete new key-value. */
export type Mutation = { op: 'put'; kv: KeyValue } | { op: 'del'; key: string };

export type WalRecord =
  /** One store revision: a put, a delete, or the writes of one transaction. */
  | { type: 'write'; revision: number; mutations: Mutation[] }
  /** A lease was granted. Grants do not create a store revision (as in etcd). */
  | { type: 'grant'; lease: number; ttl: number }
  /**
   * A lease was revoked or expired. Its keys are deleted as one revision `revision`;
   * when it had no keys `mutations` is empty and `revision` is the unchanged current one.
   */
  | { type: 'revoke'; lease: number; revision: number; mutations: Mutation[] };
