// Owns `find` (docs/browse.md): which of an agent's snapshots hold a text or a regex match, where
// (memory file, table row, state value), and when it first appeared and was first gone. Each distinct
// unit is searched once, whatever the number of snapshots that hold it: memory files and state values by
// content (SHA-256); a repository's databases by page chunk (content-addressed: a chunk is a candidate
// when it holds the text, or either half of a longer text; a regex is matched against the chunk read as
// UTF-8), a database with candidates opened once per distinct set of pages holding candidates (by
// content) and the hit confirmed by a row query; a bundle's databases by their SHA-256, each confirmed
// by a row query (a UTF-16 database, whose text no UTF-8 bytes match, always: its first chunk is a
// candidate, match.ts). Unless the caller asks for secrets, a match counts only when it is still there once
// the redaction rules have been applied to its file, value or row, and snippets are shown redacted.
// In a repository, the distinct blobs of all snapshots are read in one stream in pack order and
// opened, checked and scanned on worker threads (scan-worker.ts) while the main thread reads the next
// manifests (each distinct manifest artifact checked once: ArtifactMemo; a manifest checked by an
// earlier find whose stored bytes are unchanged taken from manifest-cache.ts). A blob whose sketch
// (sketch.ts, kept by sketch-cache.ts; made on the workers for blobs read without one) lacks a gram of
// each piece the scan looks for is not read: it cannot hold a candidate.

import { availableParallelism } from 'node:os';
import type { Shown } from '../diff/secrets.js';
import { showBinary, showText } from '../diff/secrets.js';
import { MEMORY_FILES_PREFIX, sqlitePath } from '../format/constants.js';
import { BundleDamagedError, InvalidInputError, NotFoundError } from '../model/errors.js';
import { DEFAULT_TENANT, validateAgentId, validateTenant } from '../model/ids.js';
import { DB_NAMES, type DbName } from '../model/types.js';
import { asText } from '../policy/redaction/scan.js';
import { loadContent } from '../repository/content.js';
import { ArtifactMemo, type RepoArtifact } from '../repository/manifest.js';
import { mapLimit, type Repository } from '../repository/repository.js';
import { ForeignSnapshotError, ownerProblem } from '../snapshotter/by-id.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { withDatabase } from './browse.js';
import { ManifestCache, storedDigest } from './manifest-cache.js';
import { type Matcher, matcherOf, type Query, textPieces } from './match.js';
import { tableSegment } from './paths.js';
import { type BlobScan, type ScanRole, ScanWorker } from './scan-worker.js';
import { MAX_TIME_MS } from './since.js';
import { gramsOf, mayHold } from './sketch.js';
import { SketchCache } from './sketch-cache.js';
import { repositorySource, type SnapshotSource, withSnapshot } from './source.js';
import { searchRows } from './tables.js';
import {
  type FindLocation,
  type FindRequest,
  type FindResult,
  type FindSnapshotHit,
  MAX_FIND_LOCATIONS,
} from './types.js';

const SNIPPET_CONTEXT = 40;
/** Ranged pack reads in flight while blobs are scanned (each up to SCAN_WINDOW bytes). */
const SCAN_AHEAD = 8;
const SCAN_WINDOW = 4 * 1024 * 1024;
/** Blobs of one pack this close to each other are read with one request (the bytes between dropped). */
const SCAN_GAP = 256 * 1024;
/** Scan worker threads at most (fewer on a machine with fewer cores). */
const SCAN_THREADS = 2;
/** Manifests read and parsed at once. */
const MANIFESTS_AHEAD = 8;
/** Manifests whose new blobs are handed to the scan worker together (it scans while the next are read). */
const MANIFEST_BATCH = 20;
const ID_BYTES = 32;

/**
 * What decides a database's matching rows: the content of the pages that hold candidate matches
 * (identical pages hold the same rows: a snapshot's database is a VACUUM INTO copy without free pages),
 * or, when those cannot be told, the candidate chunks themselves.
 */
function candidateKey(
  candidates: readonly string[],
  pagesOf: ReadonlyMap<string, Map<number, string[]> | undefined>,
  pageSize: number | undefined,
): string {
  const pages: string[] = [];
  for (const c of candidates) {
    const byPs = pagesOf.get(c);
    const hashes = pageSize === undefined ? undefined : byPs?.get(pageSize);
    if (!hashes) return `chunks:${candidates.join(',')}`;
    pages.push(...hashes);
  }
  return `pages:${[...new Set(pages)].sort().join(',')}`;
}

function snippet(text: string, at: number, m: Matcher): string {
  const start = Math.max(0, at - SNIPPET_CONTEXT);
  const len = 'text' in m.needle ? m.needle.text.length : 0;
  const end = Math.min(text.length, at + len + SNIPPET_CONTEXT);
  const s = text.slice(start, end).replace(/\s+/g, ' ');
  return `${start > 0 ? '…' : ''}${s}${end < text.length ? '…' : ''}`;
}

/** The result of one file or state value: matches (visible ones unless secrets are shown) and a snippet. */
interface UnitHit {
  matches: number;
  snippet?: string;
}

function searchBytes(bytes: Buffer, m: Matcher, shown: Shown): UnitHit | undefined {
  if (!m.maybe(bytes)) return undefined;
  const text = asText(bytes);
  if (text === undefined) {
    // binary (a NUL, or not UTF-8): the matches in its bytes as cat shows them (redacted as Latin-1),
    // no snippet. maybe() only said a candidate is there (for a long text, one of its halves)
    const n = m.countRaw(showBinary(shown, bytes));
    return n > 0 ? { matches: n } : undefined;
  }
  const visible = showText(shown, text);
  const n = m.count(visible);
  return n > 0 ? { matches: n, snippet: snippet(visible, m.first(visible), m) } : undefined;
}

interface Ctx {
  s: LocalSnapshotter;
  m: Matcher;
  query: Query;
  shown: Shown;
  /** Files and state values by SHA-256. */
  units: Map<string, UnitHit | undefined>;
  stats: Required<Omit<FindResult['stats'], 'snapshots_skipped'>>;
  /**
   * Snapshots not searched because their manifest names another agent, tenant or snapshot (by-id.ts:
   * a forged listing entry, another agent's bundle under a forged sidecar), with why.
   */
  skipped: Map<string, string>;
}

type Rows = { locations: FindLocation[]; count: number };

export async function findInSnapshots(s: LocalSnapshotter, req: FindRequest): Promise<FindResult> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  const m = matcherOf(req);
  if (req.sinceMs !== undefined && !(Math.abs(req.sinceMs) <= MAX_TIME_MS))
    throw new InvalidInputError('since must be a time (ms since the epoch, at most ±8.64e15)');
  const shown: Shown = { policy: req.showSecrets === true ? undefined : (await s.policies()).redaction };
  const metas = (await s.list(agentId, tenant))
    .filter((x) => req.sinceMs === undefined || x.created_at_ms >= req.sinceMs)
    .reverse();
  const inRepository = new Set(
    (await s.repository.exists()) ? (await s.repository.list(agentId, tenant)).map((x) => x.id) : [],
  );
  const stats: Ctx['stats'] = {
    snapshots: metas.length,
    units_searched: 0,
    units_reused: 0,
    bytes_scanned: 0,
    units_skipped: 0,
    databases_opened: 0,
    manifests_cached: 0,
  };
  const query: Query = req.text !== undefined ? { text: req.text } : { regex: req.regex };
  const ctx: Ctx = { s, m, query, shown, units: new Map(), stats, skipped: new Map() };
  const rowsCache = new Map<string, Rows>();
  const hits = new Map<string, FindSnapshotHit>();
  const repoIds = metas.filter((x) => inRepository.has(x.id)).map((x) => x.id);
  if (repoIds.length > 0) {
    const repo = await s.repository.open(false, [], req.decryptIdentity);
    await s.repository.locked(repo, false, 'find', async () => {
      for (const h of await searchRepository(ctx, repo, agentId, tenant, repoIds, rowsCache))
        hits.set(h.snapshot_id, h);
    });
  }
  for (const meta of metas) {
    if (inRepository.has(meta.id)) continue;
    const h = await withSnapshot(
      s,
      agentId,
      tenant,
      meta.id,
      req.decryptIdentity ? { decryptIdentity: req.decryptIdentity } : {},
      (src) => searchBundle(ctx, src, rowsCache),
    ).catch(async (err: unknown) => {
      // deleted since it was listed (retention beside find): not there, as if listed after it
      if (err instanceof NotFoundError && !(await s.list(agentId, tenant)).some((x) => x.id === meta.id))
        return undefined;
      if (!(err instanceof ForeignSnapshotError)) throw err;
      ctx.skipped.set(meta.id, err.problem);
      return undefined;
    });
    if (h) hits.set(meta.id, h);
  }
  // A snapshot whose manifest is not this agent's is skipped, as list skips a damaged bundle: warned
  // about (the host's log), counted (stats.snapshots_skipped), never searched or shown.
  for (const [id, problem] of ctx.skipped)
    s.warn(`find: skipping snapshot ${id}: ${problem}; run check or verify`);
  const snapshots = metas
    .filter((x) => hits.has(x.id))
    .map((x) => ({ ...hits.get(x.id)!, label: x.label ?? null }));
  stats.snapshots = snapshots.length;
  const transitions: FindResult['transitions'] = [];
  let prev = false;
  for (const h of snapshots) {
    if (h.found !== prev)
      transitions.push({
        snapshot_id: h.snapshot_id,
        created_at_ms: h.created_at_ms,
        change: h.found ? 'appears' : 'gone',
      });
    prev = h.found;
  }
  const at = (c: 'appears' | 'gone') => {
    const t = transitions.find((x) => x.change === c);
    return t ? { snapshot_id: t.snapshot_id, created_at_ms: t.created_at_ms } : undefined;
  };
  const firstSeen = at('appears');
  const firstGone = at('gone');
  return {
    agent_id: agentId,
    tenant,
    query: {
      ...(req.text !== undefined ? { text: req.text } : {}),
      ...(req.regex !== undefined ? { regex: req.regex } : {}),
      ...(req.sinceMs !== undefined ? { since_ms: req.sinceMs } : {}),
    },
    snapshots,
    ...(firstSeen ? { first_seen: firstSeen } : {}),
    ...(firstGone ? { first_gone: firstGone } : {}),
    transitions,
    // What was read depends on the stored bytes, secrets included (a database is opened when a chunk's
    // raw bytes hold the text): in redacted output it would tell whether a guess is in memory.
    // how many were skipped depends on manifests, never on what memory holds
    stats: {
      ...(shown.policy ? { snapshots: stats.snapshots, manifests_cached: stats.manifests_cached } : stats),
      ...(ctx.skipped.size > 0 ? { snapshots_skipped: ctx.skipped.size } : {}),
    },
    output: req.showSecrets === true ? 'shown' : 'redacted',
  };
}

const isFileUnit = (a: { kind: string }): boolean => a.kind === 'memory_file' || a.kind.startsWith('state_');

/** Files and state values of a snapshot: each distinct content searched once. */
async function searchFiles(ctx: Ctx, src: SnapshotSource): Promise<Rows> {
  const entries = src.manifest.artifacts.filter(isFileUnit);
  const todo = new Map<string, string>();
  for (const a of entries) {
    if (ctx.units.has(a.sha256) || todo.has(a.sha256)) ctx.stats.units_reused++;
    else todo.set(a.sha256, a.path_in_bundle);
  }
  if (todo.size > 0) {
    const bytes = await src.read([...todo.values()]);
    for (const [sha, path] of todo) searchUnit(ctx, sha, bytes.get(path)!);
  }
  return fileLocations(ctx, entries);
}

function searchUnit(ctx: Ctx, sha256: string, b: Buffer): void {
  ctx.stats.units_searched++;
  ctx.stats.bytes_scanned += b.length;
  ctx.units.set(sha256, searchBytes(b, ctx.m, ctx.shown));
}

/** Where the searched files and state values of a snapshot hold the text. */
function fileLocations(
  ctx: Ctx,
  entries: readonly { kind: string; path_in_bundle: string; sha256: string }[],
): Rows {
  const locations: FindLocation[] = [];
  for (const a of entries) {
    const h = ctx.units.get(a.sha256);
    if (!h) continue;
    const path =
      a.kind === 'memory_file'
        ? `memdir/${a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length)}`
        : a.path_in_bundle.replace(/\.json$/, '');
    locations.push(
      a.kind === 'memory_file'
        ? {
            kind: 'file',
            path,
            matches: h.matches,
            ...(h.snippet !== undefined ? { snippet: h.snippet } : {}),
          }
        : { kind: 'state', path, ...(h.snippet !== undefined ? { snippet: h.snippet } : {}) },
    );
  }
  return { locations, count: locations.length };
}

/** The rows of one database of a snapshot holding the text, confirmed by a row query on a copy. */
async function confirmRows(ctx: Ctx, src: SnapshotSource, db: DbName): Promise<Rows> {
  ctx.stats.databases_opened++;
  return withDatabase(src, db, (d) => {
    const { hits, count } = searchRows(d, ctx.m.needle, MAX_FIND_LOCATIONS, (v) => {
      const shown = showText(ctx.shown, v);
      return ctx.m.first(shown) >= 0;
    });
    return {
      count,
      locations: hits.map((h) => {
        const shown = showText(ctx.shown, h.value);
        return {
          kind: 'row' as const,
          path: `sqlite/${db}/${tableSegment(h.table)}`,
          db,
          table: h.table,
          rowid: h.rowid,
          column: h.column,
          snippet: snippet(shown, ctx.m.first(shown), ctx.m),
        };
      }),
    };
  });
}

function hitOf(src: { id: string; createdAtMs: number }, parts: Rows[]): FindSnapshotHit {
  const locations = parts.flatMap((p) => p.locations).slice(0, MAX_FIND_LOCATIONS);
  const count = parts.reduce((n, p) => n + p.count, 0);
  return {
    snapshot_id: src.id,
    created_at_ms: src.createdAtMs,
    found: count > 0,
    count,
    locations,
  };
}

/** A bundle: files by content, each database by its SHA-256 (confirmed by a row query directly). */
async function searchBundle(
  ctx: Ctx,
  src: SnapshotSource,
  rowsCache: Map<string, Rows>,
): Promise<FindSnapshotHit> {
  const parts = [await searchFiles(ctx, src)];
  for (const db of DB_NAMES) {
    const e = src.entry(sqlitePath(db));
    if (!e) continue;
    const key = `${db}:${e.sha256}`;
    let rows = rowsCache.get(key);
    if (rows) ctx.stats.units_reused++;
    else {
      ctx.stats.units_searched++;
      ctx.stats.bytes_scanned += e.size_bytes;
      rows = await confirmRows(ctx, src, db);
      rowsCache.set(key, rows);
    }
    parts.push(rows);
  }
  return hitOf(src, parts);
}

/**
 * Repository snapshots, in batches of manifests: 1. each manifest of the batch (a few read at once),
 * keeping only its files and databases; 2. the chunk lists of its databases, in one stream; 3. every
 * database chunk and single-blob file not seen in an earlier batch, handed to the scan worker in pack
 * order (blobs of a pack close to each other read with one request), which opens, checks and scans
 * them while the next batch's manifests are read. 4. Once all is scanned, per snapshot: files by
 * content and databases by their candidate pages, confirmed by a row query.
 */
async function searchRepository(
  ctx: Ctx,
  repo: Repository,
  agentId: string,
  tenant: string,
  ids: readonly string[],
  rowsCache: Map<string, Rows>,
): Promise<FindSnapshotHit[]> {
  const { forgetCopy, parseSnapshot, readSnapshotObject, replacedOr } = await import(
    '../repository/snapshots.js'
  );
  const memo = new ArtifactMemo(); // the manifests share most artifacts: each distinct one checked once
  // checked manifests and sketches are kept for unencrypted repositories only (what a sealed one's
  // manifests and grams hide stays sealed)
  const cache = await ManifestCache.open(ctx.s.layout.root, repo.id, tenant, agentId, !repo.encrypted);
  const sketches = repo.encrypted ? undefined : await SketchCache.open(ctx.s.layout.root, repo.id);
  const grams = queryGrams(ctx.query);
  type Snap = {
    src: SnapshotSource;
    files: RepoArtifact[];
    /** Each database's chunk ids, as segments shared by the snapshots (a chunk list, inline chunks). */
    dbs: { db: DbName; a: RepoArtifact; segments: string[][] }[];
  };
  const snaps: Array<Snap | undefined> = new Array(ids.length); // undefined: skipped (ctx.skipped)
  const fileUnits = new Map<string, RepoArtifact>(); // file content (SHA-256) → one artifact holding it
  const lists = new Map<string, string[]>(); // chunk-list blob → chunk ids
  const dbChunks = new Set<string>();
  const segmentsSeen = new Set<string[]>();
  const blobFiles = new Map<string, RepoArtifact>(); // files stored as one blob (its id is their SHA-256)
  const chunkedFiles: RepoArtifact[] = []; // larger files: read whole at the end
  const roles = new Map<string, ScanRole>(); // blob → what it was handed to the worker as
  const again = new Map<string, ScanRole>(); // blobs handed over before one of their roles was known
  const scanned = new Map<string, boolean>(); // database chunk → holds a candidate
  const pagesOf = new Map<string, Map<number, string[]> | undefined>(); // candidate chunk → page size → pages
  const pageSizeOf = new Map<string, number>(); // a database's first chunk → its page size
  const utf16Starts = new Set<string>(); // first chunks of databases whose text is UTF-16
  const each = (id: string, raw: number, r: BlobScan) => {
    if (r.sketch) sketches?.put(id, r.sketch);
    if (r.chunk) {
      ctx.stats.units_searched++;
      ctx.stats.bytes_scanned += raw;
      scanned.set(id, r.chunk.hit);
      if (r.chunk.pageSize !== undefined) pageSizeOf.set(id, r.chunk.pageSize);
      if (r.chunk.utf16) utf16Starts.add(id);
      if (r.chunk.hit) pagesOf.set(id, r.chunk.pages);
    }
    if (r.file === undefined && !r.fileMiss) return;
    const f = blobFiles.get(id)!;
    if (raw !== f.size_bytes)
      throw new BundleDamagedError(`${f.path_in_bundle}: ${raw} bytes, the manifest says ${f.size_bytes}`);
    if (r.file) searchUnit(ctx, id, Buffer.from(r.file.buffer, r.file.byteOffset, r.file.byteLength));
    else {
      ctx.stats.units_searched++;
      ctx.stats.bytes_scanned += raw;
      ctx.units.set(id, undefined);
    }
  };
  /** A blob whose sketch shows it cannot hold the text: its roles answered without reading it. */
  const skipped = (id: string, raw: number, role: ScanRole): boolean => {
    const sk = grams && sketches?.get(id, raw);
    // a UTF-16 database's first chunk is always read: it makes the database a candidate (match.ts)
    if (!sk || sk.utf16 || grams.some((g) => mayHold(sk.data, g, sk.at, sk.len))) return false;
    if (role.chunk) {
      ctx.stats.units_skipped++;
      scanned.set(id, false);
      if (sk.pageSize !== undefined) pageSizeOf.set(id, sk.pageSize);
    }
    if (role.file) {
      const f = blobFiles.get(id)!;
      if (raw !== f.size_bytes)
        throw new BundleDamagedError(`${f.path_in_bundle}: ${raw} bytes, the manifest says ${f.size_bytes}`);
      ctx.stats.units_skipped++;
      ctx.units.set(id, undefined);
    }
    return true;
  };
  /** The blobs of `ids` that must be read (the others answered by their sketch), in pack order. */
  const toRead = (ids: string[], roleOf: (id: string) => ScanRole): string[] =>
    inPackOrder(
      repo,
      ids.filter((id) => {
        const raw = repo.index.get(id)?.raw;
        return raw === undefined || !skipped(id, raw, roleOf(id));
      }),
    );
  /** A blob's role, asking for its sketch when none is kept. */
  const withSketch = (role: ScanRole, id: string): ScanRole =>
    sketches && !sketches.get(id, repo.index.get(id)?.raw ?? -1) ? { ...role, sketch: true } : role;
  const read = { ahead: SCAN_AHEAD, window: SCAN_WINDOW, gap: SCAN_GAP };
  await repo.ensureIndex();
  const worker = new ScanWorker(ctx.query, Math.min(SCAN_THREADS, availableParallelism()));
  let scanning: Promise<void> = Promise.resolve();
  try {
    for (let from = 0; from < ids.length; from += MANIFEST_BATCH) {
      const batch = ids.slice(from, from + MANIFEST_BATCH).map((id, k) => ({ id, i: from + k }));
      const newFiles: RepoArtifact[] = [];
      // 1. manifests: only the databases' part of each is kept as a source (for the confirmations)
      await mapLimit(batch, MANIFESTS_AHEAD, async ({ id, i }) => {
        // forgotten since it was listed (retention beside find, before the lock): not there (stop 62
        // review: it ended the whole search with NOT_FOUND); one read now is safe from prune (the lock)
        const bytes = await readSnapshotObject(repo, id).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        });
        if (!bytes) return;
        const stored = storedDigest(bytes);
        let manifest = cache.get(id, stored);
        if (manifest) ctx.stats.manifests_cached++;
        else {
          try {
            manifest = (await parseSnapshot(repo, id, bytes, memo)).manifest;
          } catch (err) {
            await forgetCopy(repo, id); // a damaged copy is not kept: the next read goes to the store
            throw await replacedOr(repo, err);
          }
          cache.put(id, stored, manifest);
        }
        // the listing entry named this agent; the manifest must too (the one check: by-id.ts)
        const problem = ownerProblem(manifest, { id, agentId, tenant });
        if (problem) {
          ctx.skipped.set(id, problem);
          return;
        }
        const files: RepoArtifact[] = [];
        const dbs: Snap['dbs'] = [];
        const sqlite: RepoArtifact[] = [];
        for (const a of manifest.artifacts) {
          if (isFileUnit(a)) {
            files.push(a);
            if (fileUnits.has(a.sha256)) ctx.stats.units_reused++;
            else {
              fileUnits.set(a.sha256, a);
              newFiles.push(a);
            }
          } else if (a.path_in_bundle.startsWith('sqlite/')) sqlite.push(a);
        }
        for (const db of DB_NAMES) {
          const a = sqlite.find((x) => x.path_in_bundle === sqlitePath(db));
          if (a) dbs.push({ db, a, segments: [] });
        }
        snaps[i] = { src: repositorySource(repo, { ...manifest, artifacts: sqlite }), files, dbs };
      });
      // 2. the chunk ids of the batch's databases
      const listIds: string[] = [];
      for (const { i } of batch)
        for (const { a } of snaps[i]?.dbs ?? [])
          for (const l of a.chunk_lists ?? [])
            if (!lists.has(l)) {
              lists.set(l, []);
              listIds.push(l);
            }
      let k = 0;
      inPackOrder(repo, listIds);
      for await (const b of repo.streamBlobs(listIds, SCAN_AHEAD, SCAN_WINDOW, false, SCAN_GAP)) {
        if (b.length % ID_BYTES !== 0) throw new BundleDamagedError('a chunk list has a partial entry');
        const out: string[] = [];
        for (let at = 0; at < b.length; at += ID_BYTES) out.push(b.toString('hex', at, at + ID_BYTES));
        lists.set(listIds[k++]!, out);
      }
      // 3. the blobs not seen yet, to the worker (each once; a role learnt later is scanned again at the end)
      const fresh = new Set<string>();
      const want = (id: string, role: keyof ScanRole) => {
        const known = roles.get(id);
        if (!known) {
          roles.set(id, { chunk: role === 'chunk', file: role === 'file' });
          fresh.add(id);
        } else if (!known[role]) {
          if (fresh.has(id)) known[role] = true;
          else again.set(id, { ...(again.get(id) ?? { chunk: false, file: false }), [role]: true });
        }
      };
      for (const { i } of batch)
        for (const d of snaps[i]?.dbs ?? []) {
          const { a } = d;
          d.segments = a.chunk_lists
            ? a.chunk_lists.map((l) => lists.get(l)!)
            : [a.chunks ?? (a.size_bytes === 0 ? [] : [a.sha256])];
          for (const seg of d.segments) {
            // a segment seen before (most of a database's chunk lists): its chunks are all known
            if (segmentsSeen.has(seg)) {
              ctx.stats.units_reused += seg.length;
              continue;
            }
            segmentsSeen.add(seg);
            for (const c of seg) {
              if (dbChunks.has(c)) ctx.stats.units_reused++;
              else {
                dbChunks.add(c);
                want(c, 'chunk');
              }
            }
          }
        }
      for (const a of newFiles) {
        if (a.size_bytes === 0) searchUnit(ctx, a.sha256, Buffer.alloc(0));
        else if (a.chunks || a.chunk_lists) chunkedFiles.push(a);
        else {
          blobFiles.set(a.sha256, a);
          want(a.sha256, 'file');
        }
      }
      const order = toRead([...fresh], (id) => roles.get(id)!);
      scanning = scanning.then(() =>
        worker.scan(repo, order, (id) => withSketch(roles.get(id)!, id), read, each),
      );
      scanning.catch(() => {}); // awaited below (a failure stops find there)
    }
    await scanning;
    if (again.size > 0) {
      const order = toRead([...again.keys()], (id) => again.get(id)!);
      await worker.scan(repo, order, (id) => withSketch(again.get(id)!, id), read, each);
    }
  } finally {
    await worker.close();
  }
  for (const a of chunkedFiles) searchUnit(ctx, a.sha256, await loadContent(repo, a, a.path_in_bundle));
  // 4. per snapshot: files by content, databases by their candidate chunks
  const out: FindSnapshotHit[] = [];
  const candidatesIn = new Map<string[], string[]>(); // segment → its candidate chunks
  for (const snap of snaps) {
    if (!snap) continue;
    const { src, files, dbs } = snap;
    const parts = [fileLocations(ctx, files)];
    for (const { db, a, segments } of dbs) {
      const found: string[] = [];
      for (const seg of segments) {
        let c = candidatesIn.get(seg);
        if (!c) {
          c = seg.filter((id) => scanned.get(id));
          candidatesIn.set(seg, c);
        }
        found.push(...c);
      }
      if (found.length === 0) continue;
      const candidates = [...new Set(found)].sort();
      const first = segments.find((seg) => seg.length > 0)![0]!;
      const byDb = `${db}:${a.sha256}`;
      // a UTF-16 database's chunks cannot tell where a match is: it is known by its whole content
      const byChunks = utf16Starts.has(first)
        ? byDb
        : `${db}:${candidateKey(candidates, pagesOf, pageSizeOf.get(first))}`;
      let rows = rowsCache.get(byDb) ?? rowsCache.get(byChunks);
      if (!rows) {
        rows = await confirmRows(ctx, src, db);
        rowsCache.set(byDb, rows);
        rowsCache.set(byChunks, rows);
      }
      parts.push(rows);
    }
    out.push(hitOf(src, parts));
  }
  await cache.save();
  await sketches?.save((id) => repo.index.get(id) !== undefined);
  return out;
}

/**
 * The grams of each piece of a text (match.ts textPieces) that a blob's sketch is checked against, or
 * undefined when sketches cannot tell (a regex, a piece shorter than a gram): every blob is read.
 */
function queryGrams(q: Query): number[][] | undefined {
  if (q.text === undefined) return undefined;
  const out: number[][] = [];
  for (const p of textPieces(q.text)) {
    const g = gramsOf(p);
    if (!g) return undefined;
    out.push(g);
  }
  return out;
}

/** Blob ids sorted by where they are stored (pack, offset), so that reading them goes forward. */
function inPackOrder(repo: Repository, ids: string[]): string[] {
  return ids.sort((x, y) => {
    const lx = repo.index.get(x);
    const ly = repo.index.get(y);
    if (!lx || !ly) return lx ? -1 : ly ? 1 : 0;
    return lx.pack < ly.pack ? -1 : lx.pack > ly.pack ? 1 : lx.offset - ly.offset;
  });
}
