// Owns planning a file's chunks without keeping its bytes: the file is read once and cut as storing
// cuts it (chunker.ts), and what comes back is its size, SHA-256 and each chunk's id and length, in
// order. A snapshot plans its database copies on the threads that made them, once their copies are
// done (before the repository lock, which storing needs); content.ts then reads back only the chunks
// the repository does not have.

import { createHash } from 'node:crypto';
import { type ChunkerParams, chunkFile } from './chunker.js';

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

export interface PlanJob {
  path: string;
  params: ChunkerParams;
  sqlite: boolean;
}

/** Reads `job.path` once and returns its chunk plan (its arrays exactly as long as their contents). */
export async function planChunks(job: PlanJob): Promise<ChunkPlan> {
  const whole = createHash('sha256');
  let size = 0;
  let n = 0;
  let ids = Buffer.allocUnsafe(1024 * PLAN_ID_BYTES);
  let lengths = new Uint32Array(1024);
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
      const longer = new Uint32Array(lengths.length * 2);
      longer.set(lengths);
      lengths = longer;
    }
    ids.write(c.id, n * PLAN_ID_BYTES, 'hex');
    lengths[n++] = c.data.length;
  }
  return {
    size,
    sha256: whole.digest('hex'),
    ids: new Uint8Array(ids.subarray(0, n * PLAN_ID_BYTES)), // copies: exactly its ids
    lengths: lengths.slice(0, n),
  };
}
