// Owns the local cache of a remote repository (`<state_root>/cache/<sha256 of the location>/`): copies of
// the objects that never change once written (config, keys, index, listing; docs/repository.md §1), so
// `list` fetches only the entries it has not seen. Packs are not cached (restore reads ranges of them),
// nor pins and locks (they change), nor manifests: a snapshot's id can come back with other content
// (deleted, then an import that keeps the bundle's id, a redacted export's copy included), and a host
// that read its old manifest from a cache restored the old content, verified and pruned by it
// (removing the new one's data) and said an import was already present (stop 51). Every read of a
// manifest goes to the store: one request per snapshot read. Listing names always follow the store's
// current state, so a snapshot forgotten on another host disappears at once: they are listed by the
// store, or, on a store with a state token (NATS), kept with the token they were seen under and used
// while the store gives the same token (listNames). Each object is one file `sha256(content) | content`,
// written to a temporary file and renamed; an entry whose checksum (or, for hex-named types,
// whose name) does not match is removed and fetched again, never used; entries of objects a complete list
// no longer shows are dropped. The listing entries, read all at once by every `list`, are one file
// instead (`listing.entries`: blocks of entries of ~64 KiB, each checksummed; loadMany): a warm list
// reads one file. It holds the entries of the names the last list showed, rewritten whole (temporary
// file, rename) when that changes; a block whose checksum fails is not used (its entries are fetched
// again) and the file is rewritten. An entry a caller found damaged (evict: it does not parse, open or
// verify) is forgotten, so the next read goes to the store. Deleting the cache loses nothing. A config
// answered from the cache is checked against the store's before the process's first write (the ids
// must match), and when a reader finds a manifest of another repository (confirmRepository): a
// repository replaced behind the cache is STORE_REPLACED and the cache is dropped. Nothing is written or
// removed through a cache directory (its own, a type's) that is a symlink: each write and each emptying by
// a list lstat-s them first (realDirs), and a list removes only names of its type's objects.

import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ObjectNotFoundError, ObjectTooLargeError, StoreUnavailableError } from '../model/errors.js';
import {
  type Backend,
  type Handle,
  isValidName,
  LOAD_PARALLEL,
  listNames,
  loadIfPresent,
  mapBounded,
  type ObjectInfo,
  type ObjectType,
  type Packing,
  type Range,
  readAll,
  resolveRange,
  type SaveOptions,
  type SaveSource,
  type SweepReport,
  validateHandle,
  validateRange,
  validateType,
} from './backend.js';

/** The types whose objects never change once written, cached one file per object. */
export const CACHED_TYPES: ReadonlySet<ObjectType> = new Set(['config', 'keys', 'index']);
/** The listing entries' one file, in the cache directory. */
export const LISTING_FILE = 'listing.entries';
/** What the listing file starts with (a file that does not is not used). */
const LISTING_MAGIC = Buffer.from('nexo-memory listing cache 1\n');
/**
 * Then blocks of records: a block's head is its records' length (u32, big-endian) and sha256(that length |
 * records); a record is its name's length (u8), the name, the content's length (u32) and the content.
 */
const BLOCK_HEAD = 4 + 32;
/** Records are gathered into blocks of about this many bytes (one checksum each). */
const BLOCK_TARGET = 64 * 1024;

/** Adds the records of raw[from, to) to `entries`; false when they do not fill it exactly. */
function readRecords(raw: Buffer, from: number, to: number, entries: Map<string, Buffer>): boolean {
  const found: Array<[string, Buffer]> = [];
  let pos = from;
  while (pos < to) {
    const nameEnd = pos + 1 + raw[pos]!;
    if (nameEnd + 4 > to) return false;
    const end = nameEnd + 4 + raw.readUInt32BE(nameEnd);
    if (end > to) return false;
    found.push([raw.toString('latin1', pos + 1, nameEnd), raw.subarray(nameEnd + 4, end)]);
    pos = end;
  }
  for (const [name, content] of found) entries.set(name, content);
  return true;
}
/**
 * The types whose names a list is answered with from the cache while the store's state token is the one
 * they were seen under (listNames): what `list` reads. One file each, `names.<type>`: sha256 | JSON
 * {token, names}.
 */
const NAMES_CACHED: ReadonlySet<ObjectType> = new Set(['listing', 'pins']);
const NAMES_FILE_PREFIX = 'names.';
/** A config loaded (and kept) by a stat is at most this big; a bigger one is only stat'ed. */
const CONFIG_MAX = 1024 * 1024;
/** Objects bigger than this are not cached. */
export const CACHE_MAX_OBJECT = 16 * 1024 * 1024;

const STAT_FROM_CACHE: ReadonlySet<ObjectType> = new Set(['config', 'keys', 'index']);
const HASHED_NAME: ReadonlySet<ObjectType> = new Set(['keys', 'index']);
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/** The `id` of a config's bytes, or undefined when they are not a config's JSON. */
function configId(bytes: Buffer): string | undefined {
  try {
    const id = (JSON.parse(bytes.toString('utf8')) as { id?: unknown })?.id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `dir` is a directory and not a symlink (lstat); false when absent or unreadable. */
async function isRealDir(dir: string): Promise<boolean> {
  return (await lstat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

export class CachedBackend implements Backend {
  /** Entries found corrupt and fetched again (for tests and diagnostics). */
  refetched = 0;
  /** The config this process was answered with from the cache (confirmed with the store before a write). */
  private servedConfig: Buffer | undefined;
  /** The confirmation of servedConfig (once per process; a replaced repository keeps it rejected). */
  private confirming: Promise<void> | undefined;
  /**
   * The cache was dropped (STORE_REPLACED): nothing is written to it any more, and a write that was
   * already under way when it was dropped removes the directory again once it lands (dropAgain).
   */
  private dropped = false;

  constructor(
    readonly inner: Backend,
    /** This repository's cache directory. */
    readonly dir: string,
  ) {}

  get location(): string {
    return this.inner.location;
  }

  get packing(): Packing | undefined {
    return this.inner.packing;
  }

  /**
   * Whether this cache's directory and `dir` (it or one of its type directories) are real directories,
   * lstat-ed now: a write or a removal goes through neither when one is a symlink (what it points to is
   * not the cache's). A few lstat calls per cache write; the window between them and the write remains
   * (Node has no openat), as in the local backend.
   */
  private async realDirs(dir: string): Promise<boolean> {
    return (await isRealDir(this.dir)) && (dir === this.dir || (await isRealDir(dir)));
  }

  private pathOf(h: Handle): string {
    return join(this.dir, h.type, h.name);
  }

  /** The cached content of `h`, or undefined (absent or corrupt: a corrupt entry is removed). */
  private cached(h: Handle): Promise<Buffer | undefined> {
    return CACHED_TYPES.has(h.type) ? this.cachedFile(h) : Promise.resolve(undefined);
  }

  /** The content of `h`'s own cache file, or undefined (absent or corrupt: a corrupt file is removed). */
  private async cachedFile(h: Handle): Promise<Buffer | undefined> {
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
    await this.writeFileQuietly(this.pathOf(h), content, sum);
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    await this.confirmConfig();
    return this.inner.save(h, data, opts);
  }

  /**
   * Before this process's first write (save, remove): a config answered from the cache is checked
   * against the store's (one load; the ids must match). A repository replaced behind the cache (deleted,
   * created again by another host: a new id), or whose config is gone, is StoreUnavailableError
   * STORE_REPLACED for this and every later write of this backend, and the cache directory is dropped (it
   * held the old repository's objects): the next process reads the store. A failure to ask is reported
   * and asked again by the next write.
   */
  private confirmConfig(): Promise<void> {
    const served = this.servedConfig;
    if (!served) return Promise.resolve();
    this.confirming ??= this.checkConfig(served).catch((err: unknown) => {
      if (!(err instanceof StoreUnavailableError && err.code === 'STORE_REPLACED'))
        this.confirming = undefined;
      throw err;
    });
    return this.confirming;
  }

  private async checkConfig(served: Buffer): Promise<void> {
    const h: Handle = { type: 'config', name: 'config' };
    let stored: Buffer | undefined;
    try {
      stored = await readAll(this.inner, h, { maxBytes: CONFIG_MAX });
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err;
    }
    const was = configId(served);
    const now = stored && configId(stored);
    if (stored && (stored.equals(served) || (was !== undefined && now === was))) {
      if (!stored.equals(served)) await this.keep(h, stored);
      return;
    }
    throw await this.replaced(stored !== undefined, now, was, 'Nothing was written');
  }

  /**
   * Drops the cache (it held a replaced repository's objects) and returns the STORE_REPLACED error
   * (`now`: the store's config id, `was`: the one this host knew; `done`: what the command did).
   */
  private async replaced(
    hasConfig: boolean,
    now: string | undefined,
    was: string | undefined,
    done: string,
  ): Promise<StoreUnavailableError> {
    this.dropped = true;
    await this.dropAgain();
    const location = this.inner.location;
    const short = (id: string | undefined) => (id ? `${id.slice(0, 12)}…` : 'unreadable');
    const err = new StoreUnavailableError(
      'STORE_REPLACED',
      `the repository at ${location} is not the one this host's cache knows: ` +
        (hasConfig
          ? `its config id is ${short(now)}, the cache had ${short(was)} (it was replaced, e.g. deleted and created again by another host)`
          : 'its config is gone from the store (the repository was deleted, or its config lost)') +
        `. ${done}. The cache of the old repository is dropped: run the command again`,
      { backend: location.startsWith('nats://') ? 'nats' : 's3', location },
    );
    // every later write of this backend is refused as well (confirmConfig)
    const refused = Promise.reject(err);
    refused.catch(() => {});
    this.confirming = refused;
    return err;
  }

  /**
   * A reader that opened the repository of config id `id` found an object of another repository (a
   * manifest naming another repository id: the config it opened came from this cache, the manifest from
   * the store). One load of the store's config: when its id is `id` the object is damage and this
   * resolves (the caller reports it); otherwise the repository was replaced behind the cache (stop 47: a
   * healthy snapshot was called damaged by every read until a write came): StoreUnavailableError
   * STORE_REPLACED, and the cache is dropped, so the next command reads the store.
   */
  async confirmRepository(id: string): Promise<void> {
    let stored: Buffer | undefined;
    try {
      stored = await readAll(this.inner, { type: 'config', name: 'config' }, { maxBytes: CONFIG_MAX });
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err;
    }
    const now = stored && configId(stored);
    if (stored && now === id) return;
    throw await this.replaced(stored !== undefined, now, id, 'Nothing was read from it');
  }

  /** Whether the cache was dropped because the repository was replaced (a handle opened on it is stale). */
  get replacedBehind(): boolean {
    return this.dropped;
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const hit = await this.cached(h);
    if (hit) {
      if (h.type === 'config') this.servedConfig ??= hit;
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
    // read from the store by this process: what the cache serves from now on is the store's
    if (h.type === 'config') this.confirming ??= Promise.resolve();
  }

  /**
   * The listing entries `names` (every name a list of the store just showed), each at most `maxBytes`:
   * those the listing file holds from it, the others (also from a cache of the one-file-per-entry
   * layout, else from the store) LOAD_PARALLEL at a time; undefined for a name the store no longer has.
   * Then the listing file is rewritten when it should hold other entries than it does (new ones, those
   * of names no longer listed dropped, damage repaired), also after a failed load (for what was loaded).
   * Other types: one load per object, each through the per-object cache.
   */
  async loadMany(
    type: ObjectType,
    names: readonly string[],
    maxBytes: number,
  ): Promise<Array<Buffer | undefined>> {
    type = validateType(type);
    for (const name of names) if (!isValidName(type, name)) validateHandle({ type, name });
    if (type !== 'listing')
      return mapBounded(names, LOAD_PARALLEL, (name) => loadIfPresent(this, { type, name }, maxBytes));
    const held = await this.readListingFile();
    const out = new Array<Buffer | undefined>(names.length);
    const missing: number[] = [];
    let fromFile = 0;
    for (let i = 0; i < names.length; i++) {
      const hit = held.entries.get(names[i]!);
      if (hit && hit.length <= maxBytes) {
        out[i] = hit;
        fromFile++;
      } else missing.push(i);
    }
    const legacy = await readdir(join(this.dir, 'listing')).then(
      (n) => new Set(n),
      () => undefined,
    );
    let failure: { err: unknown } | undefined;
    let loaded = 0;
    try {
      await mapBounded(missing, LOAD_PARALLEL, async (i) => {
        const h: Handle = { type, name: names[i]! };
        const old = legacy?.has(h.name) ? await this.cachedFile(h) : undefined;
        out[i] = old && old.length <= maxBytes ? old : await loadIfPresent(this.inner, h, maxBytes);
        if (out[i]) loaded++;
      });
    } catch (err) {
      failure = { err };
    }
    if (held.damaged || loaded > 0 || held.entries.size !== fromFile || legacy) {
      const written = await this.writeListingFile(names, out);
      if (written && legacy)
        await rm(join(this.dir, 'listing'), { recursive: true, force: true }).catch(() => {});
    }
    if (failure) throw failure.err;
    return out;
  }

  /**
   * The entries of the listing file; `damaged` when some of it was not usable. Each block is used only when
   * its checksum (over its length and records) matches; after a block that does not, the next one is
   * tried where the damaged one said it ends (a damaged length leads nowhere valid: the rest is not used).
   */
  private async readListingFile(): Promise<{ entries: Map<string, Buffer>; damaged: boolean }> {
    const entries = new Map<string, Buffer>();
    let raw: Buffer;
    try {
      raw = await readFile(join(this.dir, LISTING_FILE));
    } catch {
      return { entries, damaged: false };
    }
    let pos = LISTING_MAGIC.length;
    let damaged = false;
    if (!raw.subarray(0, pos).equals(LISTING_MAGIC)) {
      damaged = true;
      pos = raw.length;
    }
    while (pos < raw.length) {
      const length = pos + BLOCK_HEAD <= raw.length ? raw.readUInt32BE(pos) : -1;
      const end = pos + BLOCK_HEAD + length;
      if (length < 0 || end > raw.length) {
        damaged = true;
        break;
      }
      const sum = createHash('sha256').update(raw.subarray(pos, pos + 4));
      const ok = sum
        .update(raw.subarray(pos + BLOCK_HEAD, end))
        .digest()
        .equals(raw.subarray(pos + 4, pos + BLOCK_HEAD));
      if (!ok || !readRecords(raw, pos + BLOCK_HEAD, end, entries)) damaged = true;
      pos = end;
    }
    if (damaged) this.refetched++;
    return { entries, damaged };
  }

  /** Writes the listing file of the entries found (a temporary file, renamed). Never throws; false: not written. */
  private async writeListingFile(
    names: readonly string[],
    contents: ReadonlyArray<Buffer | undefined>,
  ): Promise<boolean> {
    const parts: Buffer[] = [LISTING_MAGIC];
    let block: Buffer[] = [];
    let blockBytes = 0;
    const endBlock = () => {
      if (blockBytes === 0) return;
      const head = Buffer.alloc(BLOCK_HEAD);
      head.writeUInt32BE(blockBytes, 0);
      const sum = createHash('sha256').update(head.subarray(0, 4));
      for (const b of block) sum.update(b);
      sum.digest().copy(head, 4);
      parts.push(head, ...block);
      block = [];
      blockBytes = 0;
    };
    for (let i = 0; i < names.length; i++) {
      const content = contents[i];
      if (!content) continue;
      const name = Buffer.from(names[i]!, 'latin1');
      const head = Buffer.alloc(1 + name.length + 4);
      head[0] = name.length;
      name.copy(head, 1);
      head.writeUInt32BE(content.length, 1 + name.length);
      block.push(head, content);
      blockBytes += head.length + content.length;
      if (blockBytes >= BLOCK_TARGET) endBlock();
    }
    endBlock();
    if (this.dropped) return false;
    const tmp = join(this.dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      if (!(await this.realDirs(this.dir))) return false;
      await writeFile(tmp, Buffer.concat(parts), { mode: 0o600, flag: 'wx' });
      await rename(tmp, join(this.dir, LISTING_FILE));
      return !this.dropped;
    } catch {
      await rm(tmp, { force: true }).catch(() => {});
      return false;
    } finally {
      if (this.dropped) await this.dropAgain();
    }
  }

  /** From the cache for config, keys and index; listing and manifests may have been forgotten meanwhile. */
  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    const hit = STAT_FROM_CACHE.has(h.type) ? await this.cached(h) : undefined;
    if (hit && h.type === 'config') this.servedConfig ??= hit;
    if (hit) return { name: h.name, size: hit.length };
    // The config (small; every command asks whether it exists) is loaded instead, and so kept: the next
    // stat needs no request.
    if (h.type === 'config') {
      try {
        return { name: h.name, size: (await readAll(this, h, { maxBytes: CONFIG_MAX })).length };
      } catch (err) {
        if (!(err instanceof ObjectTooLargeError)) throw err;
      }
    }
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
    // Only in a real directory of the cache (a symlink there is not followed: what it points to is not the
    // cache's to empty), and only names of the type's objects.
    const typeDir = join(this.dir, type);
    if (!(await this.realDirs(typeDir))) return;
    let names: string[];
    try {
      names = await readdir(typeDir);
    } catch {
      return;
    }
    for (const n of names)
      if (!seen.has(n) && isValidName(type, n)) await rm(join(typeDir, n), { force: true }).catch(() => {});
  }

  /**
   * The store's names. For the types of NAMES_CACHED, on a store with a state token (stateToken): the
   * names this cache saw under the token the store gives now, else the store's (then kept with the token,
   * asked for before them: a change while they are listed makes the next token differ). A store without a
   * token is always asked.
   */
  async listNames(type: ObjectType): Promise<string[]> {
    type = validateType(type);
    if (!NAMES_CACHED.has(type) || !this.inner.stateToken) return listNames(this.inner, type);
    const token = await this.inner.stateToken();
    if (token === undefined) return listNames(this.inner, type);
    const file = join(this.dir, `${NAMES_FILE_PREFIX}${type}`);
    const held = await this.readNamesFile(file);
    if (held?.token === token) return held.names;
    const names = await listNames(this.inner, type);
    await this.writeFileQuietly(file, Buffer.from(JSON.stringify({ token, names })));
    return names;
  }

  /** A names file's token and names, or undefined (absent, damaged or not of this shape: not used). */
  private async readNamesFile(file: string): Promise<{ token: string; names: string[] } | undefined> {
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch {
      return undefined;
    }
    if (raw.length < 32 || !sha256(raw.subarray(32)).equals(raw.subarray(0, 32))) {
      this.refetched++;
      return undefined;
    }
    try {
      const o = JSON.parse(raw.subarray(32).toString('utf8')) as { token?: unknown; names?: unknown };
      if (
        typeof o.token === 'string' &&
        Array.isArray(o.names) &&
        o.names.every((n) => typeof n === 'string')
      )
        return { token: o.token, names: o.names as string[] };
    } catch {
      // not JSON: not used
    }
    this.refetched++;
    return undefined;
  }

  /**
   * Writes `sha256(content) | content` to `file` (a temporary file beside it, renamed). Never throws.
   * `sum`: the content's SHA-256 when the caller has it.
   */
  private async writeFileQuietly(file: string, content: Buffer, sum = sha256(content)): Promise<void> {
    if (this.dropped) return;
    const dir = dirname(file);
    const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if (!(await this.realDirs(dir))) return;
      await writeFile(tmp, Buffer.concat([sum, content]), { mode: 0o600, flag: 'wx' });
      await rename(tmp, file);
    } catch {
      await rm(tmp, { force: true }).catch(() => {});
    } finally {
      if (this.dropped) await this.dropAgain();
    }
  }

  /** Removes the cache directory (dropped: it held a replaced repository's objects). Never throws. */
  private async dropAgain(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }

  /**
   * Forgets the cached copy of `h` (a caller found it damaged: it does not parse, open or verify): its own
   * file, and for a listing entry its record in the listing file (rewritten without it). Never throws.
   */
  async evict(h: Handle): Promise<void> {
    h = validateHandle(h);
    if (CACHED_TYPES.has(h.type)) await rm(this.pathOf(h), { force: true }).catch(() => {});
    if (h.type !== 'listing') return;
    await rm(this.pathOf(h), { force: true }).catch(() => {}); // the one-file-per-entry layout's
    const held = await this.readListingFile();
    if (!held.entries.has(h.name)) return;
    held.entries.delete(h.name);
    const names = [...held.entries.keys()];
    await this.writeListingFile(
      names,
      names.map((n) => held.entries.get(n)),
    );
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    await this.confirmConfig();
    await this.inner.remove(h);
    if (CACHED_TYPES.has(h.type)) await rm(this.pathOf(h), { force: true }).catch(() => {});
  }

  /** The inner backend's sweep (none: nothing to sweep); leftovers are never cached. */
  sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    return this.inner.sweepLeftovers?.(olderThanMs) ?? Promise.resolve({ removed: 0, bytes: 0 });
  }

  async close(): Promise<void> {
    if (this.dropped) await this.dropAgain();
    return this.inner.close();
  }
}
