// Owns what readers of a snapshot's databases need to know of a schema: the names a rowid is read by
// (ROWID_NAMES), and the virtual tables among the tables. A virtual table's
// rows are made by its module's code (a full-text index, an R-Tree, a module this SQLite lacks), so no
// reader of a snapshot's database counts or reads them: they come from `PRAGMA table_list`, which parses
// the schema as SQLite does (a schema text that hides its `CREATE VIRTUAL TABLE` behind a comment is
// still `virtual` there).

import type Database from 'better-sqlite3';

/** The names SQLite gives a rowid table's rowid, unless a column takes one (`rowid`, `_rowid_`, `oid`). */
export const ROWID_NAMES = ['rowid', '_rowid_', 'oid'] as const;

/**
 * The first of ROWID_NAMES that none of `columns` takes (SQLite's names are case-insensitive): the name
 * a table's rowid is read by; undefined when a column takes each of them.
 */
export function freeRowidName(columns: Iterable<string>): string | undefined {
  const taken = new Set([...columns].map((c) => c.toLowerCase()));
  return ROWID_NAMES.find((n) => !taken.has(n));
}

/** The names of the virtual tables of `schema` (`main`, or an attached database's name). */
export function virtualTableNames(db: Database.Database, schema = 'main'): Set<string> {
  const listed = db.prepare(`PRAGMA "${schema.replaceAll('"', '""')}".table_list`).all() as {
    name: string;
    type: string;
  }[];
  return new Set(listed.filter((r) => r.type === 'virtual').map((r) => r.name));
}
