// Owns making a repository of many snapshots quickly, for the tests and the bench that list many: copies
// of its one snapshot re-sealed under new ids through the repository API (no capture, no new data).

import { randomUUID } from 'node:crypto';
import { openBackend, parseRepoLocation } from '../../src/backend/open.js';
import { type RepoManifestDraft, sealRepoManifest } from '../../src/repository/manifest.js';
import { mapLimit, Repository } from '../../src/repository/repository.js';
import { listSnapshots, loadSnapshot, saveSnapshot } from '../../src/repository/snapshots.js';

/**
 * Writes `count - 1` copies of the repository's one snapshot under new ids, one second apart and older
 * than it: each a sealed manifest and its listing entry, as a snapshot saves them.
 */
export async function multiplySnapshot(url: string, count: number): Promise<void> {
  const backend = await openBackend(parseRepoLocation(url));
  try {
    const repo = await Repository.open(backend);
    const [meta, ...rest] = await listSnapshots(repo);
    if (!meta || rest.length > 0)
      throw new Error(`expected one snapshot in ${url}, found ${rest.length + 1}`);
    const { manifest } = await loadSnapshot(repo, meta.id);
    const {
      bundle_sha256: _d,
      manifest_seal: _s,
      signature: _g,
      manifest_version: _v,
      bundle_format: _f,
      ...draft
    } = manifest;
    await mapLimit(
      Array.from({ length: count - 1 }, (_, i) => i + 1),
      32,
      async (i) => {
        const id = randomUUID();
        const created = meta.created_at_ms - i * 1000;
        const sealed = sealRepoManifest({
          ...(draft as RepoManifestDraft),
          snapshot_id: id,
          created_at_ms: created,
        });
        await saveSnapshot(repo, sealed.manifest, sealed.json, { ...meta, id, created_at_ms: created });
      },
    );
  } finally {
    await backend.close();
  }
}
