// Owns opening and scanning the blobs of one stored run (find): each blob opened and checked against
// its id (repository/pack.ts openStoredBlob: zstd, decryption, SHA-256, the same errors everywhere),
// then scanned as a database chunk (match.ts scanChunk) and/or as a file (its bytes handed back only
// when they may hold the text); and, when asked, its text sketch (sketch.ts) and the page size of the
// database it starts, for find's cache of sketches (sketch-cache.ts). Runs on a scan worker thread (scan-worker-main.ts) or, for a small
// scan, on the main thread (scan-worker.ts).

import { type BlobScratch, openStoredBlob } from '../repository/pack.js';
import { type ChunkScan, databaseHeader, type Matcher, scanChunk } from './match.js';
import { sketchOf } from './sketch.js';

export interface ScanJob {
  pack: string;
  bytes: Uint8Array;
  key: Uint8Array | undefined;
  blobs: { id: string; at: number; stored: number; flags: number; raw: number; offset: number }[];
  /**
   * Per blob: scan it as a database chunk, as a file (bytes back on a candidate), or both; and whether
   * to compute its sketch.
   */
  roles: { chunk: boolean; file: boolean; sketch?: boolean }[];
}

export interface BlobScan {
  chunk?: ChunkScan;
  /** A file's bytes, when they may hold the text (confirmed by the caller). */
  file?: Uint8Array;
  /** Whether the file was scanned and holds no candidate. */
  fileMiss?: boolean;
  /** The blob's sketch, and the page size and text encoding of the database it starts (if it starts one), when asked. */
  sketch?: { bits: Uint8Array; pageSize: number | undefined; utf16?: boolean };
}

export function scanRun(m: Matcher, job: ScanJob, scratch: BlobScratch): BlobScan[] {
  const bytes = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  const key = job.key ? Buffer.from(job.key) : undefined;
  return job.blobs.map((b, i) => {
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
    if (role.sketch) {
      const header = databaseHeader(data);
      r.sketch = {
        bits: sketchOf(data),
        pageSize: header?.pageSize,
        ...(header?.utf16 ? { utf16: true } : {}),
      };
    }
    return r;
  });
}
