// Owns finding where a zstd file's second frame starts without decoding the first: the first frame's
// header and its blocks' headers (RFC 8878 §3.1.1) give every length, so a few thousand small reads walk
// ~100 MB (synchronous reads: ref-170's ~1,500 took 61-92 ms as promises, each a thread-pool trip, and
// 9-22 ms so). A bundle writer puts the git bundle's entry at the start of a frame (format/writer.ts);
// verify reads it from there ahead of the stream (verify/early-git.ts). Whatever is found is a guess the
// caller confirms by content; anything unexpected here is simply "no second frame".

import { readSync } from 'node:fs';

const ZSTD_MAGIC = 0xfd2fb528;
/** A walk through more block headers than this gives up (an honest 128 KiB block is ~60 KB compressed). */
const MAX_BLOCKS = 1 << 16;
/** The file is read this much at a time; a header beyond the buffer moves it. */
const WINDOW = 4096;

/**
 * The offset where the file's second zstd frame starts, when its first frame is well formed as far as
 * its headers go and a zstd frame's magic follows it; otherwise undefined.
 */
export function secondFrameOffset(fd: number, fileSize: number): number | undefined {
  const buf = Buffer.alloc(WINDOW);
  let base = 0; // the file offset of buf[0]
  let have = 0; // valid bytes in buf
  /** `n` (≤ 18) bytes at `pos`, reading the file there when they are not in the buffer. */
  const at = (pos: number, n: number): Buffer | undefined => {
    if (pos + n > fileSize) return undefined;
    if (pos < base || pos + n > base + have) {
      base = pos;
      have = readSync(fd, buf, 0, WINDOW, pos);
      if (have < n) return undefined;
    }
    return buf.subarray(pos - base, pos - base + n);
  };
  const head = at(0, 18);
  if (!head || head.readUInt32LE(0) !== ZSTD_MAGIC) return undefined;
  const fhd = head[4]!;
  if (fhd & 0x08) return undefined; // reserved bit
  const singleSegment = (fhd & 0x20) !== 0;
  const fcsFlag = fhd >> 6;
  const dictBytes = [0, 1, 2, 4][fhd & 0x03]!;
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  let pos = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes;
  for (let blocks = 0; ; blocks++) {
    if (blocks >= MAX_BLOCKS) return undefined;
    const h = at(pos, 3);
    if (!h) return undefined;
    const header = h[0]! | (h[1]! << 8) | (h[2]! << 16);
    const type = (header >> 1) & 0x03;
    if (type === 3) return undefined; // reserved block type
    pos += 3 + (type === 1 ? 1 : header >> 3); // an RLE block stores its one byte
    if (header & 0x01) break; // the last block
  }
  if (fhd & 0x04) pos += 4; // the content checksum
  const next = at(pos, 4);
  return next && next.readUInt32LE(0) === ZSTD_MAGIC ? pos : undefined;
}
