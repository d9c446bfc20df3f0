// Owns redacting one staged SQLite copy (never a live database): every TEXT value of every ordinary
// table is scanned and rewritten where a rule fires, full-text indexes (FTS3/4/5) are rebuilt from the
// redacted text, and a copy in which anything changed is then rebuilt into a fresh file (`VACUUM INTO`),
// so the shipped file is written only from redacted rows and no old byte of a secret survives in it
// (page splits leave stale bytes in unused page space that secure_delete does not zero). Triggers are
// dropped for the duration and recreated with their own SQL, so redaction changes nothing but the
// secrets. BLOB values, contentless full-text indexes and other virtual tables are not scanned and are
// reported as such; ANALYZE's samples (sqlite_stat3/4, verbatim index keys) are removed from the copy,
// which is then rebuilt too. Synchronous: runs on a worker thread.

import { renameSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { RedactionError } from '../../model/errors.js';
import { freeRowidName } from '../../sqlite/schema.js';
import { addCounts, type RedactionPolicy, redactText } from './scan.js';

export interface NotScanned {
  artifact: string;
  what: string;
  reason: string;
  count?: number;
  bytes?: number;
}

export interface SqliteRedaction {
  tables: number;
  values_scanned: number;
  values_redacted: number;
  /** Rows whose redacted value collided with a UNIQUE key and got a ` #<n>` suffix. */
  unique_conflicts: number;
  counts: Record<string, number>;
  matches: number;
  not_scanned: NotScanned[];
  /** The file was rebuilt: a value was replaced, or ANALYZE's samples were removed. */
  rewritten: boolean;
}

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

function moduleOf(sql: string): string | undefined {
  return /\bUSING\s+([A-Za-z0-9_]+)/i.exec(sql)?.[1]?.toLowerCase();
}

/** The `content=` option of an FTS table: undefined (internal), '' (contentless) or a table name. */
function ftsContent(sql: string): string | undefined {
  const m = /\bcontent\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([A-Za-z0-9_]+))/i.exec(sql);
  if (!m) return undefined;
  return m[1] ?? m[2] ?? m[3] ?? '';
}

/**
 * The SQL form of rules.ts TRIGGER (a superset of it): a text value holding `- _ : =`, `eyJ`, or `A`
 * followed by a capital or digit and two letters or digits (the AWS key prefixes and `AIza`).
 */
function sqlTrigger(col: string): string {
  // one literal per GLOB: SQLite skips to a literal fast, while a leading `*[set]` is ~40× slower
  const globs = ['-', '_', ':', '=', 'eyJ', 'A[A-Z0-9][A-Za-z0-9][A-Za-z0-9]'];
  // GLOB stops at a NUL byte, so a text holding one goes to the rules whole (found in stop 38: a secret
  // after a NUL was never scanned)
  const nul = `instr(CAST(${col} AS BLOB), x'00') > 0`;
  return `(typeof(${col}) = 'text' AND (${globs.map((g) => `${col} GLOB '*${g}*'`).join(' OR ')} OR ${nul}))`;
}

function isConstraint(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** Redacts the database file at `path` (a staged copy). `artifact` names it in the report. */
export function redactDatabase(policy: RedactionPolicy, path: string, artifact: string): SqliteRedaction {
  const out: SqliteRedaction = {
    tables: 0,
    values_scanned: 0,
    values_redacted: 0,
    unique_conflicts: 0,
    counts: {},
    matches: 0,
    not_scanned: [],
    rewritten: false,
  };
  const db = new Database(path, { fileMustExist: true });
  const fresh = `${path}.rebuilt`;
  let rebuilt = false;
  let wal = false;
  let samplesRemoved = false;
  try {
    const schema = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master').all() as SchemaRow[];
    const tables = schema.filter((r) => r.type === 'table');
    const virtual = tables.filter((r) => r.sql && /^\s*CREATE\s+VIRTUAL\s+TABLE/i.test(r.sql));
    // Shadow tables of modules SQLite knows (FTS, R-Tree) are marked by table_list; for a module it does
    // not know, tables named after the virtual table are taken as its shadow tables (each reported).
    const listed = db.prepare('PRAGMA main.table_list').all() as Array<{ name: string; type: string }>;
    const marked = new Set(listed.filter((r) => r.type === 'shadow').map((r) => r.name));
    const foreign = virtual.filter(
      (v) => !['fts3', 'fts4', 'fts5', 'rtree'].includes(moduleOf(v.sql!) ?? ''),
    );
    const triggers = schema.filter((r) => r.type === 'trigger' && r.sql);

    const redactTable = (name: string, isVirtual: boolean): boolean => {
      const cols = (
        db.prepare(`PRAGMA table_info(${q(name)})`).all() as Array<{ name: string; pk: number }>
      ).map((c) => c);
      if (cols.length === 0) return false;
      // Rows are updated by their rowid, under a name of it no column takes (a column named `rowid`
      // hides that name, and matching by it rewrote every row holding the same value: stop 63); else
      // (WITHOUT ROWID, or all three names taken) by the primary key.
      // (a WITHOUT ROWID table has none under any name: the probe fails)
      const alias = freeRowidName(cols.map((c) => c.name));
      let key: string[] = [];
      if (alias !== undefined)
        try {
          db.prepare(`SELECT ${alias} FROM ${q(name)} LIMIT 0`);
          key = [alias];
        } catch {}
      if (key.length === 0)
        key = cols
          .filter((c) => c.pk > 0)
          .sort((a, b) => a.pk - b.pk)
          .map((c) => q(c.name));
      if (key.length === 0)
        throw new RedactionError(
          `table ${JSON.stringify(name)} has no name left for its rowid (columns rowid, _rowid_ and oid) and no primary key: its rows cannot be told apart to redact them`,
        );
      out.tables++;
      const agg = cols.flatMap((c) => [
        `sum(typeof(${q(c.name)}) = 'text')`,
        `sum(typeof(${q(c.name)}) = 'blob')`,
        `sum(CASE WHEN typeof(${q(c.name)}) = 'blob' THEN length(${q(c.name)}) END)`,
      ]);
      const sums = db
        .prepare(`SELECT ${agg.join(', ')} FROM ${q(name)}`)
        .raw()
        .get() as Array<number | null>;
      cols.forEach((c, i) => {
        out.values_scanned += sums[3 * i] ?? 0;
        const count = sums[3 * i + 1] ?? 0;
        if (count > 0 && !isVirtual)
          out.not_scanned.push({
            artifact,
            what: `${name}.${c.name}`,
            reason: 'BLOB values (binary data)',
            count,
            bytes: sums[3 * i + 2] ?? 0,
          });
      });
      // Only rows with a text value that passes the trigger test (rules.ts TRIGGER, done by SQLite in
      // C) reach JavaScript; every text value is still scanned, the others simply cannot match.
      const select = `SELECT ${key.join(', ')}, ${cols
        .map((c) => `CASE WHEN typeof(${q(c.name)}) = 'text' THEN ${q(c.name)} END`)
        .join(', ')} FROM ${q(name)} WHERE ${cols.map((c) => sqlTrigger(q(c.name))).join(' OR ')}`;
      // all columns of one row change in one UPDATE: a key column may be among them
      const changes: Array<{ keys: unknown[]; cols: number[]; values: string[] }> = [];
      for (const row of db.prepare(select).raw().iterate() as Iterable<unknown[]>) {
        let change: { keys: unknown[]; cols: number[]; values: string[] } | undefined;
        for (let i = 0; i < cols.length; i++) {
          const v = row[key.length + i];
          if (typeof v !== 'string') continue;
          const r = redactText(policy, v);
          if (r.matches === 0) continue;
          addCounts(out.counts, r.counts);
          out.matches += r.matches;
          change ??= { keys: row.slice(0, key.length), cols: [], values: [] };
          change.cols.push(i);
          change.values.push(r.text);
        }
        if (change) changes.push(change);
      }
      const where = key.map((k) => `${k} IS ?`).join(' AND ');
      for (const ch of changes) {
        const set = ch.cols.map((i) => `${q(cols[i]!.name)} = ?`).join(', ');
        const stmt = db.prepare(`UPDATE ${q(name)} SET ${set} WHERE ${where}`);
        for (let attempt = 0; ; attempt++) {
          try {
            // a redacted value that collides with a UNIQUE key gets a ` #<n>` suffix
            stmt.run(...ch.values.map((v) => (attempt === 0 ? v : `${v} #${attempt + 1}`)), ...ch.keys);
            if (attempt > 0) out.unique_conflicts++;
            break;
          } catch (err) {
            if (!isConstraint(err) || attempt >= 1000) throw err;
          }
        }
        out.values_redacted += ch.cols.length;
      }
      return changes.length > 0;
    };

    const changedTables = new Set<string>();
    db.transaction(() => {
      for (const t of triggers) db.exec(`DROP TRIGGER ${q(t.name)}`);
      for (const t of tables) {
        if (t.name.startsWith('sqlite_') || marked.has(t.name) || virtual.includes(t)) continue;
        const owner = foreign.find((v) => t.name.startsWith(`${v.name}_`));
        if (owner) {
          // named like a shadow table of a module SQLite does not know: maybe one, maybe an ordinary
          // table; either way not scanned, and named on its own so the report does not hide it
          out.not_scanned.push({
            artifact,
            what: t.name,
            reason: `taken as a shadow table of virtual table ${JSON.stringify(owner.name)} (module ${moduleOf(owner.sql!) ?? 'unknown'}) by its name`,
          });
          continue;
        }
        if (redactTable(t.name, false)) changedTables.add(t.name);
      }
      for (const v of virtual) {
        const mod = moduleOf(v.sql!);
        if (mod !== 'fts3' && mod !== 'fts4' && mod !== 'fts5') {
          out.not_scanned.push({
            artifact,
            what: v.name,
            reason: `virtual table (module ${mod ?? 'unknown'})`,
          });
          continue;
        }
        const content = ftsContent(v.sql!);
        if (content === '') {
          out.not_scanned.push({
            artifact,
            what: v.name,
            reason: 'contentless full-text index: its text cannot be read back',
          });
          continue;
        }
        // Internal content is redacted through the virtual table; external content was redacted in
        // its own table, or in the tables a view of it reads. Either way the index is rebuilt so no
        // token of a secret stays in it: an external-content index whenever any table of the database
        // changed (its `content=` may differ from the table's name in case, or name a view: found in
        // stop 38, such an index kept the secrets' tokens).
        const dirty = content === undefined ? redactTable(v.name, true) : changedTables.size > 0;
        if (!dirty) continue;
        try {
          db.prepare(`INSERT INTO ${q(v.name)}(${q(v.name)}) VALUES ('rebuild')`).run();
        } catch (err) {
          // an external content that cannot be read (no such table): the index is emptied instead, as
          // FTS5 allows, so none of its tokens stays; anything else fails the redaction
          if (content === undefined || mod !== 'fts5') throw err;
          db.prepare(`INSERT INTO ${q(v.name)}(${q(v.name)}) VALUES ('delete-all')`).run();
          out.not_scanned.push({
            artifact,
            what: v.name,
            reason: `full-text index emptied: its content ${JSON.stringify(content)} could not be read`,
          });
        }
        changedTables.add(v.name);
      }
      // ANALYZE's samples are verbatim copies of index keys (binary records), of rows deleted since
      // included: they are removed from the copy, not scanned; sqlite_stat1's counts stay
      for (const t of tables) {
        if (t.name !== 'sqlite_stat4' && t.name !== 'sqlite_stat3') continue;
        const count = (db.prepare(`SELECT count(*) AS n FROM ${q(t.name)}`).get() as { n: number }).n;
        if (count === 0) continue;
        db.prepare(`DELETE FROM ${q(t.name)}`).run();
        samplesRemoved = true;
        out.not_scanned.push({
          artifact,
          what: t.name,
          reason: 'query planner samples (copies of index keys): removed from the copy',
          count,
        });
      }
      for (const t of triggers) db.exec(t.sql!);
    })();
    if (out.matches > 0 || samplesRemoved) {
      // The redacted copy still holds old bytes wherever a page split or a freed cell left them
      // (measured: secure_delete on both the capture and this connection still left secrets in index
      // pages). A fresh file built from the redacted rows holds no byte the redacted rows do not.
      wal = String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
      rmSync(fresh, { force: true });
      db.prepare('VACUUM INTO ?').run(fresh);
      rebuilt = true;
    }
  } finally {
    db.close(); // checkpoints and removes the copy's -wal and -shm
  }
  if (rebuilt) {
    if (wal) {
      // the captured copy's journal mode (the live database's) stays in the header, as capture set it
      const f = new Database(fresh, { fileMustExist: true });
      try {
        f.pragma('journal_mode = WAL');
      } finally {
        f.close();
      }
    }
    for (const extra of ['-wal', '-shm', '-journal']) rmSync(`${path}${extra}`, { force: true });
    renameSync(fresh, path);
  }
  out.rewritten = rebuilt;
  return out;
}
