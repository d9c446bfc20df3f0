// Owns cutting content into chunks (docs/repository.md §3): SQLite databases at page boundaries chosen
// by the pages' contents, other large files by a gear rolling hash, lists (chunk lists, git object
// lists) at entry boundaries chosen by the entries' ids. Every boundary depends only on nearby content,
// so an edit changes the chunks around it and nothing else. Pure apart from reading the file.

import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

export interface ChunkerParams {
  /** SQLite: least pages per chunk. */
  page_min: number;
  /** SQLite: a boundary after a page whose CRC-32 has this many low bits set (avg 2^bits pages). */
  page_avg_bits: number;
  /** SQLite: most pages per chunk. */
  page_max: number;
  /** Other files: least bytes per chunk. */
  file_min: number;
  /** Other files: boundary mask bits (avg 2^bits bytes past the minimum). */
  file_avg_bits: number;
  /** Other files: most bytes per chunk. */
  file_max: number;
  /** Files of at most this size are one chunk. */
  single_max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = {
  page_min: 1,
  page_avg_bits: 2,
  page_max: 32,
  file_min: 256 * 1024,
  file_avg_bits: 20,
  file_max: 4 * 1024 * 1024,
  single_max: 1024 * 1024,
};

/** Entry-boundary bits of lists: a list chunk holds 2^6 = 64 entries on average. */
export const LIST_AVG_BITS = 6;
export const LIST_MAX_ENTRIES = 1024;

export interface Chunk {
  /** SHA-256 of `data`, lowercase hex. */
  id: string;
  data: Buffer;
}

const READ = 4 * 1024 * 1024;

export interface ChunkOptions {
  /**
   * Yield views instead of fresh buffers where a chunk lies within one block read: such a chunk is
   * valid only until the next one is requested (a consumer that compresses and hashes each chunk at
   * once, as storing does, then allocates nothing per chunk).
   */
  views?: boolean;
  /** Bytes read at a time from a large file (default READ, 4 MiB; a SQLite file's reads stay whole pages). */
  readBlock?: number;
  /**
   * Read the blocks of a large file synchronously: for a worker thread that has nothing else to do
   * meanwhile (a plan on a copy thread), which otherwise sat idle through every read's round trip to
   * libuv's pool.
   */
  syncReads?: boolean;
}

/**
 * About how many chunks `size` bytes are cut into: a SQLite database of `pageSize` pages (the average
 * run of 2^page_avg_bits pages), another file (one chunk up to single_max, then the gear chunker's
 * average). An estimate for sizing tables ahead (BlobWriter.reserve), never a bound.
 */
export function expectedChunks(size: number, params: ChunkerParams, pageSize?: number): number {
  if (size === 0) return 0;
  if (pageSize !== undefined) return Math.ceil(size / (pageSize * 2 ** params.page_avg_bits));
  if (size <= params.single_max) return 1;
  return Math.ceil(size / (params.file_min + 2 ** Math.min(params.file_avg_bits, 32)));
}

/** The page size of a SQLite file's header (bytes 16–17; 1 means 65536), or undefined if not SQLite. */
export function sqlitePageSize(header: Buffer): number | undefined {
  if (header.length < 100 || header.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0')
    return undefined;
  const raw = header.readUInt16BE(16);
  const size = raw === 1 ? 65536 : raw;
  if (size < 512 || size > 65536 || (size & (size - 1)) !== 0) return undefined;
  return size;
}

const chunkOf = (data: Buffer): Chunk => ({ id: createHash('sha256').update(data).digest('hex'), data });

/**
 * Chunks a file: page-aligned content-defined chunks for a SQLite database (`sqlite`), otherwise one
 * chunk up to `single_max` bytes and gear-hash chunks beyond. Yields fresh buffers (safe to keep) unless
 * `opts.views`.
 * Memory: a small file is read into one buffer of its size; a large one through one read buffer of at
 * most READ bytes, reused for every block (the chunkers copy what they keep), so chunking a file
 * allocates no block per read (allocating and freeing 4 MiB blocks fragments the C heap: peak RSS).
 */
export async function* chunkFile(
  path: string,
  params: ChunkerParams,
  sqlite: boolean,
  opts: ChunkOptions = {},
): AsyncGenerator<Chunk, void, undefined> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return;
    const head = Buffer.alloc(Math.min(100, size));
    await fh.read(head, 0, head.length, 0);
    const pageSize = sqlite ? sqlitePageSize(head) : undefined;
    if (pageSize === undefined && size <= params.single_max) {
      const whole = await readWhole(fh, size);
      if (whole.length > 0) yield chunkOf(whole);
      return;
    }
    const read = opts.readBlock ?? READ;
    const block = pageSize ? Math.max(pageSize, read - (read % pageSize)) : read;
    const reads = readBlocks(
      fh,
      Math.min(block, pageSize ? Math.ceil(size / pageSize) * pageSize : size),
      opts.readBlock !== undefined && opts.readBlock < READ,
      opts.syncReads ?? false,
    );
    if (pageSize !== undefined) yield* pageChunks(reads, pageSize, params, opts);
    else yield* gearChunks(reads, params, opts);
  } finally {
    await fh.close();
  }
}

/** A file of `size` bytes (from its start) in one buffer; shorter if the file shrank meanwhile. */
async function readWhole(fh: import('node:fs/promises').FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const { bytesRead } = await fh.read(buf, filled, size - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === size ? buf : buf.subarray(0, filled);
}

/**
 * Read buffers of READ bytes no longer in use, kept for the next file (at most SPARE_READS): a 4 MiB
 * buffer per file, freed after it, made glibc raise its mmap threshold (it follows the largest mmapped
 * block freed), so later multi-MB allocations went to the C heap and stayed there (peak RSS).
 */
const spareReads: Buffer[] = [];
const SPARE_READS = 2;

/**
 * The file from its start in blocks of `block` bytes, read into one buffer reused for every block: a
 * block is valid only until the consumer asks for the next one. `small`: the caller asked for reads
 * below READ (a plan on a copy thread): a buffer of the block's size, neither taken from nor kept among
 * the spares.
 */
async function* readBlocks(
  fh: import('node:fs/promises').FileHandle,
  block: number,
  small = false,
  sync = false,
): AsyncGenerator<Buffer> {
  const buf = small
    ? Buffer.allocUnsafe(block)
    : ((block <= READ ? spareReads.pop() : undefined) ?? Buffer.allocUnsafe(Math.max(READ, block)));
  try {
    let pos = 0;
    for (;;) {
      let filled = 0;
      while (filled < block) {
        const bytesRead = sync
          ? readSync(fh.fd, buf, filled, block - filled, pos + filled)
          : (await fh.read(buf, filled, block - filled, pos + filled)).bytesRead;
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) return;
      pos += filled;
      yield buf.subarray(0, filled);
      if (filled < block) return;
    }
  } finally {
    if (buf.length === READ && spareReads.length < SPARE_READS) spareReads.push(buf);
  }
}

/**
 * Page-aligned content-defined chunks (§3.1). A trailing partial page ends the last chunk. A source may
 * reuse its buffer for the next block: what a chunk keeps is copied.
 */
export async function* pageChunks(
  source: AsyncIterable<Buffer>,
  pageSize: number,
  params: ChunkerParams,
  opts: ChunkOptions = {},
): AsyncGenerator<Chunk> {
  const mask = (1 << params.page_avg_bits) - 1;
  let pending: Buffer[] = [];
  let pages = 0;
  let carry = Buffer.alloc(0);
  const flush = (): Chunk => {
    const one = pending.length === 1 ? pending[0]! : undefined;
    const c = chunkOf(one ? (opts.views ? one : Buffer.from(one)) : Buffer.concat(pending));
    pending = [];
    pages = 0;
    return c;
  };
  for await (const block of source) {
    const buf = carry.length > 0 ? Buffer.concat([carry, block]) : block;
    let off = 0;
    let runStart = 0;
    while (off + pageSize <= buf.length) {
      const page = buf.subarray(off, off + pageSize);
      off += pageSize;
      pages++;
      if ((pages >= params.page_min && (crc32(page) & mask) === mask) || pages >= params.page_max) {
        pending.push(buf.subarray(runStart, off));
        runStart = off;
        yield flush();
      }
    }
    if (off > runStart) pending.push(Buffer.from(buf.subarray(runStart, off)));
    carry = Buffer.from(buf.subarray(off));
  }
  if (carry.length > 0) pending.push(carry);
  if (pending.length > 0) yield flush();
}

/** The gear table: the first 8 bytes of SHA-256 of each byte value, as two 32-bit halves. */
const GEAR_HI = new Uint32Array(256);
const GEAR_LO = new Uint32Array(256);
for (let i = 0; i < 256; i++) {
  const d = createHash('sha256')
    .update(Buffer.from([i]))
    .digest();
  GEAR_HI[i] = d.readUInt32BE(0);
  GEAR_LO[i] = d.readUInt32BE(4);
}

/**
 * Gear-hash content-defined chunks (§3.2): hash = (hash << 1) + gear[byte] over 64 bits (so it sees the
 * last 64 bytes); a boundary after the byte where the high `file_avg_bits` bits (at most 32) are zero,
 * once `file_min` bytes are in the chunk, or at `file_max` bytes. A source may reuse its buffer for the
 * next block: what a chunk keeps is copied.
 */
export async function* gearChunks(
  source: AsyncIterable<Buffer>,
  params: ChunkerParams,
  opts: ChunkOptions = {},
): AsyncGenerator<Chunk> {
  const shift = 32 - Math.min(32, params.file_avg_bits);
  let pending: Buffer[] = [];
  let len = 0; // bytes of the current chunk in `pending`
  let hi = 0;
  let lo = 0;
  for await (const block of source) {
    let start = 0;
    let i = 0;
    while (i < block.length) {
      const inChunk = len + (i - start);
      if (inChunk < params.file_min) {
        // Below the minimum no boundary can fall: skip to 64 bytes before it, where hashing resumes.
        const to = start + (params.file_min - len) - 64;
        if (i < to) {
          i = Math.min(block.length, to);
          hi = 0;
          lo = 0;
          continue;
        }
      }
      const b = block[i]!;
      const carryBit = lo >>> 31;
      let nlo = ((lo << 1) >>> 0) + GEAR_LO[b]!;
      let nhi = (((hi << 1) | carryBit) >>> 0) + GEAR_HI[b]!;
      if (nlo > 0xffffffff) {
        nlo -= 0x100000000;
        nhi += 1;
      }
      lo = nlo >>> 0;
      hi = nhi >>> 0;
      i++;
      const size = inChunk + 1;
      if ((size >= params.file_min && hi >>> shift === 0) || size >= params.file_max) {
        pending.push(block.subarray(start, i));
        yield chunkOf(opts.views && pending.length === 1 ? pending[0]! : Buffer.concat(pending));
        pending = [];
        len = 0;
        start = i;
        hi = 0;
        lo = 0;
      }
    }
    if (i > start) {
      pending.push(Buffer.from(block.subarray(start, i)));
      len += i - start;
    }
  }
  if (len > 0) yield chunkOf(Buffer.concat(pending));
}

/**
 * Cuts a list of fixed-size entries into chunks (§3.3): after an entry whose byte `keyByte` has its
 * low LIST_AVG_BITS bits all set, or after LIST_MAX_ENTRIES entries. The list may come as consecutive
 * segments, each a whole number of entries (the chunks are the same as of their concatenation).
 */
export function listChunks(list: Buffer | readonly Buffer[], entrySize: number, keyByte: number): Chunk[] {
  const mask = (1 << LIST_AVG_BITS) - 1;
  const out: Chunk[] = [];
  let parts: Buffer[] = [];
  let entries = 0;
  const cut = () => {
    out.push(chunkOf(parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts)));
    parts = [];
    entries = 0;
  };
  for (const seg of Buffer.isBuffer(list) ? [list] : list) {
    if (seg.length % entrySize !== 0) throw new Error('listChunks: a segment with a partial entry');
    let start = 0;
    for (let off = 0; off + entrySize <= seg.length; off += entrySize) {
      entries++;
      if ((seg[off + keyByte]! & mask) === mask || entries >= LIST_MAX_ENTRIES) {
        parts.push(seg.subarray(start, off + entrySize));
        start = off + entrySize;
        cut();
      }
    }
    if (start < seg.length) parts.push(seg.subarray(start));
  }
  if (parts.length > 0) cut();
  return out;
}
