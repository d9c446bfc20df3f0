// Owns the snapshot objects of a repository: saving a sealed manifest and its plaintext listing entry,
// loading and checking a manifest, listing (from the listing entries, no identity needed), pins, and
// forgetting a snapshot (listing first, so a half-forgotten snapshot is never listed). A cached listing
// entry or manifest that does not parse or open is evicted and read from the store again. Listing, pins and
// forgetting need only the backend (no key): retention works without the identity.

import {
  LOAD_PARALLEL,
  listNames,
  loadIfPresent,
  loadObjects,
  mapBounded,
  readAll,
} from '../backend/backend.js';
import {
  BundleDamagedError,
  EncryptionError,
  InvalidInputError,
  NotFoundError,
  ObjectNotFoundError,
  ObjectTooLargeError,
} from '../model/errors.js';
import { isCount, wrongMetaField } from '../model/meta-check.js';
import type { SnapshotMeta } from '../model/types.js';
import type { ArtifactMemo, ParsedRepoManifest, RepoManifest } from './manifest.js';
// Types only from repository.js: at run time it loads the codecs (zstd, age), which `list` never needs.
import type { Repository } from './repository.js';

const LISTING_VERSION = 1;
/**
 * Largest listing entry read (one is a few hundred bytes); a larger one is skipped with a warning by
 * list and retention and reported by check.
 */
export const LISTING_MAX = 1024 * 1024;
/** Largest pin object read for its note (a note is at most 200 characters; older ones were not checked). */
const PIN_MAX = 64 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A listing entry: SnapshotMeta plus what the repository knows about it. */
export interface ListingMeta extends SnapshotMeta {
  /**
   * Bytes this snapshot added to the repository (new packs) when it was taken; `null` when the listing
   * entry does not say (rebuilt from the manifest: not known, never written as null).
   */
  added_bytes?: number | null;
  /** Whether the snapshot is pinned (kept by retention). */
  pinned?: boolean;
}

/** The note a pin object holds (`{"pinned_at_ms", "note"?}`); none for an empty or unreadable one. */
export function pinNoteIn(bytes: Buffer | undefined): string | undefined {
  if (!bytes || bytes.length === 0) return undefined;
  try {
    const v = JSON.parse(bytes.toString('utf8')) as { note?: unknown } | null;
    return typeof v?.note === 'string' && v.note !== '' ? v.note : undefined;
  } catch {
    return undefined;
  }
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
  // a manifest readers refuse is never written: the snapshot fails instead of becoming unreadable
  if (json.length > MANIFEST_MAX)
    throw new InvalidInputError(
      `snapshot ${manifest.snapshot_id}: its manifest would be ${json.length} bytes, more than any may be (${MANIFEST_MAX}); the agent has too many files to snapshot into a repository`,
    );
  await repo.backend.save({ type: 'snapshots', name: manifest.snapshot_id }, repo.encodeFile(json), {
    ifAbsent: true,
  });
  try {
    await saveListing(repo, meta);
  } catch (err) {
    // The entry may have landed though its answer was lost (stop 55): the snapshot is then listed and
    // whole, and removing its manifest would leave it listed with none. Only when the store says the
    // entry is not there does the manifest go too (if that fails as well, prune removes it); when it
    // cannot say, the manifest stays.
    const listed = await repo.backend.stat({ type: 'listing', name: meta.id }).then(
      () => true,
      (e: unknown) => (e instanceof ObjectNotFoundError ? false : undefined),
    );
    if (listed === true) return;
    if (listed === false)
      await repo.backend.remove({ type: 'snapshots', name: manifest.snapshot_id }).catch(() => {});
    throw err;
  }
}

export async function saveListing(repo: Repository, meta: ListingMeta): Promise<void> {
  // an unknown added_bytes is left out: the entry's format has a number or nothing (§8)
  const { bundle_path: _p, pinned: _pin, pin_note: _note, added_bytes: added, ...entry } = meta;
  const rest = added === null || added === undefined ? entry : { ...entry, added_bytes: added };
  await repo.backend.save(
    { type: 'listing', name: meta.id },
    Buffer.from(`${JSON.stringify({ listing_version: LISTING_VERSION, meta: rest })}\n`),
  );
}

/**
 * A manifest kept by loadSnapshot's `keep`, with its stored bytes, until the handle's next load. A
 * restore reads the manifest before its locks and again under them (the second read is what it
 * restores from); when the stored bytes are the same, the first parse is the second's (a large agent's
 * manifest takes ~0.1 s to check). Kept only when asked: a manifest held longer than its reader needs
 * it would only raise the peak memory.
 */
const kept = new WeakMap<Repository, { id: string; bytes: Buffer; parsed: ParsedRepoManifest }>();

/**
 * Loads and checks a snapshot manifest (seals, versions, repository id); NotFoundError when absent.
 * `memo`: see parseRepoManifest (a reader of many manifests). `keep`: the next load by this handle of
 * the same stored bytes returns this same object (callers do not change it).
 */
export async function loadSnapshot(
  repo: Repository,
  id: string,
  memo?: ArtifactMemo,
  keep = false,
): Promise<ParsedRepoManifest> {
  let bytes = await readSnapshotObject(repo, id);
  const last = kept.get(repo);
  kept.delete(repo);
  if (!memo && last && last.id === id && last.bytes.equals(bytes)) {
    // kept again when asked: a restore by id reads it three times (the id's check, the head, under the
    // locks), and a second parse of a large manifest raised a JetStream restore's peak by ~20 MB
    if (keep) kept.set(repo, last);
    return last.parsed;
  }
  let parsed: ParsedRepoManifest;
  try {
    parsed = await parseSnapshot(repo, id, bytes, memo);
  } catch (err) {
    // A cached copy that does not parse is forgotten and the store read once more: the damage may have
    // been one download's. What still does not parse is not cached either.
    if (!repo.backend.evict) throw err;
    await forgetCopy(repo, id);
    bytes = await readSnapshotObject(repo, id);
    try {
      parsed = await parseSnapshot(repo, id, bytes, memo);
    } catch (again) {
      await forgetCopy(repo, id);
      throw await replacedOr(repo, again);
    }
  }
  if (keep) kept.set(repo, { id, bytes, parsed });
  return parsed;
}

/**
 * `err` (a manifest that did not parse, open or verify, read from the store), unless the repository
 * was replaced behind the cache whose config the repository was opened with (Backend.confirmRepository,
 * one request): then that is thrown, STORE_REPLACED with the cache dropped (stop 47: every read called
 * a healthy snapshot of the new repository damaged, "belongs to another repository", until a write came).
 */
export async function replacedOr(repo: Pick<Repository, 'backend' | 'id'>, err: unknown): Promise<unknown> {
  if (repo.backend.confirmRepository && (err instanceof BundleDamagedError || err instanceof EncryptionError))
    await repo.backend.confirmRepository(repo.id);
  return err;
}

/** Forgets the cached copy of the manifest `id` (Backend.evict), so its next read goes to the store. */
export async function forgetCopy(repo: Pick<Repository, 'backend'>, id: string): Promise<void> {
  await repo.backend.evict?.({ type: 'snapshots', name: id }).catch(() => {});
}

/**
 * Largest a snapshot manifest's JSON may be (docs/repository.md §6; stop 45). A real agent stays well
 * below it: a memory file is ~135 bytes plus its path, a database ~67 bytes per tree blob (10 GB: ~10,000
 * of them, 0.7 MB), a history pack ~200 bytes; 100,000 memory files (60-character paths) and 10 GB of
 * databases make ~20 MB. A larger frame is damage naming the manifest, refused from its frame header
 * before anything is allocated for it (a 9.8 KB manifest of 200 MB cost ~660 MB of RSS in verify and
 * prune; the worst one under this bound ~155 MB), and a writer refuses to write one.
 */
export const MANIFEST_MAX = 32 * 1024 * 1024;
/** Largest stored manifest: MANIFEST_MAX compressed at zstd's worst (`size >> 8` more, and a margin), sealed. */
export const MANIFEST_STORED_MAX = MANIFEST_MAX + (MANIFEST_MAX >> 8) + 64 * 1024;

/** The stored bytes of a snapshot manifest, unchecked (loadSnapshot = this + parseSnapshot). */
export async function readSnapshotObject(repo: Repository, id: string): Promise<Buffer> {
  if (!UUID.test(id)) throw new NotFoundError(id, 'not in the repository');
  try {
    return await readAll(repo.backend, { type: 'snapshots', name: id }, { maxBytes: MANIFEST_STORED_MAX });
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new NotFoundError(id, 'not in the repository');
    if (err instanceof ObjectTooLargeError)
      throw new BundleDamagedError(
        `snapshots/${id}: more than ${MANIFEST_STORED_MAX} bytes, more than any manifest may be`,
      );
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
  const parsed = parseRepoManifest(repo.decodeFile(bytes, what, MANIFEST_MAX), repo.id, what, memo);
  if (parsed.manifest.snapshot_id !== id)
    throw new BundleDamagedError(`${what}: holds snapshot ${parsed.manifest.snapshot_id}`);
  return parsed;
}

/** The fields of a listing entry's meta (§8); any other is dropped as it is read. */
const LISTING_FIELDS = new Set([
  'id',
  'agent_id',
  'tenant',
  'label',
  'created_at_ms',
  'bundle_size_bytes',
  'bundle_sha256',
  'git_oid',
  'schema_versions',
  'encrypted',
  'redactions_applied',
  'file_sha256',
  'created_by',
  'bundle_format',
  'signed_by',
  'added_bytes',
]);

/**
 * A listing entry's meta when it is readable: its agent, tenant and time are there, and every other
 * field readers use is of its type when it is there (model/meta-check.ts: an entry of the wrong types
 * crashed `list`, failed an agent's retention and the fleet view, stop 62 review); nothing else is kept.
 */
function parseListing(bytes: Buffer, name: string, location: string): ListingMeta | undefined {
  try {
    const o = JSON.parse(bytes.toString('utf8')) as { listing_version?: unknown; meta?: unknown } | null;
    const m = o?.meta as Record<string, unknown> | null | undefined;
    if (o?.listing_version !== LISTING_VERSION || !m || typeof m !== 'object' || Array.isArray(m))
      return undefined;
    if (m.id !== name || wrongMetaField(m, /^nexo-memory-snapshot-v[1-9][0-9]*$/, false) !== undefined)
      return undefined;
    // the numbers list, retention and the console use (sizes, sorting, dates): sane or not at all
    if (m.bundle_size_bytes !== undefined && !isCount(m.bundle_size_bytes)) return undefined;
    if (m.added_bytes !== undefined && !isCount(m.added_bytes)) return undefined;
    if (m.encrypted !== undefined && typeof m.encrypted !== 'boolean') return undefined;
    for (const k of Object.keys(m)) if (!LISTING_FIELDS.has(k)) delete m[k];
    // an entry without it (rebuilt from the manifest after a kill lost it): not known, not the size
    if (m.added_bytes === undefined) m.added_bytes = null;
    m.bundle_path = `${location}#${name}`; // the parsed object is ours: no copy (a list may hold 10,000)
    return m as unknown as ListingMeta;
  } catch {
    return undefined;
  }
}

/**
 * The listing entries `names`, undefined for those not there or larger than LISTING_MAX (each of those
 * reported through `warn`): an entry too large is skipped like any unreadable one, never the failure of
 * the whole list (2 MB of spaces in one entry made list and gc fail for every agent).
 */
async function loadListing(
  backend: Repository['backend'],
  names: readonly string[],
  warn: (m: string) => void,
): Promise<Array<Buffer | undefined>> {
  try {
    return await loadObjects(backend, 'listing', names, LISTING_MAX);
  } catch (err) {
    if (!(err instanceof ObjectTooLargeError)) throw err;
    // some entry is too large: each on its own (the loads of the others are cached by now)
    return mapBounded(names, LOAD_PARALLEL, (name) => loadEntry(backend, name, warn));
  }
}

/** One listing entry: undefined when it is not there, or (with a warning) when it is too large. */
async function loadEntry(
  backend: Repository['backend'],
  name: string,
  warn: (m: string) => void,
): Promise<Buffer | undefined> {
  try {
    return await loadIfPresent(backend, { type: 'listing', name }, LISTING_MAX);
  } catch (err) {
    if (!(err instanceof ObjectTooLargeError)) throw err;
    warn(`listing/${name} is larger than ${LISTING_MAX} bytes; skipped`);
    return undefined;
  }
}

/**
 * What is wrong with listing entry `name` (its stored bytes) for the snapshot it is named for, or
 * undefined: it does not parse as a listing entry, or it describes another snapshot (another id; with
 * `manifest`, another agent, tenant or creation time). check reports it; find refuses the id with it.
 */
export function listingProblem(
  bytes: Buffer,
  name: string,
  manifest?: Pick<RepoManifest, 'agent_id' | 'tenant' | 'created_at_ms'>,
): string | undefined {
  let id: unknown;
  try {
    id = (JSON.parse(bytes.toString('utf8')) as { meta?: { id?: unknown } })?.meta?.id;
  } catch {
    // not JSON: below
  }
  const m = parseListing(bytes, name, '');
  if (!m)
    return typeof id === 'string' && id !== name
      ? `the entry describes snapshot ${id}, not ${name}`
      : 'the entry is not a readable listing entry';
  if (manifest)
    for (const k of ['agent_id', 'tenant', 'created_at_ms'] as const)
      if (m[k] !== manifest[k])
        return `the entry's ${k} ${JSON.stringify(m[k])} is not the manifest's ${JSON.stringify(manifest[k])}`;
  return undefined;
}

/**
 * A listing entry of `id` that is there but does not describe snapshot `id` (listingProblem): a
 * BundleDamagedError naming it, else undefined (no entry, or a sound one). find asks when an id is not
 * among the listed snapshots, so a damaged entry is damage, not NOT_FOUND.
 */
export async function damagedListing(
  repo: Pick<Repository, 'backend'>,
  id: string,
): Promise<BundleDamagedError | undefined> {
  const h = { type: 'listing' as const, name: id };
  const bytes = await loadIfPresent(repo.backend, h, LISTING_MAX);
  const problem = bytes && listingProblem(bytes, id);
  if (!problem) return undefined;
  await repo.backend.evict?.(h).catch(() => {});
  return new BundleDamagedError(
    `listing/${id} does not describe snapshot ${id}: ${problem}; run check (the manifest snapshots/${id} is what counts)`,
    { details: { object: `listing/${id}` } },
  );
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
  const [names, pinned] = await Promise.all([
    listNames(repo.backend, 'listing'),
    listNames(repo.backend, 'pins'),
  ]);
  const pins = new Set(pinned);
  // One read of the cache's listing file where there is one; an entry not there any more was forgotten meanwhile.
  const entries = await loadListing(repo.backend, names, warn);
  const metas: ListingMeta[] = [];
  for (let i = 0; i < names.length; i++) {
    let bytes = entries[i];
    if (!bytes) continue;
    let m = parseListing(bytes, names[i]!, repo.backend.location);
    if (!m && repo.backend.evict) {
      // A cached copy that does not parse is forgotten and the store read once more (the damage may have
      // been one download's); the next list keeps the store's entry again.
      const h = { type: 'listing' as const, name: names[i]! };
      await repo.backend.evict(h).catch(() => {});
      bytes = await loadEntry(repo.backend, h.name, warn);
      if (!bytes) continue;
      m = parseListing(bytes, names[i]!, repo.backend.location);
      if (!m) await repo.backend.evict(h).catch(() => {});
    }
    if (!m) {
      const problem = listingProblem(bytes, names[i]!);
      warn(
        problem?.startsWith('the entry describes')
          ? `listing/${names[i]} is unreadable (${problem}); skipped, run check`
          : `listing/${names[i]} is unreadable; skipped`,
      );
    } else if (
      (filter.agentId === undefined || m.agent_id === filter.agentId) &&
      (filter.tenant === undefined || m.tenant === filter.tenant)
    ) {
      m.pinned = pins.has(m.id);
      metas.push(m);
    }
  }
  // the notes of the pins listed (a pin object is read only for its note: a few per agent)
  const pinnedListed = metas.filter((m) => m.pinned);
  if (pinnedListed.length > 0) {
    const bodies = await mapBounded(pinnedListed, LOAD_PARALLEL, (m) =>
      loadIfPresent(repo.backend, { type: 'pins', name: m.id }, PIN_MAX).catch(() => undefined),
    );
    pinnedListed.forEach((m, i) => {
      const note = pinNoteIn(bodies[i]);
      if (note !== undefined) m.pin_note = note;
    });
  }
  return metas.sort((a, b) => b.created_at_ms - a.created_at_ms || (a.id < b.id ? 1 : -1));
}

/** Removes a snapshot: listing entry and pin first, then the manifest (its data goes with the next prune). */
export async function forgetSnapshot(repo: Pick<Repository, 'backend'>, id: string): Promise<void> {
  await repo.backend.remove({ type: 'listing', name: id });
  await repo.backend.remove({ type: 'pins', name: id });
  await repo.backend.remove({ type: 'snapshots', name: id });
}

/** Whether snapshot `id` is pinned (its `pins` object exists, whatever its listing says), and the note. */
export async function pinOf(
  repo: Pick<Repository, 'backend'>,
  id: string,
): Promise<{ pinned: boolean; note?: string }> {
  const bytes = await loadIfPresent(repo.backend, { type: 'pins', name: id }, PIN_MAX);
  if (bytes === undefined) return { pinned: false };
  const note = pinNoteIn(bytes);
  return { pinned: true, ...(note !== undefined ? { note } : {}) };
}

/**
 * Pins snapshot `id` for the pin command (stop 47): only while its listing entry exists. Looked at before
 * writing the pin and again after — a forget on another host that does not take the agent's repository
 * lock (an older version) may unlist it in between: the pin just written is removed again. NotFoundError
 * when the snapshot is not listed.
 */
export async function pinListed(repo: Pick<Repository, 'backend'>, id: string, note?: string): Promise<void> {
  const listed = () =>
    repo.backend.stat({ type: 'listing', name: id }).then(
      () => true,
      (err: unknown) => {
        if (err instanceof ObjectNotFoundError) return false;
        throw err;
      },
    );
  const gone = () => new NotFoundError(id, 'deleted meanwhile (no longer in the repository)');
  if (!(await listed())) throw gone();
  await setPinned(repo, id, true, note);
  if (await listed()) return;
  await repo.backend.remove({ type: 'pins', name: id });
  throw gone();
}

export async function setPinned(
  repo: Pick<Repository, 'backend'>,
  id: string,
  pinned: boolean,
  note?: string,
): Promise<void> {
  // what a bundle's `.pin` holds: when, and the operator's note (plaintext, as the listing's labels)
  const body = `${JSON.stringify({ pinned_at_ms: Date.now(), ...(note ? { note } : {}) })}\n`;
  if (pinned) await repo.backend.save({ type: 'pins', name: id }, Buffer.from(body));
  else await repo.backend.remove({ type: 'pins', name: id });
}
