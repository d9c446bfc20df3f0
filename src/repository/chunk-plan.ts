// Owns planning a file's chunks without keeping its bytes: the file is read once and cut as storing
// cuts it (chunker.ts), and what comes back is its size, SHA-256 and each chunk's id and length, in
// order. A snapshot plans each database copy as soon as it is made, while the other copies still run
// (before the repository lock, which storing needs); content.ts then reads back only the chunks the
// repository does not have.

import { createHash } from 'node:crypto';
import { type ChunkerParams, chunkFile } from './chunker.js';

export interface ChunkPlan {
  size: number;
  /** SHA-256 of the whole file, lowercase hex. */
  sha256: string;
  /** The chunks' ids (SHA-256 of each chunk), in file order. */
  ids: string[];
  /** The chunks' byte lengths, in file order (offsets are their running sum). */
  lengths: number[];
}

export interface PlanJob {
  path: string;
  params: ChunkerParams;
  sqlite: boolean;
}

/** Reads `job.path` once and returns its chunk plan. */
export async function planChunks(job: PlanJob): Promise<ChunkPlan> {
  const whole = createHash('sha256');
  let size = 0;
  const ids: string[] = [];
  const lengths: number[] = [];
  for await (const c of chunkFile(job.path, job.params, job.sqlite, { views: true })) {
    whole.update(c.data);
    size += c.data.length;
    ids.push(c.id);
    lengths.push(c.data.length);
  }
  return { size, sha256: whole.digest('hex'), ids, lengths };
}
