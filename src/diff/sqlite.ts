// Owns the database half of a diff: per table, rows added, removed and changed between two copies,
// matched by primary key (rowid when there is none; a key holding a NULL also by rowid; by rowid when
// the key changed, or every row removed and added when a WITHOUT ROWID side leaves no common identity)
// and compared exactly (storage type and bytes, no collation or affinity) on their common columns, a
// column on one side only counting when it holds a value; via ATTACH and set queries; a changed row
// whose only differences are placeholders on one side for the other side's secrets is counted as
// redacted, not changed; schema changes from sqlite_master; with --detail, sample rows (integers read
// exactly, text redacted unless shown as stored, long text cut, blobs and float32 vectors summarised).
// Runs on copies, never on live files.

import Database from 'better-sqlite3';
import { SqliteError } from '../model/errors.js';
import type { DbName } from '../model/types.js';
import { REDACTED_MARK, type RedactionPolicy } from '../policy/redaction/scan.js';
import { freeRowidName, virtualTableNames } from '../sqlite/schema.js';
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
  /** With --detail: the sample rows were left out to keep the diff within `maxDetailBytes`. */
  rows_omitted?: true;
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
/** Exact equality of two SQL values: the same storage type and the same bytes (no collation, no affinity). */
const same = (u: string, v: string): string =>
  `(${u} IS ${v} COLLATE BINARY AND typeof(${u}) = typeof(${v}))`;
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
  // Integers are read exactly (safeIntegers): a number when it fits a double exactly, else its digits.
  if (typeof v === 'bigint')
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v.toString();
  return v;
}

function showRow(row: Record<string, unknown>, shown: Shown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, showValue(v, shown)]));
}

/**
 * The side holding placeholders when every differing column of a row pair (found exactly by SQLite)
 * differs only by redaction (all on the same side); undefined for a real change. Columns are pairs of
 * names (A's, B's), which may differ in case.
 */
function redactionOnly(
  policy: RedactionPolicy,
  differing: ReadonlyArray<readonly [string, string]>,
  x: Record<string, unknown>,
  y: Record<string, unknown>,
): { side: PlaceholderSide; columns: string[] } | undefined {
  let side: PlaceholderSide | undefined;
  for (const [ca, cb] of differing) {
    const u = x[ca];
    const v = y[cb];
    if (typeof u !== 'string' || typeof v !== 'string') return undefined;
    const s = placeholdersIn(policy, u, v);
    if (!s || (side && s !== side)) return undefined;
    side = s;
  }
  return side ? { side, columns: differing.map(([ca]) => ca) } : undefined;
}

interface TableInfo {
  columns: string[];
  key: string[];
  withoutRowid: boolean;
  /** The key is the rowid or an alias of it (`INTEGER PRIMARY KEY`): an integer, never NULL. */
  integerKey: boolean;
}

/** A table's columns, primary key and kind on one side, read once. */
interface TableShape {
  columns: string[];
  pk: string[];
  withoutRowid: boolean;
  /** The primary key is one `INTEGER` column: an alias of the rowid. */
  pkIsRowid: boolean;
}

function tableShape(db: Database.Database, schema: string, table: string): TableShape {
  const cols = db
    .prepare(`PRAGMA ${schema}.table_info(${q(table)})`)
    .safeIntegers(false)
    .all() as Array<{
    name: string;
    type: string;
    pk: number;
  }>;
  const pks = cols.filter((c) => c.pk > 0).sort((x, y) => x.pk - y.pk);
  const list = db
    .prepare(`PRAGMA ${schema}.table_list(${q(table)})`)
    .safeIntegers(false)
    .get() as { wr: number } | undefined;
  return {
    columns: cols.map((c) => c.name),
    pk: pks.map((c) => c.name),
    withoutRowid: list?.wr === 1,
    pkIsRowid: pks.length === 1 && pks[0]!.type.toUpperCase() === 'INTEGER',
  };
}

/**
 * A side's key: its primary key, or (none) its rowid under `rowid`, the name of it no column of either
 * side takes (sqlite/schema.ts freeRowidName: a column named `rowid` hides that name, and matched by
 * it one real change showed as rows added, removed and changed, stop 63).
 */
function tableInfo(shape: TableShape, rowid: string | undefined): TableInfo {
  const byRowid = shape.pk.length === 0 && rowid !== undefined;
  return {
    columns: shape.columns,
    key: shape.pk.length > 0 ? shape.pk : byRowid ? [rowid] : [],
    withoutRowid: shape.withoutRowid,
    integerKey: !shape.withoutRowid && (byRowid || shape.pkIsRowid),
  };
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

/** The text encoding a database file records (`UTF-8`, `UTF-16le`, `UTF-16be`). */
function encodingOf(path: string): string {
  const d = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return String(d.pragma('encoding', { simple: true }));
  } finally {
    d.close();
  }
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
  // An absent side is an empty in-memory database, so one code path covers every case; it takes the
  // other side's text encoding (SQLite attaches only databases of the main one's: a UTF-16 database
  // that appeared after a snapshot could not be diffed across that point, stop 63).
  const [ea, eb] = [a, b].map((path) => (path ? encodingOf(path) : undefined));
  if (ea && eb && ea !== eb)
    throw new SqliteError(
      `${db}: the two sides' databases use different text encodings (${ea} and ${eb}): diff compares rows within one encoding only`,
    );
  const conn = new Database(a ?? ':memory:', { readonly: a !== undefined });
  try {
    conn.defaultSafeIntegers(true); // integers beyond 2^53 read exactly (showValue prints them)
    if (!a && eb) conn.pragma(`encoding = '${eb}'`);
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

    // Rows are compared in the tables SQLite stores; a virtual table's rows are its module's code, run on
    // a snapshot's data (sqlite/schema.ts): it shows as a schema change only, its shadow tables as tables.
    const [va, vb] = [virtualTableNames(conn, 'main'), virtualTableNames(conn, 'b')];
    const stored = (objs: typeof oa, virtual: Set<string>, n: string) =>
      objs.get(n)?.type === 'table' && !virtual.has(n);
    const tables = [...new Set([...oa.keys(), ...ob.keys()])]
      .filter((n) => stored(oa, va, n) || stored(ob, vb, n))
      .sort();
    const out: TableDiff[] = [];
    for (const t of tables) {
      const inA = stored(oa, va, t);
      const inB = stored(ob, vb, t);
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
          // the stored columns only: a VIRTUAL generated one (hidden 2) is computed by each read, by an
          // expression the database's writer chose (a `printf` of 300 million characters a row ran the
          // process out of heap: stop 62 review); a STORED one (3) is in the file like any value
          const pick = (s: string) => {
            const cols = (
              conn
                .prepare(`PRAGMA ${s}.table_xinfo(${q(t)})`)
                .safeIntegers(false)
                .all() as Array<{
                name: string;
                hidden: number;
              }>
            ).filter((c) => c.hidden === 0 || c.hidden === 3);
            if (cols.length === 0) return [];
            const sql = `SELECT ${cols.map((c) => q(c.name)).join(', ')} FROM ${s}.${q(t)} LIMIT ?`;
            return (conn.prepare(sql).all(sample) as Array<Record<string, unknown>>).map((r) =>
              showRow(r, shown),
            );
          };
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
      const [sa, sb] = [tableShape(conn, 'main', t), tableShape(conn, 'b', t)];
      const rid = freeRowidName([...sa.columns, ...sb.columns]);
      const ia = tableInfo(sa, rid);
      const ib = tableInfo(sb, rid);
      // Rows are matched by a key both sides share; a rowid table's key holding a NULL (SQLite allows
      // several) also by rowid, so NULL-key rows pair one to one; when the key changed, by rowid if both
      // sides have one, else not at all (every row removed and added, beside the schema change).
      const sameKey = ia.key.join('\0') === ib.key.join('\0');
      const bothRowid = !ia.withoutRowid && !ib.withoutRowid && rid !== undefined;
      const key = sameKey ? ia.key : bothRowid ? [rid] : [];
      // the rowid, or an alias of it on both sides: an integer, never NULL, compared as it is
      const integerKey = (rid !== undefined && key[0] === rid) || (sameKey && ia.integerKey && ib.integerKey);
      const nullKeys = bothRowid && key.length > 0 && !integerKey;
      // The table's own comparison (`IS`, each side's collation, so either side's key index serves the
      // lookup) narrows; exact equality decides. Exact keys are unique on each side, so pairs are 1:1.
      const keyEq = (u: string, v: string) =>
        integerKey
          ? `${u}.${q(key[0]!)} = ${v}.${q(key[0]!)}`
          : key
              .map(
                (k) =>
                  `${u}.${q(k)} IS ${v}.${q(k)} AND ${v}.${q(k)} IS ${u}.${q(k)} AND ${same(`${u}.${q(k)}`, `${v}.${q(k)}`)}`,
              )
              .join(' AND ');
      // The join condition with `inner` the side looked up. With NULL keys, the row of the inner side is
      // found by rowid: the row with the outer row's key when it holds no NULL, else the outer row's
      // rowid (so SQLite uses an index either way, never a scan per NULL-key row).
      const on = (inner: 'x' | 'y'): string => {
        if (key.length === 0) return '0';
        if (!nullKeys) return keyEq('x', 'y');
        const [outer, schema] = inner === 'y' ? ['x', 'b'] : ['y', 'main'];
        const noNull = key.map((k) => `${outer}.${q(k)} IS NOT NULL`).join(' AND ');
        const sameKeys = key.map((k) => same(`x.${q(k)}`, `y.${q(k)}`)).join(' AND ');
        return `${inner}.${rid} = (CASE WHEN ${noNull} THEN (SELECT z.${rid} FROM ${schema}.${q(t)} AS z WHERE ${keyEq(outer, 'z')}) ELSE ${outer}.${rid} END) AND ${sameKeys}`;
      };
      // Columns by name (SQLite's names are case-insensitive): [A's name, B's name].
      const lower = new Map(ib.columns.map((c) => [c.toLowerCase(), c]));
      const common: Array<[string, string]> = ia.columns
        .filter((c) => lower.has(c.toLowerCase()))
        .map((c) => [c, lower.get(c.toLowerCase()) as string]);
      const namesA = new Set(ia.columns.map((c) => c.toLowerCase()));
      const onlyA = ia.columns.filter((c) => !lower.has(c.toLowerCase()));
      const onlyB = ib.columns.filter((c) => !namesA.has(c.toLowerCase()));
      // A matched row changed when a common column differs exactly, or when a column on one side only
      // (added, dropped, renamed) holds a value in it; a NULL there is no content.
      const differsCol = ([ca, cb]: readonly [string, string]) => `NOT ${same(`x.${q(ca)}`, `y.${q(cb)}`)}`;
      const onlyNotNull = [
        ...onlyA.map((c) => `x.${q(c)} IS NOT NULL`),
        ...onlyB.map((c) => `y.${q(c)} IS NOT NULL`),
      ];
      const terms = [...common.map(differsCol), ...onlyNotNull];
      const differs = terms.length > 0 ? `(${terms.join(' OR ')})` : '0';
      const addedSql = `FROM b.${q(t)} AS y WHERE NOT EXISTS (SELECT 1 FROM main.${q(t)} AS x WHERE ${on('x')})`;
      const removedSql = `FROM main.${q(t)} AS x WHERE NOT EXISTS (SELECT 1 FROM b.${q(t)} AS y WHERE ${on('y')})`;
      const changedSql = `FROM main.${q(t)} AS x JOIN b.${q(t)} AS y ON ${on('y')} WHERE ${differs}`;
      const byRowid = rid !== undefined && key[0] === rid;
      const keyCols = byRowid ? [rid, ...ia.columns] : ia.columns;
      const keyColsB = byRowid ? [rid, ...ib.columns] : ib.columns;
      // Both sides of a changed row, columns prefixed `a:` and `b:`, and `d:` flags for the common
      // columns that differ.
      const pairSql = `SELECT ${[
        ...keyCols.map((c) => `x.${q(c)} AS ${q(`a:${c}`)}`),
        ...keyColsB.map((c) => `y.${q(c)} AS ${q(`b:${c}`)}`),
        ...common.map((p) => `${differsCol(p)} AS ${q(`d:${p[0]}`)}`),
      ].join(', ')} ${changedSql}`;
      const split = (r: Record<string, unknown>) => ({
        before: Object.fromEntries(keyCols.map((c) => [c, r[`a:${c}`]])),
        after: Object.fromEntries(keyColsB.map((c) => [c, r[`b:${c}`]])),
      });
      const hasMark = (r: Record<string, unknown>) =>
        common.some(
          ([ca, cb]) =>
            (typeof r[`a:${ca}`] === 'string' && (r[`a:${ca}`] as string).includes(REDACTED_MARK)) ||
            (typeof r[`b:${cb}`] === 'string' && (r[`b:${cb}`] as string).includes(REDACTED_MARK)),
        );
      const classify = (r: Record<string, unknown>) => {
        if (!hasMark(r)) return undefined;
        if (onlyA.some((c) => r[`a:${c}`] !== null) || onlyB.some((c) => r[`b:${c}`] !== null))
          return undefined;
        const { before, after } = split(r);
        return redactionOnly(
          secrets.policy,
          common.filter(([ca]) => r[`d:${ca}`]),
          before,
          after,
        );
      };
      // One pass over the changed rows counts them and names those with a placeholder on either side
      // and nothing in a one-sided column (only those can be redactions; SQLite picks them, JS decides
      // on each by its key, and its rowid where the key may hold NULLs).
      const marked =
        common.length > 0
          ? `(${common
              .map(
                ([ca, cb]) =>
                  `instr(x.${q(ca)}, '${REDACTED_MARK}') > 0 OR instr(y.${q(cb)}, '${REDACTED_MARK}') > 0`,
              )
              .join(' OR ')})${onlyNotNull.map((e) => ` AND NOT ${e}`).join('')}`
          : '0';
      const ident = nullKeys && rid !== undefined ? [...key, rid] : key;
      let total = 0;
      let redacted = 0;
      if (ident.length > 0) {
        const byKey = conn.prepare(`${pairSql} AND ${ident.map((k) => `x.${q(k)} IS ?`).join(' AND ')}`);
        for (const r of conn
          .prepare(`SELECT (${marked}), ${ident.map((k) => `x.${q(k)}`).join(', ')} ${changedSql}`)
          .raw()
          .iterate() as Iterable<unknown[]>) {
          total++;
          if (!r[0]) continue;
          const pair = byKey.get(...r.slice(1)) as Record<string, unknown> | undefined;
          if (pair && classify(pair)) redacted++;
        }
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
