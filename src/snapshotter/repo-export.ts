// Owns writing a bundle from a repository snapshot (export, HTTP download): the snapshot is verified
// while it streams out of the packs into a temporary staging (only verified bytes are used; trust
// checked on its signature), its history is indexed into a scratch repository whose refs and HEAD are
// set as the manifest recorded them and checked, then bundled (`git bundle create --all`), and the
// staging is packed by packStaged into a v2 bundle (v3 signed with the host's key) with the snapshot's
// id and metadata. What leaves the host follows the bundles' rules: a plaintext snapshot is redacted
// unless asked otherwise; an encrypted repository's snapshot is written encrypted to the configured
// recipients (exact), or, with `decrypt`, as a plaintext bundle (redacted unless asked otherwise).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadIdentities } from '../crypto/age.js';
import { type TrustPolicy, trustPolicy } from '../format/signature.js';
import { initBare } from '../git/git.js';
import { bundleAll } from '../git/history.js';
import { asSnapshotError, InvalidInputError } from '../model/errors.js';
import type { ExportResult, ProgressListener } from '../model/types.js';
import { applyRefs } from '../repository/git-history.js';
import { GIT_HISTORY_KIND, type RepoManifest } from '../repository/manifest.js';
import type { ListingMeta } from '../repository/snapshots.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { problemsError, refused } from '../verify/verify.js';
import { publishExport } from './export.js';
import type { ExportOptions } from './interface.js';
import type { LocalSnapshotter } from './local.js';
import { capturedFrom, packStaged, type Repacked } from './repack.js';

export interface RepoBundleOptions {
  /** Redact a plaintext copy that is not redacted yet. */
  redact: boolean;
  /** A plaintext copy of an encrypted repository's snapshot. */
  decrypt?: boolean;
  /** age identity file opening the repository (default: the configured one). */
  identityPath?: string;
  /** The snapshot must satisfy this trust policy. */
  trust?: TrustPolicy;
  onProgress?: ProgressListener;
}

export interface RepoBundle extends Repacked {
  copy: ExportResult['copy'];
  encrypted: boolean;
  redaction?: ExportResult['redaction'];
}

/** The age recipients an export of `encrypted` snapshot is written to, or [] for a plaintext copy. */
export function exportRecipients(
  s: LocalSnapshotter,
  encrypted: boolean,
  decrypt: boolean,
): readonly string[] {
  if (!encrypted || decrypt) return [];
  if (s.recipients.length === 0)
    throw new InvalidInputError(
      'this snapshot is in an encrypted repository: its export is encrypted to the configured recipients (encryption.recipients), and none are configured; pass --decrypt for a plaintext copy (redacted unless --no-redact)',
    );
  return s.recipients;
}

/** Writes snapshot `id` of the repository as a new bundle file `dest` (which must not exist). */
export async function writeRepoBundle(
  s: LocalSnapshotter,
  id: string,
  dest: string,
  o: RepoBundleOptions,
): Promise<RepoBundle> {
  const repo = await s.repository.open(false, [], o.identityPath);
  const recipients = exportRecipients(s, repo.encrypted, o.decrypt === true);
  const staging = await privateScratch('export');
  try {
    const history = join(staging, 'history.git');
    await initBare(history);
    await mkdir(join(staging, 'snapshot'));
    const { report, result } = await s.repository.verify(id, {
      target: (a) => join(staging, 'snapshot', a.path_in_bundle),
      gitDir: history,
      ...(o.identityPath ? { decryptIdentity: o.identityPath } : {}),
      ...(o.trust ? { trust: o.trust } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
    if (refused(report) || !result.parsed) throw problemsError(report.problems);
    const m: RepoManifest = result.parsed.manifest;
    let gitBundle: string | undefined;
    if (m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND)) {
      await applyRefs(history, m);
      gitBundle = join(staging, 'memdir.bundle');
      await bundleAll(history, gitBundle);
    }
    const captured = await capturedFrom(m, result.written, gitBundle);
    const alreadyRedacted = m.redactions !== undefined;
    const redactHere = recipients.length === 0 && !alreadyRedacted && o.redact;
    const policies = await s.policies();
    const signingKey = policies.signingKey();
    const packed = await packStaged(
      { meta: m, captured, staging: join(staging, 'snapshot') },
      {
        dest,
        ...(redactHere ? { policy: policies.redaction } : {}),
        ...(signingKey ? { signingKey } : {}),
        recipients,
        zstd: { level: s.zstdLevel, workers: s.zstdWorkers },
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      },
    );
    const red = packed.manifest.redactions;
    return {
      ...packed,
      copy:
        recipients.length > 0
          ? 'encrypted'
          : alreadyRedacted
            ? 'already_redacted'
            : redactHere
              ? 'redacted'
              : 'exact',
      encrypted: recipients.length > 0,
      ...(redactHere && red
        ? {
            redaction: {
              policy: red.policy,
              rules_applied: red.rules_applied,
              matches_redacted: red.matches_redacted,
              ...(red.git_history ? { git_history: red.git_history } : {}),
              ...(red.git?.object_refs ? { git_object_refs: red.git.object_refs } : {}),
            },
          }
        : {}),
    };
  } finally {
    await removeScratch(staging);
  }
}

/** The file name of an export of snapshot `id`. */
export const exportName = (id: string, encrypted: boolean): string =>
  `${id}.tar.zst${encrypted ? '.age' : ''}`;

/** `export` of a repository snapshot: a bundle written from it, verified, published at `target`. */
export async function exportRepoSnapshot(
  s: LocalSnapshotter,
  meta: ListingMeta,
  target: string,
  opts: ExportOptions,
): Promise<ExportResult> {
  const { decryptIdentity, trust, redact, decrypt, force, onProgress } = opts;
  if (redact !== undefined && typeof redact !== 'boolean')
    throw new InvalidInputError('redact must be a boolean');
  const own = (await s.policies()).trust;
  // the configured trusted keys as verify uses them: checked (a refusal only when required)
  const policy =
    trust !== undefined ? trustPolicy(trust, trust.length > 0) : own.keys.length > 0 ? own : undefined;
  // decided before anything is written: encrypted copies need recipients
  const encrypted = exportRecipients(s, meta.encrypted, decrypt === true).length > 0;
  return publishExport(
    exportName(meta.id, encrypted),
    target,
    { store: s.storeDirs() },
    {
      ...(force ? { force } : {}),
      ...(decryptIdentity ? { identities: loadIdentities(decryptIdentity) } : {}),
      ...(policy ? { trust: policy } : {}),
      ...(onProgress ? { onProgress } : {}),
    },
    async (tmp) => ({
      ...(await writeRepoBundle(s, meta.id, tmp, {
        redact: redact ?? s.redactExports,
        ...(decrypt ? { decrypt } : {}),
        ...(decryptIdentity ? { identityPath: decryptIdentity } : {}),
        ...(policy ? { trust: policy } : {}),
        ...(onProgress ? { onProgress } : {}),
      })),
      repacked: true,
    }),
  ).catch((err: unknown) => {
    throw asSnapshotError(err, `exporting snapshot ${meta.id}`);
  });
}
