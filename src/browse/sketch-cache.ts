// Owns find's cache of blob sketches (sketch.ts), between runs: for each blob of one repository that a
// find has read, its sketch and the page size of the database it starts (0: none; the top bit set when
// that database's text is UTF-16, since version 2), by blob id. Kept at
// <stateRoot>/cache/sketch-<repository id>/ as segment files, each written (renamed into place) by one find with
// the sketches it computed: a header (magic, version, the sketch parameters, the repository id), the
// records, and the SHA-256 of all that. A segment that is unreadable, damaged, of other parameters or
// of another repository is ignored (and removed when the segments are merged); a record is used only
// when its sketch has the size of its blob's (from the repository index), and only to skip reading a
// blob. When a find has loaded MERGE_AT segments, it writes them as one (blobs no longer in the
// repository dropped) and removes those it read, and temporary files left by a find that was killed.
// Failing to write leaves find's answer unchanged.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { tempPathFor } from '../store/atomic.js';
import { GRAM, SKETCH_RATIO, sketchBytes } from './sketch.js';

const MAGIC = Buffer.from('NXSKETCH', 'latin1');
const VERSION = 2;
/** The page-size field's flag for a database whose text is UTF-16 (find reads such a chunk always). */
const UTF16 = 0x8000_0000;
/** magic, version (u32), gram (u8), hash functions (u8), ratio (u16), repository id (32), records (u32). */
const HEADER = MAGIC.length + 4 + 4 + 32 + 4;
const ID_BYTES = 32;
/** id, page size (u32), sketch length (u32). */
const RECORD_HEAD = ID_BYTES + 8;
const SUM = 32;
/** Segments loaded at which a find merges them into one. */
const MERGE_AT = 8;
const SEGMENT = /^seg-[0-9a-z-]+\.bin$/;
const LEFTOVER = /^\.seg-[0-9a-z-]+\.bin\.tmp-[0-9a-f]+$/;
/** Buffers per write call. */
const WRITE_PARTS = 512;

export interface Sketch {
  bits: Uint8Array;
  pageSize: number | undefined;
  utf16?: boolean;
}

/** A kept sketch: `len` bytes of `data` from `at` (a loaded segment's bytes, not copied). */
export interface KeptSketch {
  data: Uint8Array;
  at: number;
  len: number;
  pageSize: number | undefined;
  /** The blob starts a database whose text is UTF-16. */
  utf16?: boolean;
}

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest();

function header(repositoryId: string, records: number): Buffer {
  const h = Buffer.alloc(HEADER);
  MAGIC.copy(h, 0);
  let at = MAGIC.length;
  h.writeUInt32LE(VERSION, at);
  h.writeUInt8(GRAM, at + 4);
  h.writeUInt8(1, at + 5);
  h.writeUInt16LE(SKETCH_RATIO, at + 6);
  at += 8;
  h.write(repositoryId, at, 'hex');
  h.writeUInt32LE(records, at + 32);
  return h;
}

/** The records of a segment, or undefined when it is not a usable segment of this repository. */
function parseSegment(b: Buffer, repositoryId: string): Map<string, KeptSketch> | undefined {
  if (b.length < HEADER + SUM) return undefined;
  const body = b.subarray(0, b.length - SUM);
  if (!digest(body).equals(b.subarray(b.length - SUM))) return undefined;
  const expect = header(repositoryId, 0);
  if (!b.subarray(0, HEADER - 4).equals(expect.subarray(0, HEADER - 4))) return undefined;
  const count = b.readUInt32LE(HEADER - 4);
  const out = new Map<string, KeptSketch>();
  let at = HEADER;
  for (let i = 0; i < count; i++) {
    if (at + RECORD_HEAD > body.length) return undefined;
    const id = body.toString('hex', at, at + ID_BYTES);
    const field = body.readUInt32LE(at + ID_BYTES);
    const pageSize = field & ~UTF16;
    const len = body.readUInt32LE(at + ID_BYTES + 4);
    at += RECORD_HEAD;
    if (at + len > body.length) return undefined;
    out.set(id, {
      data: body,
      at,
      len,
      pageSize: pageSize === 0 ? undefined : pageSize,
      ...(field & UTF16 ? { utf16: true } : {}),
    });
    at += len;
  }
  return at === body.length ? out : undefined;
}

/** A segment's bytes, in parts (written one after another: no copy of all the sketches at once). */
function encodeSegment(repositoryId: string, sketches: ReadonlyMap<string, KeptSketch>): Buffer[] {
  const parts: Buffer[] = [header(repositoryId, sketches.size)];
  for (const [id, s] of sketches) {
    const h = Buffer.alloc(RECORD_HEAD);
    h.write(id, 0, 'hex');
    h.writeUInt32LE(((s.pageSize ?? 0) | (s.utf16 ? UTF16 : 0)) >>> 0, ID_BYTES);
    h.writeUInt32LE(s.len, ID_BYTES + 4);
    parts.push(h, Buffer.from(s.data.buffer, s.data.byteOffset + s.at, s.len));
  }
  const sum = createHash('sha256');
  for (const part of parts) sum.update(part);
  parts.push(sum.digest());
  return parts;
}

/**
 * Writes `parts` to `path` through a temporary file renamed into place (readers see a whole segment or
 * none). Not fsynced: a segment cut short by a crash fails its checksum and is ignored.
 */
async function writeSegment(path: string, parts: Buffer[]): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    for (let i = 0; i < parts.length; i += WRITE_PARTS) await fh.writev(parts.slice(i, i + WRITE_PARTS));
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

export class SketchCache {
  private readonly known = new Map<string, KeptSketch>();
  private readonly added = new Map<string, KeptSketch>();
  private segments: string[] = [];
  /** Temporary files of segments whose writing was cut short (removed when merging). */
  private leftovers: string[] = [];

  private constructor(
    private readonly dir: string,
    private readonly repositoryId: string,
  ) {}

  /** The sketches kept for `repositoryId` (none when there are none or they are unusable). */
  static async open(stateRoot: string, repositoryId: string): Promise<SketchCache> {
    const c = new SketchCache(join(stateRoot, 'cache', `sketch-${repositoryId}`), repositoryId);
    let names: string[];
    try {
      const all = await readdir(c.dir);
      names = all.filter((n) => SEGMENT.test(n));
      c.leftovers = all.filter((n) => LEFTOVER.test(n));
    } catch {
      return c;
    }
    c.segments = names;
    for (const n of names) {
      let b: Buffer;
      try {
        b = await readFile(join(c.dir, n));
      } catch {
        continue;
      }
      const records = parseSegment(b, repositoryId);
      if (records) for (const [id, s] of records) c.known.set(id, s);
    }
    return c;
  }

  /** The sketch of blob `id` of `raw` bytes, if one is kept with the size a blob of that size has. */
  get(id: string, raw: number): KeptSketch | undefined {
    const s = this.added.get(id) ?? this.known.get(id);
    return s && s.len === sketchBytes(raw) ? s : undefined;
  }

  /** Records the sketch of blob `id`, computed from its checked bytes (replacing an unusable one). */
  put(id: string, s: Sketch): void {
    if (this.known.get(id)?.len !== s.bits.length)
      this.added.set(id, {
        data: s.bits,
        at: 0,
        len: s.bits.length,
        pageSize: s.pageSize,
        ...(s.utf16 ? { utf16: true } : {}),
      });
  }

  /**
   * Writes the sketches computed in this run as a new segment, or all of them as one when MERGE_AT
   * segments were loaded (only those of blobs that `live` says are still stored); failures are ignored.
   */
  async save(live: (id: string) => boolean): Promise<void> {
    const merge = this.segments.length >= MERGE_AT;
    if (this.added.size === 0 && !merge) return;
    const out = merge ? new Map([...this.known, ...this.added].filter(([id]) => live(id))) : this.added;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const name = `seg-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.bin`;
      await writeSegment(join(this.dir, name), encodeSegment(this.repositoryId, out));
      if (merge)
        for (const n of [...this.segments, ...this.leftovers])
          await unlink(join(this.dir, n)).catch(() => {});
    } catch {
      // a cache only: find's answer does not depend on it
    }
  }
}
