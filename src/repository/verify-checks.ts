// Owns the checks verify runs on a repository snapshot beyond its hashes, the counterpart of a bundle's
// git bundle check and deep checks: the git pack chain indexed, in order, into a scratch repository
// (`git index-pack --fix-thin`, beside the rest of the stream) that gets the snapshot's refs and HEAD,
// then `git fsck --connectivity-only` — what restore does with the rebuilt repository, so "verified"
// means restore will not refuse the history; and with `deep`, `PRAGMA integrity_check` of every
// database, written to the scratch directory. The scratch space is always removed.

import { join } from 'node:path';
import { initBare } from '../git/git.js';
import { gitFailedOnContent, SnapshotError } from '../model/errors.js';
import type { DeepReport } from '../model/types.js';
import { checkIntegrity } from '../sqlite/worker.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { applyRefs } from './git-history.js';
import { GIT_HISTORY_KIND, type RepoArtifact } from './manifest.js';
import type { Repository } from './repository.js';
import { type RepoVerifyResult, verifyRepoSnapshot } from './verify-snapshot.js';

export interface CheckedVerifyResult {
  result: RepoVerifyResult;
  /** With `deep`, when the snapshot verified otherwise; absent when the deep checks were skipped. */
  deep?: DeepReport;
}

/** Why the indexed history cannot be restored (refs, HEAD, connectivity), or undefined. */
async function historyProblem(
  git: string,
  m: NonNullable<RepoVerifyResult['parsed']>['manifest'],
): Promise<string | undefined> {
  try {
    await applyRefs(git, m);
    return undefined;
  } catch (err) {
    // a git that never ran (its host ended) or this host's IO failure is not the snapshot's damage
    if (err instanceof SnapshotError && !gitFailedOnContent(err) && err.exitCode !== 2) throw err;
    return (err as Error).message;
  }
}

export async function checkedVerifyRepoSnapshot(
  repo: Repository,
  id: string,
  opts: {
    deep?: boolean;
    /** Where to write verified artifacts (a dry run); with `deep`, databases go to the scratch directory. */
    target?: (a: RepoArtifact) => string | undefined;
    onBytes?: (bytes: number) => void;
  } = {},
): Promise<CheckedVerifyResult> {
  const scratch = await privateScratch('verify');
  try {
    const git = join(scratch, 'history.git');
    await initBare(git);
    const result = await verifyRepoSnapshot(repo, id, {
      target: (a) =>
        opts.deep && a.kind.startsWith('sqlite_') ? join(scratch, a.path_in_bundle) : opts.target?.(a),
      gitDir: git,
      ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
    });
    if (!result.parsed || result.problems.length > 0) return { result };
    const m = result.parsed.manifest;
    let gitResult: string | undefined;
    if (m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND)) {
      const problem = await historyProblem(git, m);
      gitResult = problem ?? 'ok';
      if (problem)
        result.problems.push({
          code: 'BUNDLE_DAMAGED',
          message: `git history check failed: ${problem}`,
          path: 'git/history',
        });
    }
    if (!opts.deep || result.problems.length > 0) return { result };
    const deep: DeepReport = { sqlite_integrity: {}, ...(gitResult ? { git: gitResult } : {}) };
    deep.sqlite_integrity = await checkIntegrity(result.written);
    return { result, deep };
  } finally {
    await removeScratch(scratch);
  }
}
