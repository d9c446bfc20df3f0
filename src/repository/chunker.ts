// Owns cutting content into chunks (docs/repository.md §3): SQLite databases at page boundaries chosen
// by the pages' contents, other large files by a gear rolling hash, lists (chunk lists, git object
// lists) at entry boundaries chosen by the entries' ids. Every boundary depends only on nearby content,
// so an edit changes the chunks around it and nothing else. Pure apart from reading the file.

import { createHash } from 'node:crypto';
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
 * chunk up to `single_max` bytes and gear-hash chunks beyond. Yields fresh buffers (safe to keep).
 */
export async function* chunkFile(
  path: string,
  params: ChunkerParams,
  sqlite: boolean,
): AsyncGenerator<Chunk, void, undefined> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return;
    const head = Buffer.alloc(Math.min(100, size));
    await fh.read(head, 0, head.length, 0);
    const pageSize = sqlite ? sqlitePageSize(head) : undefined;
    const reads = readAll(fh, pageSize ? Math.max(pageSize, READ - (READ % pageSize)) : READ);
    if (pageSize !== undefined) yield* pageChunks(reads, pageSize, params);
    else if (size <= params.single_max) {
      const parts: Buffer[] = [];
      for await (const b of reads) parts.push(b);
      yield chunkOf(Buffer.concat(parts));
    } else yield* gearChunks(reads, params);
  } finally {
    await fh.close();
  }
}

async function* readAll(fh: import('node:fs/promises').FileHandle, block: number): AsyncGenerator<Buffer> {
  for (;;) {
    const buf = Buffer.allocUnsafe(block);
    let filled = 0;
    while (filled < block) {
      const { bytesRead } = await fh.read(buf, filled, block - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled === 0) return;
    yield buf.subarray(0, filled);
    if (filled < block) return;
  }
}

/** Page-aligned content-defined chunks (§3.1). A trailing partial page ends the last chunk. */
export async function* pageChunks(
  source: AsyncIterable<Buffer>,
  pageSize: number,
  params: ChunkerParams,
): AsyncGenerator<Chunk> {
  const mask = (1 << params.page_avg_bits) - 1;
  let pending: Buffer[] = [];
  let pages = 0;
  let carry = Buffer.alloc(0);
  const flush = (): Chunk => {
    const c = chunkOf(pending.length === 1 ? Buffer.from(pending[0]!) : Buffer.concat(pending));
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
 * once `file_min` bytes are in the chunk, or at `file_max` bytes.
 */
export async function* gearChunks(
  source: AsyncIterable<Buffer>,
  params: ChunkerParams,
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
        yield chunkOf(Buffer.concat(pending));
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
 * low LIST_AVG_BITS bits all set, or after LIST_MAX_ENTRIES entries.
 */
export function listChunks(list: Buffer, entrySize: number, keyByte: number): Chunk[] {
  const mask = (1 << LIST_AVG_BITS) - 1;
  const out: Chunk[] = [];
  let start = 0;
  let entries = 0;
  for (let off = 0; off + entrySize <= list.length; off += entrySize) {
    entries++;
    if ((list[off + keyByte]! & mask) === mask || entries >= LIST_MAX_ENTRIES) {
      out.push(chunkOf(Buffer.from(list.subarray(start, off + entrySize))));
      start = off + entrySize;
      entries = 0;
    }
  }
  if (start < list.length) out.push(chunkOf(Buffer.from(list.subarray(start))));
  return out;
}
