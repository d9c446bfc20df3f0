// Owns `mkdir -p` that fails with the real errno and whose directories survive a power cut: Node's
// recursive mkdir (20) says ENOENT where the parent exists on a read-only file system (EROFS), and an
// operator told "no such file or directory" for a read-only mount looks for the wrong thing. Each level
// is made without `recursive`, and only a missing parent is made first (stop 46 for restore's staging;
// stop 50 for a snapshot's first directory). Each directory made is then made durable in its parent
// (an fsync of the parent): a journal, a bundle or a repository written into a new directory is synced
// itself, but its directory's own entry was not, and a file system that does not order metadata could
// lose the directory, and what is in it, after a power cut (stop 63).

import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir } from './new-file.js';

/**
 * Makes `path` and any missing parent (`mode` for each one made, before the umask), each made durable
 * in its parent; an error is the one the level that failed gave.
 */
export async function makeDirs(path: string, mode?: number): Promise<void> {
  try {
    await mkdir(path, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(path).catch(() => undefined))?.isDirectory()) return;
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw err;
    await makeDirs(parent, mode);
    await makeDirs(path, mode);
    return;
  }
  await fsyncDir(dirname(path));
}
