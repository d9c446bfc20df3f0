// Owns SHA-256 of files and streams (node:crypto; ~1 GB/s here, never shelled out).

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

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

/**
 * Copies `src` to `dst` (created exclusively), hashing the bytes written; `sync` makes the copy durable.
 * `onBytes` reports progress.
 */
export async function copyFileHashed(
  src: string,
  dst: string,
  opts: { sync?: boolean; mode?: number; onBytes?: (copied: number) => void } = {},
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  const inFh = await open(src, 'r');
  try {
    const outFh = await open(dst, 'wx', opts.mode ?? 0o600);
    try {
      let size = 0;
      // one buffer for every block: each is written whole before the next is read into it
      const buf = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        const { bytesRead } = await inFh.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += (await outFh.write(chunk, off)).bytesWritten;
        size += bytesRead;
        opts.onBytes?.(size);
      }
      if (opts.sync) await outFh.sync();
      return { size, sha256: hash.digest('hex') };
    } finally {
      await outFh.close();
    }
  } finally {
    await inFh.close();
  }
}

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
