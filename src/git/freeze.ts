// Owns freezing a live repository's objects at a capture's point in time: a bare repository in
// staging whose object files are hard links to the live ones (git never changes an object file, it
// writes new ones and removes old ones). A repository snapshot records only the refs under the write
// gate and packs what they reach after the gate opens; a gated writer may meanwhile amend, expire its
// reflog and prune, removing objects the recorded refs reach (a review made 6 of 12 snapshots fail
// "bad object"). Packing from the frozen copy reads the objects as they were. Linking costs one call
// per object file (a packed repository has a few); a file on another file system is copied.

import { constants } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Whether `name` is one of a loose-object directory's two-hex-digit names. */
const FANOUT = /^[0-9a-f]{2}$/;

/**
 * A bare repository at `dst` (which must not exist) holding the objects of `memdir`'s repository as they
 * are now, or undefined when they cannot be frozen this way (`.git` is not a directory — a worktree's
 * or a submodule's pointer file —, the objects name alternates, or a symlink stands where git keeps
 * objects): the caller then reads the live ones, as before.
 */
export async function freezeObjects(
  memdir: string,
  dst: string,
  objectFormat: 'sha1' | 'sha256',
): Promise<string | undefined> {
  const objects = join(memdir, '.git', 'objects');
  try {
    if (!(await lstat(join(memdir, '.git'))).isDirectory()) return undefined;
    if (!(await lstat(objects)).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  const alternates = await lstat(join(objects, 'info', 'alternates')).then(
    () => true,
    () => false,
  );
  if (alternates) return undefined;
  const into = join(dst, 'objects');
  await mkdir(join(dst, 'refs'), { recursive: true });
  await mkdir(into);
  // HEAD makes the directory a repository to git; packing is given every tip, so no ref is needed
  await writeFile(join(dst, 'HEAD'), 'ref: refs/heads/frozen\n');
  await writeFile(
    join(dst, 'config'),
    objectFormat === 'sha256'
      ? '[core]\n\trepositoryformatversion = 1\n\tbare = true\n[extensions]\n\tobjectformat = sha256\n'
      : '[core]\n\trepositoryformatversion = 0\n\tbare = true\n',
  );
  // Loose objects first, packs last: `git gc` (or a repack) writes an object's new pack before it
  // removes the loose file, so one whose loose file was gone when its directory was read is in a pack
  // read after it (stop 56: a `git gc --prune=now` loop beside snapshots).
  const entries = (await readdir(objects, { withFileTypes: true })).sort(
    (a, b) => Number(a.name === 'pack') - Number(b.name === 'pack'),
  );
  for (const entry of entries) {
    // a symlink where git keeps objects: not frozen (its target's files are not linked here)
    if (entry.isSymbolicLink()) return undefined;
    if (!entry.isDirectory()) continue;
    if (entry.name !== 'pack' && entry.name !== 'info' && !FANOUT.test(entry.name)) continue;
    if (!(await linkFiles(join(objects, entry.name), join(into, entry.name)))) return undefined;
  }
  return dst;
}

/**
 * Links (or, across file systems, copies) every regular file of `from` into the new directory `to`;
 * false when `from` holds a symlink (not frozen). A file gone between the listing and its link was
 * moved, not lost: `git gc` or a repack removes a loose object or an old pack only after writing the
 * new pack that holds its objects. So `from` is listed again, and what is new in it linked, until a
 * pass loses nothing (at most FREEZE_PASSES; an object still missing then fails the packing, `GIT`,
 * never silently: stop 56, 2 of 10 snapshots beside a `git gc --prune=now` loop).
 */
async function linkFiles(from: string, to: string): Promise<boolean> {
  await mkdir(to);
  const done = new Set<string>();
  for (let pass = 0; pass < FREEZE_PASSES; pass++) {
    const entries = await readdir(from, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      // a loose-object directory that `git gc` emptied and removed since its parent was read
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    let vanished = false;
    for (const entry of entries) {
      if (entry.isSymbolicLink()) return false;
      // git's temporary files (tmp_obj_*, tmp_pack_*) are not objects yet; a directory (info's
      // commit-graph chain) is left out too: packing reads objects, not graphs
      if (!entry.isFile() || entry.name.startsWith('tmp_') || done.has(entry.name)) continue;
      const src = join(from, entry.name);
      const dst = join(to, entry.name);
      try {
        await link(src, dst);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          vanished = true;
          continue;
        }
        if (code !== 'EXDEV' && code !== 'EPERM') throw err;
        const copied = await copyFile(src, dst, constants.COPYFILE_FICLONE).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code !== 'ENOENT') throw e;
            return false;
          },
        );
        if (!copied) {
          vanished = true;
          continue;
        }
      }
      done.add(entry.name);
    }
    if (!vanished) break;
  }
  return true;
}

/** How many times a directory is listed again while files vanish from it (linkFiles). */
const FREEZE_PASSES = 5;
