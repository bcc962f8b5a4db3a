/**
 * Graceful drain of a stopping task: every node's balancer already gives it weight 0 (no new
 * flows) as soon as the task is meant to stop; its own agent keeps the process running while
 * connections to it are still established, until they reach 0 or the service's drain window
 * ends, and only then stops it.
 *
 * Connections are counted from `/proc/<pid>/net/tcp{,6}` of the task's process, which shows
 * the task's own network namespace: ESTABLISHED sockets whose local port is one the service
 * serves (its target ports). No process is spawned.
 */
import { readFileSync } from 'node:fs';

const ESTABLISHED = '01';
const LISTEN = '0A';

/**
 * Established TCP connections in `pid`'s netns with a local port in `ports`, or, with `ports`
 * empty, on any port a socket of that netns listens on (a VIP carries every port of a service:
 * what the task serves is what it listens on). 0 when unreadable.
 */
export function establishedConnections(pid: number, ports: ReadonlySet<number>): number {
  const rows: Array<{ port: number; state: string | undefined }> = [];
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue; // the process is gone, or no IPv6
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      if (!local) continue;
      rows.push({ port: parseInt(local.slice(local.lastIndexOf(':') + 1), 16), state: f[3] });
    }
  }
  const served = ports.size > 0 ? ports : new Set(rows.filter((r) => r.state === LISTEN).map((r) => r.port));
  let n = 0;
  for (const r of rows) if (r.state === ESTABLISHED && served.has(r.port)) n++;
  return n;
}

export interface DrainOptions {
  /** Longest wait. */
  timeoutMs: number;
  /** Shortest wait: lets every node's balancer take the task out before "0 connections" counts. */
  minMs?: number;
  everyMs?: number;
  /** Stop waiting early (e.g. the agent is shutting down). */
  signal?: AbortSignal;
}

/** Waits until the task has no established connections on `ports` (empty: on the ports it listens on) or the window ends; returns how it ended. */
export async function drainConnections(pid: number | undefined, ports: ReadonlySet<number>, o: DrainOptions): Promise<'idle' | 'timeout' | 'none'> {
  if (pid === undefined || o.timeoutMs <= 0) return 'none';
  const start = Date.now();
  const minMs = Math.min(o.minMs ?? 500, o.timeoutMs);
  const every = o.everyMs ?? 100;
  for (;;) {
    const elapsed = Date.now() - start;
    if (elapsed >= minMs && establishedConnections(pid, ports) === 0) return 'idle';
    if (elapsed >= o.timeoutMs || o.signal?.aborted) return 'timeout';
    await new Promise((r) => setTimeout(r, every));
  }
}
