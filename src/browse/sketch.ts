// Owns find's text sketch of one blob (docs/browse.md, "Sketches"): a bitmap of between a half and one
// bit per byte of the blob (a power of two) in which each of its 4-byte grams sets one bit. A blob holds a
// text only if every gram of the text has its bit set, so a sketch that misses one gram of a text (of
// both halves, for a longer one: match.ts textPieces) proves that the blob does not hold it, and find
// skips reading it; a sketch that has them all proves nothing (the blob is read and scanned as
// always). Pure, so sketches are computed on the scan worker threads (scan-run.ts) as well.

import { endianness } from 'node:os';

/** Bytes per gram. */
export const GRAM = 4;
/** A sketch has at most one byte per SKETCH_RATIO blob bytes (its bits: the largest power of two ≤ the blob's size). */
export const SKETCH_RATIO = 8;
const MIN_SKETCH_BITS = 64;
const HASH = 0x9e3779b1;
const BIG_ENDIAN = endianness() === 'BE';

const bitsFor = (raw: number): number => {
  let bits = MIN_SKETCH_BITS;
  while (bits * 2 <= raw) bits *= 2;
  return bits;
};

/** The size of the sketch of a blob of `raw` bytes (a function of the size only). */
export const sketchBytes = (raw: number): number => bitsFor(raw) / 8;

/** The sketch of a blob's bytes: each 4-byte gram (big-endian) hashed to one bit (its top bits). */
export function sketchOf(b: Uint8Array): Uint8Array {
  const bits = bitsFor(b.length);
  const shift = 32 - Math.log2(bits);
  const words = new Int32Array(bits / 32);
  const n = b.length;
  if (n >= GRAM) {
    let g = (b[0]! << 16) | (b[1]! << 8) | b[2]!;
    for (let i = GRAM - 1; i < n; i++) {
      g = (g << 8) | b[i]!;
      const bit = Math.imul(g, HASH) >>> shift;
      words[bit >>> 5]! |= 1 << (bit & 31);
    }
  }
  const out = new Uint8Array(words.buffer);
  if (BIG_ENDIAN) Buffer.from(words.buffer).swap32(); // bytes as on a little-endian machine: one file format
  return out;
}

/** The grams of a text piece (as in sketchOf), or undefined when it is shorter than a gram. */
export function gramsOf(piece: Uint8Array): number[] | undefined {
  if (piece.length < GRAM) return undefined;
  const out = new Set<number>();
  let g = 0;
  for (let i = 0; i < piece.length; i++) {
    g = (g << 8) | piece[i]!;
    if (i >= GRAM - 1) out.add(g);
  }
  return [...out];
}

/**
 * Whether a blob with this sketch (`bytes` bytes of `sketch` from `at`) may hold every gram of `grams`
 * (false: it cannot hold the piece).
 */
export function mayHold(
  sketch: Uint8Array,
  grams: readonly number[],
  at = 0,
  bytes = sketch.length,
): boolean {
  const bits = bytes * 8;
  if (bits < MIN_SKETCH_BITS || (bits & (bits - 1)) !== 0) return true; // not a sketch: proves nothing
  const shift = 32 - Math.log2(bits);
  for (const g of grams) {
    const bit = Math.imul(g, HASH) >>> shift;
    if ((sketch[at + (bit >>> 3)]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}
