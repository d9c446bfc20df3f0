// Owns planning a file's chunks without keeping its bytes: the file is read once and cut as storing
// cuts it (chunker.ts), and what comes back is its size, SHA-256 and each chunk's id and length, in
// order. A snapshot plans its database copies on the threads that made them, once their copies are
// done (before the repository lock, which storing needs); content.ts then reads back only the chunks
// the repository does not have. The first snapshot into an empty repository, all of whose chunks are
// new, has them packed ahead as well (`pack`): written into pack files on the thread (pack-file.ts),
// which storing publishes as they are, without reading, hashing or compressing those bytes again on
// the main thread.

import { createHash } from 'node:crypto';
import { type ChunkerParams, chunkFile } from './chunker.js';
import { type AheadPack, AheadPacker, type AheadPackJob } from './pack-file.js';

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
  /** The pack files holding every distinct chunk, in the order written (the caller publishes or removes them). */
  packs: AheadPack[];
}

export interface PlanJob {
  path: string;
  params: ChunkerParams;
  sqlite: boolean;
  /**
   * Pack the chunks ahead, into new pack files (pack-file.ts). Once `stop[0]` is set (by the caller's
   * thread), the packing ends at the next chunk with an error; on any error the files are removed.
   */
  pack?: AheadPackJob & { stop?: Int32Array };
}

/** Whether a plan's chunks were packed ahead. */
export const isPacked = (plan: ChunkPlan): plan is PackedPlan => 'packs' in plan;

/**
 * Reads `job.path` once and returns its chunk plan (its arrays exactly as long as their contents),
 * with its chunks packed ahead when the job asks for it.
 */
export async function planChunks(job: PlanJob): Promise<ChunkPlan | PackedPlan> {
  const whole = createHash('sha256');
  let size = 0;
  let n = 0;
  let ids = Buffer.allocUnsafe(1024 * PLAN_ID_BYTES);
  let lengths: Uint32Array = new Uint32Array(1024);
  const out = job.pack ? new AheadPacker(job.pack) : undefined;
  let packs: AheadPack[] = [];
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
      }
      ids.write(c.id, n * PLAN_ID_BYTES, 'hex');
      if (job.pack?.stop && Atomics.load(job.pack.stop, 0) !== 0) throw new Error('packing stopped');
      out?.add(c.id, c.data);
      lengths[n++] = c.data.length;
    }
    if (out) packs = out.finish();
  } catch (err) {
    out?.abort();
    throw err;
  }
  const plan: ChunkPlan = {
    size,
    sha256: whole.digest('hex'),
    ids: new Uint8Array(ids.subarray(0, n * PLAN_ID_BYTES)), // copies: exactly its ids
    lengths: lengths.slice(0, n),
  };
  return job.pack ? { ...plan, packs } : plan;
}

/** A copy of `a` twice as long (its contents first). */
function grown(a: Uint32Array): Uint32Array {
  const longer = new Uint32Array(a.length * 2);
  longer.set(a);
  return longer;
}
