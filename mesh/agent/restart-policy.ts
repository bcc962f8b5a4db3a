/**
 * The restart policy decision, in one pure function every task runtime calls when a task's
 * process (or container) exits on its own: restart it (after how long) or end the task for good
 * (`complete` when it exited 0, else `failed`), as swarmkit's restart supervisor decides:
 * - `none` never restarts; `on-failure` restarts unless the exit code was 0; `any` always;
 * - with `maxAttempts` > 0, at most that many restarts (only those within the last `windowMs`
 *   count when a window is set);
 * - `delayMs` is the wait before a restart; without one the runtime's back-off applies
 *   (1 s doubling per restart up to `maxBackoffMs`).
 */
import type { RestartPolicy } from '../../src/model/types.js';
import { DEFAULT_RESTART_POLICY } from '../../src/model/service-defaults.js';

/** How a task's process ended: an exit code, or the signal that killed it. */
export interface ExitStatus { exitCode: number | null; signal: string | null }

export type RestartDecision =
  | { restart: true; delayMs: number }
  | { restart: false; state: 'complete' | 'failed'; message: string };

/** Back-off used when the policy gives no delay. */
export interface BackoffOptions { baseMs?: number; maxBackoffMs?: number }

const describe = (e: ExitStatus): string => (e.signal ? `killed by ${e.signal}` : `exit code ${e.exitCode ?? '?'}`);

/**
 * @param history times (ms) of this task's earlier restarts, oldest first
 * @param now the current time (ms), for the window
 */
export function decideRestart(policy: RestartPolicy | undefined, exit: ExitStatus, history: readonly number[], now: number, backoff: BackoffOptions = {}): RestartDecision {
  const p = policy ?? DEFAULT_RESTART_POLICY;
  const success = exit.signal === null && exit.exitCode === 0;
  const state = success ? 'complete' : 'failed';
  const ended = (why: string): RestartDecision => ({ restart: false, state, message: `${success ? 'completed' : 'failed'} (${describe(exit)}); ${why}` });
  if (p.condition === 'none') return ended('restart policy none: not restarted');
  if (p.condition === 'on-failure' && success) return ended('restart policy on-failure: not restarted after a success');
  const max = p.maxAttempts ?? 0;
  if (max > 0) {
    const counted = p.windowMs ? history.filter((t) => t > now - (p.windowMs as number)).length : history.length;
    if (counted >= max) {
      return ended(`restart policy reached its ${max} attempt${max === 1 ? '' : 's'}${p.windowMs ? ` within ${p.windowMs} ms` : ''}: not restarted`);
    }
  }
  const delayMs = p.delayMs ?? Math.min((backoff.baseMs ?? 1000) * 2 ** history.length, backoff.maxBackoffMs ?? 30_000);
  return { restart: true, delayMs };
}
