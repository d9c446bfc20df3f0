// Owns storing one capture (capture/capture.ts) into the repository: every database, state value and
// memory file as chunks (only new chunks are written), and the memdir history as the previous
// snapshot's pack chain plus what is new (or the pack of the capture's git bundle when the history was
// rewritten by redaction). Returns the manifest's artifacts in manifest order and the refs.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaptureResult } from '../capture/capture.js';
import { sqliteKind, sqlitePath } from '../format/constants.js';
import type { GitRef } from '../git/history.js';
import type { ProgressListener } from '../model/types.js';
import { storeContent } from './content.js';
import { type PreviousHistory, storeBundleHistory, storeLiveHistory } from './git-history.js';
import type { RepoArtifact } from './manifest.js';
import type { BlobWriter, Repository } from './repository.js';

export interface StoredCapture {
  artifacts: RepoArtifact[];
  refs: GitRef[];
}

export async function storeCapture(
  repo: Repository,
  writer: BlobWriter,
  c: CaptureResult,
  memdir: string,
  previous: PreviousHistory | undefined,
  work: string,
  onProgress?: ProgressListener,
): Promise<StoredCapture> {
  const params = repo.config.chunker;
  const out: RepoArtifact[] = [];
  let bytes = 0;
  const progress = (n: number) => {
    bytes += n;
    onProgress?.({ phase: 'pack', bytes });
  };
  for (const d of c.databases) {
    const ref = await storeContent(writer, params, { path: d.stagedPath, sqlite: true });
    out.push({ path_in_bundle: sqlitePath(d.db), kind: sqliteKind(d.db), ...ref });
    progress(ref.size_bytes);
  }
  for (const s of c.state) {
    const ref = await storeContent(writer, params, { data: s.data! });
    out.push({ path_in_bundle: s.pathInBundle, kind: s.kind, ...ref });
  }
  let refs: GitRef[] = [];
  const scratch = await mkdtemp(join(work, 'history-'));
  try {
    if (c.gitBundlePath) {
      const h = await storeBundleHistory(writer, params, c.gitBundlePath, scratch);
      out.push(h.artifact);
      refs = h.refs;
    } else if (c.gitRefs && c.gitRefs.length > 0) {
      const a = await storeLiveHistory(writer, params, memdir, c.gitRefs, previous, scratch);
      if (a) out.push(a);
      refs = c.gitRefs;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  for (const f of c.memory) {
    const ref = await storeContent(
      writer,
      params,
      f.data ? { data: f.data } : { path: f.stagedPath!, sqlite: false },
    );
    out.push({ path_in_bundle: f.pathInBundle, kind: f.kind, ...ref });
    progress(ref.size_bytes);
  }
  return { artifacts: out, refs: [...refs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
}
