// Owns writing metrics for one-shot runs in the node_exporter textfile-collector format: the whole
// exposition is written to a temporary file in the same directory (a name the collector ignores: it
// reads only `*.prom`), fsynced, renamed over the target and the directory fsynced, so a scrape sees
// the previous file or the complete new one, never a part.

import { writeFileAtomic } from '../store/atomic.js';
import type { SnapshotMetrics } from './metrics.js';

/** Writes every family of `metrics` to `path` atomically (mode 0644: the collector runs as another user). */
export async function writeMetricsTextfile(path: string, metrics: SnapshotMetrics): Promise<void> {
  const text = await metrics.render();
  await writeFileAtomic(path, text.endsWith('\n') ? text : `${text}\n`, 0o644);
}
