/**
 * Service health checks, run by the agent of the node a task runs on (Docker runs HEALTHCHECK
 * there too): a TCP connect, or an HTTP GET that wants a 2xx/3xx answer, against the task's
 * address every `intervalMs`, each with `timeoutMs`.
 *
 * Verdicts: a task starts "not yet healthy" (it serves no traffic); the first passing check
 * makes it healthy; `retries` consecutive failures make it unhealthy. Failures during
 * `startPeriodMs` do not count (a slow start is not a failure), a pass does. Every change of
 * verdict is reported through `onChange` (the agent reports it to the manager, and every node's
 * DNS and balancers follow).
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import type { HealthCheck } from '../../src/model/types.js';

/** One probe: resolves with an error message, or undefined when it passed. */
export async function probe(address: string, check: HealthCheck): Promise<string | undefined> {
  const port = check.port ?? 0;
  if (check.type === 'tcp') {
    return new Promise((resolve) => {
      const s = connect({ host: address, port, timeout: check.timeoutMs });
      s.once('connect', () => { s.destroy(); resolve(undefined); });
      s.once('timeout', () => { s.destroy(); resolve(`tcp ${address}:${port}: no connection within ${check.timeoutMs} ms`); });
      s.once('error', (e) => resolve(`tcp ${address}:${port}: ${e.message}`));
    });
  }
  if (check.type === 'http') {
    return new Promise((resolve) => {
      const req = request({ host: address, port, path: check.path ?? '/', method: 'GET', agent: false, timeout: check.timeoutMs, headers: { 'user-agent': 'shoal-health' } }, (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400 ? undefined : `http ${address}:${port}${check.path ?? '/'}: status ${code}`);
      });
      req.once('timeout', () => { req.destroy(); resolve(`http ${address}:${port}: no answer within ${check.timeoutMs} ms`); });
      req.once('error', (e) => resolve(`http ${address}:${port}: ${e.message}`));
      req.end();
    });
  }
  return undefined;
}

export type HealthListener = (taskId: string, healthy: boolean, message: string) => void;

interface Watched {
  address: string;
  check: HealthCheck;
  key: string;
  startedAt: number;
  healthy: boolean | undefined;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

export class HealthMonitor {
  private readonly watched = new Map<string, Watched>();

  constructor(private readonly onChange: HealthListener, private readonly probeFn: typeof probe = probe) {}

  /** Checks `taskId` at `address` with `check` (restarts the checks when either changed). */
  ensure(taskId: string, address: string, check: HealthCheck): void {
    const key = JSON.stringify([address, check]);
    const had = this.watched.get(taskId);
    if (had?.key === key) return;
    if (had) this.forget(taskId);
    const w: Watched = { address, check, key, startedAt: Date.now(), healthy: undefined, failures: 0, timer: undefined, stopped: false };
    this.watched.set(taskId, w);
    this.schedule(taskId, w, Math.min(check.intervalMs, 200));
  }

  /** The current verdict: undefined while none yet. */
  verdict(taskId: string): boolean | undefined { return this.watched.get(taskId)?.healthy; }

  has(taskId: string): boolean { return this.watched.has(taskId); }

  forget(taskId: string): void {
    const w = this.watched.get(taskId);
    if (!w) return;
    w.stopped = true;
    if (w.timer) clearTimeout(w.timer);
    this.watched.delete(taskId);
  }

  /** Tasks being checked. */
  list(): string[] { return [...this.watched.keys()]; }

  close(): void { for (const id of [...this.watched.keys()]) this.forget(id); }

  private schedule(taskId: string, w: Watched, delayMs: number): void {
    w.timer = setTimeout(() => void this.tick(taskId, w), delayMs);
    w.timer.unref();
  }

  private async tick(taskId: string, w: Watched): Promise<void> {
    const error = await this.probeFn(w.address, w.check);
    if (w.stopped) return;
    if (error === undefined) {
      w.failures = 0;
      if (w.healthy !== true) {
        w.healthy = true;
        this.onChange(taskId, true, 'healthy');
      }
    } else if (Date.now() - w.startedAt >= w.check.startPeriodMs) {
      w.failures++;
      if (w.failures >= w.check.retries && w.healthy !== false) {
        w.healthy = false;
        this.onChange(taskId, false, `unhealthy: ${error}`);
      }
    }
    this.schedule(taskId, w, w.check.intervalMs);
  }
}
