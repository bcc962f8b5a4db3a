/**
 * The wire format between a NetnsWorker (main side) and its worker thread. Everything in
 * here crosses `postMessage`, so it is structured-clone data only: no classes, no functions.
 * KernelErrors are flattened to {@link WireError} and rebuilt on the other side, keeping
 * `op`, `errno` and `stderr` so `isNotFound` / `isExists` work across the thread boundary.
 */
import { KernelError } from '../errors.js';
import { errnoOf } from './errno.js';

/** What the worker is told when it starts (its `workerData`). */
export interface WorkerInit {
  /** Enter this netns (a /run/netns path or /proc/PID/ns/net) before anything else. */
  enter?: string;
  /** Create the named netns (bind-mounted under /run/netns) and stay inside it. */
  create?: string;
  /** Extra handler modules: `{prefix: moduleUrl}`; each exported function `f` becomes `prefix.f`. */
  modules?: Record<string, string>;
}

/** A call posted to the worker. */
export interface Request {
  id: number;
  method: string;
  args: unknown[];
}

/** A failure, flattened for postMessage. */
export interface WireError {
  name: string;
  message: string;
  op?: string;
  errno?: string;
  stderr?: string;
}

/** The worker's answer to a {@link Request}, or its start-up report (`id: 0`). */
export type Response =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: WireError };

/** Flatten any thrown value for postMessage. */
export function toWire(e: unknown, fallbackOp: string): WireError {
  if (e instanceof KernelError) {
    const prefix = `${e.op}: `;
    const message = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    return { name: e.name, message, op: e.op, errno: e.errno, stderr: e.stderr };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { name: e instanceof Error ? e.name : 'Error', message, op: fallbackOp, errno: errnoOf(e) };
}

/** Rebuild a thrown value on the receiving side: always a KernelError. */
export function fromWire(w: WireError, fallbackOp: string): KernelError {
  return new KernelError(w.op ?? fallbackOp, w.errno, w.message, { stderr: w.stderr });
}
