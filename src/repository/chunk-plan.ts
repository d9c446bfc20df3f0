// Owns planning a file's chunks without keeping its bytes: the file is read once and cut as storing
// cuts it (chunker.ts), and what comes back is its size, SHA-256 and each chunk's id and length, in
// order. A snapshot plans its database copies on the threads that made them, once their copies are
// done (before the repository lock, which storing needs); content.ts then reads back only the chunks
// the repository does not have. The first snapshot into an empty repository, all of whose chunks are
// new, has them packed ahead as well (`pack`): each chunk compressed as a pack compresses it (pack.ts
// compressInto) and written after the one before into a scratch file, so that storing copies those
// bytes into packs without reading, hashing or compressing the database again on the main thread.

import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { zstdBinding } from '../format/zstd.js';
import { type ChunkerParams, chunkFile } from './chunker.js';
import { compressInto } from './pack.js';

/** Bytes of a chunk id in ChunkPlan.ids. */
export const PLAN_ID_BYTES = 32;

export interface ChunkPlan {
  size: number;
  /** SHA-256 of the whole file, lowercase hex. */
  sha256: string;
  /**
   * The chunks' ids (SHA-256 of each chunk), in file order: 32 bytes each, side by side (a plan made on
   * a worker thread arrives as a Uint8Array; ~2.5× smaller than hex strings for a large database).
   */
  ids: Uint8Array;
  /** The chunks' byte lengths, in file order (offsets are their running sum). */
  lengths: Uint32Array;
}

/** A plan whose chunks were packed ahead (PlanJob `pack`). */
export interface PackedPlan extends ChunkPlan {
  /** The scratch file holding every chunk's stored bytes, in file order (the caller removes it). */
  packedPath: string;
  /** Each chunk's length in that file. */
  stored: Uint32Array;
  /** Each chunk's pack flags (pack.ts FLAG_RAW: stored as it is, zstd did not make it smaller). */
  flags: Uint8Array;
}

export interface PlanJob {
  path: string;
  params: ChunkerParams;
  sqlite: boolean;
  /**
   * Pack the chunks ahead: compressed at `level` into `path`, a new file (created here, mode 0600).
   * Once `stop[0]` is set (by the caller's thread), the packing ends at the next chunk with an error.
   */
  pack?: { level: number; path: string; stop?: Int32Array };
}

/** Whether a plan's chunks were packed ahead. */
export const isPacked = (plan: ChunkPlan): plan is PackedPlan => 'packedPath' in plan;

/** Bytes of packed chunks gathered before they are written to the scratch file. */
const PACKED_WRITE = 1024 * 1024;

/** The packed chunks of one plan being written: compressed into a buffer, written out 1 MiB at a time. */
class PackedOut {
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(2 * PACKED_WRITE);
  private used = 0;

  constructor(
    private readonly path: string,
    private readonly level: number,
  ) {
    this.fd = openSync(path, 'wx', 0o600);
  }

  /** Compresses `data` after the chunks before it; returns its stored length and flags. */
  add(data: Buffer): { n: number; flags: number } {
    const bound = zstdBinding().compressBound(data.length);
    if (this.used + bound > this.buf.length) {
      this.flush();
      if (bound > this.buf.length) this.buf = Buffer.allocUnsafe(bound);
    }
    const c = compressInto(this.buf.subarray(this.used, this.used + bound), data, this.level);
    this.used += c.n;
    if (this.used >= PACKED_WRITE) this.flush();
    return c;
  }

  flush(): void {
    try {
      for (let at = 0; at < this.used; ) at += writeSync(this.fd, this.buf, at, this.used - at);
    } catch (err) {
      // the file it was writing named (the errno kept: ENOSPC)
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(new Error(`writing ${this.path}: ${e.message}`), { code: e.code });
    }
    this.used = 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/**
 * Reads `job.path` once and returns its chunk plan (its arrays exactly as long as their contents),
 * with its chunks packed ahead when the job asks for it.
 */
export async function planChunks(job: PlanJob): Promise<ChunkPlan | PackedPlan> {
  const whole = createHash('sha256');
  let size = 0;
  let n = 0;
  let ids = Buffer.allocUnsafe(1024 * PLAN_ID_BYTES);
  let lengths = new Uint32Array(1024);
  let stored = new Uint32Array(job.pack ? 1024 : 0);
  let flags = new Uint8Array(job.pack ? 1024 : 0);
  const out = job.pack ? new PackedOut(job.pack.path, job.pack.level) : undefined;
  try {
    // 1 MiB reads: a plan runs on each copy thread at once, each with its own read buffer; read
    // synchronously, as the thread has nothing else to do meanwhile
    for await (const c of chunkFile(job.path, job.params, job.sqlite, {
      views: true,
      readBlock: 1 << 20,
      syncReads: true,
    })) {
      whole.update(c.data);
      size += c.data.length;
      if (n === lengths.length) {
        const more = Buffer.allocUnsafe(ids.length * 2);
        ids.copy(more);
        ids = more;
        lengths = grown(lengths);
        if (out) {
          stored = grown(stored);
          flags = grown(flags);
        }
      }
      ids.write(c.id, n * PLAN_ID_BYTES, 'hex');
      if (job.pack?.stop && Atomics.load(job.pack.stop, 0) !== 0) throw new Error('packing stopped');
      if (out) {
        const p = out.add(c.data);
        stored[n] = p.n;
        flags[n] = p.flags;
      }
      lengths[n++] = c.data.length;
    }
    out?.flush();
  } finally {
    out?.close();
  }
  const plan: ChunkPlan = {
    size,
    sha256: whole.digest('hex'),
    ids: new Uint8Array(ids.subarray(0, n * PLAN_ID_BYTES)), // copies: exactly its ids
    lengths: lengths.slice(0, n),
  };
  return job.pack
    ? { ...plan, packedPath: job.pack.path, stored: stored.slice(0, n), flags: flags.slice(0, n) }
    : plan;
}

/** A copy of `a` twice as long (its contents first). */
function grown<T extends Uint32Array | Uint8Array>(a: T): T {
  const longer = new (a.constructor as new (n: number) => T)(a.length * 2);
  longer.set(a);
  return longer;
}
