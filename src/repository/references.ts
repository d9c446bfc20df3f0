// Owns walking what snapshots reference: every blob (chunk-list trees and data chunks) of every
// artifact and git pack of a manifest, reading each distinct chunk list once however many snapshots
// share it. check and prune build on it.

import { BundleDamagedError } from '../model/errors.js';
import type { Located, RepoManifest } from './manifest.js';
import type { Repository } from './repository.js';

/** Every content reference of a manifest: artifacts, and the packs of its git history. */
export function contentRefs(m: RepoManifest): Located[] {
  const out: Located[] = [];
  for (const a of m.artifacts) {
    if (a.packs) out.push(...a.packs);
    else out.push(a);
  }
  return out;
}

export class ReferenceSet {
  /** Every referenced blob id (trees and data). */
  readonly blobs = new Set<string>();
  private readonly treesRead = new Set<string>();

  constructor(private readonly repo: Repository) {}

  /** Adds what `m` references; throws BundleDamagedError when a chunk list is missing or malformed. */
  async addManifest(m: RepoManifest): Promise<void> {
    for (const ref of contentRefs(m)) {
      if (ref.chunks) for (const id of ref.chunks) this.blobs.add(id);
      else if (!ref.chunk_lists) {
        if (ref.size_bytes > 0) this.blobs.add(ref.sha256);
      } else {
        // each list once, however often this artifact names it too (a manifest naming one list 2,000
        // times made check and prune read it 2,000 times: stop 62 review)
        const fresh = [...new Set(ref.chunk_lists)].filter((t) => !this.treesRead.has(t));
        for (const t of ref.chunk_lists) this.blobs.add(t);
        for (const t of fresh) this.treesRead.add(t);
        let i = 0;
        for await (const list of this.repo.streamBlobs(fresh)) {
          if (list.length % 32 !== 0)
            throw new BundleDamagedError(`chunk list ${fresh[i]} has a partial entry`);
          for (let at = 0; at < list.length; at += 32) this.blobs.add(list.toString('hex', at, at + 32));
          i++;
        }
      }
    }
  }
}
