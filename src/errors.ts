/**
 * Shoal's error model (after libnetwork's errdefs and undici's codes).
 *
 * Every error a user can see is a {@link ShoalError} with a stable `code` and a `kind`.
 * The HTTP status for a kind is decided in exactly one place: {@link httpStatusOf}.
 * Messages are sentences a user can act on: what was wrong and what to do.
 */

/** What went wrong, independent of transport. Mapped to HTTP status by {@link httpStatusOf}. */
export type ErrorKind =
  | 'NotFound'
  | 'InvalidParameter'
  | 'Conflict'
  | 'Forbidden'
  | 'Unauthorized'
  | 'Unavailable'
  | 'NotImplemented'
  | 'Internal';

/** Base class of every error Shoal raises on purpose. `code` is stable: scripts may match on it. */
export class ShoalError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShoalError';
    this.kind = kind;
    this.code = code.startsWith('SHOAL_ERR_') ? code : `SHOAL_ERR_${code}`;
  }
}

export const notFound = (what: string, hint?: string): ShoalError =>
  new ShoalError('NotFound', 'NOT_FOUND', hint ? `${what} not found (${hint})` : `${what} not found`);

export const invalid = (message: string, code = 'INVALID_PARAMETER'): ShoalError =>
  new ShoalError('InvalidParameter', code, message);

export const conflict = (message: string, code = 'CONFLICT'): ShoalError =>
  new ShoalError('Conflict', code, message);

export const unavailable = (message: string, cause?: unknown): ShoalError =>
  new ShoalError('Unavailable', 'UNAVAILABLE', message, { cause });

export const internal = (message: string, cause?: unknown): ShoalError =>
  new ShoalError('Internal', 'INTERNAL', message, { cause });

/** The one place an error kind becomes an HTTP status. */
export function httpStatusOf(kind: ErrorKind): number {
  switch (kind) {
    case 'NotFound': return 404;
    case 'InvalidParameter': return 400;
    case 'Conflict': return 409;
    case 'Forbidden': return 403;
    case 'Unauthorized': return 401;
    case 'Unavailable': return 503;
    case 'NotImplemented': return 501;
    case 'Internal': return 500;
  }
}

/** Inverse of {@link httpStatusOf} for clients that receive an error body. */
export function kindOfHttpStatus(status: number): ErrorKind {
  switch (status) {
    case 400: case 413: case 415: return 'InvalidParameter';
    case 401: return 'Unauthorized';
    case 403: return 'Forbidden';
    case 404: return 'NotFound';
    case 409: return 'Conflict';
    case 501: return 'NotImplemented';
    case 503: return 'Unavailable';
    default: return 'Internal';
  }
}

export const isShoalError = (e: unknown): e is ShoalError => e instanceof ShoalError;
export const isKind = (e: unknown, kind: ErrorKind): boolean => isShoalError(e) && e.kind === kind;

/**
 * A failed kernel operation (netlink, nft, a spawned `ip`): carries the operation, the errno
 * name when known and the command's stderr. Use {@link isNotFound} / {@link isExists} rather
 * than matching strings at call sites.
 */
export class KernelError extends ShoalError {
  readonly op: string;
  readonly errno: string | undefined;
  readonly stderr: string | undefined;

  constructor(op: string, errno: string | undefined, message: string, opts?: { stderr?: string; cause?: unknown }) {
    super(kindOfErrno(errno), errno ? `KERNEL_${errno}` : 'KERNEL', `${op}: ${message}`, { cause: opts?.cause });
    this.name = 'KernelError';
    this.op = op;
    this.errno = errno;
    this.stderr = opts?.stderr;
  }
}

function kindOfErrno(errno: string | undefined): ErrorKind {
  switch (errno) {
    case 'ENOENT': case 'ESRCH': case 'ENODEV': case 'EADDRNOTAVAIL': return 'NotFound';
    case 'EEXIST': case 'EBUSY': case 'EADDRINUSE': return 'Conflict';
    case 'EPERM': case 'EACCES': return 'Forbidden';
    case 'EINVAL': case 'ERANGE': return 'InvalidParameter';
    case 'EOPNOTSUPP': case 'ENOTSUP': case 'EPROTONOSUPPORT': return 'NotImplemented';
    default: return 'Internal';
  }
}

/** True for "the object is not there" from any layer (a delete of it is then a success). */
export function isNotFound(e: unknown): boolean {
  if (e instanceof KernelError) return e.kind === 'NotFound';
  return isKind(e, 'NotFound');
}

/** True for "the object is already there" (an add of it is then a success). */
export function isExists(e: unknown): boolean {
  if (e instanceof KernelError) return e.errno === 'EEXIST';
  return isKind(e, 'Conflict');
}

/** A message for a human from any thrown value: never a stack trace. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
