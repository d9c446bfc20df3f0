// Owns the database half of a diff: per table, rows added, removed and changed between two copies,
// matched by primary key (rowid when there is none) and compared by the content of their common
// columns, via ATTACH and set queries; schema changes from sqlite_master; with --detail, sample rows
// (long text cut, blobs and float32 vectors summarised). Runs on copies, never on live files.

import Database from 'better-sqlite3';
import type { DbName } from '../model/types.js';

export interface TableDiff {
  table: string;
  rows_a: number;
  rows_b: number;
  added: number;
  removed: number;
  changed: number;
  /** With --detail: up to `sample` rows of each kind. */
  rows?: { added: unknown[]; removed: unknown[]; changed: Array<{ before: unknown; after: unknown }> };
}

export interface SchemaChange {
  type: string;
  name: string;
  change: 'added' | 'removed' | 'changed';
}

export interface DatabaseDiff {
  db: DbName;
  /** `present`, or which side lacks the database. */
  presence: 'both' | 'only_a' | 'only_b';
  tables: TableDiff[];
  schema_changes: SchemaChange[];
}

const q = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const TEXT_MAX = 120;

/** A value as shown in a diff: long text cut, blobs summarised (float32 vectors with their norm). */
export function showValue(v: unknown): unknown {
  if (typeof v === 'string' && v.length > TEXT_MAX) return `${v.slice(0, TEXT_MAX)}… (${v.length} chars)`;
  if (Buffer.isBuffer(v)) {
    if (v.length >= 16 && v.length % 4 === 0) {
      const f = new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.length));
      let sum = 0;
      for (const x of f) sum += x * x;
      if (Number.isFinite(sum)) return `<float32[${f.length}] norm ${Math.sqrt(sum).toFixed(4)}>`;
    }
    return `<blob ${v.length} bytes>`;
  }
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function showRow(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, showValue(v)]));
}

interface TableInfo {
  columns: string[];
  key: string[];
}

function tableInfo(db: Database.Database, schema: string, table: string): TableInfo {
  const cols = db.prepare(`PRAGMA ${schema}.table_info(${q(table)})`).all() as Array<{
    name: string;
    pk: number;
  }>;
  const key = cols
    .filter((c) => c.pk > 0)
    .sort((x, y) => x.pk - y.pk)
    .map((c) => c.name);
  return { columns: cols.map((c) => c.name), key: key.length > 0 ? key : ['rowid'] };
}

function objects(db: Database.Database, schema: string): Map<string, { type: string; sql: string | null }> {
  const rows = db
    .prepare(`SELECT type, name, sql FROM ${schema}.sqlite_master WHERE name NOT LIKE 'sqlite_%'`)
    .all() as Array<{ type: string; name: string; sql: string | null }>;
  return new Map(rows.map((r) => [r.name, { type: r.type, sql: r.sql }]));
}

function count(db: Database.Database, sql: string): number {
  return Number(db.prepare(sql).pluck().get());
}

/** Compares database copy `a` with copy `b` (either may be absent). */
export function diffDatabase(
  db: DbName,
  a: string | undefined,
  b: string | undefined,
  detail: boolean,
  sample = 20,
): DatabaseDiff {
  const presence = a && b ? 'both' : a ? 'only_a' : 'only_b';
  // An absent side is an empty in-memory database, so one code path covers every case.
  const conn = new Database(a ?? ':memory:', { readonly: a !== undefined });
  try {
    conn.prepare('ATTACH DATABASE ? AS b').run(b ?? ':memory:');
    const oa = objects(conn, 'main');
    const ob = objects(conn, 'b');
    const schema_changes: SchemaChange[] = [];
    for (const [name, o] of ob) {
      const before = oa.get(name);
      if (!before) schema_changes.push({ type: o.type, name, change: 'added' });
      else if (before.sql !== o.sql) schema_changes.push({ type: o.type, name, change: 'changed' });
    }
    for (const [name, o] of oa)
      if (!ob.has(name)) schema_changes.push({ type: o.type, name, change: 'removed' });

    const tables = [...new Set([...oa, ...ob].filter(([, o]) => o.type === 'table').map(([n]) => n))].sort();
    const out: TableDiff[] = [];
    for (const t of tables) {
      const inA = oa.get(t)?.type === 'table';
      const inB = ob.get(t)?.type === 'table';
      const rowsA = inA ? count(conn, `SELECT count(*) FROM main.${q(t)}`) : 0;
      const rowsB = inB ? count(conn, `SELECT count(*) FROM b.${q(t)}`) : 0;
      if (!inA || !inB) {
        const d: TableDiff = {
          table: t,
          rows_a: rowsA,
          rows_b: rowsB,
          added: rowsB,
          removed: rowsA,
          changed: 0,
        };
        if (detail) {
          const pick = (s: string) =>
            (
              conn.prepare(`SELECT * FROM ${s}.${q(t)} LIMIT ?`).all(sample) as Array<Record<string, unknown>>
            ).map(showRow);
          d.rows = { added: inB ? pick('b') : [], removed: inA ? pick('main') : [], changed: [] };
        }
        out.push(d);
        continue;
      }
      const ia = tableInfo(conn, 'main', t);
      const ib = tableInfo(conn, 'b', t);
      const key = ia.key.join(',') === ib.key.join(',') ? ia.key : ['rowid'];
      const on = key.map((k) => `x.${q(k)} IS y.${q(k)}`).join(' AND ');
      const common = ia.columns.filter((c) => ib.columns.includes(c));
      const differs =
        common.length > 0 ? `NOT (${common.map((c) => `x.${q(c)} IS y.${q(c)}`).join(' AND ')})` : '0';
      const addedSql = `FROM b.${q(t)} AS y WHERE NOT EXISTS (SELECT 1 FROM main.${q(t)} AS x WHERE ${on})`;
      const removedSql = `FROM main.${q(t)} AS x WHERE NOT EXISTS (SELECT 1 FROM b.${q(t)} AS y WHERE ${on})`;
      const changedSql = `FROM main.${q(t)} AS x JOIN b.${q(t)} AS y ON ${on} WHERE ${differs}`;
      const d: TableDiff = {
        table: t,
        rows_a: rowsA,
        rows_b: rowsB,
        added: count(conn, `SELECT count(*) ${addedSql}`),
        removed: count(conn, `SELECT count(*) ${removedSql}`),
        changed: count(conn, `SELECT count(*) ${changedSql}`),
      };
      if (detail) {
        const cols = (alias: string, names: string[]) =>
          names.map((c) => `${alias}.${q(c)} AS ${q(c)}`).join(', ');
        const keyCols = key[0] === 'rowid' ? ['rowid', ...ia.columns] : ia.columns;
        const keyColsB = key[0] === 'rowid' ? ['rowid', ...ib.columns] : ib.columns;
        const rows = (sql: string) =>
          (conn.prepare(`${sql} LIMIT ?`).all(sample) as Array<Record<string, unknown>>).map(showRow);
        d.rows = {
          added: rows(`SELECT ${cols('y', keyColsB)} ${addedSql}`),
          removed: rows(`SELECT ${cols('x', keyCols)} ${removedSql}`),
          changed: (
            conn
              .prepare(
                `SELECT ${[...keyCols.map((c) => `x.${q(c)} AS ${q(`a:${c}`)}`), ...keyColsB.map((c) => `y.${q(c)} AS ${q(`b:${c}`)}`)].join(', ')} ${changedSql} LIMIT ?`,
              )
              .all(sample) as Array<Record<string, unknown>>
          ).map((r) => ({
            before: showRow(Object.fromEntries(keyCols.map((c) => [c, r[`a:${c}`]]))),
            after: showRow(Object.fromEntries(keyColsB.map((c) => [c, r[`b:${c}`]]))),
          })),
        };
      }
      out.push(d);
    }
    return { db, presence, tables: out, schema_changes };
  } finally {
    conn.close();
  }
}

/**
 * The diff of a database whose copies are byte-identical (same SHA-256 in both manifests): its tables
 * with their row counts and nothing changed, read from one copy without comparing rows.
 */
export function identicalDatabase(db: DbName, path: string, detail: boolean): DatabaseDiff {
  const conn = new Database(path, { readonly: true });
  try {
    const tables = [...objects(conn, 'main')]
      .filter(([, o]) => o.type === 'table')
      .map(([n]) => n)
      .sort();
    return {
      db,
      presence: 'both',
      tables: tables.map((table) => {
        const rows = count(conn, `SELECT count(*) FROM main.${q(table)}`);
        return {
          table,
          rows_a: rows,
          rows_b: rows,
          added: 0,
          removed: 0,
          changed: 0,
          ...(detail ? { rows: { added: [], removed: [], changed: [] } } : {}),
        };
      }),
      schema_changes: [],
    };
  } finally {
    conn.close();
  }
}
