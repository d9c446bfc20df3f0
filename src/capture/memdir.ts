// Owns capturing the memdir's working tree: every regular file (committed, modified or untracked),
// `.git` excluded at any depth, walked in byte order of the relative path, captured (small files in
// memory, large ones copied into staging) and hashed from the captured bytes. Symlinks, special files and names that are not UTF-8 are skipped and
// recorded. No size cap. The files of the agent's other components that live in the memdir (the
// default layout keeps the databases and state there) are not memory files.
//
// Whoever writes the memdir (the agent, maybe as another user than the snapshotter) may swap what a
// path names while it is walked: a directory for a symlink to elsewhere, a file for a symlink or a FIFO.
// So every directory and file is opened once (no symlink followed at the last component, never
// blocking), checked to be what it must be, and then read only through that descriptor: the opened
// inode must really be at the memdir's real path + its relative path (on Linux the kernel's own path of
// the descriptor, /proc/self/fd; elsewhere the identities of the path and of its parents before and
// after the open). What fails the check is skipped and recorded, never read (docs/decisions.md, stop 46).

import {
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  lstatSync,
  openSync,
  readFileSync,
  realpathSync,
  type Stats,
} from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type ComponentsInMemdir, isComponentEntry } from '../agent/components-in-memdir.js';
import { componentAbove } from '../format/layout.js';
import type { SkippedEntry } from '../format/manifest.js';
import { IoError } from '../model/errors.js';
import { procFdWorks, procPathIs } from '../util/fd-path.js';
import { copyFdHashed, sha256Hex } from '../util/hash.js';

export interface MemdirFile {
  /** Relative path with `/` separators. */
  rel: string;
  size: number;
  sha256: string;
  /** The captured bytes, when held in memory. */
  data?: Buffer;
  /** Where the captured bytes are staged, when not held in memory. */
  stagedPath?: string;
}

export interface MemdirCapture {
  files: MemdirFile[];
  skipped: SkippedEntry[];
  bytes: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function describeType(d: Dirent<Buffer>): string {
  if (d.isSymbolicLink()) return 'symlink';
  if (d.isFIFO()) return 'fifo';
  if (d.isSocket()) return 'socket';
  if (d.isBlockDevice()) return 'block device';
  if (d.isCharacterDevice()) return 'character device';
  return 'special file';
}

/** What a memdir file or directory is skipped for when it is not where the walk found it. */
export const MOVED_REASON = 'moved or replaced during capture (not read)';

/**
 * How an opened descriptor is checked to be the memdir's entry: `proc`, the kernel's path of the
 * descriptor (/proc/self/fd, Linux); `stat`, the identities of the path and its parents around the open
 * (where there is no /proc). `auto`: `proc` when /proc/self/fd answers.
 */
export type IdentityCheck = 'auto' | 'proc' | 'stat';

/** The opened entry of the memdir, or why it was not opened (`reason`; undefined: gone, say nothing). */
type Opened = { fd: number; st: Stats; parents?: string[] } | { reason: string | undefined };

/**
 * Opens the memdir's entry `rel` (`''`: the memdir itself) once — no symlink followed at the last
 * component, never blocking (a FIFO opens at once) — and checks that the descriptor is the entry at
 * `realRoot/rel` (its parents may have been swapped for symlinks since the walk listed it). `dir`: a
 * directory is expected.
 */
function openEntry(realRoot: string, rel: string, dir: boolean, check: 'proc' | 'stat'): Opened {
  const path = rel ? join(realRoot, rel) : realRoot;
  const parents = check === 'stat' ? parentIdentities(realRoot, rel) : undefined;
  if (parents === null) {
    // a parent is not a directory now: gone (removed by a writer outside the gate), or swapped
    const gone = (() => {
      try {
        lstatSync(path);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ENOENT';
      }
    })();
    return { reason: !gone ? MOVED_REASON : dir ? undefined : 'vanished during capture' };
  }
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (dir ? constants.O_DIRECTORY : 0),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { reason: dir ? undefined : 'vanished during capture' };
    if (code === 'ELOOP') return { reason: 'symlink' };
    if (code === 'ENOTDIR') return { reason: MOVED_REASON };
    if (code === 'ENXIO' || code === 'EOPNOTSUPP') return { reason: 'special file' }; // a socket
    throw new IoError(`reading memdir ${dir ? 'directory' : 'file'} ${rel || '.'}`, err);
  }
  try {
    const st = fstatSync(fd);
    const inPlace =
      check === 'proc'
        ? procPathIs(fd, path)
        : sameIdentity(st, path) && sameParents(parents!, parentIdentities(realRoot, rel));
    if (!inPlace) {
      closeSync(fd);
      return { reason: MOVED_REASON };
    }
    return { fd, st, ...(parents ? { parents } : {}) };
  } catch (err) {
    closeSync(fd);
    throw new IoError(`reading memdir ${dir ? 'directory' : 'file'} ${rel || '.'}`, err);
  }
}

/** Whether `path`, not followed, is the inode `st` is of. */
function sameIdentity(st: Stats, path: string): boolean {
  try {
    const l = lstatSync(path);
    return l.dev === st.dev && l.ino === st.ino;
  } catch {
    return false;
  }
}

/**
 * The identities (dev:ino) of `realRoot` and of every directory between it and `rel`, read without
 * following symlinks; null when one is not a directory (a symlink, or gone).
 */
function parentIdentities(realRoot: string, rel: string): string[] | null {
  const out: string[] = [];
  const segs = rel ? rel.split('/') : [];
  let p = realRoot;
  for (let i = 0; i <= segs.length - 1; i++) {
    try {
      const l = lstatSync(p);
      if (!l.isDirectory()) return null;
      out.push(`${l.dev}:${l.ino}`);
    } catch {
      return null;
    }
    p = join(p, segs[i]!);
  }
  return out;
}

const sameParents = (a: string[], b: string[] | null): boolean =>
  b !== null && a.length === b.length && a.every((v, i) => v === b[i]);

/** The memdir's real path, and which identity check runs (`check`: `auto` decides here). */
function memdirRoot(root: string, check: IdentityCheck): { realRoot: string; check: 'proc' | 'stat' } {
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (err) {
    throw new IoError(`reading memdir directory ${root}`, err);
  }
  return { realRoot, check: check === 'auto' ? (procFdWorks() ? 'proc' : 'stat') : check };
}

export interface WalkOptions {
  /** How opened entries are checked to be the memdir's (default `auto`); tests choose one. */
  identityCheck?: IdentityCheck;
  /**
   * Called after the walk listed the paths and before capture opens the first one (tests swap a
   * path there, deterministically, where a writer would race).
   */
  afterWalk?: () => void;
  /** Called after each file is opened and checked, before it is read (tests swap its path there). */
  afterOpen?: (rel: string) => void;
}

/**
 * Lists the regular files under `root` in byte order of their relative paths, leaving out the files of
 * the agent's other components that live there (`components`: databases, state, restores' directories).
 * Each directory is listed through a descriptor checked to be the memdir's (openEntry): one swapped for
 * a symlink, or moved, is recorded, not listed.
 */
export async function walkMemdir(
  root: string,
  components?: ComponentsInMemdir,
  opts: WalkOptions = {},
): Promise<{ files: string[]; skipped: SkippedEntry[] }> {
  const { realRoot, check } = memdirRoot(root, opts.identityCheck ?? 'auto');
  return walkReal(realRoot, check, components);
}

async function walkReal(
  realRoot: string,
  check: 'proc' | 'stat',
  components?: ComponentsInMemdir,
): Promise<{ files: string[]; skipped: SkippedEntry[] }> {
  const files: string[] = [];
  const skipped: SkippedEntry[] = [];
  async function walk(dirRel: string): Promise<void> {
    const opened = openEntry(realRoot, dirRel, true, check);
    if (!('fd' in opened)) {
      if (opened.reason === undefined && dirRel) return; // removed by a writer outside the gate
      if (!dirRel) throw new IoError(`reading memdir directory ${realRoot}: ${opened.reason ?? 'gone'}`);
      skipped.push({ path: dirRel, reason: opened.reason! });
      return;
    }
    let entries: Dirent<Buffer>[];
    const dirPath = dirRel ? join(realRoot, dirRel) : realRoot;
    try {
      // the directory the descriptor holds (checked), not whatever its path names by now; without
      // /proc, the path, whose identity is checked again after the listing
      entries = await readdir(check === 'proc' ? `/proc/self/fd/${opened.fd}` : dirPath, {
        withFileTypes: true,
        encoding: 'buffer',
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (dirRel && code === 'ENOENT') return; // removed by a writer outside the gate
      throw new IoError(`reading memdir directory ${dirPath}`, err);
    } finally {
      closeSync(opened.fd);
    }
    if (
      check === 'stat' &&
      !(sameIdentity(opened.st, dirPath) && sameParents(opened.parents!, parentIdentities(realRoot, dirRel)))
    ) {
      if (!dirRel) throw new IoError(`reading memdir directory ${realRoot}: ${MOVED_REASON}`);
      skipped.push({ path: dirRel, reason: MOVED_REASON });
      return;
    }
    entries.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const d of entries) {
      let name: string;
      try {
        name = utf8.decode(d.name);
      } catch {
        skipped.push({
          path: `${dirRel ? `${dirRel}/` : ''}${d.name.toString('latin1')}`,
          reason: 'name is not UTF-8',
        });
        continue;
      }
      const rel = dirRel ? `${dirRel}/${name}` : name;
      if (name.toLowerCase() === '.git') {
        // The memdir's own repository travels as a git bundle; anything else named .git cannot be restored.
        if (!(dirRel === '' && name === '.git'))
          skipped.push({ path: rel, reason: 'nested or reserved .git' });
        continue;
      }
      if (components && isComponentEntry(components, rel, d.isDirectory())) continue;
      if (dirRel === '' && d.isDirectory() && componentAbove(`${rel}/x`) !== undefined) {
        // a directory with a database's or the state's file name: a bundle may not hold files under it
        skipped.push({ path: rel, reason: "directory named as a database's or the state's file" });
        continue;
      }
      if (d.isDirectory()) await walk(rel);
      else if (d.isFile()) files.push(rel);
      else skipped.push({ path: rel, reason: describeType(d) });
    }
  }
  await walk('');
  // Directory-wise sorting is not global byte order ("a/b" vs "a-b"): sort the full paths.
  files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return { files, skipped };
}

/**
 * A reader of the memdir's regular files as captureMemdir reads them (each opened once, checked to be
 * the memdir's, never blocking): the bytes of `rel`, or undefined when it is not such a file now. One
 * synchronous read each: restore's plan compares the live files with a snapshot's.
 */
export function memdirFileReader(
  root: string,
  identityCheck: IdentityCheck = 'auto',
): (rel: string) => Buffer | undefined {
  const { realRoot, check } = memdirRoot(root, identityCheck);
  return (rel) => {
    const opened = openEntry(realRoot, rel, false, check);
    if (!('fd' in opened)) return undefined;
    try {
      return opened.st.isFile() ? readFileSync(opened.fd) : undefined;
    } finally {
      closeSync(opened.fd);
    }
  };
}

/** Files up to this size are read into memory (one sync read) instead of being staged on disk. */
const IN_MEMORY_FILE_MAX = 1024 * 1024;
/** At most this much of the memdir is held in memory; the rest is staged on disk. */
const IN_MEMORY_TOTAL_MAX = 64 * 1024 * 1024;

/**
 * Captures every regular file of `memdir`, in order. Each is opened once and checked to be the
 * memdir's (openEntry), then read through that descriptor: small files into memory with one
 * synchronous read each (thousands of tiny async calls cost ~50× more here); large ones, and whatever
 * exceeds the in-memory budget, copied to `stagingDir/<rel>`. Hashes are of the captured bytes.
 */
export async function captureMemdir(
  memdir: string,
  stagingDir: string,
  components?: ComponentsInMemdir,
  opts: WalkOptions = {},
): Promise<MemdirCapture> {
  const { realRoot, check } = memdirRoot(memdir, opts.identityCheck ?? 'auto');
  const { files, skipped } = await walkReal(realRoot, check, components);
  opts.afterWalk?.();
  const captured: MemdirFile[] = [];
  let inMemory = 0;
  for (const rel of files) {
    const opened = openEntry(realRoot, rel, false, check);
    if (!('fd' in opened)) {
      skipped.push({ path: rel, reason: opened.reason! });
      continue;
    }
    const { fd, st } = opened;
    try {
      opts.afterOpen?.(rel);
      if (!st.isFile()) {
        skipped.push({ path: rel, reason: st.isDirectory() ? MOVED_REASON : 'special file' });
        continue;
      }
      const size = st.size;
      if (size <= IN_MEMORY_FILE_MAX && inMemory + size <= IN_MEMORY_TOTAL_MAX) {
        let data: Buffer;
        try {
          data = readFileSync(fd);
        } catch (err) {
          throw new IoError(`reading memdir file ${rel}`, err);
        }
        inMemory += data.length;
        captured.push({ rel, size: data.length, sha256: sha256Hex(data), data });
        continue;
      }
      const dst = join(stagingDir, rel);
      try {
        await mkdir(dirname(dst), { recursive: true });
        // from the descriptor checked above: the path may name something else by now
        captured.push({ rel, ...(await copyFdHashed(fd, dst)), stagedPath: dst });
      } catch (err) {
        throw new IoError(`copying memdir file ${rel}`, err);
      }
    } finally {
      closeSync(fd);
    }
  }
  skipped.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return { files: captured, skipped, bytes: captured.reduce((s, f) => s + f.size, 0) };
}
