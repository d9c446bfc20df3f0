// Owns the local cache of a remote repository (`<state_root>/cache/<sha256 of the location>/`): copies of
// the objects that never change once written (config, keys, index, snapshots, listing; docs/repository.md
// §1), so `list` and `find` fetch only the entries they have not seen. Packs are not cached (restore
// reads ranges of them), nor pins and locks (they change). Listing names always come from the store, so
// a snapshot forgotten on another host disappears at once. Each entry is `sha256(content) | content`,
// written to a temporary file and renamed; an entry whose checksum (or, for hex-named types, whose name)
// does not match is removed and fetched again, never used; entries of objects a complete list no longer
// shows are dropped. Deleting the cache loses nothing.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Backend,
  type Handle,
  type ObjectInfo,
  type ObjectType,
  type Range,
  resolveRange,
  type SaveOptions,
  type SaveSource,
  type SweepReport,
  validateHandle,
  validateRange,
} from './backend.js';

/** The types whose objects never change once written. */
export const CACHED_TYPES: ReadonlySet<ObjectType> = new Set([
  'config',
  'keys',
  'index',
  'snapshots',
  'listing',
]);
/** Objects bigger than this are not cached. */
export const CACHE_MAX_OBJECT = 16 * 1024 * 1024;

const STAT_FROM_CACHE: ReadonlySet<ObjectType> = new Set(['config', 'keys', 'index']);
const HASHED_NAME: ReadonlySet<ObjectType> = new Set(['keys', 'index']);
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

export class CachedBackend implements Backend {
  /** Entries found corrupt and fetched again (for tests and diagnostics). */
  refetched = 0;

  constructor(
    readonly inner: Backend,
    /** This repository's cache directory. */
    readonly dir: string,
  ) {}

  get location(): string {
    return this.inner.location;
  }

  private pathOf(h: Handle): string {
    return join(this.dir, h.type, h.name);
  }

  /** The cached content of `h`, or undefined (absent or corrupt: a corrupt entry is removed). */
  private async cached(h: Handle): Promise<Buffer | undefined> {
    if (!CACHED_TYPES.has(h.type)) return undefined;
    let raw: Buffer;
    try {
      raw = await readFile(this.pathOf(h));
    } catch {
      return undefined;
    }
    const content = raw.subarray(32);
    const sum = sha256(content);
    const ok =
      raw.length >= 32 &&
      sum.equals(raw.subarray(0, 32)) &&
      (!HASHED_NAME.has(h.type) || sum.toString('hex') === h.name);
    if (ok) return content;
    this.refetched++;
    await unlink(this.pathOf(h)).catch(() => {});
    return undefined;
  }

  /** Stores a copy of `content` (hex-named objects only when their name is their hash). Never throws. */
  private async keep(h: Handle, content: Buffer): Promise<void> {
    const sum = sha256(content);
    if (HASHED_NAME.has(h.type) && sum.toString('hex') !== h.name) return; // damaged in transit: not kept
    const dir = join(this.dir, h.type);
    const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(tmp, Buffer.concat([sum, content]), { mode: 0o600, flag: 'wx' });
      await rename(tmp, this.pathOf(h));
    } catch {
      await rm(tmp, { force: true }).catch(() => {});
    }
  }

  save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    return this.inner.save(h, data, opts);
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const hit = await this.cached(h);
    if (hit) {
      const { start, end } = resolveRange(h, range, hit.length);
      if (end > start) yield Buffer.from(hit.subarray(start, end));
      return;
    }
    if (!CACHED_TYPES.has(h.type) || range !== undefined) {
      yield* this.inner.load(h, range);
      return;
    }
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const c of this.inner.load(h)) {
      total += c.length;
      if (total <= CACHE_MAX_OBJECT) parts.push(Buffer.from(c));
      else parts.length = 0;
      yield c;
    }
    if (total <= CACHE_MAX_OBJECT) await this.keep(h, Buffer.concat(parts, total));
  }

  /** From the cache for config, keys and index; listing and manifests may have been forgotten meanwhile. */
  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    const hit = STAT_FROM_CACHE.has(h.type) ? await this.cached(h) : undefined;
    if (hit) return { name: h.name, size: hit.length };
    return this.inner.stat(h);
  }

  /**
   * The store's list (never the cache's). A list read to its end also drops cached entries of that type
   * the store no longer has (forgotten snapshots, index files a prune replaced), so the cache does not grow
   * without bound.
   */
  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    const seen = new Set<string>();
    for await (const info of this.inner.list(type)) {
      seen.add(info.name);
      yield info;
    }
    if (!CACHED_TYPES.has(type)) return;
    let names: string[];
    try {
      names = await readdir(join(this.dir, type));
    } catch {
      return;
    }
    for (const n of names)
      if (!seen.has(n) && !n.startsWith('.tmp-'))
        await rm(join(this.dir, type, n), { force: true }).catch(() => {});
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    await this.inner.remove(h);
    if (CACHED_TYPES.has(h.type)) await rm(this.pathOf(h), { force: true }).catch(() => {});
  }

  /** The inner backend's sweep (none: nothing to sweep); leftovers are never cached. */
  sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    return this.inner.sweepLeftovers?.(olderThanMs) ?? Promise.resolve({ removed: 0, bytes: 0 });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
