// Owns verifying one repository snapshot, the way verify/verify.ts verifies a bundle: the manifest
// (versions, seals, repository id, layout), then every artifact streamed from the packs — each chunk
// checked against its id, each artifact against its size and SHA-256 — into a sink (restore staging,
// diff, deep checks) or only hashed; the git history's packs likewise (indexed into `gitDir` when
// given). Content problems are collected as report entries with stable codes, not thrown.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MEMORY_FILES_PREFIX } from '../format/constants.js';
import { layoutProblem } from '../format/layout.js';
import { indexPack } from '../git/history.js';
import { SnapshotError } from '../model/errors.js';
import type { VerifyProblem } from '../model/types.js';
import { readContent, writeContent } from './content.js';
import {
  GIT_HISTORY_KIND,
  GIT_HISTORY_PATH,
  type ParsedRepoManifest,
  type RepoArtifact,
} from './manifest.js';
import type { Repository } from './repository.js';
import { loadSnapshot } from './snapshots.js';

export interface RepoVerifyOptions {
  /** Where to write a verified artifact (undefined: only check it). Not asked for the git history. */
  target?: (a: RepoArtifact) => string | undefined;
  /** A git repository (initialised) to index the history's packs into. */
  gitDir?: string;
  onBytes?: (bytes: number) => void;
}

export interface RepoVerifyResult {
  parsed?: ParsedRepoManifest;
  problems: VerifyProblem[];
  artifactsChecked: number;
  artifactsTotal: number;
  bytesChecked: number;
  /** Artifact path → the file it was written to. */
  written: Map<string, string>;
  /** Whether the git history was indexed into gitDir. */
  historyIndexed: boolean;
}

/** A git failure on content whose every chunk hashed right is damage at the source (exit 2). */
function asProblem(err: unknown, path?: string): VerifyProblem {
  const code = err instanceof SnapshotError ? (err.code === 'GIT' ? 'BUNDLE_DAMAGED' : err.code) : 'IO';
  return { code, message: (err as Error).message, ...(path ? { path } : {}) };
}

/** Layout rules of a repository manifest: the bundle's v2 rules, with the git history in place of the bundle. */
export function repoLayoutProblems(m: ParsedRepoManifest['manifest']): VerifyProblem[] {
  const out: VerifyProblem[] = [];
  const seen = new Set<string>();
  for (const a of m.artifacts) {
    if (seen.has(a.path_in_bundle))
      out.push({ code: 'UNSAFE_ENTRY', message: 'duplicate artifact path', path: a.path_in_bundle });
    seen.add(a.path_in_bundle);
    if (a.kind === GIT_HISTORY_KIND) {
      if (a.path_in_bundle !== GIT_HISTORY_PATH)
        out.push({
          code: 'UNSAFE_ENTRY',
          message: `git history must be at ${GIT_HISTORY_PATH}`,
          path: a.path_in_bundle,
        });
      continue;
    }
    const why = layoutProblem(a.path_in_bundle, a.kind, 2);
    if (why) out.push({ code: 'UNSAFE_ENTRY', message: why, path: a.path_in_bundle });
  }
  // A path that is a file and also a directory of another (`a` and `a/b`) cannot be restored.
  const files = m.artifacts
    .filter((a) => a.path_in_bundle.startsWith(MEMORY_FILES_PREFIX))
    .map((a) => a.path_in_bundle);
  const set = new Set(files);
  for (const f of files) {
    const segs = f.split('/');
    for (let i = 1; i < segs.length; i++) {
      const prefix = segs.slice(0, i).join('/');
      if (set.has(prefix))
        out.push({ code: 'UNSAFE_ENTRY', message: `${prefix} is both a file and a directory`, path: f });
    }
  }
  if (
    (m.git.repository === 'present') !== m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND) &&
    m.git.repository !== 'empty'
  )
    out.push({ code: 'BUNDLE_DAMAGED', message: 'the git block and the git history artifact disagree' });
  return out;
}

export async function verifyRepoSnapshot(
  repo: Repository,
  id: string,
  opts: RepoVerifyOptions = {},
): Promise<RepoVerifyResult> {
  const res: RepoVerifyResult = {
    problems: [],
    artifactsChecked: 0,
    artifactsTotal: 0,
    bytesChecked: 0,
    written: new Map(),
    historyIndexed: false,
  };
  try {
    res.parsed = await loadSnapshot(repo, id);
  } catch (err) {
    if (!(err instanceof SnapshotError) || (err.exitCode !== 2 && err.code !== 'NOT_FOUND')) throw err;
    if (err.code === 'NOT_FOUND') throw err;
    res.problems.push(asProblem(err));
    return res;
  }
  const m = res.parsed.manifest;
  res.artifactsTotal = m.artifacts.length;
  res.problems.push(...repoLayoutProblems(m));
  if (res.problems.length > 0) return res;
  await repo.ensureIndex();
  for (const a of m.artifacts) {
    try {
      if (a.kind === GIT_HISTORY_KIND) {
        for (const [i, p] of (a.packs ?? []).entries()) {
          const what = `${a.path_in_bundle} pack ${i}`;
          if (opts.gitDir) await indexPack(opts.gitDir, counted(readContent(repo, p, what), res, opts));
          else for await (const _ of counted(readContent(repo, p, what), res, opts));
        }
        res.historyIndexed = opts.gitDir !== undefined;
      } else {
        const target = opts.target?.(a);
        if (target) {
          mkdirSync(dirname(target), { recursive: true });
          await writeContent(repo, a, target, a.path_in_bundle);
          res.bytesChecked += a.size_bytes;
          opts.onBytes?.(res.bytesChecked);
          res.written.set(a.path_in_bundle, target);
        } else for await (const _ of counted(readContent(repo, a, a.path_in_bundle), res, opts));
      }
      res.artifactsChecked++;
    } catch (err) {
      if (!(err instanceof SnapshotError) || (err.exitCode !== 2 && err.code !== 'GIT')) throw err;
      res.problems.push(asProblem(err, a.path_in_bundle));
    }
  }
  return res;
}

async function* counted(
  src: AsyncIterable<Buffer>,
  res: RepoVerifyResult,
  opts: RepoVerifyOptions,
): AsyncGenerator<Buffer> {
  for await (const b of src) {
    res.bytesChecked += b.length;
    opts.onBytes?.(res.bytesChecked);
    yield b;
  }
}
