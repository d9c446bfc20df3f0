// Owns `check` of a repository (restic's model): the structure — config, index files (each hashing to
// its name), every indexed pack present with the size its blobs need, every snapshot manifest sealed,
// every blob a snapshot references indexed, every listing entry backed by a manifest and of a size
// readers accept, no pack over MAX_PACK (pins of no snapshot reported apart, as orphan_pins) — and
// with `readData` (or a percentage of the packs) every pack read whole: its bytes hash to its name, its header matches the index, and every blob opens and
// hashes to its id. Problems are collected, not thrown, so one run reports everything.

import { createHash, randomInt } from 'node:crypto';
import { loadIfPresent, objectExists } from '../backend/backend.js';
import { BundleDamagedError, NotFoundError, SchemaTooNewError, SnapshotError } from '../model/errors.js';
import type { RepoManifest } from './manifest.js';
import {
  headerLength,
  MAX_PACK,
  newBlobScratch,
  openStoredBlob,
  type PackEntry,
  parseHeader,
  TRAILER,
} from './pack.js';
import { ReferenceSet } from './references.js';
import { mapLimit, type Repository } from './repository.js';
import { LISTING_MAX, listingProblem, loadSnapshot } from './snapshots.js';

export interface CheckProblem {
  code: string;
  object: string;
  message: string;
}

export interface CheckReport {
  ok: boolean;
  snapshots: number;
  packs: number;
  blobs: number;
  packs_read: number;
  bytes_read: number;
  problems: CheckProblem[];
  /** Snapshots damaged by a problem (their ids). */
  damaged_snapshots: string[];
  /**
   * Manifests without a listing entry: not snapshots (a snapshot killed before it was listed, or a
   * forget killed after unlisting it). Not a problem; the next prune removes them.
   */
  unlisted_snapshots: string[];
  /**
   * Pins whose snapshot does not exist — no listing entry and no manifest (stop 47): a pin that raced a
   * forget on another host before pins took the agent's repository lock, or an older version's. Not
   * damage (no snapshot is affected), but a snapshot imported later with that id would come pinned;
   * the next prune removes them. An import running beside check may show its pin here for a moment.
   */
  orphan_pins: string[];
}

export interface CheckOptions {
  /** Read every pack (true), or this percentage of them (1..100), chosen at random (subsetOf). */
  readData?: boolean | number;
}

/**
 * `pct` percent of `packs` (0..100), chosen at random: round(n × pct / 100) of them, at least one when
 * there are packs and pct > 0 (restic's `--read-data-subset x%`). Each run draws anew, so repeated
 * runs cover every pack in time; a fixed share by coin flips instead read none of 13 packs at 10 %
 * one run in four.
 */
export function subsetOf<T>(packs: readonly T[], pct: number): T[] {
  const p = Math.min(100, Math.max(0, pct));
  if (p === 0 || packs.length === 0) return [];
  const n = Math.min(packs.length, Math.max(1, Math.round((packs.length * p) / 100)));
  const all = [...packs];
  for (let i = 0; i < n; i++) {
    const j = i + randomInt(all.length - i); // a partial Fisher-Yates shuffle
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, n);
}

/** Whether an object is there now: a snapshot or a forget beside check changes what was listed. */
const present = (repo: Repository, type: 'listing' | 'snapshots', name: string): Promise<boolean> =>
  objectExists(repo.backend, { type, name });

function problem(err: unknown, object: string): CheckProblem {
  const e = err as SnapshotError;
  return { code: e instanceof SnapshotError ? e.code : 'IO', object, message: (err as Error).message };
}

export async function checkRepository(repo: Repository, opts: CheckOptions = {}): Promise<CheckReport> {
  const problems: CheckProblem[] = [];
  const damaged = new Set<string>();
  // Read in the reverse of the order writers create objects (packs, index file, manifest, listing entry)
  // and forget removes them (listing entry, then manifest): snapshots and forgets run beside check (it
  // holds the shared lock), so whatever a listed snapshot needs was there before its entry, and a
  // snapshot taken meanwhile is at most a manifest not listed yet. Read in the writers' order, check
  // reported such snapshots as damage (stop 62 review: 16 of 51 checks beside snapshots exited 2).
  const listing: Array<{ name: string; size: number }> = [];
  for await (const l of repo.backend.list('listing')) listing.push(l);
  const names: string[] = [];
  for await (const s of repo.backend.list('snapshots')) names.push(s.name);
  try {
    await repo.loadIndex();
  } catch (err) {
    // an index file a newer version wrote: this version cannot judge the repository (which blobs are
    // indexed), so it says that (SCHEMA_TOO_NEW) rather than call every snapshot damaged (stop 47)
    if (err instanceof SchemaTooNewError) throw err;
    problems.push(problem(err, 'index'));
  }
  const packsOnDisk = new Map<string, number>();
  for await (const p of repo.backend.list('packs')) packsOnDisk.set(p.name, p.size);

  // Indexed packs: present, big enough for the blobs the index places in them.
  const extent = new Map<string, number>();
  const table = repo.index.table;
  for (let i = 0; i < table.size; i++) {
    const pack = repo.index.packNames[table.packOf(i)]!;
    extent.set(pack, Math.max(extent.get(pack) ?? 0, table.offsetOf(i) + table.storedOf(i)));
  }
  const broken = new Set<string>(); // indexed packs missing, too short or too large to read
  // a pack larger than any pack may be is damage, indexed or not; it is never read (or allocated for)
  for (const [pack, size] of packsOnDisk)
    if (size > MAX_PACK) {
      if (extent.has(pack)) broken.add(pack);
      problems.push({
        code: 'BUNDLE_DAMAGED',
        object: `packs/${pack}`,
        message: `pack is ${size} bytes, more than any pack may be (${MAX_PACK}); not read`,
      });
    }
  for (const [pack, end] of extent) {
    const size = packsOnDisk.get(pack);
    if (size === undefined || size < end + TRAILER) broken.add(pack);
    if (size === undefined)
      problems.push({
        code: 'MISSING_ARTIFACT',
        object: `packs/${pack}`,
        message: 'indexed pack is missing',
      });
    else if (size < end + TRAILER)
      problems.push({
        code: 'BUNDLE_DAMAGED',
        object: `packs/${pack}`,
        message: `pack is ${size} bytes, its blobs need ${end + TRAILER}`,
      });
  }

  // Snapshots: manifests sealed, every referenced blob indexed.
  const manifestOf = new Map<string, RepoManifest>();
  const gone = new Set<string>(); // forgotten since they were listed (gc beside check)
  for (const id of names) {
    try {
      const { manifest } = await loadSnapshot(repo, id);
      manifestOf.set(id, manifest);
      const before = new ReferenceSet(repo);
      await before.addManifest(manifest);
      for (const b of before.blobs) {
        if (!repo.index.has(b)) {
          damaged.add(id);
          problems.push({
            code: 'MISSING_ARTIFACT',
            object: `snapshots/${id}`,
            message: `references blob ${b}, which is not in the index`,
          });
          break;
        }
      }
    } catch (err) {
      if (err instanceof NotFoundError && !(await present(repo, 'listing', id))) {
        gone.add(id);
        continue;
      }
      damaged.add(id);
      problems.push(problem(err, `snapshots/${id}`));
    }
  }
  if (gone.size > 0) names.splice(0, names.length, ...names.filter((n) => !gone.has(n)));
  const manifests = new Set(names);
  const listed = new Set<string>();
  const oversized = new Set<string>();
  for (const l of listing) {
    if (!manifests.has(l.name)) {
      // forgotten since the listing was read (the entry goes first, then the manifest): not a problem
      if (!(await present(repo, 'listing', l.name))) continue;
      problems.push({
        code: 'BUNDLE_DAMAGED',
        object: `listing/${l.name}`,
        message: 'listed snapshot has no manifest',
      });
    }
    listed.add(l.name);
    if (l.size > LISTING_MAX) {
      oversized.add(l.name);
      if (manifests.has(l.name)) damaged.add(l.name); // list skips it: the snapshot is hidden
      problems.push({
        code: 'BUNDLE_DAMAGED',
        object: `listing/${l.name}`,
        message: `listing entry is ${l.size} bytes, more than any may be (${LISTING_MAX}); list and gc skip it`,
      });
    }
  }
  // a snapshot listed since the listing was read is listed (its entry is checked below with the others)
  for (const n of names) if (!listed.has(n) && (await present(repo, 'listing', n))) listed.add(n);
  // Each entry must describe the snapshot it is named for: one that does not hides that snapshot from
  // list, verify and retention (an entry overwritten with another's, or garbled).
  const entries = [...listed].filter((n) => manifests.has(n) && !oversized.has(n));
  await mapLimit(entries, 16, async (name) => {
    let problemOf: string | undefined;
    try {
      const bytes = await loadIfPresent(repo.backend, { type: 'listing', name }, LISTING_MAX);
      if (!bytes) return; // forgotten meanwhile
      problemOf = listingProblem(bytes, name, manifestOf.get(name));
    } catch (err) {
      problems.push(problem(err, `listing/${name}`));
      damaged.add(name);
      return;
    }
    if (!problemOf) return;
    damaged.add(name);
    problems.push({
      code: 'BUNDLE_DAMAGED',
      object: `listing/${name}`,
      message: `does not describe snapshot ${name}: ${problemOf}`,
    });
  });

  // Pins of no snapshot, listed after the manifests and the listing (so a snapshot's pin is not taken
  // for an orphan while it is being listed).
  const orphanPins: string[] = [];
  for await (const p of repo.backend.list('pins'))
    if (!listed.has(p.name) && !manifests.has(p.name)) orphanPins.push(p.name);

  // Data: read packs whole.
  let toRead = [...packsOnDisk].filter(([, size]) => size <= MAX_PACK).map(([name]) => name);
  if (typeof opts.readData === 'number') toRead = subsetOf(toRead, opts.readData);
  else if (opts.readData !== true) toRead = [];
  const read = { bytes: 0 }; // every byte read, of packs that checked and of packs that did not
  // per pack, the numbers of its blobs in the index's table (not an object per blob)
  const byPack = new Map<string, number[]>();
  for (let i = 0; i < table.size; i++) {
    const pack = repo.index.packNames[table.packOf(i)]!;
    const list = byPack.get(pack);
    if (list) list.push(i);
    else byPack.set(pack, [i]);
  }
  // two packs in flight, each read into its lane's buffer, sized once for the largest pack (about
  // 16-20 MiB): a buffer per pack, freed only when V8 collects it, raised the peak RSS by ~80 MB
  const largest = toRead.reduce((n, p) => Math.max(n, packsOnDisk.get(p) ?? 0), 0);
  const lanes: Buffer[] = [];
  const unread = new Set<string>(); // the blobs of packs missing, too short or failing to read
  for (const pack of broken) for (const i of byPack.get(pack) ?? []) unread.add(table.idHex(i));
  await mapLimit(toRead, 2, async (pack) => {
    const lane = lanes.pop() ?? Buffer.allocUnsafe(largest + 1);
    try {
      const r = await readPack(repo, pack, packsOnDisk.get(pack) ?? 0, lane, byPack.get(pack) ?? [], read);
      lanes.push(r.buffer);
    } catch (err) {
      problems.push(problem(err, `packs/${pack}`));
      for (const i of byPack.get(pack) ?? []) unread.add(table.idHex(i));
    }
  });
  if (unread.size > 0) await markReferencing(repo, names, unread, damaged);
  return {
    ok: problems.length === 0,
    snapshots: names.length,
    packs: packsOnDisk.size,
    blobs: repo.index.blobCount,
    packs_read: toRead.length,
    bytes_read: read.bytes,
    problems,
    damaged_snapshots: [...damaged].sort(),
    unlisted_snapshots: names.filter((n) => !listed.has(n)).sort(),
    orphan_pins: orphanPins.sort(),
  };
}

/**
 * Reads a pack whole — name, header, every blob — into `buffer` (a larger one when the pack, listed at
 * `listedSize` bytes, does not fit). Returns its size and the buffer, for the next pack.
 */
/**
 * Adds to `damaged` each snapshot of `names` that references a blob of `unread` (a second pass over the
 * manifests, made only when a pack failed: each snapshot's own references, not all of them at once).
 */
async function markReferencing(
  repo: Repository,
  names: readonly string[],
  unread: ReadonlySet<string>,
  damaged: Set<string>,
): Promise<void> {
  for (const id of names) {
    if (damaged.has(id)) continue;
    let own: ReferenceSet;
    try {
      own = new ReferenceSet(repo);
      await own.addManifest((await loadSnapshot(repo, id)).manifest);
    } catch {
      continue; // already reported by the structure pass
    }
    for (const b of own.blobs)
      if (unread.has(b)) {
        damaged.add(id);
        break;
      }
  }
}

const tooLarge = (what: string): BundleDamagedError =>
  new BundleDamagedError(`${what}: grew past ${MAX_PACK} bytes, more than any pack may be, while read`);

async function readPack(
  repo: Repository,
  pack: string,
  listedSize: number,
  buffer: Buffer,
  indexed: readonly number[],
  read: { bytes: number },
): Promise<{ buffer: Buffer }> {
  const what = `packs/${pack}`;
  // one byte more than listed: a pack that grew since it was listed is read whole, not cut short
  let buf = buffer.length > listedSize ? buffer : Buffer.allocUnsafe(listedSize + 1);
  let size = 0;
  const hash = createHash('sha256');
  const h = { type: 'packs', name: pack } as const;
  if (repo.backend.readInto) {
    // straight into the lane's buffer
    size = await repo.backend.readInto(h, 0, buf.subarray(0, listedSize + 1));
    read.bytes += size;
    if (size > listedSize) {
      if (size > MAX_PACK) throw tooLarge(what);
      return readPack(repo, pack, Math.min(listedSize * 2 + 1, MAX_PACK), buf, indexed, read);
    }
    hash.update(buf.subarray(0, size));
  } else
    for await (const c of repo.backend.load(h)) {
      read.bytes += c.length;
      hash.update(c);
      if (size + c.length > MAX_PACK) throw tooLarge(what);
      if (size + c.length > buf.length) {
        // the pack grew since it was listed
        const bigger = Buffer.allocUnsafe(Math.max(2 * buf.length, size + c.length));
        buf.copy(bigger, 0, 0, size);
        buf = bigger;
      }
      buf.set(c, size);
      size += c.length;
    }
  const bytes = buf.subarray(0, size);
  if (hash.digest('hex') !== pack)
    throw new BundleDamagedError(`${what}: content does not hash to its name (damaged)`);
  if (bytes.length < TRAILER) throw new BundleDamagedError(`${what}: too short to be a pack`);
  const n = headerLength(bytes.subarray(bytes.length - TRAILER), bytes.length, what);
  const header = parseHeader(
    bytes.subarray(bytes.length - TRAILER - n, bytes.length - TRAILER),
    repo.key,
    what,
    bytes.length - TRAILER - n,
  );
  const entries: PackEntry[] = header.entries;
  const scratch = newBlobScratch(); // the blobs are only checked
  for (const e of entries)
    openStoredBlob(
      bytes.subarray(e.offset, e.offset + e.stored),
      e,
      header.key,
      `blob ${e.id} in ${what}`,
      scratch,
    );
  const byId = new Map(entries.map((e) => [e.id, e]));
  const t = repo.index.table;
  for (const i of indexed) {
    const id = t.idHex(i);
    const e = byId.get(id);
    if (!e || e.offset !== t.offsetOf(i) || e.stored !== t.storedOf(i) || e.raw !== t.rawOf(i))
      throw new BundleDamagedError(`${what}: the index places blob ${id} where the pack header does not`);
  }
  return { buffer: buf };
}
