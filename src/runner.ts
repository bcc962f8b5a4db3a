/**
 * A bounded-frequency runner (after kube-proxy's BoundedFrequencyRunner).
 *
 * `run()` asks for a sync; requests are coalesced so that at most one `fn` is in flight, runs are
 * at least `minIntervalMs` apart (after a burst of `burst` immediate runs), and a run happens at
 * least every `maxIntervalMs` (periodic full resync). When `fn` throws, it is retried after
 * `retryAfterMs` and the failure is reported to `onError`: never logged and forgotten.
 */
export interface RunnerOptions {
  name: string;
  minIntervalMs: number;
  maxIntervalMs: number;
  /** Runs allowed back to back before minIntervalMs applies (token bucket). Default 1. */
  burst?: number;
  retryAfterMs?: number;
  onError?: (err: unknown, attempt: number) => void;
  onSuccess?: (durationMs: number) => void;
  now?: () => number;
}

export class BoundedFrequencyRunner {
  private readonly opts: Required<Omit<RunnerOptions, 'onError' | 'onSuccess'>> & Pick<RunnerOptions, 'onError' | 'onSuccess'>;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private running: Promise<void> | undefined;
  private pending = false;
  private tokens: number;
  private lastRefill: number;
  private failures = 0;
  private stopped = false;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly fn: () => Promise<void>, opts: RunnerOptions) {
    this.opts = { burst: 1, retryAfterMs: 1000, now: Date.now, ...opts };
    this.tokens = this.opts.burst;
    this.lastRefill = this.opts.now();
  }

  /** Start the periodic resync and run once now. */
  start(): void {
    this.stopped = false;
    this.run();
  }

  /** Request a sync as soon as the rate limit allows. Cheap; safe to call on every event. */
  run(): void {
    if (this.stopped) return;
    this.pending = true;
    if (this.running) return; // picked up when the current run ends
    this.scheduleAt(this.nextAllowed());
  }

  /** Stop: no new runs start; resolves when the current one (if any) finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.pending = false; // a pending run will never happen now
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) this.notifyIdle();
    await this.running;
  }

  /** Resolves once no run is in flight and none is pending (for tests and shutdown). */
  idle(): Promise<void> {
    if (!this.running && !this.pending) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private refill(): void {
    const now = this.opts.now();
    const gained = (now - this.lastRefill) / this.opts.minIntervalMs;
    if (gained > 0) {
      this.tokens = Math.min(this.opts.burst, this.tokens + gained);
      this.lastRefill = now;
    }
  }

  private nextAllowed(): number {
    this.refill();
    if (this.tokens >= 1) return this.opts.now();
    return this.opts.now() + (1 - this.tokens) * this.opts.minIntervalMs;
  }

  private scheduleAt(at: number): void {
    if (this.stopped) return;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.opts.now()));
    this.timer.unref?.();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.running || this.stopped) return;
    this.refill();
    this.tokens = Math.max(0, this.tokens - 1);
    this.pending = false;
    const started = this.opts.now();
    this.running = this.fn().then(
      () => {
        this.failures = 0;
        this.opts.onSuccess?.(this.opts.now() - started);
      },
      (err: unknown) => {
        this.failures++;
        this.opts.onError?.(err, this.failures);
        this.pending = true;
      },
    ).finally(() => {
      this.running = undefined;
      if (this.stopped) return this.notifyIdle();
      if (this.pending) {
        const retry = this.failures > 0 ? this.opts.now() + this.opts.retryAfterMs : this.nextAllowed();
        this.scheduleAt(retry);
      } else {
        this.scheduleAt(this.opts.now() + this.opts.maxIntervalMs);
        this.pending = false;
        this.notifyIdle();
      }
    });
  }

  private notifyIdle(): void {
    if (this.pending && !this.stopped) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
