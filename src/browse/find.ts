// Owns `find` (docs/browse.md): which of an agent's snapshots hold a text or a regex match, where
// (memory file, table row, state value), and when it first appeared and was first gone. Each distinct
// unit is searched once, whatever the number of snapshots that hold it: memory files and state values by
// content (SHA-256); a repository's databases by page chunk (content-addressed: a chunk is a candidate
// when it holds the text, or either half of a longer text; a regex is matched against the chunk read as
// UTF-8), a database with candidates opened once per distinct set of candidate chunks and the hit
// confirmed by a row query; a bundle's databases by their SHA-256, each confirmed by a row query. Unless
// the caller asks for secrets, a match counts only when it is still there once the redaction rules have
// been applied to its file, value or row, and snippets are shown redacted.

import type { Shown } from '../diff/secrets.js';
import { showText } from '../diff/secrets.js';
import { MEMORY_FILES_PREFIX, sqlitePath } from '../format/constants.js';
import { BundleDamagedError, InvalidInputError } from '../model/errors.js';
import { DEFAULT_TENANT, validateAgentId, validateTenant } from '../model/ids.js';
import { DB_NAMES, type DbName } from '../model/types.js';
import { asText } from '../policy/redaction/scan.js';
import type { RepoArtifact } from '../repository/manifest.js';
import type { Repository } from '../repository/repository.js';
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
/** Chunks scanned per batch (their bytes are dropped once scanned). */
const SCAN_BATCH = 512;
const ID_BYTES = 32;

/** What a query looks for, in text and in raw bytes. */
interface Matcher {
  /** Matches in a text (0 when none). */
  count(text: string): number;
  /** Index of the first match in a text, or -1. */
  first(text: string): number;
  /** Whether raw bytes may hold a match (a candidate; confirmed on the text). */
  maybe(bytes: Buffer): boolean;
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
    s.repository.exists() ? (await s.repository.list(agentId, tenant)).map((x) => x.id) : [],
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

/** Files and state values of a snapshot: each distinct content searched once. */
async function searchFiles(ctx: Ctx, src: SnapshotSource): Promise<Rows> {
  const entries = src.manifest.artifacts.filter(
    (a) => a.kind === 'memory_file' || a.kind.startsWith('state_'),
  );
  const todo = new Map<string, string>();
  for (const a of entries) {
    if (ctx.units.has(a.sha256) || todo.has(a.sha256)) ctx.stats.units_reused++;
    else todo.set(a.sha256, a.path_in_bundle);
  }
  if (todo.size > 0) {
    const bytes = await src.read([...todo.values()]);
    for (const [sha, path] of todo) {
      const b = bytes.get(path)!;
      ctx.stats.units_searched++;
      ctx.stats.bytes_scanned += b.length;
      ctx.units.set(sha, searchBytes(b, ctx.m, ctx.shown));
    }
  }
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

/** Repository snapshots: manifests first, every distinct database chunk scanned once, then rows confirmed. */
async function searchRepository(
  ctx: Ctx,
  repo: Repository,
  ids: readonly string[],
  rowsCache: Map<string, Rows>,
): Promise<FindSnapshotHit[]> {
  const { loadSnapshot } = await import('../repository/snapshots.js');
  const lists = new Map<string, string[]>(); // chunk-list blob → chunk ids
  const chunksOf = async (a: RepoArtifact): Promise<string[]> => {
    if (a.chunks) return a.chunks;
    if (!a.chunk_lists) return a.size_bytes === 0 ? [] : [a.sha256];
    const missing = [...new Set(a.chunk_lists.filter((l) => !lists.has(l)))];
    let i = 0;
    for await (const b of repo.streamBlobs(missing)) {
      if (b.length % ID_BYTES !== 0) throw new BundleDamagedError('a chunk list has a partial entry');
      const out: string[] = [];
      for (let at = 0; at < b.length; at += ID_BYTES) out.push(b.toString('hex', at, at + ID_BYTES));
      lists.set(missing[i++]!, out);
    }
    return a.chunk_lists.flatMap((l) => lists.get(l)!);
  };
  // 1. manifests and the chunk ids of every database
  const snaps: { src: SnapshotSource; dbs: { db: DbName; sha256: string; chunks: string[] }[] }[] = [];
  const scanned = new Map<string, boolean>(); // chunk → holds a candidate
  const toScan = new Set<string>();
  for (const id of ids) {
    const { manifest } = await loadSnapshot(repo, id);
    const src = repositorySource(repo, manifest);
    const dbs: (typeof snaps)[number]['dbs'] = [];
    for (const db of DB_NAMES) {
      const a = manifest.artifacts.find((x) => x.path_in_bundle === sqlitePath(db));
      if (!a) continue;
      const chunks = await chunksOf(a);
      for (const c of chunks) {
        if (toScan.has(c)) ctx.stats.units_reused++;
        else toScan.add(c);
      }
      dbs.push({ db, sha256: a.sha256, chunks });
    }
    snaps.push({ src, dbs });
  }
  // 2. every distinct chunk once, in pack order (adjacent blobs are read together)
  const order = [...toScan].sort((x, y) => {
    const lx = repo.index.get(x);
    const ly = repo.index.get(y);
    if (!lx || !ly) return lx ? -1 : ly ? 1 : 0;
    return lx.pack < ly.pack ? -1 : lx.pack > ly.pack ? 1 : lx.offset - ly.offset;
  });
  for (let i = 0; i < order.length; i += SCAN_BATCH) {
    const batch = order.slice(i, i + SCAN_BATCH);
    let j = 0;
    for await (const b of repo.streamBlobs(batch)) {
      ctx.stats.units_searched++;
      ctx.stats.bytes_scanned += b.length;
      scanned.set(batch[j++]!, ctx.m.maybe(b));
    }
  }
  // 3. per snapshot: files by content, databases by their candidate chunks
  const out: FindSnapshotHit[] = [];
  for (const { src, dbs } of snaps) {
    const parts = [await searchFiles(ctx, src)];
    for (const { db, sha256, chunks } of dbs) {
      const candidates = [...new Set(chunks.filter((c) => scanned.get(c)))].sort();
      if (candidates.length === 0) continue;
      const byDb = `${db}:${sha256}`;
      const byChunks = `${db}:chunks:${candidates.join(',')}`;
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
