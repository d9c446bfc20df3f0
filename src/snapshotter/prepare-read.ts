// Owns getting a process ready to read a bundle file or restore before it has loaded the code that does
// it: a surface that knows early which bundle a command reads (the CLI's verify, restore and import of a
// bundle path) calls prepareBundleRead first, so the decompression thread a large bundle is read on
// starts while the command's modules load (format/zstd-worker.ts); a restore or an import calls
// prepareRestore, which also starts the program host (util/program-host.ts) that its git runs go
// through. Light to import on purpose.

import { prestartDecompressionFor } from '../format/zstd-worker.js';
import { startProgramHost } from '../util/program-host.js';

/** Starts what reading the bundle file at `path` will use, when that is worth doing early. */
export function prepareBundleRead(path: string | undefined): void {
  if (path !== undefined) prestartDecompressionFor(path);
}

/**
 * prepareBundleRead of `from` (a bundle path, or a snapshot id: nothing to read early), and the program
 * host started now: a restore runs ~12 git programs, and the first few (the scratch repository's init,
 * the live repository's HEAD) came before a host started with the first worker thread was up, each
 * forked from this process by then ~100 MB large with threads starting (~12-25 ms of this thread each).
 */
export function prepareRestore(from: string | undefined): void {
  prepareBundleRead(from);
  startProgramHost();
}
