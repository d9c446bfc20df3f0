// Owns the diagnosis of where a snapshot's time and memory go: runs the snapshot's steps one by one
// (each database copy, git bundle, memdir copy, manifest, pack) into a scratch directory with the same
// modules the snapshotter uses, and prints one JSON line with each step's wall time and the process's
// peak RSS after it (VmHWM, KiB; it only grows, so the step where it jumps is the one that set the
// peak). Sequential on purpose: the snapshot itself runs the capture steps concurrently. The manifest
// is a stand-in (`{}`); everything else is the real code path.

import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { captureMemdir } from '../src/capture/memdir.js';
import { packBundle } from '../src/format/writer.js';
import { createBundle, inspectRepo } from '../src/git/git.js';
import { SqliteWorker } from '../src/sqlite/worker.js';
import { sha256File } from '../src/util/hash.js';
import { peakRssKiB, rssFields } from './lib.js';

interface Args {
  memdir: string;
  sqliteDir: string;
  scratch: string;
  zstdLevel?: number;
  zstdWorkers?: number;
}

const raw = JSON.parse(process.argv[2] ?? '{}') as Args;
const a: Args = {
  ...raw,
  memdir: resolve(raw.memdir),
  sqliteDir: resolve(raw.sqliteDir),
  scratch: resolve(raw.scratch),
};
const steps: Array<{
  step: string;
  ms: number;
  bytes?: number;
  maxRssKiB: number;
  hwmKiB: number;
  rssKiB: number;
}> = [];
async function step<T>(name: string, fn: () => Promise<T>, bytes?: (v: T) => number): Promise<T> {
  const t0 = performance.now();
  const v = await fn();
  steps.push({
    step: name,
    ms: performance.now() - t0,
    ...(bytes ? { bytes: bytes(v) } : {}),
    ...rssFields(),
    rssKiB: Math.round(process.memoryUsage().rss / 1024),
  });
  return v;
}

await rm(a.scratch, { recursive: true, force: true });
const staging = join(a.scratch, 'staging');
await mkdir(join(staging, 'sqlite'), { recursive: true });
await mkdir(join(staging, 'git'), { recursive: true });
await mkdir(join(staging, 'memory_files'), { recursive: true });
const startHwmKiB = peakRssKiB();
const entries: Array<{ pathInBundle: string; sourcePath: string; size: number }> = [];

const sqlite = new SqliteWorker();
try {
  for (const db of ['long_term', 'vector', 'concepts', 'compactions']) {
    const dst = join(staging, 'sqlite', `${db}.sqlite`);
    const c = await step(
      `sqlite copy ${db} (VACUUM INTO + WAL header + sha256)`,
      () => sqlite.copy(join(a.sqliteDir, `${db}.sqlite`), dst),
      (r) => r.size,
    );
    entries.push({ pathInBundle: `sqlite/${db}.sqlite`, sourcePath: dst, size: c.size });
  }
} finally {
  await sqlite.close();
}
const bundle = join(staging, 'git', 'memdir.bundle');
const info = await step('git inspect (rev-parse, symbolic-ref, log)', () => inspectRepo(a.memdir));
await step('git bundle create --all', () => createBundle(a.memdir, info, bundle));
const b = await step(
  'sha256 of git bundle',
  () => sha256File(bundle),
  (r) => r.size,
);
entries.push({ pathInBundle: 'git/memdir.bundle', sourcePath: bundle, size: b.size });
const mem = await step(
  'memdir copy + sha256 (16 parallel)',
  () => captureMemdir(a.memdir, join(staging, 'memory_files')),
  (r) => r.bytes,
);
for (const f of mem.files)
  entries.push({
    pathInBundle: `memory_files/${f.rel}`,
    sourcePath: join(staging, 'memory_files', f.rel),
    size: f.size,
  });
const total = entries.reduce((s, e) => s + e.size, 0);
const packed = await step(
  `pack: tar → zstd -${a.zstdLevel ?? 3} (${a.zstdWorkers ?? 2} workers) → sha256 → fsync`,
  () =>
    packBundle({
      finalPath: join(a.scratch, 'out.tar.zst'),
      manifestBytes: Buffer.from('{}\n'),
      entries,
      mtimeSec: 1_760_000_000,
      zstd: { level: a.zstdLevel ?? 3, workers: a.zstdWorkers ?? 2 },
    }),
  (r) => r.size,
);
await step('rm staging', () => rm(staging, { recursive: true, force: true }));
await rm(a.scratch, { recursive: true, force: true });
console.log(
  JSON.stringify({
    ms: steps.reduce((s, x) => s + x.ms, 0),
    ...rssFields(),
    startHwmKiB,
    uncompressedBytes: total,
    bundleBytes: packed.size,
    steps,
  }),
);
