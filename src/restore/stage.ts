// Owns preparing a restore beside the live paths (same file system, so the swap is a rename): where
// each staged, backup and work path goes, the sink that writes verified bundle entries there, and
// rebuilding the memdir repository from the staged git bundle (every ref, HEAD as it was, index reset
// so uncommitted edits show as they did, the pre-restore HEAD kept as a tag, `git fsck` clean).

import { existsSync } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Artifact, Manifest } from '../format/manifest.js';
import { inspectRepo, runGit } from '../git/git.js';
import { BundleDamagedError, GitError } from '../model/errors.js';
import { DB_NAMES } from '../model/types.js';
import { type DirLister, readNames } from '../store/catalog.js';
import type { EntrySink } from '../verify/verify.js';

export interface RestorePaths {
  restoreId: string;
  sqliteDir: string;
  memdir: string;
  /** Staged databases: `<sqliteDir>/.restore-<id>/`. */
  sqliteStage: string;
  /** Replaced databases: `<sqliteDir>/.pre-restore-<id>/`. */
  sqliteBackup: string;
  /** The staged memdir: `<parent>/.<name>.restore-<id>`. */
  memdirStage: string;
  /** The replaced memdir: `<parent>/.<name>.pre-restore-<id>`. */
  memdirBackup: string;
  /** Git bundle and state values: `<snapshots dir>/.restore-staging-<id>/`. */
  work: string;
}

export const RESTORE_STAGE_PREFIX = '.restore-';
export const PRE_RESTORE_PREFIX = '.pre-restore-';

export function restorePaths(
  memdir: string,
  sqliteDir: string,
  snapshotsDir: string,
  restoreId: string,
): RestorePaths {
  const parent = dirname(memdir);
  const name = basename(memdir);
  return {
    restoreId,
    sqliteDir,
    memdir,
    sqliteStage: join(sqliteDir, `${RESTORE_STAGE_PREFIX}${restoreId}`),
    sqliteBackup: join(sqliteDir, `${PRE_RESTORE_PREFIX}${restoreId}`),
    memdirStage: join(parent, `.${name}${RESTORE_STAGE_PREFIX}${restoreId}`),
    memdirBackup: join(parent, `.${name}${PRE_RESTORE_PREFIX}${restoreId}`),
    work: join(snapshotsDir, `.restore-staging-${restoreId}`),
  };
}

/** Whether the snapshot had a memdir at all (v2: the memdir block; v1: any memdir artifact). */
export function bundleHasMemdir(m: Manifest): boolean {
  if (m.memdir !== undefined) return true;
  return m.artifacts.some((a) => a.kind === 'memory_file' || a.kind === 'git_bundle');
}

/** Where each verified artifact is written while the bundle streams. */
export function stagingSink(p: RestorePaths): EntrySink {
  return {
    target(a: Artifact, layout) {
      const path = a.path_in_bundle;
      if (a.kind.startsWith('sqlite_')) return join(p.sqliteStage, basename(path));
      if (a.kind.startsWith('state_')) return join(p.work, path);
      if (a.kind === 'memory_file') return join(p.memdirStage, path.slice('memory_files/'.length));
      if (a.kind === 'git_bundle') {
        return layout === 2
          ? join(p.work, 'memdir.bundle')
          : join(p.memdirStage, '.git', path.slice('git/'.length));
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

export interface StagedRepo {
  /** HEAD of the restored repository, when it has one. */
  head?: string;
  /** The tag that keeps the pre-restore HEAD reachable, when there was one. */
  preRestoreTag?: string;
  warnings: string[];
}

/**
 * Turns the staged working tree into the snapshot's memdir: the repository from the git bundle (v2) or
 * the raw `.git` files (v1), HEAD as it was (branch or detached), the index matching HEAD so uncommitted
 * edits show as such, the live repository's config carried over, the pre-restore HEAD tagged.
 */
export async function buildMemdir(
  p: RestorePaths,
  m: Manifest,
  layout: 1 | 2,
  liveMemdir: string,
): Promise<StagedRepo> {
  await mkdir(p.memdirStage, { recursive: true });
  const warnings: string[] = [];
  const dir = p.memdirStage;
  const repository =
    layout === 1
      ? existsSync(join(dir, '.git', 'HEAD'))
        ? 'present'
        : 'absent'
      : (m.git.repository ?? 'absent');
  if (repository === 'absent') return { warnings };
  if (layout === 2) {
    await git(dir, ['init', '-q'], 'git init');
    const bundle = join(p.work, 'memdir.bundle');
    if (existsSync(bundle)) {
      await git(
        dir,
        ['fetch', '-q', '--update-head-ok', '--no-tags', bundle, 'refs/*:refs/*'],
        'git fetch from the bundle',
      );
      if (m.git.detached) await git(dir, ['fetch', '-q', '--no-tags', bundle, 'HEAD'], 'git fetch HEAD');
    }
    if (m.git.detached)
      await git(dir, ['update-ref', '--no-deref', 'HEAD', m.git.head_oid], 'setting a detached HEAD');
    else if (m.git.head_ref) await git(dir, ['symbolic-ref', 'HEAD', m.git.head_ref], 'setting HEAD');
    const liveConfig = join(liveMemdir, '.git', 'config');
    if (existsSync(liveConfig)) await copyFile(liveConfig, join(dir, '.git', 'config')); // remotes and settings stay
  }
  let head: string | undefined;
  const rev = await runGit(dir, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']);
  if (rev.code === 0) head = rev.stdout.trim();
  if (repository === 'present' && layout === 2 && head !== m.git.head_oid) {
    throw new BundleDamagedError(`restored HEAD ${head ?? '(none)'} is not the snapshot's ${m.git.head_oid}`);
  }
  if (head && layout === 2) await git(dir, ['reset', '-q'], 'git reset (index to HEAD)');
  let preRestoreTag: string | undefined;
  try {
    const live = await inspectRepo(liveMemdir);
    if (live.headOid) {
      preRestoreTag = `pre-restore-${p.restoreId}`;
      await git(
        dir,
        ['fetch', '-q', '--no-tags', liveMemdir, `+HEAD:refs/tags/${preRestoreTag}`],
        'keeping the pre-restore HEAD',
      );
    }
  } catch (err) {
    preRestoreTag = undefined;
    warnings.push(`the live repository could not be read, no pre-restore tag: ${(err as Error).message}`);
  }
  // Every object was hashed and checked by index-pack when it was fetched; fsck checks that the history
  // reachable from every ref is complete.
  const fsck = await runGit(dir, ['fsck', '--connectivity-only', '--no-progress', '--no-dangling']);
  if (fsck.code !== 0)
    throw new BundleDamagedError(`git fsck of the restored repository failed: ${fsck.stderr}`);
  return { ...(head ? { head } : {}), ...(preRestoreTag ? { preRestoreTag } : {}), warnings };
}

/** Names in a directory that belong to restores (staging and backups), for leftover handling. */
export async function restoreLeftovers(
  p: Pick<RestorePaths, 'sqliteDir' | 'memdir'>,
  list: DirLister = readNames,
): Promise<string[]> {
  const out: string[] = [];
  const stagePrefix = `.${basename(p.memdir)}${RESTORE_STAGE_PREFIX}`;
  for (const n of await list(p.sqliteDir)) {
    if (n.startsWith(RESTORE_STAGE_PREFIX)) out.push(join(p.sqliteDir, n));
  }
  for (const n of await list(dirname(p.memdir))) {
    if (n.startsWith(stagePrefix)) out.push(join(dirname(p.memdir), n));
  }
  return out;
}

/** Removes staging dirs of restores that died before writing a journal. Call under the agent lock. */
export async function removeRestoreStaging(paths: string[]): Promise<void> {
  for (const p of paths) await rm(p, { recursive: true, force: true });
}

export const LIVE_DB_FILES = DB_NAMES.map((db) => `${db}.sqlite`);
