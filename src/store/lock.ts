// Owns cross-process locks. A lock is an (empty) SQLite database file; holding the lock is holding a
// SQLite transaction on it: EXCLUSIVE for exclusive holders, SHARED (a read transaction) for shared
// holders. SQLite takes POSIX advisory locks, which the kernel drops when the holding process dies, so
// a lock left by a killed process is free again at once, and any language with a SQLite binding can
// take part in the protocol (docs/locking.md). Waiting polls with backoff and never blocks the event
// loop.

import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { writeFileAtomic } from './atomic.js';

export type LockMode = 'exclusive' | 'shared';

export interface LockOwner {
  pid: number;
  host: string;
  operation: string;
  since_ms: number;
}

export class LockTimeoutError extends Error {
  constructor(
    readonly path: string,
    readonly holder: LockOwner | undefined,
  ) {
    super(`lock ${path} is busy`);
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One held lock. release() is idempotent. */
export class HeldLock {
  private released = false;
  constructor(
    private readonly db: Database.Database,
    readonly path: string,
    readonly mode: LockMode,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      if (this.db.inTransaction) this.db.exec('COMMIT');
    } finally {
      this.db.close();
    }
  }
}

function openLockDb(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 0 });
  // The protocol relies on rollback-journal locking; WAL would let readers pass an exclusive holder.
  const mode = db.pragma('journal_mode', { simple: true });
  if (String(mode).toLowerCase() === 'wal') db.pragma('journal_mode = DELETE');
  return db;
}

/** One attempt; returns true when the lock is now held by `db`. */
function tryLock(db: Database.Database, mode: LockMode): boolean {
  try {
    if (mode === 'exclusive') {
      db.exec('BEGIN EXCLUSIVE');
    } else {
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    }
    return true;
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    if (isBusy(err)) return false;
    throw err;
  }
}

/** Takes the lock at `path` without waiting; undefined when another holder has it. */
export function tryAcquire(path: string, mode: LockMode): HeldLock | undefined {
  const db = openLockDb(path);
  try {
    if (tryLock(db, mode)) return new HeldLock(db, path, mode);
  } catch (err) {
    db.close();
    throw err;
  }
  db.close();
  return undefined;
}

/** Takes the lock at `path`, waiting up to `timeoutMs`; throws LockTimeoutError when it stays busy. */
export async function acquire(path: string, mode: LockMode, timeoutMs: number): Promise<HeldLock> {
  const db = openLockDb(path);
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  try {
    for (;;) {
      if (tryLock(db, mode)) return new HeldLock(db, path, mode);
      if (Date.now() >= deadline) break;
      await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
      delay = Math.min(delay * 2, 50);
    }
  } catch (err) {
    db.close();
    throw err;
  }
  db.close();
  throw new LockTimeoutError(path, readOwner(path));
}

const ownerPath = (lockPath: string): string => `${lockPath}.owner`;

/** Records who holds an exclusive lock (informational, for error messages). */
export async function recordOwner(lockPath: string, operation: string): Promise<void> {
  const owner: LockOwner = { pid: process.pid, host: hostname(), operation, since_ms: Date.now() };
  await writeFileAtomic(ownerPath(lockPath), JSON.stringify(owner), 0o644).catch(() => {});
}

export function readOwner(lockPath: string): LockOwner | undefined {
  try {
    return JSON.parse(readFileSync(ownerPath(lockPath), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

export function describeOwner(o: LockOwner | undefined): string | undefined {
  if (!o) return undefined;
  return `${o.operation} (pid ${o.pid} on ${o.host}, since ${new Date(o.since_ms).toISOString()})`;
}
