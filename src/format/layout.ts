// Owns the declared in-bundle layout: which paths may appear in a bundle of each format version, the
// artifact kind each path must carry, the segment-by-segment path safety rules, and the rules on the
// artifact list as a whole (no duplicates, no path that is both a file and a directory, the canonical
// order). Verify and restore apply the same rules from here. Pure.

import { DB_NAMES, SQLITE_EXTRAS, STATE_KEYS } from '../model/types.js';
import {
  type ArtifactKind,
  GIT_BUNDLE_PATH,
  GIT_V1_PREFIX,
  MANIFEST_PATH,
  MEMORY_FILES_PREFIX,
  sqliteKind,
  sqlitePath,
  stateKind,
  statePath,
} from './constants.js';

export type LayoutVersion = 1 | 2;

/** Longest path in a bundle, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096;
/** Longest path segment, in UTF-8 bytes: what Linux file systems take as one name (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
const FIXED = new Map<string, ArtifactKind>([
  ...DB_NAMES.map((db) => [sqlitePath(db), sqliteKind(db)] as const),
  ...STATE_KEYS.map((key) => [statePath(key), stateKind(key)] as const),
]);

/**
 * Names that are files of the agent's other components where the memdir holds them (the default
 * layout: the databases, their SQLite side files and the state files at the memdir's top): a memory
 * file may not lie under one, which would make that file a directory on restore.
 */
const COMPONENT_NAMES = new Set([
  ...DB_NAMES.flatMap((db) => ['', ...SQLITE_EXTRAS].map((extra) => `${db}.sqlite${extra}`)),
  'extract_cursor.json',
  'dream_run.json',
]);

/** The component file name a memory file path (relative to the memdir) lies under, if any. */
export function componentAbove(rel: string): string | undefined {
  const slash = rel.indexOf('/');
  if (slash === -1) return undefined;
  const first = rel.slice(0, slash);
  return COMPONENT_NAMES.has(first) ? first : undefined;
}

/**
 * Returns why `path` is not a safe relative path, or undefined when it is: non-empty, relative, every
 * segment non-empty, neither `.` nor `..` and at most 255 bytes, no NUL, at most 4096 bytes.
 */
export function unsafePathReason(path: string): string | undefined {
  if (path.length === 0) return 'empty path';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `path longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\0')) return 'path contains NUL';
  if (path.startsWith('/')) return 'absolute path';
  for (const seg of path.split('/')) {
    if (seg === '') return 'empty path segment (// or trailing /)';
    if (seg === '.' || seg === '..') return `path segment '${seg}'`;
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES)
      return `path segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** The kind a path must have in a bundle of `version`, or undefined when the path is outside the layout. */
export function kindForPath(path: string, version: LayoutVersion): ArtifactKind | undefined {
  if (unsafePathReason(path) !== undefined || path === MANIFEST_PATH) return undefined;
  const fixed = FIXED.get(path);
  if (fixed) return fixed;
  if (path.startsWith(MEMORY_FILES_PREFIX)) {
    const rel = path.slice(MEMORY_FILES_PREFIX.length);
    // A memory file must never land inside (or replace) a repository's .git on restore.
    if (rel.split('/').some((seg) => seg.toLowerCase() === '.git')) return undefined;
    if (componentAbove(rel) !== undefined) return undefined;
    return 'memory_file';
  }
  if (version === 2) return path === GIT_BUNDLE_PATH ? 'git_bundle' : undefined;
  return path.startsWith(GIT_V1_PREFIX) && path !== GIT_BUNDLE_PATH ? 'git_bundle' : undefined;
}

/** Returns why (path, kind) does not fit the layout, or undefined when it does. */
export function layoutProblem(path: string, kind: string, version: LayoutVersion): string | undefined {
  const unsafe = unsafePathReason(path);
  if (unsafe) return `${unsafe}: ${JSON.stringify(path)}`;
  const expected = kindForPath(path, version);
  const above = path.startsWith(MEMORY_FILES_PREFIX)
    ? componentAbove(path.slice(MEMORY_FILES_PREFIX.length))
    : undefined;
  if (above !== undefined)
    return `memory file ${JSON.stringify(path)} lies under ${JSON.stringify(above)}, the name of a database's or the state's file`;
  if (expected === undefined) return `path outside the declared layout: ${JSON.stringify(path)}`;
  if (expected !== kind) return `path ${JSON.stringify(path)} must have kind ${expected}, not ${kind}`;
  return undefined;
}

/** A problem with the artifact list: unsafe or misplaced paths are UNSAFE_ENTRY, a wrong order is damage. */
export interface ListProblem {
  code: 'UNSAFE_ENTRY' | 'BUNDLE_DAMAGED';
  path: string;
  message: string;
}

const FIXED_RANK = new Map<string, number>([...FIXED.keys()].map((p, i) => [p, i]));

/**
 * Where a path sorts in the artifact list: the databases and state values in their fixed order, then
 * (v2) the git bundle and the memory files, or (v1, the original's order) the memory files and the
 * raw `git/` files.
 */
function rank(path: string, version: LayoutVersion): number {
  const fixed = FIXED_RANK.get(path);
  if (fixed !== undefined) return fixed;
  const memory = path.startsWith(MEMORY_FILES_PREFIX);
  if (version === 2) return memory ? FIXED.size + 1 : FIXED.size;
  return memory ? FIXED.size : FIXED.size + 1;
}

/**
 * Every problem of an artifact list in a bundle of `version`: each path against the layout, paths
 * listed twice, a path that another path needs as a directory (`a` and `a/b`), and the order (v2:
 * fixed kinds first, then the git bundle, then memory files in strictly increasing byte order of their
 * UTF-8 paths; v1: the same groups, memory files before the `git/` files, in any order within a group).
 */
export function listProblems(
  artifacts: ReadonlyArray<{ path_in_bundle: string; kind: string }>,
  version: LayoutVersion,
): ListProblem[] {
  const out: ListProblem[] = [];
  const paths = new Set<string>();
  let prev: { path: string; rank: number; bytes: Buffer } | undefined;
  for (const a of artifacts) {
    const path = a.path_in_bundle;
    const p = layoutProblem(path, a.kind, version);
    if (p) out.push({ code: 'UNSAFE_ENTRY', path, message: p });
    if (paths.has(path)) {
      out.push({ code: 'UNSAFE_ENTRY', path, message: 'artifact listed twice in the manifest' });
      continue;
    }
    paths.add(path);
    if (p) continue;
    const r = rank(path, version);
    const bytes = Buffer.from(path, 'utf8');
    if (prev) {
      const sorted = version === 2 && r === prev.rank && r === rank(MEMORY_FILES_PREFIX, 2);
      if (r < prev.rank || (sorted && Buffer.compare(prev.bytes, bytes) >= 0))
        out.push({
          code: 'BUNDLE_DAMAGED',
          path,
          message: `artifact out of order: listed after ${JSON.stringify(prev.path)}`,
        });
    }
    prev = { path, rank: r, bytes };
  }
  for (const path of paths) {
    for (let at = path.indexOf('/'); at !== -1; at = path.indexOf('/', at + 1)) {
      const dir = path.slice(0, at);
      if (paths.has(dir))
        out.push({
          code: 'UNSAFE_ENTRY',
          path: dir,
          message: `${JSON.stringify(dir)} is a file, and ${JSON.stringify(path)} needs it as a directory`,
        });
    }
  }
  return out;
}
