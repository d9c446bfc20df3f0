// Owns materialising one side of a diff in a temporary directory: a snapshot bundle (streamed through
// verify, so only verified bytes are compared; v1 and v2 layouts, a v1 bundle's git data quarantined
// into a repository of its own), a repository snapshot (its chunks read from the packs, each checked;
// what both sides hold identically is not read at all; its git packs indexed into a scratch repository
// with its refs), or the live agent (captured exactly as a snapshot captures it, under the write gate).
// Each side ends up as a working tree on disk, database copies, state values, and the source of its git
// history.

import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { captureAgent, hashCapture } from '../capture/capture.js';
import type { Identity } from '../crypto/age.js';
import { GIT_BUNDLE_PATH, GIT_V1_PREFIX, MEMORY_FILES_PREFIX, statePath } from '../format/constants.js';
import { stateValueOf } from '../format/json.js';
import type { Manifest } from '../format/manifest.js';
import { initBare } from '../git/git.js';
import { setHead, writeRefs } from '../git/history.js';
import { isV1GitData, quarantineV1 } from '../git/quarantine.js';
import { EncryptionError } from '../model/errors.js';
import { DB_NAMES, type DbName, STATE_KEYS, type StateKey } from '../model/types.js';
import { bundleView, GIT_HISTORY_KIND } from '../repository/manifest.js';
import { bundleHasMemdir } from '../restore/stage.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { liveDatabaseRunners } from '../sqlite/worker.js';
import { gitWriteFailure } from '../util/disk-full.js';
import { problemsError, refused, verifyBundle } from '../verify/verify.js';

export interface Side {
  /** The snapshot id, or `live`. */
  label: string;
  /** Working tree files, relative path → SHA-256. */
  files: Map<string, string>;
  /** Directory holding the working tree (empty when there is no memdir). */
  tree: string;
  /** Database copies on disk (a database identical to the other side's may be on that side only). */
  dbs: Map<DbName, string>;
  /** SHA-256 of each database this side has, written to disk or not. */
  dbHashes: Map<DbName, string>;
  state: Map<StateKey, unknown>;
  /** Where git can fetch this side's history from (a bundle file or a repository), if any. */
  history?: { kind: 'bundle' | 'repo'; path: string };
  head?: string;
  memdir: boolean;
}

/** What a side holds, by hash: working-tree files (relative path) and databases. */
export interface Contents {
  files: Map<string, string>;
  dbs: Map<DbName, string>;
}

/** The contents a manifest describes (known before a byte of the body is read). */
export function contentsOf(m: Manifest): Contents {
  const c: Contents = { files: new Map(), dbs: new Map() };
  for (const a of m.artifacts) {
    if (a.kind === 'memory_file') c.files.set(a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length), a.sha256);
  }
  for (const db of DB_NAMES) {
    const a = m.artifacts.find((x) => x.path_in_bundle === `sqlite/${db}.sqlite`);
    if (a) c.dbs.set(db, a.sha256);
  }
  return c;
}

/** What a side need not write: files identical on both sides, databases the other side writes. */
export interface Skip {
  files: ReadonlySet<string>;
  dbs: ReadonlySet<DbName>;
}

export const SKIP_NOTHING: Skip = { files: new Set(), dbs: new Set() };

/**
 * A snapshot bundle, streamed and verified into `dir`. Every entry is hashed and checked; entries in
 * `skip` are not written (an unchanged file contributes nothing to a diff).
 */
export async function bundleSide(
  label: string,
  bundle: string,
  dir: string,
  identities?: readonly Identity[],
  skip: Skip = SKIP_NOTHING,
): Promise<Side> {
  const tree = join(dir, 'tree');
  await mkdir(tree, { recursive: true });
  const v = await verifyBundle(bundle, {
    ...(identities ? { identities } : {}),
    sink: {
      target(a, layout) {
        const p = a.path_in_bundle;
        if (a.kind === 'memory_file') {
          const rel = p.slice(MEMORY_FILES_PREFIX.length);
          return skip.files.has(rel) ? undefined : join(tree, rel);
        }
        if (p.startsWith('sqlite/') && skip.dbs.has(p.slice('sqlite/'.length, -'.sqlite'.length) as DbName))
          return undefined;
        if (a.kind === 'git_bundle') {
          if (layout === 2) return join(dir, 'memdir.bundle');
          const rel = p.slice(GIT_V1_PREFIX.length);
          return isV1GitData(rel) ? join(dir, 'v1-git', rel) : undefined; // config, hooks, …: hashed only
        }
        return join(dir, p);
      },
    },
  });
  if (refused(v.report)) throw problemsError(v.report.problems);
  if (!v.manifest)
    throw new EncryptionError('the bundle is age-encrypted: pass --decrypt-identity to diff it');
  const { manifest: m, layout } = v.manifest;
  const contents = contentsOf(m);
  const side: Side = {
    label,
    files: contents.files,
    tree,
    dbs: new Map(),
    dbHashes: contents.dbs,
    state: new Map(),
    memdir: bundleHasMemdir(m),
  };
  for (const db of DB_NAMES) {
    const file = v.written.get(`sqlite/${db}.sqlite`);
    if (file) side.dbs.set(db, file);
  }
  for (const key of STATE_KEYS) {
    const file = v.written.get(statePath(key));
    if (file) side.state.set(key, stateValueOf(await readFile(file), statePath(key)));
  }
  if (layout === 2 && v.written.has(GIT_BUNDLE_PATH))
    side.history = { kind: 'bundle', path: join(dir, 'memdir.bundle') };
  if (layout === 1 && v.written.has(`${GIT_V1_PREFIX}HEAD`)) {
    // the raw data becomes a repository of its own (our config, no alternates) before git reads it
    await quarantineV1(join(dir, 'v1-git'), join(dir, 'v1.git'));
    side.history = { kind: 'repo', path: join(dir, 'v1.git') };
  }
  if (m.git.repository === 'present' || (layout === 1 && side.history)) side.head = m.git.head_oid;
  return side;
}

/**
 * A repository snapshot, its chunks read from the packs and checked into `dir`. Components in `skip` are
 * not read at all (each side knows the other's hashes from the manifests); the git packs are indexed into
 * a scratch repository that gets the snapshot's refs and HEAD.
 */
export async function repositorySide(
  s: LocalSnapshotter,
  label: string,
  id: string,
  dir: string,
  identityPath: string | undefined,
  skip: Skip = SKIP_NOTHING,
): Promise<Side> {
  const tree = join(dir, 'tree');
  const history = join(dir, 'history.git');
  await mkdir(tree, { recursive: true });
  await mkdir(history, { recursive: true });
  await initBare(history);
  const skipped = (p: string): boolean =>
    p.startsWith(MEMORY_FILES_PREFIX)
      ? skip.files.has(p.slice(MEMORY_FILES_PREFIX.length))
      : p.startsWith('sqlite/') && skip.dbs.has(p.slice('sqlite/'.length, -'.sqlite'.length) as DbName);
  const { report, result } = await s.repository.verify(id, {
    skip: (a) => skipped(a.path_in_bundle),
    target: (a) =>
      a.kind === 'memory_file'
        ? join(tree, a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length))
        : join(dir, a.path_in_bundle),
    gitDir: history,
    ...(identityPath ? { decryptIdentity: identityPath } : {}),
  });
  if (refused(report) || !result.parsed) throw problemsError(report.problems);
  const m = result.parsed.manifest;
  const view = bundleView(m);
  const contents = contentsOf(view);
  const side: Side = {
    label,
    files: contents.files,
    tree,
    dbs: new Map(),
    dbHashes: contents.dbs,
    state: new Map(),
    memdir: bundleHasMemdir(view),
  };
  for (const db of DB_NAMES) {
    const file = result.written.get(`sqlite/${db}.sqlite`);
    if (file) side.dbs.set(db, file);
  }
  for (const key of STATE_KEYS) {
    const file = result.written.get(statePath(key));
    // the repository's verify checks the blob's hash, not that it is JSON: damage, not a SyntaxError
    if (file) side.state.set(key, stateValueOf(await readFile(file), statePath(key)));
  }
  if (m.artifacts.some((a) => a.kind === GIT_HISTORY_KIND) && m.git.repository === 'present') {
    const g = m.git;
    try {
      await writeRefs(
        history,
        (m.git_refs ?? []).filter((r) => r.name !== 'HEAD'),
      );
      await setHead(history, g.detached === true || !g.head_ref ? { oid: g.head_oid } : { ref: g.head_ref });
    } catch (err) {
      // git that never ran, or could not write for this host (a full disk: confirmed by the disk, stop
      // 54), is no damage of the history
      const what = `the history of ${label} cannot be read`;
      throw await gitWriteFailure(err, history, what, { io: `${what}: ${(err as Error).message}` });
    }
    side.history = { kind: 'repo', path: history };
    side.head = m.git.head_oid;
  }
  return side;
}

/** The live agent, captured under the write gate exactly as a snapshot would capture it. */
export async function liveSide(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  dir: string,
  /** The other side's contents when known: working-tree files identical to it are not written. */
  other?: Contents,
): Promise<Side> {
  const staging = join(dir, 'capture');
  await mkdir(staging, { recursive: true });
  const workers = await liveDatabaseRunners(s.resolver.sqliteDir(agentId, tenant));
  // A restore's journal means the live memory may be half swapped (a killed restore) or about to be
  // (a running one): the agent's lock is taken (waiting for a running restore), the interrupted one
  // finished or rolled back as a snapshot would, and the capture made under that lock, where no
  // restore can start. Without a journal no lock is taken; one that appears before the gate closes
  // (a restore started and killed in between) is seen under the gate, and the capture starts again.
  const journal = s.layout.journalPath(tenant, agentId);
  let lock: Awaited<ReturnType<LocalSnapshotter['lockAgent']>> | undefined;
  try {
    let c: Awaited<ReturnType<typeof captureAgent>> | undefined;
    while (c === undefined) {
      if (!lock && existsSync(journal)) {
        lock = await s.lockAgent(agentId, tenant, 'diff');
        await s.recoverInterrupted(agentId, tenant);
      }
      const gate = await s.closeWriteGate(agentId, tenant, 'diff');
      try {
        if (!lock && existsSync(journal)) continue;
        c = await captureAgent({
          agentId,
          tenant,
          memdir: s.resolver.memdir(agentId, tenant),
          sqliteDir: s.resolver.sqliteDir(agentId, tenant),
          state: s.state,
          stagingDir: staging,
          sqlite: workers,
          allowExternalGit: s.allowExternalGit,
        });
      } finally {
        await gate.release();
      }
    }
    lock?.release();
    lock = undefined;
    const artifacts = await hashCapture(c, workers);
    const tree = join(dir, 'tree');
    await mkdir(tree, { recursive: true });
    const side: Side = {
      label: 'live',
      files: new Map(),
      tree,
      dbs: new Map(),
      dbHashes: new Map(),
      state: new Map(),
      memdir: c.memdir !== undefined,
    };
    for (const a of artifacts) {
      if (a.kind === 'memory_file') {
        const rel = a.pathInBundle.slice(MEMORY_FILES_PREFIX.length);
        side.files.set(rel, a.sha256);
        if (other?.files.get(rel) === a.sha256) continue;
        const dst = join(tree, rel);
        await mkdir(dirname(dst), { recursive: true });
        await writeFile(dst, a.data ?? (await readFile(a.stagedPath!)));
      } else if (a.kind.startsWith('sqlite_')) {
        side.dbs.set(a.kind.slice(7) as DbName, a.stagedPath!);
        side.dbHashes.set(a.kind.slice(7) as DbName, a.sha256);
      } else if (a.kind.startsWith('state_')) {
        side.state.set(a.kind.slice(6) as StateKey, stateValueOf(a.data!, a.pathInBundle));
      } else if (a.kind === 'git_bundle') {
        side.history = { kind: 'bundle', path: a.stagedPath! };
      }
    }
    if (c.git.repository === 'present') side.head = c.git.head_oid;
    return side;
  } finally {
    lock?.release();
    await Promise.all(workers.map((w) => w.close()));
  }
}
