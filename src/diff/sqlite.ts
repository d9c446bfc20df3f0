// Owns the database half of a diff: per table, rows added, removed and changed between two copies,
// matched by primary key (rowid when there is none) and compared by the content of their common
// columns, via ATTACH and set queries; a changed row whose only differences are placeholders on one
// side for the other side's secrets is counted as redacted, not changed; schema changes from
// sqlite_master; with --detail, sample rows (text redacted unless shown as stored, long text cut,
// blobs and float32 vectors summarised). Runs on copies, never on live files.

import Database from 'better-sqlite3';
import type { DbName } from '../model/types.js';
import { REDACTED_MARK, type RedactionPolicy } from '../policy/redaction/scan.js';
import { type PlaceholderSide, placeholdersIn, type Shown, showText } from './secrets.js';

export interface TableDiff {
  table: string;
  rows_a: number;
  rows_b: number;
  added: number;
  removed: number;
  /** Rows that differ in more than redaction. */
  changed: number;
  /** Rows whose only differences are placeholders on one side where the other has the secret. */
  redacted: number;
  /** With --detail: up to `sample` rows of each kind. */
  rows?: {
    added: unknown[];
    removed: unknown[];
    changed: Array<{ before: unknown; after: unknown }>;
    /** The row's key, the columns that differ only by redaction, and the side that holds the placeholders. */
    redacted: Array<{ key: Record<string, unknown>; columns: string[]; placeholders_in: string }>;
  };
}

/** How a diff treats secrets: the policy that tells redactions apart, how values are shown, side names. */
export interface SecretsView {
  policy: RedactionPolicy;
  shown: Shown;
  labels: { a: string; b: string };
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

/**
 * A value as shown in a diff: text redacted (unless shown as stored) before long text is cut, so a cut
 * never leaves part of a secret; blobs summarised (float32 vectors with their norm).
 */
export function showValue(v: unknown, shown: Shown = { policy: undefined }): unknown {
  if (typeof v === 'string') {
    const t = showText(shown, v);
    return t.length > TEXT_MAX ? `${t.slice(0, TEXT_MAX)}… (${t.length} chars)` : t;
  }
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

function showRow(row: Record<string, unknown>, shown: Shown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, showValue(v, shown)]));
}

/**
 * The side holding placeholders when every differing column of a row pair differs only by redaction
 * (all on the same side); undefined for a real change.
 */
function redactionOnly(
  policy: RedactionPolicy,
  columns: readonly string[],
  x: Record<string, unknown>,
  y: Record<string, unknown>,
): { side: PlaceholderSide; columns: string[] } | undefined {
  let side: PlaceholderSide | undefined;
  const differing: string[] = [];
  for (const c of columns) {
    const u = x[c];
    const v = y[c];
    if (u === v || (Buffer.isBuffer(u) && Buffer.isBuffer(v) && u.equals(v))) continue;
    if (typeof u !== 'string' || typeof v !== 'string') return undefined;
    const s = placeholdersIn(policy, u, v);
    if (!s || (side && s !== side)) return undefined;
    side = s;
    differing.push(c);
  }
  return side ? { side, columns: differing } : undefined;
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
  secrets: SecretsView,
  sample = 20,
): DatabaseDiff {
  const { shown } = secrets;
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
          redacted: 0,
        };
        if (detail) {
          const pick = (s: string) =>
            (
              conn.prepare(`SELECT * FROM ${s}.${q(t)} LIMIT ?`).all(sample) as Array<Record<string, unknown>>
            ).map((r) => showRow(r, shown));
          d.rows = {
            added: inB ? pick('b') : [],
            removed: inA ? pick('main') : [],
            changed: [],
            redacted: [],
          };
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
      const keyCols = key[0] === 'rowid' ? ['rowid', ...ia.columns] : ia.columns;
      const keyColsB = key[0] === 'rowid' ? ['rowid', ...ib.columns] : ib.columns;
      // Both sides of a changed row, columns prefixed `a:` and `b:`.
      const pairSql = `SELECT ${[...keyCols.map((c) => `x.${q(c)} AS ${q(`a:${c}`)}`), ...keyColsB.map((c) => `y.${q(c)} AS ${q(`b:${c}`)}`)].join(', ')} ${changedSql}`;
      const split = (r: Record<string, unknown>) => ({
        before: Object.fromEntries(keyCols.map((c) => [c, r[`a:${c}`]])),
        after: Object.fromEntries(keyColsB.map((c) => [c, r[`b:${c}`]])),
      });
      const hasMark = (r: Record<string, unknown>) =>
        common.some(
          (c) =>
            (typeof r[`a:${c}`] === 'string' && (r[`a:${c}`] as string).includes(REDACTED_MARK)) ||
            (typeof r[`b:${c}`] === 'string' && (r[`b:${c}`] as string).includes(REDACTED_MARK)),
        );
      const classify = (r: Record<string, unknown>) => {
        if (!hasMark(r)) return undefined;
        const { before, after } = split(r);
        return redactionOnly(secrets.policy, common, before, after);
      };
      // One pass over the changed rows counts them and names those with a placeholder on either side
      // (only those can be redactions; SQLite picks them, JS decides on each by its key).
      const marked =
        common.length > 0
          ? common
              .map(
                (c) => `instr(x.${q(c)}, '${REDACTED_MARK}') > 0 OR instr(y.${q(c)}, '${REDACTED_MARK}') > 0`,
              )
              .join(' OR ')
          : '0';
      let total = 0;
      let redacted = 0;
      const byKey = conn.prepare(`${pairSql} AND ${key.map((k) => `x.${q(k)} IS ?`).join(' AND ')}`);
      for (const r of conn
        .prepare(`SELECT (${marked}), ${key.map((k) => `x.${q(k)}`).join(', ')} ${changedSql}`)
        .raw()
        .iterate() as Iterable<unknown[]>) {
        total++;
        if (!r[0]) continue;
        const pair = byKey.get(...r.slice(1)) as Record<string, unknown> | undefined;
        if (pair && classify(pair)) redacted++;
      }
      const d: TableDiff = {
        table: t,
        rows_a: rowsA,
        rows_b: rowsB,
        added: count(conn, `SELECT count(*) ${addedSql}`),
        removed: count(conn, `SELECT count(*) ${removedSql}`),
        changed: total - redacted,
        redacted,
      };
      if (detail) {
        const cols = (alias: string, names: string[]) =>
          names.map((c) => `${alias}.${q(c)} AS ${q(c)}`).join(', ');
        const rows = (sql: string) =>
          (conn.prepare(`${sql} LIMIT ?`).all(sample) as Array<Record<string, unknown>>).map((r) =>
            showRow(r, shown),
          );
        const changed: Array<{ before: unknown; after: unknown }> = [];
        const redactedRows: NonNullable<TableDiff['rows']>['redacted'] = [];
        for (const r of conn.prepare(pairSql).iterate() as Iterable<Record<string, unknown>>) {
          const only = classify(r);
          const { before, after } = split(r);
          if (!only && changed.length < sample)
            changed.push({ before: showRow(before, shown), after: showRow(after, shown) });
          else if (only && redactedRows.length < sample)
            redactedRows.push({
              key: showRow(Object.fromEntries(key.map((k) => [k, before[k]])), shown),
              columns: only.columns,
              placeholders_in: only.side === 'a' ? secrets.labels.a : secrets.labels.b,
            });
          if (changed.length >= sample && redactedRows.length >= sample) break;
        }
        d.rows = {
          added: rows(`SELECT ${cols('y', keyColsB)} ${addedSql}`),
          removed: rows(`SELECT ${cols('x', keyCols)} ${removedSql}`),
          changed,
          redacted: redactedRows,
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
          redacted: 0,
          ...(detail ? { rows: { added: [], removed: [], changed: [], redacted: [] } } : {}),
        };
      }),
      schema_changes: [],
    };
  } finally {
    conn.close();
  }
}
