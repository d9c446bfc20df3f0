// Owns the SQLite jobs of a snapshot, restore or verify: a transactionally consistent copy of a live
// database (`VACUUM INTO`, one statement, never the stepwise backup that livelocks under a writer) and
// `PRAGMA integrity_check`. Both are synchronous (better-sqlite3 blocks): they run
// on a SQLite worker thread (thread-main.ts) for large databases and on the calling thread for small
// ones (worker.ts decides). The check is of the database's structure: CHECK constraints are the
// writer's to enforce and are not evaluated; a schema with anything else the check would evaluate per
// row (per-row.ts) is checked in a process under a fuse instead (check-fuse.ts, check-main.ts).

import Database from 'better-sqlite3';
import { checkStillLive } from './live-files.js';
import { openLiveDatabase } from './open-live.js';
import { perRowExpression } from './per-row.js';

export interface CopyResult {
  journal_mode: string;
  page_size: number;
}

// Page cache of each connection: 2 MiB (SQLite's default) instead of better-sqlite3's 16 MiB. A copy
// (the source and the VACUUM INTO target) and an integrity check read each page about once, so the
// large cache only raised the peak RSS (by ~30 MB per worker), not the speed (measured: no slower).
const CACHE_KIB = -2000;

/**
 * Consistent copy of the live database `src` into `dst` (which must not exist), waiting at most
 * `busyTimeoutMs` for a writer's lock. A wait that times out throws SQLite's `SQLITE_BUSY`. A hot
 * journal left by a killed writer is rolled back first (open-live.ts). The source's files are checked
 * to be the agent's own before the open, and the database to be the same inode after the copy
 * (live-files.ts): SQLITE, naming the file, when not.
 */
export function copyDatabase(
  src: string,
  dst: string,
  busyTimeoutMs: number,
  /** Called after the copy was made, before the database is checked again (tests swap it there). */
  afterCopy?: () => void,
): CopyResult {
  const { db, files } = openLiveDatabase(src, busyTimeoutMs);
  let journal_mode: string;
  let page_size: number;
  try {
    journal_mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
    page_size = Number(db.pragma('page_size', { simple: true }));
    db.pragma(`cache_size = ${CACHE_KIB}`);
    // VACUUM INTO writes its target with the source connection's sync level: the copy is staging, read
    // once and stored (the repository and the bundle make their own writes durable), so it is not
    // fsynced; the bytes are the same.
    db.pragma('synchronous = OFF');
    db.prepare('VACUUM INTO ?').run(dst);
  } finally {
    db.close();
  }
  afterCopy?.();
  checkStillLive(files); // (the caller removes the copy when this throws)
  if (journal_mode === 'wal') {
    // keep the live database's WAL mode in the copy's header; closing checkpoints and removes -wal/-shm
    const copy = new Database(dst, { fileMustExist: true });
    try {
      copy.pragma('synchronous = OFF');
      copy.pragma('journal_mode = WAL');
    } finally {
      copy.close();
    }
  }
  return { journal_mode, page_size };
}

/**
 * What an integrity check here answers: what `PRAGMA integrity_check` reported (`['ok']`, or the problems
 * found), or, without running it, what of the schema it would evaluate per row (`perRow`, per-row.ts):
 * such a database is checked in a process under a fuse (check-fuse.ts).
 */
export type IntegrityAnswer = { result: string[] } | { perRow: string };

/**
 * The database at `path` opened for an integrity check: SQLite's small page cache, and CHECK constraints
 * ignored (`ignore_check_constraints`, which integrity_check honours: SQLITE_IgnoreChecks), since an
 * attacker's CHECK can take any time per row, and enforcing them is the writer's job.
 */
export function openForCheck(path: string): Database.Database {
  const db = new Database(path, { fileMustExist: true });
  try {
    db.pragma(`cache_size = ${CACHE_KIB}`);
    db.pragma('ignore_check_constraints = ON');
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** What `PRAGMA integrity_check(maxErrors)` reports on `db` (openForCheck): `['ok']`, or the problems. */
export function runIntegrityCheck(db: Database.Database, maxErrors: number): string[] {
  return db
    .prepare(`PRAGMA integrity_check(${Math.trunc(maxErrors)})`)
    .pluck()
    .all()
    .map(String);
}

/**
 * `PRAGMA integrity_check(maxErrors)` of the database at `path`, unless its schema has something the
 * check would evaluate per row (IntegrityAnswer).
 */
export function integrityCheck(path: string, maxErrors: number): IntegrityAnswer {
  const db = openForCheck(path);
  try {
    const perRow = perRowExpression(db);
    return perRow !== undefined ? { perRow } : { result: runIntegrityCheck(db, maxErrors) };
  } finally {
    db.close();
  }
}
