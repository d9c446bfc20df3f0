// Owns the benchmark's generated inputs under .bench/: the reference agent ref-170 (built once, reused
// while its marker file matches the options), a working copy of it for the repository rows (which
// change it), the changes the diff and repository measurements make, a tiny agent, a snapshot
// directory of 10,000 bundles with valid sidecars (hard links of one real bundle), one of 1,000
// distinct bundles without sidecars, a store of 1,000 agents × 50 bundles for retention, and a
// repository of 100 small agents × 50 snapshots with 40 of each agent's forgotten, for prune.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  buildSampleAgent,
  git,
  REF_170,
  type SampleAgentOptions,
  type SampleAgentPaths,
} from '../scripts/sample-agent.js';
import { MANIFEST_PATH } from '../src/format/constants.js';
import { type Manifest, type ManifestDraft, sealManifest } from '../src/format/manifest.js';
import { BundleReader } from '../src/format/reader.js';
import { END_OF_ARCHIVE, encodeFileHeader, padding } from '../src/format/tar.js';
import { zstdCompress } from '../src/format/zstd.js';
import { isCanonicalSnapshotId } from '../src/model/ids.js';
import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { metaFromManifest, writeSidecar } from '../src/store/catalog.js';
import { bundleFileName, siblingPathOf, sidecarPathOf } from '../src/store/paths.js';
import { sha256Hex } from '../src/util/hash.js';
import { discard, treeSize, WORK_DIR } from './lib.js';

export const REF_AGENT = 'ref';
const DB_FILES = ['long_term', 'vector', 'concepts', 'compactions'];

export interface RefAgent {
  paths: SampleAgentPaths;
  reused: boolean;
  /** Generation time of this run, or of the run that generated it when reused. */
  generationMs: number;
  sizes: RefSizes;
}

export interface RefSizes {
  dbBytes: number;
  dbs: Record<string, number>;
  memdirFiles: number;
  memdirBytes: number;
  gitDirBytes: number;
  commits: number;
}

function pathsOf(root: string, agentId: string): SampleAgentPaths {
  return {
    root,
    agentId,
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    stateRoot: join(root, 'state'),
    memdir: join(root, 'memdir', agentId),
    sqliteDir: join(root, 'sqlite', agentId),
  };
}

function measureSizes(p: SampleAgentPaths): RefSizes {
  const dbs: Record<string, number> = {};
  for (const db of DB_FILES) {
    let size = statSync(join(p.sqliteDir, `${db}.sqlite`)).size;
    for (const ext of ['-wal', '-shm']) {
      const side = join(p.sqliteDir, `${db}.sqlite${ext}`);
      if (existsSync(side)) size += statSync(side).size;
    }
    dbs[db] = size;
  }
  const tree = treeSize(p.memdir, new Set(['.git']));
  const commits = Number(
    execFileSync('git', ['-C', p.memdir, 'rev-list', '--count', '--all'], { encoding: 'utf8' }).trim(),
  );
  return {
    dbBytes: Object.values(dbs).reduce((a, b) => a + b, 0),
    dbs,
    memdirFiles: tree.files,
    memdirBytes: tree.bytes,
    gitDirBytes: treeSize(join(p.memdir, '.git')).bytes,
    commits,
  };
}

/** The reference agent ref-170, generated into .bench/ref-170 unless a matching marker says it exists. */
export function ensureRefAgent(): RefAgent {
  return ensureSampleAgent('ref-170', REF_170);
}

/** A generated agent under .bench/<name> (agent id `ref`), reused while its options are unchanged. */
export function ensureSampleAgent(name: string, options: SampleAgentOptions): RefAgent {
  const root = join(WORK_DIR, name);
  const marker = join(root, 'GENERATED.json');
  const wanted = JSON.stringify(options);
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as { options: string; generationMs: number };
    if (m.options === wanted) {
      const paths = pathsOf(root, REF_AGENT);
      return { paths, reused: true, generationMs: m.generationMs, sizes: measureSizes(paths) };
    }
  }
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const t0 = performance.now();
  const paths = buildSampleAgent(root, REF_AGENT, options);
  const generationMs = performance.now() - t0;
  writeFileSync(marker, `${JSON.stringify({ options: wanted, generationMs })}\n`);
  return { paths, reused: false, generationMs, sizes: measureSizes(paths) };
}

/** Removes the snapshots earlier runs left in the reference agent's store. */
export function clearRefSnapshots(ref: RefAgent): void {
  discard(join(ref.paths.stateRoot, 'tenants'));
}

export interface ListFixture {
  stateRoot: string;
  agentId: string;
  count: number;
  /** True when an earlier run made it (its READY marker exists). */
  reused: boolean;
}

/** One real bundle of a tiny agent (default small options), made once. */
async function tinyBundle(): Promise<{ path: string; size: number; sha256: string }> {
  const root = join(WORK_DIR, 'tiny');
  const marker = join(root, 'BUNDLE.json');
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as { path: string; size: number; sha256: string };
    if (existsSync(m.path) && statSync(m.path).size === m.size) return m;
  }
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const p = buildSampleAgent(root, 'tiny');
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    store: 'bundles', // a bundle file: what the list fixtures link and read
  });
  const meta = await s.snapshot({ agentId: 'tiny' });
  const out = { path: meta.bundle_path, size: meta.bundle_size_bytes, sha256: meta.file_sha256! };
  writeFileSync(marker, `${JSON.stringify(out)}\n`);
  return out;
}

const BASE_MS = 1_760_000_000_000;

/**
 * A UUID v7 for time `ms` (sequence `seq` in the 12 bits after the version, random tail). Not
 * newSnapshotId: that one is monotonic per process, so after the tiny snapshot (taken now) it would
 * stamp every past `created_at_ms` with the current time.
 */
function uuidV7At(ms: number, seq: number): string {
  const b = Buffer.alloc(16);
  randomBytes(16).copy(b);
  b.writeUIntBE(ms, 0, 6);
  b[6] = 0x70 | ((seq >> 8) & 0x0f);
  b[7] = seq & 0xff;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  if (!isCanonicalSnapshotId(id)) throw new Error(`bad uuid ${id}`);
  return id;
}

/**
 * One bundle of `agentId` in `dir` named by a fresh UUID v7 of time `created`: a hard link of `src`, its
 * `.sha256` sibling and a `.meta.json` sidecar that list trusts (id = the file's uuid, size = its size).
 */
function linkedBundle(
  dir: string,
  src: { path: string; size: number; sha256: string },
  manifest: Manifest,
  agentId: string,
  created: number,
  seq: number,
): void {
  const id = uuidV7At(created, seq);
  const path = join(dir, bundleFileName(id));
  linkSync(src.path, path);
  writeFileSync(siblingPathOf(path), src.sha256);
  const meta = metaFromManifest(
    { ...manifest, snapshot_id: id, agent_id: agentId, created_at_ms: created },
    path,
    src.size,
    src.sha256,
  );
  const { bundle_path: _p, ...rest } = meta;
  writeFileSync(sidecarPathOf(path), `${JSON.stringify({ sidecar_version: 1, meta: rest })}\n`);
}

/**
 * `count` bundles of agent `many`, each a hard link of the tiny bundle with a distinct UUID v7 name, a
 * `.sha256` sibling and a trusted `.meta.json` sidecar (id = the file's uuid, size = the file's size).
 */
export async function ensureSidecarListFixture(count: number): Promise<ListFixture> {
  const root = join(WORK_DIR, `list-${count}`);
  const stateRoot = join(root, 'state');
  const agentId = 'many';
  const marker = join(root, 'READY');
  if (existsSync(marker)) return { stateRoot, agentId, count, reused: true };
  const src = await tinyBundle();
  const reader = await BundleReader.open(src.path);
  reader.close();
  const manifest = reader.manifest.manifest;
  rmSync(root, { recursive: true, force: true });
  const dir = new LocalSnapshotter({ stateRoot }).layout.snapshotsDir('default', agentId);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const created = BASE_MS + i * 60_000;
    linkedBundle(dir, src, manifest, agentId, created, i & 0xfff);
  }
  writeFileSync(marker, `${count}\n`);
  return { stateRoot, agentId, count, reused: false };
}

/** Asserts the hand-written sidecar format equals what writeSidecar produces for the same meta. */
export async function checkSidecarFormat(): Promise<void> {
  const src = await tinyBundle();
  const dir = join(WORK_DIR, 'sidecar-check');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const reader = await BundleReader.open(src.path);
  reader.close();
  const path = join(dir, bundleFileName(reader.manifest.manifest.snapshot_id));
  linkSync(src.path, path);
  const meta = metaFromManifest(reader.manifest.manifest, path, src.size, src.sha256);
  await writeSidecar(meta);
  const { bundle_path: _p, ...rest } = meta;
  const mine = `${JSON.stringify({ sidecar_version: 1, meta: rest })}\n`;
  const theirs = readFileSync(sidecarPathOf(path), 'utf8');
  rmSync(dir, { recursive: true, force: true });
  if (mine !== theirs) throw new Error(`sidecar format drifted:\n${mine}\n${theirs}`);
}

async function compressAll(chunks: Buffer[]): Promise<Buffer> {
  async function* src() {
    yield* chunks;
  }
  const out: Buffer[] = [];
  for await (const c of zstdCompress(src(), { level: 3, workers: 0 })) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/**
 * `count` distinct, valid bundles of agent `nosidecar` without sidecars, so list must read each head.
 * Each bundle is two zstd frames: a fresh one holding its own resealed manifest (new id and time), then
 * one shared frame holding the tiny bundle's artifacts and the end-of-archive marker.
 */
export async function ensureFallbackListFixture(count: number): Promise<ListFixture> {
  const root = join(WORK_DIR, `list-fallback-${count}`);
  const stateRoot = join(root, 'state');
  const agentId = 'nosidecar';
  const marker = join(root, 'READY');
  if (existsSync(marker)) return { stateRoot, agentId, count, reused: true };
  const src = await tinyBundle();
  const reader = await BundleReader.open(src.path);
  const mtime = 1_760_000_000;
  const rest: Buffer[] = [];
  for await (const e of reader.entries()) {
    rest.push(encodeFileHeader(e.path, e.size, mtime));
    for await (const c of e.body()) rest.push(Buffer.from(c));
    rest.push(Buffer.alloc(padding(e.size)));
  }
  rest.push(END_OF_ARCHIVE);
  reader.close();
  const tail = await compressAll(rest);
  const { bundle_sha256: _d, manifest_seal: _s, ...base } = reader.manifest.manifest;
  rmSync(root, { recursive: true, force: true });
  const dir = new LocalSnapshotter({ stateRoot }).layout.snapshotsDir('default', agentId);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const created = BASE_MS + i * 60_000;
    const id = uuidV7At(created, i & 0xfff);
    const draft: ManifestDraft = { ...base, snapshot_id: id, agent_id: agentId, created_at_ms: created };
    const { bytes } = sealManifest(draft);
    const head = await compressAll([
      encodeFileHeader(MANIFEST_PATH, bytes.length, mtime),
      bytes,
      Buffer.alloc(padding(bytes.length)),
    ]);
    const file = Buffer.concat([head, tail]);
    const path = join(dir, bundleFileName(id));
    writeFileSync(path, file);
    writeFileSync(siblingPathOf(path), sha256Hex(file));
  }
  writeFileSync(marker, `${count}\n`);
  return { stateRoot, agentId, count, reused: false };
}

/** One bundle path of a fixture directory (to prove its bundles verify). */
export function sampleBundleOf(f: ListFixture): string {
  const dir = new LocalSnapshotter({ stateRoot: f.stateRoot }).layout.snapshotsDir('default', f.agentId);
  const name = readdirSync(dir).find((n) => n.endsWith('.tar.zst'));
  if (!name) throw new Error(`no bundle in ${dir}`);
  return join(dir, name);
}

/** What the diff measurement compares before its change and after restoring: memdir refs and tree, memories. */
export function refFingerprint(p: SampleAgentPaths): string {
  const head = git(p.memdir, ['rev-parse', 'HEAD']).trim();
  const refs = git(p.memdir, ['for-each-ref', '--format=%(refname) %(objectname)']).trim();
  const commits = git(p.memdir, ['rev-list', '--count', '--all']).trim();
  const status = git(p.memdir, ['status', '--porcelain']).trim();
  // Read-write on purpose: closing the last connection checkpoints and removes -wal/-shm again.
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  try {
    const rows = db
      .prepare(
        'SELECT count(*) AS n, max(id) AS maxId, sum(length(content)) AS chars, total(importance) AS imp, sum(created_at) AS ts FROM memories',
      )
      .get();
    return JSON.stringify({ head, refs, commits, status, rows });
  } finally {
    db.close();
  }
}

/** The change between the two snapshots of the diff measurement, and what diff must find. */
export const REF_CHANGE = {
  rowsInserted: 100,
  rowsUpdated: 50,
  rowsDeleted: 50,
  filesAppended: 20,
  commits: 1,
} as const;

/** The commit the reference agent's memdir is at. */
export const refHead = (p: SampleAgentPaths): string => git(p.memdir, ['rev-parse', 'HEAD']).trim();

/**
 * Moves the memdir's branch back to `head` (files untouched), before restoring the snapshot taken at
 * `head`: the restore tags the live HEAD to keep it reachable, and this way that tag (which the restore
 * child deletes) pulls no commit of the change into the restored repository.
 */
export function rewindRefBranch(p: SampleAgentPaths, head: string): void {
  git(p.memdir, ['reset', '-q', '--soft', head]);
}

/**
 * Changes the live reference agent: in long_term.sqlite 100 rows inserted, the 50 lowest ids updated and
 * the next 50 deleted (one transaction); one line appended to 20 memdir files spread over the tree, then
 * one commit. Undo it by restoring a snapshot taken before.
 */
export function changeRefAgent(p: SampleAgentPaths): void {
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  try {
    db.transaction(() => {
      const ins = db.prepare(
        'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
      );
      for (let i = 0; i < REF_CHANGE.rowsInserted; i++)
        ins.run(1_770_000_000_000 + i * 1000, 'fact', `bench diff: new memory ${i}`, 0.5);
      db.prepare(
        'UPDATE memories SET content = content || ?, importance = importance + 1 WHERE id IN (SELECT id FROM memories ORDER BY id LIMIT ?)',
      ).run(' (edited by the bench)', REF_CHANGE.rowsUpdated);
      db.prepare(
        'DELETE FROM memories WHERE id IN (SELECT id FROM memories ORDER BY id LIMIT ? OFFSET ?)',
      ).run(REF_CHANGE.rowsDeleted, REF_CHANGE.rowsUpdated);
    })();
  } finally {
    db.close();
  }
  const files = git(p.memdir, ['ls-files', 'topics'])
    .split('\n')
    .filter((f) => f.endsWith('.md'))
    .sort();
  const step = Math.floor(files.length / REF_CHANGE.filesAppended);
  if (step < 1) throw new Error(`memdir has only ${files.length} topic files`);
  for (let i = 0; i < REF_CHANGE.filesAppended; i++)
    appendFileSync(join(p.memdir, files[i * step]!), `Bench diff: appended line ${i}.\n`);
  git(p.memdir, ['commit', '-qam', 'bench: change between the diff snapshots']);
}

export interface GcFixture {
  root: string;
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  agents: number;
  perAgent: number;
  /** The `now` the bundle times were spread back from; gc runs with it so its decisions never drift. */
  nowMs: number;
  reused: boolean;
}

const DAY_MS = 86_400_000;
const GC_SPAN_DAYS = 100;
/** Bumped when the fixture's layout changes, so an older one is regenerated. */
const GC_FIXTURE_VERSION = 2;

interface GcMarker {
  version: number;
  agents: number;
  perAgent: number;
  nowMs: number;
}

/**
 * `agents` agents `agent-0000` … of tenant `default`, each with `perAgent` bundles (hard links of one
 * copy of the tiny bundle, with distinct UUID v7 names, siblings and trusted sidecars) whose
 * created_at_ms are spread evenly over the 100 days before `nowMs` (2 days apart for 50; agent k is
 * k minutes later, so every time is distinct). Empty memdir and SQLite directories per agent, as a
 * store beside live agents has. The copy of the bundle has its own inode: ext4 allows 65,000 links per
 * inode and the list fixture already holds 10,000 of the tiny one. Ends with one dry-run sweep, so the
 * store is in its steady state (the first sweep ever creates two lock files per agent, which costs
 * about as much again as the sweep itself and is not what the budget is about).
 */
export async function ensureGcFixture(agents: number, perAgent: number): Promise<GcFixture> {
  const root = join(WORK_DIR, 'gc-fixture');
  const marker = join(root, 'READY.json');
  const paths = {
    root,
    stateRoot: join(root, 'state'),
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    agents,
    perAgent,
  };
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as GcMarker;
    if (m.version === GC_FIXTURE_VERSION && m.agents === agents && m.perAgent === perAgent)
      return { ...paths, nowMs: m.nowMs, reused: true };
  }
  const tiny = await tinyBundle();
  const reader = await BundleReader.open(tiny.path);
  reader.close();
  const manifest = reader.manifest.manifest;
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const src = { ...tiny, path: join(root, 'source.tar.zst') };
  copyFileSync(tiny.path, src.path);
  const layout = new LocalSnapshotter({ stateRoot: paths.stateRoot }).layout;
  const nowMs = Date.now();
  const stepMs = Math.floor((GC_SPAN_DAYS * DAY_MS) / perAgent);
  for (let a = 0; a < agents; a++) {
    const agentId = `agent-${String(a).padStart(4, '0')}`;
    const dir = layout.snapshotsDir('default', agentId);
    mkdirSync(dir, { recursive: true });
    mkdirSync(join(paths.memdirRoot, agentId), { recursive: true });
    mkdirSync(join(paths.sqliteRoot, agentId), { recursive: true });
    for (let j = 0; j < perAgent; j++) {
      const created = nowMs - GC_SPAN_DAYS * DAY_MS + j * stepMs + a * 60_000;
      linkedBundle(dir, src, manifest, agentId, created, j & 0xfff);
    }
  }
  const warm = await new LocalSnapshotter({
    stateRoot: paths.stateRoot,
    memdirRoot: paths.memdirRoot,
    sqliteRoot: paths.sqliteRoot,
  }).gc({ dryRun: true, now: nowMs });
  if (warm.errors > 0 || warm.agents_visited !== agents)
    throw new Error(`gc fixture: warm-up sweep visited ${warm.agents_visited} agents, ${warm.errors} errors`);
  const m: GcMarker = { version: GC_FIXTURE_VERSION, agents, perAgent, nowMs };
  writeFileSync(marker, `${JSON.stringify(m)}\n`);
  return { ...paths, nowMs, reused: false };
}

/** The repository issue's "1 % change" (design.md §5): what an hour of a busy agent adds. */
export const ONE_PERCENT = {
  memoriesInserted: 2_400,
  embeddingsInserted: 600,
  conceptsEdited: 100,
  compactionsInserted: 60,
  filesTouched: 5,
} as const;

/**
 * Applies the 1 % change to the live agent: new memories, embeddings and compactions appended, concept
 * summaries lengthened (rows grow, pages reflow), five topic files edited in one commit. `step` makes
 * successive changes differ.
 */
export function changeRefAgentOnePercent(p: SampleAgentPaths, step = 0): void {
  const open = (name: string) => new Database(join(p.sqliteDir, `${name}.sqlite`));
  const lt = open('long_term');
  lt.transaction(() => {
    const ins = lt.prepare(
      'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
    );
    for (let i = 0; i < ONE_PERCENT.memoriesInserted; i++)
      ins.run(
        1_780_000_000_000 + step * 1e7 + i,
        'fact',
        `step ${step} memory ${i}: ${'lorem ipsum '.repeat(40)}`,
        0.5,
      );
  })();
  lt.close();
  const vec = open('vector');
  vec.transaction(() => {
    const ins = vec.prepare('INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?, ?, ?, ?)');
    const f = new Float32Array(384);
    for (let i = 0; i < ONE_PERCENT.embeddingsInserted; i++) {
      for (let d = 0; d < f.length; d++) f[d] = Math.sin(step * 7919 + i * 31 + d);
      ins.run(1_000_000 + step * 10_000 + i, 'all-MiniLM-L6-v2', 384, Buffer.from(f.buffer));
    }
  })();
  vec.close();
  const con = open('concepts');
  con
    .prepare('UPDATE concepts SET summary = summary || ? WHERE id % 300 = ?')
    .run(` (revised in step ${step})`, step % 300);
  con.close();
  const cmp = open('compactions');
  cmp.transaction(() => {
    const ins = cmp.prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)');
    for (let i = 0; i < ONE_PERCENT.compactionsInserted; i++)
      ins.run(
        `session-step-${step}-${i}`,
        1_780_000_000_000 + i,
        `compaction ${i}: ${'summary text '.repeat(140)}`,
      );
  })();
  cmp.close();
  const files = git(p.memdir, ['ls-files', 'topics'])
    .split('\n')
    .filter((f) => f.endsWith('.md'))
    .sort();
  for (let i = 0; i < ONE_PERCENT.filesTouched; i++)
    appendFileSync(
      join(p.memdir, files[(step * 37 + i * 401) % files.length]!),
      `Step ${step}: learned ${i}.\n`,
    );
  git(p.memdir, ['commit', '-qam', `step ${step}: the 1 % change`]);
}

/**
 * A fresh working copy of an agent (memdir and databases, `cp -a`) under .bench/<name>, with an empty
 * state root of its own: the repository rows change the agent they snapshot, ref-170 stays as it is.
 */
export function copyAgent(src: RefAgent, name: string): SampleAgentPaths {
  const root = join(WORK_DIR, name);
  discard(root);
  mkdirSync(join(root, 'state'), { recursive: true });
  execFileSync('cp', ['-a', src.paths.memdirRoot, src.paths.sqliteRoot, `${root}/`]);
  return pathsOf(root, REF_AGENT);
}

export interface PruneFixture {
  /** State root holding the repository (`<stateRoot>/repository`). */
  stateRoot: string;
  agents: number;
  perAgent: number;
  forgotten: number;
  reused: boolean;
  generationMs: number;
}

/** Bumped when the prune fixture's layout changes, so an older one is regenerated. */
const PRUNE_FIXTURE_VERSION = 1;

/**
 * `agents` small agents (`agent-000` …, each its own seed), each snapshotted `perAgent` times into one
 * repository (the library, in this process: generation, not measurement) with a few new memories
 * between snapshots so that every snapshot stores data of its own, then the `forget` oldest snapshots
 * of every agent forgotten. What is left for prune: their data, unreferenced, in packs shared with
 * kept data. Reused while its marker matches; prune runs on a copy of it.
 */
export async function ensurePruneFixture(
  agents: number,
  perAgent: number,
  forget: number,
  log: (s: string) => void = () => {},
): Promise<PruneFixture> {
  const root = join(WORK_DIR, `prune-${agents}x${perAgent}-${forget}`);
  const marker = join(root, 'READY.json');
  const stateRoot = join(root, 'state');
  const wanted = { version: PRUNE_FIXTURE_VERSION, agents, perAgent, forget };
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as typeof wanted & { generationMs: number };
    if (m.version === wanted.version && m.agents === agents && m.perAgent === perAgent && m.forget === forget)
      return { stateRoot, agents, perAgent, forgotten: forget, reused: true, generationMs: m.generationMs };
  }
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const t0 = performance.now();
  const ids = Array.from({ length: agents }, (_, a) => `agent-${String(a).padStart(3, '0')}`);
  let paths: SampleAgentPaths | undefined;
  for (const [a, agentId] of ids.entries())
    paths = buildSampleAgent(root, agentId, {
      seed: 5000 + a,
      memories: 150,
      embeddings: 60,
      concepts: 40,
      compactions: 10,
      files: 8,
      commits: 3,
    });
  const s = new LocalSnapshotter({
    stateRoot,
    memdirRoot: paths!.memdirRoot,
    sqliteRoot: paths!.sqliteRoot,
    store: 'repository',
    zstdWorkers: 0,
  });
  for (let j = 0; j < perAgent; j++) {
    for (const agentId of ids) {
      const db = new Database(join(paths!.sqliteRoot, agentId, 'long_term.sqlite'));
      const ins = db.prepare(
        'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
      );
      db.transaction(() => {
        for (let k = 0; k < 4; k++)
          ins.run(
            1_790_000_000_000 + j * 1000 + k,
            'fact',
            `${agentId} step ${j}.${k} ${randomBytes(600).toString('base64')}`,
            0.5,
          );
      })();
      db.close();
      await s.snapshot({ agentId, createdBy: 'bench' });
    }
    if ((j + 1) % 10 === 0) log(`prune fixture: ${(j + 1) * agents} of ${perAgent * agents} snapshots`);
  }
  for (const agentId of ids) {
    const metas = await s.list(agentId); // newest first
    for (const m of metas.slice(perAgent - forget)) await s.repository.forget(m.id);
  }
  const generationMs = performance.now() - t0;
  writeFileSync(marker, `${JSON.stringify({ ...wanted, generationMs })}\n`);
  return { stateRoot, agents, perAgent, forgotten: forget, reused: false, generationMs };
}
