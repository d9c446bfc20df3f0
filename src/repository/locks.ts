// Owns repository locks (docs/locking.md, "Repository locks"): lock objects in the backend, shared for
// operations that add or read data (snapshot, import, restore, verify, check) and exclusive for prune.
// A held lock blocks a newcomer; two lockers that raced both see each other after writing and withdraw.
// Locks are refreshed while held; a lock not refreshed for STALE_MS, or of a dead process on this
// host, is stale and ignored (and removed by the next exclusive locker).

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Backend } from '../backend/backend.js';
import { ObjectNotFoundError, RepositoryLockedError } from '../model/errors.js';
import { readObject } from './repository.js';

export const STALE_MS = 30 * 60 * 1000;
export const REFRESH_MS = 5 * 60 * 1000;

export interface LockInfo {
  exclusive: boolean;
  operation: string;
  host: string;
  pid: number;
  created_at_ms: number;
  refreshed_at_ms: number;
}

export interface HeldRepoLock {
  readonly name: string;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isStale(l: LockInfo, now = Date.now()): boolean {
  if (now - l.refreshed_at_ms > STALE_MS) return true;
  return l.host === hostname() && l.pid !== process.pid && !alive(l.pid);
}

async function readLocks(backend: Backend): Promise<Map<string, LockInfo>> {
  const out = new Map<string, LockInfo>();
  for await (const o of backend.list('locks')) {
    try {
      const l = JSON.parse(
        (await readObject(backend, 'locks', o.name, 64 * 1024)).toString('utf8'),
      ) as LockInfo;
      if (typeof l?.created_at_ms === 'number' && typeof l.refreshed_at_ms === 'number') out.set(o.name, l);
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError) && !(err instanceof SyntaxError)) throw err;
    }
  }
  return out;
}

/** The first non-stale lock in `all` (other than `self`) that conflicts with a lock of this kind. */
function conflicting(
  all: Map<string, LockInfo>,
  exclusive: boolean,
  self?: string,
): [string, LockInfo] | undefined {
  for (const entry of all) {
    const [name, l] = entry;
    if (name === self || isStale(l)) continue;
    if (exclusive || l.exclusive) return entry;
  }
  return undefined;
}

/**
 * Takes a repository lock, retrying with jittered backoff for up to `timeoutMs` while a conflicting
 * lock is held; RepositoryLockedError (naming the holder) when it stays busy. restic's protocol: look
 * first (a held lock blocks), write our lock, look again — a conflicting lock written meanwhile means
 * two lockers raced, and ours is withdrawn before retrying (the other may withdraw too; the backoff's
 * jitter separates the next attempts).
 */
export async function lockRepository(
  backend: Backend,
  exclusive: boolean,
  operation: string,
  timeoutMs: number,
): Promise<HeldRepoLock> {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  for (;;) {
    let blocker = conflicting(await readLocks(backend), exclusive);
    if (!blocker) {
      const name = randomBytes(32).toString('hex');
      const now = Date.now();
      const mine: LockInfo = {
        exclusive,
        operation,
        host: hostname(),
        pid: process.pid,
        created_at_ms: now,
        refreshed_at_ms: now,
      };
      await backend.save({ type: 'locks', name }, Buffer.from(JSON.stringify(mine)), { ifAbsent: true });
      const all = await readLocks(backend);
      blocker = conflicting(all, exclusive, name);
      if (!blocker) {
        if (exclusive)
          for (const [other, l] of all)
            if (other !== name && isStale(l)) await backend.remove({ type: 'locks', name: other });
        return held(backend, name, mine);
      }
      await backend.remove({ type: 'locks', name });
    }
    if (Date.now() >= deadline) {
      const b = blocker[1];
      throw new RepositoryLockedError(
        `${b.exclusive ? 'exclusive' : 'shared'} lock of ${b.operation} (pid ${b.pid} on ${b.host})`,
      );
    }
    await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
    delay = Math.min(delay * 2, 1000);
  }
}

function held(backend: Backend, name: string, info: LockInfo): HeldRepoLock {
  let released = false;
  const timer = setInterval(() => {
    const refreshed = { ...info, refreshed_at_ms: Date.now() };
    void backend.save({ type: 'locks', name }, Buffer.from(JSON.stringify(refreshed))).catch(() => {});
  }, REFRESH_MS);
  timer.unref();
  return {
    name,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await backend.remove({ type: 'locks', name });
    },
  };
}
