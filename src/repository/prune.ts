// Owns `prune` (restic's model, under the exclusive repository lock the caller holds): find every blob
// a snapshot references, then remove packs that hold nothing referenced, rewrite packs that are mostly
// unreferenced (their live blobs copied into new packs), remove packs no index knows (left by killed
// writers), and replace the index files by one describing what is kept. A manifest without a listing
// entry is not a snapshot (a snapshot killed before listing it, or a forget killed after unlisting it):
// it is removed first, and its data with the rest, and so is a pin of no snapshot (an orphan pin). Order makes every instant safe to be killed at:
// unlisted manifests → new packs → new index → old index files removed → packs removed. A manifest that
// cannot be read stops prune before anything is removed: what it references is unknown; so does a
// referenced blob that no listed, indexed pack holds (prune would drop it for good), and a pack about
// to go holding a referenced blob whose keeper's own header does not confirm it. The caller's
// lock is checked before each removing step: a lost lock stops prune. Last, the store sweeps what
// interrupted saves left beside the objects (Backend.sweepLeftovers) when it is older than LEFTOVER_AGE_MS.

import { objectExists } from '../backend/backend.js';
import { BundleDamagedError, NotFoundError } from '../model/errors.js';
import { decodeIndex, type PackRecord } from './index-file.js';
import { type HeldRepoLock, otherLiveLocks, type RemovedStaleLock, STALE_MS } from './locks.js';
import { openStoredBlob, PACK_TARGET, PackBuilder, type PackEntry } from './pack.js';
import { ReferenceSet } from './references.js';
import {
  mapLimit,
  type Repository,
  readObject,
  readObjectRange,
  saveContentAddressed,
} from './repository.js';
import { loadSnapshot } from './snapshots.js';

export interface PruneReport {
  dry_run: boolean;
  /** Snapshots kept (listed manifests). */
  snapshots: number;
  /** Manifests without a listing entry removed (interrupted snapshots and forgets). */
  unlisted_removed: number;
  /**
   * Pins whose snapshot does not exist (no listing entry, no manifest) removed (stop 47): left by a pin
   * that raced a forget on another host before pins took the agent's repository lock, or by a forget
   * of an older version. check reports them as `orphan_pins`.
   */
  orphan_pins_removed: number;
  packs_before: number;
  packs_removed: number;
  packs_rewritten: number;
  packs_unindexed_removed: number;
  blobs_removed: number;
  bytes_before: number;
  bytes_freed: number;
  index_files_replaced: number;
  /**
   * Leftovers of interrupted saves the store swept (NATS chunks no object names, S3 claims and
   * incomplete multipart uploads, a local directory's temporary files) older than the leftover age; 0
   * on a dry run.
   */
  leftovers_removed: number;
  leftover_bytes_freed: number;
  /** What the store could not sweep, and why (e.g. no ListMultipartUploads). */
  leftover_notes?: string[];
  /**
   * A dry run only (it holds a shared lock, so it never stops a snapshot): while other operations held
   * repository locks (`locks`, described), the manifests without a listing entry and the packs no index
   * knows, with their bytes, that may be theirs — a snapshot lists and indexes them before it ends, and
   * prune waits for it — so they are not counted above. Left by a killed writer, prune removes them.
   */
  in_flight?: { locks: string[]; unlisted: number; packs_unindexed: number; bytes: number };
  /**
   * The stale locks of other processes prune removed when it took its exclusive lock (stop 47): whose
   * they were (host, pid, operation) and how old (by this host's clock). Empty on a dry run.
   */
  stale_locks_removed: RemovedStaleLock[];
}

/**
 * How old a leftover must be before prune sweeps it: far past the lock staleness (STALE_MS), so a save
 * of a snapshot still running on another host (its lock refreshed, its chunks written) is never touched.
 */
export const LEFTOVER_AGE_MS = 12 * STALE_MS;

export interface PruneOptions {
  dryRun?: boolean;
  /** Rewrite a pack when at least this fraction of its bytes is unreferenced (default 0.5). */
  rewriteThreshold?: number;
  /** Snapshots to count as forgotten (gc's dry run: what prune would free after the forgets). */
  forgotten?: ReadonlySet<string>;
  /**
   * The lock prune runs under: exclusive, checked before each step that removes something; shared for
   * a dry run, which removes nothing and must not stop writers (what they have not indexed or listed
   * yet is reported as `in_flight`).
   */
  lock?: HeldRepoLock;
  /** The age of leftovers of interrupted saves that prune sweeps (default LEFTOVER_AGE_MS). */
  leftoverAgeMs?: number;
}

/**
 * Before prune decides anything from its listings, the two that decide what is a snapshot are checked
 * against each other, object by object (a stat each, for the few names that disagree): a listing entry
 * whose manifest was not listed must have no manifest (a snapshot damaged or forgotten meanwhile,
 * forget removes the listing entry first), and a manifest that is not listed must have no listing
 * entry. Otherwise a listing was short (a store that left out a page or an entry): its snapshot's data
 * would be removed, or its manifest, while it is still listed. Prune stops before removing anything.
 */
async function confirmListings(
  repo: Repository,
  manifests: ReadonlySet<string>,
  listed: ReadonlySet<string>,
  unlisted: readonly string[],
): Promise<void> {
  const there = (type: 'snapshots' | 'listing', name: string) => objectExists(repo.backend, { type, name });
  const stop = (what: string) =>
    new BundleDamagedError(
      `prune stopped before removing anything: ${what}; the store's listings are not whole (run the ` +
        'command again; if it persists, check the store)',
    );
  for (const id of listed)
    if (!manifests.has(id) && (await there('snapshots', id)))
      throw stop(`the listing of snapshots/ left out ${id}, whose manifest is there`);
  for (const id of unlisted)
    if (await there('listing', id))
      throw stop(`the listing of listing/ left out ${id}, whose entry is there`);
}

export async function pruneRepository(repo: Repository, opts: PruneOptions = {}): Promise<PruneReport> {
  const report = await prunePacks(repo, opts);
  if (opts.dryRun || !repo.backend.sweepLeftovers) return report;
  // 5. What interrupted saves left beside the objects (the store's own kind of garbage).
  await opts.lock?.check();
  const swept = await repo.backend.sweepLeftovers(opts.leftoverAgeMs ?? LEFTOVER_AGE_MS);
  report.leftovers_removed = swept.removed;
  report.leftover_bytes_freed = swept.bytes;
  if (swept.notes && swept.notes.length > 0) report.leftover_notes = [...swept.notes];
  return report;
}

async function prunePacks(repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  const threshold = opts.rewriteThreshold ?? 0.5;
  // What is stored is listed first, what describes it (locks, index files, listing) read after: a
  // dry run holds only a shared lock, and a writer beside it writes its packs before indexing them and
  // its manifest before listing it, holding its lock meanwhile. So a pack listed here and not indexed
  // below (or a manifest not listed below) is either left by a killed writer, or a running writer's —
  // and then that writer's lock is among the locks read in between.
  const names: string[] = [];
  const manifests = new Set<string>();
  for await (const s of repo.backend.list('snapshots')) {
    manifests.add(s.name);
    if (!opts.forgotten?.has(s.name)) names.push(s.name);
  }
  const onDisk = new Map<string, number>();
  for await (const p of repo.backend.list('packs')) onDisk.set(p.name, p.size);
  const running = opts.dryRun ? await otherLiveLocks(repo.backend, opts.lock?.name) : [];

  // Every index file as it is now, pack by pack (the master index keeps one copy per blob only).
  const indexFiles: string[] = [];
  for await (const f of repo.backend.list('index')) indexFiles.push(f.name);
  const records = (
    await mapLimit(indexFiles, 8, async (name) =>
      decodeIndex(
        repo.decodeIndexFile(await readObject(repo.backend, 'index', name), `index/${name}`),
        `index/${name}`,
      ),
    )
  ).flat();
  await repo.loadIndex();

  const listed = new Set<string>();
  for await (const l of repo.backend.list('listing')) listed.add(l.name);
  // Pins listed after the listing: a pin is written only for a listed snapshot (or, by an import holding
  // its shared lock, just before its manifest), so under the exclusive lock a pin of no listed snapshot
  // and no manifest is an orphan. A dry run beside running operations counts none (an import's).
  let orphanPins: string[] = [];
  for await (const p of repo.backend.list('pins'))
    if (!listed.has(p.name) && !manifests.has(p.name)) orphanPins.push(p.name);
  if (running.length > 0) orphanPins = [];
  const snapshots = names.filter((n) => listed.has(n));
  let unlisted = names.filter((n) => !listed.has(n));
  if (!opts.dryRun) await confirmListings(repo, manifests, listed, unlisted);
  // A dry run beside running operations: an unlisted manifest may be a snapshot being written (prune
  // would wait for it, and find it listed): its references are kept, and it is not counted as removed.
  const inFlight = running.length > 0 ? unlisted : [];
  if (inFlight.length > 0) unlisted = [];
  const refs = new ReferenceSet(repo);
  let kept = 0;
  for (const id of [...snapshots, ...inFlight]) {
    let manifest: Awaited<ReturnType<typeof loadSnapshot>>['manifest'];
    try {
      ({ manifest } = await loadSnapshot(repo, id));
    } catch (err) {
      if (err instanceof NotFoundError) continue; // forgotten meanwhile (gc forgets without this lock)
      if (inFlight.includes(id)) continue; // not a snapshot (yet): nothing it names is counted on
      throw err;
    }
    await refs.addManifest(manifest);
    if (!inFlight.includes(id)) kept++;
  }

  // Each referenced blob is kept in one pack: the first (in index order) that holds it and exists.
  const keeper = new Map<string, string>();
  const packs = new Map<string, PackRecord>();
  for (const r of records) {
    if (!onDisk.has(r.id) || packs.has(r.id)) continue;
    packs.set(r.id, r);
    for (const e of r.entries) if (refs.blobs.has(e.id) && !keeper.has(e.id)) keeper.set(e.id, r.id);
  }
  // Every blob the kept snapshots reference must have a keeper, or prune stops before removing
  // anything (stop 44): a blob whose pack is not listed or not indexed (index files hidden or lost, a
  // pack out of sight) is one prune would otherwise drop from the index, and its pack with it — what
  // check reports as damage, prune must not make permanent.
  const missing = [...refs.blobs].filter((b) => !keeper.has(b));
  if (missing.length > 0)
    throw new BundleDamagedError(
      `prune stopped before removing anything: ${missing.length} blob(s) the kept snapshots reference ` +
        `are in no pack that is both listed and indexed (${missing.slice(0, 3).join(', ')}` +
        `${missing.length > 3 ? ', …' : ''}); run check, and repair or restore the repository first`,
      { details: { missing_blobs: missing.length, first_missing: missing.slice(0, 10) } },
    );
  const keep: PackRecord[] = [];
  const remove: string[] = [];
  const rewrite: { record: PackRecord; live: PackEntry[] }[] = [];
  let blobsRemoved = 0;
  let bytesFreed = 0;
  let rewriteEstimate = 0; // what rewriting frees, before the new packs' headers are known
  for (const r of packs.values()) {
    const live = r.entries.filter((e) => keeper.get(e.id) === r.id);
    const size = onDisk.get(r.id)!;
    const liveBytes = live.reduce((n, e) => n + e.stored, 0);
    if (live.length === 0) {
      remove.push(r.id);
      blobsRemoved += r.entries.length;
      bytesFreed += size;
    } else if (live.length < r.entries.length && (size - liveBytes) / size >= threshold) {
      rewrite.push({ record: r, live });
      blobsRemoved += r.entries.length - live.length;
      bytesFreed += size - liveBytes;
      rewriteEstimate += size - liveBytes;
    } else keep.push(r);
  }
  let unindexed = [...onDisk.keys()].filter((p) => !packs.has(p));
  // A dry run beside running operations: an unindexed pack may be a writer's not indexed yet.
  const inFlightPacks = running.length > 0 ? unindexed : [];
  if (inFlightPacks.length > 0) unindexed = [];
  for (const p of unindexed) bytesFreed += onDisk.get(p)!;
  await confirmKeepers(
    repo,
    refs.blobs,
    keeper,
    packs,
    [...remove, ...rewrite.map((r) => r.record.id)],
    unindexed,
  );
  // nothing to remove and one index file: nothing is written (a dry run says what a run would do)
  const idle =
    unlisted.length === 0 &&
    orphanPins.length === 0 &&
    remove.length === 0 &&
    rewrite.length === 0 &&
    unindexed.length === 0 &&
    indexFiles.length <= 1;
  const report: PruneReport = {
    dry_run: opts.dryRun === true,
    snapshots: kept,
    unlisted_removed: unlisted.length,
    orphan_pins_removed: orphanPins.length,
    packs_before: onDisk.size,
    packs_removed: remove.length,
    packs_rewritten: rewrite.length,
    packs_unindexed_removed: unindexed.length,
    blobs_removed: blobsRemoved,
    bytes_before: [...onDisk.values()].reduce((a, b) => a + b, 0),
    bytes_freed: bytesFreed,
    index_files_replaced: idle ? 0 : indexFiles.length,
    leftovers_removed: 0,
    leftover_bytes_freed: 0,
    stale_locks_removed: [...(opts.lock?.staleRemoved ?? [])],
    ...(inFlight.length + inFlightPacks.length > 0
      ? {
          in_flight: {
            locks: running,
            unlisted: inFlight.length,
            packs_unindexed: inFlightPacks.length,
            bytes: inFlightPacks.reduce((n, p) => n + onDisk.get(p)!, 0),
          },
        }
      : {}),
  };
  if (opts.dryRun || idle) return report;

  // 0. Manifests that are not snapshots, before any data they reference goes.
  await opts.lock?.check();
  for (const id of unlisted) {
    await repo.backend.remove({ type: 'pins', name: id });
    await repo.backend.remove({ type: 'snapshots', name: id });
  }
  for (const id of orphanPins) await repo.backend.remove({ type: 'pins', name: id });

  // 1. Live blobs of rewritten packs into new packs.
  const fresh: PackRecord[] = [];
  let freshBytes = 0;
  const target = repo.backend.packing?.target ?? PACK_TARGET;
  let builder: PackBuilder | undefined;
  const flush = async () => {
    if (!builder || builder.entries.length === 0) return;
    const done = builder.finish();
    freshBytes += done.size;
    await saveContentAddressed(repo.backend, { type: 'packs', name: done.id }, done.parts);
    builder.release();
    const salt = builder.packSalt;
    fresh.push({ id: done.id, ...(salt ? { salt: salt.toString('hex') } : {}), entries: builder.entries });
    builder = undefined;
  };
  for (const { live } of rewrite) {
    const blobs = await repo.loadBlobs(live.map((e) => e.id));
    for (const [i, e] of live.entries()) {
      builder ??= new PackBuilder(repo.key, target);
      builder.add(e.id, e.kind, blobs[i]!, repo.zstdLevel);
      if (builder.size >= target) await flush();
    }
  }
  await flush();
  // what rewriting freed, now that the new packs (headers, trailers) are written: the old packs' bytes
  // less the new ones'
  const rewritten = rewrite.reduce((n, r) => n + onDisk.get(r.record.id)!, 0);
  report.bytes_freed += rewritten - freshBytes - rewriteEstimate;
  // 2. One index for everything kept; 3. the old index files go; 4. then the packs.
  const name = await repo.saveIndex([...keep, ...fresh]);
  await opts.lock?.check();
  for (const f of indexFiles) if (f !== name) await repo.backend.remove({ type: 'index', name: f });
  await opts.lock?.check();
  for (const p of [...remove, ...rewrite.map((r) => r.record.id), ...unindexed])
    await repo.backend.remove({ type: 'packs', name: p });
  return report;
}

/**
 * Evidence before removal (stop 44): a pack prune removes or rewrites may hold a referenced blob whose
 * keeper, by the index, is another pack. Index rows are only a claim (one forged index file made prune
 * remove the pack holding everything, check finding nothing wrong): the keeper's own header must hold
 * that blob where its row says, and the bytes there must open and hash to the blob's id, or prune stops
 * before removing anything (BUNDLE_DAMAGED). What a pack about to go holds is its index rows, and for a
 * pack no index knows, its header; an unindexed pack whose header cannot be read is garbage of a killed
 * writer or already damaged, and goes as before. Cost: the headers of the unindexed packs and of the
 * keepers of blobs held twice (two ranged reads each), and those blobs' bytes (one ranged read each);
 * nothing when every referenced blob is stored once and every pack is indexed.
 */
async function confirmKeepers(
  repo: Repository,
  referenced: ReadonlySet<string>,
  keeper: ReadonlyMap<string, string>,
  packs: ReadonlyMap<string, PackRecord>,
  going: readonly string[],
  unindexed: readonly string[],
): Promise<void> {
  // keeper pack → the blobs it must be seen to hold, each with the pack that would go with it
  const claims = new Map<string, Map<string, string>>();
  const claim = (blob: string, from: string) => {
    const k = keeper.get(blob);
    if (!k || k === from) return;
    const m = claims.get(k) ?? new Map<string, string>();
    claims.set(k, m);
    if (!m.has(blob)) m.set(blob, from);
  };
  for (const p of going) for (const e of packs.get(p)!.entries) if (referenced.has(e.id)) claim(e.id, p);
  const headers = await mapLimit(unindexed, 8, async (p) => {
    try {
      return (await repo.readPackHeader(p)).entries;
    } catch (err) {
      if (err instanceof BundleDamagedError) return [];
      throw err;
    }
  });
  unindexed.forEach((p, i) => {
    for (const e of headers[i]!) if (referenced.has(e.id)) claim(e.id, p);
  });
  await mapLimit([...claims], 4, async ([k, blobs]) => {
    const header = await repo.readPackHeader(k);
    const held = new Map(header.entries.map((e) => [e.id, e]));
    const rows = new Map(packs.get(k)!.entries.map((e) => [e.id, e]));
    const salt = packs.get(k)!.salt;
    for (const [blob, from] of blobs) {
      const h = held.get(blob);
      const r = rows.get(blob)!;
      const same =
        h !== undefined &&
        h.offset === r.offset &&
        h.stored === r.stored &&
        h.raw === r.raw &&
        h.kind === r.kind &&
        h.flags === r.flags &&
        (salt === undefined || header.salt?.toString('hex') === salt);
      const stop = (why: string) =>
        new BundleDamagedError(
          `prune stopped before removing anything: the index places blob ${blob} in packs/${k}, but ${why}; ` +
            `packs/${from}, which prune would remove, holds it. An index file or pack is forged or ` +
            'damaged: run check --read-data, and repair the repository first',
          { details: { blob, keeper: k, would_remove: from } },
        );
      if (!same) throw stop("that pack's header does not hold it there");
      // and the keeper's copy is the blob (its hash): a pack can be forged with its header
      try {
        openStoredBlob(
          await readObjectRange(repo.backend, k, r.offset, r.stored),
          r,
          header.key,
          `blob ${blob}`,
        );
      } catch (err) {
        if (err instanceof BundleDamagedError) throw stop(`its copy there is not that blob (${err.message})`);
        throw err;
      }
    }
  });
}
