/**
 * What an etcd (gRPC) failure means for a caller: whether the request may have been applied,
 * whether another member may do better, and the ShoalError a user sees.
 *
 * etcd3 turns gRPC errors into classes whose message starts with the gRPC status
 * (`14 UNAVAILABLE: etcdserver: no leader`); matching the message is the only stable way to
 * tell "never sent" from "sent, outcome unknown".
 */
import { ShoalError } from '../../errors.js';

export type EtcdFailure =
  /** The request was certainly not applied (no connection, member without a leader, rejected). */
  | 'not-applied'
  /** The request may or may not have been applied (deadline, connection lost mid-call, leader change). */
  | 'unknown'
  /** An answer about the request itself (bad argument, missing lease...): no retry helps. */
  | 'final';

export interface Classified {
  failure: EtcdFailure;
  /** Short label for metrics: `unavailable`, `deadline`, `no_leader`, `not_found`, ... */
  code: string;
  /** The server's or the transport's words, without the gRPC status prefix. */
  detail: string;
}

const NOT_APPLIED = [
  /no connection established/i, /connect ECONNREFUSED/i, /ENETUNREACH|EHOSTUNREACH/i, /etcdserver: no leader/i,
  /too many requests/i, /not capable/i, /failed to connect/i, /name resolution failed/i, /etcdserver: unhealthy cluster/i,
];

/** Classifies an error thrown by an etcd3 call. */
export function classify(e: unknown): Classified {
  const msg = e instanceof Error ? e.message : String(e);
  // etcd3 may prefix the status with its error class ("Lease 5 NOT_FOUND: ...").
  const m = /^(?:[A-Za-z]+ )?(\d+) ([A-Z_]+): ([\s\S]*)$/.exec(msg);
  // Not a gRPC status at all: a bug or misuse on this side, which no retry fixes.
  if (!m) return { failure: 'final', code: 'client', detail: msg };
  const status = m[2] ?? '';
  const detail = (m[3] ?? msg).trim();
  if (/requested lease not found/.test(detail)) return { failure: 'final', code: 'lease_not_found', detail };
  if (/lease already exists/.test(detail)) return { failure: 'final', code: 'lease_exists', detail };
  if (/required revision has been compacted/.test(detail)) return { failure: 'final', code: 'compacted', detail };
  if (/required revision is a future revision/.test(detail)) return { failure: 'final', code: 'future_revision', detail };
  if (status === 'INVALID_ARGUMENT' || /duplicate key given in txn request|key is not provided|too many operations/.test(detail)) {
    return { failure: 'final', code: 'invalid', detail };
  }
  if (status === 'PERMISSION_DENIED' || status === 'UNAUTHENTICATED') return { failure: 'final', code: 'denied', detail };
  if (status === 'CANCELLED' && /client closed|closed/i.test(detail)) return { failure: 'final', code: 'closed', detail };
  if (NOT_APPLIED.some((r) => r.test(detail))) {
    return { failure: 'not-applied', code: /no leader/.test(detail) ? 'no_leader' : 'unavailable', detail };
  }
  if (status === 'DEADLINE_EXCEEDED' || /deadline exceeded|request timed out/i.test(detail)) return { failure: 'unknown', code: 'deadline', detail };
  return { failure: 'unknown', code: status ? status.toLowerCase() : 'other', detail };
}

/** The error a caller sees when etcd could not be reached (or had no quorum) in time. */
export function storeUnavailable(endpoints: string, detail: string, outcomeUnknown: boolean, cause?: unknown): ShoalError {
  const what = outcomeUnknown
    ? `the cluster store (etcd at ${endpoints}) did not confirm the write (${detail}); it may or may not have been applied: check, then retry`
    : `the cluster store (etcd at ${endpoints}) is unavailable (${detail}); retry when etcd has a quorum again`;
  return new ShoalError('Unavailable', 'STORE_UNAVAILABLE', what, { cause });
}
