// Owns `find` (docs/browse.md): which of an agent's snapshots hold a text or a regex match, where
// (memory file, table row, state value), and when it first appeared and was first gone. Each distinct
// unit is searched once, whatever the number of snapshots that hold it: memory files and state values by
// content (SHA-256); a repository's databases by page chunk (content-addressed: a chunk is a candidate
// when it holds the text, or either half of a longer text; a regex is matched against the chunk read as
// UTF-8), a database with candidates opened once per distinct set of pages holding candidates (by
// content) and the hit confirmed by a row query; a bundle's databases by their SHA-256, each confirmed
// by a row query. Unless the caller asks for secrets, a match counts only when it is still there once
// the redaction rules have been applied to its file, value or row, and snippets are shown redacted.

import { createHash } from 'node:crypto';
import type { Shown } from '../diff/secrets.js';
import { showText } from '../diff/secrets.js';
import { MEMORY_FILES_PREFIX, sqlitePath } from '../format/constants.js';
import { BundleDamagedError, InvalidInputError } from '../model/errors.js';
import { DEFAULT_TENANT, validateAgentId, validateTenant } from '../model/ids.js';
import { DB_NAMES, type DbName } from '../model/types.js';
import { asText } from '../policy/redaction/scan.js';
import { loadContent } from '../repository/content.js';
import { ArtifactMemo, type RepoArtifact } from '../repository/manifest.js';
import { mapLimit, type Repository } from '../repository/repository.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { withDatabase } from './browse.js';
import { repositorySource, type SnapshotSource, withSnapshot } from './source.js';
import { searchRows } from './tables.js';
import {
  type FindLocation,
  type FindRequest,
  type FindResult,
  type FindSnapshotHit,
  MAX_FIND_LOCATIONS,
} from './types.js';

const MAX_QUERY_CHARS = 1000;
const SNIPPET_CONTEXT = 40;
/** A text longer than this is prefiltered by its halves (found even when cut by one page boundary). */
const SPLIT_ABOVE = 8;
/** Ranged pack reads in flight while blobs are scanned (each up to SCAN_WINDOW bytes). */
const SCAN_AHEAD = 8;
const SCAN_WINDOW = 4 * 1024 * 1024;
/** Blobs of one pack this close to each other are read with one request (the bytes between dropped). */
const SCAN_GAP = 256 * 1024;
/** Manifests read and parsed at once. */
const MANIFESTS_AHEAD = 8;
const ID_BYTES = 32;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/**
 * The pages of a candidate chunk that hold a candidate match, by content (SHA-256 of the page), for
 * every possible page size (the chunk starts on a page boundary; the database's page size is known
 * only from its header, read later). Undefined when the match offsets cannot be told (a regex).
 */
function candidatePages(m: Matcher, b: Buffer): Map<number, string[]> | undefined {
  const offsets = m.offsets(b);
  if (!offsets) return undefined;
  const out = new Map<number, string[]>();
  for (const ps of PAGE_SIZES) {
    const starts = [...new Set(offsets.map((o) => o - (o % ps)))].sort((x, y) => x - y);
    out.set(
      ps,
      starts.map((st) =>
        createHash('sha256')
          .update(b.subarray(st, st + ps))
          .digest('hex'),
      ),
    );
  }
  return out;
}

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

/** What a query looks for, in text and in raw bytes. */
interface Matcher {
  /** Matches in a text (0 when none). */
  count(text: string): number;
  /** Index of the first match in a text, or -1. */
  first(text: string): number;
  /** Whether raw bytes may hold a match (a candidate; confirmed on the text). */
  maybe(bytes: Buffer): boolean;
  /** Byte offsets of the candidate matches in raw bytes; undefined when they cannot be told (a regex). */
  offsets(bytes: Buffer): number[] | undefined;
  needle: { text: string } | { regex: RegExp };
}

export function matcherOf(req: Pick<FindRequest, 'text' | 'regex'>): Matcher {
  const { text, regex } = req;
  if ((text === undefined) === (regex === undefined))
    throw new InvalidInputError('find needs exactly one of a text and --regex');
  const q = (text ?? regex)!;
  if (q.length === 0) throw new InvalidInputError('find needs a non-empty text or regex');
  if (q.length > MAX_QUERY_CHARS)
    throw new InvalidInputError(`the query is longer than ${MAX_QUERY_CHARS} characters`);
  if (text !== undefined) {
    const whole = Buffer.from(text, 'utf8');
    const half = Math.ceil(whole.length / 2);
    const pieces =
      whole.length > SPLIT_ABOVE ? [whole.subarray(0, half), whole.subarray(whole.length - half)] : [whole];
    return {
      needle: { text },
      count(t) {
        let n = 0;
        for (let i = t.indexOf(text); i >= 0; i = t.indexOf(text, i + text.length)) n++;
        return n;
      },
      first: (t) => t.indexOf(text),
      maybe: (b) => pieces.some((p) => b.indexOf(p) >= 0),
      offsets(b) {
        const out: number[] = [];
        for (const p of pieces)
          for (let i = b.indexOf(p); i >= 0; i = b.indexOf(p, i + 1)) out.push(i, i + p.length - 1);
        return out;
      },
    };
  }
  let re: RegExp;
  let global: RegExp;
  try {
    re = new RegExp(regex!);
    global = new RegExp(regex!, 'g');
  } catch (err) {
    throw new InvalidInputError(`--regex: ${(err as Error).message}`);
  }
  return {
    needle: { regex: re },
    count(t) {
      let n = 0;
      global.lastIndex = 0;
      for (let m = global.exec(t); m; m = global.exec(t)) {
        n++;
        if (m[0].length === 0) global.lastIndex++;
      }
      return n;
    },
    first: (t) => t.search(re),
    maybe: (b) => re.test(b.toString('utf8')),
    offsets: () => undefined,
  };
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
  if (text === undefined) return { matches: 1 }; // binary: a raw match, nothing to show or redact
  const visible = showText(shown, text);
  const n = m.count(visible);
  return n > 0 ? { matches: n, snippet: snippet(visible, m.first(visible), m) } : undefined;
}

interface Ctx {
  s: LocalSnapshotter;
  m: Matcher;
  shown: Shown;
  /** Files and state values by SHA-256. */
  units: Map<string, UnitHit | undefined>;
  stats: FindResult['stats'];
}

type Rows = { locations: FindLocation[]; count: number };

export async function findInSnapshots(s: LocalSnapshotter, req: FindRequest): Promise<FindResult> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  const m = matcherOf(req);
  if (req.sinceMs !== undefined && !Number.isFinite(req.sinceMs))
    throw new InvalidInputError('since must be a time');
  const shown: Shown = { policy: req.showSecrets === true ? undefined : s.redactionPolicy };
  const metas = (await s.list(agentId, tenant))
    .filter((x) => req.sinceMs === undefined || x.created_at_ms >= req.sinceMs)
    .reverse();
  const inRepository = new Set(
    (await s.repository.exists()) ? (await s.repository.list(agentId, tenant)).map((x) => x.id) : [],
  );
  const stats: FindResult['stats'] = {
    snapshots: metas.length,
    units_searched: 0,
    units_reused: 0,
    bytes_scanned: 0,
    databases_opened: 0,
  };
  const ctx: Ctx = { s, m, shown, units: new Map(), stats };
  const rowsCache = new Map<string, Rows>();
  const hits = new Map<string, FindSnapshotHit>();
  const repoIds = metas.filter((x) => inRepository.has(x.id)).map((x) => x.id);
  if (repoIds.length > 0) {
    const repo = await s.repository.open(false, [], req.decryptIdentity);
    await s.repository.locked(repo, false, 'find', async () => {
      for (const h of await searchRepository(ctx, repo, repoIds, rowsCache)) hits.set(h.snapshot_id, h);
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
    );
    hits.set(meta.id, h);
  }
  const snapshots = metas.map((x) => {
    const h = hits.get(x.id)!;
    return { ...h, label: x.label ?? null };
  });
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
    stats,
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
          path: `sqlite/${db}/${h.table}`,
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
 * Repository snapshots. 1. every manifest (a few read at once), keeping only its files and databases;
 * 2. the chunk lists of every database, in one stream; 3. every distinct database chunk and every
 * distinct single-blob file once, in one stream in pack order (blobs of a pack close to each other read
 * with one request), each checked against its id as it is opened; 4. per snapshot, files by content and
 * databases by their candidate pages, confirmed by a row query.
 */
async function searchRepository(
  ctx: Ctx,
  repo: Repository,
  ids: readonly string[],
  rowsCache: Map<string, Rows>,
): Promise<FindSnapshotHit[]> {
  const { loadSnapshot } = await import('../repository/snapshots.js');
  const memo = new ArtifactMemo(); // the manifests share most artifacts: each distinct one checked once
  type Snap = {
    src: SnapshotSource;
    files: RepoArtifact[];
    dbs: { db: DbName; a: RepoArtifact; chunks: string[] }[];
  };
  // 1. manifests: only the databases' part of each is kept as a source (for the confirmations)
  const snaps: Snap[] = new Array(ids.length);
  const fileUnits = new Map<string, RepoArtifact>(); // file content (SHA-256) → one artifact holding it
  await mapLimit(
    ids.map((id, i) => ({ id, i })),
    MANIFESTS_AHEAD,
    async ({ id, i }) => {
      const { manifest } = await loadSnapshot(repo, id, memo);
      const files: RepoArtifact[] = [];
      const dbs: Snap['dbs'] = [];
      const sqlite: RepoArtifact[] = [];
      for (const a of manifest.artifacts) {
        if (isFileUnit(a)) {
          files.push(a);
          if (fileUnits.has(a.sha256)) ctx.stats.units_reused++;
          else fileUnits.set(a.sha256, a);
        } else if (a.path_in_bundle.startsWith('sqlite/')) sqlite.push(a);
      }
      for (const db of DB_NAMES) {
        const a = sqlite.find((x) => x.path_in_bundle === sqlitePath(db));
        if (a) dbs.push({ db, a, chunks: [] });
      }
      snaps[i] = { src: repositorySource(repo, { ...manifest, artifacts: sqlite }), files, dbs };
    },
  );
  // 2. the chunk ids of every database
  await repo.ensureIndex();
  const lists = new Map<string, string[]>(); // chunk-list blob → chunk ids
  for (const { dbs } of snaps) for (const { a } of dbs) for (const l of a.chunk_lists ?? []) lists.set(l, []);
  const listIds = [...lists.keys()];
  let k = 0;
  for await (const b of repo.streamBlobs(
    inPackOrder(repo, listIds),
    SCAN_AHEAD,
    SCAN_WINDOW,
    false,
    SCAN_GAP,
  )) {
    if (b.length % ID_BYTES !== 0) throw new BundleDamagedError('a chunk list has a partial entry');
    const out: string[] = [];
    for (let at = 0; at < b.length; at += ID_BYTES) out.push(b.toString('hex', at, at + ID_BYTES));
    lists.set(listIds[k++]!, out);
  }
  const toScan = new Set<string>();
  const dbChunks = new Set<string>();
  for (const { dbs } of snaps)
    for (const d of dbs) {
      const { a } = d;
      d.chunks =
        a.chunks ??
        (a.chunk_lists ? a.chunk_lists.flatMap((l) => lists.get(l)!) : a.size_bytes === 0 ? [] : [a.sha256]);
      for (const c of d.chunks) {
        if (dbChunks.has(c)) ctx.stats.units_reused++;
        else {
          dbChunks.add(c);
          toScan.add(c);
        }
      }
    }
  // files stored as one blob (the blob's id is the file's SHA-256) join the scan; larger ones are read whole
  const blobFiles = new Map<string, RepoArtifact>();
  const chunkedFiles: RepoArtifact[] = [];
  for (const [sha, a] of fileUnits) {
    if (a.size_bytes === 0) searchUnit(ctx, sha, Buffer.alloc(0));
    else if (a.chunks || a.chunk_lists) chunkedFiles.push(a);
    else {
      blobFiles.set(sha, a);
      toScan.add(sha);
    }
  }
  // 3. every distinct blob once, in pack order, with the read-ahead of one stream (each blob a view into
  // one reused buffer: nothing below keeps it)
  const scanned = new Map<string, boolean>(); // database chunk → holds a candidate
  const pagesOf = new Map<string, Map<number, string[]> | undefined>(); // candidate chunk → page size → pages
  const pageSizeOf = new Map<string, number>(); // a database's first chunk → its page size
  const order = inPackOrder(repo, [...toScan]);
  let j = 0;
  for await (const b of repo.streamBlobs(order, SCAN_AHEAD, SCAN_WINDOW, true, SCAN_GAP)) {
    const id = order[j++]!;
    const file = blobFiles.get(id);
    if (file) {
      if (b.length !== file.size_bytes)
        throw new BundleDamagedError(
          `${file.path_in_bundle}: ${b.length} bytes, the manifest says ${file.size_bytes}`,
        );
      searchUnit(ctx, id, b);
    }
    if (!dbChunks.has(id)) continue;
    ctx.stats.units_searched++;
    ctx.stats.bytes_scanned += b.length;
    const hit = ctx.m.maybe(b);
    scanned.set(id, hit);
    if (b.length >= 100 && b.subarray(0, 16).equals(SQLITE_MAGIC)) {
      const ps = b.readUInt16BE(16);
      pageSizeOf.set(id, ps === 1 ? 65536 : ps);
    }
    if (hit) pagesOf.set(id, candidatePages(ctx.m, b));
  }
  for (const a of chunkedFiles) searchUnit(ctx, a.sha256, await loadContent(repo, a, a.path_in_bundle));
  // 4. per snapshot: files by content, databases by their candidate chunks
  const out: FindSnapshotHit[] = [];
  for (const { src, files, dbs } of snaps) {
    const parts = [fileLocations(ctx, files)];
    for (const { db, a, chunks } of dbs) {
      const candidates = [...new Set(chunks.filter((c) => scanned.get(c)))].sort();
      if (candidates.length === 0) continue;
      const byDb = `${db}:${a.sha256}`;
      const byChunks = `${db}:${candidateKey(candidates, pagesOf, pageSizeOf.get(chunks[0]!))}`;
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
