// Owns one measured list in its own process (module loading done, caches of this process cold): times
// new LocalSnapshotter({stateRoot}).list(agent) and prints one JSON line with the wall time, the
// number of entries and warnings, and peak RSS (VmHWM and maxRSS, KiB).

import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

const { stateRoot, agentId } = JSON.parse(process.argv[2] ?? '{}') as { stateRoot: string; agentId: string };
let warnings = 0;
const t0 = performance.now();
const metas = await new LocalSnapshotter({ stateRoot, onWarning: () => warnings++ }).list(agentId);
const ms = performance.now() - t0;
console.log(
  JSON.stringify({
    ms,
    ...rssFields(),
    entries: metas.length,
    warnings,
    distinctIds: new Set(metas.map((m) => m.id)).size,
  }),
);
