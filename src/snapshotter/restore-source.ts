// Owns where a restore reads its snapshot from, behind one interface: a bundle file (any path, or one
// of the agent's bundles by id) or a snapshot of the repository (by id or unique prefix). Each source
// gives the manifest as read before anything else (its bundle view, the signature check, every rule on
// it), one verified streaming pass that writes the artifacts into restore staging (the repository's git
// packs indexed straight into the staged repository) or into a dry run's scratch directory, and the
// source the rebuilt repository loads its history from. restore.ts runs the same steps on either.

import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Identity } from '../crypto/age.js';
import type { PublicSigningKey } from '../crypto/sign.js';
import type { Artifact, Manifest, ParsedManifest } from '../format/manifest.js';
import { type KnownManifest, readManifestOnly } from '../format/reader.js';
import { manifestProblems } from '../format/rules.js';
import { checkSealSignature, checkSignature, type SignatureCheck } from '../format/signature.js';
import { initFailure, runGit } from '../git/git.js';
import { writeRefs } from '../git/history.js';
import {
  asSnapshotError,
  BundleDamagedError,
  bundleNotFound,
  InvalidInputError,
  IoError,
  SnapshotError,
} from '../model/errors.js';
import type { ProgressListener, VerifyProblem } from '../model/types.js';
import type { ContentLane } from '../repository/content.js';
import {
  bundleView,
  GIT_HISTORY_KIND,
  type ParsedRepoManifest,
  REPO_MANIFEST_VERSION_SIGNED,
  type RepoManifest,
} from '../repository/manifest.js';
import { repoManifestProblems } from '../repository/verify-snapshot.js';
import {
  bundleHistorySource,
  type HistorySource,
  type RestorePaths,
  type StagedRepo,
  stagingSink,
} from '../restore/stage.js';
import { problemsError, refused, verifyBundle } from '../verify/verify.js';
import type { LocalSnapshotter } from './local.js';

/** The manifest as read before the lock: what identity, trust, redaction and the rules are checked on. */
export interface SourceHead {
  /** The manifest (a repository snapshot's as its bundle view, repository/manifest.ts). */
  manifest: Manifest;
  raw: Record<string, unknown>;
  signature: SignatureCheck;
  /** Every rule on the manifest it breaks (format/rules.ts; repository: repoManifestProblems). */
  problems: VerifyProblem[];
}

/** What one verified pass over the snapshot wrote. */
export interface ReadSnapshot {
  manifest: Manifest;
  /** Artifact path → the file it was written to. */
  written: Map<string, string>;
  warnings: string[];
  /**
   * The snapshot's refs under `refs/` (name → object id), as the restored repository will have them;
   * undefined when not known (a v1 bundle, whose raw .git files are restored as they are).
   */
  refs?: ReadonlyMap<string, string>;
}

/** Refs under `refs/` only: a bundle's header may also list HEAD, a repository manifest records it. */
const underRefs = (refs: Iterable<readonly [string, string]>): ReadonlyMap<string, string> =>
  new Map([...refs].filter(([name]) => name.startsWith('refs/')));

/** A repository snapshot's refs (none without a history). */
const manifestRefs = (m: RepoManifest): ReadonlyMap<string, string> =>
  underRefs((m.git_refs ?? []).map((r) => [r.name, r.oid] as const));

export interface StagedSnapshot extends ReadSnapshot {
  /** Where the rebuilt repository loads the history from; undefined without a repository. */
  history: HistorySource | undefined;
  /**
   * The staged repository, when the source built it during the pass (`stage`'s `buildTree`), or is
   * still building it (a bundle's: its index is reset once the stream ends; settled by the caller).
   */
  tree?: StagedRepo | Promise<StagedRepo>;
}

/**
 * Builds the staged repository (restore/stage.ts buildMemdir) from a history source; `worktree`
 * settles once the memory files are all in place, when the history comes before them.
 */
export type TreeBuilder = (
  history: HistorySource | undefined,
  worktree?: Promise<void>,
) => Promise<StagedRepo>;

/** Which artifacts a dry run writes, and where. */
export type ArtifactTarget = (a: { path_in_bundle: string; kind: string }) => string | undefined;

export interface RestoreSource {
  /** What reports and journals name: the bundle's path, or `<repository>#<snapshot id>`. */
  readonly location: string;
  head(trusted: readonly PublicSigningKey[]): Promise<SourceHead>;
  /**
   * Verifies every byte and writes each artifact beside the live paths (`p`); fails (typed, exit 2 for
   * damage) when anything does not verify or the manifest is not the one `head` read. A source that
   * stages the history and the memory files before the databases runs `buildTree` as soon as they are
   * in place, beside the rest of the pass, and returns what it built (`tree`); a bundle's source runs it
   * as soon as the history is indexed and checked, the memory files still streaming, and returns it
   * building; without a history checked during the pass, the caller builds it. `onStaged` is called
   * with where the artifacts were written as soon as every database is written and checked, when that
   * is before the pass ends: a bundle's source as soon as its databases are (the memory files still
   * streaming), a repository snapshot's once every artifact is (git still at the tree); it may be
   * called more than once.
   * `lanes`: worker threads a source may write the databases on (a repository snapshot's do).
   */
  stage(
    p: RestorePaths,
    headRaw: Record<string, unknown>,
    onProgress?: ProgressListener,
    buildTree?: TreeBuilder,
    onStaged?: (written: ReadonlyMap<string, string>) => void,
    lanes?: readonly ContentLane[],
  ): Promise<StagedSnapshot>;
  /** Verifies every byte, writing the artifacts `target` names (a dry run). */
  inspect(target: ArtifactTarget, onProgress?: ProgressListener): Promise<ReadSnapshot>;
}

const changed = (a: Record<string, unknown>, b: Record<string, unknown>) =>
  a !== b && JSON.stringify(a) !== JSON.stringify(b);

/** A bundle file (v1, v2 or v3, encrypted or not). */
export function bundleSource(path: string, identities: readonly Identity[] | undefined): RestoreSource {
  const bundle = resolve(path);
  const withIds = identities ? { identities } : {};
  const siblingWarning = (sibling: string, staged: boolean) =>
    staged
      ? `sibling .sha256 ${sibling}: every internal hash and seal verified, the file as a whole could not be`
      : `sibling .sha256 ${sibling}: the bundle file as a whole was not checked against it`;
  // the manifest as head() read it: the stream does not parse the same bytes again
  let headRead: KnownManifest | undefined;
  return {
    location: bundle,
    async head(trusted) {
      try {
        if (!(await stat(bundle)).isFile()) throw new IoError(`${bundle} is not a regular file`);
      } catch (err) {
        if (err instanceof SnapshotError) throw err;
        throw bundleNotFound(bundle, err, 'read', path);
      }
      const { parsed, bytes } = await readManifestOnly(bundle, identities).catch((err: unknown) => {
        throw asSnapshotError(err, `reading ${bundle}`);
      });
      headRead = { parsed, bytes };
      return {
        manifest: parsed.manifest,
        raw: parsed.raw,
        signature: checkSignature(parsed, trusted),
        problems: manifestProblems(parsed).map(({ layout: _l, ...p }) => p),
      };
    },
    async stage(p, headRaw, onProgress, buildTree, onStaged) {
      // The staged repository is built from the history as soon as git has checked it (the stream
      // still writing the memory files after it); its index waits for the stream's end (`worktree`).
      let streamEnded!: (failure?: Error) => void;
      const worktree = new Promise<void>((resolveTree, rejectTree) => {
        streamEnded = (failure) => (failure ? rejectTree(failure) : resolveTree());
      });
      worktree.catch(() => undefined); // the tree's build ends with it
      let tree: Promise<StagedRepo> | undefined;
      const onHistory = (refs: ReadonlyMap<string, string>, streamed: ParsedManifest) => {
        // (the manifest must be the one the head read: the stream's end refuses it otherwise)
        if (!buildTree || tree || changed(streamed.raw, headRaw)) return;
        tree = bundleHistorySource(p, streamed.manifest, streamed.layout, refs).then((history) =>
          buildTree(history, worktree),
        );
        tree.catch(() => undefined); // awaited below, or by the caller
      };
      const failed = async (err: unknown): Promise<never> => {
        streamEnded(err instanceof Error ? err : new Error(String(err)));
        await tree?.catch(() => undefined); // no git left running in the staging the caller removes
        throw err;
      };
      let v: Awaited<ReturnType<typeof verifyBundle>>;
      try {
        v = await verifyBundle(bundle, {
          sink: {
            ...stagingSink(p),
            // (the databases come first in a bundle: their checks start beside the memory files)
            ...(onStaged ? { onStreamed: onStaged, onDatabasesStreamed: onStaged } : {}),
            ...(buildTree ? { onHistory } : {}),
          },
          ...(onProgress ? { onProgress } : {}),
          ...withIds,
          ...(headRead ? { knownManifest: headRead } : {}),
        });
        if (refused(v.report) || !v.manifest) throw problemsError(v.report.problems);
        if (changed(v.manifest.raw, headRaw))
          throw new BundleDamagedError('the bundle changed while it was being restored');
      } catch (err) {
        return failed(err);
      }
      streamEnded();
      const { manifest, layout } = v.manifest;
      return {
        manifest,
        written: v.written,
        warnings: v.report.sibling !== 'ok' ? [siblingWarning(v.report.sibling, true)] : [],
        history: await bundleHistorySource(p, manifest, layout, v.gitRefs),
        ...bundleRefs(v),
        ...(tree ? { tree } : {}),
      };
    },
    async inspect(target, onProgress) {
      const v = await verifyBundle(bundle, {
        ...(onProgress ? { onProgress } : {}),
        ...withIds,
        sink: { target: (a) => target(a) },
      });
      if (refused(v.report) || !v.manifest) throw problemsError(v.report.problems);
      return {
        manifest: v.manifest.manifest,
        written: v.written,
        warnings: v.report.sibling !== 'ok' ? [siblingWarning(v.report.sibling, false)] : [],
        ...bundleRefs(v),
      };
    },
  };
}

/**
 * A bundle's refs: its git bundle's, checked (v2, v3); none when it has no repository; unknown for v1.
 */
function bundleRefs(v: Awaited<ReturnType<typeof verifyBundle>>): { refs?: ReadonlyMap<string, string> } {
  // (the header's names are read as latin1, one character per byte, as git takes them back; the live
  // repository's are listed as UTF-8: compared as the same)
  if (v.historyRefs)
    return {
      refs: underRefs(
        [...v.historyRefs].map(([name, oid]) => [Buffer.from(name, 'latin1').toString('utf8'), oid] as const),
      ),
    };
  const m = v.manifest;
  return m && m.layout !== 1 && !m.manifest.artifacts.some((a) => a.kind === 'git_bundle')
    ? { refs: new Map() }
    : {};
}

/**
 * A snapshot of the state root's repository. Its chunks stream from the packs, each checked against its
 * id and every artifact against its size and SHA-256 (repository/verify-snapshot.ts), under the
 * repository's shared lock (prune waits). The git packs of the history are indexed, in chain order,
 * straight into the staged repository; its refs are created there from the manifest's `git_refs`.
 */
export function repositorySource(
  s: LocalSnapshotter,
  id: string,
  identityPath: string | undefined,
): RestoreSource {
  const store = s.repository;
  const withIdentity = identityPath ? { decryptIdentity: identityPath } : {};
  let parsed: ParsedRepoManifest | undefined;
  const read = async (
    target: ArtifactTarget,
    gitDir: string | undefined,
    onProgress: ProgressListener | undefined,
    afterTree?: () => Promise<void>,
    onStaged?: (written: ReadonlyMap<string, string>) => void,
    lanes?: readonly ContentLane[],
  ) => {
    const { report, result } = await store.verify(id, {
      target,
      ...(gitDir ? { gitDir } : {}),
      ...(onProgress ? { onProgress } : {}),
      ...(afterTree ? { afterTree } : {}),
      ...(onStaged ? { onStreamed: onStaged } : {}),
      ...(lanes ? { lanes } : {}),
      ...withIdentity,
    });
    if (refused(report) || !result.parsed) throw problemsError(report.problems);
    return result;
  };
  return {
    location: `${store.location}#${id}`,
    async head(trusted) {
      parsed = await store.parsed(id, identityPath);
      const m = parsed.manifest;
      return {
        manifest: bundleView(m),
        raw: parsed.raw,
        signature: checkSealSignature(
          { manifest: m, raw: parsed.raw, signed: m.manifest_version === REPO_MANIFEST_VERSION_SIGNED },
          trusted,
        ),
        problems: repoManifestProblems(m),
      };
    },
    async stage(p, headRaw, onProgress, buildTree, onStaged, lanes) {
      const m = parsed?.manifest;
      const hasHistory = m?.artifacts.some((a) => a.kind === GIT_HISTORY_KIND) === true;
      // The staged repository exists before the stream, so the packs are indexed into it as they arrive.
      if (hasHistory) {
        const init = await runGit(p.memdirStage, ['init', '-q']);
        if (init.code !== 0) throw await initFailure(p.memdirStage, init);
      }
      const sink = stagingSink(p);
      // The repository is built from the history as `head` read it, once its packs are indexed and the
      // memory files written, while the databases still stream; the manifest is checked to be that one
      // below, and a snapshot that changed fails the restore before anything is swapped in.
      let tree: StagedRepo | undefined;
      const afterTree =
        buildTree && m
          ? async () => {
              tree = await buildTree(historySourceOf(m, hasHistory));
            }
          : undefined;
      const result = await read(
        (a) => sink.target(a as Artifact, 2),
        hasHistory ? p.memdirStage : undefined,
        onProgress,
        afterTree,
        onStaged,
        lanes,
      );
      const r = result.parsed!;
      if (changed(r.raw, headRaw))
        throw new BundleDamagedError('the snapshot changed while it was being restored');
      if (hasHistory && !result.historyIndexed)
        throw new BundleDamagedError('the git history was not indexed while staging the restore');
      return {
        manifest: bundleView(r.manifest),
        written: result.written,
        warnings: [],
        history: historySourceOf(r.manifest, hasHistory),
        refs: manifestRefs(r.manifest),
        ...(tree ? { tree } : {}),
      };
    },
    async inspect(target, onProgress) {
      const r = await read(target, undefined, onProgress);
      const m = r.parsed!.manifest;
      return { manifest: bundleView(m), written: r.written, warnings: [], refs: manifestRefs(m) };
    },
  };
}

/** Where the staged repository of a repository snapshot loads its history from (its refs, its HEAD). */
function historySourceOf(m: RepoManifest, hasHistory: boolean): HistorySource | undefined {
  const g = m.git;
  if ((g.repository ?? 'absent') === 'absent') return undefined;
  const refs = (m.git_refs ?? []).filter((r) => r.name !== 'HEAD');
  return {
    ...(hasHistory
      ? {
          load: async (dir: string) => {
            try {
              await writeRefs(dir, refs);
            } catch (err) {
              throw new BundleDamagedError(
                `setting the snapshot's refs failed while staging the restore: ${(err as Error).message}`,
              );
            }
          },
        }
      : {}),
    ...(g.head_ref ? { ref: g.head_ref } : {}),
    oid: g.head_oid,
    detached: g.detached === true,
    ...(g.repository === 'present' ? { expectHead: g.head_oid } : {}),
  };
}

/**
 * An import's source is a bundle file, whatever the store: a path naming none is refused first, with
 * import's hint (a repository snapshot's `<repository>#<id>` is exported first), before the restore
 * or the store's lookup could take it for a snapshot of this repository.
 */
export async function importedBundleFile(path: string): Promise<void> {
  try {
    if (!(await stat(path)).isFile()) throw new IoError(`${resolve(path)} is not a regular file`);
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    throw bundleNotFound(resolve(path), err, 'import');
  }
}

/**
 * The source a request names: `bundle` (a path) or `snapshot` (an id or unique prefix of one of the
 * agent's snapshots, in the repository or among its bundles; a prefix matching in both is ambiguous).
 */
export async function locateSource(
  s: LocalSnapshotter,
  req: { bundle?: string; snapshot?: string; decryptIdentity?: string },
  agentId: string,
  tenant: string,
  identities: readonly Identity[] | undefined,
): Promise<RestoreSource> {
  if ((req.bundle === undefined) === (req.snapshot === undefined))
    throw new InvalidInputError(
      'a restore needs exactly one of bundle (a path) and snapshot (an id or prefix)',
    );
  if (req.bundle !== undefined) {
    // the bundle_path of a repository snapshot (list, snapshot) names the snapshot, not a file
    const id = s.repository.idOf(req.bundle);
    return id ? repositorySource(s, id, req.decryptIdentity) : bundleSource(req.bundle, identities);
  }
  // by id: the one way to a snapshot, whose manifest must be this agent's (findSnapshot); a bundle given
  // by path is the caller's own file, and restore's identity check says whose it is
  const found = await s.findSnapshot(agentId, tenant, req.snapshot!, {
    decryptIdentity: req.decryptIdentity,
  });
  return found.repository
    ? repositorySource(s, found.repository.id, req.decryptIdentity)
    : bundleSource(found.bundle.path, identities);
}
