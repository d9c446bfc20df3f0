// Owns capturing the memdir's working tree: every regular file (committed, modified or untracked),
// `.git` excluded at any depth, walked in byte order of the relative path, captured (small files in
// memory, large ones copied into staging) and hashed from the captured bytes. Symlinks, special files and names that are not UTF-8 are skipped and
// recorded. No size cap. The files of the agent's other components that live in the memdir (the
// default layout keeps the databases and state there) are not memory files.

import { closeSync, constants, type Dirent, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type ComponentsInMemdir, isComponentEntry } from '../agent/components-in-memdir.js';
import { componentAbove } from '../format/layout.js';
import type { SkippedEntry } from '../format/manifest.js';
import { IoError } from '../model/errors.js';
import { copyFileHashed, sha256Hex } from '../util/hash.js';

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

/**
 * Lists the regular files under `root` in byte order of their relative paths, leaving out the files of
 * the agent's other components that live there (`components`: databases, state, restores' directories).
 */
export async function walkMemdir(
  root: string,
  components?: ComponentsInMemdir,
): Promise<{ files: string[]; skipped: SkippedEntry[] }> {
  const files: string[] = [];
  const skipped: SkippedEntry[] = [];
  async function walk(dirRel: string): Promise<void> {
    let entries: Dirent<Buffer>[];
    try {
      entries = await readdir(dirRel ? join(root, dirRel) : root, {
        withFileTypes: true,
        encoding: 'buffer',
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (dirRel && code === 'ENOENT') return; // removed by a writer outside the gate
      throw new IoError(`reading memdir directory ${join(root, dirRel)}`, err);
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

/** Files up to this size are read into memory (one sync read) instead of being staged on disk. */
const IN_MEMORY_FILE_MAX = 1024 * 1024;
/** At most this much of the memdir is held in memory; the rest is staged on disk. */
const IN_MEMORY_TOTAL_MAX = 64 * 1024 * 1024;

/**
 * Captures every regular file of `memdir`, in order. Small files are read into memory with one
 * synchronous read each (thousands of tiny async calls cost ~50× more here); large ones, and whatever
 * exceeds the in-memory budget, are copied to `stagingDir/<rel>`. Hashes are of the captured bytes.
 */
export async function captureMemdir(
  memdir: string,
  stagingDir: string,
  components?: ComponentsInMemdir,
): Promise<MemdirCapture> {
  const { files, skipped } = await walkMemdir(memdir, components);
  const captured: MemdirFile[] = [];
  let inMemory = 0;
  for (const rel of files) {
    const src = join(memdir, rel);
    let fd: number;
    try {
      fd = openSync(src, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP') {
        skipped.push({ path: rel, reason: code === 'ENOENT' ? 'vanished during capture' : 'symlink' });
        continue;
      }
      throw new IoError(`reading memdir file ${rel}`, err);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) {
        skipped.push({ path: rel, reason: 'special file' });
        continue;
      }
      const size = st.size;
      if (size <= IN_MEMORY_FILE_MAX && inMemory + size <= IN_MEMORY_TOTAL_MAX) {
        const data = readFileSync(fd);
        inMemory += data.length;
        captured.push({ rel, size: data.length, sha256: sha256Hex(data), data });
        continue;
      }
    } catch (err) {
      throw new IoError(`reading memdir file ${rel}`, err);
    } finally {
      closeSync(fd);
    }
    const dst = join(stagingDir, rel);
    try {
      await mkdir(dirname(dst), { recursive: true });
      captured.push({ rel, ...(await copyFileHashed(src, dst)), stagedPath: dst });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(src)) {
        skipped.push({ path: rel, reason: 'vanished during capture' });
        continue;
      }
      throw new IoError(`copying memdir file ${rel}`, err);
    }
  }
  skipped.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return { files: captured, skipped, bytes: captured.reduce((s, f) => s + f.size, 0) };
}
