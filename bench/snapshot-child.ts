// Owns one measured snapshot in its own process (so its peak RSS is the snapshot's own): builds a
// LocalSnapshotter from the JSON argument, times the snapshot() call, and prints one JSON line with
// the wall time, peak RSS (VmHWM and process.resourceUsage().maxRSS, KiB) and the bundle. The capture/pack split comes
// from the snapshot's own progress events (capture starts → first pack event → done).

import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

interface Args {
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  agentId: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const s = new LocalSnapshotter({
  stateRoot: args.stateRoot,
  memdirRoot: args.memdirRoot,
  sqliteRoot: args.sqliteRoot,
});
let packStart: number | undefined;
const t0 = performance.now();
const meta = await s.snapshot({
  agentId: args.agentId,
  onProgress: (e) => {
    if (e.phase === 'pack' && packStart === undefined) packStart = performance.now();
  },
});
const ms = performance.now() - t0;
console.log(
  JSON.stringify({
    ms,
    captureMs: (packStart ?? t0) - t0,
    packMs: packStart === undefined ? undefined : performance.now() - packStart,
    ...rssFields(),
    bundlePath: meta.bundle_path,
    bundleSize: meta.bundle_size_bytes,
    id: meta.id,
  }),
);
