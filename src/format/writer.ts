// Owns writing one bundle file: manifest.json first, then every artifact from its staged file, as a
// tar stream → zstd → [age] → SHA-256 tee → `<bundle>.partial` → fsync → no-clobber publish. On any failure
// the partial file is removed and nothing is published. The git bundle's entry starts a zstd frame of its
// own: a reader can find it without decoding what comes before it (format/zstd-frames.ts).

import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { ageEncrypt } from '../crypto/age.js';
import { IoError, SnapshotError } from '../model/errors.js';
import { removeQuietly } from '../store/atomic.js';
import { faultPoint } from '../util/faults.js';
import { publishNoClobber } from '../util/new-file.js';
import { GIT_BUNDLE_PATH, MANIFEST_PATH } from './constants.js';
import { END_OF_ARCHIVE, encodeFileHeader, padding } from './tar.js';
import { type CompressOptions, FRAME_BREAK, OutputBuffers, zstdCompress } from './zstd.js';

export interface PackEntry {
  pathInBundle: string;
  size: number;
  /** The exact bytes to pack, when held in memory… */
  data?: Buffer;
  /** …or the staged file holding them. */
  sourcePath?: string;
}

export interface PackOptions {
  finalPath: string;
  manifestBytes: Buffer;
  entries: readonly PackEntry[];
  mtimeSec: number;
  zstd: CompressOptions;
  /** age recipients: the compressed stream is encrypted to them (the file is then an age file). */
  recipients?: readonly string[];
  /** Called with the number of uncompressed bytes packed so far. */
  onBytes?: (packed: number) => void;
}

export interface PackResult {
  size: number;
  sha256: string;
}

const READ_CHUNK = 1024 * 1024;
const WRITE_AHEAD = 8 * 1024 * 1024;

/**
 * The bundle's tar stream. The staged files are read through one buffer, reused for every read: each
 * block yielded is valid only until the next is asked for (zstdCompress consumes each whole first).
 * With `breakAtGit`, a FRAME_BREAK comes before the git bundle's header.
 */
async function* tarStream(opts: PackOptions, breakAtGit: boolean): AsyncGenerator<Buffer, void, undefined> {
  let read: Buffer | undefined;
  const m = opts.manifestBytes;
  yield encodeFileHeader(MANIFEST_PATH, m.length, opts.mtimeSec);
  yield m;
  yield Buffer.alloc(padding(m.length));
  let packed = m.length;
  for (const entry of opts.entries) {
    if (breakAtGit && entry.pathInBundle === GIT_BUNDLE_PATH) yield FRAME_BREAK;
    yield encodeFileHeader(entry.pathInBundle, entry.size, opts.mtimeSec);
    if (entry.data) {
      if (entry.data.length !== entry.size) throw new IoError(`captured ${entry.pathInBundle} changed size`);
      yield entry.data;
      packed += entry.size;
      opts.onBytes?.(packed);
      yield Buffer.alloc(padding(entry.size));
      continue;
    }
    const fh = await open(entry.sourcePath!, 'r');
    try {
      let left = entry.size;
      while (left > 0) {
        read ??= Buffer.allocUnsafe(READ_CHUNK);
        const buf = read.subarray(0, Math.min(READ_CHUNK, left));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) throw new IoError(`staged file shrank while packing: ${entry.sourcePath}`);
        left -= bytesRead;
        packed += bytesRead;
        yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
        opts.onBytes?.(packed);
      }
      const probe = Buffer.allocUnsafe(1);
      if ((await fh.read(probe, 0, 1, null)).bytesRead !== 0) {
        throw new IoError(`staged file grew while packing: ${entry.sourcePath}`);
      }
    } finally {
      await fh.close();
    }
    yield Buffer.alloc(padding(entry.size));
  }
  yield END_OF_ARCHIVE;
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    faultPoint('pack.write');
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** Packs, compresses and publishes one bundle; returns its size and whole-file SHA-256. */
export async function packBundle(opts: PackOptions): Promise<PackResult> {
  const partial = `${opts.finalPath}.partial`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(partial, 'wx', 0o600);
    const out = fh;
    const hash = createHash('sha256');
    let size = 0;
    // Writes run behind compression (in order, up to WRITE_AHEAD bytes queued) so neither waits for the other.
    let queued = 0;
    let writes: Promise<void> = Promise.resolve();
    // Unencrypted, the written outputs go back to the compressor for its next ones (fresh memory is
    // slow to write into); age's outputs are its own.
    const buffers = new OutputBuffers();
    const encrypted = Boolean(opts.recipients?.length);
    // (inside age a reader cannot seek to the git bundle's frame: one frame, as before)
    const compressed = zstdCompress(tarStream(opts, !encrypted), opts.zstd, buffers);
    const output = encrypted ? ageEncrypt(compressed, opts.recipients!) : compressed;
    for await (const chunk of output) {
      hash.update(chunk);
      size += chunk.length;
      queued += chunk.length;
      const next = writes.then(async () => {
        await writeAll(out, chunk);
        queued -= chunk.length;
        if (!encrypted) buffers.give(chunk);
      });
      next.catch(() => {}); // surfaced by the await below, never an unhandled rejection
      writes = next;
      if (queued > WRITE_AHEAD) await writes;
    }
    await writes;
    faultPoint('pack.fsync');
    await fh.sync();
    await fh.close();
    fh = undefined;
    faultPoint('pack.publish');
    await publishNoClobber(partial, opts.finalPath);
    return { size, sha256: hash.digest('hex') };
  } catch (err) {
    await fh?.close().catch(() => {});
    await removeQuietly(partial);
    if (err instanceof SnapshotError) throw err;
    throw new IoError(`writing bundle ${opts.finalPath}`, err);
  }
}
