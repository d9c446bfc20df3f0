// Owns verifying one repository snapshot, the way verify/verify.ts verifies a bundle: the manifest
// (versions, seals, repository id, and every rule restore applies: layout, identity, git block, refs), then every artifact streamed from the packs — each chunk
// checked against its id, each artifact against its size and SHA-256 — into a sink (restore staging,
// diff, deep checks) or only hashed; the git history's packs likewise (indexed into `gitDir` when
// given). Content problems are collected as report entries with stable codes, not thrown.

import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GIT_BUNDLE_PATH, MAX_MANIFEST_BYTES } from '../format/constants.js';
import { refNameProblem, refNamesConflict } from '../format/git-bundle.js';
import { stateValueOf } from '../format/json.js';
import { manifestProblems } from '../format/rules.js';
import { ensureObjectFormat, objectFormatOf } from '../git/git.js';
import { indexPack } from '../git/history.js';
import { BundleDamagedError, gitFailedOnContent, SnapshotError } from '../model/errors.js';
import type { VerifyProblem } from '../model/types.js';
import { packageModule } from '../util/module-worker.js';
import { type ContentLane, readContent, writeContent, writeContentOn } from './content.js';
import { isAfterSizeProblem, isSizeProblem, sizeDiffers } from './content-errors.js';
import {
  bundleView,
  GIT_HISTORY_KIND,
  GIT_HISTORY_PATH,
  type ParsedRepoManifest,
  type RepoArtifact,
  type RepoManifest,
} from './manifest.js';
import type { Repository } from './repository.js';
import { loadSnapshot } from './snapshots.js';
import type { FileBatch } from './write-files.js';

export interface RepoVerifyOptions {
  /** Where to write a verified artifact (undefined: only check it). Not asked for the git history. */
  target?: (a: RepoArtifact) => string | undefined;
  /**
   * A git repository (initialised, empty) to index the history's packs into; made again in the
   * history's object format when that is not the one it has.
   */
  gitDir?: string;
  /**
   * Artifacts not read at all (a diff needs nothing of a component both sides hold identically); they
   * are not counted as checked.
   */
  skip?: (a: RepoArtifact) => boolean;
  onBytes?: (bytes: number) => void;
  /**
   * Called once the history is indexed into `gitDir` and every artifact stored as one blob (memory
   * files, state values) is written, if no problem was found by then: it runs beside the rest of the
   * stream (the databases), and verify returns only after it settled: a content error (exit 2, or git
   * failing) is reported as a problem of the history, any other error rejects verify.
   */
  afterTree?: () => Promise<void>;
  /**
   * Called once every artifact but the git history is written (or read) and checked, if no problem
   * was found by then, while git may still be at the history or the tree (restore starts its database
   * checks here): artifact path → the file written.
   */
  onStreamed?: (written: ReadonlyMap<string, string>) => void;
  /**
   * Worker threads to write the chunked artifacts (databases) `target` names on: each artifact's blobs
   * are read here and opened, checked and written on one of them (content.ts writeContentOn), the
   * artifacts spread over them, largest first, all at once. Without: one at a time on this thread.
   */
  lanes?: readonly ContentLane[];
}

export interface RepoVerifyResult {
  parsed?: ParsedRepoManifest;
  problems: VerifyProblem[];
  artifactsChecked: number;
  artifactsTotal: number;
  bytesChecked: number;
  /** Artifact path → the file it was written to. */
  written: Map<string, string>;
  /** Whether the git history was indexed into gitDir. */
  historyIndexed: boolean;
  /**
   * Artifacts whose problem is git's, on content whose every chunk hashed right (its size checked:
   * the chunks' recorded lengths add up to it): what `sizeCheckOf` counts as checked.
   */
  gitFailed?: Set<string>;
}

/**
 * What a verify's `size_ok` says of a repository snapshot: every artifact's size against the manifest's.
 * `failed`: an artifact's size differs; `unchecked`: artifacts whose reading stopped (another problem)
 * before their size was known. Artifacts read whole whose SHA-256 or JSON then failed count as checked.
 */
export function sizeCheckOf(r: RepoVerifyResult): { failed: boolean; unchecked: number } {
  if (!r.parsed) return { failed: false, unchecked: r.artifactsTotal };
  const failed = r.problems.some((p) => isSizeProblem(p.message));
  const after = new Set(
    r.problems
      .filter((p) => p.path && (isAfterSizeProblem(p.message) || r.gitFailed?.has(p.path)))
      .map((p) => p.path),
  );
  return { failed, unchecked: Math.max(0, r.artifactsTotal - r.artifactsChecked - after.size) };
}

/** A git failure on content whose every chunk hashed right is damage at the source (exit 2). */
function asProblem(err: unknown, path?: string, res?: RepoVerifyResult): VerifyProblem {
  if (res && path && gitFailedOnContent(err)) {
    res.gitFailed ??= new Set();
    res.gitFailed.add(path);
  }
  const code = err instanceof SnapshotError ? (gitFailedOnContent(err) ? 'BUNDLE_DAMAGED' : err.code) : 'IO';
  return { code, message: (err as Error).message, ...(path ? { path } : {}) };
}

/**
 * Every rule a repository manifest must satisfy before restore acts on it, and that verify reports: the
 * rules of a v2 bundle's manifest (format/rules.ts: paths and order, identity, the git block) applied to
 * its bundle view, with the git history in the git bundle's place; the history at its path; and the
 * refs: `HEAD` (naming HEAD's commit) or valid names under `refs/`, sorted, each once, and only with a
 * history. Pure.
 */
export function repoManifestProblems(m: RepoManifest): VerifyProblem[] {
  const out: VerifyProblem[] = [];
  for (const a of m.artifacts) {
    if (a.kind === 'git_bundle')
      out.push({
        code: 'UNSAFE_ENTRY',
        message: 'a repository snapshot carries its history as git packs, not a git bundle',
        path: a.path_in_bundle,
      });
    if (a.kind === GIT_HISTORY_KIND && a.path_in_bundle !== GIT_HISTORY_PATH)
      out.push({
        code: 'UNSAFE_ENTRY',
        message: `git history must be at ${GIT_HISTORY_PATH}`,
        path: a.path_in_bundle,
      });
  }
  const view = bundleView(m);
  const asHistory = (s: string) => s.replaceAll(GIT_BUNDLE_PATH, GIT_HISTORY_PATH);
  for (const p of manifestProblems({ manifest: view, raw: {}, version: 2, layout: 2 })) {
    out.push({
      code: p.code,
      message: asHistory(p.message),
      ...(p.path !== undefined ? { path: asHistory(p.path) } : {}),
    });
  }
  const refs = m.git_refs ?? [];
  const damaged = (message: string) => out.push({ code: 'BUNDLE_DAMAGED', message: `manifest: ${message}` });
  if (refs.length > 0 && !m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND))
    damaged('git_refs without a git history');
  let prev: string | undefined;
  for (const r of refs) {
    // one object format: every ref's id as long as HEAD's
    if (r.oid.length !== m.git.head_oid.length)
      damaged(`git_refs: ${JSON.stringify(r.name)} names an object id of another format than git.head_oid`);
    if (r.name === 'HEAD') {
      if (r.oid !== m.git.head_oid) damaged(`git_refs: HEAD ${r.oid} is not git.head_oid`);
    } else if (!r.name.startsWith('refs/')) {
      damaged(`git_refs: ${JSON.stringify(r.name)} is neither HEAD nor under refs/`);
    } else {
      const bad = refNameProblem(r.name);
      if (bad) damaged(`git_refs: ${JSON.stringify(r.name)} ${bad}`);
    }
    if (prev !== undefined && !(prev < r.name))
      damaged(`git_refs: ${JSON.stringify(r.name)} is listed twice or out of order`);
    prev = r.name;
  }
  const conflict = refNamesConflict(refs.map((r) => r.name));
  if (conflict) damaged(`git_refs ${conflict}`);
  return out;
}

export async function verifyRepoSnapshot(
  repo: Repository,
  id: string,
  opts: RepoVerifyOptions = {},
): Promise<RepoVerifyResult> {
  const res: RepoVerifyResult = {
    problems: [],
    artifactsChecked: 0,
    artifactsTotal: 0,
    bytesChecked: 0,
    written: new Map(),
    historyIndexed: false,
  };
  try {
    res.parsed = await loadSnapshot(repo, id);
  } catch (err) {
    if (!(err instanceof SnapshotError) || (err.exitCode !== 2 && err.code !== 'NOT_FOUND')) throw err;
    if (err.code === 'NOT_FOUND') throw err;
    res.problems.push(asProblem(err));
    return res;
  }
  const m = res.parsed.manifest;
  res.artifactsTotal = m.artifacts.length;
  res.problems.push(...repoManifestProblems(m));
  if (res.problems.length > 0) return res;
  await repo.ensureIndex();
  // Each artifact on its own: a content problem is reported for it, and the others are still read.
  const one = async (a: RepoArtifact): Promise<void> => {
    try {
      if (a.kind === GIT_HISTORY_KIND) {
        // the caller made gitDir with git's default format: a sha256 history needs a sha256 repository
        if (opts.gitDir) await ensureObjectFormat(opts.gitDir, objectFormatOf(m.git.head_oid));
        for (const [i, p] of (a.packs ?? []).entries()) {
          const what = `${a.path_in_bundle} pack ${i}`;
          if (opts.gitDir)
            await indexPack(opts.gitDir, counted(readContent(repo, p, what), res, opts), p.size_bytes);
          else for await (const _ of counted(readContent(repo, p, what), res, opts));
        }
        res.historyIndexed = opts.gitDir !== undefined;
      } else {
        const target = opts.target?.(a);
        if (target) {
          await mkdir(dirname(target), { recursive: true });
          await writeContent(repo, a, target, a.path_in_bundle);
          res.bytesChecked += a.size_bytes;
          opts.onBytes?.(res.bytesChecked);
          res.written.set(a.path_in_bundle, target);
        } else for await (const _ of counted(readContent(repo, a, a.path_in_bundle), res, opts));
      }
      res.artifactsChecked++;
    } catch (err) {
      if (!isContentError(err)) throw err;
      res.problems.push(asProblem(err, a.path_in_bundle, res));
    }
  };
  // A state value is read whole and parsed, as a bundle's verify and restore do: its blob's hash being
  // right says nothing of whether it is JSON (a hostile or buggy writer), and restore would refuse it.
  const state = async (a: RepoArtifact): Promise<void> => {
    try {
      if (a.size_bytes > MAX_MANIFEST_BYTES)
        throw new BundleDamagedError(`state value of ${a.size_bytes} bytes exceeds ${MAX_MANIFEST_BYTES}`);
      const parts: Buffer[] = [];
      for await (const b of counted(readContent(repo, a, a.path_in_bundle), res, opts)) parts.push(b);
      const data = Buffer.concat(parts);
      stateValueOf(data, a.path_in_bundle);
      const target = opts.target?.(a);
      if (target) {
        await mkdir(dirname(target), { recursive: true });
        writeFileSync(target, data, { flag: 'wx', mode: 0o600 });
        res.written.set(a.path_in_bundle, target);
      }
      res.artifactsChecked++;
    } catch (err) {
      if (!isContentError(err)) throw err;
      res.problems.push(asProblem(err, a.path_in_bundle, res));
    }
  };
  const all = m.artifacts.filter((a) => !opts.skip?.(a));
  for (const a of all) if (a.kind.startsWith('state_')) await state(a);
  const wanted = all.filter((a) => !a.kind.startsWith('state_'));
  // git indexes the history's packs in its own process while the rest streams.
  const history = wanted.find((a) => a.kind === GIT_HISTORY_KIND);
  const historyDone = history ? one(history) : Promise.resolve();
  historyDone.catch(() => {}); // awaited below
  let tree: Promise<void> = Promise.resolve();
  try {
    const rest = wanted.filter((a) => a !== history);
    // The artifacts of one blob each (memory files: mostly file-system work) alongside the chunked ones
    // (databases: reads, decompression and hashing), which go one at a time.
    const lanes = opts.target ? opts.lanes : undefined;
    const whole = readWhole(
      repo,
      rest.filter((a) => !a.chunks && !a.chunk_lists),
      res,
      opts,
      one,
      lanes?.[0],
    );
    whole.catch(() => {}); // awaited below
    const afterTree = opts.afterTree;
    if (afterTree) {
      tree = Promise.all([historyDone, whole]).then(async () => {
        if (res.problems.length > 0) return;
        try {
          await afterTree();
        } catch (err) {
          // git failing on a history whose every chunk hashed right: damage at the source
          if (!isContentError(err)) throw err;
          res.problems.push(asProblem(err, history?.path_in_bundle, res));
        }
      });
      tree.catch(() => {}); // awaited below
    }
    try {
      // With a tree to build, the memory files come first: the repository is then built (git, in
      // processes of its own) while the databases stream, instead of after them.
      // (With lanes, the memory files are written on the first while the databases stream beside them.)
      if (afterTree && !lanes?.length) await whole;
      const chunked = rest.filter((a) => a.chunks || a.chunk_lists);
      if (lanes?.length) await onLanes(repo, chunked, lanes, res, opts, one, whole);
      else for (const a of chunked) await one(a);
      await whole;
      if (res.problems.length === 0) opts.onStreamed?.(res.written);
    } finally {
      await whole;
    }
  } finally {
    await Promise.allSettled([historyDone, tree]);
    await historyDone;
  }
  await tree;
  return res;
}

/**
 * The chunked artifacts `list` written on `lanes` (RepoVerifyOptions.lanes): each lane takes the largest
 * artifact left when it is free, so both finish close together. An artifact with no target is read
 * here (`one`). A content problem is reported for its artifact, as `one` does, and the others still go.
 */
async function onLanes(
  repo: Repository,
  list: readonly RepoArtifact[],
  lanes: readonly ContentLane[],
  res: RepoVerifyResult,
  opts: RepoVerifyOptions,
  one: (a: RepoArtifact) => Promise<void>,
  /** The first lane writes the memory files (readWhole) until this settles: it starts then. */
  firstLaneBusy: Promise<unknown>,
): Promise<void> {
  const queue = [...list].sort((x, y) => y.size_bytes - x.size_bytes);
  const lane = async (l: ContentLane, i: number) => {
    if (i === 0) await firstLaneBusy.catch(() => {});
    for (let a = queue.shift(); a; a = queue.shift()) {
      const target = opts.target?.(a);
      if (!target) {
        await one(a);
        continue;
      }
      let partial = 0; // progress shown as runs are written; counted as checked only once all is
      try {
        await mkdir(dirname(target), { recursive: true });
        await writeContentOn(repo, l, a, target, a.path_in_bundle, (bytes) => {
          partial += bytes;
          res.bytesChecked += bytes;
          opts.onBytes?.(res.bytesChecked);
        });
        res.written.set(a.path_in_bundle, target);
        res.artifactsChecked++;
      } catch (err) {
        res.bytesChecked -= partial;
        if (!isContentError(err)) {
          queue.length = 0; // the other lanes stop after their artifact
          throw err;
        }
        res.problems.push(asProblem(err, a.path_in_bundle, res));
      }
    }
  };
  const running = lanes.map(lane);
  // every lane has ended (a file half-written by one is not left open) before a failure is passed on
  await Promise.allSettled(running);
  await Promise.all(running);
}

/**
 * Content damage (exit 2) or a git failure on content that hashed right: reported, not thrown. A git
 * that never ran (its host ended, it could not start) is thrown: this host's failure, not the content's.
 */
const isContentError = (err: unknown): err is SnapshotError =>
  err instanceof SnapshotError && (err.exitCode === 2 || gitFailedOnContent(err));

/** The lane's side of readWhole's batches. */
const FILES = packageModule(import.meta.url, 'write-files');
/** A batch goes to the lane at this many files or bytes; two are in flight at most. */
const BATCH_FILES = 128;
const BATCH_BYTES = 512 * 1024;
const BATCHES_IN_FLIGHT = 2;

/**
 * Artifacts stored as one blob each (memory files, state values, small databases: the blob's id is the
 * artifact's SHA-256, so the blob's check is the artifact's), read in one pass over the packs (runs of
 * neighbouring blobs are one ranged read) and written whole, each file once its blob checked. Writes are
 * blocking calls: through the thread pool, thousands of small files cost about twice the CPU, its
 * hand-offs more than the writes themselves on these machines (docs/operations.md, "stop 35"). With a
 * `lane`, in batches on that thread, so that this one reads on (the databases' runs beside them); else
 * here. After a content problem, the artifacts not done yet are read one by one, so each problem names
 * its artifact.
 */
async function readWhole(
  repo: Repository,
  list: readonly RepoArtifact[],
  res: RepoVerifyResult,
  opts: RepoVerifyOptions,
  one: (a: RepoArtifact) => Promise<void>,
  lane?: ContentLane,
): Promise<void> {
  const made = new Set<string>();
  const dirOf = (target: string): string | undefined => {
    const dir = dirname(target);
    if (made.has(dir)) return undefined;
    made.add(dir);
    return dir;
  };
  let batch: { a: RepoArtifact; target: string; data: Buffer }[] = [];
  let batchBytes = 0;
  const inFlight: Promise<void>[] = [];
  const send = async () => {
    const files = batch;
    batch = [];
    batchBytes = 0;
    const data = Buffer.allocUnsafe(files.reduce((n, f) => n + f.data.length, 0));
    const ends: number[] = [];
    let at = 0;
    for (const f of files) {
      at += f.data.copy(data, at);
      ends.push(at);
    }
    const b: FileBatch = {
      dirs: files.flatMap((f) => dirOf(f.target) ?? []),
      paths: files.map((f) => f.target),
      ends,
      data,
    };
    const sent = lane!.call<void>(FILES, 'writeFiles', b).then(() => {
      for (const f of files) res.written.set(f.a.path_in_bundle, f.target);
    });
    sent.catch(() => {}); // awaited below
    inFlight.push(sent);
    if (inFlight.length >= BATCHES_IN_FLIGHT) await inFlight.shift();
  };
  const settle = async () => {
    if (batch.length > 0) await send();
    while (inFlight.length > 0) await inFlight.shift();
  };
  const done = async (a: RepoArtifact, data: Buffer) => {
    const target = opts.target?.(a);
    if (target && lane) {
      batch.push({ a, target, data });
      batchBytes += data.length;
      if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) await send();
    } else if (target) {
      const dir = dirOf(target);
      if (dir) mkdirSync(dir, { recursive: true });
      writeFileSync(target, data, { flag: 'wx', mode: 0o600 });
      res.written.set(a.path_in_bundle, target);
    }
    res.bytesChecked += data.length;
    opts.onBytes?.(res.bytesChecked);
    res.artifactsChecked++;
  };
  try {
    for (const a of list) if (a.size_bytes === 0) await done(a, Buffer.alloc(0));
    const full = list.filter((a) => a.size_bytes > 0);
    let next = 0;
    try {
      for await (const blob of repo.streamBlobs(
        full.map((a) => a.sha256),
        4,
        1024 * 1024,
      )) {
        const a = full[next]!;
        if (blob.length !== a.size_bytes) throw sizeDiffers(a.path_in_bundle, blob.length, a.size_bytes);
        await done(a, blob);
        next++;
      }
      await settle();
    } catch (err) {
      if (!isContentError(err)) throw err;
      await settle();
      for (const a of full.slice(next)) await one(a);
    }
  } finally {
    // every batch written (or failed) before the caller goes on, or removes the staging
    await Promise.allSettled(inFlight);
  }
}

async function* counted(
  src: AsyncIterable<Buffer>,
  res: RepoVerifyResult,
  opts: RepoVerifyOptions,
): AsyncGenerator<Buffer> {
  for await (const b of src) {
    res.bytesChecked += b.length;
    opts.onBytes?.(res.bytesChecked);
    yield b;
  }
}
