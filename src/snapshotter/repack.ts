// Owns writing copies of snapshots as bundles for what leaves the host. packStaged is the one writer
// of copies: a snapshot staged as a capture (verified bytes only) is redacted when asked (the history
// rewritten from the capture's git bundle), hashed, sealed with the same snapshot id and metadata and
// fresh seals, signed when a key is given, and packed (encrypted when recipients are given).
// repackBundle stages a bundle through verify (an encrypted one opened with the identity) and packs it
// plaintext; export of a repository snapshot (repo-export.ts) stages it from the repository. The
// staging is always removed; on failure nothing is left at the destination.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type CaptureResult, hashCapture, type StagedArtifact } from '../capture/capture.js';
import { type Identity, recipientFingerprint } from '../crypto/age.js';
import type { SigningKey } from '../crypto/sign.js';
import {
  type ArtifactKind,
  BUNDLE_FORMAT,
  CURRENT_SCHEMA,
  GIT_BUNDLE_PATH,
  MANIFEST_VERSION,
} from '../format/constants.js';
import { type Manifest, type ManifestDraft, sealManifest } from '../format/manifest.js';
import { readManifestOnly } from '../format/reader.js';
import type { TrustPolicy } from '../format/signature.js';
import { packBundle } from '../format/writer.js';
import type { CompressOptions } from '../format/zstd.js';
import { RedactionError } from '../model/errors.js';
import { DB_NAMES, type DbName, type ProgressListener } from '../model/types.js';
import { redactStaging } from '../policy/redaction/redact.js';
import type { RedactionPolicy } from '../policy/redaction/scan.js';
import { type SqliteJobs, sqliteRunners } from '../sqlite/worker.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { mapLimit } from '../util/settle.js';
import { toolVersions } from '../util/version.js';
import { problemsError, refused, verifyBundle } from '../verify/verify.js';

/** Memory files up to this size are held in memory while redacted (as capture does). */
const IN_MEMORY_FILE_MAX = 1024 * 1024;
const IN_MEMORY_TOTAL_MAX = 64 * 1024 * 1024;
/** Staged files read at once (each an open file). */
const READS_AT_ONCE = 16;

export interface RepackOptions {
  source: string;
  /** The file to write (must not exist): published whole or not at all. */
  dest: string;
  /** Redact with this policy; absent for a plaintext copy of the same content (a decrypted copy). */
  policy?: RedactionPolicy;
  /** Opens an encrypted source. */
  identities?: readonly Identity[];
  /** The source must satisfy this trust policy (its signature checked before anything is used). */
  trust?: TrustPolicy;
  /** Signs the new manifest; without it the copy is unsigned. */
  signingKey?: SigningKey;
  zstd: CompressOptions;
  onProgress?: ProgressListener;
}

export interface Repacked {
  manifest: Manifest;
  size: number;
  sha256: string;
}

/** Refuses what cannot be re-packed before anything is written: a v1 bundle (raw `.git` files). */
export async function checkRepackable(source: string, identities?: readonly Identity[]): Promise<void> {
  const { parsed } = await readManifestOnly(source, identities);
  if (parsed.layout === 1)
    throw new RedactionError(
      'a v1 bundle (raw .git files) cannot be re-packed: its history cannot be redacted; export it with ' +
        '--no-redact (an exact copy), or restore it and take a new snapshot',
    );
}

export async function repackBundle(o: RepackOptions): Promise<Repacked> {
  await checkRepackable(o.source, o.identities);
  const staging = await privateScratch('repack');
  try {
    const v = await verifyBundle(o.source, {
      ...(o.identities ? { identities: o.identities } : {}),
      ...(o.trust ? { trust: o.trust } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      sink: { target: (a) => join(staging, 'bundle', a.path_in_bundle) },
    });
    if (refused(v.report) || !v.manifest) throw problemsError(v.report.problems);
    const m = v.manifest.manifest;
    return await packStaged(
      { meta: m, captured: await capturedFrom(m, v.written), staging },
      {
        dest: o.dest,
        ...(o.policy ? { policy: o.policy } : {}),
        ...(o.signingKey ? { signingKey: o.signingKey } : {}),
        zstd: o.zstd,
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      },
    );
  } finally {
    await removeScratch(staging);
  }
}

/** A snapshot staged as a capture (from a bundle or a repository snapshot), and the metadata it keeps. */
export interface StagedSnapshot {
  meta: Pick<
    Manifest,
    | 'snapshot_id'
    | 'agent_id'
    | 'tenant'
    | 'label'
    | 'created_at_ms'
    | 'created_by'
    | 'schema_versions'
    | 'databases'
    | 'redactions'
  >;
  captured: CaptureResult;
  /** The directory the capture's files are in (redaction works there). */
  staging: string;
}

export interface PackStagedOptions {
  /** The file to write (must not exist): published whole or not at all. */
  dest: string;
  /** Redact with this policy first; absent for an exact copy. */
  policy?: RedactionPolicy;
  signingKey?: SigningKey;
  /** age recipients the bundle is encrypted to; none for a plaintext bundle. */
  recipients?: readonly string[];
  zstd: CompressOptions;
  onProgress?: ProgressListener;
}

/**
 * Writes a staged snapshot as a v2 bundle (v3 when signed) with its snapshot id and metadata: redacted
 * first when a policy is given (the history rewritten from the capture's git bundle), hashed, sealed,
 * packed (encrypted to `recipients` when given). The one writer of copies: export, download, repack.
 */
export async function packStaged(s: StagedSnapshot, o: PackStagedOptions): Promise<Repacked> {
  const { meta: m, captured } = s;
  const workers: SqliteJobs[] = [];
  try {
    let redactions: Manifest['redactions'];
    if (o.policy) {
      o.onProgress?.({ phase: 'redact', bytes: 0 });
      redactions = await redactStaging(o.policy, captured, s.staging);
    }
    const sizes = await Promise.all(captured.databases.map(async (d) => (await stat(d.stagedPath)).size));
    workers.push(...sqliteRunners(sizes.reduce((a, b) => a + b, 0)));
    const artifacts = await hashCapture(captured, workers);
    const recipients = o.recipients ?? [];
    const draft: ManifestDraft = {
      manifest_version: MANIFEST_VERSION,
      bundle_format: BUNDLE_FORMAT,
      snapshot_id: m.snapshot_id,
      agent_id: m.agent_id,
      tenant: m.tenant,
      ...(m.label !== undefined ? { label: m.label } : {}),
      created_at_ms: m.created_at_ms,
      created_by: m.created_by,
      schema_versions: { ...m.schema_versions, manifest: CURRENT_SCHEMA.manifest },
      git: captured.git,
      artifacts: artifacts.map((a) => ({
        path_in_bundle: a.pathInBundle,
        kind: a.kind,
        size_bytes: a.size,
        sha256: a.sha256,
      })),
      ...(captured.memdir ? { memdir: captured.memdir } : {}),
      ...(m.databases ? { databases: m.databases } : {}),
      ...(redactions ? { redactions } : m.redactions ? { redactions: m.redactions } : {}),
      ...(recipients.length > 0
        ? { encryption: { scheme: 'age', recipients_fingerprint: recipients.map(recipientFingerprint) } }
        : {}),
      tool_versions: await toolVersions(),
    };
    const { manifest, bytes } = sealManifest(draft, o.signingKey);
    const total = bytes.length + artifacts.reduce((n, a) => n + a.size, 0);
    o.onProgress?.({ phase: 'pack', bytes: 0, total });
    const packed = await packBundle({
      finalPath: o.dest,
      manifestBytes: bytes,
      entries: artifacts.map((a) => ({
        pathInBundle: a.pathInBundle,
        size: a.size,
        ...(a.data ? { data: a.data } : { sourcePath: a.stagedPath! }),
      })),
      mtimeSec: Math.floor(m.created_at_ms / 1000),
      zstd: o.zstd,
      ...(recipients.length > 0 ? { recipients } : {}),
      onBytes: (n) => o.onProgress?.({ phase: 'pack', bytes: n, total }),
    });
    return { manifest, ...packed };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
}

/** What capturedFrom needs of a manifest: a bundle's, or a repository snapshot's. */
export interface StagedManifest {
  artifacts: ReadonlyArray<{ path_in_bundle: string; kind: string; size_bytes: number; sha256: string }>;
  git: Manifest['git'];
  memdir?: Manifest['memdir'];
  databases?: Manifest['databases'];
}

/**
 * Verified, staged artifacts (`written`: path in the bundle → file) as a capture: what the redaction
 * of a snapshot works on and what a bundle is packed from. Memory files in byte order of their paths
 * (the v2 order); the git bundle is `git/memdir.bundle` unless `gitBundlePath` names it.
 */
export async function capturedFrom(
  m: StagedManifest,
  written: ReadonlyMap<string, string>,
  gitBundlePath?: string,
): Promise<CaptureResult> {
  const at = (p: string): string => {
    const f = written.get(p);
    if (!f) throw new RedactionError(`${p} was not staged`);
    return f;
  };
  let inMemory = 0;
  const staged = async (a: StagedManifest['artifacts'][number]): Promise<StagedArtifact> => {
    const path = at(a.path_in_bundle);
    const base = {
      pathInBundle: a.path_in_bundle,
      kind: a.kind as ArtifactKind,
      size: a.size_bytes,
      sha256: a.sha256,
    };
    const small =
      a.kind.startsWith('state_') ||
      (a.size_bytes <= IN_MEMORY_FILE_MAX && inMemory + a.size_bytes <= IN_MEMORY_TOTAL_MAX);
    if (!small) return { ...base, stagedPath: path };
    inMemory += a.size_bytes;
    return { ...base, data: await readFile(path) };
  };
  const databases = DB_NAMES.flatMap((db) => {
    const a = m.artifacts.find((x) => x.kind === `sqlite_${db}`);
    return a ? [{ db: db as DbName, stagedPath: at(a.path_in_bundle) }] : [];
  });
  const git = m.artifacts.find((x) => x.path_in_bundle === GIT_BUNDLE_PATH);
  const bundle = gitBundlePath ?? (git ? at(git.path_in_bundle) : undefined);
  const byBytes = (x: { path_in_bundle: string }, y: { path_in_bundle: string }): number =>
    Buffer.compare(Buffer.from(x.path_in_bundle, 'utf8'), Buffer.from(y.path_in_bundle, 'utf8'));
  return {
    databases,
    databaseInfo: m.databases ?? {},
    state: await mapLimit(
      m.artifacts.filter((a) => a.kind.startsWith('state_')),
      READS_AT_ONCE,
      staged,
    ),
    ...(bundle ? { gitBundlePath: bundle } : {}),
    // a few files read at a time: all at once, a memdir of ~1,000 files met the usual limit of 1,024
    // open files (EMFILE), and export and migrate failed for any such agent (stop 63)
    memory: await mapLimit(
      m.artifacts.filter((a) => a.kind === 'memory_file').sort(byBytes),
      READS_AT_ONCE,
      (a) => staged(a),
    ),
    git: { ...m.git },
    ...(m.memdir ? { memdir: { ...m.memdir, skipped: [...m.memdir.skipped] } } : {}),
    found: true,
  };
}
