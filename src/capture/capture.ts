// Owns capturing one agent into a staging directory: the four SQLite databases (consistent copies in a
// worker thread), the memdir's history (git bundle) and working tree, and the state values. The caller
// holds the write gate for the duration, so every component shows the same instant. Returns the staged
// artifacts in manifest order, with sizes and hashes of the exact staged bytes.

import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StateProvider } from '../agent/state.js';
import {
  type ArtifactKind,
  GIT_BUNDLE_PATH,
  MEMORY_FILES_PREFIX,
  NO_REPO_GIT,
  sqliteKind,
  sqlitePath,
  stateKind,
  statePath,
  ZERO_OID,
} from '../format/constants.js';
import type { DatabaseInfo, GitInfo, MemdirInfo } from '../format/manifest.js';
import { createBundle, inspectRepo, type RepoInfo } from '../git/git.js';
import { IoError } from '../model/errors.js';
import { DB_NAMES, STATE_KEYS } from '../model/types.js';
import type { SqliteWorker } from '../sqlite/worker.js';
import { sha256File, sha256Hex } from '../util/hash.js';
import { allSettledOrThrow } from '../util/settle.js';
import { captureMemdir } from './memdir.js';

export interface StagedArtifact {
  pathInBundle: string;
  kind: ArtifactKind;
  size: number;
  sha256: string;
  stagedPath: string;
}

export interface CaptureInput {
  agentId: string;
  tenant: string;
  memdir: string;
  sqliteDir: string;
  state: StateProvider;
  stagingDir: string;
  sqlite: SqliteWorker;
}

export interface CaptureResult {
  artifacts: StagedArtifact[];
  git: GitInfo;
  memdir?: MemdirInfo;
  databases: Record<string, DatabaseInfo>;
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

async function captureDatabases(input: CaptureInput) {
  const out: StagedArtifact[] = [];
  const databases: Record<string, DatabaseInfo> = {};
  for (const db of DB_NAMES) {
    const src = join(input.sqliteDir, `${db}.sqlite`);
    const kind = await pathKind(src);
    if (kind === undefined) continue; // a database that does not exist is simply absent
    if (kind !== 'file') throw new IoError(`${src} is not a regular file`);
    const dst = join(input.stagingDir, sqlitePath(db));
    await mkdir(join(input.stagingDir, 'sqlite'), { recursive: true });
    const copy = await input.sqlite.copy(src, dst);
    databases[db] = { journal_mode: copy.journal_mode, page_size: copy.page_size };
    out.push({
      pathInBundle: sqlitePath(db),
      kind: sqliteKind(db),
      size: copy.size,
      sha256: copy.sha256,
      stagedPath: dst,
    });
  }
  return { artifacts: out, databases };
}

async function captureState(input: CaptureInput): Promise<StagedArtifact[]> {
  const out: StagedArtifact[] = [];
  for (const key of STATE_KEYS) {
    const value = await input.state.capture(key, input.agentId, input.tenant);
    if (value === undefined) continue;
    const bytes = Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8');
    const dst = join(input.stagingDir, statePath(key));
    await mkdir(join(input.stagingDir, 'state'), { recursive: true });
    await writeFile(dst, bytes, { flag: 'wx', mode: 0o600 });
    out.push({
      pathInBundle: statePath(key),
      kind: stateKind(key),
      size: bytes.length,
      sha256: sha256Hex(bytes),
      stagedPath: dst,
    });
  }
  return out;
}

async function captureMemdirAndHistory(input: CaptureInput) {
  const kind = await pathKind(input.memdir);
  if (kind === undefined)
    return {
      git: gitBlock({ repository: 'absent', detached: false, subject: '', author: '', authorTsMs: 0 }),
      artifacts: [] as StagedArtifact[],
    };
  if (kind !== 'dir') throw new IoError(`memdir ${input.memdir} is not a directory`);
  const filesDir = join(input.stagingDir, MEMORY_FILES_PREFIX);
  await mkdir(filesDir, { recursive: true });
  const [history, tree] = await allSettledOrThrow([
    (async () => {
      const info = await inspectRepo(input.memdir);
      const dst = join(input.stagingDir, GIT_BUNDLE_PATH);
      await mkdir(join(input.stagingDir, 'git'), { recursive: true });
      const made = await createBundle(input.memdir, info, dst);
      const artifact: StagedArtifact | undefined = made
        ? { pathInBundle: GIT_BUNDLE_PATH, kind: 'git_bundle', ...(await sha256File(dst)), stagedPath: dst }
        : undefined;
      return { info, artifact };
    })(),
    captureMemdir(input.memdir, filesDir),
  ]);
  const artifacts: StagedArtifact[] = history.artifact ? [history.artifact] : [];
  for (const f of tree.files) {
    artifacts.push({
      pathInBundle: `${MEMORY_FILES_PREFIX}${f.rel}`,
      kind: 'memory_file',
      size: f.size,
      sha256: f.sha256,
      stagedPath: join(filesDir, f.rel),
    });
  }
  const memdir: MemdirInfo = { files: tree.files.length, bytes: tree.bytes, skipped: tree.skipped };
  return { git: gitBlock(history.info), artifacts, memdir };
}

/** Captures the agent into `input.stagingDir` (which must exist and be empty). */
export async function captureAgent(input: CaptureInput): Promise<CaptureResult> {
  const [dbs, state, mem] = await allSettledOrThrow([
    captureDatabases(input),
    captureState(input),
    captureMemdirAndHistory(input),
  ]);
  return {
    artifacts: [...dbs.artifacts, ...state, ...mem.artifacts],
    git: mem.git,
    ...(mem.memdir ? { memdir: mem.memdir } : {}),
    databases: dbs.databases,
    found: dbs.artifacts.length > 0 || state.length > 0 || mem.memdir !== undefined,
  };
}
