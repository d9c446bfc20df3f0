// Owns getting a process ready to read a bundle file before it has loaded the code that reads it: a
// surface that knows early which bundle a command reads (the CLI's verify, restore and import of a
// bundle path) calls prepareBundleRead first, so the decompression thread a large bundle is read on
// starts while the command's modules load (format/zstd-worker.ts). Light to import on purpose.

import { prestartDecompressionFor } from '../format/zstd-worker.js';

/** Starts what reading the bundle file at `path` will use, when that is worth doing early. */
export function prepareBundleRead(path: string | undefined): void {
  if (path !== undefined) prestartDecompressionFor(path);
}
