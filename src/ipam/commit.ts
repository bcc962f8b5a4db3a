/**
 * Claims and their commit loop: how allocations compose into a caller's own transaction.
 *
 * A claim is a proposal computed from one read of the store: "this value was free at revision
 * r; these compares prove it still is; these ops take it". Nothing is written until the caller
 * commits the compares and ops, usually together with its own (e.g. creating the network
 * object), in one store transaction. If another manager took anything in between, a compare
 * fails and {@link commitClaims} rebuilds every claim from a fresh read and tries again.
 */
import { ShoalError, conflict, internal } from '../errors.js';
import { IPAM_ROOT } from '../model/keys.js';
import type { Compare, KeyValue, Store, TxnOp, TxnOpResult } from '../store/types.js';

/**
 * One allocation, not yet committed. Commit `compares` and `ops` in one transaction (with
 * {@link commitClaims}); never commit `ops` without `compares`, or two managers may both win.
 */
export interface Claim<T> {
  value: T;
  compares: Compare[];
  ops: TxnOp[];
}

/** What a transaction attempt consists of; `build` may return more fields (the claimed values). */
export interface TxnPlan {
  compares: Compare[];
  success: TxnOp[];
}

/** The plan that committed, with the revision of the write and how many attempts it took. */
export type Committed<P extends TxnPlan> = P & { revision: number; attempts: number; results: TxnOpResult[] };

export interface CommitOptions {
  /** Attempts before giving up with a Conflict (code SHOAL_ERR_IPAM_CONTENTION). Default 16. */
  maxAttempts?: number;
  /**
   * Whether a failed compare means "someone allocated concurrently, rebuild and retry".
   * Default: compares on keys under IPAM_ROOT. Other failures are final.
   */
  retryable?: (failed: Compare) => boolean;
  /** Error for a final (non-retryable) failure; default a Conflict naming the keys. */
  onConflict?: (failed: Compare[]) => Error;
  /** Wait before attempt `attempt` (2, 3, ...). Default: random 0..min(50, 2^attempt) ms. */
  backoff?: (attempt: number) => Promise<void>;
}

/** The compares and ops of several claims, in order, ready for a transaction. */
export function mergeClaims(...claims: Array<Claim<unknown>>): TxnPlan {
  return { compares: claims.flatMap((c) => c.compares), success: claims.flatMap((c) => c.ops) };
}

/** Evaluate one compare against the key's current state (undefined: the key is missing). */
export function compareHolds(c: Compare, kv: KeyValue | undefined): boolean {
  const actual: string | number = c.target === 'value' ? (kv?.value ?? '') : (kv?.[c.target] ?? 0);
  switch (c.op) {
    case '=': return actual === c.value;
    case '!=': return actual !== c.value;
    case '<': return actual < c.value;
    case '>': return actual > c.value;
  }
}

const defaultBackoff = (attempt: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));

const describe = (c: Compare): string => `${c.key} ${c.target} ${c.op} ${JSON.stringify(c.value)}`;

/**
 * Two puts of one key in a transaction mean two claims picked the same value without seeing
 * each other (a missing `pending`): committing would grant it twice. Fail loudly instead.
 */
function checkNoDuplicatePuts(ops: TxnOp[]): void {
  const seen = new Set<string>();
  for (const op of ops) {
    if (op.type !== 'put') continue;
    if (seen.has(op.key)) {
      throw internal(`two claims in one transaction put ${op.key}; pass the earlier claims as \`pending\` to the later ones`);
    }
    seen.add(op.key);
  }
}

/**
 * Run `build` and commit its plan in one transaction; on a failed compare that is retryable
 * (a concurrent allocation), call `build` again (it must re-read: claims do) after a jittered
 * backoff, up to `maxAttempts` times. Errors thrown by `build` (e.g. "address in use") end
 * the loop at once. Resolves with the plan that committed.
 *
 * Throws Conflict SHOAL_ERR_IPAM_CONTENTION when attempts run out, or `onConflict(failed)`
 * (default: Conflict SHOAL_ERR_CONFLICT) when a non-retryable compare failed.
 */
export async function commitClaims<P extends TxnPlan>(
  store: Store,
  build: (attempt: number) => Promise<P>,
  opts: CommitOptions = {},
): Promise<Committed<P>> {
  const maxAttempts = opts.maxAttempts ?? 16;
  const retryable = opts.retryable ?? ((c: Compare) => c.key.startsWith(IPAM_ROOT));
  const backoff = opts.backoff ?? defaultBackoff;
  let lastFailed: Compare[] = [];
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (attempt > 1) await backoff(attempt);
    const plan = await build(attempt);
    checkNoDuplicatePuts(plan.success);
    // On failure, read every compared key in the same revision to learn which compares broke.
    const keys = [...new Set(plan.compares.map((c) => c.key))];
    const res = await store.txn({
      compare: plan.compares,
      success: plan.success,
      failure: keys.map((key): TxnOp => ({ type: 'get', key })),
    });
    if (res.succeeded) return { ...plan, revision: res.revision, attempts: attempt, results: res.results };
    const current = new Map<string, KeyValue | undefined>(keys.map((k, i) => [k, res.results[i]?.kvs[0]]));
    lastFailed = plan.compares.filter((c) => !compareHolds(c, current.get(c.key)));
    const final = lastFailed.filter((c) => !retryable(c));
    if (final.length > 0) {
      throw opts.onConflict?.(final)
        ?? conflict(`the request conflicts with a concurrent change (${final.map(describe).join('; ')} no longer holds); check the current state and retry`);
    }
  }
  throw new ShoalError(
    'Conflict',
    'IPAM_CONTENTION',
    `could not allocate after ${maxAttempts} attempts: other managers kept allocating at the same time (last contended: ${lastFailed.map((c) => c.key).join(', ') || 'unknown'}); retry the request`,
  );
}
