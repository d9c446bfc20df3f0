// Owns checking that a live database's files are the agent's own before SQLite opens them by path (it
// follows symlinks, and better-sqlite3 gives no descriptor to check): the database and each companion
// SQLite reads beside it (`-wal`, `-journal`, `-shm`) that exists must be a regular file, not a symlink,
// at the real path of its directory + its name; and, after a copy, the database must still be the same
// inode (a swap during the copy). Whoever writes the directory (the agent, maybe another user than the
// snapshotter) could otherwise have another agent's database, or its pages, read into a snapshot
// (docs/decisions.md, stop 46).

import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { SqliteError } from '../model/errors.js';
import { SQLITE_EXTRAS } from '../model/types.js';

/** The identities (dev:ino) of a live database's files when checked: the database's, and companions'. */
export interface LiveFiles {
  path: string;
  db: string;
  companions: Record<string, string>;
}

function refuse(path: string, why: string): SqliteError {
  return new SqliteError(
    `${path} ${why}: not read (a live database and its -wal, -journal and -shm must be regular files in the database directory, not symlinks)`,
  );
}

/** dev:ino of `file` (not followed) when it is a regular file; undefined when absent; else refused. */
function regularFile(file: string, realDir: string): string | undefined {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new SqliteError(`checking ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (st.isSymbolicLink()) throw refuse(file, 'is a symlink');
  if (!st.isFile()) throw refuse(file, 'is not a regular file');
  let real: string;
  try {
    real = realpathSync(file);
  } catch (err) {
    throw new SqliteError(`checking ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (real !== join(realDir, basename(file))) throw refuse(file, `resolves elsewhere (${real})`);
  return `${st.dev}:${st.ino}`;
}

/**
 * Checks the live database `path` and its existing companions (refused with SQLITE, naming the file,
 * when one is a symlink, not a regular file, or not at its directory's real path); undefined when the
 * database does not exist.
 */
export function checkLiveDatabase(path: string): LiveFiles | undefined {
  let realDir: string;
  try {
    realDir = realpathSync(dirname(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new SqliteError(`checking ${dirname(path)}: ${(err as Error).message}`, { cause: err });
  }
  const db = regularFile(path, realDir);
  if (db === undefined) return undefined;
  const companions: Record<string, string> = {};
  for (const extra of SQLITE_EXTRAS) {
    const id = regularFile(`${path}${extra}`, realDir);
    if (id !== undefined) companions[extra] = id;
  }
  return { path, db, companions };
}

/**
 * After a copy: the database is still the inode checked before it, and every companion is still a
 * regular file in place (a companion may come or go with SQLite's own work; one replaced by a symlink
 * may not). Throws SQLITE, naming the file, when the database was swapped during the copy.
 */
export function checkStillLive(before: LiveFiles): void {
  const after = checkLiveDatabase(before.path);
  if (after?.db !== before.db)
    throw refuse(before.path, 'was replaced during the copy (the copy is discarded)');
}
