/** Where named network namespaces live, shared with iproute2 (`ip netns`). */
import { KernelError } from '../errors.js';

/** The directory `ip netns add` bind-mounts namespaces under. */
export const NETNS_DIR = '/run/netns';

// Same rule as iproute2: a name is one path component.
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Throws EINVAL unless `name` is usable as a netns name. */
export function checkNetnsName(op: string, name: string): void {
  if (!NAME.test(name) || name === '.' || name === '..') {
    throw new KernelError(op, 'EINVAL', `'${name}' is not a valid netns name (letters, digits, '_', '.', '-')`);
  }
}

/** A netns name (`'sbx1'`) or an absolute nsfs path (`'/proc/1/ns/net'`) to a path. */
export function netnsPath(ref: string): string {
  if (ref.startsWith('/')) return ref;
  checkNetnsName('netns.path', ref);
  return `${NETNS_DIR}/${ref}`;
}
