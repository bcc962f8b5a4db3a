/**
 * Which tasks receive traffic: one definition for DNS answers and load-balancer backends.
 *
 * A task serves while it is meant to run, runs, and has not failed (or not yet passed) its
 * health check: an agent reports `healthy: false` for a task with a health check until the
 * first check passes, so "no verdict yet" never serves. A task that is being stopped but
 * still runs is *draining*: it keeps the flows it has, gets no new ones.
 */
import type { Node, Task } from './types.js';

export function servesTraffic(t: Pick<Task, 'desiredState' | 'status'>): boolean {
  return t.desiredState === 'running' && t.status.state === 'running' && t.status.healthy !== false;
}

export function isDraining(t: Pick<Task, 'desiredState' | 'status'>): boolean {
  return t.desiredState === 'shutdown' && t.status.state === 'running';
}

/** A backend's node must be up: a down node's tasks leave every balancer at once. */
export function nodeServes(n: Pick<Node, 'state'> | undefined): boolean {
  return n !== undefined && n.state === 'ready';
}
