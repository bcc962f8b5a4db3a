/**
 * An exclusive lock on a store directory: the file `LOCK` holding the owner's pid.
 *
 * The lock file is created complete (written under a temporary name, then hard-linked into
 * place, which fails if it exists), so a reader never sees an empty lock. A lock whose pid is
 * not alive is stale (its owner crashed) and is taken over; the takeover itself is guarded by
 * `LOCK.takeover`, so two processes cannot both remove a stale lock and each think they won.
 * A lock held by this very process is live: one directory is never opened twice in a process.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { conflict } from '../errors.js';
import { errnoOf } from './fsutil.js';

export interface DirLock {
  /** Removes the lock file. Idempotent. */
  release(): Promise<void>;
}

export const LOCK_FILE = 'LOCK';

/** Takes the lock on `dir` or rejects with Conflict (code SHOAL_ERR_STORE_LOCKED) naming the holder. */
export async function lockDir(dir: string): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await createWithPid(path)) {
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await rm(path, { force: true });
        },
      };
    }
    const holder = await readPid(path);
    if (holder !== undefined && isAlive(holder)) throw locked(dir, holder);
    await takeOver(dir, path, holder);
  }
  throw conflict(`store directory ${dir} is locked and its lock could not be taken over; retry`, 'STORE_LOCKED');
}

function locked(dir: string, pid: number): Error {
  const who = pid === process.pid ? 'this process (close the other store first)' : `process ${pid}`;
  return conflict(`store directory ${dir} is in use by ${who}`, 'STORE_LOCKED');
}

/** Removes a stale lock held by the dead `stalePid`, unless someone else is already doing so. */
async function takeOver(dir: string, path: string, stalePid: number | undefined): Promise<void> {
  const guard = `${path}.takeover`;
  if (!(await createWithPid(guard))) {
    const taker = await readPid(guard);
    if (taker !== undefined && isAlive(taker)) throw locked(dir, taker);
    await rm(guard, { force: true }); // left by a process that died mid-takeover
    return;
  }
  try {
    // Under the guard: remove the lock only if it is still the stale one we looked at.
    if ((await readPid(path)) === stalePid) await rm(path, { force: true });
  } finally {
    await rm(guard, { force: true });
  }
}

/** Atomically creates `path` containing our pid; false when it already exists. */
async function createWithPid(path: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  await writeFile(tmp, `${process.pid}\n`);
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The pid in a lock file; undefined when it is gone or unreadable (treated as stale). */
async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt(await readFile(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return errnoOf(err) === 'EPERM';
  }
}
