// Owns the memdir history in the repository (docs/repository.md §6): a chain of git packs, oldest
// first, where each snapshot adds a thin pack of what its refs reach beyond the previous snapshot's
// refs (nothing when the history did not change), and starts a new chain with one full pack when the
// chain is long or the previous refs are gone. Restoring indexes the chain in order into a new
// repository.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { headRefProblem, refNameProblem } from '../format/git-bundle.js';
import {
  connectivityProblem,
  type GitRef,
  headCommit,
  indexPack,
  packObjects,
  presentObjects,
  readBundleHeader,
  setHead,
  writeRefs,
} from '../git/history.js';
import { BundleDamagedError } from '../model/errors.js';
import { gitWriteFailure } from '../util/disk-full.js';
import type { ChunkerParams } from './chunker.js';
import { readContent, storeContent } from './content.js';
import {
  GIT_HISTORY_KIND,
  GIT_HISTORY_PATH,
  type GitPack,
  packChainDigest,
  type RepoArtifact,
  type RepoManifest,
} from './manifest.js';
import type { BlobWriter, Repository } from './repository.js';

/** A chain longer than this starts over with one full pack (restore indexes every pack of the chain). */
export const MAX_CHAIN = 16;

export interface PreviousHistory {
  packs: GitPack[];
  refs: { name: string; oid: string }[];
}

const artifactOf = (packs: GitPack[]): RepoArtifact => ({
  path_in_bundle: GIT_HISTORY_PATH,
  kind: GIT_HISTORY_KIND,
  size_bytes: packs.reduce((n, p) => n + p.size_bytes, 0),
  sha256: packChainDigest(packs),
  packs,
});

async function storePackFile(writer: BlobWriter, params: ChunkerParams, path: string): Promise<GitPack> {
  const ref = await storeContent(writer, params, { path, sqlite: false });
  return { ...ref };
}

/**
 * Stores the history of the live repository `memdir` at `refs`: the previous snapshot's chain plus a
 * thin pack of what is new, or a new chain with one full pack. `work` is a scratch directory.
 */
export async function storeLiveHistory(
  writer: BlobWriter,
  params: ChunkerParams,
  memdir: string,
  refs: readonly GitRef[],
  previous: PreviousHistory | undefined,
  work: string,
): Promise<RepoArtifact | undefined> {
  return storePreparedHistory(writer, params, await prepareLiveHistory(memdir, refs, previous, work));
}

/** The live history's new pack, written by git into `work` (no repository access: it may run beside storing). */
export interface PreparedHistory {
  base: GitPack[];
  /** The pack file of what is new, and how many objects it holds. */
  file: string;
  count: number;
}

/** The first half of storeLiveHistory: which chain to extend, and git's pack of what is new. */
export async function prepareLiveHistory(
  memdir: string,
  refs: readonly GitRef[],
  previous: PreviousHistory | undefined,
  work: string,
): Promise<PreparedHistory | undefined> {
  if (refs.length === 0) return undefined;
  const tips = refs.map((r) => r.oid);
  let base: GitPack[] = [];
  let exclude: string[] = [];
  if (previous && previous.packs.length > 0 && previous.packs.length < MAX_CHAIN) {
    const old = [...new Set(previous.refs.map((r) => r.oid))];
    const have = await presentObjects(memdir, old);
    if (have.size === old.length) {
      base = previous.packs;
      exclude = old;
    }
  }
  const file = join(work, 'history.pack');
  const count = await packObjects(memdir, tips, exclude, file);
  return { base, file, count };
}

/** The second half of storeLiveHistory: stores the prepared pack and returns the history's artifact. */
export async function storePreparedHistory(
  writer: BlobWriter,
  params: ChunkerParams,
  prep: PreparedHistory | undefined,
): Promise<RepoArtifact | undefined> {
  if (!prep) return undefined;
  if (prep.count === 0 && prep.base.length > 0) return artifactOf(prep.base);
  return artifactOf([...prep.base, await storePackFile(writer, params, prep.file)]);
}

/** Stores the history carried by a git bundle file (capture of a redacted snapshot, import). */
export async function storeBundleHistory(
  writer: BlobWriter,
  params: ChunkerParams,
  bundlePath: string,
  work: string,
): Promise<{ artifact: RepoArtifact; refs: GitRef[] }> {
  const { refs, packOffset } = await readBundleHeader(bundlePath);
  const packPath = join(work, 'bundle.pack');
  const { pipeline } = await import('node:stream/promises');
  const { createWriteStream } = await import('node:fs');
  await pipeline(
    createReadStream(bundlePath, { start: packOffset }),
    createWriteStream(packPath, { flags: 'wx' }),
  );
  const pack = await storePackFile(writer, params, packPath);
  return { artifact: artifactOf([pack]), refs };
}

/** Indexes the chain into the repository at `repoDir` (initialised by the caller), pack by pack. */
export async function restoreHistory(
  repo: Repository,
  artifact: RepoArtifact,
  repoDir: string,
): Promise<void> {
  const packs = artifact.packs ?? [];
  if (packChainDigest(packs) !== artifact.sha256)
    throw new BundleDamagedError(`${artifact.path_in_bundle}: sha256 does not match its packs`);
  await indexChain(repo, packs, repoDir);
}

/** Indexes the packs of a chain, in order, into the repository at `repoDir`. */
export async function indexChain(
  repo: Repository,
  packs: readonly GitPack[],
  repoDir: string,
): Promise<void> {
  for (const [i, p] of packs.entries())
    await indexPack(repoDir, readContent(repo, p, `${GIT_HISTORY_PATH} pack ${i}`), p.size_bytes);
}

/**
 * Sets the refs and HEAD a snapshot recorded (`git_refs` and the git block) in `repoDir`, where its
 * history was indexed, and checks them: every name a valid ref under `refs/` (HEAD only as the git
 * block says), every object present, HEAD the manifest's commit, the history reachable from every ref
 * complete (`git fsck --connectivity-only`). Anything else is damage, except a git that never ran (its
 * program host ended, it could not start) or this host's IO failure: thrown as they are.
 */
export async function applyRefs(repoDir: string, m: Pick<RepoManifest, 'git' | 'git_refs'>): Promise<void> {
  const refs = (m.git_refs ?? []).filter((r) => r.name !== 'HEAD');
  for (const r of refs) {
    const bad = r.name.startsWith('refs/') ? refNameProblem(r.name) : 'is not under refs/';
    if (bad) throw new BundleDamagedError(`git_refs: ${JSON.stringify(r.name)} ${bad}`);
  }
  try {
    await writeRefs(repoDir, refs);
  } catch (err) {
    throw await gitWriteFailure(err, repoDir, 'the git refs cannot be set');
  }
  const g = m.git;
  if (g.repository === 'present') {
    const bad = g.detached ? undefined : g.head_ref === undefined ? 'missing' : headRefProblem(g.head_ref);
    if (bad) throw new BundleDamagedError(`git.head_ref ${bad}`);
    try {
      await setHead(repoDir, g.detached ? { oid: g.head_oid } : { ref: g.head_ref! });
    } catch (err) {
      throw await gitWriteFailure(err, repoDir, 'HEAD cannot be set');
    }
    const head = await headCommit(repoDir);
    if (head !== g.head_oid)
      throw new BundleDamagedError(`HEAD is ${head ?? '(none)'}, the manifest says ${g.head_oid}`);
  } else if (g.head_ref !== undefined && headRefProblem(g.head_ref) === undefined) {
    await setHead(repoDir, { ref: g.head_ref }).catch(async (err: unknown) => {
      throw await gitWriteFailure(err, repoDir, 'HEAD cannot be set');
    });
  }
  const problem = await connectivityProblem(repoDir);
  if (problem) throw new BundleDamagedError(`the git history is incomplete: ${problem}`);
}

/** Git's id of an object from its type and content (for checks). */
export const gitObjectId = (type: string, content: Buffer): string =>
  createHash('sha1').update(`${type} ${content.length}\0`).update(content).digest('hex');
