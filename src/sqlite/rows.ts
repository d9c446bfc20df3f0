// Owns counting the rows of every table of a database file (what a restore reports per component;
// virtual tables are left out: sqlite/schema.ts). Runs
// on the main thread for a dry run and on a SQLite worker thread (sqlite/worker.ts `call`) for a
// restore, beside the rebuild of the repository.

import { existsSync } from 'node:fs';
import { SnapshotError } from '../model/errors.js';
import { openLiveDatabase } from './open-live.js';
import { virtualTableNames } from './schema.js';

/** Table name → number of rows. */
export type RowCounts = Record<string, number>;

/** Rows per table of a database file; empty when it cannot be read. Opens it read-only. */
export function rowCounts(path: string): RowCounts {
  if (!existsSync(path)) return {};
  // a database that is a symlink (or its -wal, -journal) is refused (SQLITE): not another's counts
  let opened: ReturnType<typeof openLiveDatabase>;
  try {
    opened = openLiveDatabase(path, 5_000);
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    // SQLite's own failure (a full disk: its -shm could not grow) names no file: this one, with its code
    // (stop 54: "restore of agent ana: disk I/O error")
    throw Object.assign(new Error(`reading ${path}: ${(err as Error).message}`, { cause: err }), {
      code: (err as { code?: unknown }).code,
    });
  }
  const { db } = opened;
  try {
    // count(*) reads each page once: SQLite's 2 MiB page cache, not better-sqlite3's 16 MiB (two
    // restores' threads count at once, and the cache would only raise the peak memory)
    db.pragma('cache_size = -2000');
    const tables = db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .pluck()
      .all() as string[];
    const out: RowCounts = {};
    // a virtual table's rows are its module's (sqlite/schema.ts): not counted, never run
    const virtual = virtualTableNames(db);
    for (const t of tables.filter((x) => !virtual.has(x)))
      out[t] = db
        .prepare(`SELECT count(*) FROM "${t.replaceAll('"', '""')}"`)
        .pluck()
        .get() as number;
    return out;
  } catch {
    return {};
  } finally {
    db.close();
  }
}
