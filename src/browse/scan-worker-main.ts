// Owns the body of find's scan worker thread: opens the stored blobs of each run it is sent (zstd,
// decryption, the SHA-256 of each against its id: repository/pack.ts openStoredBlob, the same checks and
// errors as the main thread's reads) and scans them (match.ts): a database chunk's candidate, page size
// and candidate pages; a file's bytes handed back only when they may hold the text. Started by
// scan-worker.ts; never imported by anything else.

import { parentPort, workerData } from 'node:worker_threads';
import { newBlobScratch, openStoredBlob } from '../repository/pack.js';
import { type ChunkScan, matcherOf, type Query, scanChunk } from './match.js';

export interface ScanJob {
  pack: string;
  bytes: Uint8Array;
  key: Uint8Array | undefined;
  blobs: { id: string; at: number; stored: number; flags: number; raw: number; offset: number }[];
  /** Per blob: scan it as a database chunk, as a file (bytes back on a candidate), or both. */
  roles: { chunk: boolean; file: boolean }[];
}

export interface BlobScan {
  chunk?: ChunkScan;
  /** A file's bytes, when they may hold the text (confirmed on the main thread). */
  file?: Uint8Array;
  /** Whether the file was scanned and holds no candidate. */
  fileMiss?: boolean;
}

const m = matcherOf(workerData as Query);
const scratch = newBlobScratch();

parentPort!.on('message', ({ id, job }: { id: number; job: ScanJob }) => {
  try {
    const bytes = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
    const key = job.key ? Buffer.from(job.key) : undefined;
    const out: BlobScan[] = job.blobs.map((b, i) => {
      const data = openStoredBlob(
        bytes.subarray(b.at, b.at + b.stored),
        b,
        key,
        `blob ${b.id} in packs/${job.pack}`,
        scratch,
      );
      const role = job.roles[i]!;
      const r: BlobScan = {};
      if (role.chunk) r.chunk = scanChunk(m, data);
      if (role.file) {
        if (m.maybe(data)) r.file = new Uint8Array(data);
        else r.fileMiss = true;
      }
      return r;
    });
    parentPort!.postMessage({ id, value: out });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: String(e?.message ?? e), code: e?.code } });
  }
});
