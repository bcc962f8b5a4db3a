/**
 * What the agent's reconcilers count (exported as `shoal_agent_repairs_total{kind}`,
 * `shoal_agent_reconcile_failures_total{reconciler}` and `shoal_agent_invalid_objects_total{reconciler}`
 * by mesh/metrics.ts). One instance per agent, shared by its reconcilers; only they write it.
 *
 * - a **repair** is kernel state found different from what was programmed (drift: a table
 *   flushed, a veth deleted, an FDB entry gone) and put back by a resync;
 * - a **failure** is one attempt of one object (a task's sandbox, a network, a sandbox's
 *   dataplane) that threw; it is retried with back-off and never blocks the other objects;
 * - an **invalid** object is desired state that cannot be programmed (e.g. a virtual service
 *   mixing address families): dropped before any dataplane transaction, never thrown inside one.
 */
export class AgentCounters {
  readonly repairs = new Map<string, number>();
  readonly failures = new Map<string, number>();
  readonly invalid = new Map<string, number>();

  repaired(kind: string, n = 1): void {
    if (n > 0) this.repairs.set(kind, (this.repairs.get(kind) ?? 0) + n);
  }

  failed(reconciler: string): void {
    this.failures.set(reconciler, (this.failures.get(reconciler) ?? 0) + 1);
  }

  dropped(reconciler: string): void {
    this.invalid.set(reconciler, (this.invalid.get(reconciler) ?? 0) + 1);
  }

  /** Total repairs (all kinds). */
  get totalRepairs(): number {
    let n = 0;
    for (const v of this.repairs.values()) n += v;
    return n;
  }
}

/**
 * Per-object retry with exponential back-off (500 ms doubling to 30 s): an object that failed
 * is not retried before its time, so one broken object costs its own retries only.
 * `now` is injectable for tests.
 */
export class Backoff {
  private readonly state = new Map<string, { failures: number; notBefore: number; error: string }>();

  constructor(private readonly now: () => number = Date.now, private readonly baseMs = 500, private readonly maxMs = 30_000) {}

  /** True when `id` may be tried now (never failed, or its back-off has passed). */
  ready(id: string): boolean {
    const s = this.state.get(id);
    return !s || s.notBefore <= this.now();
  }

  /** Records a failure of `id`; returns how many in a row. */
  fail(id: string, error: string): number {
    const failures = (this.state.get(id)?.failures ?? 0) + 1;
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** (failures - 1));
    this.state.set(id, { failures, notBefore: this.now() + delay, error });
    return failures;
  }

  succeed(id: string): void { this.state.delete(id); }
  forget(id: string): void { this.state.delete(id); }

  /** The last error of `id`, while it is backing off. */
  error(id: string): string | undefined { return this.state.get(id)?.error; }

  /** Milliseconds until the earliest back-off ends (undefined when nothing waits). */
  nextInMs(): number | undefined {
    let min: number | undefined;
    for (const s of this.state.values()) {
      const d = Math.max(0, s.notBefore - this.now());
      if (min === undefined || d < min) min = d;
    }
    return min;
  }
}
