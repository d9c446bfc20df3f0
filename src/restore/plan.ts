// Owns describing what a restore changes, per component, by comparing the live agent with a verified
// bundle: database sizes and rows per table, HEAD before → after, memdir files added, removed and
// changed, state values. A dry run reports this without changing anything; a real restore reports it
// too. Reads only: live databases are opened read-only.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ComponentsInMemdir } from '../agent/components-in-memdir.js';
import { memdirFileReader, walkMemdir } from '../capture/memdir.js';
import { GIT_V1_PREFIX, MEMORY_FILES_PREFIX, sqlitePath } from '../format/constants.js';
import type { Manifest } from '../format/manifest.js';
import { inspectRepo, type RepoInfo } from '../git/git.js';
import { recordRefs } from '../git/history.js';
import { type ComponentChange, DB_NAMES } from '../model/types.js';
import { type RowCounts, rowCounts } from '../sqlite/rows.js';
import { sha256Hex } from '../util/hash.js';
import { shellWord } from '../util/shell-word.js';
import { bundleHasMemdir } from './stage.js';

const sizeOf = (p: string): number | undefined => (existsSync(p) ? statSync(p).size : undefined);

export async function planDatabases(
  m: Manifest,
  sqliteDir: string,
  stagedDbs: Map<string, string>,
  /** Rows of database files already counted (a restore counts them on its worker threads). */
  counted: ReadonlyMap<string, RowCounts> = new Map(),
): Promise<ComponentChange[]> {
  const rowsOf = (path: string) => counted.get(path) ?? rowCounts(path);
  const out: ComponentChange[] = [];
  for (const db of DB_NAMES) {
    const live = join(sqliteDir, `${db}.sqlite`);
    const staged = stagedDbs.get(sqlitePath(db));
    const inBundle = m.artifacts.find((a) => a.path_in_bundle === sqlitePath(db));
    const liveSize = sizeOf(live);
    if (!inBundle && liveSize === undefined) continue;
    const oldRows = rowsOf(live);
    const newRows = staged ? rowsOf(staged) : {};
    const rows: Record<string, { old: number; new: number }> = {};
    for (const t of new Set([...Object.keys(oldRows), ...Object.keys(newRows)])) {
      rows[t] = { old: oldRows[t] ?? 0, new: newRows[t] ?? 0 };
    }
    out.push({
      component: `sqlite:${db}`,
      action: !inBundle ? 'remove' : liveSize === undefined ? 'create' : 'replace',
      ...(liveSize !== undefined ? { old_bytes: liveSize } : {}),
      ...(inBundle ? { new_bytes: inBundle.size_bytes } : {}),
      rows,
    });
  }
  return out;
}

/** Files planMemdir reads and hashes between two turns of the event loop. */
const YIELD_EVERY = 64;

export async function planMemdir(
  m: Manifest,
  memdir: string,
  /** The live repository as inspectRepo read it, when the caller reads it already. */
  liveRepoRead?: Promise<RepoInfo>,
  /** The databases' and state's files that live in the memdir: not memory files on either side. */
  components?: ComponentsInMemdir,
  /** The snapshot's refs under `refs/` (restore-source.ts ReadSnapshot's `refs`), when known. */
  snapshotRefs?: ReadonlyMap<string, string>,
): Promise<ComponentChange | undefined> {
  const liveExists = existsSync(memdir);
  const inBundle = bundleHasMemdir(m);
  if (!liveExists && !inBundle) return undefined;
  const bundleFiles = new Map(
    m.artifacts
      .filter((a) => a.kind === 'memory_file')
      .map((a) => [a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length), a] as const)
      .filter(([rel]) => !components?.files.has(rel)),
  );
  const walked = liveExists ? await walkMemdir(memdir, components) : { files: [], skipped: [] };
  const liveFiles = walked.files;
  // What no snapshot captures (symlinks, nested .git directories, special files, names that are not
  // UTF-8) is not in the restored memdir either: the swap moves it out with the rest (into the backup).
  const uncaptured = walked.skipped.map((e) => e.path);
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  let oldBytes = 0;
  let read = 0;
  // each file opened once, never blocking, checked to be the memdir's (a FIFO or a symlinked parent put
  // there since the walk is not read: a restore does not hang on one)
  const readLive = liveExists ? memdirFileReader(memdir) : () => undefined;
  for (const rel of liveFiles) {
    // a restore runs this beside its git steps on the same thread: let their callbacks in now and then
    if (++read % YIELD_EVERY === 0) await new Promise((resolveTurn) => setImmediate(resolveTurn));
    const a = bundleFiles.get(rel);
    let live: Buffer | undefined;
    try {
      live = readLive(rel); // small files: sync reads are far cheaper here
    } catch {
      live = undefined;
    }
    oldBytes += live?.length ?? 0;
    if (!a) removed.push(rel);
    else if (!live || sha256Hex(live) !== a.sha256) changed.push(rel);
  }
  const liveSet = new Set(liveFiles);
  for (const rel of bundleFiles.keys()) if (!liveSet.has(rel)) added.push(rel);
  const liveRepo = liveExists
    ? await (liveRepoRead ?? inspectRepo(memdir)).catch(() => undefined)
    : undefined;
  const refs = snapshotRefs && (await refChanges(memdir, liveRepo, snapshotRefs));
  // v2 says whether HEAD has a commit; a v1 bundle has one when it ships git/HEAD and records a commit
  const newHead =
    m.git.repository === 'present' ||
    (m.git.repository === undefined &&
      m.git.head_oid !== '0'.repeat(40) &&
      m.artifacts.some((a) => a.path_in_bundle === `${GIT_V1_PREFIX}HEAD`));
  const head = {
    ...(liveRepo?.headOid ? { old: liveRepo.headOid } : {}),
    ...(newHead ? { new: m.git.head_oid } : {}),
  };
  removed.push(...uncaptured);
  const refsMoved = refs !== undefined && (refs.added.length || refs.removed.length || refs.changed.length);
  const unchanged =
    liveExists &&
    inBundle &&
    !added.length &&
    !removed.length &&
    !changed.length &&
    head.old === head.new &&
    !refsMoved;
  return {
    component: 'memdir',
    action: !inBundle ? 'remove' : !liveExists ? 'create' : unchanged ? 'unchanged' : 'replace',
    ...(liveExists ? { old_bytes: oldBytes } : {}),
    ...(inBundle ? { new_bytes: [...bundleFiles.values()].reduce((s, a) => s + a.size_bytes, 0) } : {}),
    head,
    ...(refs ? { refs } : {}),
    files: { added, removed, changed, ...(uncaptured.length ? { uncaptured } : {}) },
  };
}

/**
 * The refs under `refs/` the restore adds, removes (the live repository has them, the snapshot does
 * not: a branch made since, an earlier restore's pre-restore tag) and moves. Undefined when the live
 * repository's refs cannot be listed (the restore itself then reads it and says so).
 */
async function refChanges(
  memdir: string,
  liveRepo: RepoInfo | undefined,
  snapshot: ReadonlyMap<string, string>,
): Promise<ComponentChange['refs']> {
  let live = new Map<string, string>();
  if (liveRepo && liveRepo.repository !== 'absent') {
    try {
      live = new Map(
        (await recordRefs(memdir)).filter((r) => r.name.startsWith('refs/')).map((r) => [r.name, r.oid]),
      );
    } catch {
      return undefined;
    }
  } else if (existsSync(join(memdir, '.git'))) return undefined; // there, but git could not read it
  const byName = (names: string[]) => names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    added: byName([...snapshot.keys()].filter((n) => !live.has(n))),
    removed: byName([...live.keys()].filter((n) => !snapshot.has(n))),
    changed: byName([...snapshot].filter(([n, oid]) => live.has(n) && live.get(n) !== oid).map(([n]) => n)),
  };
}

/**
 * The warning of a restore whose memdir change leaves out live entries no snapshot captures. Names are
 * shell words (shellWord), as `ls` and `find` print them: a name holding a line break or `, ` cannot
 * forge a line or another name.
 */
export function uncapturedWarning(change: ComponentChange | undefined): string | undefined {
  const u = change?.files?.uncaptured;
  if (!u?.length) return undefined;
  const shown = u.slice(0, 5).map(shellWord).join(', ');
  return `the live memdir holds ${u.length} entr${u.length === 1 ? 'y' : 'ies'} no snapshot captures (${shown}${u.length > 5 ? ', …' : ''}: symlinks, nested .git, special files): the restored memdir does not have them; they stay in the memdir's backup`;
}
