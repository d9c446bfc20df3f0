// Owns cross-process locks. A lock is an (empty) SQLite database file; holding the lock is holding a
// SQLite transaction on it: EXCLUSIVE for exclusive holders, SHARED (a read transaction) for shared
// holders. SQLite takes POSIX advisory locks, which the kernel drops when the holding process dies, so
// a lock left by a killed process is free again at once, and any language with a SQLite binding can
// take part in the protocol (docs/locking.md). Waiting polls with backoff and never blocks the event
// loop.

import { constants, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { asSnapshotError, IoError, type SnapshotError } from '../model/errors.js';
import { watchWorker } from '../util/heap-settings.js';
import { writeFileAtomicUnsynced } from './atomic.js';

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

/**
 * A failure to take the lock at `path` (not a timeout) as the error a user gets, `what` saying which
 * lock: a lock file that SQLite cannot read as a database (garbled, or something else written there)
 * says so and what to do; anything else is asSnapshotError's, naming the file.
 */
export function lockFileError(err: unknown, what: string, path: string): SnapshotError {
  const code = String((err as { code?: unknown } | undefined)?.code ?? '');
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
    return new IoError(
      `${what} ${path}: the lock file is damaged (not an SQLite database). It holds no data: remove it ` +
        'when no nexo-memory operation and no memory writer of the agent is running (it is made again, ' +
        'empty, by the next one), then run the command again',
      err,
    );
  return asSnapshotError(err, `${what} ${path}`);
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * What a held lock uses of its SQLite connection. Declared here so the public types (HeldLock is part
 * of the snapshotter's API) need nothing of better-sqlite3's, whose types are a dev dependency.
 */
export interface LockConnection {
  readonly inTransaction: boolean;
  exec(sql: string): unknown;
  close(): unknown;
}

/** One held lock. release() is idempotent. */
export class HeldLock {
  private released = false;
  constructor(
    private readonly db: LockConnection,
    readonly path: string,
    readonly mode: LockMode,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    // this process's record of holding it goes first, while it still holds it (the next holder writes
    // its own after taking it): a holder that records nothing (docs/locking.md) is never named as us
    if (this.mode === 'exclusive') forgetOwner(this.path);
    try {
      if (this.db.inTransaction) this.db.exec('COMMIT');
    } catch {
      // The transaction holds no data, so a COMMIT that fails loses nothing: closing ends it and drops the
      // lock all the same. It fails on a full disk when the lock file is new (SQLite writes its first
      // page then); thrown from a `finally`, it took the place of the error that was on its way (a copy's
      // ENOSPC became "database or disk is full" naming no file), and the locks released after it stayed
      // held (stop 54).
    } finally {
      this.db.close();
    }
  }
}

/**
 * A shared lock that was not taken, for a reader on a read-only file system (stop 46): releasing it
 * does nothing.
 */
export function unheldLock(path: string): HeldLock {
  return new HeldLock(
    { inTransaction: false, exec: () => undefined, close: () => undefined },
    path,
    'shared',
  );
}

/**
 * Why nothing can be written in `dir` (or its nearest existing ancestor): `EROFS` (a read-only file
 * system) or `EACCES` (no permission), else undefined.
 */
export async function unwritableDir(dir: string): Promise<'EROFS' | 'EACCES' | undefined> {
  for (let d = dir; ; d = dirname(d)) {
    try {
      await access(d, constants.W_OK);
      return undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EROFS' || code === 'EACCES') return code;
      if (code !== 'ENOENT' || dirname(d) === d) return undefined;
    }
  }
}

function openLockDb(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 0 });
  // The protocol relies on rollback-journal locking; WAL would let readers pass an exclusive holder.
  // Reading the mode needs the file readable: skip the check while another process holds the lock.
  try {
    if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal')
      db.pragma('journal_mode = DELETE');
    // The lock file is never written: a journal on disk would only cost a create, delete and directory
    // sync per transaction. MEMORY is this connection's setting; the file locks taken are the same.
    db.pragma('journal_mode = MEMORY');
    db.pragma('synchronous = OFF');
  } catch (err) {
    if (!isBusy(err)) {
      db.close();
      throw err;
    }
  }
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
  // on the monotonic clock: a wall clock stepped during the wait neither ends it early nor stretches it
  const deadline = performance.now() + timeoutMs;
  let delay = 2;
  try {
    for (;;) {
      if (tryLock(db, mode)) return new HeldLock(db, path, mode);
      if (performance.now() >= deadline) break;
      await sleep(Math.min(delay, Math.max(1, deadline - performance.now())));
      delay = Math.min(delay * 2, 50);
    }
  } catch (err) {
    db.close();
    throw err;
  }
  db.close();
  throw new LockTimeoutError(path, readOwner(path));
}

// Fair exclusive acquisition: SQLite's busy handler keeps a PENDING lock while it waits, which stops
// new shared holders from entering, so a stream of short writer batches cannot starve the waiter.
// The wait blocks, so it runs in a worker thread that then holds the lock until told to release.
// With a `wanted` path it first holds that lock file exclusively, until it holds the lock: holders that
// join a shared lock their process already holds (SQLite grants it without asking the kernel, so the
// PENDING lock cannot hold them back) look there first (lockWanted).
const FAIR_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const deadline = performance.now() + workerData.timeoutMs;
let wanted;
let db;
let failure;
let file = workerData.wanted;
try {
  if (workerData.wanted) {
    wanted = new Database(workerData.wanted, { timeout: workerData.timeoutMs });
    wanted.exec('BEGIN EXCLUSIVE');
  }
  file = workerData.path;
  db = new Database(workerData.path, { timeout: Math.max(0, Math.round(deadline - performance.now())) });
  db.exec('BEGIN EXCLUSIVE');
} catch (err) {
  failure = { error: String(err && err.message), code: err && err.code, path: file };
  if (db) db.close();
}
if (wanted) {
  try { if (wanted.inTransaction) wanted.exec('COMMIT'); } finally { wanted.close(); }
}
if (failure) {
  parentPort.postMessage(failure);
  process.exit(0);
}
parentPort.postMessage('locked');
parentPort.on('message', () => {
  try { db.exec('COMMIT'); } finally { db.close(); }
  parentPort.postMessage('released');
});
`;

const driverPath = createRequire(import.meta.url).resolve('better-sqlite3');

/** A lock held by a worker thread (see acquireExclusiveFair). */
export class WorkerHeldLock {
  private released: Promise<void> | undefined;
  constructor(
    private readonly worker: Worker,
    readonly path: string,
  ) {}

  release(): Promise<void> {
    this.released ??= new Promise<void>((resolvePromise) => {
      this.worker.once('message', () => resolvePromise());
      this.worker.once('exit', () => resolvePromise());
      this.worker.postMessage('release');
    }).then(() => this.worker.terminate().then(() => undefined));
    return this.released;
  }
}

/**
 * Exclusive lock that waiting shared holders cannot starve (used for the write gate). With `wanted`, the
 * lock file that says so while it waits (lockWanted): held exclusively from before the wait until the
 * lock is taken or the wait given up.
 */
export async function acquireExclusiveFair(
  path: string,
  timeoutMs: number,
  wanted?: string,
): Promise<WorkerHeldLock> {
  mkdirSync(dirname(path), { recursive: true });
  const worker = watchWorker(
    new Worker(FAIR_WORKER, { eval: true, workerData: { driver: driverPath, path, timeoutMs, wanted } }),
  );
  const first = await new Promise<unknown>((resolvePromise, reject) => {
    worker.once('message', resolvePromise);
    worker.once('error', reject);
  });
  if (first === 'locked') return new WorkerHeldLock(worker, path);
  await worker.terminate();
  const f = first as { error?: string; code?: string; path?: string };
  if (f.code && isBusy(f)) throw new LockTimeoutError(path, readOwner(path));
  throw new LockFileFailure(f.path ?? path, f.code, f.error ?? 'unknown error');
}

/** acquireExclusiveFair's failure other than a timeout: SQLite's `code` on the lock file at `path`. */
export class LockFileFailure extends Error {
  override readonly name = 'LockFileFailure';
  constructor(
    readonly path: string,
    readonly code: string | undefined,
    message: string,
  ) {
    super(`taking lock ${path}: ${message}`);
  }
}

interface Probe {
  read: Database.Statement;
  db: Database.Database;
  ino: number;
  checkedAt: number;
}

/** lockWanted's connections, one per lock file, kept open (opening one costs ~10x a probe). */
const probes = new Map<string, Probe>();
/** How often lockWanted makes sure its connection still has the file at the path (it was not replaced). */
const PROBE_RECHECK_MS = 1_000;

/**
 * Whether someone holds the lock at `path` exclusively or waits for it (SQLite's PENDING lock), this
 * process included: a shared lock would be refused now. One read on a kept connection; the file is made
 * (empty) when missing. Nothing of the lock is held afterwards.
 */
export function lockWanted(path: string): boolean {
  const now = performance.now();
  let p = probes.get(path);
  if (p && now - p.checkedAt > PROBE_RECHECK_MS) {
    p.checkedAt = now;
    let ino: number | undefined;
    try {
      ino = statSync(path).ino;
    } catch {
      // removed: made again below
    }
    if (ino !== p.ino) {
      p.db.close();
      probes.delete(path);
      p = undefined;
    }
  }
  if (!p) {
    const db = openLockDb(path);
    try {
      p = {
        db,
        read: db.prepare('SELECT count(*) FROM sqlite_master'),
        ino: statSync(path).ino,
        checkedAt: now,
      };
    } catch (err) {
      db.close();
      if (isBusy(err)) return true; // the schema could not be read: held exclusively
      throw err;
    }
    probes.set(path, p);
  }
  try {
    p.read.get();
    return false;
  } catch (err) {
    if (isBusy(err)) return true;
    throw err;
  }
}

const ownerPath = (lockPath: string): string => `${lockPath}.owner`;

/** Records who holds an exclusive lock (informational, for error messages). */
export async function recordOwner(lockPath: string, operation: string): Promise<void> {
  const owner: LockOwner = { pid: process.pid, host: hostname(), operation, since_ms: Date.now() };
  // Advisory (it only names the holder in error messages): never torn, not worth an fsync.
  try {
    writeFileAtomicUnsynced(ownerPath(lockPath), JSON.stringify(owner), 0o644);
  } catch {
    // best effort
  }
}

/**
 * Who recorded holding the lock, or undefined: no record, an unreadable one, or one a process of this
 * host left that is gone (killed while it held the lock: its record stays, and names nobody).
 */
export function readOwner(lockPath: string): LockOwner | undefined {
  let o: LockOwner;
  try {
    o = JSON.parse(readFileSync(ownerPath(lockPath), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object' || !Number.isSafeInteger(o.pid) || o.pid <= 0) return undefined;
  if (o.host === hostname() && !processAlive(o.pid)) return undefined;
  return o;
}

/** Removes the lock's owner record when it is this process's. Best effort, as the record is. */
function forgetOwner(lockPath: string): void {
  const o = readOwner(lockPath);
  if (o?.pid !== process.pid || o.host !== hostname()) return;
  try {
    unlinkSync(ownerPath(lockPath));
  } catch {
    // best effort
  }
}

/** Whether a process of this host with that id exists (signal 0 checks without sending anything). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // there, but not ours to signal
  }
}

export function describeOwner(o: LockOwner | undefined): string | undefined {
  if (!o) return undefined;
  return `${o.operation} (pid ${o.pid} on ${o.host}, since ${new Date(o.since_ms).toISOString()})`;
}
