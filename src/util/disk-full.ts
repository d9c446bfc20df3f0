// Owns telling this host's failure to write from damage of what a program read, where the program's
// words cannot be trusted alone: git quotes what the content holds (a submodule's name or url in an
// fsck finding), so a hostile history can make it print "No space left on device". A failure counts as
// the host's only when the file system where the program wrote agrees: read-only, or with less free
// for this user than FULL_BELOW or than what the program was writing (git removes its temporary pack
// when a write fails, so the room it took is free again when asked; a quota cannot be asked and counts
// only as a full disk).

import { constants } from 'node:fs';
import { access, statfs } from 'node:fs/promises';
import { BundleDamagedError, gitFailedOnContent, IoError } from '../model/errors.js';

/** Free bytes below which a disk counts as full. */
const FULL_BELOW = 1024 * 1024;

/** What a program says when it could not write (with the system's reason, or git's without one). */
const SAYS_FULL =
  /No space left on device|Disk quota exceeded|couldn't write|unable to (?:write|create)|write error/;
const SAYS_READ_ONLY = /Read-only file system/;

/**
 * `IO` with the errno (ENOSPC, EROFS) saying `what` happened in `dir`, when `err`'s message says the
 * program could not write and the file system of `dir` confirms it now (read-only, or less free than
 * FULL_BELOW or `writing`, the bytes the program was writing there); else undefined (and so when it
 * cannot be asked).
 */
export async function hostWriteFailure(
  err: unknown,
  dir: string,
  what?: string,
  writing = 0,
): Promise<IoError | undefined> {
  const text = err instanceof Error ? err.message : String(err);
  const message = `${what ?? text} (in ${dir})`;
  if (SAYS_READ_ONLY.test(text)) {
    const ro = await access(dir, constants.W_OK).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === 'EROFS',
    );
    if (ro) return new IoError(message, Object.assign(new Error('EROFS'), { code: 'EROFS' }));
  }
  if (!SAYS_FULL.test(text)) return undefined;
  const s = await statfs(dir).catch(() => undefined);
  if (!s || s.bavail * s.bsize >= Math.max(FULL_BELOW, writing)) return undefined;
  return new IoError(message, Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
}

/**
 * What to throw for `err`, met while git wrote into `dir` from content it was given: `err` itself unless
 * git ran and failed on that content (git that never ran, or an error of this host, is no damage); `IO`
 * when git could not write there and the disk agrees (hostWriteFailure, `io` naming what happened, with
 * `writing` as there); else the damage `damage` names, with git's words.
 */
export async function gitWriteFailure(
  err: unknown,
  dir: string,
  damage: string,
  opts: { io?: string; writing?: number } = {},
): Promise<unknown> {
  if (!gitFailedOnContent(err)) return err;
  return (
    (await hostWriteFailure(err, dir, opts.io, opts.writing)) ??
    new BundleDamagedError(`${damage}: ${err.message}`)
  );
}
