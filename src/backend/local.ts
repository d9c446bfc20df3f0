// Owns the local directory backend: objects are files `<root>/<type>/<name>`, packs
// `<root>/packs/<first two hex>/<name>`. A save writes a temp file (O_EXCL | O_NOFOLLOW, mode 0600) in the
// object's directory, fsyncs it, publishes it by rename (replace) or link (ifAbsent: never replaces) and
// fsyncs the directory; directories are created on first save. Temp files and names that are not valid
// for the type are never listed; a valid name that is not a regular file (a symlink, a directory, a
// FIFO), of any type, and a symlinked (or non-directory) pack prefix directory are refused
// (UnsafeObjectError) by a list, never skipped: a pack skipped is one prune takes for gone, an index
// file skipped makes its packs unindexed, a listing entry or manifest skipped hides a snapshot, a pin
// skipped unpins it (stop 44, 45). A symlink or other non-regular entry inside the root is never
// followed: UnsafeObjectError. That holds for every operation, not only a process's first: the directories
// between the root and an object (its type's, a pack's prefix) are lstat-ed again by each save (before its
// temporary file is created and again just before it is published), load, stat, list, sweep and remove,
// never remembered: a directory swapped for a symlink after a first use (a long-lived daemon, a library
// user's LocalSnapshotter) is refused by the next operation, not followed (nothing is written into, read
// from or removed from where it points). A few lstat calls per object operation; nothing else changes.
// What remains is the window between that lstat and the call that uses the path (open, rename, link,
// unlink, readdir): Node has no openat/renameat/unlinkat/fdopendir, so a directory cannot be held by a
// descriptor across them (opening it O_DIRECTORY | O_NOFOLLOW and comparing its dev/ino would not help:
// the rename still resolves the path), and a swap inside that window is followed. The root itself (and
// what leads to it) is not checked: it is where the user or the config put the repository, and a symlink
// to another disk is a legitimate root.

import { constants } from 'node:fs';
import { type FileHandle, link, lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  IoError,
  ObjectExistsError,
  ObjectNotFoundError,
  ShortReadError,
  SnapshotError,
  UnsafeObjectError,
} from '../model/errors.js';
import { makeDirs } from '../util/make-dirs.js';
import { randomBytes } from '../util/random.js';
import {
  type Backend,
  type Handle,
  isValidName,
  OBJECT_TYPES,
  type ObjectInfo,
  type ObjectReader,
  type ObjectType,
  type Range,
  resolveRange,
  type SaveOptions,
  type SaveSource,
  type SweepReport,
  sourceChunks,
  validateHandle,
  validateRange,
  validateType,
} from './backend.js';

/** Bytes per read of a load. */
const READ_CHUNK = 1 << 20;
const PACK_PREFIX = /^[0-9a-f]{2}$/;
/** A save's temporary file, beside the object it becomes: `.tmp-` and 16 hex digits. */
const TEMP_PREFIX = '.tmp-';
const TEMP_FILE = /^\.tmp-[0-9a-f]{16}$/;

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Runs one file system step; errno failures become IoError naming the step, typed errors pass through. */
async function io<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    throw new IoError(what, err);
  }
}

/** Makes `dir`'s entries durable; `noFollow`: a directory inside the root, refused (ELOOP) when a symlink. */
async function fsyncDir(dir: string, noFollow: boolean): Promise<void> {
  const fh = await open(
    dir,
    constants.O_RDONLY | constants.O_DIRECTORY | (noFollow ? constants.O_NOFOLLOW : 0),
  );
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

export class LocalBackend implements Backend {
  /** Each piece of a streamed save is written as it comes: a pack file is streamed, not read whole. */
  readonly streamedSaves = true;
  readonly location: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.location = this.root;
  }

  private dirOf(h: Handle): string {
    return h.type === 'packs' ? join(this.root, 'packs', h.name.slice(0, 2)) : join(this.root, h.type);
  }

  /** The directories between the root and `dir`, outermost first. */
  private chain(dir: string): string[] {
    const out: string[] = [];
    for (let d = dir; d !== this.root; d = dirname(d)) out.unshift(d);
    return out;
  }

  /**
   * Checks that `dir` (inside the root) is a real directory, by an lstat of it now (never remembered: a
   * directory checked once can be swapped for a symlink afterwards); false when it does not exist.
   */
  private async isRealDir(dir: string): Promise<boolean> {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(dir);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return false;
      throw new IoError(`stat ${dir}`, err);
    }
    if (!st.isDirectory())
      throw new UnsafeObjectError(
        `${dir} is a ${st.isSymbolicLink() ? 'symlink' : 'non-directory'}, not a directory of ${this.location}`,
      );
    return true;
  }

  /**
   * Whether every directory from the root to `dir` exists as a real directory (never creates); one that is
   * a symlink or not a directory is UnsafeObjectError. Called by every operation just before it uses a
   * path through `dir` (the residual window: the module's header).
   */
  private async dirExists(dir: string): Promise<boolean> {
    for (const d of this.chain(dir)) if (!(await this.isRealDir(d))) return false;
    return true;
  }

  /** Creates the directories from the root to `dir` as needed, each made durable in its parent. */
  private async ensureDir(dir: string): Promise<void> {
    if (await this.dirExists(dir)) return;
    await io(`create ${this.root}`, () => makeDirs(this.root, 0o700));
    for (const d of this.chain(dir)) {
      if (await this.isRealDir(d)) continue;
      try {
        await mkdir(d, { mode: 0o700 });
        await fsyncDir(dirname(d), dirname(d) !== this.root);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw new IoError(`create ${d}`, err);
      }
      if (!(await this.isRealDir(d))) throw new IoError(`create ${d}: it vanished`);
    }
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    h = validateHandle(h);
    const dir = this.dirOf(h);
    const final = join(dir, h.name);
    const what = `save ${h.type}/${h.name} in ${this.location}`;
    await this.ensureDir(dir);
    const tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const fh = await io(what, () =>
      open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600),
    );
    let open_ = true;
    let published = false;
    try {
      // The source's own errors pass through unchanged; only file system steps become IoError.
      for await (const chunk of sourceChunks(data)) await io(what, () => writeAll(fh, chunk));
      await io(what, () => fh.sync());
      open_ = false;
      await io(what, () => fh.close());
      // Checked again just before the rename or link: the write may have taken long (a streamed pack).
      if (!(await this.dirExists(dir))) throw new IoError(`${what}: ${dir} vanished`);
      if (opts?.ifAbsent) {
        try {
          await link(tmp, final);
        } catch (err) {
          if (errnoOf(err) === 'EEXIST') throw new ObjectExistsError(h.type, h.name, this.location);
          throw new IoError(what, err);
        }
        published = true;
        await io(what, () => unlink(tmp));
      } else {
        await io(what, () => rename(tmp, final));
        published = true;
      }
      await io(what, () => fsyncDir(dir, true));
    } finally {
      if (open_) await fh.close().catch(() => {});
      if (!published) await unlink(tmp).catch(() => {});
    }
  }

  /** Opens the object for reading without following a symlink or blocking on a FIFO. */
  private async openObject(h: Handle): Promise<{ fh: FileHandle; size: number }> {
    const dir = this.dirOf(h);
    const missing = () => new ObjectNotFoundError(h.type, h.name, this.location);
    if (!(await this.dirExists(dir))) throw missing();
    let fh: FileHandle;
    try {
      fh = await open(join(dir, h.name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw missing();
      if (errnoOf(err) === 'ELOOP') throw new UnsafeObjectError(`${h.type}/${h.name} is a symlink`);
      throw new IoError(`load ${h.type}/${h.name} from ${this.location}`, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new UnsafeObjectError(`${h.type}/${h.name} is not a regular file`);
      return { fh, size: st.size };
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof SnapshotError) throw err;
      throw new IoError(`load ${h.type}/${h.name} from ${this.location}`, err);
    }
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const what = `load ${h.type}/${h.name} from ${this.location}`;
    const { fh, size } = await this.openObject(h);
    try {
      const { start, end } = resolveRange(h, range, size);
      let pos = start;
      while (pos < end) {
        const want = Math.min(READ_CHUNK, end - pos);
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await io(what, () => fh.read(buf, 0, want, pos));
        if (bytesRead === 0)
          throw new ShortReadError(`${h.type}/${h.name} ended at byte ${pos}, before ${end}`, {
            type: h.type,
            name: h.name,
            offset: pos,
            end,
          });
        pos += bytesRead;
        yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async openReader(h: Handle, objectMax?: number): Promise<ObjectReader> {
    h = validateHandle(h);
    const what = `load ${h.type}/${h.name} from ${this.location}`;
    const { fh, size } = await this.openObject(h);
    try {
      resolveRange(h, validateRange(objectMax === undefined ? undefined : { offset: 0, objectMax }), size);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    return {
      size,
      read: async (offset, length) => {
        const { start, end } = resolveRange(h, validateRange({ offset, length }), size);
        const buf = Buffer.allocUnsafe(end - start);
        let filled = 0;
        while (filled < buf.length) {
          const { bytesRead } = await io(what, () =>
            fh.read(buf, filled, buf.length - filled, start + filled),
          );
          if (bytesRead === 0)
            throw new ShortReadError(`${h.type}/${h.name} ended at byte ${start + filled}, before ${end}`, {
              type: h.type,
              name: h.name,
              offset: start + filled,
              end,
            });
          filled += bytesRead;
        }
        return buf;
      },
      close: () => fh.close().catch(() => {}),
    };
  }

  async readInto(h: Handle, offset: number, into: Uint8Array): Promise<number> {
    h = validateHandle(h);
    validateRange({ offset });
    const what = `load ${h.type}/${h.name} from ${this.location}`;
    const { fh } = await this.openObject(h);
    try {
      let filled = 0;
      while (filled < into.length) {
        const { bytesRead } = await io(what, () =>
          fh.read(into, filled, into.length - filled, offset + filled),
        );
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return filled;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    const { fh, size } = await this.openObject(h);
    await fh.close().catch(() => {});
    return { name: h.name, size };
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    type = validateType(type);
    const dir = join(this.root, type);
    if (!(await this.dirExists(dir))) return;
    if (type !== 'packs') {
      yield* this.listDir(type, dir, '');
      return;
    }
    const prefixes = await io(`list ${dir}`, () => readdir(dir, { withFileTypes: true }));
    for (const p of prefixes) {
      if (!PACK_PREFIX.test(p.name)) continue;
      // A prefix directory that is a symlink (or not a directory) holds packs prune would not see: a
      // pack skipped here is one prune takes for gone and drops from the index (stop 44).
      if (!p.isDirectory())
        throw new UnsafeObjectError(
          `${join(dir, p.name)} is a ${p.isSymbolicLink() ? 'symlink' : 'non-directory'}, not a directory of ${this.location}`,
        );
      // lstat-ed again: readdir's type of it is as old as the listing of `packs`
      if (await this.dirExists(join(dir, p.name))) yield* this.listDir(type, join(dir, p.name), p.name);
    }
  }

  /**
   * The regular files of `dir` whose names are valid for `type` and start with `prefix`. A valid name
   * that is not a regular file (a symlink, a directory, a FIFO) is refused: UnsafeObjectError, never
   * skipped (what it hides is what the type holds: a pack, an index file, a snapshot, a pin, a lock).
   */
  private async *listDir(type: ObjectType, dir: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const entries = await io(`list ${dir}`, () => readdir(dir, { withFileTypes: true }));
    for (const e of entries) {
      if (!isValidName(type, e.name) || !e.name.startsWith(prefix)) continue;
      if (!e.isFile())
        throw new UnsafeObjectError(
          `${type}/${e.name} is a ${e.isSymbolicLink() ? 'symlink' : e.isDirectory() ? 'directory' : 'non-regular file'} in ${this.location}`,
        );
      let size: number;
      try {
        size = (await lstat(join(dir, e.name))).size;
      } catch (err) {
        // removed since readdir; unless `dir` itself was swapped for a symlink meanwhile (UnsafeObjectError):
        // a swap must not make the objects listed so far vanish from the list
        if (errnoOf(err) === 'ENOENT' && (await this.dirExists(dir))) continue;
        if (errnoOf(err) === 'ENOENT') return;
        throw new IoError(`list ${dir}`, err);
      }
      yield { name: e.name, size };
    }
  }

  /**
   * The temporary files of saves that were killed (`.tmp-<16 hex>` beside the objects: a pack's up to
   * its whole size) older than `olderThanMs` by their modification time, removed (stop 55: nothing
   * removed them). A symlink or anything else of that name is left alone: only what a save makes goes.
   */
  async sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    const now = Date.now();
    let removed = 0;
    let bytes = 0;
    const sweep = async (dir: string): Promise<void> => {
      const entries = await io(`sweep ${dir}`, () => readdir(dir, { withFileTypes: true }));
      for (const e of entries) {
        if (!TEMP_FILE.test(e.name) || !e.isFile()) continue;
        const file = join(dir, e.name);
        const st = await lstat(file).catch(() => undefined);
        if (!st?.isFile() || now - st.mtimeMs < olderThanMs) continue;
        if (!(await this.dirExists(dir))) return;
        try {
          await unlink(file);
        } catch (err) {
          if (errnoOf(err) === 'ENOENT') continue;
          throw new IoError(`sweep ${file}`, err);
        }
        removed++;
        bytes += st.size;
      }
    };
    for (const type of OBJECT_TYPES) {
      const dir = join(this.root, type);
      if (!(await this.dirExists(dir))) continue;
      await sweep(dir);
      if (type !== 'packs') continue;
      for (const p of await io(`sweep ${dir}`, () => readdir(dir, { withFileTypes: true })))
        if (PACK_PREFIX.test(p.name) && p.isDirectory()) await sweep(join(dir, p.name));
    }
    return { removed, bytes };
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    const dir = this.dirOf(h);
    if (!(await this.dirExists(dir))) return;
    const what = `remove ${h.type}/${h.name} from ${this.location}`;
    try {
      await unlink(join(dir, h.name));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw new IoError(what, err);
    }
    await io(what, () => fsyncDir(dir, true));
  }

  async close(): Promise<void> {}
}
