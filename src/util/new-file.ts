// Owns creating a file that must not exist yet, whole and durably: a finished temporary file beside it
// is hard-linked to its name (never replacing a file there), and the directory entry is synced. Used for
// bundles and exports (publishNoClobber) and for small files written once, key files and key pins
// (writeNewFile). node:fs only, so the CLI's keygen uses it without loading the store.

import { constants } from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from './random.js';

/** Makes the directory entries of `dir` durable (fsync of the directory). */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A file system without hard links answers link(2) with these: vfat, some network mounts. */
const NO_HARD_LINKS = ['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV'];

/**
 * Publishes the finished file `tmp` as `final` without ever replacing an existing `final` (hard link,
 * then unlink of the temp name), then makes the directory entry durable. An existing `final` is EEXIST
 * (tmp stays: the caller removes it). Where the file system has no hard links: a rename after a check
 * that `final` is not there (a file created between the two is replaced: documented, decisions.md).
 * `dirSync` makes the directory entry durable (fsyncDir).
 */
export async function publishNoClobber(tmp: string, final: string, dirSync = fsyncDir): Promise<void> {
  try {
    await link(tmp, final);
  } catch (err) {
    if (!NO_HARD_LINKS.includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
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
    await dirSync(dirname(final));
    return;
  }
  await unlink(tmp);
  await dirSync(dirname(final));
}

/**
 * fsyncDir where a directory that cannot be opened for it (writable but not readable, `-wx`) or a file
 * system that refuses it (EINVAL) is not an error: for small files the user asked for (keygen), which
 * were written before stop 56 without syncing their directory. The file itself is synced.
 */
async function fsyncDirIfAllowed(dir: string): Promise<void> {
  await fsyncDir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EACCES' && err.code !== 'EPERM' && err.code !== 'EINVAL') throw err;
  });
}

/**
 * Creates `path` holding `data` with `mode` (exactly: the umask may only have removed bits), whole or
 * not at all: written and synced in a temporary file beside it, then published with publishNoClobber.
 * A failure (a full disk) or a kill before the link leaves no empty or partial file at `path` for the
 * next attempt to refuse (stop 55); the temporary file is removed unless the process is killed. An
 * existing `path` is EEXIST and is left as it is. A directory that cannot be synced (fsyncDirIfAllowed)
 * is no failure once the file is there.
 */
export async function writeNewFile(path: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await publishNoClobber(tmp, path, fsyncDirIfAllowed);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}
