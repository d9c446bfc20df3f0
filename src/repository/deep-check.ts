// Owns `verify --deep` of one repository snapshot, the counterpart of a bundle's deep checks: the
// snapshot verified as verify-snapshot.ts does (every chunk, every artifact), with every database written
// to a scratch directory and checked by `PRAGMA integrity_check`, and the git pack chain indexed, in
// order, into a scratch repository that gets the snapshot's refs and HEAD, then `git fsck
// --connectivity-only` (what restore runs on the rebuilt repository). The scratch space is always removed.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqlitePath } from '../format/constants.js';
import { runGit } from '../git/git.js';
import { GitError } from '../model/errors.js';
import { DB_NAMES, type DeepReport } from '../model/types.js';
import { SqliteWorker } from '../sqlite/worker.js';
import { setSnapshotRefs } from './git-history.js';
import { GIT_HISTORY_KIND } from './manifest.js';
import type { Repository } from './repository.js';
import { type RepoVerifyResult, verifyRepoSnapshot } from './verify-snapshot.js';

export interface DeepVerifyResult {
  result: RepoVerifyResult;
  /** Absent when the snapshot did not verify (the deep checks were skipped). */
  deep?: DeepReport;
}

const firstLine = (s: string): string => s.trim().split('\n')[0] ?? '';

export async function deepVerifyRepoSnapshot(
  repo: Repository,
  id: string,
  opts: { onBytes?: (bytes: number) => void } = {},
): Promise<DeepVerifyResult> {
  const scratch = await mkdtemp(join(tmpdir(), 'nexo-verify-'));
  try {
    const git = join(scratch, 'history.git');
    await mkdir(git);
    const init = await runGit(git, ['init', '-q', '--bare']);
    if (init.code !== 0) throw new GitError(`git init of a scratch repository failed: ${init.stderr}`);
    const result = await verifyRepoSnapshot(repo, id, {
      target: (a) => (a.kind.startsWith('sqlite_') ? join(scratch, a.path_in_bundle) : undefined),
      gitDir: git,
      ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
    });
    if (!result.parsed || result.problems.length > 0) return { result };
    const m = result.parsed.manifest;
    const deep: DeepReport = { sqlite_integrity: {} };
    const worker = new SqliteWorker();
    try {
      for (const db of DB_NAMES) {
        const p = result.written.get(sqlitePath(db));
        if (p) deep.sqlite_integrity[db] = await worker.integrityCheck(p);
      }
    } finally {
      await worker.close();
    }
    if (m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND)) {
      try {
        if (m.git.repository === 'present') await setSnapshotRefs(git, m.git_refs ?? [], m.git);
        const fsck = await runGit(git, ['fsck', '--connectivity-only', '--no-progress', '--no-dangling']);
        deep.git =
          fsck.code === 0
            ? 'ok'
            : `git fsck: ${firstLine(fsck.stderr || fsck.stdout) || `exit ${fsck.code}`}`;
      } catch (err) {
        deep.git = (err as Error).message;
      }
    }
    return { result, deep };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
