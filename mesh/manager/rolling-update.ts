/**
 * Rolling updates and rollbacks, planned (pure, clock passed in) one service at a time.
 *
 * A service whose spec changed has *outdated* tasks (their spec hash is not the service's).
 * They are replaced slot by slot (a replicated service's slot, a global service's node), at most
 * `parallelism` slots at once (0: all), as Docker's updater does:
 * - `stop-first`: the old task is asked to stop; the slot is refilled once it has ended (the
 *   slot planner holds the slot while it stops);
 * - `start-first`: a new task is created beside the old one, which is stopped once the new one
 *   is *ready* (running, and healthy when it has a health check).
 * After a batch is ready the next starts `delayMs` later. A new task that fails (ends `failed`, or
 * its process had to be restarted) counts as a failure; past `maxFailureRatio` the update is
 * paused, ignored (`continue`) or rolled back (`rollback`: the previous spec comes back and is
 * rolled out with the rollback config). The update is `completed` once every slot runs the new
 * spec and `monitorMs` has passed since the last one became ready.
 */
import { activeUpdateConfig, isRollingBack } from '../../src/model/service-defaults.js';
import type { Service, Task, UpdateStatus } from '../../src/model/types.js';

/** What the slot planner knows about one slot of a service. */
export interface SlotView {
  /** Slot number (replicated) or node id (global), for ordering and messages. */
  key: string;
  /** Live tasks (meant to run, not ended) running the current spec. */
  fresh: Task[];
  /** Live tasks running an older spec. */
  outdated: Task[];
  /** An outdated task of this slot is stopping (stop-first in progress). */
  holding: boolean;
  /** The slot's latest task was ended for good by its restart policy under the current spec. */
  ended?: boolean;
  /** A new task is being created in the empty slot now (it counts as in flight). */
  filling?: boolean;
}

/** Steps the update asks for; the slot planner turns them into plan steps. */
export type UpdateStep =
  | { kind: 'shutdown'; task: Task; reason: string }
  /** Start a new task in this slot beside the old one (start-first). */
  | { kind: 'start'; slot: SlotView }
  | { kind: 'update-status'; status: UpdateStatus }
  | { kind: 'rollback'; reason: string }
  | { kind: 'wake'; inMs: number };

/** A task that serves: running and not failing its health check (Docker shows such a task running). */
export const isReady = (t: Task): boolean => t.status.state === 'running' && t.status.healthy !== false;

const ms = (iso: string | undefined): number => (iso ? Date.parse(iso) : 0);

/**
 * The update steps for one service. `slots` are the slots the service wants; `tasks` are all of
 * its tasks (history too: a replacement that already failed counts); `hash` is its spec hash.
 */
export function planUpdate(svc: Service, slots: readonly SlotView[], tasks: readonly Task[], hash: string, now: number): UpdateStep[] {
  const out: UpdateStep[] = [];
  const cfg = activeUpdateConfig(svc);
  const rollingBack = isRollingBack(svc);
  const status = svc.updateStatus;
  const active = status?.state === 'updating' || status?.state === 'rollback_started';
  const paused = status?.state === 'paused' || status?.state === 'rollback_paused';
  const since = ms(status?.startedAt ?? svc.updatedAt);
  // Replacements of this update (or rollback): current spec, created after it started.
  const replacements = tasks.filter((t) => t.specHash === hash && ms(t.createdAt) >= since);

  // Slots whose new task is ready while the old one still runs: the old one goes (start-first).
  // Done even while paused: it finishes what was started.
  for (const s of slots) {
    if (s.outdated.length > 0 && s.fresh.some(isReady)) {
      for (const old of s.outdated) out.push({ kind: 'shutdown', task: old, reason: rollingBack ? 'rolled back' : 'service updated' });
    }
  }
  const todo = slots.filter((s) => s.outdated.length > 0 && s.fresh.length === 0 && !s.holding);
  const inFlight = slots.filter((s) => s.filling === true || (s.holding && s.fresh.length === 0) || s.fresh.some((t) => !isReady(t) && ms(t.createdAt) >= since)).length;

  if (active) {
    const failed = replacements.filter((t) => t.status.state === 'failed' || (t.status.restarts ?? 0) > 0);
    const first = failed[0];
    if (first && cfg.failureAction !== 'continue' && failed.length / Math.max(1, slots.length) > cfg.maxFailureRatio) {
      const why = `failure or early termination of task ${first.id}`;
      if (cfg.failureAction === 'rollback' && !rollingBack && svc.previousSpec) {
        out.push({ kind: 'rollback', reason: `update rolled back due to ${why}` });
      } else {
        const note = cfg.failureAction === 'rollback' && !rollingBack ? ' (no previous spec to roll back to)' : '';
        out.push({
          kind: 'update-status',
          status: { state: rollingBack ? 'rollback_paused' : 'paused', startedAt: status.startedAt, message: `${rollingBack ? 'rollback' : 'update'} paused due to ${why}${note}` },
        });
      }
      return out;
    }
  }
  if (paused) return out;

  const readyAt = Math.max(0, ...replacements.filter(isReady).map((t) => ms(t.status.since)));
  if (todo.length === 0) {
    const settled = slots.every((s) => s.outdated.length === 0 && (s.ended === true || s.fresh.some(isReady)));
    if (active && settled) {
      const doneAt = readyAt > 0 ? readyAt + cfg.monitorMs : now;
      if (now >= doneAt) {
        out.push({
          kind: 'update-status',
          status: { state: rollingBack ? 'rollback_completed' : 'completed', startedAt: status.startedAt, completedAt: new Date(now).toISOString(), message: rollingBack ? 'rollback completed' : 'update completed' },
        });
      } else out.push({ kind: 'wake', inMs: doneAt - now });
    }
    return out;
  }
  let budget = cfg.parallelism === 0 ? todo.length : cfg.parallelism - inFlight;
  if (budget <= 0) return out;
  if (cfg.delayMs > 0 && readyAt > 0 && now < readyAt + cfg.delayMs) {
    out.push({ kind: 'wake', inMs: readyAt + cfg.delayMs - now });
    return out;
  }
  for (const s of todo) {
    if (budget-- <= 0) break;
    if (cfg.order === 'start-first') out.push({ kind: 'start', slot: s });
    else for (const old of s.outdated) out.push({ kind: 'shutdown', task: old, reason: rollingBack ? 'rolled back' : 'service updated' });
  }
  return out;
}
