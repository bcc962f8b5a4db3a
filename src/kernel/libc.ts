/**
 * The few libc calls Node lacks (setns, unshare, mount, umount2), through koffi FFI.
 *
 * Thread ownership: setns(2) and unshare(CLONE_NEWNET) change the network namespace of the
 * CALLING THREAD only. Calling them on the main thread would move every socket the process
 * opens afterwards, so {@link enterNetns} and {@link unshareNetns} refuse to run there; they
 * belong in a worker (see NetnsWorker). mount/umount2 affect the mount namespace, shared by
 * all threads, and are safe anywhere.
 */
import { isMainThread } from 'node:worker_threads';
import koffi from 'koffi';
import { KernelError } from '../errors.js';
import { errnoName } from './errno.js';

/** CLONE_NEWNET from <linux/sched.h>. */
export const CLONE_NEWNET = 0x40000000;
const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_SHARED = 1 << 20;
const MNT_DETACH = 2;

interface Libc {
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: null): number;
  umount2(target: string, flags: number): number;
}

let libc: Libc | undefined;

// Loaded on first use so that importing this module costs nothing where FFI is never needed
// (unit tests, the fakes).
function load(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  const fns = {
    setns: lib.func('int setns(int fd, int nstype)'),
    unshare: lib.func('int unshare(int flags)'),
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
    umount2: lib.func('int umount2(const char *target, int flags)'),
  };
  libc = {
    setns: (fd, nstype) => fns.setns(fd, nstype) as number,
    unshare: (flags) => fns.unshare(flags) as number,
    mount: (source, target, fstype, flags, data) => fns.mount(source, target, fstype, flags, data) as number,
    umount2: (target, flags) => fns.umount2(target, flags) as number,
  };
  return libc;
}

function check(op: string, rc: number, what: string): void {
  if (rc === 0) return;
  const n = koffi.errno();
  const name = errnoName(n);
  throw new KernelError(op, name, `${what}: ${name ?? `errno ${n}`}`);
}

function refuseMainThread(op: string): void {
  if (isMainThread) {
    throw new KernelError(op, 'EPERM', 'refusing to change the network namespace of the main thread (use a NetnsWorker)');
  }
}

/** setns(fd, CLONE_NEWNET) on the calling (worker) thread. */
export function enterNetns(fd: number): void {
  refuseMainThread('netns.enter');
  check('netns.enter', load().setns(fd, CLONE_NEWNET), 'setns');
}

/** unshare(CLONE_NEWNET) on the calling (worker) thread: it is now alone in a fresh netns. */
export function unshareNetns(): void {
  refuseMainThread('netns.create');
  check('netns.create', load().unshare(CLONE_NEWNET), 'unshare(CLONE_NEWNET)');
}

/** `mount --bind source target`. */
export function bindMount(op: string, source: string, target: string): void {
  check(op, load().mount(source, target, 'none', MS_BIND, null), `bind mount ${source} on ${target}`);
}

/**
 * Make `dir` a shared mount point, bind-mounting it on itself first when it is not a mount
 * point yet: exactly what `ip netns add` does to /run/netns, so that netns mounts propagate
 * into mount namespaces created later (e.g. by `ip netns exec`).
 */
export function makeSharedMountPoint(op: string, dir: string): void {
  const l = load();
  if (l.mount('', dir, 'none', MS_SHARED | MS_REC, null) === 0) return;
  if (errnoName(koffi.errno()) !== 'EINVAL') check(op, -1, `make ${dir} shared`);
  check(op, l.mount(dir, dir, 'none', MS_BIND | MS_REC, null), `bind ${dir} on itself`);
  check(op, l.mount('', dir, 'none', MS_SHARED | MS_REC, null), `make ${dir} shared`);
}

/** umount2(target, MNT_DETACH); resolves false when target was not a mount point (EINVAL) or absent. */
export function detachMount(op: string, target: string): boolean {
  if (load().umount2(target, MNT_DETACH) === 0) return true;
  const name = errnoName(koffi.errno());
  if (name === 'EINVAL' || name === 'ENOENT') return false;
  throw new KernelError(op, name, `umount ${target}: ${name ?? 'unknown error'}`);
}
