// Owns the CLI process's young-generation setting (util/young-generation.ts), applied before the CLI's
// modules are loaded: bin/nexo-memory.js imports this module first and the CLI after it. With Node's
// default (semi-spaces growing to 16 MiB) the short-lived buffers and objects of a snapshot, check or
// restore stayed resident longer and the young generation alone committed up to ~48 MiB; measured on
// ref-170 (docs/operations.md, "Peak RSS"): restore 153-180 → 130-141 MB, `check --read-data` 140 →
// 115 MB, no measurable CPU cost. `--max-semi-space-size` would do the same only on node's command line.

import { keepYoungGenerationSmall } from '../util/young-generation.js';

keepYoungGenerationSmall();
