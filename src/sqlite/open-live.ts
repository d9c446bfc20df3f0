// Owns opening a live database for reading (a snapshot's copy, a restore's row counts of the live
// agent): read-only, so that reading never writes the agent's files — except for the one write SQLite
// itself requires of any opener, rolling back the hot journal a writer killed mid-transaction left.
// A read-only connection cannot do that (SQLITE_READONLY_ROLLBACK: the agent could not be snapshotted,
// so not restored either, until something else opened it); a read-write one is opened for it first.

import Database from 'better-sqlite3';

/** Read-only connection to the live database `path`, after the rollback of a hot journal if it has one. */
export function openLiveDatabase(path: string, timeoutMs: number): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: timeoutMs });
  try {
    db.pragma('schema_version'); // reads page 1: where SQLite finds a hot journal
    return db;
  } catch (err) {
    db.close();
    if ((err as { code?: unknown }).code !== 'SQLITE_READONLY_ROLLBACK') throw err;
  }
  // Any read-write opener rolls the journal back on its first read, under SQLite's own locks (a
  // journal is hot only when no connection holds the RESERVED lock): the committed state, nothing else.
  const rw = new Database(path, { fileMustExist: true, timeout: timeoutMs });
  try {
    rw.pragma('schema_version');
  } finally {
    rw.close();
  }
  return new Database(path, { readonly: true, fileMustExist: true, timeout: timeoutMs });
}
