// Owns applying the small-heap GC settings (util/heap-settings.ts) to the CLI process before the CLI's
// modules are loaded: bin/nexo-memory.js imports this module first and the CLI after it. Measured
// (docs/operations.md, "Peak RSS"): with Node's defaults the young generation alone committed up to
// ~48 MiB and the old generation held several times its live data in garbage between collections
// (a 2.3 GB agent's restore: 18 MB live, 120 MB used); ref-170 restore 153-180 → 128-135 MB, the
// 2.3 GB agent's 277 → 163 MB, no measurable CPU cost. `--max-semi-space-size` would do part of it only
// on node's command line. Not for `find`: it keeps a large live heap (the checked manifests of every
// snapshot, the sketches' index), which the small settings collect over and over (at 200 snapshots of
// ref-170: ~350 scavenges and 17 full collections instead of 30 and 3, +0.5 s of a ~3 s find).

import { keepHeapSmall, smallHeapFor } from '../util/heap-settings.js';

if (smallHeapFor(process.argv.slice(2))) keepHeapSmall();
