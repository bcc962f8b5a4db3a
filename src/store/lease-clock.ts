/**
 * Lease deadlines. Deadlines are not replicated state: after a restart every lease gets its
 * full TTL again (as in etcd), so they live here and not in the state machine.
 *
 * One unref'd timer per lease; `renew` only moves the deadline and the timer re-arms itself
 * when it fires early, so a keep-alive is O(1) and allocates nothing.
 */
interface Deadline {
  ttlMs: number;
  deadline: number;
  timer: NodeJS.Timeout | undefined;
  /** The deadline passed and `onExpire` was called: the lease can no longer be renewed. */
  expired: boolean;
}

export class LeaseClock {
  private readonly deadlines = new Map<number, Deadline>();

  /** `onExpire(id)` is called once when a lease's deadline passes; it must revoke the lease. */
  constructor(
    private readonly now: () => number,
    private readonly onExpire: (id: number) => void,
  ) {}

  /** Starts (or restarts) the countdown of a lease with its full TTL. */
  start(id: number, ttlSeconds: number): void {
    this.stop(id);
    const d: Deadline = { ttlMs: ttlSeconds * 1000, deadline: this.now() + ttlSeconds * 1000, timer: undefined, expired: false };
    this.deadlines.set(id, d);
    this.arm(id, d);
  }

  /** Renews a lease to its full TTL; false when it is unknown or already expired. */
  renew(id: number): boolean {
    const d = this.deadlines.get(id);
    if (!d || d.expired) return false;
    const now = this.now();
    if (now >= d.deadline) {
      this.expire(id, d);
      return false;
    }
    d.deadline = now + d.ttlMs;
    return true;
  }

  stop(id: number): void {
    const d = this.deadlines.get(id);
    if (d?.timer) clearTimeout(d.timer);
    this.deadlines.delete(id);
  }

  stopAll(): void {
    for (const id of [...this.deadlines.keys()]) this.stop(id);
  }

  private arm(id: number, d: Deadline): void {
    const wait = Math.max(0, d.deadline - this.now());
    d.timer = setTimeout(() => {
      d.timer = undefined;
      if (this.deadlines.get(id) !== d || d.expired) return;
      if (this.now() >= d.deadline) this.expire(id, d);
      else this.arm(id, d);
    }, wait);
    d.timer.unref();
  }

  private expire(id: number, d: Deadline): void {
    d.expired = true;
    if (d.timer) clearTimeout(d.timer);
    d.timer = undefined;
    this.onExpire(id);
  }
}
