// Owns `ls` and `cat` of a snapshot (docs/browse.md): a browse path resolved against the snapshot's
// manifest entries (never joined onto a directory), reading only what it names — nothing for the memdir
// tree, the database list and the state list; one file's bytes; one database materialised in a private
// temporary directory (removed afterwards) and opened read-only. Text is shown through the redaction
// rules unless the caller asks for it as stored; pages are bounded (types.ts): `ls` by a cursor over the
// entries sorted by name bytes, `cat` by offset and limit.

import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { type Shown, showBinary, showText } from '../diff/secrets.js';
import { MEMORY_FILES_PREFIX, sqlitePath, statePath } from '../format/constants.js';
import { InvalidInputError, missingIn } from '../model/errors.js';
import { DB_NAMES, type DbName, STATE_KEYS } from '../model/types.js';
import { asText } from '../policy/redaction/scan.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { type BrowsePath, parseBrowsePath, tableSegment } from './paths.js';
import { type OpenOptions, type SnapshotSource, withSnapshot } from './source.js';
import {
  openReadOnly,
  readRows,
  rowCount,
  shownColumns,
  type TableShape,
  table,
  tablesOf,
  virtualTablesOf,
} from './tables.js';
import {
  type CatFile,
  type CatOptions,
  type CatResult,
  type CatTable,
  DEFAULT_CAT_ROWS,
  type LsEntry,
  type LsOptions,
  type LsResult,
  MAX_CAT_BYTES,
  MAX_CAT_ROWS,
  MAX_FILE_BYTES,
  MAX_LS_ENTRIES,
} from './types.js';

/** The memory files of a snapshot: path relative to the memdir → manifest entry path. */
function memoryFiles(src: SnapshotSource): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of src.manifest.artifacts)
    if (a.kind === 'memory_file')
      out.set(a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length), a.path_in_bundle);
  return out;
}

/** Runs `fn` on one database of the snapshot, copied into a private temporary directory and opened read-only. */
export async function withDatabase<T>(
  src: SnapshotSource,
  db: DbName,
  fn: (d: Database.Database) => T,
): Promise<T> {
  if (!src.entry(sqlitePath(db))) throw missingIn(src.id, `${db} database`);
  const dir = await privateScratch('browse');
  try {
    const file = join(dir, 'db.sqlite');
    await src.writeTo(sqlitePath(db), file);
    const d = openReadOnly(file);
    try {
      return fn(d);
    } finally {
      d.close();
    }
  } finally {
    await removeScratch(dir);
  }
}

export async function lsSnapshot(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string | undefined,
  id: string,
  path = '',
  opts: LsOptions & OpenOptions = {},
): Promise<LsResult> {
  const p = parseBrowsePath(path);
  const at = canonical(p);
  // checked before the snapshot is opened: a bad page is the caller's mistake, whatever it holds
  const limit = opts.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LS_ENTRIES))
    throw new InvalidInputError(`limit must be an integer 1..${MAX_LS_ENTRIES}, got ${limit}`);
  const after = opts.cursor === undefined ? undefined : parseCursor(opts.cursor, at);
  return withSnapshot(s, agentId, tenant, id, opts, async (src) => {
    const all = sortByName(await entriesAt(src, p));
    const start = after === undefined ? 0 : firstAfter(all, after);
    const end = limit === undefined ? all.length : Math.min(all.length, start + limit);
    const entries = all.slice(start, end).map((k) => k.e);
    const last = entries[entries.length - 1];
    return {
      snapshot_id: src.id,
      agent_id: src.agentId,
      tenant: src.tenant,
      created_at_ms: src.createdAtMs,
      path: at,
      entries,
      total: all.length,
      truncated: end < all.length,
      ...(end < all.length && last ? { next_cursor: makeCursor(at, last) } : {}),
    };
  });
}

/** An entry with its sort key: its name's UTF-8 bytes. */
interface Keyed {
  e: Pick<LsEntry, 'name' | 'type'>;
  bytes: Buffer;
}

interface KeyedEntry extends Keyed {
  e: LsEntry;
}

/**
 * The order of `ls`: by the name's UTF-8 bytes (code point order, the same in every language and
 * locale), then by the name as JavaScript compares it (two names with lone surrogates that UTF-8 writes
 * alike), then by type (a hostile manifest may hold a file `a` beside a directory `a/`): a total order
 * of the entries a path can list, so a cursor names one position in it.
 */
function compareKeyed(a: Keyed, b: Keyed): number {
  const c = Buffer.compare(a.bytes, b.bytes);
  if (c !== 0) return c;
  if (a.e.name !== b.e.name) return a.e.name < b.e.name ? -1 : 1;
  return a.e.type < b.e.type ? -1 : a.e.type > b.e.type ? 1 : 0;
}

function sortByName(entries: LsEntry[]): KeyedEntry[] {
  return entries.map((e) => ({ e, bytes: Buffer.from(e.name, 'utf8') })).sort(compareKeyed);
}

/** Index of the first entry after the cursor's (all sorted): the entries are sorted, so a binary search. */
function firstAfter(all: KeyedEntry[], after: Keyed): number {
  let lo = 0;
  let hi = all.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeyed(all[mid]!, after) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const LS_TYPES: readonly string[] = ['dir', 'file', 'database', 'table', 'virtual_table', 'state'];
/** A cursor names a path (≤ 4096 bytes) and a name: generous, yet a bound on what is decoded. */
const MAX_CURSOR_CHARS = 32 * 1024;

/**
 * A page's `next_cursor`: the path and the last entry's name and type, as JSON in base64url. It names a
 * position in the sorted entries, not an offset: the same for every page of every call.
 */
function makeCursor(path: string, last: LsEntry): string {
  return Buffer.from(JSON.stringify([path, last.name, last.type]), 'utf8').toString('base64url');
}

function parseCursor(cursor: string, path: string): Keyed {
  const bad = (why: string) =>
    new InvalidInputError(`cursor ${why}: give the next_cursor of an ls of the same path, or none`);
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor))
    throw bad('is not one ls returned');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad('is not one ls returned');
  }
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    typeof v[0] !== 'string' ||
    typeof v[1] !== 'string' ||
    typeof v[2] !== 'string' ||
    !LS_TYPES.includes(v[2])
  )
    throw bad('is not one ls returned');
  if (v[0] !== path) throw bad(`is of another path (${JSON.stringify(v[0] || '/')})`);
  const e = { name: v[1], type: v[2] as LsEntry['type'] };
  return { e, bytes: Buffer.from(e.name, 'utf8') };
}

/** The browse path as shown (no trailing slash). */
function canonical(p: BrowsePath): string {
  switch (p.kind) {
    case 'root':
      return '';
    case 'memdir':
      return p.rel ? `memdir/${p.rel}` : 'memdir';
    case 'sqlite':
      return 'sqlite';
    case 'db':
      return `sqlite/${p.db}`;
    case 'table':
      return `sqlite/${p.db}/${tableSegment(p.table)}`;
    case 'state':
      return 'state';
    case 'state_value':
      return `state/${p.key}`;
  }
}

async function entriesAt(src: SnapshotSource, p: BrowsePath): Promise<LsEntry[]> {
  switch (p.kind) {
    case 'root':
      return ['memdir', 'sqlite', 'state'].map((name) => ({ name, path: name, type: 'dir' as const }));
    case 'memdir':
      return memdirEntries(src, p.rel);
    case 'sqlite':
      return DB_NAMES.flatMap((db) => {
        const e = src.entry(sqlitePath(db));
        return e
          ? [
              {
                name: db,
                path: `sqlite/${db}`,
                type: 'database' as const,
                size_bytes: e.size_bytes,
                sha256: e.sha256,
              },
            ]
          : [];
      });
    case 'db':
      return withDatabase(src, p.db, (d) => [
        ...tablesOf(d).map(
          (t): LsEntry => ({
            name: t.name,
            path: `sqlite/${p.db}/${tableSegment(t.name)}`,
            type: 'table',
            rows: rowCount(d, t),
          }),
        ),
        // listed so that a table the schema has is never missing from `ls`; no row count (counting
        // would run its module on the snapshot's data)
        ...virtualTablesOf(d).map(
          (v): LsEntry => ({
            name: v.name,
            path: `sqlite/${p.db}/${tableSegment(v.name)}`,
            type: 'virtual_table',
            module: v.module,
            shadow_tables: v.shadow_tables,
          }),
        ),
      ]);
    case 'table':
      return withDatabase(src, p.db, (d) => {
        const v = virtualTablesOf(d).find((x) => x.name === p.table);
        if (v)
          return [
            {
              name: v.name,
              path: canonical(p),
              type: 'virtual_table' as const,
              module: v.module,
              shadow_tables: v.shadow_tables,
            },
          ];
        const t = table(d, p.table, src.id, canonical(p));
        return [{ name: t.name, path: canonical(p), type: 'table' as const, rows: rowCount(d, t) }];
      });
    case 'state':
      return STATE_KEYS.flatMap((key) => {
        const e = src.entry(statePath(key));
        return e
          ? [
              {
                name: key,
                path: `state/${key}`,
                type: 'state' as const,
                size_bytes: e.size_bytes,
                sha256: e.sha256,
              },
            ]
          : [];
      });
    case 'state_value': {
      const e = src.entry(statePath(p.key));
      if (!e) throw missingIn(src.id, `state value ${p.key}`);
      return [{ name: p.key, path: canonical(p), type: 'state', size_bytes: e.size_bytes, sha256: e.sha256 }];
    }
  }
}

function memdirEntries(src: SnapshotSource, rel: string): LsEntry[] {
  const files = memoryFiles(src);
  const exact = files.get(rel);
  if (rel !== '' && exact) {
    const e = src.entry(exact)!;
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    return [{ name, path: `memdir/${rel}`, type: 'file', size_bytes: e.size_bytes, sha256: e.sha256 }];
  }
  const prefix = rel === '' ? '' : `${rel}/`;
  const dirs = new Set<string>();
  const out: LsEntry[] = [];
  for (const [f, entryPath] of files) {
    if (!f.startsWith(prefix)) continue;
    const rest = f.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash >= 0) {
      const name = rest.slice(0, slash);
      if (!dirs.has(name)) {
        dirs.add(name);
        out.push({ name, path: `memdir/${prefix}${name}`, type: 'dir' });
      }
    } else {
      const e = src.entry(entryPath)!;
      out.push({ name: rest, path: `memdir/${f}`, type: 'file', size_bytes: e.size_bytes, sha256: e.sha256 });
    }
  }
  if (rel !== '' && out.length === 0) throw missingIn(src.id, `memdir/${rel}`);
  return out; // sorted by lsSnapshot
}

function pageArgs(opts: CatOptions, max: number, dflt: number): { offset: number; limit: number } {
  const offset = opts.offset ?? 0;
  const limit = opts.limit ?? dflt;
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw new InvalidInputError(`offset must be a non-negative integer, got ${offset}`);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > max)
    throw new InvalidInputError(`limit must be an integer 1..${max}, got ${limit}`);
  return { offset, limit };
}

export async function catSnapshot(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string | undefined,
  id: string,
  path: string,
  opts: CatOptions & OpenOptions = {},
): Promise<CatResult> {
  const p = parseBrowsePath(path);
  const shown: Shown = { policy: opts.showSecrets === true ? undefined : (await s.policies()).redaction };
  const output = opts.showSecrets === true ? ('shown' as const) : ('redacted' as const);
  const isDir = () => new InvalidInputError(`${JSON.stringify(canonical(p) || '/')} is a directory: use ls`);
  return withSnapshot(s, agentId, tenant, id, opts, async (src): Promise<CatResult> => {
    switch (p.kind) {
      case 'memdir': {
        const entryPath = memoryFiles(src).get(p.rel);
        if (!entryPath) {
          if (p.rel === '' || memdirEntries(src, p.rel).length > 0) throw isDir();
          throw missingIn(src.id, `memdir/${p.rel}`);
        }
        return catFile(src, entryPath, canonical(p), opts, shown, output);
      }
      case 'state_value': {
        if (!src.entry(statePath(p.key))) throw missingIn(src.id, `state value ${p.key}`);
        return catFile(src, statePath(p.key), canonical(p), opts, shown, output);
      }
      case 'table': {
        const { offset, limit } = pageArgs(opts, MAX_CAT_ROWS, DEFAULT_CAT_ROWS);
        return withDatabase(src, p.db, (d) => ({
          kind: 'table' as const,
          snapshot_id: src.id,
          ...tablePage(d, table(d, p.table, src.id, canonical(p)), p.db, offset, limit, shown),
          output,
        }));
      }
      case 'db': {
        const { offset, limit } = pageArgs(opts, MAX_CAT_ROWS, DEFAULT_CAT_ROWS);
        return withDatabase(src, p.db, (d) => ({
          kind: 'database' as const,
          snapshot_id: src.id,
          path: canonical(p),
          db: p.db,
          tables: tablesOf(d).map((t) => tablePage(d, t, p.db, offset, limit, shown)),
          output,
        }));
      }
      default:
        throw isDir();
    }
  });
}

function tablePage(
  d: Database.Database,
  t: TableShape,
  db: DbName,
  offset: number,
  limit: number,
  shown: Shown,
): Omit<CatTable, 'kind' | 'snapshot_id' | 'output'> {
  const total = rowCount(d, t);
  const rows = readRows(d, t, offset, limit, shown);
  return {
    path: `sqlite/${db}/${tableSegment(t.name)}`,
    db,
    table: t.name,
    columns: shownColumns(t),
    rows,
    total_rows: total,
    offset,
    limit,
    truncated: offset + rows.length < total,
  };
}

async function catFile(
  src: SnapshotSource,
  entryPath: string,
  path: string,
  opts: CatOptions,
  shown: Shown,
  output: 'redacted' | 'shown',
): Promise<CatFile> {
  const e = src.entry(entryPath)!;
  if (e.size_bytes > MAX_FILE_BYTES)
    throw new InvalidInputError(`${path} has ${e.size_bytes} bytes: cat reads files up to ${MAX_FILE_BYTES}`);
  const { offset, limit } = pageArgs(opts, MAX_CAT_BYTES, MAX_CAT_BYTES);
  const bytes = (await src.read([entryPath])).get(entryPath)!;
  const base = {
    kind: 'file' as const,
    snapshot_id: src.id,
    path,
    size_bytes: e.size_bytes,
    sha256: e.sha256,
    output,
  };
  const text = asText(bytes);
  if (text === undefined) {
    // Not UTF-8 (a Latin-1 note, a NUL): redacted output runs the rules over the bytes read as Latin-1,
    // one character per byte, so a secret is replaced and every other byte stays as stored (found in
    // stop 38: such a file was returned as stored, secrets included)
    const shownBytes = showBinary(shown, bytes);
    const page = shownBytes.subarray(
      Math.min(offset, shownBytes.length),
      Math.min(offset + limit, shownBytes.length),
    );
    return {
      ...base,
      offset,
      length: page.length,
      truncated: offset + page.length < shownBytes.length,
      binary: true,
      content_base64: page.toString('base64'),
    };
  }
  const b = Buffer.from(showText(shown, text), 'utf8');
  // pages start and end on character boundaries of the shown text
  const boundary = (i: number) => i >= b.length || (b[i]! & 0xc0) !== 0x80;
  let start = Math.min(offset, b.length);
  while (!boundary(start)) start++;
  let end = Math.min(start + limit, b.length);
  while (end > start && !boundary(end)) end--;
  // a limit smaller than the character at `start`: that whole character (up to 3 bytes past the limit),
  // so that a reader paging by `offset += length` moves on (an empty page there would never end)
  if (end === start && start < b.length) for (end = start + 1; !boundary(end); ) end++;
  return {
    ...base,
    offset: start,
    length: end - start,
    truncated: end < b.length,
    binary: false,
    content: b.toString('utf8', start, end),
  };
}
