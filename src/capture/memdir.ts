// Owns capturing the memdir's working tree: every regular file (committed, modified or untracked),
// `.git` excluded at any depth, walked in byte order of the relative path, copied into staging and
// hashed from the copied bytes. Symlinks, special files and names that are not UTF-8 are skipped and
// recorded. No size cap.

import type { Dirent } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SkippedEntry } from '../format/manifest.js';
import { IoError } from '../model/errors.js';
import { copyFileHashed } from '../util/hash.js';
import { allSettledOrThrow } from '../util/settle.js';

export interface MemdirFile {
  /** Relative path with `/` separators. */
  rel: string;
  size: number;
  sha256: string;
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

/** Lists the regular files under `root` in byte order of their relative paths. */
export async function walkMemdir(root: string): Promise<{ files: string[]; skipped: SkippedEntry[] }> {
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

/** Copies every regular file of `memdir` to `stagingDir/<rel>`, in order, with bounded parallelism. */
export async function captureMemdir(
  memdir: string,
  stagingDir: string,
  parallel = 16,
): Promise<MemdirCapture> {
  const { files, skipped } = await walkMemdir(memdir);
  const out: Array<MemdirFile | undefined> = new Array(files.length);
  const made = new Set<string>();
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (next < files.length && !failed) {
      const i = next++;
      const rel = files[i]!;
      const dst = join(stagingDir, rel);
      const parent = dirname(dst);
      if (!made.has(parent)) {
        await mkdir(parent, { recursive: true });
        made.add(parent);
      }
      try {
        out[i] = { rel, ...(await copyFileHashed(join(memdir, rel), dst)) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          skipped.push({ path: rel, reason: 'vanished during capture' });
          continue;
        }
        failed = true;
        throw new IoError(`copying memdir file ${rel}`, err);
      }
    }
  }
  await allSettledOrThrow(Array.from({ length: Math.min(parallel, files.length) }, worker));
  const captured = out.filter((f): f is MemdirFile => f !== undefined);
  skipped.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return { files: captured, skipped, bytes: captured.reduce((s, f) => s + f.size, 0) };
}
