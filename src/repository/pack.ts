// Owns the pack file (docs/repository.md §4): blobs compressed (zstd) and, in an encrypted repository,
// sealed one by one, followed by a header that lists them, the header's length and a magic. Building a
// pack in memory (one reused buffer, bounded by the pack size), parsing a pack's header, and turning one stored blob back
// into its verified plaintext.

import { createHash, randomBytes } from 'node:crypto';
import { zstdBinding } from '../format/zstd.js';
import { BundleDamagedError, SchemaTooNewError } from '../model/errors.js';
import {
  openBlob,
  openPackHeader,
  packKey,
  type RepoKey,
  SALT,
  sealBlob,
  sealPackHeader,
  TAG,
} from './crypto.js';

export const PACK_MAGIC = Buffer.from('NXPK1\0\0\0', 'latin1');
export const ENTRY_SIZE = 42;
/** A pack is closed once its blobs reach this size (unless the backend asks for another: Backend.packing). */
export const PACK_TARGET = 16 * 1024 * 1024;
/**
 * No pack is larger than this (docs/repository.md §4): a writer's packs are closed at 16 MiB at most plus their
 * last blob and header; `check --read-data`, which reads a pack whole, refuses a larger one as damage
 * before reading or allocating anything for it (a 5 GB sparse file was an INTERNAL error, 1 GB its RSS).
 */
export const MAX_PACK = 64 * 1024 * 1024;
/** A pack larger than MAX_PACK, found where it is read: damage naming it, nothing of it read (stop 45). */
export const packTooLarge = (pack: string, size: number): BundleDamagedError =>
  new BundleDamagedError(
    `packs/${pack} is ${size} bytes, more than any pack may be (${MAX_PACK}); not read`,
    {
      details: { object: `packs/${pack}`, size, max_bytes: MAX_PACK },
    },
  );
/** No blob is larger than this (the chunkers' maximum is 4 MiB): a longer one is damage (§4). */
export const MAX_BLOB = 16 * 1024 * 1024;
/**
 * No stored blob is longer than this: a writer stores a blob's own bytes when zstd would not make it
 * smaller, so stored ≤ raw + the AEAD tag; the bound of zstd's worst case leaves room for any writer.
 */
export const MAX_STORED = MAX_BLOB + (MAX_BLOB >> 8) + 64 * 1024 + TAG;

export type BlobKind = 1 | 2; // 1 data, 2 tree
export const KIND_DATA: BlobKind = 1;
export const KIND_TREE: BlobKind = 2;
/** Flag bit 0: the blob is stored without compression (it did not compress). */
export const FLAG_RAW = 1;

export interface PackEntry {
  id: string;
  kind: BlobKind;
  flags: number;
  offset: number;
  stored: number;
  raw: number;
}

let cctx: InstanceType<ReturnType<typeof zstdBinding>['CCtx']> | undefined;
let dctx: InstanceType<ReturnType<typeof zstdBinding>['DCtx']> | undefined;
let scratch = Buffer.allocUnsafe(0);

/**
 * Compresses `data` at `level` into `dst` (which has room for compressBound bytes) and returns the
 * stored length and flags: zstd, or the raw bytes (flag FLAG_RAW) when compression does not save
 * anything. One compression context per thread (the compression thread has its own).
 */
export function compressInto(dst: Buffer, data: Buffer, level: number): { n: number; flags: number } {
  cctx ??= new (zstdBinding().CCtx)();
  cctx.setParameter(zstdBinding().CParameter.compressionLevel, level);
  const n = cctx.compress2(dst, data);
  if (n < data.length) return { n, flags: 0 };
  data.copy(dst);
  return { n: data.length, flags: FLAG_RAW };
}

/** A buffer one reader reuses for the blobs it opens (openStoredBlob), grown as needed. */
export interface BlobScratch {
  buf: Buffer;
}

export const newBlobScratch = (): BlobScratch => ({ buf: Buffer.allocUnsafe(0) });

function decompressBlob(stored: Buffer, raw: number, what: string, scratch: BlobScratch | undefined): Buffer {
  // the output is `raw` bytes and zstd writes no more than that: never more than MAX_BLOB
  if (raw > MAX_BLOB) throw new BundleDamagedError(`${what}: blob of ${raw} bytes exceeds the limit`);
  dctx ??= new (zstdBinding().DCtx)();
  let out: Buffer;
  if (scratch) {
    if (scratch.buf.length < raw) scratch.buf = Buffer.allocUnsafe(Math.max(raw, 1 << 20));
    out = scratch.buf.subarray(0, raw);
  } else out = Buffer.allocUnsafe(raw);
  let n: number;
  try {
    n = dctx.decompress(out, stored);
  } catch (err) {
    throw new BundleDamagedError(`${what}: corrupt zstd data (${(err as Error).message})`);
  }
  if (n !== raw) throw new BundleDamagedError(`${what}: decompressed to ${n} bytes, the index says ${raw}`);
  return out;
}

/**
 * Pack buffers no longer in use, by capacity, kept for the next pack: a pack assembled from one buffer
 * per blob, freed once saved, fragments the C heap (peak RSS grew with every pack); at most
 * SPARE_BUFFERS of each capacity are kept.
 */
const spare = new Map<number, Buffer[]>();
const SPARE_BUFFERS = 2;
/** Room in a pack buffer beyond the target: the largest chunk the chunkers cut (and its bound). */
const PACK_SLACK = 4 * 1024 * 1024 + 64 * 1024;

/** The capacity of a pack buffer for packs closed at `target` bytes. */
const packCapacity = (target: number): number => target + PACK_SLACK;

/**
 * Drops the pack buffers kept for a next pack, of every capacity (a writer that saved its last pack:
 * what follows in its operation, the index file and the manifest, would otherwise be new memory beside
 * them). Returns how many were kept.
 */
export function dropSparePackBuffers(): number {
  let n = 0;
  for (const kept of spare.values()) n += kept.length;
  spare.clear();
  return n;
}

/** Keeps `buf` for the next pack when it has the usual `capacity` and fewer than SPARE_BUFFERS are kept. */
function keepSpare(buf: Buffer, capacity: number): void {
  if (buf.length !== capacity) return;
  const kept = spare.get(capacity) ?? [];
  if (kept.length < SPARE_BUFFERS) kept.push(buf);
  spare.set(capacity, kept);
}

/**
 * A pack buffer of the capacity for packs closed at `target`, or larger, holding at least `need` bytes:
 * one kept for the next pack when there is one (a pack written ahead, read whole for its save, shares
 * the buffers of the packs built here). Give it back with keepPackBuffer once the pack is saved.
 */
export function packBuffer(target: number, need: number): Buffer {
  const capacity = packCapacity(target);
  const kept = spare.get(capacity)?.pop();
  if (kept && kept.length >= need) return kept;
  if (kept) keepSpare(kept, capacity);
  return Buffer.allocUnsafe(Math.max(capacity, need));
}

/** Gives back a buffer of packBuffer(target, …) for the next pack. */
export const keepPackBuffer = (buf: Buffer, target: number): void => keepSpare(buf, packCapacity(target));

/**
 * Collects blobs into one pack, in memory: compressed (and sealed) straight into one buffer of
 * packCapacity(target) bytes, reused by the next pack once release() is called after the pack is saved.
 * `target` is where its owner closes the pack (PACK_TARGET, or the backend's `packing.target`).
 */
export class PackBuilder {
  readonly entries: PackEntry[] = [];
  private buf: Buffer | undefined;
  private readonly salt: Buffer | undefined;
  private readonly key: Buffer | undefined;
  private readonly capacity: number;
  size = 0;

  constructor(repoKey: RepoKey | undefined, target = PACK_TARGET) {
    this.capacity = packCapacity(target);
    if (repoKey) {
      this.salt = randomBytes(SALT);
      this.key = packKey(repoKey, this.salt);
    }
  }

  /** Room for `n` more bytes (a larger buffer only for a blob beyond the usual capacity). */
  private room(n: number): Buffer {
    const need = this.size + n;
    if (this.buf && this.buf.length >= need) return this.buf;
    const next = spare.get(this.capacity)?.pop() ?? Buffer.allocUnsafe(Math.max(this.capacity, need));
    if (next.length < need) return this.grow(next, need);
    if (this.buf) this.buf.copy(next, 0, 0, this.size);
    this.buf = next;
    return next;
  }

  private keep(buf: Buffer): void {
    keepSpare(buf, this.capacity);
  }

  private grow(unfit: Buffer, need: number): Buffer {
    this.keep(unfit);
    const next = Buffer.allocUnsafe(Math.max(need, 2 * (this.buf?.length ?? 0)));
    if (this.buf) this.buf.copy(next, 0, 0, this.size);
    this.buf = next;
    return next;
  }

  /** Compresses `data` at `level` (and seals it in an encrypted repository) into the pack. */
  add(id: string, kind: BlobKind, data: Buffer, level: number): PackEntry {
    const bound = zstdBinding().compressBound(data.length);
    if (this.key) {
      if (scratch.length < bound) scratch = Buffer.allocUnsafe(Math.max(bound, 1 << 20));
      const c = compressInto(scratch, data, level);
      return this.addCompressed(id, kind, scratch.subarray(0, c.n), c.flags, data.length);
    }
    const dst = this.room(bound);
    const c = compressInto(dst.subarray(this.size, this.size + bound), data, level);
    return this.push(id, kind, c.flags, c.n, data.length);
  }

  /**
   * Appends a blob of `raw` bytes that compressInto turned into `compressed` and `flags` elsewhere (a
   * compression thread), sealing it in an encrypted repository: the same bytes as add() would store.
   */
  addCompressed(id: string, kind: BlobKind, compressed: Buffer, flags: number, raw: number): PackEntry {
    const bytes = this.key ? sealBlob(this.key, this.size, compressed) : compressed;
    bytes.copy(this.room(bytes.length), this.size);
    return this.push(id, kind, flags, bytes.length, raw);
  }

  private push(id: string, kind: BlobKind, flags: number, stored: number, raw: number): PackEntry {
    const e: PackEntry = { id, kind, flags, offset: this.size, stored, raw };
    this.entries.push(e);
    this.size += stored;
    return e;
  }

  /** The salt of the pack key (encrypted repositories): the index records it beside the pack. */
  get packSalt(): Buffer | undefined {
    return this.salt;
  }

  /**
   * The pack's bytes as parts, views of this builder's buffer valid until release() (one part, the whole
   * pack, when its header and trailer fit after the blobs: saved without a copy), and its name, the
   * SHA-256 of those bytes.
   */
  finish(): { id: string; parts: Buffer[]; size: number } {
    const tail = packTail(this.entries, this.key ? { key: this.key, salt: this.salt! } : undefined);
    const total = this.size + tail.reduce((n, p) => n + p.length, 0);
    let parts: Buffer[];
    if (this.buf && this.buf.length >= total) {
      let at = this.size;
      for (const p of tail) at += p.copy(this.buf, at);
      parts = [this.buf.subarray(0, total)];
    } else parts = [this.buf ? this.buf.subarray(0, this.size) : Buffer.alloc(0), ...tail];
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return { id: h.digest('hex'), parts, size: total };
  }

  /** Gives the buffer back for the next pack (call once the pack's bytes are saved, never before). */
  release(): void {
    if (this.buf) this.keep(this.buf);
    this.buf = undefined;
  }
}

/**
 * What follows a pack's blobs (§4): the header listing `entries` (sealed with the pack's key and
 * preceded by its salt in an encrypted repository), the header's length and the magic.
 */
export function packTail(
  entries: readonly Pick<PackEntry, 'id' | 'kind' | 'flags' | 'stored' | 'raw'>[],
  sealed: { key: Buffer; salt: Buffer } | undefined,
): Buffer[] {
  const table = Buffer.alloc(entries.length * ENTRY_SIZE);
  entries.forEach((e, i) => {
    const at = i * ENTRY_SIZE;
    table[at] = e.kind;
    table[at + 1] = e.flags;
    table.writeUInt32LE(e.raw, at + 2);
    table.writeUInt32LE(e.stored, at + 6);
    table.write(e.id, at + 10, 'hex');
  });
  const header = sealed ? Buffer.concat([sealed.salt, sealPackHeader(sealed.key, table)]) : table;
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return [header, len, PACK_MAGIC];
}

/** Length of the trailer (header length + magic) that ends every pack. */
export const TRAILER = 4 + PACK_MAGIC.length;

/** The version of a pack magic `NXPK<2-9>\0\0\0` (a newer format's), else undefined. */
function newerPackVersion(magic: Buffer): number | undefined {
  const m = /^NXPK([2-9])\0\0\0$/.exec(magic.toString('latin1'));
  return m ? Number(m[1]) : undefined;
}

/** Parses the trailer: the header's length. */
export function headerLength(trailer: Buffer, packSize: number, what: string): number {
  if (trailer.length !== TRAILER || !trailer.subarray(4).equals(PACK_MAGIC)) {
    // `NXPK<n>\0\0\0` with n above 1: a newer writer's pack, not damage (stop 47)
    const v = newerPackVersion(trailer.subarray(4));
    if (trailer.length === TRAILER && v !== undefined)
      throw new SchemaTooNewError(v, 1, `${what}: pack format version`, 'repository');
    throw new BundleDamagedError(`${what}: not a pack (no pack magic at its end)`);
  }
  const n = trailer.readUInt32LE(0);
  if (n + TRAILER > packSize) throw new BundleDamagedError(`${what}: header length ${n} exceeds the pack`);
  return n;
}

/**
 * Parses a pack header (decrypting it with the repository key when there is one). `blobBytes`, the
 * pack's bytes before its header: the blobs fill them exactly, from 0, with no gap and no overlap.
 */
export function parseHeader(
  header: Buffer,
  repoKey: RepoKey | undefined,
  what: string,
  blobBytes: number,
): {
  entries: PackEntry[];
  key?: Buffer;
  salt?: Buffer;
} {
  let table = header;
  let key: Buffer | undefined;
  if (repoKey) {
    if (header.length < SALT + TAG) throw new BundleDamagedError(`${what}: pack header too short`);
    key = packKey(repoKey, header.subarray(0, SALT));
    table = openPackHeader(key, header.subarray(SALT), `${what} header`);
  }
  if (table.length % ENTRY_SIZE !== 0)
    throw new BundleDamagedError(`${what}: pack header has a partial entry`);
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let at = 0; at < table.length; at += ENTRY_SIZE) {
    const kind = table[at]!;
    if (kind !== KIND_DATA && kind !== KIND_TREE)
      throw new BundleDamagedError(`${what}: unknown blob kind ${kind} in the pack header`);
    const flags = table[at + 1]!;
    if ((flags & ~FLAG_RAW) !== 0) throw new BundleDamagedError(`${what}: unknown blob flags ${flags}`);
    const raw = table.readUInt32LE(at + 2);
    const stored = table.readUInt32LE(at + 6);
    if (raw > MAX_BLOB || stored > MAX_STORED)
      throw new BundleDamagedError(`${what}: blob of ${raw} bytes (${stored} stored) exceeds the limit`);
    entries.push({ id: table.toString('hex', at + 10, at + 42), kind, flags, offset, stored, raw });
    offset += stored;
  }
  if (offset !== blobBytes)
    throw new BundleDamagedError(
      `${what}: its header's blobs take ${offset} bytes, but ${blobBytes} come before the header`,
    );
  return { entries, ...(key ? { key, salt: Buffer.from(header.subarray(0, SALT)) } : {}) };
}

/**
 * Turns the stored bytes of a blob back into its plaintext and checks its SHA-256 against its id
 * (unless `checkId` is false: a caller that hashes every byte of the content the blob belongs to and
 * checks that against the sealed manifest before anything uses it). `key` is the pack's key (encrypted
 * repositories; the blob's offset in the pack is its nonce). With `scratch`, a compressed blob is
 * decompressed into that reader's buffer, which its next call reuses (for a reader that only checks, or
 * copies at once): no allocation per blob.
 */
export function openStoredBlob(
  stored: Buffer,
  e: Pick<PackEntry, 'id' | 'flags' | 'raw' | 'offset'>,
  key: Buffer | undefined,
  what: string,
  scratch?: BlobScratch,
  checkId = true,
): Buffer {
  if (e.raw > MAX_BLOB || stored.length > MAX_STORED)
    throw new BundleDamagedError(
      `${what}: blob of ${e.raw} bytes (${stored.length} stored) exceeds the limit`,
    );
  const compressed = key ? openBlob(key, e.offset, stored, what) : stored;
  const data = e.flags & FLAG_RAW ? compressed : decompressBlob(compressed, e.raw, what, scratch);
  if (data.length !== e.raw)
    throw new BundleDamagedError(`${what}: ${data.length} bytes, the index says ${e.raw}`);
  if (checkId && createHash('sha256').update(data).digest('hex') !== e.id)
    throw new BundleDamagedError(`${what}: content does not hash to its id (damaged)`);
  return data;
}
