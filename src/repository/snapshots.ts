// Owns the snapshot objects of a repository: saving a sealed manifest and its plaintext listing entry,
// loading and checking a manifest, listing (from the listing entries, no identity needed), pins, and
// forgetting a snapshot (listing first, so a half-forgotten snapshot is never listed). Listing, pins and
// forgetting need only the backend (no key): retention works without the identity.

import { BundleDamagedError, NotFoundError, ObjectNotFoundError } from '../model/errors.js';
import type { SnapshotMeta } from '../model/types.js';
import type { ArtifactMemo, ParsedRepoManifest, RepoManifest } from './manifest.js';
import { mapLimit, type Repository, readObject } from './repository.js';

const LISTING_VERSION = 1;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A listing entry: SnapshotMeta plus what the repository knows about it. */
export interface ListingMeta extends SnapshotMeta {
  /** Bytes this snapshot added to the repository (new packs) when it was taken. */
  added_bytes?: number;
  /** Whether the snapshot is pinned (kept by retention). */
  pinned?: boolean;
}

export const snapshotLocation = (repo: Repository, id: string): string => `${repo.backend.location}#${id}`;

/**
 * Saves the manifest, then its listing entry: a snapshot is listed only once its manifest exists, and a
 * manifest without a listing entry (a kill between the two) is not a snapshot: prune removes it.
 */
export async function saveSnapshot(
  repo: Repository,
  manifest: RepoManifest,
  json: Buffer,
  meta: ListingMeta,
): Promise<void> {
  await repo.backend.save({ type: 'snapshots', name: manifest.snapshot_id }, repo.encodeFile(json), {
    ifAbsent: true,
  });
  try {
    await saveListing(repo, meta);
  } catch (err) {
    // Not listed, so not taken: the manifest goes too (if this fails as well, prune removes it).
    await repo.backend.remove({ type: 'snapshots', name: manifest.snapshot_id }).catch(() => {});
    throw err;
  }
}

export async function saveListing(repo: Repository, meta: ListingMeta): Promise<void> {
  const { bundle_path: _p, pinned: _pin, ...rest } = meta;
  await repo.backend.save(
    { type: 'listing', name: meta.id },
    Buffer.from(`${JSON.stringify({ listing_version: LISTING_VERSION, meta: rest })}\n`),
  );
}

/**
 * Loads and checks a snapshot manifest (seals, versions, repository id); NotFoundError when absent.
 * `memo`: see parseRepoManifest (a reader of many manifests).
 */
export async function loadSnapshot(
  repo: Repository,
  id: string,
  memo?: ArtifactMemo,
): Promise<ParsedRepoManifest> {
  return parseSnapshot(repo, id, await readSnapshotObject(repo, id), memo);
}

/** The stored bytes of a snapshot manifest, unchecked (loadSnapshot = this + parseSnapshot). */
export async function readSnapshotObject(repo: Repository, id: string): Promise<Buffer> {
  if (!UUID.test(id)) throw new NotFoundError(id, 'not in the repository');
  try {
    return await readObject(repo.backend, 'snapshots', id, 512 * 1024 * 1024);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new NotFoundError(id, 'not in the repository');
    throw err;
  }
}

/** Decodes and checks the stored bytes of the snapshot manifest `id`. */
export async function parseSnapshot(
  repo: Repository,
  id: string,
  bytes: Buffer,
  memo?: ArtifactMemo,
): Promise<ParsedRepoManifest> {
  const what = `snapshots/${id}`;
  // Imported here: the manifest's schemas load zod (~100 modules, ~60 ms of CPU), which `list` never needs.
  const { parseRepoManifest } = await import('./manifest.js');
  const parsed = parseRepoManifest(repo.decodeFile(bytes, what), repo.id, what, memo);
  if (parsed.manifest.snapshot_id !== id)
    throw new BundleDamagedError(`${what}: holds snapshot ${parsed.manifest.snapshot_id}`);
  return parsed;
}

function parseListing(bytes: Buffer, name: string, location: string): ListingMeta | undefined {
  try {
    const o = JSON.parse(bytes.toString('utf8')) as { listing_version?: unknown; meta?: ListingMeta };
    const m = o.meta;
    if (o.listing_version !== LISTING_VERSION || !m || m.id !== name || typeof m.agent_id !== 'string')
      return undefined;
    if (typeof m.tenant !== 'string' || typeof m.created_at_ms !== 'number') return undefined;
    return { ...m, bundle_path: `${location}#${name}` };
  } catch {
    return undefined;
  }
}

/**
 * Every listed snapshot (optionally of one agent), newest first, with pins. Listing entries that are
 * unreadable are reported through `warn` and skipped (the manifest is what counts).
 */
export async function listSnapshots(
  repo: Pick<Repository, 'backend'>,
  filter: { agentId?: string; tenant?: string } = {},
  warn: (m: string) => void = () => {},
): Promise<ListingMeta[]> {
  const names: string[] = [];
  for await (const o of repo.backend.list('listing')) names.push(o.name);
  const pins = new Set<string>();
  for await (const o of repo.backend.list('pins')) pins.add(o.name);
  const metas = await mapLimit(names, 16, async (name) => {
    try {
      const m = parseListing(
        await readObject(repo.backend, 'listing', name, 1024 * 1024),
        name,
        repo.backend.location,
      );
      if (!m) warn(`listing/${name} is unreadable; skipped`);
      return m;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return undefined; // forgotten meanwhile
      throw err;
    }
  });
  return metas
    .filter((m): m is ListingMeta => m !== undefined)
    .filter(
      (m) =>
        (filter.agentId === undefined || m.agent_id === filter.agentId) &&
        (filter.tenant === undefined || m.tenant === filter.tenant),
    )
    .map((m) => ({ ...m, pinned: pins.has(m.id) }))
    .sort((a, b) => b.created_at_ms - a.created_at_ms || (a.id < b.id ? 1 : -1));
}

/** Removes a snapshot: listing entry and pin first, then the manifest (its data goes with the next prune). */
export async function forgetSnapshot(repo: Pick<Repository, 'backend'>, id: string): Promise<void> {
  await repo.backend.remove({ type: 'listing', name: id });
  await repo.backend.remove({ type: 'pins', name: id });
  await repo.backend.remove({ type: 'snapshots', name: id });
}

export async function setPinned(
  repo: Pick<Repository, 'backend'>,
  id: string,
  pinned: boolean,
): Promise<void> {
  if (pinned) await repo.backend.save({ type: 'pins', name: id }, Buffer.alloc(0));
  else await repo.backend.remove({ type: 'pins', name: id });
}
