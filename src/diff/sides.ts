// Owns materialising one side of a diff in a temporary directory: a snapshot bundle (streamed through
// verify, so only verified bytes are compared; v1 and v2 layouts) or the live agent (captured exactly
// as a snapshot captures it, under the write gate). Each side ends up as a working tree on disk,
// database copies, state values, and the source of its git history.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { closeGate } from '../agent/write-gate.js';
import { captureAgent, hashCapture } from '../capture/capture.js';
import type { Identity } from '../crypto/age.js';
import { GIT_BUNDLE_PATH, GIT_V1_PREFIX, MEMORY_FILES_PREFIX, statePath } from '../format/constants.js';
import { ConcurrentError, EncryptionError } from '../model/errors.js';
import { DB_NAMES, type DbName, STATE_KEYS, type StateKey } from '../model/types.js';
import { bundleHasMemdir } from '../restore/stage.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { SqliteWorker } from '../sqlite/worker.js';
import { LockTimeoutError } from '../store/lock.js';
import { problemsError, verifyBundle } from '../verify/verify.js';

export interface Side {
  /** The snapshot id, or `live`. */
  label: string;
  /** Working tree files, relative path → SHA-256. */
  files: Map<string, string>;
  /** Directory holding the working tree (empty when there is no memdir). */
  tree: string;
  dbs: Map<DbName, string>;
  state: Map<StateKey, unknown>;
  /** Where git can fetch this side's history from (a bundle file or a repository), if any. */
  history?: { kind: 'bundle' | 'repo'; path: string };
  head?: string;
  memdir: boolean;
}

/** A snapshot bundle, streamed and verified into `dir`. */
export async function bundleSide(
  label: string,
  bundle: string,
  dir: string,
  identities?: readonly Identity[],
): Promise<Side> {
  const tree = join(dir, 'tree');
  await mkdir(tree, { recursive: true });
  const v = await verifyBundle(bundle, {
    ...(identities ? { identities } : {}),
    sink: {
      target(a, layout) {
        const p = a.path_in_bundle;
        if (a.kind === 'memory_file') return join(tree, p.slice(MEMORY_FILES_PREFIX.length));
        if (a.kind === 'git_bundle')
          return layout === 2
            ? join(dir, 'memdir.bundle')
            : join(dir, 'v1', '.git', p.slice(GIT_V1_PREFIX.length));
        return join(dir, p);
      },
    },
  });
  if (v.report.status === 'damaged') throw problemsError(v.report.problems);
  if (!v.manifest)
    throw new EncryptionError('the bundle is age-encrypted: pass --decrypt-identity to diff it');
  const { manifest: m, layout } = v.manifest;
  const side: Side = {
    label,
    files: new Map(),
    tree,
    dbs: new Map(),
    state: new Map(),
    memdir: bundleHasMemdir(m),
  };
  for (const a of m.artifacts) {
    if (a.kind === 'memory_file')
      side.files.set(a.path_in_bundle.slice(MEMORY_FILES_PREFIX.length), a.sha256);
  }
  for (const db of DB_NAMES) {
    const file = v.written.get(`sqlite/${db}.sqlite`);
    if (file) side.dbs.set(db, file);
  }
  for (const key of STATE_KEYS) {
    const file = v.written.get(statePath(key));
    if (file) side.state.set(key, JSON.parse(await readFile(file, 'utf8')));
  }
  if (layout === 2 && v.written.has(GIT_BUNDLE_PATH))
    side.history = { kind: 'bundle', path: join(dir, 'memdir.bundle') };
  if (layout === 1 && [...v.written.keys()].some((p) => p.startsWith(GIT_V1_PREFIX)))
    side.history = { kind: 'repo', path: join(dir, 'v1') };
  if (m.git.repository === 'present' || (layout === 1 && side.history)) side.head = m.git.head_oid;
  return side;
}

/** The live agent, captured under the write gate exactly as a snapshot would capture it. */
export async function liveSide(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  dir: string,
): Promise<Side> {
  const staging = join(dir, 'capture');
  await mkdir(staging, { recursive: true });
  const workers = [new SqliteWorker(), new SqliteWorker()];
  try {
    let gate: Awaited<ReturnType<typeof closeGate>>;
    try {
      gate = await closeGate(s.layout.writeGatePath(tenant, agentId), s.lockTimeoutMs);
    } catch (err) {
      if (err instanceof LockTimeoutError)
        throw new ConcurrentError(agentId, tenant, 'memory writers (write gate)');
      throw err;
    }
    let c: Awaited<ReturnType<typeof captureAgent>>;
    try {
      c = await captureAgent({
        agentId,
        tenant,
        memdir: s.resolver.memdir(agentId, tenant),
        sqliteDir: s.resolver.sqliteDir(agentId, tenant),
        state: s.state,
        stagingDir: staging,
        sqlite: workers,
      });
    } finally {
      await gate.release();
    }
    const artifacts = await hashCapture(c, workers);
    const tree = join(dir, 'tree');
    await mkdir(tree, { recursive: true });
    const side: Side = {
      label: 'live',
      files: new Map(),
      tree,
      dbs: new Map(),
      state: new Map(),
      memdir: c.memdir !== undefined,
    };
    for (const a of artifacts) {
      if (a.kind === 'memory_file') {
        const rel = a.pathInBundle.slice(MEMORY_FILES_PREFIX.length);
        side.files.set(rel, a.sha256);
        const dst = join(tree, rel);
        await mkdir(dirname(dst), { recursive: true });
        await writeFile(dst, a.data ?? (await readFile(a.stagedPath!)));
      } else if (a.kind.startsWith('sqlite_')) {
        side.dbs.set(a.kind.slice(7) as DbName, a.stagedPath!);
      } else if (a.kind.startsWith('state_')) {
        side.state.set(a.kind.slice(6) as StateKey, JSON.parse(a.data!.toString('utf8')));
      } else if (a.kind === 'git_bundle') {
        side.history = { kind: 'bundle', path: a.stagedPath! };
      }
    }
    if (c.git.repository === 'present') side.head = c.git.head_oid;
    return side;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
}
