// Owns opening one snapshot for reading, in either store, and reading only what is asked: its
// manifest's entries (path, kind, size, SHA-256) without a byte of the body; one entry's bytes (a
// repository snapshot's chunks of that entry, each checked against its id; a bundle streamed up to that
// entry); one entry written to a private file (a database to open). Every byte handed out has been
// checked against the manifest's size and SHA-256: the manifest LocalSnapshotter.findSnapshot read and
// checked as this agent's. A repository snapshot is read under the repository's shared lock (prune
// waits), a bundle under the agent's readers lock (delete waits).

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { objectExists } from '../backend/backend.js';
import { loadIdentities } from '../crypto/age.js';
import type { Manifest } from '../format/manifest.js';
import { BundleReader } from '../format/reader.js';
import { BundleDamagedError, missingIn, NotFoundError, UnsafeBundleError } from '../model/errors.js';
import { DEFAULT_TENANT, validateAgentId, validateTenant } from '../model/ids.js';
import { loadContent, writeContent } from '../repository/content.js';
import { bundleView, type RepoArtifact, type RepoManifest } from '../repository/manifest.js';
import type { Repository } from '../repository/repository.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import type { BundleFile } from '../store/catalog.js';

/** One manifest entry, as a v2 bundle describes it. */
export interface SourceEntry {
  path: string;
  kind: string;
  size_bytes: number;
  sha256: string;
}

export interface SnapshotSource {
  readonly id: string;
  readonly agentId: string;
  readonly tenant: string;
  readonly createdAtMs: number;
  readonly label: string | null;
  /** The bundle view of the manifest (paths and kinds of a v2 bundle). */
  readonly manifest: Manifest;
  entry(path: string): SourceEntry | undefined;
  /** The entries' bytes, checked (a bundle is streamed once for all of them). */
  read(paths: readonly string[]): Promise<Map<string, Buffer>>;
  /** One entry written to `dest` (created exclusively), checked. */
  writeTo(path: string, dest: string): Promise<void>;
}

export interface OpenOptions {
  decryptIdentity?: string;
}

/**
 * Runs `fn` with the snapshot `id` (id or unique prefix) of the agent opened for reading, under the
 * lock of its store. NotFoundError when the agent has no such snapshot.
 */
export async function withSnapshot<T>(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string | undefined,
  id: string,
  opts: OpenOptions,
  fn: (src: SnapshotSource) => Promise<T>,
): Promise<T> {
  const a = validateAgentId(agentId);
  const t = validateTenant(tenant ?? DEFAULT_TENANT);
  // the one way to a snapshot by id: its manifest, read and checked to be this agent's (findSnapshot)
  const found = await s.findSnapshot(a, t, id, opts);
  if (found.repository) {
    const manifest = found.manifest;
    if (!manifest) throw found.unreadable;
    const repo = await s.repository.open(false, [], opts.decryptIdentity);
    // the manifest as findSnapshot read it (a snapshot's manifest is written once); its data is read
    // under the lock (prune waits), every chunk checked by its id, once the manifest is seen still
    // there under it: a forget and its prune between findSnapshot and the lock left chunks gone, read
    // as damage (stop 62 review)
    return s.repository.locked(repo, false, 'read', async () => {
      if (!(await objectExists(repo.backend, { type: 'snapshots', name: manifest.snapshot_id })))
        throw new NotFoundError(
          manifest.snapshot_id,
          'deleted while this command waited for the repository lock',
        );
      return fn(repositorySource(repo, manifest));
    });
  }
  const { file, reading } = await s.locateForReading(
    a,
    t,
    found.bundle.id,
    `reading snapshot ${found.bundle.id}`,
  );
  try {
    if (!found.manifest) throw found.unreadable;
    return await fn(bundleSource(file, found.manifest, opts));
  } finally {
    reading.release();
  }
}

/** A repository snapshot whose manifest is loaded and checked (the caller holds the repository lock). */
export function repositorySource(repo: Repository, m: RepoManifest): SnapshotSource {
  const view = bundleView(m);
  const byPath = new Map<string, RepoArtifact>(m.artifacts.map((a) => [a.path_in_bundle, a]));
  const entries = new Map(view.artifacts.map((a) => [a.path_in_bundle, toEntry(a)]));
  const located = (path: string): RepoArtifact => {
    const a = byPath.get(path);
    if (!a || !entries.has(path)) throw missingIn(m.snapshot_id, path);
    return a;
  };
  return {
    id: m.snapshot_id,
    agentId: m.agent_id,
    tenant: m.tenant ?? DEFAULT_TENANT,
    createdAtMs: m.created_at_ms,
    label: m.label ?? null,
    manifest: view,
    entry: (path) => entries.get(path),
    async read(paths) {
      const out = new Map<string, Buffer>();
      for (const p of paths) out.set(p, await loadContent(repo, located(p), p));
      return out;
    },
    // a copy to read from (ls, cat, find): every chunk checked by its id, and the size (ContentCheck)
    writeTo: (path, dest) => writeContent(repo, located(path), dest, path, false, 'chunks'),
  };
}

const toEntry = (a: { path_in_bundle: string; kind: string; size_bytes: number; sha256: string }) => ({
  path: a.path_in_bundle,
  kind: a.kind,
  size_bytes: a.size_bytes,
  sha256: a.sha256,
});

/**
 * A bundle whose manifest `m` findSnapshot read and checked: every entry streamed is checked against
 * it (a file replaced meanwhile cannot hand out bytes of another snapshot).
 */
function bundleSource(file: BundleFile, m: Manifest, opts: OpenOptions): SnapshotSource {
  const identities = opts.decryptIdentity ? loadIdentities(opts.decryptIdentity) : undefined;
  const entries = new Map(m.artifacts.map((a) => [a.path_in_bundle, toEntry(a)]));
  /** Streams the bundle once, handing each wanted entry's checked bytes to `take`. */
  const stream = async (
    wanted: ReadonlySet<string>,
    take: (e: SourceEntry, body: AsyncGenerator<Buffer>) => Promise<void>,
  ) => {
    for (const p of wanted) if (!entries.has(p)) throw missingIn(m.snapshot_id, p);
    if (wanted.size === 0) return;
    const r = await BundleReader.open(file.path, identities ? { identities } : {});
    let left = wanted.size;
    try {
      for await (const e of r.entries()) {
        if (e.problem)
          throw e.problem.code === 'UNSAFE_ENTRY'
            ? new UnsafeBundleError(e.problem.message)
            : new BundleDamagedError(e.problem.message);
        if (!wanted.has(e.path) || !e.artifact) continue;
        // checked against the manifest findSnapshot checked, not the one this read of the file has
        const want = entries.get(e.path)!;
        await take(want, checked(want.sha256, want.size_bytes, e.path, e.body()));
        if (--left === 0) return;
      }
    } finally {
      r.close();
    }
    throw new BundleDamagedError(
      `${file.name}: ${left} entr${left === 1 ? 'y' : 'ies'} the manifest declares are missing`,
    );
  };
  return {
    id: m.snapshot_id,
    agentId: m.agent_id,
    tenant: m.tenant ?? DEFAULT_TENANT,
    createdAtMs: m.created_at_ms,
    label: m.label ?? null,
    manifest: m,
    entry: (path) => entries.get(path),
    async read(paths) {
      const out = new Map<string, Buffer>();
      await stream(new Set(paths), async (e, body) => {
        const parts: Buffer[] = [];
        for await (const b of body) parts.push(b);
        out.set(e.path, Buffer.concat(parts));
      });
      return out;
    },
    async writeTo(path, dest) {
      await stream(new Set([path]), async (_e, body) => {
        const fh = await open(dest, 'wx', 0o600);
        try {
          for await (const b of body) await fh.write(b);
        } finally {
          await fh.close();
        }
      });
    },
  };
}

/** Passes a body through, then checks its size and SHA-256 against the manifest (throws at the end). */
async function* checked(
  sha256: string,
  size: number,
  what: string,
  body: AsyncGenerator<Buffer>,
): AsyncGenerator<Buffer> {
  const h = createHash('sha256');
  let n = 0;
  for await (const b of body) {
    n += b.length;
    h.update(b);
    yield Buffer.from(b);
  }
  if (n !== size || h.digest('hex') !== sha256)
    throw new BundleDamagedError(`${what}: does not match the SHA-256 the manifest records`);
}
