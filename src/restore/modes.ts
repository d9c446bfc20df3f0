// Owns the permission bits and owners a restore gives what it staged before the swap: a restore writes
// new files of its own user (memory files and databases 0600), and an agent that shares its memory with
// a group, or runs as another user than the restore (a daemon run as root), kept working only if the
// host put them back. Each staged path takes the bits (and, as root, the owner and group) of the live
// one it replaces; a memory file or directory the live memdir lacks takes those of the live memdir's
// root (docs/restore.md, step 3; docs/decisions.md, "What a restore keeps of modes and owners").
// A mode or owner that cannot be given (a file system without them) is a warning: the restore goes on.

import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  opendirSync,
  openSync,
  type Stats,
} from 'node:fs';
import { chmod, chown, lstat } from 'node:fs/promises';
import { join } from 'node:path';

const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * Gives each staged path (`[staged, live]`) the permission bits of the live one it replaces, and its
 * owner when this process may (root) (stop 61 review). A live path that is gone, or of another kind (a
 * file for a directory), gives nothing. Returns a warning for each that could not be given them.
 */
export async function keepLiveModes(pairs: ReadonlyArray<readonly [string, string]>): Promise<string[]> {
  const root = isRoot();
  const warnings: string[] = [];
  for (const [staged, live] of pairs) {
    const [was, now] = await Promise.all([lstat(live).catch(() => undefined), lstat(staged)]);
    if (!was || was.isDirectory() !== now.isDirectory() || was.isSymbolicLink()) continue;
    try {
      if (root && (was.uid !== now.uid || was.gid !== now.gid)) await chown(staged, was.uid, was.gid);
      if ((was.mode & 0o7777) !== (now.mode & 0o7777)) await chmod(staged, was.mode & 0o7777);
    } catch (err) {
      warnings.push(`${live} could not keep its mode and owner: ${(err as Error).message}`);
    }
  }
  return warnings;
}

/** The live path's status when it is a file or directory (not a link), else undefined. */
function liveEntry(path: string): Stats | undefined {
  try {
    const st = lstatSync(path);
    return st.isFile() || st.isDirectory() ? st : undefined;
  } catch {
    return undefined; // gone, or a component of it is not a directory
  }
}

/**
 * The bits of a staged memory file: `bits` (a live file's, or the memdir root's) without execute, set
 * uid, set gid or sticky; execute added where read is when the staged file is executable (HEAD tracks it
 * as 100755, stage.ts executableBits): git compares only that.
 */
const fileBits = (bits: number, executable: boolean): number => {
  const rw = bits & 0o666;
  return executable ? rw | ((rw & 0o444) >> 2) : rw;
};

/**
 * Gives the staged memdir's working tree (everything but `.git`) the modes of the live memdir it
 * replaces: a file or directory at the same path in the live memdir gives its bits (a file keeps its own
 * execute bit, which comes from the snapshot's history), a new one those of the live memdir's root
 * (files without execute unless executable), or of the staged root when there is no live memdir (an
 * import: what the process's umask gave it, as a `git clone` would). As root, every staged entry, `.git`
 * included, takes the owner and group of the live entry at its path, else of the live memdir's root.
 * Each entry is changed through a descriptor opened without following a link (its last component).
 * Synchronous: a few system calls per memory file (~2,000 in ref-170), nothing else running meanwhile.
 * The staged root itself is keepLiveModes's. Returns warnings, as keepLiveModes.
 */
export function keepMemdirModes(staged: string, live: string): string[] {
  const warnings: string[] = [];
  const liveRoot = liveEntry(live);
  const rootBits = (liveRoot ?? lstatSync(staged)).mode & 0o7777;
  const owner = isRoot() && liveRoot?.isDirectory() ? liveRoot : undefined;
  // [relative directory, whether it is inside .git (owners only), the owner its new entries take]
  const dirs: Array<[string, boolean, Stats | undefined]> = [['', false, owner]];
  for (let next = dirs.pop(); next !== undefined; next = dirs.pop()) {
    const [rel, inGit, parentOwner] = next;
    const dir = opendirSync(join(staged, rel));
    try {
      for (let e = dir.readSync(); e !== null; e = dir.readSync()) {
        if (!e.isFile() && !e.isDirectory()) continue; // refuseForeignEntries refused any before
        const sub = rel === '' ? e.name : join(rel, e.name);
        const path = join(staged, sub);
        // by descriptor, opened without following a link: a path swapped for one meanwhile is not followed
        let fd: number | undefined;
        try {
          fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
          const now = fstatSync(fd);
          if (now.isDirectory() !== e.isDirectory() || !(now.isFile() || now.isDirectory())) continue;
          const was = inGit ? undefined : liveEntry(join(live, sub));
          const same = was && was.isDirectory() === now.isDirectory() ? was : undefined;
          const from = owner && (same ?? parentOwner);
          const git = inGit || sub === '.git';
          const bits = (same?.mode ?? rootBits) & 0o7777;
          if (from && (now.uid !== from.uid || now.gid !== from.gid)) fchownSync(fd, from.uid, from.gid);
          if (!git) {
            const want = now.isDirectory() ? bits : fileBits(bits, (now.mode & 0o100) !== 0);
            if ((now.mode & 0o7777) !== want) fchmodSync(fd, want);
          }
          if (now.isDirectory()) dirs.push([sub, git, from]);
        } catch (err) {
          warnings.push(`${path} could not be given its mode and owner: ${(err as Error).message}`);
        } finally {
          if (fd !== undefined) closeSync(fd);
        }
      }
    } finally {
      dir.closeSync();
    }
  }
  return warnings;
}
