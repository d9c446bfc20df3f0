// Owns reading a materialised database copy (never a live file): opened read-only, its tables with row
// counts, a page of a table's rows as JSON-safe values (text through the caller's redaction view and cut
// at MAX_VALUE_CHARS, blobs as base64 cut at MAX_VALUE_CHARS bytes), and the rows whose text columns hold
// a text or match a regex (find's confirmation). Table names come from the copy's own schema and are
// always quoted; a caller's table name is only compared with them.

import Database from 'better-sqlite3';
import { type Shown, showText } from '../diff/secrets.js';
import { InvalidInputError, missingIn } from '../model/errors.js';
import { redactText } from '../policy/redaction/scan.js';
import { virtualTableNames } from '../sqlite/schema.js';
import { type CellValue, MAX_VALUE_CHARS } from './types.js';

const q = (name: string): string => `"${name.replaceAll('"', '""')}"`;

export interface TableShape {
  name: string;
  /** Declared columns. */
  columns: string[];
  /** Whether the table has a rowid (not WITHOUT ROWID, not virtual). */
  rowid: boolean;
  /** Primary-key columns (ordering of a table without rowid). */
  key: string[];
  /**
   * A shadow table of a virtual table SQLite knows (a full-text index's data, terms and content, an
   * R-Tree's nodes): it holds the indexed text's tokens in a form the rules cannot read.
   */
  shadow: boolean;
}

/** What redacted output shows for a shadow table's text and blob values (readRows). */
export const INDEX_DATA_PLACEHOLDER = '[REDACTED:index-data]';

export function openReadOnly(path: string): Database.Database {
  return new Database(path, { readonly: true, fileMustExist: true });
}

/**
 * The schema's tables (sqlite_ internals left out) sorted by name, which of them are shadow tables, and
 * which are virtual (sqlite/schema.ts).
 */
function schemaTables(db: Database.Database): {
  rows: { name: string; sql: string | null }[];
  shadow: Set<string>;
  virtual: Set<string>;
} {
  const rows = db
    .prepare(
      "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .all() as { name: string; sql: string | null }[];
  const listed = db.prepare('PRAGMA main.table_list').all() as { name: string; type: string }[];
  return {
    rows,
    shadow: new Set(listed.filter((r) => r.type === 'shadow').map((r) => r.name)),
    virtual: virtualTableNames(db),
  };
}

/** The ordinary tables of a database, sorted by name (virtual tables and sqlite_ internals left out). */
export function tablesOf(db: Database.Database): TableShape[] {
  const { rows, shadow, virtual } = schemaTables(db);
  const out: TableShape[] = [];
  for (const r of rows) {
    if (virtual.has(r.name)) continue;
    // table_xinfo lists generated columns too: a VIRTUAL one (hidden 2) is computed by each read, by an
    // expression the database (an attacker's, in a hostile bundle) chose (`printf('%.*c', 600000000, 'x')`):
    // never read. A STORED one (3) is in the file like any value.
    const cols = (
      db.prepare(`PRAGMA table_xinfo(${q(r.name)})`).all() as { name: string; pk: number; hidden: number }[]
    ).filter((c) => c.hidden === 0 || c.hidden === 3);
    const rowid = !(r.sql && /\)\s*WITHOUT\s+ROWID\s*;?\s*$/i.test(r.sql));
    out.push({
      name: r.name,
      columns: cols.map((c) => c.name),
      rowid,
      key: cols
        .filter((c) => c.pk > 0)
        .sort((x, y) => x.pk - y.pk)
        .map((c) => c.name),
      shadow: shadow.has(r.name),
    });
  }
  return out;
}

/** A virtual table: its module (`fts5`, `rtree`, …) and the shadow tables that hold its data. */
export interface VirtualTable {
  name: string;
  module: string;
  shadow_tables: string[];
}

/**
 * The virtual tables of a database, sorted by name. Only the schema is read: a virtual table's rows come
 * from its module's code, run on a snapshot's (possibly hostile) data, so they are never queried here;
 * its stored data is in its shadow tables, which tablesOf lists.
 */
export function virtualTablesOf(db: Database.Database): VirtualTable[] {
  const { rows, shadow, virtual } = schemaTables(db);
  return rows
    .filter((r) => virtual.has(r.name))
    .map((r) => ({
      name: r.name,
      module: /\bUSING\s+["'`[]?([A-Za-z0-9_]+)/i.exec(r.sql ?? '')?.[1]?.toLowerCase() ?? 'unknown',
      shadow_tables: [...shadow].filter((s) => s.startsWith(`${r.name}_`)).sort(),
    }));
}

export function table(db: Database.Database, name: string, snapshotId: string, path: string): TableShape {
  const t = tablesOf(db).find((x) => x.name === name);
  if (t) return t;
  const v = virtualTablesOf(db).find((x) => x.name === name);
  if (v)
    throw new InvalidInputError(
      `${path} is a virtual table (${v.module}): its rows are made by its module's code, which is not run ` +
        `on a snapshot's database; ${v.shadow_tables.length > 0 ? `its stored data is in ${v.shadow_tables.join(', ')}` : 'SQLite here does not know which tables hold its data'}`,
    );
  throw missingIn(snapshotId, `table ${JSON.stringify(name)} at ${path}`);
}

export function rowCount(db: Database.Database, t: TableShape): number {
  return (db.prepare(`SELECT count(*) AS n FROM ${q(t.name)}`).get() as { n: number }).n;
}

/**
 * A cell as JSON: text shown (redacted unless shown as stored) and cut, blobs as base64, big integers as
 * strings. In redacted output a blob in which a rule finds a secret (its bytes read as Latin-1, so any
 * ASCII secret among binary bytes is seen) is shown as that rule's placeholder instead.
 */
export function cell(v: unknown, shown: Shown): CellValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') {
    const t = showText(shown, v);
    return t.length > MAX_VALUE_CHARS
      ? { text: t.slice(0, MAX_VALUE_CHARS), size_chars: t.length, truncated: true }
      : t;
  }
  if (typeof v === 'bigint')
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    const b = Buffer.from(v);
    if (shown.policy) {
      const r = redactText(shown.policy, b.toString('latin1'));
      if (r.matches > 0) return `[REDACTED:${Object.keys(r.counts)[0]}]`;
    }
    return b.length > MAX_VALUE_CHARS
      ? {
          blob_base64: b.subarray(0, MAX_VALUE_CHARS).toString('base64'),
          size_bytes: b.length,
          truncated: true,
        }
      : { blob_base64: b.toString('base64'), size_bytes: b.length };
  }
  return String(v);
}

const ROWID = '__nexo_rowid';

/** The columns shown for a table: `rowid` first when it has one (and no column of that name). */
export function shownColumns(t: TableShape): string[] {
  return t.rowid && !t.columns.includes('rowid') ? ['rowid', ...t.columns] : t.columns;
}

/** A page of a table's rows, in rowid (or primary-key) order. */
export function readRows(
  db: Database.Database,
  t: TableShape,
  offset: number,
  limit: number,
  shown: Shown,
): Record<string, CellValue>[] {
  const withRowid = t.rowid && !t.columns.includes('rowid');
  const order = t.rowid ? 'rowid' : t.key.length > 0 ? t.key.map(q).join(', ') : '1';
  const stmt = db
    .prepare(
      `SELECT ${withRowid ? `rowid AS ${ROWID}, ` : ''}${t.columns.map(q).join(', ')} FROM ${q(t.name)} ORDER BY ${order} LIMIT ? OFFSET ?`,
    )
    .safeIntegers(true);
  const out: Record<string, CellValue>[] = [];
  // a shadow table's text and blobs are index data (tokens, lowercased, in binary records): no rule can
  // redact them, so redacted output withholds them (numbers, such as its ids and counts, are shown)
  const withheld = (v: unknown) =>
    shown.policy !== undefined && t.shadow && (typeof v === 'string' || v instanceof Uint8Array);
  for (const r of stmt.iterate(limit, offset) as Iterable<Record<string, unknown>>) {
    const row: Record<string, CellValue> = {};
    if (withRowid) row.rowid = cell(r[ROWID], shown);
    for (const c of t.columns) row[c] = withheld(r[c]) ? INDEX_DATA_PLACEHOLDER : cell(r[c], shown);
    out.push(row);
  }
  return out;
}

export interface RowHit {
  table: string;
  rowid: number | string;
  column: string;
  /** The stored value holding the match. */
  value: string;
}

/**
 * Rows whose text values contain `text` (or match `regex`), per column; at most `max` hits are returned
 * and `count` is exact. Only text values are searched (a blob or number never matches).
 */
export function searchRows(
  db: Database.Database,
  needle: { text: string } | { regex: RegExp },
  max: number,
  /** Whether a match in this stored value counts (find: still visible once redacted). */
  visible: (value: string) => boolean = () => true,
): { hits: RowHit[]; count: number } {
  const hits: RowHit[] = [];
  let count = 0;
  if ('regex' in needle) {
    const re = needle.regex;
    db.function('nexo_match', { deterministic: true }, (v: unknown) => {
      if (typeof v !== 'string') return 0;
      return re.test(v) ? 1 : 0;
    });
  }
  const test = (c: string) =>
    'regex' in needle ? `nexo_match(${q(c)})` : `(typeof(${q(c)}) = 'text' AND instr(${q(c)}, @needle) > 0)`;
  for (const t of tablesOf(db)) {
    if (t.columns.length === 0) continue;
    const id = t.rowid ? 'rowid' : t.key.length > 0 ? t.key.map(q).join(` || '|' || `) : "''";
    const sql = `SELECT ${id} AS ${ROWID}, ${t.columns.map(q).join(', ')} FROM ${q(t.name)} WHERE ${t.columns.map(test).join(' OR ')}`;
    const stmt = db.prepare(sql).safeIntegers(true);
    const rows = ('text' in needle ? stmt.iterate({ needle: needle.text }) : stmt.iterate()) as Iterable<
      Record<string, unknown>
    >;
    for (const r of rows) {
      for (const c of t.columns) {
        const v = r[c];
        if (typeof v !== 'string') continue;
        const hit = 'text' in needle ? v.includes(needle.text) : needle.regex.test(v);
        if (!hit || !visible(v)) continue;
        count++;
        if (hits.length < max) {
          const rid = r[ROWID];
          hits.push({
            table: t.name,
            rowid:
              typeof rid === 'bigint' ? (cell(rid, { policy: undefined }) as number | string) : String(rid),
            column: c,
            value: v,
          });
        }
      }
    }
  }
  return { hits, count };
}
