// Owns SHA-256 of files and streams (node:crypto; ~1 GB/s here, never shelled out).

import { createHash } from 'node:crypto';
import { read } from 'node:fs';
import { open } from 'node:fs/promises';
import { onFile } from '../model/errors.js';

const CHUNK = 1024 * 1024;

export async function sha256File(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { size, sha256: hash.digest('hex') };
}

export async function sha256Stream(chunks: AsyncIterable<Buffer>): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of chunks) {
    hash.update(c);
    size += c.length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** Options of copyFileHashed and copyFdHashed. */
export interface CopyOptions {
  /** Makes the copy durable. */
  sync?: boolean;
  mode?: number;
  /** Reports progress. */
  onBytes?: (copied: number) => void;
}

/**
 * Copies `src` to `dst` (created exclusively), hashing the bytes written; `sync` makes the copy durable.
 * `onBytes` reports progress.
 */
export async function copyFileHashed(
  src: string,
  dst: string,
  opts: CopyOptions = {},
): Promise<{ size: number; sha256: string }> {
  const inFh = await open(src, 'r');
  try {
    return await copyHashed((buf) => inFh.read(buf, 0, buf.length, null).then((r) => r.bytesRead), dst, opts);
  } finally {
    await inFh.close();
  }
}

/**
 * copyFileHashed from a file already open (`fd`, read from its current offset; not closed here): the
 * bytes of the file that was opened and checked, never of whatever a path names by the time it is read
 * (capture/memdir.ts).
 */
export function copyFdHashed(
  fd: number,
  dst: string,
  opts: CopyOptions = {},
): Promise<{ size: number; sha256: string }> {
  const readFd = (buf: Buffer) =>
    new Promise<number>((resolveRead, reject) =>
      read(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolveRead(n))),
    );
  return copyHashed(readFd, dst, opts);
}

async function copyHashed(
  readInto: (buf: Buffer) => Promise<number>,
  dst: string,
  opts: CopyOptions,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  const outFh = await open(dst, 'wx', opts.mode ?? 0o600);
  try {
    let size = 0;
    // one buffer for every block: each is written whole before the next is read into it
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const bytesRead = await readInto(buf);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      hash.update(chunk);
      let off = 0;
      try {
        while (off < chunk.length) off += (await outFh.write(chunk, off)).bytesWritten;
      } catch (err) {
        throw onFile(err, dst); // (a write names no file: the copy, stop 54)
      }
      size += bytesRead;
      opts.onBytes?.(size);
    }
    if (opts.sync) await outFh.sync().catch((err: unknown) => Promise.reject(onFile(err, dst)));
    return { size, sha256: hash.digest('hex') };
  } finally {
    await outFh.close();
  }
}

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
