// Owns telling a failure on a full disk from damage where the failing program does not say why: git
// prints "couldn't write '<file>'" with no errno when a ref's lock file cannot be written. A disk with
// less than FULL_BELOW bytes free for this user, where the program was writing, is taken to be why.

import { statfs } from 'node:fs/promises';
import { IoError } from '../model/errors.js';

/** Free bytes below which a disk counts as full. */
const FULL_BELOW = 1024 * 1024;

/**
 * `IO` ENOSPC saying `what` (naming `dir`) when the file system of `dir` is full now; undefined when it
 * is not, or cannot be asked.
 */
export async function fullDiskError(dir: string, what: string): Promise<IoError | undefined> {
  const s = await statfs(dir).catch(() => undefined);
  if (!s || s.bavail * s.bsize >= FULL_BELOW) return undefined;
  return new IoError(`${what} (in ${dir})`, Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
}
