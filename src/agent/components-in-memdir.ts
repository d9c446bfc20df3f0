// Owns the one layout question the memdir's own files depend on: which files of the agent's other
// components live inside its memdir. The default layout (the original's) puts the memdir and the
// database directory at the same place, `<root>/<agent>/`, with the state files beside the
// databases; a snapshot then captures those files as their components (databases by `VACUUM INTO`,
// state through its provider), never a second time, raw, as memory files, and a restore stages them
// in the staged memdir, which one rename swaps in with everything else. Pure (paths only).

import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { idAfterPrefix } from '../model/ids.js';
import { DB_NAMES, SQLITE_EXTRAS } from '../model/types.js';
import { type StateProvider, stateFilePaths } from './state.js';

/** Prefixes of the directories restores make beside the databases (staging, backups), each + a restore id. */
const RESTORE_DIR_PREFIXES = ['.restore-', '.pre-restore-'];

export interface ComponentsInMemdir {
  /**
   * The database directory relative to the memdir (`''`: the memdir itself), when it is the memdir or
   * inside it; undefined when it is elsewhere.
   */
  sqliteRel?: string;
  /** Memdir-relative paths (`/` separators) of the databases' and state files inside the memdir. */
  files: ReadonlySet<string>;
}

/** `path` relative to `dir` with `/` separators, when it is `dir` itself or inside it. */
function inside(dir: string, path: string): string | undefined {
  const rel = relative(dir, path);
  if (rel === '') return '';
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
  return rel.split(sep).join('/');
}

/**
 * Which files of the databases (in `sqliteDir`) and of the state (`statePaths`, the files a file-based
 * state provider keeps) are inside `memdir`. Absolute, resolved paths.
 */
export function componentsInMemdir(
  memdir: string,
  sqliteDir: string,
  statePaths: readonly string[],
): ComponentsInMemdir {
  const files = new Set<string>();
  const dbFiles = DB_NAMES.flatMap((db) =>
    ['', ...SQLITE_EXTRAS].map((extra) => join(sqliteDir, `${db}.sqlite${extra}`)),
  );
  for (const path of [...dbFiles, ...statePaths]) {
    const rel = inside(memdir, path);
    if (rel) files.add(rel);
  }
  const sqliteRel = inside(memdir, sqliteDir);
  return { ...(sqliteRel !== undefined ? { sqliteRel } : {}), files };
}

/** componentsInMemdir of an agent: its paths resolved, its state files as its provider keeps them. */
export function agentComponentsInMemdir(
  memdir: string,
  sqliteDir: string,
  state: StateProvider,
  agentId: string,
  tenant: string,
): ComponentsInMemdir {
  return componentsInMemdir(
    resolve(memdir),
    resolve(sqliteDir),
    stateFilePaths(state, agentId, tenant).map((f) => resolve(f)),
  );
}

/**
 * Whether the memdir entry `rel` (a file, or a directory with `dir`) belongs to another component: a
 * database or state file, or a restore's directory beside the databases.
 */
export function isComponentEntry(c: ComponentsInMemdir, rel: string, dir: boolean): boolean {
  if (!dir) return c.files.has(rel);
  if (c.sqliteRel === undefined) return false;
  const slash = rel.lastIndexOf('/');
  const parent = slash === -1 ? '' : rel.slice(0, slash);
  const name = rel.slice(slash + 1);
  return parent === c.sqliteRel && RESTORE_DIR_PREFIXES.some((p) => idAfterPrefix(name, p) !== undefined);
}
