// Owns find's cache of checked repository manifests, between runs: for each snapshot of one agent, the
// SHA-256 of its stored manifest object and the manifest as it was parsed and checked from those bytes
// (artifacts kept once in a table shared by the snapshots). A manifest whose stored bytes hash to the
// recorded value is taken from the cache instead of being decoded and checked again (the checks are a
// function of those bytes and the repository); any other is checked as always. Kept at
// <stateRoot>/cache/find-<repository id>-<hash of tenant and agent>.json: a header line with the
// format's version and the SHA-256 of the JSON body after it. The cache is this state root's own
// derived data, written only from manifests find has checked: a file whose header or checksum does not
// match (damaged, cut short, of an older version) or of another repository is ignored as a whole, and a
// matching one is not checked again field by field (that re-check cost more than the find it served).
// Written (atomically, unsynced: a torn file fails its checksum) after a find that checked a manifest or
// no longer needs one; one that cannot be written (a read-only state root) leaves find's answer unchanged.
// Not kept for an encrypted repository (its file paths, sizes and content hashes are what its sealed
// manifests hide; a file an older version wrote is removed): there the cache lives for one find only.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { RepoArtifact, RepoManifest } from '../repository/manifest.js';
import { writeFileAtomicUnsynced } from '../store/atomic.js';

/**
 * The first line of a cache file: this, a space and the SHA-256 (hex) of the body after the newline.
 * Version 3 since stop 64: a manifest's checks grew (a reference spelt one way: docs/repository.md §6),
 * and what version 2 cached had passed fewer of them, so it is checked again.
 */
const HEADER = 'nexo-memory find cache 3';

/** The body: written by save() from checked manifests, read back only when its checksum matches. */
interface CacheBody {
  repository_id: string;
  artifacts: RepoArtifact[];
  snapshots: Record<
    string,
    { stored_sha256: string; manifest: Omit<RepoManifest, 'artifacts'>; artifacts: number[] }
  >;
}

type Entry = { stored: string; manifest: RepoManifest };

export const storedDigest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

export class ManifestCache {
  private readonly known = new Map<string, Entry>();
  private readonly used = new Map<string, Entry>();
  /** A manifest was checked in this run (put): the file needs writing. */
  private changed = false;

  private constructor(
    private readonly path: string,
    private readonly repositoryId: string,
    private readonly kept: boolean,
  ) {}

  /**
   * The cache of the agent's manifests in `repositoryId` (empty when there is none or it is unusable);
   * with `kept` false (an encrypted repository) nothing is read from or written to the disk.
   */
  static async open(
    stateRoot: string,
    repositoryId: string,
    tenant: string,
    agentId: string,
    kept = true,
  ): Promise<ManifestCache> {
    const who = createHash('sha256').update(`${tenant}\0${agentId}`).digest('hex').slice(0, 32);
    const path = join(stateRoot, 'cache', `find-${repositoryId}-${who}.json`);
    const c = new ManifestCache(path, repositoryId, kept);
    if (!kept) {
      await rm(path, { force: true }).catch(() => {});
      return c;
    }
    let body: CacheBody;
    try {
      const text = await readFile(c.path, 'utf8');
      const nl = text.indexOf('\n');
      const rest = text.slice(nl + 1);
      if (nl < 0 || text.slice(0, nl) !== `${HEADER} ${sha256Hex(rest)}`) return c;
      body = JSON.parse(rest) as CacheBody;
    } catch {
      return c;
    }
    if (body.repository_id !== repositoryId) return c;
    for (const [id, e] of Object.entries(body.snapshots)) {
      const artifacts = e.artifacts.map((i) => body.artifacts[i]!);
      c.known.set(id, { stored: e.stored_sha256, manifest: { ...e.manifest, artifacts } as RepoManifest });
    }
    return c;
  }

  /** The checked manifest of snapshot `id` if its stored bytes are those recorded (their SHA-256). */
  get(id: string, stored: string): RepoManifest | undefined {
    const e = this.known.get(id);
    if (!e || e.stored !== stored || e.manifest.snapshot_id !== id) return undefined;
    this.used.set(id, e);
    return e.manifest;
  }

  /** Records a manifest just checked from stored bytes of SHA-256 `stored`. */
  put(id: string, stored: string, manifest: RepoManifest): void {
    this.used.set(id, { stored, manifest });
    this.changed = true;
  }

  /**
   * Writes the manifests used in this run (the others are dropped) when that changes the file: a
   * manifest was checked, or one in the file was not used. Failures are ignored.
   */
  async save(): Promise<void> {
    if (!this.kept || (!this.changed && this.used.size === this.known.size)) return;
    // The manifests share artifact objects (ArtifactMemo, or the table they were loaded from): each is
    // kept once, found by identity (an equal artifact in another object is only kept twice).
    const index = new Map<RepoArtifact, number>();
    const artifacts: RepoArtifact[] = [];
    const snapshots: CacheBody['snapshots'] = {};
    for (const [id, e] of this.used) {
      const { artifacts: list, ...manifest } = e.manifest;
      snapshots[id] = {
        stored_sha256: e.stored,
        manifest,
        artifacts: list.map((a) => {
          let i = index.get(a);
          if (i === undefined) {
            i = artifacts.push(a) - 1;
            index.set(a, i);
          }
          return i;
        }),
      };
    }
    const body = JSON.stringify({
      repository_id: this.repositoryId,
      artifacts,
      snapshots,
    } satisfies CacheBody);
    try {
      await mkdir(join(this.path, '..'), { recursive: true, mode: 0o700 });
      writeFileAtomicUnsynced(this.path, `${HEADER} ${sha256Hex(body)}\n${body}`);
    } catch {
      // a cache only: find's answer does not depend on it
    }
  }
}
