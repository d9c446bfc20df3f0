// Owns the thread's side of writing whole files handed over in batches (a restore's memory files, on one
// of its SQLite threads, while the main thread reads the packs): the batch's directories made, then each
// file created exclusively (mode 0600) and written with blocking calls. The caller's side is
// verify-snapshot.ts `readWhole`; the files' bytes were checked there.

import { mkdirSync, writeFileSync } from 'node:fs';

/** Files in one buffer: file i is `data[ends[i-1] .. ends[i])` (from 0 for the first), at `paths[i]`. */
export interface FileBatch {
  /** Directories to make first (recursively), each named once per operation by the caller. */
  dirs: string[];
  paths: string[];
  ends: number[];
  data: Uint8Array;
}

export function writeFiles(b: FileBatch): void {
  for (const d of b.dirs) mkdirSync(d, { recursive: true });
  const data = Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  let start = 0;
  b.paths.forEach((p, i) => {
    const end = b.ends[i]!;
    writeFileSync(p, data.subarray(start, end), { flag: 'wx', mode: 0o600 });
    start = end;
  });
}
