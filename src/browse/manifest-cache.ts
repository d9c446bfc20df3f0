// Owns find's cache of checked repository manifests, between runs: for each snapshot of one agent, the
// SHA-256 of its stored manifest object and the manifest as it was parsed and checked from those bytes
// (artifacts kept once in a table shared by the snapshots). A manifest whose stored bytes hash to the
// recorded value is taken from the cache instead of being decoded and checked again (the checks are a
// function of those bytes and the repository); any other is checked as always. Kept at
// <stateRoot>/cache/find-<repository id>-<hash of tenant and agent>.json, written atomically after a
// find that checked a manifest or no longer used one (not rewritten unchanged); a cache that is
// missing, unreadable or of another repository is ignored, and one that cannot be written (a read-only
// state root) leaves find's answer unchanged.

import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  type RepoArtifact,
  type RepoManifest,
  repoArtifactSchema,
  repoManifestShellSchema,
} from '../repository/manifest.js';
import { writeFileAtomic } from '../store/atomic.js';

const CACHE_VERSION = 1;
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const cacheSchema = z.object({
  cache_version: z.literal(CACHE_VERSION),
  repository_id: hex64,
  artifacts: z.array(repoArtifactSchema),
  snapshots: z.record(
    z.string(),
    z.object({
      stored_sha256: hex64,
      manifest: z.record(z.string(), z.unknown()),
      // indices into `artifacts`, checked below with a loop (hundreds of thousands: zod per element
      // took a quarter of a warm find's CPU at 200 snapshots)
      artifacts: z.array(z.unknown()),
    }),
  ),
});

type Entry = { stored: string; manifest: RepoManifest };

export const storedDigest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

export class ManifestCache {
  private readonly known = new Map<string, Entry>();
  private readonly used = new Map<string, Entry>();
  /** Whether a manifest was checked (put) in this run: otherwise the file already says it all. */
  private changed = false;

  private constructor(
    private readonly path: string,
    private readonly repositoryId: string,
  ) {}

  /** The cache of the agent's manifests in `repositoryId` (empty when there is none or it is unusable). */
  static async open(
    stateRoot: string,
    repositoryId: string,
    tenant: string,
    agentId: string,
  ): Promise<ManifestCache> {
    const who = createHash('sha256').update(`${tenant}\0${agentId}`).digest('hex').slice(0, 32);
    const c = new ManifestCache(join(stateRoot, 'cache', `find-${repositoryId}-${who}.json`), repositoryId);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(c.path, 'utf8'));
    } catch {
      return c;
    }
    const parsed = cacheSchema.safeParse(raw);
    if (!parsed.success || parsed.data.repository_id !== repositoryId) return c;
    const table = parsed.data.artifacts;
    for (const [id, e] of Object.entries(parsed.data.snapshots)) {
      const shell = repoManifestShellSchema.safeParse({ ...e.manifest, artifacts: [] });
      if (
        !shell.success ||
        !e.artifacts.every((i) => Number.isInteger(i) && (i as number) >= 0 && (i as number) < table.length)
      )
        continue;
      const artifacts = e.artifacts.map((i) => table[i as number]!);
      c.known.set(id, { stored: e.stored_sha256, manifest: { ...shell.data, artifacts } });
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
   * Writes the manifests used in this run (the others are dropped), unless all of them came from the
   * file and it holds no others; failures are ignored.
   */
  async save(): Promise<void> {
    if (!this.changed && this.used.size === this.known.size) return;
    const index = new Map<string, number>();
    const artifacts: RepoArtifact[] = [];
    const snapshots: Record<string, unknown> = {};
    for (const [id, e] of this.used) {
      const { artifacts: list, ...manifest } = e.manifest;
      snapshots[id] = {
        stored_sha256: e.stored,
        manifest,
        artifacts: list.map((a) => {
          const key = JSON.stringify(a);
          let i = index.get(key);
          if (i === undefined) {
            i = artifacts.push(a) - 1;
            index.set(key, i);
          }
          return i;
        }),
      };
    }
    const doc = { cache_version: CACHE_VERSION, repository_id: this.repositoryId, artifacts, snapshots };
    try {
      await mkdir(join(this.path, '..'), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, JSON.stringify(doc));
    } catch {
      // a cache only: find's answer does not depend on it
    }
  }
}
