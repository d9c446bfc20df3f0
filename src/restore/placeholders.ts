// Owns finding where a redacted bundle holds placeholders (`[REDACTED:<rule>]`) in its staged
// artifacts — memory files and state by line, databases by table, column and row — so a dry run can
// say which live values a restore would replace by placeholders. Reads staged copies only, and only
// the artifacts the manifest's redaction report says it touched.

import { readFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import type { Manifest } from '../format/manifest.js';
import type { PlaceholderLocation } from '../model/types.js';

const PLACEHOLDER = /\[REDACTED:([a-z0-9-]+)\]/g;
const MARK = '[REDACTED:';

const q = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** The distinct rule ids of the placeholders in `text`, in order of first appearance. */
function rulesIn(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]!))];
}

/** The artifacts of `m` a dry run must read to list placeholders (those the redaction touched). */
export function placeholderArtifacts(m: Manifest): Set<string> {
  if (!m.redactions || m.redactions.matches_redacted === 0) return new Set();
  return new Set(m.redactions.artifacts_touched);
}

function inText(artifact: string, text: string, file?: string): PlaceholderLocation[] {
  const out: PlaceholderLocation[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.includes(MARK)) return;
    for (const rule of rulesIn(line)) out.push({ artifact, ...(file ? { file } : {}), line: i + 1, rule });
  });
  return out;
}

/** Ordinary tables and full-text tables with their own content (the others hold copies or nothing readable). */
function scannedTables(db: Database.Database): string[] {
  const listed = db.prepare('PRAGMA main.table_list').all() as Array<{ name: string; type: string }>;
  const sql = new Map(
    (
      db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all() as Array<{
        name: string;
        sql: string | null;
      }>
    ).map((r) => [r.name, r.sql ?? '']),
  );
  return listed
    .filter((t) => !t.name.startsWith('sqlite_'))
    .filter(
      (t) =>
        t.type === 'table' ||
        (t.type === 'virtual' &&
          /\bUSING\s+fts[345]\b/i.test(sql.get(t.name) ?? '') &&
          !/\bcontent\s*=/i.test(sql.get(t.name) ?? '')),
    )
    .map((t) => t.name)
    .sort();
}

function inDatabase(artifact: string, path: string): PlaceholderLocation[] {
  const out: PlaceholderLocation[] = [];
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    for (const table of scannedTables(db)) {
      const cols = db.prepare(`PRAGMA table_info(${q(table)})`).all() as Array<{ name: string; pk: number }>;
      let rowid = true;
      try {
        db.prepare(`SELECT rowid FROM ${q(table)} LIMIT 0`);
      } catch {
        rowid = false;
      }
      const pk = cols
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name);
      const keySql = rowid ? 'rowid' : pk.map(q).join(', ');
      for (const c of cols) {
        const rows = db
          .prepare(
            `SELECT ${keySql}, ${q(c.name)} FROM ${q(table)} WHERE typeof(${q(c.name)}) = 'text' AND instr(${q(c.name)}, '${MARK}') > 0 ORDER BY ${keySql}`,
          )
          .raw()
          .all() as unknown[][];
        for (const r of rows) {
          const where = rowid
            ? { rowid: Number(r[0]) }
            : { key: Object.fromEntries(pk.map((k, i) => [k, r[i]])) };
          for (const rule of rulesIn(String(r[r.length - 1])))
            out.push({ artifact, table, column: c.name, ...where, rule });
        }
      }
    }
  } finally {
    db.close();
  }
  return out;
}

/**
 * Every placeholder in the staged artifacts `written` (bundle path → staged file) that the redaction
 * touched, in manifest order; at most `limit` listed, `total` counts all.
 */
export async function findPlaceholders(
  m: Manifest,
  written: ReadonlyMap<string, string>,
  limit = 1000,
): Promise<{ list: PlaceholderLocation[]; total: number }> {
  const touched = placeholderArtifacts(m);
  const list: PlaceholderLocation[] = [];
  let total = 0;
  for (const a of m.artifacts) {
    const path = written.get(a.path_in_bundle);
    if (!touched.has(a.path_in_bundle) || !path) continue;
    let found: PlaceholderLocation[] = [];
    if (a.kind.startsWith('sqlite_')) found = inDatabase(a.path_in_bundle, path);
    else if (a.kind.startsWith('state_')) found = inText(a.path_in_bundle, await readFile(path, 'utf8'));
    else if (a.kind === 'memory_file')
      found = inText(
        a.path_in_bundle,
        await readFile(path, 'utf8'),
        a.path_in_bundle.slice('memory_files/'.length),
      );
    total += found.length;
    for (const p of found) if (list.length < limit) list.push(p);
  }
  return { list, total };
}
