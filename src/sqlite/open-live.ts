// Owns opening a live database for reading (a snapshot's copy, a restore's row counts of the live
// agent): read-only, so that reading never writes the agent's files — except for the one write SQLite
// itself requires of any opener, rolling back the hot journal a writer killed mid-transaction left.
// A read-only connection cannot do that (SQLITE_READONLY_ROLLBACK: the agent could not be snapshotted,
// so not restored either, until something else opened it); a read-write one is opened for it first.
// Before any open, the database's files are checked to be the agent's own (live-files.ts): SQLite opens
// by path and follows a symlink, to read — or, rolling back a journal, write — another database.

import Database from 'better-sqlite3';
import { SqliteError } from '../model/errors.js';
import { checkLiveDatabase, type LiveFiles } from './live-files.js';

/**
 * Read-only connection to the live database `path`, after the rollback of a hot journal if it has one,
 * and the identities of its files as checked before the open (SQLITE when one is not the agent's own).
 */
export function openLiveDatabase(
  path: string,
  timeoutMs: number,
): { db: Database.Database; files: LiveFiles } {
  const files = checkLiveDatabase(path);
  if (files === undefined) throw new SqliteError(`${path}: no such database`);
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: timeoutMs });
  try {
    db.pragma('schema_version'); // reads page 1: where SQLite finds a hot journal
    return { db, files };
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
  return { db: new Database(path, { readonly: true, fileMustExist: true, timeout: timeoutMs }), files };
}
