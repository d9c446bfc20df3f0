// Owns capturing one agent, in two phases. captureAgent() runs while the caller holds the write gate and
// only copies: the four SQLite databases (consistent `VACUUM INTO` copies, spread over the worker
// threads; the caller is told as each worker's copies are complete), the memdir's history (git bundle) and working
// tree, and the state values. hashCapture() runs after the gate is released and hashes what was
// copied, so writers wait for the copy only.
// The result is the list of artifacts in manifest order, with sizes and hashes of the exact bytes.

import { lstat, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { agentComponentsInMemdir } from '../agent/components-in-memdir.js';
import type { StateProvider } from '../agent/state.js';
import {
  type ArtifactKind,
  GIT_BUNDLE_PATH,
  MAX_MANIFEST_BYTES,
  MEMORY_FILES_PREFIX,
  NO_REPO_GIT,
  sqliteKind,
  sqlitePath,
  stateKind,
  statePath,
  ZERO_OID,
} from '../format/constants.js';
import { headRefProblem } from '../format/git-bundle.js';
import { scanJson, valueDepthProblem } from '../format/json.js';
import { jsonText } from '../format/json-number.js';
import type { DatabaseInfo, GitInfo, MemdirInfo } from '../format/manifest.js';
import { freezeObjects } from '../git/freeze.js';
import {
  ambiguousRef,
  bundleHeads,
  createBundle,
  inspectRepo,
  objectFormatOf,
  type RepoInfo,
  refNames,
  refuseShallow,
} from '../git/git.js';
import { commitMeta, type GitRef, recordRefs } from '../git/history.js';
import { refuseExternalGit } from '../git/own-repository.js';
import { GitError, IoError, StateProviderError } from '../model/errors.js';
import { DB_NAMES, type DbName, STATE_KEYS } from '../model/types.js';
import { checkLiveDatabase } from '../sqlite/live-files.js';
import type { SqliteJobs } from '../sqlite/worker.js';
import { sha256Hex } from '../util/hash.js';
import { allSettledOrThrow } from '../util/settle.js';
import { captureMemdir } from './memdir.js';

/** One artifact ready to pack: its bytes are in memory (`data`) or in a staged file (`stagedPath`). */
export interface StagedArtifact {
  pathInBundle: string;
  kind: ArtifactKind;
  size: number;
  sha256: string;
  data?: Buffer;
  stagedPath?: string;
}

export interface CaptureInput {
  agentId: string;
  tenant: string;
  memdir: string;
  sqliteDir: string;
  state: StateProvider;
  stagingDir: string;
  /** Runners of the database copies (at least one; sqlite/worker.ts `sqliteRunners`). */
  sqlite: readonly SqliteJobs[];
  /**
   * How the history is captured: `bundle` (a git bundle of every ref, the default) or `refs` (only the
   * refs are recorded; the repository packs what they reach after the gate is released — objects are
   * immutable, refs are the point in time).
   */
  history?: 'bundle' | 'refs';
  /**
   * Take the memdir's history also when its `.git` reaches a repository outside the memdir (a linked
   * worktree, a submodule, alternates; git/own-repository.ts): refused by default.
   */
  allowExternalGit?: boolean;
  /**
   * Called as soon as a worker's database copies are complete (the copies of the others may still run,
   * under the gate), with that worker and what it copied: the repository plans their chunks on it then,
   * beside the main thread, without delaying a copy.
   */
  onWorkerCopied?: (worker: SqliteJobs, copied: readonly CopiedDb[]) => void;
}

export interface CopiedDb {
  db: DbName;
  stagedPath: string;
}

export interface CaptureResult {
  databases: CopiedDb[];
  databaseInfo: Record<string, DatabaseInfo>;
  state: StagedArtifact[];
  gitBundlePath?: string;
  /** `history: refs`: every ref (and a detached HEAD) at the point in time. */
  gitRefs?: GitRef[];
  /**
   * `history: refs`: a bare repository in staging holding the memdir's objects as they were at that
   * point (git/freeze.ts), to pack what the refs reach from; absent when the live ones must be read.
   */
  gitObjects?: string;
  memory: StagedArtifact[];
  git: GitInfo;
  memdir?: MemdirInfo;
  /** Whether anything of the agent exists at all (memdir, a database, a state value). */
  found: boolean;
}

/** 'dir', 'file', 'other' or undefined (absent). */
export async function pathKind(path: string): Promise<'dir' | 'file' | 'other' | undefined> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === 'ENOENT' ||
      (err as NodeJS.ErrnoException).code === 'ENOTDIR'
    ) {
      return undefined;
    }
    throw new IoError(`checking ${path}`, err);
  }
}

function gitBlock(info: RepoInfo): GitInfo {
  if (info.repository === 'absent') return { ...NO_REPO_GIT, repository: 'absent', detached: false };
  const ref = info.headRef ? { head_ref: info.headRef } : {};
  if (info.repository === 'empty') {
    return {
      head_oid: ZERO_OID,
      head_subject: '(no commits)',
      head_author: '',
      head_ts_ms: 0,
      repository: 'empty',
      ...ref,
      detached: false,
    };
  }
  return {
    head_oid: info.headOid!,
    head_subject: info.subject,
    head_author: info.author,
    head_ts_ms: info.authorTsMs,
    repository: 'present',
    ...ref,
    detached: info.detached,
  };
}

/**
 * Splits jobs over the workers by size (largest first, to the least loaded worker); runs each lane in
 * order, then calls `laneDone` with the lane's worker and jobs. A lane's jobs are all given to its
 * worker at once (a worker runs them in order, back to back): given one at a time, a thread waited for
 * the main thread between two copies, and under the write gate the main thread reads the memdir
 * without turning its event loop (a lane of three databases of ref-170 idled ~150 ms that way).
 * Every job of a lane has ended before a failure is rethrown.
 */
async function spread<T extends { size: number }, R>(
  jobs: readonly T[],
  workers: readonly SqliteJobs[],
  run: (w: SqliteJobs, job: T) => Promise<R>,
  laneDone?: (w: SqliteJobs, jobs: readonly T[]) => void,
): Promise<Map<T, R>> {
  const lanes = workers.map((w) => ({ w, load: 0, jobs: [] as T[] }));
  for (const job of [...jobs].sort((a, b) => b.size - a.size)) {
    const lane = lanes.reduce((x, y) => (y.load < x.load ? y : x));
    lane.load += job.size;
    lane.jobs.push(job);
  }
  const out = new Map<T, R>();
  await allSettledOrThrow(
    lanes.map(async (lane) => {
      const results = await allSettledOrThrow(lane.jobs.map((job) => run(lane.w, job)));
      for (const [i, job] of lane.jobs.entries()) out.set(job, results[i] as R);
      if (lane.jobs.length > 0) laneDone?.(lane.w, lane.jobs);
    }),
  );
  return out;
}

async function copyDatabases(input: CaptureInput) {
  const live: Array<{ db: DbName; src: string; dst: string; size: number }> = [];
  for (const db of DB_NAMES) {
    const src = join(input.sqliteDir, `${db}.sqlite`);
    // not followed: a symlink (even dangling), or a -wal/-journal/-shm one, is refused (SQLITE), here
    // at once and again by the copy just before SQLite opens it (sqlite/live-files.ts)
    if (checkLiveDatabase(src) === undefined) continue; // a database that does not exist is simply absent
    live.push({ db, src, dst: join(input.stagingDir, sqlitePath(db)), size: (await lstat(src)).size });
  }
  if (live.length > 0) await mkdir(join(input.stagingDir, 'sqlite'), { recursive: true });
  const copiedOf = ({ db, dst }: (typeof live)[number]): CopiedDb => ({ db, stagedPath: dst });
  const told = input.onWorkerCopied;
  const copied = await spread(
    live,
    input.sqlite,
    (w, job) => w.copy(job.src, job.dst),
    told && ((w, jobs) => told(w, jobs.map(copiedOf))),
  );
  const databaseInfo: Record<string, DatabaseInfo> = {};
  for (const job of live) databaseInfo[job.db] = copied.get(job)!;
  return { databases: live.map(copiedOf), databaseInfo };
}

async function captureState(input: CaptureInput): Promise<StagedArtifact[]> {
  const out: StagedArtifact[] = [];
  for (const key of STATE_KEYS) {
    const value = await input.state.capture(key, input.agentId, input.tenant);
    if (value === undefined) continue;
    // the iterative walk first: JSON.stringify of a value nested thousands deep overflows the stack
    const deep = valueDepthProblem(value);
    if (deep !== undefined)
      throw new StateProviderError(`state value ${key} cannot be stored in a bundle: ${deep}`);
    const text = `${jsonText(value, 2)}\n`;
    // what every reader refuses (docs/format.md §8) is refused here, not written into a snapshot that
    // could then never be restored (the indented text is larger than the file the provider read);
    // before the scan below, which a text that large need not wait for
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MAX_MANIFEST_BYTES)
      throw new StateProviderError(
        `state value ${key} cannot be stored in a bundle: its JSON text is ${bytes} bytes, more than the ${MAX_MANIFEST_BYTES} a bundle's state value may have`,
      );
    try {
      scanJson(text); // what restore accepts: a value nested deeper than the limit could not come back
    } catch (err) {
      throw new StateProviderError(
        `state value ${key} cannot be stored in a bundle: ${(err as Error).message}`,
      );
    }
    const data = Buffer.from(text, 'utf8');
    out.push({
      pathInBundle: statePath(key),
      kind: stateKind(key),
      size: data.length,
      sha256: sha256Hex(data),
      data,
    });
  }
  return out;
}

/** Where in staging the memdir's objects are frozen for a repository snapshot (git/freeze.ts). */
const FROZEN_GIT = 'git-frozen';

async function captureMemdirAndHistory(input: CaptureInput) {
  const kind = await pathKind(input.memdir);
  if (kind === undefined) {
    return {
      git: gitBlock({ repository: 'absent', detached: false, subject: '', author: '', authorTsMs: 0 }),
      memory: [] as StagedArtifact[],
    };
  }
  if (kind !== 'dir') throw new IoError(`memdir ${input.memdir} is not a directory`);
  const filesDir = join(input.stagingDir, MEMORY_FILES_PREFIX);
  const [history, tree] = await allSettledOrThrow([
    (async () => {
      // before any git process reads it: a .git reaching elsewhere would bring that history in
      if (!input.allowExternalGit) await refuseExternalGit(input.memdir);
      let info = await inspectRepo(input.memdir);
      if (info.repository !== 'absent') await refuseShallow(input.memdir);
      // what no restore can set again (restore refuses such a manifest): refused before anything is
      // published (stop 56: git lets HEAD point at a tag, `git symbolic-ref HEAD refs/tags/x`)
      const headProblem = info.headRef === undefined ? undefined : headRefProblem(info.headRef);
      if (headProblem)
        throw new GitError(
          `the memdir ${input.memdir}'s HEAD points at ${info.headRef}, which ${headProblem}: a restore could not set it again; check out a branch (git checkout <branch>)`,
        );
      if (input.history === 'refs') {
        // every ref, also when HEAD is unborn (an orphan branch beside branches with commits): the
        // history is the refs' (as a git bundle of every ref is), not only HEAD's
        let refs: GitRef[] = [];
        for (let tries = 1; info.repository !== 'absent'; tries++) {
          refs = await recordRefs(input.memdir, info.detached ? info.headOid : undefined);
          const tips = new Map(refs.map((r) => [r.name, r.oid]));
          const head = await headAsRecorded(input.memdir, info, tips);
          if (head) {
            info = head;
            break;
          }
          if (tries === 3) throw movedRefs(input.memdir, [info.headRef!]);
          info = await inspectRepo(input.memdir);
        }
        // what the refs reach, kept as it is now for the packing after the gate (git/freeze.ts)
        const objects =
          refs.length > 0
            ? await freezeObjects(
                input.memdir,
                join(input.stagingDir, FROZEN_GIT),
                objectFormatOf(refs[0]!.oid),
              )
            : undefined;
        return { info, bundle: undefined, refs, objects };
      }
      const dst = join(input.stagingDir, GIT_BUNDLE_PATH);
      await mkdir(join(input.stagingDir, 'git'), { recursive: true });
      // git leaves out of the bundle a ref that moved between its walk and its writing of the bundle's
      // refs, and refuses a bundle left with none: a commit landed meanwhile (stop 55). Then, or when a
      // ref that is there now (HEAD's branch included) is not in the bundle, the history is read again.
      let bundled = false;
      for (let tries = 1; ; tries++) {
        let before: Set<string>;
        try {
          // the refs there before the bundle: one created during or after it was not left out by git
          before = new Set(info.repository === 'absent' ? [] : await refNames(input.memdir));
          bundled = await createBundle(input.memdir, info, dst);
        } catch (err) {
          if (
            tries === 3 ||
            !(err instanceof GitError) ||
            !/Refusing to create empty bundle/.test(err.message)
          )
            throw err;
          info = await inspectRepo(input.memdir);
          continue;
        }
        if (!bundled) break;
        const [heads, names] = await Promise.all([bundleHeads(input.memdir, dst), refNames(input.memdir)]);
        // a name git cannot bundle (HEAD too, when detached): no second try would bring it
        const all = new Set(names);
        for (const name of info.detached ? ['HEAD', ...names] : names) {
          const other = heads.has(name) ? undefined : ambiguousRef(name, all);
          if (other !== undefined)
            throw new GitError(
              `the memdir ${input.memdir} has the ref ${name} beside ${other}, a name git takes for it too: git leaves ${name} out of a bundle, so the bundle store cannot record it; rename or delete one of them (git update-ref -d), or use the repository store`,
            );
        }
        const head = await headAsRecorded(input.memdir, info, heads);
        const missing = names.filter((name) => before.has(name) && !heads.has(name));
        if (head && missing.length === 0) {
          info = head;
          break;
        }
        const headName = info.headRef ?? 'HEAD';
        if (!head && !missing.includes(headName)) missing.unshift(headName);
        if (tries === 3) throw movedRefs(input.memdir, missing);
        info = await inspectRepo(input.memdir);
      }
      return { info, bundle: bundled ? dst : undefined, refs: undefined, objects: undefined };
    })(),
    captureMemdir(
      input.memdir,
      filesDir,
      agentComponentsInMemdir(input.memdir, input.sqliteDir, input.state, input.agentId, input.tenant),
    ),
  ]);
  const memory: StagedArtifact[] = tree.files.map((f) => ({
    pathInBundle: `${MEMORY_FILES_PREFIX}${f.rel}`,
    kind: 'memory_file',
    size: f.size,
    sha256: f.sha256,
    ...(f.data ? { data: f.data } : { stagedPath: f.stagedPath! }),
  }));
  const memdir: MemdirInfo = { files: tree.files.length, bytes: tree.bytes, skipped: tree.skipped };
  return {
    git: gitBlock(history.info),
    gitBundlePath: history.bundle,
    gitRefs: history.refs,
    gitObjects: history.objects,
    memory,
    memdir,
  };
}

/**
 * HEAD as the history recorded has it (`tips`: the recorded refs, or a bundle's heads, by name). A commit
 * made in the memdir between reading HEAD and recording the history (by a writer that does not take the
 * gate: a person's or a tool's `git commit`) moved HEAD's branch past the HEAD read, and the snapshot
 * recorded a HEAD its own history contradicts: published, and refused as damaged by every verify,
 * restore and export (stop 55, a daemon soak: 12 of 318 scheduled snapshots). HEAD on a branch takes
 * the branch's recorded tip (its commit's subject and author read again); undefined when the branch is
 * not among them (gone meanwhile: read again). A detached HEAD likewise takes the recorded `HEAD` (the
 * refs record the HEAD read; a bundle carries HEAD as git read it, or leaves it out when it moved: stop
 * 56). An unborn HEAD is as read.
 */
async function headAsRecorded(
  memdir: string,
  info: RepoInfo,
  tips: ReadonlyMap<string, string>,
): Promise<RepoInfo | undefined> {
  if (info.repository !== 'present' || info.headOid === undefined) return info;
  const tip = tips.get(info.headRef ?? 'HEAD');
  if (tip === undefined) return undefined;
  if (tip === info.headOid) return info;
  return { ...info, headOid: tip, ...(await commitMeta(memdir, tip)) };
}

/** HEAD's branch (or, in a bundle, another ref) kept going away or moving while the history was recorded. */
const movedRefs = (memdir: string, refs: readonly string[]): GitError =>
  new GitError(
    `the memdir ${memdir} changed while its history was recorded: ${refs.slice(0, 5).join(', ')}${refs.length > 5 ? ` and ${refs.length - 5} more` : ''} moved, went away or was left out of the history git recorded, three times; snapshot again`,
  );

/** Phase 1, under the write gate: copies the agent into `input.stagingDir` (existing, empty). */
export async function captureAgent(input: CaptureInput): Promise<CaptureResult> {
  const [dbs, state, mem] = await allSettledOrThrow([
    copyDatabases(input),
    captureState(input),
    captureMemdirAndHistory(input),
  ]);
  return {
    ...dbs,
    state,
    ...(mem.gitBundlePath ? { gitBundlePath: mem.gitBundlePath } : {}),
    ...('gitRefs' in mem && mem.gitRefs ? { gitRefs: mem.gitRefs } : {}),
    ...('gitObjects' in mem && mem.gitObjects ? { gitObjects: mem.gitObjects } : {}),
    memory: mem.memory,
    git: mem.git,
    ...(mem.memdir ? { memdir: mem.memdir } : {}),
    found: dbs.databases.length > 0 || state.length > 0 || mem.memdir !== undefined,
  };
}

/** Phase 2, after the gate is released: hashes the staged copies; returns artifacts in manifest order. */
export async function hashCapture(
  c: CaptureResult,
  workers: readonly SqliteJobs[],
): Promise<StagedArtifact[]> {
  const paths = [...c.databases.map((d) => d.stagedPath), ...(c.gitBundlePath ? [c.gitBundlePath] : [])];
  const files = await Promise.all(paths.map(async (path) => ({ path, size: (await stat(path)).size })));
  const hashed = await spread(files, workers, (w, f) => w.hash(f.path));
  const byPath = new Map([...hashed].map(([f, h]) => [f.path, h]));
  const staged = (pathInBundle: string, kind: ArtifactKind, path: string): StagedArtifact => ({
    pathInBundle,
    kind,
    ...byPath.get(path)!,
    stagedPath: path,
  });
  return [
    ...c.databases.map((d) => staged(sqlitePath(d.db), sqliteKind(d.db), d.stagedPath)),
    ...c.state,
    ...(c.gitBundlePath ? [staged(GIT_BUNDLE_PATH, 'git_bundle', c.gitBundlePath)] : []),
    ...c.memory,
  ];
}
