// Owns repository locks (docs/locking.md, "Repository locks"): lock objects in the backend, shared for
// operations that add or read data (snapshot, import, restore, verify, check) and exclusive for prune.
// A held lock blocks a newcomer; two lockers that raced both see each other after writing and withdraw.
// Locks are refreshed while held. A lock not refreshed for STALE_MS is stale, and so is one of a process
// of this host that is gone (no such pid, a zombie, or a pid reused by a process that started later);
// stale locks are ignored, and removed by the next exclusive locker. A holder checks that its lock is
// still its own (`check`) before a step that others rely on it for: a lock removed by another process,
// or not refreshed in time, is lost, and the operation stops.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Backend } from '../backend/backend.js';
import { ObjectNotFoundError, RepositoryLockedError } from '../model/errors.js';
import { readObject } from './repository.js';

export const STALE_MS = 30 * 60 * 1000;
export const REFRESH_MS = 5 * 60 * 1000;
/** A holder whose last refresh is older than this no longer counts on its lock (others may soon not). */
const TRUST_MS = STALE_MS - REFRESH_MS;

export interface LockInfo {
  exclusive: boolean;
  operation: string;
  host: string;
  pid: number;
  /** When the process started (Linux: clock ticks after boot, /proc/<pid>/stat field 22), to tell a reused pid. */
  start?: string;
  created_at_ms: number;
  refreshed_at_ms: number;
}

export interface HeldRepoLock {
  readonly name: string;
  /** Throws RepositoryLockedError when the lock was lost (removed by another process, or not refreshed in time). */
  check(): Promise<void>;
  release(): Promise<void>;
}

/** The state letter and start time of a process of this host from /proc, or undefined when there is no /proc. */
function procStat(pid: number): { state: string; start: string } | undefined | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ESRCH' ? null : undefined;
  }
  // `pid (comm) state …`: comm may hold spaces and parentheses; the fields follow the last `)`.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

/** This process's start time, recorded in its locks. */
const ownStart = (): string | undefined => procStat(process.pid)?.start;

function alive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (st === null) return false; // gone between the two looks
  if (st === undefined) return true; // no /proc: the signal is all we know
  if (st.state === 'Z' || st.state === 'X') return false; // exited, not reaped yet
  return start === undefined || st.start === start;
}

export function isStale(l: LockInfo, now = Date.now()): boolean {
  if (now - l.refreshed_at_ms > STALE_MS) return true;
  return l.host === hostname() && l.pid !== process.pid && !alive(l.pid, l.start);
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
 * lock is held (0: one attempt, never waits); RepositoryLockedError (naming the holder) when it stays
 * busy. restic's protocol: look first (a held lock blocks), write our lock, look again — a conflicting
 * lock written meanwhile means two lockers raced, and ours is withdrawn before retrying (the other may
 * withdraw too; the backoff's jitter separates the next attempts).
 */
export async function lockRepository(
  backend: Backend,
  exclusive: boolean,
  operation: string,
  timeoutMs: number,
): Promise<HeldRepoLock> {
  const deadline = Date.now() + timeoutMs;
  const start = ownStart();
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
        ...(start !== undefined ? { start } : {}),
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
  let lost = false;
  let refreshedAt = info.refreshed_at_ms;
  const exists = async (): Promise<boolean> => {
    try {
      await backend.stat({ type: 'locks', name });
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  };
  const refresh = async () => {
    // A lock another process removed (it judged it stale) is not written again: it is lost.
    if (lost || !(await exists())) {
      lost = true;
      return;
    }
    const now = Date.now();
    await backend.save(
      { type: 'locks', name },
      Buffer.from(JSON.stringify({ ...info, refreshed_at_ms: now })),
    );
    refreshedAt = now;
  };
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing.then(refresh).catch(() => {}); // a failed refresh shows in check()
  }, REFRESH_MS);
  timer.unref();
  const what = `${info.exclusive ? 'exclusive' : 'shared'} lock of ${info.operation}`;
  return {
    name,
    async check() {
      if (!lost && Date.now() - refreshedAt > TRUST_MS) lost = true;
      if (!lost && !(await exists())) lost = true;
      if (lost)
        throw new RepositoryLockedError(
          `this operation's ${what} was lost (removed by another process, or not refreshed in time); it stops here`,
        );
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await refreshing;
      await backend.remove({ type: 'locks', name });
    },
  };
}
