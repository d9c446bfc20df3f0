// Owns the thread's side of writing a chunked artifact (a database) from a repository snapshot on a
// worker thread (a restore's SQLite threads, through their `call` jobs; content.ts `writeContentOn` is
// the caller's side): the runs of stored blobs it is handed (read by the caller through the backend)
// are opened and checked here — decryption, decompression, each blob's length — appended to the new
// file, and the whole checked against the artifact's size and SHA-256 at the end, with the errors of
// readContent; the caller uses the file only once that check passed. Each blob is not also hashed
// against its id: the artifact's SHA-256 is sealed in the manifest as its chunk ids are, and covers the
// same bytes, so a damaged blob fails that check (`SHA-256 does not match the manifest`); the second
// full pass over every byte was ~4 % of a restore's CPU (stop 58). Files are written with blocking
// calls: this runs on a thread of its own.

import { createHash, type Hash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { hashDiffers, longerThanRecorded, sizeDiffers } from './content-errors.js';
import { newBlobScratch, openStoredBlob } from './pack.js';

/**
 * A run of stored blobs as the caller hands it over (repository.ts StoredRun): its bytes in a slot of
 * the artifact's shared memory (`slot`, `length`), or, larger than a slot, copied (`bytes`).
 */
export interface LaneRun {
  pack: string;
  slot?: number;
  length?: number;
  bytes?: Uint8Array;
  key: Uint8Array | undefined;
  blobs: { id: string; at: number; stored: number; flags: number; raw: number; offset: number }[];
}

/** Bytes gathered before a write (chunks are 16 KiB on average; 1 MiB per thread cost peak RSS). */
const WRITE_BATCH = 256 * 1024;

interface Open {
  fd: number;
  shared: SharedArrayBuffer;
  slotBytes: number;
  what: string;
  expected: number;
  size: number;
  hash: Hash;
  batch: Buffer;
  batched: number;
}

const open = new Map<number, Open>();
let next = 0;
const scratch = newBlobScratch();

const writeAll = (fd: number, b: Buffer): void => {
  for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off);
};

const opened = (token: number): Open => {
  const o = open.get(token);
  if (!o) throw new Error(`internal: no artifact ${token} is open on this thread`);
  return o;
};

/**
 * Creates `path` (exclusive, mode 0600) for an artifact of `size` bytes whose runs come through
 * `shared` (the caller's, in slots of `slotBytes`); returns its token.
 */
export function openArtifact(
  path: string,
  size: number,
  what: string,
  shared: SharedArrayBuffer,
  slotBytes: number,
): number {
  const fd = openSync(path, 'wx', 0o600);
  const token = next++;
  open.set(token, {
    fd,
    shared,
    slotBytes,
    what,
    expected: size,
    size: 0,
    hash: createHash('sha256'),
    batch: Buffer.allocUnsafe(Math.min(WRITE_BATCH, size)),
    batched: 0,
  });
  return token;
}

/** Opens and checks every blob of `run` and appends it to the artifact's file. */
export function writeRun(token: number, run: LaneRun): void {
  const o = opened(token);
  const bytes =
    run.slot !== undefined && run.length !== undefined
      ? Buffer.from(o.shared, run.slot * o.slotBytes, run.length)
      : Buffer.from(run.bytes!.buffer, run.bytes!.byteOffset, run.bytes!.byteLength);
  const key = run.key ? Buffer.from(run.key.buffer, run.key.byteOffset, run.key.byteLength) : undefined;
  for (const b of run.blobs) {
    const data = openStoredBlob(
      bytes.subarray(b.at, b.at + b.stored),
      b,
      key,
      `blob ${b.id} in packs/${run.pack}`,
      scratch,
      false, // the artifact's SHA-256 covers it (above)
    );
    o.size += data.length;
    if (o.size > o.expected) throw longerThanRecorded(o.what);
    o.hash.update(data);
    if (o.batched + data.length > o.batch.length) {
      writeAll(o.fd, o.batch.subarray(0, o.batched));
      o.batched = 0;
    }
    if (data.length > o.batch.length) writeAll(o.fd, data);
    else {
      data.copy(o.batch, o.batched);
      o.batched += data.length;
    }
  }
}

/** Writes what is left, closes the file (durable with `sync`) and checks the size and the SHA-256. */
export function closeArtifact(token: number, sha256: string, sync = false): void {
  const o = opened(token);
  open.delete(token);
  try {
    if (o.batched > 0) writeAll(o.fd, o.batch.subarray(0, o.batched));
    if (sync) fsyncSync(o.fd);
  } finally {
    closeSync(o.fd);
  }
  if (o.size !== o.expected) throw sizeDiffers(o.what, o.size, o.expected);
  if (o.hash.digest('hex') !== sha256) throw hashDiffers(o.what);
}

/** Closes an artifact's file after a failure (the caller removes the staging). */
export function dropArtifact(token: number): void {
  const o = open.get(token);
  if (!o) return;
  open.delete(token);
  closeSync(o.fd);
}
