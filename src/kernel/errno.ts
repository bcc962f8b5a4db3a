/**
 * Turning whatever a kernel client threw into a {@link KernelError} with an errno *name*.
 *
 * npm `netlink` rejects with a bare `Error('Request rejected: EEXIST')` (no `.code`), node
 * syscalls throw `ErrnoException`s with `.code`, spawned tools only print a sentence on stderr.
 * Callers must never match those strings themselves: they use `isNotFound` / `isExists`.
 */
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { KernelError } from '../errors.js';

/** Errno name for a (positive or negative) errno number; undefined for 0 or unknown numbers. */
export function errnoName(n: number): string | undefined {
  if (!Number.isInteger(n) || n === 0) return undefined;
  try {
    return normalize(getSystemErrorName(-Math.abs(n)));
  } catch {
    return undefined;
  }
}

/** Errno number for a name (`'EEXIST'` -> 17), undefined when the name is unknown. */
export function errnoNumber(name: string): number | undefined {
  const table: Record<string, number | undefined> = constants.errno;
  return table[name];
}

// Linux has one number for both; node names it ENOTSUP, iproute2 prints EOPNOTSUPP's text.
// One spelling keeps `errno === 'EOPNOTSUPP'` checks honest.
function normalize(name: string): string {
  return name === 'ENOTSUP' ? 'EOPNOTSUPP' : name;
}

const NETLINK_REJECT = /Request rejected: (-?\d+|E[A-Z0-9]+)/;
// What npm `netlink` rejects with when a request's `timeout` option expires.
const NETLINK_TIMEOUT = /^Timeout has been reached$/;

/**
 * Default time a netlink request (rtnetlink, IPVS generic netlink) may wait for the kernel's
 * answer before it fails with ETIMEDOUT. Real answers take microseconds to tens of
 * milliseconds (a link delete waits for RCU); 5 s only ever expires on a lost reply.
 */
export const DEFAULT_NETLINK_TIMEOUT_MS = 5000;

/**
 * The errno name carried by an error from any of our kernel clients, when there is one.
 * Order matters: an explicit `.code` (node's ErrnoException) beats parsing a message.
 */
export function errnoOf(e: unknown): string | undefined {
  if (e instanceof KernelError) return e.errno;
  if (typeof e !== 'object' || e === null) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return normalize(code);
  const errno = (e as { errno?: unknown }).errno;
  if (typeof errno === 'number') return errnoName(errno);
  const message = e instanceof Error ? e.message : '';
  if (NETLINK_TIMEOUT.test(message)) return 'ETIMEDOUT';
  const m = NETLINK_REJECT.exec(message);
  if (m?.[1] !== undefined) return /^-?\d+$/.test(m[1]) ? errnoName(Number(m[1])) : normalize(m[1]);
  return undefined;
}

// iproute2 / nft / sysctl print strerror(3) text; map the sentences we can meet.
const STDERR_TEXT: ReadonlyArray<[RegExp, string]> = [
  [/File exists/i, 'EEXIST'],
  [/Cannot find device|No such device/i, 'ENODEV'],
  [/No such file or directory/i, 'ENOENT'],
  [/No such process/i, 'ESRCH'],
  [/Cannot assign requested address/i, 'EADDRNOTAVAIL'],
  [/Address already in use/i, 'EADDRINUSE'],
  [/Device or resource busy/i, 'EBUSY'],
  [/Operation not permitted/i, 'EPERM'],
  [/Permission denied/i, 'EACCES'],
  [/Operation not supported|Not supported|Unknown device type/i, 'EOPNOTSUPP'],
  [/Numerical result out of range/i, 'ERANGE'],
  [/Invalid argument|syntax error|Error: .*(unexpected|expecting)/i, 'EINVAL'],
];

/** Best-effort errno name from a tool's stderr text. */
export function errnoFromText(text: string): string | undefined {
  for (const [re, name] of STDERR_TEXT) if (re.test(text)) return name;
  return undefined;
}

/**
 * Wrap anything thrown by a kernel operation as a KernelError for `op`. An existing
 * KernelError passes through untouched so the innermost op name survives.
 */
export function toKernelError(op: string, e: unknown, detail?: string): KernelError {
  if (e instanceof KernelError) return e;
  const errno = errnoOf(e);
  let base = e instanceof Error ? e.message : String(e);
  // npm netlink's text says nothing the errno does not; say who rejected it instead.
  if (errno && NETLINK_REJECT.test(base)) base = `rejected by the kernel (${errno})`;
  else if (NETLINK_TIMEOUT.test(base)) base = 'no answer from the kernel before the request timeout (ETIMEDOUT)';
  return new KernelError(op, errno, detail ? `${detail}: ${base}` : base, { cause: e });
}

/** Run `fn`, rethrowing its failure as a KernelError for `op`. */
export async function kernelOp<T>(op: string, fn: () => Promise<T>, detail?: string): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toKernelError(op, e, detail);
  }
}
