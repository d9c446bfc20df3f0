// Owns one repository on a backend (docs/repository.md): creating and opening it (config, master key),
// the index, writing blobs into packs with deduplication (packs sized and saved as the backend asks:
// Backend.packing; a pack or index file already stored under its name is checked, and replaced when
// damaged: saveContentAddressed), reading blobs back verified, and the small
// whole-file objects (index, snapshot manifests, listing entries, pins). Operations (snapshot, restore,
// check, prune) are built on these in their own modules.

import { createHash, randomBytes } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import {
  type Backend,
  type Handle,
  mapBounded,
  type ObjectType,
  type Packing,
  readAll,
  type SaveSource,
} from '../backend/backend.js';
import type { Identity } from '../crypto/age.js';
import { recipientFingerprint } from '../crypto/age.js';
import { zstdBinding } from '../format/zstd.js';
import {
  BundleDamagedError,
  EncryptionError,
  IoError,
  ObjectExistsError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  StoreUnavailableError,
} from '../model/errors.js';
import { collectGarbageNow } from '../util/heap-settings.js';
import { BlobTable } from './blob-table.js';
import { type ChunkerParams, DEFAULT_CHUNKER, LIST_AVG_BITS } from './chunker.js';
import { CompressThread } from './compress-thread.js';
import { newKeyFile, openBlob, openFile, openKeyFile, packKey, type RepoKey, sealFile } from './crypto.js';
import {
  type IndexPackSource,
  indexJsonParts,
  indexSources,
  loadIndexInto,
  MasterIndex,
  type PackRecord,
} from './index-file.js';
import { pinMasterKey } from './key-pins.js';
import {
  type BlobKind,
  dropSparePackBuffers,
  headerLength,
  KIND_DATA,
  keepPackBuffer,
  MAX_PACK,
  newBlobScratch,
  openStoredBlob,
  PACK_TARGET,
  PackBuilder,
  type PackEntry,
  packBuffer,
  packTooLarge,
  parseHeader,
  TRAILER,
} from './pack.js';
import type { AheadPack } from './pack-file.js';
import { PackReaders } from './pack-readers.js';
import { REPOSITORY_VERSION, versionGate } from './version-gate.js';

export { checkRepositoryVersion, REPOSITORY_VERSION } from './version-gate.js';

/**
 * Largest small object read whole into memory, and the largest an index file's JSON may be: a real
 * repository's index file reaches it (prune writes one describing every kept pack, ~100 bytes of JSON a
 * blob), so it stays. A manifest has its own, lower bound (snapshots.ts MANIFEST_MAX).
 */
const SMALL_OBJECT_MAX = 256 * 1024 * 1024;
/**
 * How many times its stored frame an index file's JSON may be: a row is a blob's id (32 bytes of hex
 * digits' entropy) and four numbers, so real index files decode to about twice their frame (2.09 at
 * most over 400 of this project's, stop 62). A frame of a few KB claiming 256 MiB (spaces) passed the
 * size bound and cost ~1 s and ~580 MB at each index load, in every process (stop 62 review); it is
 * refused from its header now, before anything is allocated. (Manifests have no such bound: a file of
 * repeated chunks names one id many times, and compresses as far as that goes.)
 */
export const INDEX_FRAME_RATIO_MAX = 16;
/** Bytes of JSON any index frame may hold beyond the ratio (a near-empty index file is barely compressed). */
const INDEX_FRAME_SLACK = 64 * 1024;
/** Index JSON loaded at once from this many bytes on is followed by a full collection (small-heap processes). */
const LARGE_INDEX_JSON = 8 * 1024 * 1024;

export interface RepoConfig {
  repository_version: number;
  id: string;
  created_at_ms: number;
  chunker: ChunkerParams;
  list_avg_bits: number;
  encryption: null | {
    scheme: 'age-envelope';
    recipients_fingerprint: string[];
    /**
     * The name of the repository's key file (`keys/<name>`), written by its creator since stop 55: the one
     * key file an open uses. Other key files are not the repository's (a creation that failed or lost a
     * race left one; someone who can write the store planted one). Absent in repositories created
     * before: every key file the identities open must then hold the same master key.
     */
    key_file?: string;
  };
}

export interface OpenOptions {
  /** Identities that open the key file of an encrypted repository. */
  identities?: readonly Identity[];
  /** zstd level for blobs (default 3). */
  zstdLevel?: number;
  /**
   * A directory of the local state root where the master key of an encrypted repository is pinned per
   * repository id on first use (key-pins.ts): an open that finds another key is refused.
   */
  keyPins?: string;
}

/** Reads a whole object (bounded). */
export const readObject = (
  backend: Backend,
  type: ObjectType,
  name: string,
  max = SMALL_OBJECT_MAX,
): Promise<Buffer> => readAll(backend, { type, name }, { maxBytes: max });

/**
 * The one context that compresses this process's whole-file objects (index files, manifests, listing
 * entries), reset for each: a context per file held its workspace (~5 MB for a 2.3 GB agent's index
 * file) until the garbage collector finalized it.
 */
let fileCtx: InstanceType<ReturnType<typeof zstdBinding>['CCtx']> | undefined;
function fileContext(level: number): InstanceType<ReturnType<typeof zstdBinding>['CCtx']> {
  const z = zstdBinding();
  fileCtx ??= new z.CCtx();
  fileCtx.reset(z.ResetDirective.sessionAndParameters);
  fileCtx.setParameter(z.CParameter.compressionLevel, level);
  fileCtx.setParameter(z.CParameter.checksumFlag, 1);
  return fileCtx;
}

const zstdFrame = (data: Buffer, level: number): Buffer => {
  const c = fileContext(level);
  const out = Buffer.allocUnsafe(zstdBinding().compressBound(data.length));
  return Buffer.from(out.subarray(0, c.compress2(out, data)));
};

/** Output pieces of zstdFrameOf: a compressed index file is held as pieces of this size, not one buffer. */
const FRAME_PIECE = 256 * 1024;

/**
 * One zstd frame (content size and checksum recorded, as zstdFrame writes it) of the bytes that
 * `parts()` yields, compressed as they come: its pieces, in order. `parts` is called twice (the first
 * time for the content size the frame header records, which readers rely on: unzstdFrame), so a
 * document made part by part is never held whole, neither as JSON nor as a compression bound.
 */
export function zstdFrameOf(parts: () => Iterable<Buffer>, level: number): Buffer[] {
  let size = 0;
  for (const p of parts()) size += p.length;
  const z = zstdBinding();
  const c = fileContext(level);
  c.setPledgedSrcSize(size);
  const pieces: Buffer[] = [];
  let out = Buffer.allocUnsafe(FRAME_PIECE);
  let used = 0;
  const step = (src: Buffer, end: boolean) => {
    const directive = end ? z.EndDirective.end : z.EndDirective.continue;
    for (;;) {
      const [left, produced, consumed] = c.compressStream2(out.subarray(used), src, directive);
      used += produced;
      src = src.subarray(consumed);
      if (used === out.length || (end && left === 0 && used > 0)) {
        pieces.push(used === out.length ? out : Buffer.from(out.subarray(0, used)));
        out = Buffer.allocUnsafe(FRAME_PIECE);
        used = 0;
      }
      if (src.length === 0 && (!end || left === 0)) return;
    }
  };
  for (const p of parts()) step(p, false);
  step(Buffer.alloc(0), true);
  return pieces;
}

/**
 * The decompression context of this thread's whole-file objects, made once: a new one per frame cost
 * 30-75 µs against 3-8 µs reused (a repository never pruned reads an index file per snapshot: 37 ms of
 * a profiled snapshot over 1,000 of them, stop 58). A one-shot decompression starts the context afresh
 * each time.
 */
let frameDctx: InstanceType<ReturnType<typeof zstdBinding>['DCtx']> | undefined;

function unzstdFrame(data: Buffer, what: string, max = SMALL_OBJECT_MAX, ratioMax?: number): Buffer {
  let size: number | null;
  try {
    size = zstdBinding().getFrameContentSize(data);
  } catch (err) {
    // not a zstd frame at all (its header cannot be parsed): damage, as a bad frame is (found in stop 38:
    // verify said INTERNAL, exit 1, while check said damaged)
    throw new BundleDamagedError(`${what}: not a zstd frame (${(err as Error).message})`);
  }
  if (size === null) throw new BundleDamagedError(`${what}: not a bounded zstd frame`);
  if (size > max)
    throw new BundleDamagedError(`${what}: its frame holds ${size} bytes, more than any may (${max})`, {
      details: { object: what, size, max_bytes: max },
    });
  if (ratioMax !== undefined && size > ratioMax * data.length + INDEX_FRAME_SLACK)
    throw new BundleDamagedError(
      `${what}: its frame of ${data.length} bytes claims ${size} bytes, more than ${ratioMax} times its size, ` +
        'as no index file compresses',
      { details: { object: what, size, stored_bytes: data.length } },
    );
  const out = Buffer.allocUnsafe(size);
  let n: number;
  try {
    frameDctx ??= new (zstdBinding().DCtx)();
    n = frameDctx.decompress(out, data);
  } catch (err) {
    throw new BundleDamagedError(`${what}: corrupt zstd data (${(err as Error).message})`);
  }
  if (n !== size) throw new BundleDamagedError(`${what}: frame size mismatch`);
  return out;
}

function parseConfig(bytes: Buffer): RepoConfig {
  let c: RepoConfig;
  try {
    c = JSON.parse(bytes.toString('utf8')) as RepoConfig;
  } catch {
    throw new BundleDamagedError('repository config is not JSON');
  }
  if (typeof c?.repository_version !== 'number')
    throw new BundleDamagedError('repository config has no version');
  versionGate(c);
  if (c.repository_version !== REPOSITORY_VERSION || typeof c.id !== 'string' || !/^[0-9a-f]{64}$/.test(c.id))
    throw new BundleDamagedError('repository config is malformed');
  const chunkerProblem = configChunkerProblem(c);
  if (chunkerProblem) throw new BundleDamagedError(`repository config: ${chunkerProblem}`);
  return c;
}

/**
 * What is wrong with a config's chunking settings: version 1 has exactly the documented ones
 * (docs/repository.md §2, DEFAULT_CHUNKER and LIST_AVG_BITS). Writers cut with them, so a config that
 * others can write (a shared S3 or NATS repository) must not choose them: zeros cut a file into
 * one-byte chunks, a missing or non-object `chunker` broke every snapshot.
 */
function configChunkerProblem(c: RepoConfig): string | undefined {
  if (c.list_avg_bits !== LIST_AVG_BITS)
    return `list_avg_bits is ${JSON.stringify(c.list_avg_bits) ?? 'missing'}, version 1 has ${LIST_AVG_BITS}`;
  const got = c.chunker as unknown;
  if (typeof got !== 'object' || got === null || Array.isArray(got))
    return 'chunker is not an object of chunking settings';
  const want = DEFAULT_CHUNKER as unknown as Record<string, number>;
  const have = got as Record<string, unknown>;
  for (const k of Object.keys(have))
    if (!Object.hasOwn(want, k)) return `chunker has an unknown setting ${JSON.stringify(k)}`;
  for (const [k, v] of Object.entries(want))
    if (have[k] !== v) return `chunker.${k} is ${JSON.stringify(have[k]) ?? 'missing'}, version 1 has ${v}`;
  return undefined;
}

/**
 * The key file `keys/<name>` a repository's config names (`encryption.key_file`), opened with
 * `identities`: BundleDamagedError when the name is not a key file's or the file is missing or not the
 * one named (its SHA-256); EncryptionError when none of the identities opens it.
 */
async function openNamedKey(
  backend: Backend,
  name: unknown,
  identities: readonly Identity[],
): Promise<RepoKey> {
  if (typeof name !== 'string' || !/^[0-9a-f]{64}$/.test(name))
    throw new BundleDamagedError('repository config: encryption.key_file is not the name of a key file');
  let bytes: Buffer;
  try {
    bytes = await readObject(backend, 'keys', name, 1024 * 1024);
  } catch (err) {
    if (err instanceof ObjectNotFoundError)
      throw new BundleDamagedError(
        `the repository's key file keys/${name}, which its config names, is missing`,
      );
    throw err;
  }
  if (sha256(bytes) !== name)
    throw new BundleDamagedError(`the repository's key file keys/${name} is not the one named`);
  return openKeyFile(bytes, identities);
}

/**
 * The master key of a repository whose config names no key file (created before stop 55): every key file
 * the identities open must hold the same one, as one planted by someone who can write the repository (to
 * the victim's public recipient) must not be used because it lists first. Where they disagree it is
 * EncryptionError, whatever the data says: an index file proves nothing (whoever plants a key file can
 * plant an index file sealed under it), so the key that opens every index file is only named, for the
 * operator who knows a creation failed or lost a race there (keyOfTheData).
 */
async function openAgreedKey(backend: Backend, identities: readonly Identity[]): Promise<RepoKey> {
  const opened: { name: string; key: RepoKey }[] = [];
  let lastErr: unknown;
  for await (const k of backend.list('keys')) {
    try {
      opened.push({
        name: k.name,
        key: await openKeyFile(await readObject(backend, 'keys', k.name, 1024 * 1024), identities),
      });
    } catch (err) {
      lastErr = err;
    }
  }
  const distinct = opened.filter((o, i) => opened.findIndex((p) => p.key.master.equals(o.key.master)) === i);
  const [first, second] = distinct;
  if (!first) {
    if (lastErr instanceof EncryptionError || lastErr === undefined)
      throw new EncryptionError('none of the identities opens a key of this repository');
    throw lastErr;
  }
  if (!second) return first.key;
  const ofData = await keyOfTheData(
    backend,
    distinct.map((d) => d.key),
  ).catch(() => undefined);
  const named = ofData && distinct.find((d) => d.key === ofData);
  throw new EncryptionError(
    `key files of this repository hold different master keys (keys/${first.name} and keys/${second.name}): one was planted by someone who can write the repository, or left by a creation that failed or lost a race to another (before stop 55); nothing is read or written until the one that is not the repository's is removed` +
      (named
        ? `. keys/${named.name} is the one that opens every index file (the key its snapshots were sealed with, unless the index files were planted too): if no one else can write the repository, the others are what a failed creation left, and can be removed`
        : ''),
  );
}

/**
 * Of the master keys `candidates`, the one that opens every index file of the repository; undefined when
 * there is no index file, or not exactly one key opens them all. Evidence for an operator only: whoever
 * can plant a key file can plant an index file sealed under it.
 */
async function keyOfTheData(backend: Backend, candidates: readonly RepoKey[]): Promise<RepoKey | undefined> {
  let left = candidates;
  let files = 0;
  for await (const f of backend.list('index')) {
    files++;
    const bytes = await readObject(backend, 'index', f.name);
    left = left.filter((k) => {
      try {
        openFile(k, bytes, `index/${f.name}`);
        return true;
      } catch {
        return false;
      }
    });
    if (left.length === 0) return undefined;
  }
  return files > 0 && left.length === 1 ? left[0] : undefined;
}

/**
 * After a creation whose config save failed: removes its key file `keys/<name>` when another creator's
 * config is there (a race lost: this key is never anyone's). Otherwise it stays: a config not there now
 * may still land (a remote store's request outliving its answer), and a config naming a removed key file
 * would end the repository; a key file the config does not name is never opened (openNamedKey).
 */
async function removeUnusedKey(backend: Backend, name: string, id: string): Promise<void> {
  try {
    const other = await readObject(backend, 'config', 'config', 1024 * 1024).then(
      (bytes) => (JSON.parse(bytes.toString('utf8')) as { id?: unknown }).id !== id,
      (err: unknown) => {
        if (err instanceof ObjectNotFoundError) return false;
        throw err;
      },
    );
    if (other) await backend.remove({ type: 'keys', name });
  } catch {
    // left, never opened
  }
}

/** The types whose objects make a repository: one of them without `config` is a repository that lost it. */
const DATA_TYPES: readonly ObjectType[] = ['listing', 'snapshots', 'index', 'packs', 'pins'];

/**
 * When the store has no `config` object: BundleDamagedError (BUNDLE_DAMAGED, exit 2) naming what is there
 * if it holds repository data (listing, snapshots, index, packs, pins), else undefined (no repository yet:
 * keys alone are a first writer's, written just before its config; locks are no data). A repository whose
 * config went missing is never created again over its data: a new config has a new id, and every
 * snapshot already there would then belong to another repository.
 */
export async function configMissingError(backend: Backend): Promise<BundleDamagedError | undefined> {
  const found: string[] = [];
  for (const type of DATA_TYPES)
    for await (const o of backend.list(type)) {
      found.push(`${type}/${o.name}`);
      break;
    }
  if (found.length === 0) return undefined;
  return new BundleDamagedError(
    `the repository at ${backend.location} has no config object, but holds data (${found.join(', ')}): ` +
      'its config is missing (deleted or lost). It is not created again over that data (a new config has ' +
      'a new id: every snapshot there would belong to another repository). Put its config back (a backup, or ' +
      "a copy from another host's cache: <state_root>/cache/<…>/config/config without its first 32 bytes), " +
      'or move the data aside to start a new repository',
    { details: { missing: 'config/config', found } },
  );
}

/** Stored blobs read with one request (Repository.storedRuns): each at `at` in `bytes`, not opened yet. */
export interface StoredRun {
  pack: string;
  bytes: Buffer;
  /** The pack's key (encrypted repositories). */
  key: Buffer | undefined;
  blobs: { id: string; at: number; stored: number; flags: number; raw: number; offset: number }[];
}

export interface WriteStats {
  blobsNew: number;
  blobsKnown: number;
  /** Plaintext bytes of the new blobs. */
  rawNew: number;
  /** Bytes of the new packs (what was uploaded). */
  storedNew: number;
  packs: string[];
}

export class Repository {
  readonly index = new MasterIndex();
  private indexLoaded = false;
  readonly zstdLevel: number;

  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
    readonly key: RepoKey | undefined,
    opts: OpenOptions,
  ) {
    this.zstdLevel = opts.zstdLevel ?? 3;
  }

  get encrypted(): boolean {
    return this.key !== undefined;
  }

  get id(): string {
    return this.config.id;
  }

  /**
   * Creates a repository (config, and a key file when `recipients` are given, saved first and named by
   * the config). Fails if one exists; the key file of a creation that lost to another is removed again
   * (removeUnusedKey).
   */
  static async init(
    backend: Backend,
    recipients: readonly string[] = [],
    opts: OpenOptions = {},
  ): Promise<Repository> {
    const k = recipients.length > 0 ? await newKeyFile(recipients) : undefined;
    const keyFile = k ? sha256(k.bytes) : undefined;
    const config: RepoConfig = {
      repository_version: REPOSITORY_VERSION,
      id: randomBytes(32).toString('hex'),
      created_at_ms: Date.now(),
      chunker: { ...DEFAULT_CHUNKER },
      list_avg_bits: LIST_AVG_BITS,
      encryption:
        recipients.length > 0
          ? {
              scheme: 'age-envelope',
              recipients_fingerprint: recipients.map(recipientFingerprint),
              key_file: keyFile,
            }
          : null,
    };
    if (k && keyFile) await backend.save({ type: 'keys', name: keyFile }, k.bytes, { ifAbsent: true });
    try {
      // pinned before the config makes the repository exist: its first writer is its first use
      if (k && opts.keyPins) await pinMasterKey(opts.keyPins, config.id, k.key);
      await backend.save(
        { type: 'config', name: 'config' },
        Buffer.from(`${JSON.stringify(config, null, 2)}\n`),
        {
          ifAbsent: true,
        },
      );
    } catch (err) {
      if (keyFile) await removeUnusedKey(backend, keyFile, config.id);
      throw err;
    }
    return new Repository(backend, config, k?.key, opts);
  }

  /**
   * Opens an existing repository; ObjectNotFoundError when there is none, BundleDamagedError when its
   * `config` is missing beside data (configMissingError).
   */
  static async open(backend: Backend, opts: OpenOptions = {}): Promise<Repository> {
    let configBytes: Buffer;
    try {
      configBytes = await readObject(backend, 'config', 'config', 1024 * 1024);
    } catch (err) {
      if (err instanceof ObjectNotFoundError) throw (await configMissingError(backend)) ?? err;
      throw err;
    }
    let config: RepoConfig;
    try {
      config = parseConfig(configBytes);
    } catch (err) {
      // A cached copy that does not parse is not kept: the next open reads the store (Backend.evict).
      await backend.evict?.({ type: 'config', name: 'config' }).catch(() => {});
      throw err;
    }
    let key: RepoKey | undefined;
    if (config.encryption) {
      if (!opts.identities || opts.identities.length === 0)
        throw new EncryptionError(
          'the repository is encrypted: give an age identity (encryption.identity_path in the config, which every command reads, or --decrypt-identity where a command has it)',
        );
      const named = config.encryption.key_file;
      key =
        named !== undefined
          ? await openNamedKey(backend, named, opts.identities)
          : await openAgreedKey(backend, opts.identities);
      if (opts.keyPins) await pinMasterKey(opts.keyPins, config.id, key);
    }
    return new Repository(backend, config, key, opts);
  }

  /** Opens the repository, creating it when there is none. */
  static async openOrInit(
    backend: Backend,
    recipients: readonly string[],
    opts: OpenOptions = {},
  ): Promise<Repository> {
    try {
      return await Repository.open(backend, opts);
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err;
    }
    try {
      return await Repository.init(backend, recipients, opts);
    } catch (err) {
      // Another process created it at the same moment.
      if (err instanceof ObjectExistsError) return Repository.open(backend, opts);
      throw err;
    }
  }

  // -- whole-file objects ----------------------------------------------------------------------------

  /** Encodes a JSON document for storage: zstd, sealed when the repository is encrypted. */
  encodeFile(json: Buffer): Buffer {
    const z = zstdFrame(json, this.zstdLevel);
    return this.key ? sealFile(this.key, z) : z;
  }

  /** Decodes a stored manifest (or JSON file); a frame of more than `max` bytes is damage. */
  decodeFile(bytes: Buffer, what: string, max = SMALL_OBJECT_MAX): Buffer {
    return unzstdFrame(this.key ? openFile(this.key, bytes, what) : bytes, what, max);
  }

  /** Decodes a stored index file: a frame over SMALL_OBJECT_MAX or INDEX_FRAME_RATIO_MAX is damage. */
  decodeIndexFile(bytes: Buffer, what: string): Buffer {
    return unzstdFrame(
      this.key ? openFile(this.key, bytes, what) : bytes,
      what,
      SMALL_OBJECT_MAX,
      INDEX_FRAME_RATIO_MAX,
    );
  }

  /**
   * Brings the index up to date with the backend: loads the index files not loaded yet (all of them the
   * first time). When a file loaded before is gone — a prune replaced the index since — the index is
   * rebuilt from the files there are now, so no blob is ever located in a pack that prune removed.
   */
  async loadIndex(): Promise<MasterIndex> {
    const present = new Set<string>();
    for await (const f of this.backend.list('index')) present.add(f.name);
    if ([...this.index.files].some((f) => !present.has(f))) this.index.clear();
    const names = [...present].filter((n) => !this.index.files.has(n));
    // The stored (compressed) files are read 8 at a time and then parsed one by one, in order, straight
    // into the compact index: one file's parsed JSON at a time.
    const stored = await mapLimit(names, 8, async (name) => {
      const bytes = await readObject(this.backend, 'index', name);
      if (sha256(bytes) !== name) throw new BundleDamagedError(`index/${name}: does not hash to its name`);
      return bytes;
    });
    let decoded = 0;
    // one file's JSON lives only in this function's frame (gone before the collection below)
    const loadFile = (i: number): void => {
      const what = `index/${names[i]}`;
      const json = this.decodeIndexFile(stored[i]!, what);
      stored[i] = Buffer.alloc(0);
      decoded += json.length;
      loadIndexInto(this.index, json, what);
      this.index.files.add(names[i]!);
    };
    try {
      for (let i = 0; i < names.length; i++) loadFile(i);
    } catch (err) {
      this.index.clear(); // no half-loaded file: the next load starts over
      this.indexLoaded = false;
      throw err;
    }
    this.indexLoaded = true;
    // The files' JSON (and the tables outgrown while loading) are garbage now, held until V8's next
    // full collection: after a large index, in a process that keeps a small heap, collect it at once.
    if (decoded >= LARGE_INDEX_JSON) collectGarbageNow();
    return this.index;
  }

  /**
   * Refreshes an index loaded before (operations call it once they hold the repository lock: a handle
   * kept across operations, as the daemon's, may have seen the index before a prune replaced it).
   */
  async refreshIndex(): Promise<void> {
    if (this.indexLoaded) await this.loadIndex();
  }

  async ensureIndex(): Promise<MasterIndex> {
    return this.indexLoaded ? this.index : this.loadIndex();
  }

  /**
   * Writes an index file for `packs`; returns its name. The file is compressed as its JSON is made,
   * part by part (index-file.ts indexJsonParts): it is saved from the compressed pieces (sealed in one
   * buffer in an encrypted repository), never from the whole JSON (docs/operations.md, "Peak RSS").
   */
  async saveIndex(packs: readonly PackRecord[] | readonly IndexPackSource[]): Promise<string> {
    const sources =
      packs.length > 0 && 'entries' in packs[0]!
        ? indexSources(packs as readonly PackRecord[])
        : (packs as readonly IndexPackSource[]);
    const frame = zstdFrameOf(() => indexJsonParts(sources), this.zstdLevel);
    const pieces = this.key ? [sealFile(this.key, Buffer.concat(frame))] : frame;
    const h = createHash('sha256');
    for (const p of pieces) h.update(p);
    const name = h.digest('hex');
    await saveContentAddressed(this.backend, { type: 'index', name }, pieces);
    this.index.files.add(name);
    return name;
  }

  // -- blobs -----------------------------------------------------------------------------------------

  /** A session that stores new blobs into packs (deduplicated against the index and itself). */
  writer(): BlobWriter {
    return new BlobWriter(this);
  }

  /** Where a copy thread packing ahead (pack-file.ts) closes its packs: as a writer fed by threads does. */
  get aheadPackTarget(): number {
    return Math.min(THREAD_PACK_TARGET, this.backend.packing?.target ?? PACK_TARGET);
  }

  /** Loads one blob, verified against its id. */
  async loadBlob(id: string): Promise<Buffer> {
    const [b] = await this.loadBlobs([id]);
    return b!;
  }

  /** Loads blobs (in the given order), coalescing adjacent ones of a pack into one ranged read. */
  async loadBlobs(ids: readonly string[]): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for await (const b of this.streamBlobs(ids)) out.push(b);
    return out;
  }

  /**
   * Streams blobs in order, each verified against its id. Runs of blobs stored next to each other in
   * one pack are read with one ranged request, up to `window` bytes (1 MiB: the local backend's read, so
   * a run arrives in one piece, uncopied); `ahead` requests run at once. With `view`, a blob is valid
   * only until the next one is asked for (no allocation per blob). With `gap`, blobs of one pack up to
   * `gap` bytes apart (in pack order) share a request too, the bytes between them read and dropped: a
   * reader of many scattered blobs (find) trades a little more reading for far fewer requests.
   */
  async *streamBlobs(
    ids: readonly string[],
    ahead = 4,
    window = 1024 * 1024,
    view = false,
    gap = 0,
  ): AsyncGenerator<Buffer> {
    const scratch = view ? newBlobScratch() : undefined;
    for await (const run of this.storedRuns(ids, ahead, window, gap))
      for (const b of run.blobs)
        yield openStoredBlob(
          run.bytes.subarray(b.at, b.at + b.stored),
          b,
          run.key,
          `blob ${b.id} in packs/${run.pack}`,
          scratch,
        );
  }

  /**
   * The stored bytes of blobs, in order, as streamBlobs reads them (`ahead`, `window`, `gap`), each run
   * with its pack's key and where each blob is in it, not opened: for a reader that opens and checks
   * them elsewhere (openStoredBlob; find does it on a worker thread).
   */
  async *storedRuns(
    ids: readonly string[],
    ahead = 4,
    window = 1024 * 1024,
    gap = 0,
  ): AsyncGenerator<StoredRun> {
    await this.ensureIndex();
    type Run = { pack: string; offset: number; length: number; blobs: StoredRun['blobs'] };
    // Runs are planned as they are fetched, not all first: a plan of every blob of a large database
    // (an object per blob) was tens of MB of the heap at a restore's peak.
    const index = this.index;
    // a blob the index does not have fails the read before anything is fetched, as before
    for (const id of ids)
      if (!index.has(id))
        throw new BundleDamagedError(`blob ${id} is not in the repository index (missing data)`);
    let pos = 0;
    let pending: Run | undefined;
    const nextRun = (): Run | undefined => {
      while (pos < ids.length) {
        const id = ids[pos]!;
        const loc = index.get(id);
        if (!loc) throw new BundleDamagedError(`blob ${id} is not in the repository index (missing data)`);
        const blob = { id, flags: loc.flags, raw: loc.raw, offset: loc.offset, stored: loc.stored };
        const last = pending;
        const end = last ? last.offset + last.length : 0;
        if (
          last &&
          last.pack === loc.pack &&
          loc.offset >= end &&
          loc.offset - end <= gap &&
          loc.offset + loc.stored - last.offset <= window
        ) {
          last.blobs.push({ ...blob, at: loc.offset - last.offset });
          last.length = loc.offset + loc.stored - last.offset;
          pos++;
          continue;
        }
        pending = { pack: loc.pack, offset: loc.offset, length: loc.stored, blobs: [{ ...blob, at: 0 }] };
        pos++;
        if (last) return last;
      }
      const last = pending;
      pending = undefined;
      return last;
    };
    // Runs in flight hold their stored (compressed) bytes only; their packs stay open (PackReaders).
    const readers = PackReaders.of(this.backend);
    const fetchRun = async (r: Run): Promise<StoredRun> => {
      const read = readers
        ? readers.read(r.pack, r.offset, r.length)
        : readObjectRange(this.backend, r.pack, r.offset, r.length);
      const bytes = await read.catch((err: unknown) => {
        // the index places the blob in this pack: a pack that is gone is missing data, not a wrong name
        if (err instanceof ObjectNotFoundError)
          throw new BundleDamagedError(
            `packs/${r.pack} is missing (the index places blob ${r.blobs[0]!.id} in it)`,
          );
        throw err;
      });
      const salt = this.index.packs.get(r.pack)?.salt;
      const key = this.key && salt ? packKey(this.key, Buffer.from(salt, 'hex')) : undefined;
      if (this.key && !key) throw new BundleDamagedError(`packs/${r.pack}: the index has no key salt for it`);
      return { pack: r.pack, bytes, key, blobs: r.blobs };
    };
    const inflight: Promise<StoredRun>[] = [];
    try {
      let run = nextRun();
      while (run || inflight.length > 0) {
        while (run && inflight.length < ahead) {
          const p = fetchRun(run);
          p.catch(() => {}); // awaited below in order
          inflight.push(p);
          run = nextRun();
        }
        yield await inflight.shift()!;
      }
    } finally {
      if (readers) {
        await Promise.allSettled(inflight); // (a reader that stopped early: its runs end first)
        await readers.close();
      }
    }
  }

  /** The header entries of a pack, read from the pack itself (check, index rebuild). */
  async readPackHeader(pack: string): Promise<ReturnType<typeof parseHeader> & { size: number }> {
    const { size } = await this.backend.stat({ type: 'packs', name: pack });
    if (size > MAX_PACK) throw packTooLarge(pack, size);
    const what = `packs/${pack}`;
    if (size < TRAILER) throw new BundleDamagedError(`${what}: too short to be a pack`);
    const trailer = await readObjectRange(this.backend, pack, size - TRAILER, TRAILER);
    const n = headerLength(trailer, size, what);
    const header = await readObjectRange(this.backend, pack, size - TRAILER - n, n);
    return { ...parseHeader(header, this.key, what, size - TRAILER - n), size };
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Saves a content-addressed object (a pack or an index file: its name is the SHA-256 of `parts`, in
 * order) unless the store already holds it intact. A save that finds the name taken does not trust it:
 * the stored object must have the same size (a stat) and hash to its name (it is read back), else it is
 * replaced — a torn upload or a damaged object under the name would otherwise be referenced by the new
 * snapshot for good (docs/decisions.md, "A content-addressed object already there is checked"). Two
 * writers of the same name write the same bytes, so a replacement racing another writer's save, or
 * another's replacement, leaves the right bytes either way; prune, which removes packs, never runs
 * beside a writer (the repository lock).
 */
export async function saveContentAddressed(
  backend: Backend,
  h: Handle,
  content: readonly Uint8Array[] | { file: string; size: number },
): Promise<void> {
  async function* each(parts: readonly Uint8Array[]) {
    yield* parts;
  }
  const source = (): SaveSource =>
    'file' in content ? fileChunks(content.file) : content.length === 1 ? content[0]! : each(content);
  try {
    await backend.save(h, source(), { ifAbsent: true, sha256: h.name });
    return;
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
  }
  let size = 0;
  if ('file' in content) size = content.size;
  else for (const p of content) size += p.length;
  if (await holdsIntact(backend, h, size)) return;
  await backend.save(h, source(), { sha256: h.name });
}

/** Reads the file at `path` into `into`, which it must fill exactly (a pack written ahead). */
async function readWhole(path: string, into: Buffer): Promise<void> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new IoError(`read ${path}`, err);
  });
  try {
    for (let at = 0; at < into.length; ) {
      const { bytesRead } = await fh.read(into, at, into.length - at, at).catch((err: unknown) => {
        throw new IoError(`read ${path}`, err);
      });
      if (bytesRead === 0) throw new IoError(`read ${path}`, new Error('it ended early'));
      at += bytesRead;
    }
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * A file's bytes (a pack written ahead, pack-file.ts), 1 MiB at a time into one buffer: a save has
 * consumed each piece before it asks for the next (Backend.save), so no piece outlives the next read.
 */
async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new IoError(`read ${path}`, err);
  });
  const buf = readBuffers.pop() ?? Buffer.allocUnsafe(READ_BUFFER);
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null).catch((err: unknown) => {
        throw new IoError(`read ${path}`, err);
      });
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    if (readBuffers.length < STREAMED_SAVES) readBuffers.push(buf);
    await fh.close().catch(() => {});
  }
}

/** fileChunks' buffer size, and the buffers of finished reads kept for the next (one per save at once). */
const READ_BUFFER = 1024 * 1024;
const readBuffers: Buffer[] = [];

/**
 * Saves under way at once of packs written ahead streamed to a store that takes streams as they come
 * (Backend.streamedSaves: the local one): each holds one 1 MiB read buffer here, and a local save is
 * reads, writes and two fsyncs, which libuv's four threads run side by side. Two at a time left ~0.2 s
 * of saves after ref-170's last database was packed (docs/operations.md, "stop 60").
 */
const STREAMED_SAVES = 4;

/** Whether the stored object `h` has `size` bytes that hash to its name (a store that fails to answer throws). */
async function holdsIntact(backend: Backend, h: Handle, size: number): Promise<boolean> {
  try {
    if ((await backend.stat(h)).size !== size) return false;
    const hash = createHash('sha256');
    let read = 0;
    for await (const c of backend.load(h)) {
      read += c.length;
      if (read > size) return false;
      hash.update(c);
    }
    return read === size && hash.digest('hex') === h.name;
  } catch (err) {
    if (err instanceof StoreUnavailableError) throw err;
    return false; // missing (removed meanwhile), cut short, failing its digest: written again
  }
}

/** The chunks of a pack's load, a pack larger than MAX_PACK (the backend's objectMax) turned into damage. */
async function* packTooLargeIsDamage(
  pack: string,
  chunks: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  try {
    yield* chunks;
  } catch (err) {
    if (err instanceof ObjectTooLargeError && err.size !== undefined) throw packTooLarge(pack, err.size);
    throw err;
  }
}

/**
 * `length` bytes of a pack from `offset`: the backend's one piece as it is (no copy), or its pieces
 * copied into one buffer of `length` bytes (readAll would keep every piece and then concatenate).
 */
export async function readObjectRange(
  backend: Backend,
  pack: string,
  offset: number,
  length: number,
): Promise<Buffer> {
  let one: Buffer | undefined;
  let out: Buffer | undefined;
  let at = 0;
  // no pack is larger than MAX_PACK (§4): the backend refuses one as the load starts, from the size it
  // learns there (no request more), before any of it is read (stop 45)
  const chunks = backend.load({ type: 'packs', name: pack }, { offset, length, objectMax: MAX_PACK });
  for await (const c of packTooLargeIsDamage(pack, chunks)) {
    if (at + c.length > length) throw new ObjectTooLargeError('packs', pack, length);
    if (at === 0 && c.length === length) one = Buffer.from(c.buffer, c.byteOffset, c.length);
    else {
      out ??= Buffer.allocUnsafe(length);
      if (one) out.set(one, 0);
      one = undefined;
      out.set(c, at);
    }
    at += c.length;
  }
  if (one) return one;
  return (out ?? Buffer.alloc(0)).subarray(0, at);
}

/**
 * Runs `fn` over `items` with at most `limit` at once; results in input order (backend.ts's
 * mapBounded: after a failure no new call starts, and it is thrown once the calls under way ended).
 */
export const mapLimit = mapBounded;

/** A session that wrote at least this many packs has its spare pack buffers collected at its finish. */
const LARGE_STORE_PACKS = 8;
/**
 * Where a writer whose blobs are compressed on other threads closes its packs, at most
 * (BlobWriter.compressOnThread, storedElsewhere): such a writer keeps up to three pack buffers (one
 * filling, the others being saved or kept for the next pack), each written up to this size. 4 MiB
 * rather than 8: ref-170's first snapshot peaked 10-15 MB lower, in the same time (docs/operations.md,
 * "stop 59").
 */
export const THREAD_PACK_TARGET = 4 * 1024 * 1024;

/** Pack saves under way at once while the blobs come compressed from other threads (storedElsewhere). */
const STORED_ELSEWHERE_SAVES = 2;

/** A pack of a writer's session: its slot in the session table, then its name once saved. */
interface SessionPack {
  /** Number of the session table's first blob in this pack; its blobs follow in order. */
  first: number;
  count: number;
  id?: string;
  salt?: string;
  bytes: number;
}

/**
 * Adds blobs to packs; `finish` writes the last pack and the index file of this session's packs. The
 * blobs of the session are kept in a compact table (blob-table.ts; pack = the session's pack number),
 * not as objects: they are the index file written at the end and then part of the master index.
 */
export class BlobWriter {
  private pack: PackBuilder | undefined;
  /** The compression thread, when compressOnThread() asked for one, until drain() or close(). */
  private thread: CompressThread | undefined;
  /** The last batch being put into the packs from the thread (takeBack). */
  private placing: Promise<void> = Promise.resolve();
  private readonly session = new BlobTable();
  private readonly sessionPacks: SessionPack[] = [];
  private readonly saved: string[] = [];
  /** Set once finish() has written the index file: the session's table may now be the index's. */
  private finished = false;
  /** Pack saves under way (at most `packing.saving`), and the first of them that failed. */
  private readonly saving = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;
  /**
   * Where packs are closed and how many are saved at once: the backend's wish (Backend.packing) or ours
   * (at most THREAD_PACK_TARGET once compressing on the thread).
   */
  packing: Packing;
  readonly stats: WriteStats = { blobsNew: 0, blobsKnown: 0, rawNew: 0, storedNew: 0, packs: [] };

  constructor(private readonly repo: Repository) {
    const wish = repo.backend.packing;
    this.packing = {
      target: Math.max(1, Math.floor(wish?.target ?? PACK_TARGET)),
      saving: Math.max(1, Math.floor(wish?.saving ?? 1)),
    };
  }

  /** Whether the repository (or this session) has the blob `id` (hex, or its 32 bytes). */
  has(id: string | Buffer): boolean {
    if (this.repo.index.has(id) || this.session.has(id)) return true;
    const t = this.thread;
    return t?.holding === true && t.has(typeof id === 'string' ? id : id.toString('hex'));
  }

  /**
   * From now on, new blobs are compressed on a worker thread (compress-thread.ts), pipelined with the
   * caller's chunking and hashing; the packs hold the same bytes as without it. For a large store in one
   * pass (a first snapshot). The thread and its slots hold ~15 MB; packs closed at THREAD_PACK_TARGET
   * instead of 16 MiB hold that much less (the writer keeps up to three pack buffers: one filling, one
   * being saved, one for the next pack). drain() (or finish())
   * ends the thread, and close() on every other way out.
   */
  compressOnThread(): void {
    if (this.finished) throw new Error('BlobWriter.compressOnThread after finish');
    if (this.thread) return;
    if (!this.pack)
      this.packing = { ...this.packing, target: Math.min(this.packing.target, THREAD_PACK_TARGET) };
    this.thread = new CompressThread(this.repo.zstdLevel);
  }

  /**
   * From now on, most new blobs come packed by other threads (adoptPack: packs the copy threads wrote
   * ahead; addStored for those of a pack the repository partly has), which hold memory of their own
   * meanwhile: this writer's own packs are closed at THREAD_PACK_TARGET, as with compressOnThread, and
   * STORED_ELSEWHERE_SAVES are saved at once (a local save ends with fsync; a store that takes streams
   * gets up to STREAMED_SAVES pack files at once).
   */
  storedElsewhere(): void {
    if (this.pack) return;
    this.packing = {
      target: Math.min(this.packing.target, THREAD_PACK_TARGET),
      saving: Math.max(this.packing.saving, STORED_ELSEWHERE_SAVES),
    };
  }

  /**
   * Room for about `n` more blobs in this session's table, made at once: a table grown by doubling
   * leaves each smaller copy behind, and its multi-MB columns fragmented the C heap (a first snapshot
   * of a 2.3 GB agent stores ~145,000 blobs). An estimate: more blobs still fit, the table then grows.
   */
  reserve(n: number): void {
    this.session.reserve(this.session.size + n);
  }

  /** Counts a blob the caller found known (has()) and did not add. */
  countKnown(): void {
    this.stats.blobsKnown++;
  }

  /**
   * Stores a blob unless the repository (or this session) has it; returns whether it was new. `data` is
   * compressed into the pack (or copied for the compression thread) before the first await, so it may be
   * a view its caller reuses afterwards.
   */
  async add(kind: BlobKind, id: string, data: Buffer): Promise<boolean> {
    if (this.finished) throw new Error('BlobWriter.add after finish');
    if (!this.countedNew(id, data.length)) return false;
    const t = this.thread;
    if (!t) {
      await this.place(kind, id, (pack) => pack.add(id, kind, data, this.repo.zstdLevel));
      return true;
    }
    t.stage(kind, id, data); // copied (or compressed): `data` is the caller's again
    while (t.ready || t.full) await this.takeBack();
    return true;
  }

  /**
   * Stores a blob of `raw` bytes that compressInto turned into `stored` and `flags` elsewhere (a chunk
   * packed ahead on a copy thread, chunk-plan.ts), unless the repository (or this session) has it;
   * returns whether it was new. `stored` is copied into the pack before the first await. Not beside a
   * compression thread (whose blobs keep the order they were added in).
   */
  async addStored(kind: BlobKind, id: string, stored: Buffer, flags: number, raw: number): Promise<boolean> {
    if (this.finished) throw new Error('BlobWriter.addStored after finish');
    if (this.thread) throw new Error('BlobWriter.addStored beside a compression thread');
    if (!this.countedNew(id, raw)) return false;
    await this.place(kind, id, (pack) => pack.addCompressed(id, kind, stored, flags, raw));
    return true;
  }

  /**
   * Saves a pack a copy thread wrote ahead (pack-file.ts) as it is — streamed from its file to a store
   * that takes streams as they come (Backend.streamedSaves), else read whole into a pack buffer and
   * saved from it; never compressed or hashed again here; the file removed once saved — and
   * records its blobs. A pack of which the repository (or this session) has a blob already (another
   * writer stored it since packing ahead was decided; the other copy thread packed the same chunk) is
   * not saved as it is: its new blobs go into this writer's packs as they were stored (addStored), so
   * no pack holds bytes the index does not place. The pack being filled is closed first, so that each
   * pack's blobs stay side by side in the session's table. Not beside a compression thread.
   */
  async adoptPack(p: AheadPack): Promise<void> {
    if (this.finished) throw new Error('BlobWriter.adoptPack after finish');
    if (this.thread) throw new Error('BlobWriter.adoptPack beside a compression thread');
    const n = p.stored.length;
    if (p.ids.length !== n * 32 || p.flags.length !== n || p.raw.length !== n)
      throw new Error('a pack written ahead with unequal lists');
    const ids = Buffer.from(p.ids.buffer, p.ids.byteOffset, p.ids.byteLength);
    const idAt = (i: number) => ids.subarray(i * 32, (i + 1) * 32);
    let known = 0;
    for (let i = 0; i < n; i++) if (this.has(idAt(i))) known++;
    if (known === n) {
      for (let i = 0; i < n; i++) this.countedNew(idAt(i), p.raw[i]!); // (each counted as known)
      await unlink(p.path).catch(() => {}); // (not saved: nothing of it is new)
      return;
    }
    if (known > 0) {
      await this.repack(p, ids);
      await unlink(p.path).catch(() => {});
      return;
    }
    for (let i = 0; i < n; i++) this.countedNew(idAt(i), p.raw[i]!);
    const streamed = this.repo.backend.streamedSaves === true;
    await this.flush();
    await this.settle(streamed ? Math.max(this.packing.saving, STREAMED_SAVES) : this.packing.saving);
    const slot = this.sessionPacks.length;
    const sp: SessionPack = { first: this.session.size, count: 0, bytes: 0 };
    this.sessionPacks.push(sp);
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const stored = p.stored[i]!;
      this.session.add(idAt(i), {
        pack: slot,
        kind: KIND_DATA,
        flags: p.flags[i]!,
        offset,
        stored,
        raw: p.raw[i]!,
      });
      sp.count++;
      sp.bytes += stored;
      offset += stored;
    }
    const h = { type: 'packs', name: p.id } as const;
    const saved = streamed
      ? saveContentAddressed(this.repo.backend, h, { file: p.path, size: p.size })
      : this.saveWhole(p, h);
    // (the disk holds it once)
    this.track(
      saved.then(() => unlink(p.path).catch(() => {})),
      sp,
      p.id,
      p.salt,
      p.size,
    );
  }

  /** A pack written ahead, read whole into a pack buffer and saved from it. */
  private async saveWhole(p: AheadPack, h: Handle): Promise<void> {
    const target = this.packing.target;
    const buf = packBuffer(target, p.size);
    await readWhole(p.path, buf.subarray(0, p.size));
    await saveContentAddressed(this.repo.backend, h, [buf.subarray(0, p.size)]);
    keepPackBuffer(buf, target); // (only once saved: a failed save may still hold it)
  }

  /** A pack written ahead, its blobs added one by one as they were stored (opened with its key first). */
  private async repack(p: AheadPack, ids: Buffer): Promise<void> {
    const buf = packBuffer(this.packing.target, p.size);
    await readWhole(p.path, buf.subarray(0, p.size));
    const key = p.salt && this.repo.key ? packKey(this.repo.key, Buffer.from(p.salt, 'hex')) : undefined;
    let offset = 0;
    for (let i = 0; i < p.stored.length; i++) {
      const stored = p.stored[i]!;
      const id = ids.toString('hex', i * 32, (i + 1) * 32);
      const bytes = buf.subarray(offset, offset + stored);
      const compressed = key ? openBlob(key, offset, bytes, `blob ${id} of ${p.path}`) : bytes;
      // (copied into the pack before its first await)
      await this.addStored(KIND_DATA, id, compressed, p.flags[i]!, p.raw[i]!);
      offset += stored;
    }
    keepPackBuffer(buf, this.packing.target);
  }

  /** Counts blob `id` (of `raw` bytes) as known, false, or as new, true (add, addStored). */
  private countedNew(id: string | Buffer, raw: number): boolean {
    if (this.has(id)) {
      this.stats.blobsKnown++;
      return false;
    }
    this.stats.blobsNew++;
    this.stats.rawNew += raw;
    return true;
  }

  /**
   * Puts the oldest batch back from the compression thread into the packs, in the order its blobs were
   * added (one batch at a time, even for callers that add concurrently).
   */
  private takeBack(): Promise<void> {
    const t = this.thread!;
    const run = this.placing.then(async () => {
      const b = await t.next();
      if (!b) return;
      for (let i = 0; i < b.blobs.length; i++) {
        const { id, kind, raw } = b.blobs[i]!;
        await this.place(kind, id, (pack) => pack.addCompressed(id, kind, b.data(i), b.flags(i), raw));
        t.placed(id);
      }
      b.recycle();
    });
    this.placing = run.catch(() => {});
    return run;
  }

  /**
   * Sends what the compression thread has not been given yet, puts every batch into the packs and ends
   * the thread (nothing when there is none).
   */
  async drain(): Promise<void> {
    const t = this.thread;
    if (!t) return;
    t.send();
    while (t.backlog > 0) await this.takeBack();
    await this.placing;
    this.thread = undefined;
    await t.close();
  }

  /** Ends the compression thread if there is one, dropping what it holds (a store that failed). */
  async close(): Promise<void> {
    const t = this.thread;
    this.thread = undefined;
    await t?.close();
  }

  /** Adds one blob to the current pack (`put` compresses it there, or copies it in) and records it. */
  private async place(kind: BlobKind, id: string, put: (pack: PackBuilder) => PackEntry): Promise<void> {
    if (!this.pack) {
      this.pack = new PackBuilder(this.repo.key, this.packing.target);
      this.sessionPacks.push({ first: this.session.size, count: 0, bytes: 0 });
    }
    const e = put(this.pack);
    const slot = this.sessionPacks.length - 1;
    this.session.add(id, {
      pack: slot,
      kind,
      flags: e.flags,
      offset: e.offset,
      stored: e.stored,
      raw: e.raw,
    });
    const sp = this.sessionPacks[slot]!;
    sp.count++;
    sp.bytes += e.stored;
    if (this.pack.size >= this.packing.target) await this.flush();
  }

  /**
   * Throws the first failed save once no save is under way (so packsWritten names every pack that got
   * stored); otherwise returns once fewer than `limit` saves are under way.
   */
  private async settle(limit: number): Promise<void> {
    while (this.saving.size >= limit && this.failure === undefined) await Promise.race(this.saving);
    if (this.failure === undefined) return;
    await Promise.all(this.saving);
    throw this.failure.err;
  }

  /**
   * Closes the current pack and saves it: at most `packing.saving` saves under way while the next pack
   * fills, so the writer holds at most `packing.saving + 1` pack buffers.
   */
  private async flush(): Promise<void> {
    const p = this.pack;
    this.pack = undefined;
    if (!p || p.entries.length === 0) return;
    const sp = this.sessionPacks[this.sessionPacks.length - 1]!;
    await this.settle(this.packing.saving);
    const done = p.finish();
    this.track(
      saveContentAddressed(this.repo.backend, { type: 'packs', name: done.id }, done.parts).then(() =>
        p.release(),
      ),
      sp,
      done.id,
      p.packSalt?.toString('hex'),
      done.size,
    );
  }

  /** Counts a pack save as under way until it ends; once saved, the pack is the session's `sp`. */
  private track(
    save: Promise<void>,
    sp: SessionPack,
    id: string,
    salt: string | undefined,
    size: number,
  ): void {
    const saving: Promise<void> = save.then(
      () => {
        sp.id = id;
        if (salt) sp.salt = salt;
        this.saved.push(id);
        this.stats.packs.push(id);
        this.stats.storedNew += size;
        this.saving.delete(saving);
      },
      (err: unknown) => {
        this.saving.delete(saving);
        this.failure ??= { err };
      },
    );
    this.saving.add(saving);
  }

  /**
   * Saves the last pack and the index file of every pack of this session; the blobs are then in the
   * repository's index (the session's table itself when the index was empty) and the writer takes no
   * more blobs.
   */
  async finish(): Promise<WriteStats> {
    await this.drain();
    await this.flush();
    await this.settle(1);
    // The packs are saved: the buffers kept for a next pack go, and after a large store (the first
    // snapshot of a large agent) they are collected at once, before the index file and the manifest
    // are made (the CLI; a library host keeps its own GC policy).
    if (dropSparePackBuffers() > 0 && this.sessionPacks.length >= LARGE_STORE_PACKS) collectGarbageNow();
    const t = this.session;
    const packs: IndexPackSource[] = this.sessionPacks.map((sp) => ({
      id: sp.id!,
      ...(sp.salt ? { salt: sp.salt } : {}),
      count: sp.count,
      row: (i: number) => {
        const b = sp.first + i;
        return [t.idHex(b), t.kindOf(b), t.flagsOf(b), t.offsetOf(b), t.storedOf(b), t.rawOf(b)];
      },
    }));
    if (packs.length > 0) {
      await this.repo.saveIndex(packs);
      const index = this.repo.index;
      this.finished = true;
      if (index.empty) {
        // the session's table becomes the index (its pack column is the session's pack numbering)
        index.adopt(
          t,
          this.sessionPacks.map((sp) => ({
            id: sp.id!,
            ...(sp.salt ? { salt: sp.salt } : {}),
            blobs: sp.count,
            bytes: sp.bytes,
          })),
        );
        return this.stats;
      }
      index.reserve(t.size);
      for (const sp of this.sessionPacks) {
        const n = index.packNumber(sp.id!);
        for (let b = sp.first; b < sp.first + sp.count; b++)
          index.addBlob(t.idBytes(b), n, {
            kind: t.kindOf(b) as BlobKind,
            flags: t.flagsOf(b),
            offset: t.offsetOf(b),
            stored: t.storedOf(b),
            raw: t.rawOf(b),
          });
        index.notePack(sp.id!, sp.salt, sp.count, sp.bytes);
      }
    }
    return this.stats;
  }

  /** The packs this session saved (to remove them when the operation fails before referencing them). */
  get packsWritten(): readonly string[] {
    return this.saved;
  }
}
