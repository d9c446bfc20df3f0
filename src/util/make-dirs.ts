// Owns `mkdir -p` that fails with the real errno: Node's recursive mkdir (20) says ENOENT where the parent
// exists on a read-only file system (EROFS), and an operator told "no such file or directory" for a
// read-only mount looks for the wrong thing. Each level is made without `recursive`, and only a missing
// parent is made first (stop 46 for restore's staging; stop 50 for a snapshot's first directory).

import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Makes `path` and any missing parent; an error is the one the level that failed gave. */
export async function makeDirs(path: string): Promise<void> {
  try {
    await mkdir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(path).catch(() => undefined))?.isDirectory()) return;
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw err;
    await makeDirs(parent);
    await makeDirs(path);
  }
}
