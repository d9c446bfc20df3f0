// Owns getting a process ready to read a bundle file or restore before it has loaded the code that does
// it: a surface that knows early which bundle a command reads (the CLI's verify, restore and import of a
// bundle path) calls prepareBundleRead first, so the decompression thread a large bundle is read on
// starts while the command's modules load (format/zstd-worker.ts); a snapshot or restore of a large agent starts
// the program host (util/program-host.ts) its git runs go through (prepareHostFor, from
// LocalSnapshotter's restore and snapshot). Light to import on purpose.

import { prestartDecompressionFor } from '../format/zstd-worker.js';
import { startProgramHost } from '../util/program-host.js';

/** Starts what reading the bundle file at `path` will use, when that is worth doing early. */
export function prepareBundleRead(path: string | undefined): void {
  if (path !== undefined) prestartDecompressionFor(path);
}

/**
 * The program host started now when the live databases in `sqliteDir` are large (sqliteThreadsMinBytes():
 * the size from which a snapshot copies and a restore checks them on threads, which start the host
 * anyway): a restore runs ~12 git programs, a snapshot ~4, and their first ones (a restore's scratch
 * repository's init, the live repository's HEAD) came before a host started with the first thread was
 * up, each forked from this process, by then ~100 MB with threads starting (~12-25 ms of this thread
 * each). A small agent's restore would only pay for the host's start (measured: +50 ms, from the CLI).
 */
export async function prepareHostFor(sqliteDir: string): Promise<void> {
  const { liveDatabaseBytes, sqliteThreadsMinBytes } = await import('../sqlite/worker.js');
  if ((await liveDatabaseBytes(sqliteDir)) >= sqliteThreadsMinBytes()) startProgramHost();
}
