// Owns the one identity check of a snapshot reached by id (stop 45): what names a snapshot for an agent
// — its listing entry in the repository, its file's name and directory among the bundles, a bundle's
// sidecar — is a cache anyone with write access to the store can forge; the manifest is the snapshot.
// LocalSnapshotter.findSnapshot, the one way every command given a snapshot id reaches it (verify,
// export and the download, diff, ls, cat, restore, pin, unpin, delete, the API's meta, the MCP tools),
// reads the manifest here and refuses (BUNDLE_DAMAGED naming the listing entry or the file) one that
// names another agent, tenant or snapshot; `find`, which reads every listed manifest itself, skips such
// a snapshot with the same words. The words never name the other agent or tenant: the caller asked for
// this agent, and may be allowed no other (an API token, an agent's MCP tool).

import { loadIdentities } from '../crypto/age.js';
import type { Manifest } from '../format/manifest.js';
import { BundleDamagedError, EncryptionError, NotFoundError, SnapshotError } from '../model/errors.js';
import { DEFAULT_TENANT } from '../model/ids.js';
import type { RepoManifest } from '../repository/manifest.js';
import type { ListingMeta } from '../repository/snapshots.js';
import { type BundleFile, bundleMeta } from '../store/catalog.js';
import type { LocalSnapshotter } from './local.js';

/** A snapshot found by id in one of the stores, its manifest not read yet. */
export type LocatedSnapshot =
  | { repository: ListingMeta; bundle?: undefined }
  | { bundle: BundleFile; repository?: undefined };

/**
 * A snapshot found by id whose manifest was read and names it: `manifest` (a repository snapshot's, or
 * a bundle's), or, when the manifest cannot be read (damaged, missing, encrypted without the identity),
 * `unreadable` with why: the operation then meets that itself (verify reports it, delete removes it).
 */
export type FoundSnapshot =
  | { repository: ListingMeta; bundle?: undefined; manifest?: RepoManifest; unreadable?: SnapshotError }
  | { bundle: BundleFile; repository?: undefined; manifest?: Manifest; unreadable?: SnapshotError };

/** What a manifest must name: the snapshot, agent and tenant asked for. */
export interface Owner {
  id: string;
  agentId: string;
  tenant: string;
}

/**
 * Why manifest `m` is not snapshot `want.id` of agent `want.agentId` (tenant `want.tenant`), or
 * undefined. Another agent or tenant is never named (see the top of this file); another snapshot of the
 * same agent is (a bundle copied over a newer one: a rollback).
 */
export function ownerProblem(
  m: { snapshot_id: string; agent_id: string; tenant?: string | undefined },
  want: Owner,
): string | undefined {
  if (m.agent_id !== want.agentId || (m.tenant ?? DEFAULT_TENANT) !== want.tenant)
    return `its manifest names another agent or tenant, not agent ${want.agentId} (tenant ${want.tenant})`;
  if (m.snapshot_id !== want.id) return `holds snapshot ${m.snapshot_id}, not ${want.id}`;
  return undefined;
}

/** The refusal of a snapshot whose manifest is not the one asked for (see ownerProblem). */
export class ForeignSnapshotError extends BundleDamagedError {
  constructor(
    /** What names the snapshot: `listing/<id>`, or the bundle's file name. */
    readonly entry: string,
    /** ownerProblem's words. */
    readonly problem: string,
    repository: boolean,
  ) {
    super(
      `${entry}: ${problem}${repository ? ': the listing entry is forged or damaged; run check (the manifest is what counts)' : ': the file is not this snapshot; run verify'}`,
      { details: { object: entry } },
    );
  }
}

/** Errors that mean "the manifest cannot be read" (no verdict on whose it is), not a failure to look. */
const unreadableError = (err: unknown): SnapshotError | undefined =>
  err instanceof SnapshotError &&
  (err.exitCode === 2 || err instanceof EncryptionError || err instanceof NotFoundError)
    ? err
    : undefined;

/**
 * Reads the manifest of `found` (the repository's, with `decryptIdentity` or the configured identity; a
 * bundle's head, decrypted with `decryptIdentity`; an encrypted bundle without one is judged by its
 * sidecar, when it has one) and checks it names `want`: the found snapshot with its manifest, or
 * `refusal` (ForeignSnapshotError) when it names another agent, tenant or snapshot.
 */
export async function checkFound(
  s: LocalSnapshotter,
  found: LocatedSnapshot,
  agentId: string,
  tenant: string,
  opts: { decryptIdentity?: string | undefined },
): Promise<FoundSnapshot & { refusal?: ForeignSnapshotError }> {
  if (found.repository) {
    const id = found.repository.id;
    let manifest: RepoManifest;
    try {
      const repo = await s.repository.open(false, [], opts.decryptIdentity);
      const { loadSnapshot } = await import('../repository/snapshots.js');
      // kept: the operation's own read of it by this handle (verify, restore) is not parsed again
      manifest = (await loadSnapshot(repo, id, undefined, true)).manifest;
    } catch (err) {
      const unreadable = unreadableError(err);
      if (!unreadable) throw err;
      return { repository: found.repository, unreadable };
    }
    const problem = ownerProblem(manifest, { id, agentId, tenant });
    if (problem)
      return {
        repository: found.repository,
        refusal: new ForeignSnapshotError(`listing/${id}`, problem, true),
      };
    return { repository: found.repository, manifest };
  }
  const file = found.bundle;
  const refused = (problem: string | undefined) =>
    problem ? { bundle: file, refusal: new ForeignSnapshotError(file.name, problem, false) } : undefined;
  if (file.encrypted && !opts.decryptIdentity) {
    // the manifest is inside the ciphertext: the sidecar (list's cache) says whose, when there is one
    const meta = await bundleMeta(file).catch((err: unknown) => {
      if (unreadableError(err)) return undefined;
      throw err;
    });
    const bySidecar =
      meta && meta.agent_id !== ''
        ? refused(
            ownerProblem(
              { snapshot_id: meta.id, agent_id: meta.agent_id, tenant: meta.tenant },
              {
                id: file.id,
                agentId,
                tenant,
              },
            ),
          )
        : undefined;
    return (
      bySidecar ?? {
        bundle: file,
        unreadable: new EncryptionError('the bundle is age-encrypted: pass --decrypt-identity to read it'),
      }
    );
  }
  let manifest: Manifest;
  try {
    const { readManifestOnly } = await import('../format/reader.js');
    const identities = opts.decryptIdentity ? loadIdentities(opts.decryptIdentity) : undefined;
    manifest = (await readManifestOnly(file.path, identities)).parsed.manifest;
  } catch (err) {
    const unreadable = unreadableError(err);
    if (!unreadable) throw err;
    return { bundle: file, unreadable };
  }
  return refused(ownerProblem(manifest, { id: file.id, agentId, tenant })) ?? { bundle: file, manifest };
}
