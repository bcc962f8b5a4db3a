/**
 * Moving the CALLING THREAD between network namespaces (worker side: setns affects one
 * thread). Shared by NetnsWorker (netns-worker.ts) and NetnsRoamer (netns-roamer-handlers.ts).
 */
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { toKernelError } from './errno.js';
import { bindMount, enterNetns, makeSharedMountPoint, unshareNetns } from './libc.js';
import { checkNetnsName, NETNS_DIR } from './paths.js';

const SELF = '/proc/thread-self/ns/net';
let sharedDirReady = false;

/** True when `path` is a mounted netns (nsfs), not an empty placeholder file. */
export function isNetnsMount(path: string): boolean {
  try {
    return statSync(path).dev === statSync(SELF).dev;
  } catch {
    return false;
  }
}

/** setns(2) this thread into the netns at `path`; KernelError `netns.enter` (ENOENT when absent). */
export function enterNetnsPath(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw toKernelError('netns.enter', e, path);
  }
  try {
    enterNetns(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Create netns `name` the way `ip netns add` does (shared /run/netns, placeholder file,
 * unshare, bind mount) and leave THIS thread inside it. Returns false when it already existed
 * (then the thread has entered it instead): create-or-enter, ensure semantics. When the bind
 * mount fails after the unshare, `onBindFailure` runs (e.g. go back home) before the error.
 */
export function createOrEnterNetns(name: string, onBindFailure?: () => void): boolean {
  const op = 'netns.create';
  checkNetnsName(op, name);
  const path = `${NETNS_DIR}/${name}`;
  if (isNetnsMount(path)) {
    enterNetnsPath(path);
    return false;
  }
  try {
    if (!sharedDirReady) {
      mkdirSync(NETNS_DIR, { recursive: true, mode: 0o755 });
      makeSharedMountPoint(op, NETNS_DIR);
      sharedDirReady = true;
    }
    // A leftover placeholder (a crash between open and mount) is reused, not an error.
    closeSync(openSync(path, 'a'));
  } catch (e) {
    throw toKernelError(op, e, name);
  }
  unshareNetns();
  try {
    bindMount(op, SELF, path);
  } catch (e) {
    onBindFailure?.();
    throw e;
  }
  return true;
}
