// Owns finding what of a database's schema `PRAGMA integrity_check` would evaluate for every row, CHECK
// constraints aside (the check's connection ignores them, jobs.ts): a VIRTUAL generated column (computed
// for its NOT NULL and type checks; a STORED one, hidden 3, is read from the record like any value), an
// index on an expression or a partial index (sqlite3GenerateIndexKey computes each row's key and WHERE),
// and a virtual table (its module's own check, xIntegrity, runs the module's code: an FTS table may read
// its content through any view). Each is an expression the database's writer chose, and in a snapshot's
// database (a hostile bundle's) it can cost hours or gigabytes per check: such a check runs in a process
// under a fuse (check-fuse.ts). Names come from the schema and are only ever bound, never quoted into SQL.

import type Database from 'better-sqlite3';

/**
 * What integrity_check would evaluate per row of `db`'s main schema (the first such thing, named), or
 * undefined when it evaluates nothing the schema's writer chose (CHECK constraints aside).
 */
export function perRowExpression(db: Database.Database): string | undefined {
  const tables = db.prepare("SELECT name, type FROM pragma_table_list WHERE schema = 'main'").all() as {
    name: string;
    type: string;
  }[];
  const virtualColumn = db.prepare("SELECT name FROM pragma_table_xinfo(?, 'main') WHERE hidden = 2 LIMIT 1");
  const indexes = db.prepare("SELECT name, partial FROM pragma_index_list(?, 'main')");
  const onExpression = db.prepare("SELECT 1 FROM pragma_index_xinfo(?, 'main') WHERE cid = -2 LIMIT 1");
  for (const t of tables) {
    if (t.type === 'virtual') return `virtual table ${JSON.stringify(t.name)}`;
    if (t.type !== 'table' && t.type !== 'shadow') continue; // views are not checked
    const column = virtualColumn.pluck().get(t.name) as string | undefined;
    if (column !== undefined)
      return `virtual generated column ${JSON.stringify(column)} of table ${JSON.stringify(t.name)}`;
    for (const i of indexes.all(t.name) as { name: string; partial: number }[]) {
      if (i.partial) return `partial index ${JSON.stringify(i.name)}`;
      if (onExpression.get(i.name) !== undefined) return `index ${JSON.stringify(i.name)} on an expression`;
    }
  }
  return undefined;
}
