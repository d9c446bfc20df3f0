// Owns preparing a restore beside the live paths (same file system, so the swap is a rename): where
// each staged, backup and work path goes, the sink that writes verified bundle entries there, and
// rebuilding the memdir repository from the staged history (v2: the git bundle's pack, indexed into the
// staged memdir's new repository while it streamed, and its refs; v1: the raw `.git` files' object and
// ref data, quarantined first, by `git init` and fetch): every ref, HEAD as it was,
// index reset so uncommitted edits show as they did, the pre-restore HEAD kept as a tag, `git fsck`
// clean, and last the live repository's config. Nothing of a bundle becomes config, hooks or info/.

import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, opendir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type ComponentsInMemdir, componentsInMemdir } from '../agent/components-in-memdir.js';
import { GIT_V1_PREFIX } from '../format/constants.js';
import type { Artifact, Manifest } from '../format/manifest.js';
import { fsckBuilt, gitFuse, inspectRepo, type RepoInfo, runGit } from '../git/git.js';
import { writeRefs } from '../git/history.js';
import { isV1GitData, quarantineV1 } from '../git/quarantine.js';
import { BundleDamagedError, GitError, RestoreRefusedError, UnsafeBundleError } from '../model/errors.js';
import { idAfterPrefix } from '../model/ids.js';
import { DB_NAMES } from '../model/types.js';
import { syncFileSystemsOf } from '../store/atomic.js';
import { type DirLister, readNames } from '../store/catalog.js';
import { makeDirs } from '../util/make-dirs.js';
import { allSettledOrThrow } from '../util/settle.js';
import type { EntrySink } from '../verify/verify.js';

export interface RestorePaths {
  restoreId: string;
  sqliteDir: string;
  memdir: string;
  /**
   * Staged databases: `<sqliteDir>/.restore-<id>/`; when the databases live in the memdir, their place
   * in the staged memdir (one rename swaps them in with it).
   */
  sqliteStage: string;
  /** Which files of the databases and the state live in the memdir (the default layout: all). */
  components: ComponentsInMemdir;
  /** Replaced databases: `<sqliteDir>/.pre-restore-<id>/`. */
  sqliteBackup: string;
  /** The staged memdir: `<parent>/.<name>.restore-<id>`. */
  memdirStage: string;
  /** The replaced memdir: `<parent>/.<name>.pre-restore-<id>`. */
  memdirBackup: string;
  /** Git bundle (v1: raw git data), state values: `<snapshots dir>/.restore-staging-<id>/`. */
  work: string;
}

export const RESTORE_STAGE_PREFIX = '.restore-';
export const PRE_RESTORE_PREFIX = '.pre-restore-';
/** Under the work dir: a v1 bundle's raw git data as staged, and the repository built from it. */
const V1_RAW = 'v1-git';
const V1_QUARANTINE = 'v1-quarantine.git';

export function restorePaths(
  memdir: string,
  sqliteDir: string,
  snapshotsDir: string,
  restoreId: string,
  /** Which of the databases' and state's files live in the memdir (agentComponentsInMemdir). */
  components: ComponentsInMemdir = componentsInMemdir(resolve(memdir), resolve(sqliteDir), []),
): RestorePaths {
  const parent = dirname(memdir);
  const name = basename(memdir);
  const memdirStage = join(parent, `.${name}${RESTORE_STAGE_PREFIX}${restoreId}`);
  return {
    restoreId,
    sqliteDir,
    memdir,
    components,
    // databases in the memdir are staged where they go in the staged memdir, and swapped in with it
    sqliteStage:
      components.sqliteRel !== undefined
        ? join(memdirStage, components.sqliteRel)
        : join(sqliteDir, `${RESTORE_STAGE_PREFIX}${restoreId}`),
    sqliteBackup: join(sqliteDir, `${PRE_RESTORE_PREFIX}${restoreId}`),
    memdirStage,
    memdirBackup: join(parent, `.${name}${PRE_RESTORE_PREFIX}${restoreId}`),
    work: join(snapshotsDir, `.restore-staging-${restoreId}`),
  };
}

/** Whether the snapshot had a memdir at all (v2: the memdir block; v1: any memdir artifact). */
export function bundleHasMemdir(m: Manifest): boolean {
  if (m.memdir !== undefined) return true;
  return m.artifacts.some((a) => a.kind === 'memory_file' || a.kind === 'git_bundle');
}

/**
 * Where each verified artifact is written while the bundle streams; a v2 bundle's git pack is indexed
 * into a new repository of the staged memdir as it streams (its refs are set by the history source).
 * A memory file at the place of a database or state file living in the memdir is not written.
 */
export function stagingSink(p: RestorePaths): EntrySink {
  return {
    gitRepo: p.memdirStage,
    target(a: Artifact, layout) {
      const path = a.path_in_bundle;
      if (a.kind.startsWith('sqlite_')) return join(p.sqliteStage, basename(path));
      if (a.kind.startsWith('state_')) return join(p.work, path);
      if (a.kind === 'memory_file') {
        const rel = path.slice('memory_files/'.length);
        // a database's or the state's file that a snapshot from before 2026-12-02 also took as a
        // memory file (the databases in the memdir): its component is staged there, so only hashed
        if (p.components.files.has(rel)) return undefined;
        // nor a file under one: that database or state file would become a directory (whatever the
        // layout puts where; the bundle's own rules refuse the default layout's names, format/layout.ts)
        for (const f of p.components.files)
          if (rel.startsWith(`${f}/`))
            throw new UnsafeBundleError(
              `memory file ${JSON.stringify(path)} lies under ${JSON.stringify(f)}, a database's or the state's file in the memdir`,
              { path },
            );
        return join(p.memdirStage, rel);
      }
      if (a.kind === 'git_bundle') {
        if (layout === 2) return join(p.work, 'memdir.bundle');
        const rel = path.slice(GIT_V1_PREFIX.length);
        return isV1GitData(rel) ? join(p.work, V1_RAW, rel) : undefined; // config, hooks, …: hashed only
      }
      return undefined;
    },
  };
}

async function git(cwd: string, args: string[], what: string): Promise<string> {
  const r = await runGit(cwd, args);
  if (r.code !== 0)
    throw new GitError(`${what} failed while staging the restore: ${r.stderr || `exit ${r.code}`}`);
  return r.stdout.trim();
}

/**
 * A git step on the bundle's history: failing means the history is damaged (or incomplete). Under the
 * fuse (git.ts GitFuse; the fetch's index-pack or unpack-objects expands every delta), for a pack of
 * `packBytes` when known.
 */
async function gitOnBundle(cwd: string, args: string[], what: string, packBytes = 0): Promise<void> {
  const r = await runGit(cwd, args, undefined, gitFuse(packBytes));
  if (r.code !== 0)
    throw new BundleDamagedError(`${what} failed while staging the restore: ${r.stderr || `exit ${r.code}`}`);
}

export interface StagedRepo {
  /** HEAD of the restored repository, when it has one. */
  head?: string;
  /** The tag that keeps the pre-restore HEAD reachable, when there was one. */
  preRestoreTag?: string;
  warnings: string[];
}

/**
 * Where the snapshot's history comes from, and how its HEAD looked. `load` puts the history (objects
 * and refs) into the new repository: a fetch from the git bundle (v2) or the quarantined v1 data, or
 * refs set over the packs a repository snapshot indexed while it streamed. Absent when there are no
 * commits.
 */
export interface HistorySource {
  load?: (repoDir: string) => Promise<void>;
  ref?: string;
  oid?: string;
  detached: boolean;
  /** The commit HEAD must resolve to once loaded (v2 and repository snapshots with history). */
  expectHead?: string;
  /**
   * The history is one pack that index-pack checked self-contained and connected (a v2 bundle's, indexed
   * as it streamed), every ref naming an object of it: no object reachable from a ref can be missing,
   * so the fsck of connectivity is not run again.
   */
  connected?: boolean;
}

/** Fetches every ref (and a detached HEAD) from a git bundle or a repository git can read. */
const fetchFrom =
  (from: string, detached: boolean) =>
  async (dir: string): Promise<void> => {
    const st = await stat(from);
    const bytes = st.isFile() ? st.size : 0; // a git bundle's size; a quarantined repository's is not counted
    await gitOnBundle(
      dir,
      ['fetch', '-q', '--update-head-ok', '--no-tags', from, 'refs/*:refs/*'],
      'git fetch of the snapshot history',
      bytes,
    );
    if (detached) await gitOnBundle(dir, ['fetch', '-q', '--no-tags', from, 'HEAD'], 'git fetch HEAD', bytes);
  };

/**
 * Sets the git bundle's refs (every name under refs/, as `fetchFrom` maps them; names checked by the
 * bundle's header reader) in the repository its pack was indexed into: objects the pack lacks fail it.
 */
const setIndexedRefs =
  (refs: ReadonlyMap<string, string>) =>
  async (dir: string): Promise<void> => {
    const under = [...refs].filter(([name]) => name.startsWith('refs/'));
    try {
      // the header's names are its bytes, one character each
      await writeRefs(
        dir,
        under.map(([name, oid]) => ({ name, oid })),
        'latin1',
      );
    } catch (err) {
      throw new BundleDamagedError(
        `setting the git bundle's refs failed while staging the restore: ${(err as Error).message}`,
      );
    }
  };

/** The history source of a bundle's restore, or undefined when the snapshot had no repository. */
export async function bundleHistorySource(
  p: RestorePaths,
  m: Manifest,
  layout: 1 | 2,
  /** The git bundle's refs when its pack was indexed into the staged memdir (verify's `gitRefs`). */
  indexedRefs?: ReadonlyMap<string, string>,
): Promise<HistorySource | undefined> {
  if (layout === 2) {
    if ((m.git.repository ?? 'absent') === 'absent') return undefined;
    const bundle = join(p.work, 'memdir.bundle');
    const detached = m.git.detached === true;
    const load = indexedRefs
      ? setIndexedRefs(indexedRefs)
      : existsSync(bundle)
        ? fetchFrom(bundle, detached)
        : undefined;
    return {
      ...(load ? { load } : {}),
      ...(indexedRefs ? { connected: true } : {}),
      ...(m.git.head_ref ? { ref: m.git.head_ref } : {}),
      oid: m.git.head_oid,
      detached,
      ...(m.git.repository === 'present' ? { expectHead: m.git.head_oid } : {}),
    };
  }
  const raw = join(p.work, V1_RAW);
  if (!existsSync(join(raw, 'HEAD'))) return undefined;
  const repo = join(p.work, V1_QUARANTINE);
  const head = await quarantineV1(raw, repo);
  return head.detached
    ? { load: fetchFrom(repo, true), oid: head.oid, detached: true }
    : { load: fetchFrom(repo, false), ref: head.ref, detached: false };
}

/**
 * Turns the staged working tree into the snapshot's memdir: a repository (`git init`, so its config is
 * git's own; a repository snapshot's source initialised it already and indexed its packs) that loads the
 * history from `source`, HEAD as it was (branch or detached), the index matching HEAD so uncommitted
 * edits show as such, the pre-restore HEAD tagged. Every step runs before the live repository's config is
 * copied in, so no setting of the agent's (a filter, say) is applied to the snapshot's files; the config
 * is carried over last.
 */
/**
 * Moves the staged repository's pre-restore tag to the live HEAD as it is now, with the swap's gate
 * closed: commits the agent made after staging read HEAD stay reachable under the tag (git fetch from
 * the live repository, as staging made the tag). Nothing when HEAD did not move; a failure is a warning.
 */
export async function refreshPreRestoreTag(
  p: RestorePaths,
  liveMemdir: string,
  tag: string,
  warnings: string[],
): Promise<void> {
  const [live, tagged] = await Promise.all([
    runGit(liveMemdir, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']),
    runGit(p.memdirStage, ['rev-parse', '-q', '--verify', `refs/tags/${tag}`]),
  ]);
  if (live.code !== 0 || (tagged.code === 0 && live.stdout.trim() === tagged.stdout.trim())) return;
  const r = await runGit(p.memdirStage, ['fetch', '-q', '--no-tags', liveMemdir, `+HEAD:refs/tags/${tag}`]);
  if (r.code !== 0) {
    warnings.push(
      `the pre-restore tag could not follow the live HEAD to the swap: ${r.stderr || `exit ${r.code}`}`,
    );
    return;
  }
  // The objects and the tag the fetch wrote (git syncs neither loose objects nor refs by default) are
  // on disk before the swap makes them live: the staging was synced before this fetch, and a power cut
  // after the swap would otherwise leave the tag naming an empty object (every later snapshot failing).
  await syncFileSystemsOf([p.memdirStage]);
}

export async function buildMemdir(
  p: RestorePaths,
  source: HistorySource | undefined,
  liveMemdir: string,
  /** The live repository as inspectRepo read it, when the caller reads it already. */
  liveRepo?: Promise<RepoInfo>,
  /**
   * Settles once every memory file is in the staged tree, when the history comes first (a bundle's,
   * while the stream goes on): only the index's reset reads the tree and waits for it; a rejection
   * (the stream failed) ends the build with it.
   */
  worktree: Promise<void> = Promise.resolve(),
): Promise<StagedRepo> {
  await makeDirs(p.memdirStage);
  const warnings: string[] = [];
  const dir = p.memdirStage;
  if (!source) return { warnings };
  // The live repository is read beside the steps below (it only reads; its failure is a warning).
  const liveRead = (liveRepo ?? inspectRepo(liveMemdir)).then(
    (info) => ({ info }),
    (err: unknown) => ({ err: err as Error }),
  );
  if (!existsSync(join(dir, '.git'))) await git(dir, ['init', '-q'], 'git init');
  // The pre-restore HEAD is fetched beside the history's loading (it writes only its own tag, whose
  // name has this restore's id, and objects).
  const tagging = (async (): Promise<string | undefined> => {
    try {
      const live = await liveRead;
      if ('err' in live) throw live.err;
      if (!live.info.headOid) return undefined;
      const tag = `pre-restore-${p.restoreId}`;
      await git(
        dir,
        ['fetch', '-q', '--no-tags', liveMemdir, `+HEAD:refs/tags/${tag}`],
        'keeping the pre-restore HEAD',
      );
      return tag;
    } catch (err) {
      warnings.push(`the live repository could not be read, no pre-restore tag: ${(err as Error).message}`);
      return undefined;
    }
  })();
  let head: string | undefined;
  try {
    await source.load?.(dir);
    if (source.detached && source.oid)
      await gitOnBundle(dir, ['update-ref', '--no-deref', 'HEAD', source.oid], 'setting a detached HEAD');
    else if (source.ref) await gitOnBundle(dir, ['symbolic-ref', 'HEAD', source.ref], 'setting HEAD');
    const rev = await runGit(dir, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']);
    if (rev.code === 0) head = rev.stdout.trim();
    if (source.expectHead !== undefined && head !== source.expectHead) {
      throw new BundleDamagedError(
        `restored HEAD ${head ?? '(none)'} is not the snapshot's ${source.expectHead}`,
      );
    }
  } catch (err) {
    await tagging; // no git left running in the staging the caller removes
    throw err;
  }
  // Two lanes at once, HEAD being set: the index reset to HEAD (it writes only the index), and the
  // pre-restore tag followed by fsck (refs and objects; fsck reads HEAD, the index not at all).
  // a tree git will not check out (a path `..`, `.git`, …: git says "invalid path") is the snapshot's
  // damage, as a bundle restore and a repository restore both report it; other failures stay GIT.
  // Under the fuse (git.ts GitFuse): small trees that name one another many times over can make an
  // index far larger than the pack (a "tree bomb"), and stopping at the fuse is damage too.
  const reset = head
    ? worktree
        .then(() => runGit(dir, ['reset', '-q'], undefined, gitFuse()))
        .then((r) => {
          if (r.code === 0) return executableBits(dir);
          const why = `git reset (index to HEAD) failed while staging the restore: ${r.stderr || `exit ${r.code}`}`;
          throw /invalid path|bad tree|unable to read tree/i.test(r.stderr) || r.tripped
            ? new BundleDamagedError(why)
            : new GitError(why);
        })
    : worktree;
  const tagAndCheck = async (): Promise<string | undefined> => {
    const tag = await tagging;
    // Every object was hashed and checked by index-pack when it was indexed or fetched (git fetch
    // checks that what it fetched is connected); fsck checks that the history reachable from every
    // ref is complete, unless index-pack already did (`connected`).
    if (source.connected) return tag;
    const fsck = await fsckBuilt(dir, ['--connectivity-only', '--no-progress', '--no-dangling']);
    if (fsck.code !== 0)
      throw new BundleDamagedError(`git fsck of the restored repository failed: ${fsck.stderr}`);
    return tag;
  };
  const [, preRestoreTag] = await allSettledOrThrow([reset, tagAndCheck()] as const);
  await carryLiveRepository(liveMemdir, dir, warnings);
  return { ...(head ? { head } : {}), ...(preRestoreTag ? { preRestoreTag } : {}), warnings };
}

/**
 * The live repository's git directory, where its config and its worktrees' records are: `<memdir>/.git`,
 * or, when that is a `gitdir:` pointer file (a separate git directory, or a memdir that is a linked
 * worktree: snapshots of those need `allow_external_git`), the common directory git names for it.
 */
async function liveGitDir(liveMemdir: string): Promise<string | undefined> {
  const dotGit = join(liveMemdir, '.git');
  const st = await lstat(dotGit).catch(() => undefined);
  if (st?.isDirectory()) return dotGit;
  if (!st?.isFile()) return undefined;
  const r = await runGit(liveMemdir, ['rev-parse', '--git-common-dir']);
  return r.code === 0 ? resolve(liveMemdir, r.stdout.trim()) : undefined;
}

/** What git keeps of an operation in progress in the git directory, and what it is. */
const IN_PROGRESS: ReadonlyArray<readonly [string, string]> = [
  ['MERGE_HEAD', 'a merge'],
  ['rebase-merge', 'a rebase'],
  ['rebase-apply', 'a rebase or `git am`'],
  ['CHERRY_PICK_HEAD', 'a cherry-pick'],
  ['REVERT_HEAD', 'a revert'],
  ['BISECT_LOG', 'a bisect'],
];

/** The repository format keys of a git config file (`core.repositoryformatversion`, `extensions.*`). */
const FORMAT_KEYS = /^(core\.repositoryformatversion|extensions\..+)$/i;

/** The format keys and values the config file `file` sets, sorted (git prints keys in lower case). */
async function formatOf(cwd: string, file: string): Promise<Array<readonly [string, string]>> {
  const r = await runGit(cwd, ['config', '--file', file, '--get-regexp', '.']);
  return r.stdout
    .split('\n')
    .map((line) => [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)] as const)
    .filter(([key]) => FORMAT_KEYS.test(key))
    .sort((x, y) => (x.join('=') < y.join('=') ? -1 : 1));
}

/**
 * What of the live repository outlives a restore (stop 63, a review of unusual repositories):
 * - its config (remotes and settings are not part of a snapshot), but for the repository's format
 *   (`core.repositoryformatversion`, `extensions.*`: the object format, the ref storage), which stays
 *   the staged repository's own: the live config of a repository re-made as sha256 since the snapshot,
 *   copied whole over a sha1 history, made the restored repository unreadable;
 * - the records of its linked worktrees (`.git/worktrees/<name>`: their HEAD, index and the path back
 *   to them, regular files and directories only): without them a worktree outside the memdir was no
 *   longer a git repository after the restore.
 */
async function carryLiveRepository(liveMemdir: string, dir: string, warnings: string[]): Promise<void> {
  const live = await liveGitDir(liveMemdir);
  if (!live) return;
  const liveConfig = join(live, 'config');
  const stagedConfig = join(dir, '.git', 'config');
  if (existsSync(liveConfig)) {
    // (the usual case, two configs of one plain format, is told from their text: no git run)
    const texts = await Promise.all(
      [liveConfig, stagedConfig].map((f) => readFile(f, 'utf8').catch(() => '')),
    );
    const version = (t: string) => /repositoryformatversion\s*=\s*(\d+)/i.exec(t)?.[1] ?? '0';
    if (!texts.some((t) => /extensions/i.test(t)) && version(texts[0]!) === version(texts[1]!)) {
      await copyFile(liveConfig, stagedConfig);
      return carryWorktrees(live, dir, warnings);
    }
    const own = await formatOf(dir, stagedConfig);
    await copyFile(liveConfig, stagedConfig);
    const carried = await formatOf(dir, stagedConfig);
    // the file as it is when the formats agree (nearly always): only a different format is rewritten
    if (carried.map((e) => e.join('=')).join('\n') !== own.map((e) => e.join('=')).join('\n')) {
      const what = 'keeping the repository format';
      for (const key of new Set(carried.map(([key]) => key)))
        await git(dir, ['config', '--file', stagedConfig, '--unset-all', key], what);
      for (const [key, value] of own)
        await git(dir, ['config', '--file', stagedConfig, '--add', key, value], what);
    }
  }
  return carryWorktrees(live, dir, warnings);
}

/** The live repository's records of its linked worktrees, and what it had in progress (a warning). */
async function carryWorktrees(live: string, dir: string, warnings: string[]): Promise<void> {
  // what no snapshot holds, said where the restore moves it aside (docs/restore.md)
  const inProgress = IN_PROGRESS.filter(([file]) => existsSync(join(live, file))).map(([, what]) => what);
  if (inProgress.length > 0)
    warnings.push(
      `the live repository had ${inProgress.join(' and ')} in progress: the restored one has not (no snapshot holds that state); the live repository is kept in the memdir's backup`,
    );
  const worktrees = join(live, 'worktrees');
  if ((await lstat(worktrees).catch(() => undefined))?.isDirectory()) {
    await copyTree(worktrees, join(dir, '.git', 'worktrees'));
    warnings.push(
      'the live repository has linked worktrees: their records were kept, and their branches are now as the snapshot has them',
    );
  }
}

/** Copies the directories and regular files under `from` to `to` (made); anything else is left out. */
async function copyTree(from: string, to: string): Promise<void> {
  await makeDirs(to);
  const d = await opendir(from);
  for await (const e of d) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory()) await copyTree(src, dst);
    else if (e.isFile()) await copyFile(src, dst);
  }
}

/**
 * Makes the staged memory files that HEAD tracks as executable (mode 100755) executable again: a bundle
 * carries no file modes (every file is written 0600), and git would show such a file as changed. Paths
 * come from the index git built from the verified history (git refuses `..` and `.git` components
 * there); only regular files are changed (the staged tree holds nothing else).
 */
async function executableBits(dir: string): Promise<void> {
  const r = await runGit(dir, ['ls-files', '-s', '-z']);
  if (r.code !== 0) throw new GitError(`git ls-files failed while staging the restore: ${r.stderr}`);
  for (const entry of r.stdout.split('\0')) {
    if (!entry.startsWith('100755 ')) continue;
    const path = join(dir, entry.slice(entry.indexOf('\t') + 1));
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) await chmod(path, (st.mode & 0o777) | 0o100);
  }
}

/**
 * Removes what read-only connections leave beside a WAL database that nobody has open: its `-shm` (an
 * index SQLite rebuilds) and its `-wal` when empty (nothing was written).
 */
export async function dropReaderFiles(db: string): Promise<void> {
  await rm(`${db}-shm`, { force: true });
  const wal = await lstat(`${db}-wal`).catch(() => undefined);
  if (wal?.isFile() && wal.size === 0) await rm(`${db}-wal`, { force: true });
}

/**
 * Refuses the restore when the staged tree at `root` holds anything but directories and regular files,
 * or is not a directory itself: a restore writes only those, so a symbolic link there was made by
 * another process while staging ran (one the agent runs, writing beside its memdir), and swapping it
 * in would leave the live agent pointing wherever it points (stop 61 review). Nothing live has changed
 * yet when this runs. A missing root is fine (nothing was staged there). One directory read per
 * directory (the entries' types come with it).
 */
export async function refuseForeignEntries(root: string): Promise<void> {
  const top = await lstat(root).catch(() => undefined);
  if (!top) return;
  const foreign = (path: string, what: string) =>
    new RestoreRefusedError(
      `${path} in the restore's staging is ${what}, which the restore did not make: another process wrote ` +
        'there while the restore ran; nothing live was changed',
      { path },
    );
  if (!top.isDirectory()) throw foreign(root, top.isSymbolicLink() ? 'a symbolic link' : 'not a directory');
  const dirs = [root];
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    for await (const e of await opendir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory()) dirs.push(path);
      else if (!e.isFile())
        throw foreign(path, e.isSymbolicLink() ? 'a symbolic link' : 'neither a file nor a directory');
    }
  }
}

/** Names in a directory that belong to restores (staging and backups), for leftover handling. */
export async function restoreLeftovers(
  p: Pick<RestorePaths, 'sqliteDir' | 'memdir'>,
  list: DirLister = readNames,
): Promise<string[]> {
  const out: string[] = [];
  const stagePrefix = `.${basename(p.memdir)}${RESTORE_STAGE_PREFIX}`;
  // Only names a restore gives (the prefix and a restore id, nothing else): in the default layout the
  // database directory is the memdir, whose own files may begin the same way (stop 61 review).
  for (const n of await list(p.sqliteDir)) {
    if (idAfterPrefix(n, RESTORE_STAGE_PREFIX)) out.push(join(p.sqliteDir, n));
  }
  for (const n of await list(dirname(p.memdir))) {
    if (idAfterPrefix(n, stagePrefix)) out.push(join(dirname(p.memdir), n));
  }
  return out;
}

export const LIVE_DB_FILES = DB_NAMES.map((db) => `${db}.sqlite`);
