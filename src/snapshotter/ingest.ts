// Owns storing a bundle file as a repository snapshot (import, import --store-only, migrate), in three
// steps. stageBundle verifies the bundle fully into a staging directory (only verified bytes are used;
// trust and identity as for restore; nothing is written to the repository before it passed) and
// rebuilds its history in a scratch bare repository: a v2 bundle's git bundle fetched, a v1 bundle's
// raw `.git` object and ref data quarantined (git/quarantine.ts), its git block derived from that data.
// storeStaged stores it under the repository lock: the history as a thin pack on the agent's previous
// chain (that chain is indexed into the scratch repository first), every other artifact as chunks, and
// a manifest (v4, v5 signed with the host's key) that keeps the metadata it is given and records the
// bundle as its `origin`. checkStored verifies a stored snapshot against the bundle it came from before
// migrate removes the bundle. A failure leaves at most unreferenced packs, which prune removes.
// encryptedIntoPlaintext is the one rule both import and migrate apply to an encrypted bundle.

import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaptureResult } from '../capture/capture.js';
import { type Identity, readAgeHeader } from '../crypto/age.js';
import type { SigningKey } from '../crypto/sign.js';
import { GIT_BUNDLE_PATH, GIT_V1_PREFIX, NO_REPO_GIT, ZERO_OID } from '../format/constants.js';
import type { GitInfo, Manifest, MemdirInfo } from '../format/manifest.js';
import type { TrustPolicy } from '../format/signature.js';
import { gitFuse, initBare, objectFormatOf } from '../git/git.js';
import { commitMeta, fetchAll, type GitRef, headCommit, presentObjects, recordRefs } from '../git/history.js';
import { isV1GitData, quarantineV1 } from '../git/quarantine.js';
import { BundleDamagedError, EncryptionError, InvalidInputError } from '../model/errors.js';
import { labelProblem } from '../model/ids.js';
import type { ProgressListener, VerifyReport } from '../model/types.js';
import { applyRefs, indexChain } from '../repository/git-history.js';
import {
  GIT_HISTORY_KIND,
  type RepoManifest,
  type SnapshotOrigin,
  sealRepoManifest,
} from '../repository/manifest.js';
import type { Repository } from '../repository/repository.js';
import { type ListingMeta, setPinned } from '../repository/snapshots.js';
import { storeCapture } from '../repository/store-capture.js';
import { verifyRepoSnapshot } from '../repository/verify-snapshot.js';
import { gitWriteFailure } from '../util/disk-full.js';
import { toolVersions } from '../util/version.js';
import { isEncryptedName, problemsError, refused, verifyBundle } from '../verify/verify.js';
import { capturedFrom } from './repack.js';
import type { RepositoryStore } from './repository.js';

/** A bundle verified into a staging directory, ready to be stored. */
export interface StagedBundle {
  /** The bundle's manifest (verified). */
  manifest: Manifest;
  layout: 1 | 2;
  report: VerifyReport;
  /** Databases, state values and memory files (the history is in `history`). */
  captured: CaptureResult;
  /** The scratch bare repository holding the history, and its refs; absent without history. */
  history?: { dir: string; refs: GitRef[] };
  staging: string;
}

export interface StageOptions {
  identities?: readonly Identity[];
  trust?: TrustPolicy;
  onProgress?: ProgressListener;
}

/**
 * Git failing on content whose every byte verified is damage at the source, unless it could not write
 * into `dir` for this host (a full disk, confirmed by the disk: stop 54).
 */
async function onBundleGit<T>(
  what: string,
  dir: string,
  step: () => Promise<T>,
  /** The bytes git writes into `dir` (twice a bundle it fetches: its pack and the index). */
  writing = 0,
): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw await gitWriteFailure(err, dir, what, { writing });
  }
}

/**
 * Refuses (INVALID_INPUT) a bundle whose label or created_by breaks the rules of a label (labelProblem:
 * at most 200 characters, no control, bidirectional or line-separator characters): stored, they would
 * be a snapshot's, listed and shown to operators. A snapshot of ours never writes one; the original's v1
 * bundles had free text, which readers (verify, list, restore) keep accepting: only storing refuses.
 */
export function checkStorableMeta(m: Pick<Manifest, 'label' | 'created_by'>, bundle: string): void {
  for (const [field, value] of [
    ['label', m.label],
    ['created_by', m.created_by],
  ] as const) {
    const problem = value === undefined ? undefined : labelProblem(value);
    if (problem !== undefined)
      throw new InvalidInputError(
        `the ${field} of bundle ${bundle} is not one a snapshot may have (${problem}): it is not stored; verify and restore still read the bundle`,
      );
  }
}

/**
 * Whether the bundle at `path` is age-encrypted, as verify tells (its name ends in `.age`, or it starts
 * with an age header); false when it cannot be read (staging it reports why).
 */
export async function isEncryptedBundle(path: string): Promise<boolean> {
  if (isEncryptedName(path)) return true;
  return readAgeHeader(path).then(
    (h) => h !== undefined,
    () => false,
  );
}

/**
 * The rule of import and migrate (docs/repository.md §11): an encrypted bundle moves only into an
 * encrypted repository — into a plaintext one its snapshot would lose its protection, stored in
 * plaintext. The refusal (ENCRYPTION, exit 7) says the way out, or undefined when the move is allowed.
 */
export function encryptedIntoPlaintext(
  bundleEncrypted: boolean,
  repositoryEncrypted: boolean,
): EncryptionError | undefined {
  if (!bundleEncrypted || repositoryEncrypted) return undefined;
  return new EncryptionError(
    'an encrypted bundle moves only into an encrypted repository, and this one is not (the snapshot ' +
      'would be stored in plaintext): use a repository created with encryption.recipients, or, to keep a ' +
      'plaintext copy on purpose, decrypt the bundle first (`age -d -i IDENTITY BUNDLE > PLAIN.tar.zst`, or ' +
      '`export --decrypt` from the store that holds it) and store that',
  );
}

/**
 * Verifies `bundle` fully into `staging` (an empty directory the caller removes) and rebuilds its
 * history there. A bundle verify refuses is refused here, with the same typed error, and so is one
 * whose label or created_by could not be a snapshot's (checkStorableMeta).
 */
export async function stageBundle(
  bundle: string,
  staging: string,
  o: StageOptions = {},
): Promise<StagedBundle> {
  const files = join(staging, 'bundle');
  const v = await verifyBundle(bundle, {
    ...(o.identities ? { identities: o.identities } : {}),
    ...(o.trust ? { trust: o.trust } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    sink: {
      target: (a, layout) => {
        if (
          layout === 1 &&
          a.kind === 'git_bundle' &&
          !isV1GitData(a.path_in_bundle.slice(GIT_V1_PREFIX.length))
        )
          return undefined; // config, hooks, info/ …: hashed, never written
        return join(files, a.path_in_bundle);
      },
    },
  });
  if (!v.manifest) {
    if (v.report.age_protected && v.report.problems.length === 0)
      throw new EncryptionError(
        `${bundle} is encrypted: give the identity that opens it (--decrypt-identity)`,
      );
    throw problemsError(v.report.problems);
  }
  if (refused(v.report)) throw problemsError(v.report.problems);
  const { manifest: m, layout } = v.manifest;
  checkStorableMeta(m, bundle);
  const captured = await capturedFrom(m, v.written);
  delete captured.gitBundlePath; // the history is stored from the scratch repository
  const dir = join(staging, 'history.git');
  let history: StagedBundle['history'];
  if (layout === 2) {
    const gitBundle = v.written.get(GIT_BUNDLE_PATH);
    if (gitBundle) history = await historyOfV2(m, gitBundle, dir);
  } else {
    const v1 = await historyOfV1(m, join(files, 'git'), dir);
    captured.git = v1.git;
    if (v1.refs.length > 0) history = { dir, refs: v1.refs };
    const memory = m.artifacts.filter((a) => a.kind === 'memory_file');
    if (memory.length > 0 || v1.git.repository !== 'absent') captured.memdir = memdirOf(memory);
  }
  return { manifest: m, layout, report: v.report, captured, ...(history ? { history } : {}), staging };
}

/** v2: the git bundle fetched into a bare repository; its refs, HEAD as the manifest says. */
async function historyOfV2(m: Manifest, gitBundle: string, dir: string): Promise<StagedBundle['history']> {
  const g = m.git;
  const detached = g.repository === 'present' && g.detached === true;
  await initBare(dir, objectFormatOf(g.head_oid));
  const bundleBytes = (await stat(gitBundle).catch(() => undefined))?.size ?? 0;
  await onBundleGit(
    'the git bundle cannot be read',
    dir,
    () => fetchAll(dir, gitBundle, detached),
    2 * bundleBytes,
  );
  const refs = await recordRefs(dir, detached ? g.head_oid : undefined);
  if (g.repository === 'present') {
    const at = detached
      ? (await presentObjects(dir, [g.head_oid])).has(g.head_oid)
      : refs.some((r) => r.name === g.head_ref && r.oid === g.head_oid);
    if (!at) throw new BundleDamagedError(`the git bundle does not carry HEAD ${g.head_oid}`);
  }
  return refs.length > 0 ? { dir, refs } : undefined;
}

/** v1: the raw object and ref data quarantined into a bare repository; the git block it implies. */
async function historyOfV1(m: Manifest, raw: string, dir: string): Promise<{ git: GitInfo; refs: GitRef[] }> {
  if (!existsSync(join(raw, 'HEAD')))
    return { git: { ...NO_REPO_GIT, repository: 'absent', detached: false }, refs: [] };
  const head = await onBundleGit('the v1 history cannot be read', dir, () => quarantineV1(raw, dir));
  // the quarantine holds the bundle's objects as they came: read under the fuse (a delta bomb)
  const oid = await onBundleGit('the v1 history cannot be read', dir, () => headCommit(dir, gitFuse()));
  const refs = await recordRefs(dir, head.detached && oid ? oid : undefined);
  if (!oid) {
    if (head.detached) throw new BundleDamagedError('git/HEAD is detached at an object that is not a commit');
    return {
      git: {
        head_oid: ZERO_OID,
        head_subject: '(no commits)',
        head_author: '',
        head_ts_ms: 0,
        repository: 'empty',
        head_ref: head.ref,
        detached: false,
      },
      refs,
    };
  }
  const c = await onBundleGit('the v1 HEAD commit cannot be read', dir, () =>
    commitMeta(dir, oid, gitFuse()),
  );
  // the manifest's subject and author describe the same commit, when it names it
  const same = m.git.head_oid === oid;
  return {
    git: {
      head_oid: oid,
      head_subject: same ? m.git.head_subject : c.subject,
      head_author: same ? m.git.head_author : c.author,
      head_ts_ms: same ? m.git.head_ts_ms : c.authorTsMs,
      repository: 'present',
      ...(head.detached ? { detached: true } : { head_ref: head.ref, detached: false }),
    },
    refs,
  };
}

const memdirOf = (memory: Manifest['artifacts']): MemdirInfo => ({
  files: memory.length,
  bytes: memory.reduce((n, a) => n + a.size_bytes, 0),
  skipped: [],
});

/** The metadata the stored snapshot gets. */
export interface StoreTarget {
  id: string;
  agentId: string;
  tenant: string;
  label?: string;
  createdAtMs: number;
  createdBy: string;
  /** Pinned from the start (the pin is written before the snapshot is listed). */
  pinned?: boolean;
  /** The pin's note (a migrated bundle's). */
  pinNote?: string;
}

/** The bundle as the `origin` of a snapshot stored from it. */
export function originOf(b: StagedBundle, via: SnapshotOrigin['via']): SnapshotOrigin {
  const m = b.manifest;
  const sig = b.report.signature;
  return {
    via,
    bundle_format: m.bundle_format,
    snapshot_id: m.snapshot_id,
    agent_id: m.agent_id,
    tenant: m.tenant,
    created_at_ms: m.created_at_ms,
    bundle_sha256: m.bundle_sha256,
    ...(m.manifest_seal ? { manifest_seal: m.manifest_seal } : {}),
    ...(b.report.file_sha256 ? { file_sha256: b.report.file_sha256 } : {}),
    ...(sig?.key_id && (sig.status === 'trusted' || sig.status === 'valid' || sig.status === 'untrusted')
      ? { signature: { key_id: sig.key_id, status: sig.status } }
      : {}),
  };
}

/** Whether a stored snapshot was stored from this bundle manifest (same id, seals). */
export function fromBundle(
  stored: RepoManifest,
  m: Pick<Manifest, 'snapshot_id' | 'bundle_sha256' | 'manifest_seal'>,
): boolean {
  const o = stored.origin;
  return (
    o !== undefined &&
    o.snapshot_id === m.snapshot_id &&
    o.bundle_sha256 === m.bundle_sha256 &&
    o.manifest_seal === m.manifest_seal
  );
}

/**
 * Stores a staged bundle as snapshot `t.id` of the repository, under the repository lock (the caller
 * holds the target agent's lock). Returns its listing entry.
 */
export async function storeStaged(
  store: RepositoryStore,
  repo: Repository,
  b: StagedBundle,
  t: StoreTarget,
  origin: SnapshotOrigin,
  signingKey: SigningKey | undefined,
): Promise<ListingMeta> {
  const m = b.manifest;
  return store.locked(repo, false, origin.via, async (lock) => {
    await repo.loadIndex();
    let previous = b.history ? await store.previousHistory(repo, t.agentId, t.tenant) : undefined;
    if (previous && b.history) {
      // the new pack is thin on the previous chain: its objects must be in the scratch repository
      try {
        await indexChain(repo, previous.packs, b.history.dir);
      } catch {
        previous = undefined; // an unreadable chain: this snapshot starts a new one
      }
    }
    const writer = repo.writer();
    const stored = await storeCapture(
      repo,
      writer,
      { ...b.captured, ...(b.history ? { gitRefs: b.history.refs } : {}) },
      b.history?.dir ?? b.staging,
      previous,
      b.staging,
    );
    const stats = await writer.finish();
    const { manifest, json } = sealRepoManifest(
      {
        snapshot_id: t.id,
        agent_id: t.agentId,
        tenant: t.tenant,
        ...(t.label !== undefined ? { label: t.label } : {}),
        created_at_ms: t.createdAtMs,
        created_by: t.createdBy,
        schema_versions: { ...m.schema_versions },
        git: b.captured.git,
        artifacts: stored.artifacts,
        ...(stored.refs.length > 0 ? { git_refs: stored.refs } : {}),
        ...(b.captured.memdir ? { memdir: b.captured.memdir } : {}),
        ...(m.databases ? { databases: m.databases } : {}),
        ...(m.redactions ? { redactions: m.redactions } : {}),
        ...(repo.encrypted
          ? {
              encryption: {
                scheme: 'age-envelope',
                recipients_fingerprint: repo.config.encryption?.recipients_fingerprint ?? [],
              },
            }
          : {}),
        tool_versions: await toolVersions(),
        repository_id: repo.id,
        origin,
      },
      signingKey,
    );
    const meta = store.metaOf(manifest, stats.storedNew);
    if (t.pinned) await setPinned(repo, t.id, true, t.pinNote);
    await store.publish(repo, lock, manifest, json, meta);
    return { ...meta, pinned: t.pinned === true };
  });
}

/**
 * Checks that repository snapshot `id` holds exactly what the bundle manifest `m` describes: every
 * chunk and artifact verified from the packs, the same artifacts (path, kind, size, SHA-256) but the
 * history, the history rebuilt in `work` with its refs and HEAD (the bundle's HEAD, for v2) and
 * complete, and its origin naming the bundle. Throws the typed error of the first difference.
 */
export async function checkStored(
  repo: Repository,
  id: string,
  m: Manifest,
  work: string,
): Promise<RepoManifest> {
  const gitDir = join(work, 'check.git');
  await initBare(gitDir);
  const r = await verifyRepoSnapshot(repo, id, { gitDir });
  if (r.problems.length > 0 || !r.parsed) throw problemsError(r.problems);
  const stored = r.parsed.manifest;
  const differs = (what: string) =>
    new BundleDamagedError(`repository snapshot ${id} differs from its bundle: ${what}`);
  if (!fromBundle(stored, m)) throw differs('its origin names another bundle');
  if (stored.artifacts.some((a) => a.kind === GIT_HISTORY_KIND)) await applyRefs(gitDir, stored);
  const difference = storedDifference(stored, m);
  if (difference) throw differs(difference);
  return stored;
}

/**
 * How a stored manifest differs from the bundle manifest `m` it says it was stored from (its `origin`
 * is the writer's word, copied from the bundle's plaintext head by anyone: stop 62 review), or
 * undefined when it records the same artifacts (path, kind, size, SHA-256) but the history, and the
 * same HEAD. Manifests only: that the data matches them is what verify checks.
 */
export function storedDifference(stored: RepoManifest, m: Manifest): string | undefined {
  const key = (a: { path_in_bundle: string; kind: string; size_bytes: number; sha256: string }) =>
    `${a.path_in_bundle}\0${a.kind}\0${a.size_bytes}\0${a.sha256}`;
  const want = m.artifacts.filter((a) => a.kind !== 'git_bundle').map(key);
  const have = new Set(stored.artifacts.filter((a) => a.kind !== GIT_HISTORY_KIND).map(key));
  for (const k of want) if (!have.has(k)) return `${k.split('\0')[0]} is missing or different`;
  if (have.size !== want.length) return 'it holds artifacts the bundle does not';
  if (m.git.repository !== undefined && stored.git.head_oid !== m.git.head_oid)
    return `HEAD ${stored.git.head_oid} is not the bundle's ${m.git.head_oid}`;
  return undefined;
}
