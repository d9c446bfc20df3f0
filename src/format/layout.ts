// Owns the declared in-bundle layout: which paths may appear in a bundle of each format version, the
// artifact kind each path must carry, and the segment-by-segment path safety rules. Pure.

import { DB_NAMES, STATE_KEYS } from '../model/types.js';
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

const MAX_PATH_BYTES = 4096;
const FIXED = new Map<string, ArtifactKind>([
  ...DB_NAMES.map((db) => [sqlitePath(db), sqliteKind(db)] as const),
  ...STATE_KEYS.map((key) => [statePath(key), stateKind(key)] as const),
]);

/**
 * Returns why `path` is not a safe relative path, or undefined when it is: non-empty, relative, every
 * segment non-empty and neither `.` nor `..`, no NUL, bounded length.
 */
export function unsafePathReason(path: string): string | undefined {
  if (path.length === 0) return 'empty path';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `path longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\0')) return 'path contains NUL';
  if (path.startsWith('/')) return 'absolute path';
  for (const seg of path.split('/')) {
    if (seg === '') return 'empty path segment (// or trailing /)';
    if (seg === '.' || seg === '..') return `path segment '${seg}'`;
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
    return 'memory_file';
  }
  if (version === 2) return path === GIT_BUNDLE_PATH ? 'git_bundle' : undefined;
  return path.startsWith(GIT_V1_PREFIX) ? 'git_bundle' : undefined;
}

/** Returns why (path, kind) does not fit the layout, or undefined when it does. */
export function layoutProblem(path: string, kind: string, version: LayoutVersion): string | undefined {
  const unsafe = unsafePathReason(path);
  if (unsafe) return `${unsafe}: ${JSON.stringify(path)}`;
  const expected = kindForPath(path, version);
  if (expected === undefined) return `path outside the declared layout: ${JSON.stringify(path)}`;
  if (expected !== kind) return `path ${JSON.stringify(path)} must have kind ${expected}, not ${kind}`;
  return undefined;
}
