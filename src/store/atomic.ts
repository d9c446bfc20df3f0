// Owns durable file publication: fsync of files and directories, atomic small-file writes
// (temp → fsync → rename → fsync dir) and no-clobber publication of a finished temp file.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A unique temporary name beside `path` (same directory, so rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
}

/** Writes `data` to `path` atomically: readers see the old file or the whole new one, never a part. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * Publishes the finished file `tmp` as `final` without ever replacing an existing `final` (hard link,
 * then unlink of the temp name), then makes the directory entry durable.
 */
export async function publishNoClobber(tmp: string, final: string): Promise<void> {
  try {
    await link(tmp, final);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw err;
    // File systems without hard links: fall back to rename after an existence check.
    await open(final, 'r').then(
      async (fh) => {
        await fh.close();
        const e = new Error(`EEXIST: ${final} already exists`) as NodeJS.ErrnoException;
        e.code = 'EEXIST';
        throw e;
      },
      () => undefined,
    );
    await rename(tmp, final);
    await fsyncDir(dirname(final));
    return;
  }
  await unlink(tmp);
  await fsyncDir(dirname(final));
}

export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => {});
}
