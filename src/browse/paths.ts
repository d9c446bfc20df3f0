// Owns browse paths (docs/browse.md): checking a path a caller gives segment by segment (no empty
// segment, `.`, `..`, absolute path, NUL; bounded length) and parsing it into what it names — the root,
// the memdir or a path in it, the databases, one database or table, the state values; a table's name
// escaped into one segment and back (any name SQLite allows: `/`, `.`, `..`, empty). Pure: a browse path
// is only ever compared with manifest entries, never joined onto a directory.

import { InvalidInputError } from '../model/errors.js';
import { DB_NAMES, type DbName, STATE_KEYS, type StateKey } from '../model/types.js';

const MAX_PATH_BYTES = 4096;

export type BrowsePath =
  | { kind: 'root' }
  | { kind: 'memdir'; rel: string }
  | { kind: 'sqlite' }
  | { kind: 'db'; db: DbName }
  | { kind: 'table'; db: DbName; table: string }
  | { kind: 'state' }
  | { kind: 'state_value'; key: StateKey };

/** The segments of a caller's path; INVALID_INPUT when it is not a safe relative path. */
export function pathSegments(path: string): string[] {
  if (typeof path !== 'string') throw new InvalidInputError('path must be a string');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES)
    throw new InvalidInputError(`path longer than ${MAX_PATH_BYTES} bytes`);
  if (path.includes('\0')) throw new InvalidInputError('path contains NUL');
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith('\\'))
    throw new InvalidInputError(`absolute path ${JSON.stringify(path)}: give a path inside the snapshot`);
  const trimmed = path.endsWith('/') ? path.slice(0, -1) : path;
  if (trimmed === '') return [];
  const segs = trimmed.split('/');
  for (const seg of segs) {
    if (seg === '') throw new InvalidInputError(`empty path segment in ${JSON.stringify(path)}`);
    if (seg === '.' || seg === '..')
      throw new InvalidInputError(`path segment '${seg}' in ${JSON.stringify(path)}: not allowed`);
  }
  return segs;
}

const isDb = (s: string): s is DbName => (DB_NAMES as readonly string[]).includes(s);
const isStateKey = (s: string): s is StateKey => (STATE_KEYS as readonly string[]).includes(s);

/** What a checked path names; INVALID_INPUT when it is outside the browse tree. */
export function parseBrowsePath(path: string): BrowsePath {
  const segs = pathSegments(path);
  if (segs.length === 0) return { kind: 'root' };
  const [top, ...rest] = segs as [string, ...string[]];
  const outside = () =>
    new InvalidInputError(
      `${JSON.stringify(path)} is not a path of the snapshot (memdir/…, sqlite/…, state/…)`,
    );
  switch (top) {
    case 'memdir':
      return { kind: 'memdir', rel: rest.join('/') };
    case 'sqlite': {
      if (rest.length === 0) return { kind: 'sqlite' };
      const db = rest[0]!.endsWith('.sqlite') ? rest[0]!.slice(0, -'.sqlite'.length) : rest[0]!;
      if (!isDb(db))
        throw new InvalidInputError(`unknown database ${JSON.stringify(rest[0])} (${DB_NAMES.join(', ')})`);
      if (rest.length === 1) return { kind: 'db', db };
      if (rest.length === 2) return { kind: 'table', db, table: tableNameOf(rest[1]!) };
      throw outside();
    }
    case 'state': {
      if (rest.length === 0) return { kind: 'state' };
      const key = rest[0]!.endsWith('.json') ? rest[0]!.slice(0, -'.json'.length) : rest[0]!;
      if (rest.length === 1 && isStateKey(key)) return { kind: 'state_value', key };
      throw new InvalidInputError(
        `unknown state value ${JSON.stringify(rest.join('/'))} (${STATE_KEYS.join(', ')})`,
      );
    }
    default:
      throw outside();
  }
}

/**
 * A table's name as the last segment of its browse path: `%` as `%25` and `/` as `%2F`; the names `.`
 * and `..` as `%2E` and `%2E%2E`; the empty name as a lone `%`. Every other character is as it is, so
 * an ordinary name is its own segment. (SQLite allows any name; a path segment cannot be empty, `.`,
 * `..` or hold `/`, so without this a hostile agent could keep rows out of `cat` and `ls`.)
 */
export function tableSegment(name: string): string {
  if (name === '') return '%';
  if (name === '.' || name === '..') return name.replaceAll('.', '%2E');
  return name.replaceAll('%', '%25').replaceAll('/', '%2F');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The table name a segment names (tableSegment's inverse; any `%XX` is read); INVALID_INPUT when a `%` starts no escape. */
export function tableNameOf(seg: string): string {
  if (seg === '%') return '';
  if (!seg.includes('%')) return seg;
  const bytes: number[] = [];
  for (let i = 0; i < seg.length; ) {
    if (seg[i] === '%') {
      const hex = seg.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex))
        throw new InvalidInputError(
          `table segment ${JSON.stringify(seg)}: a % starts an escape (%25 is a %, %2F a /; docs/browse.md)`,
        );
      bytes.push(Number.parseInt(hex, 16));
      i += 3;
    } else {
      const cp = seg.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...Buffer.from(ch, 'utf8'));
      i += ch.length;
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new InvalidInputError(`table segment ${JSON.stringify(seg)}: its escapes are not UTF-8`);
  }
}
