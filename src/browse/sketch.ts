// Owns find's text sketch of one blob (docs/browse.md, "Sketches"): a bitmap of about one bit per byte
// of the blob (an eighth of its size) in which each of its 4-byte grams sets one bit. A blob holds a
// text only if every gram of the text has its bit set, so a sketch that misses one gram of a text (of
// both halves, for a longer one: match.ts textPieces) proves that the blob does not hold it, and find
// skips reading it; a sketch that has them all proves nothing (the blob is read and scanned as
// always). Pure, so sketches are computed on the scan worker threads (scan-run.ts) as well.

/** Bytes per gram. */
export const GRAM = 4;
/** Blob bytes per sketch byte (one sketch bit per blob byte). */
export const SKETCH_RATIO = 8;
const MIN_SKETCH_BYTES = 8;
const TWO_32 = 4294967296;

/** The size of the sketch of a blob of `raw` bytes (a function of the size only). */
export const sketchBytes = (raw: number): number => Math.max(MIN_SKETCH_BYTES, Math.ceil(raw / SKETCH_RATIO));

/** The bit of a gram (its 4 bytes, big-endian, as an unsigned 32-bit number) in a sketch of `bits` bits. */
const bitOf = (gram: number, bits: number): number =>
  Math.floor(((Math.imul(gram, 0x9e3779b1) >>> 0) * bits) / TWO_32);

/** The sketch of a blob's bytes. */
export function sketchOf(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(sketchBytes(b.length));
  const bits = out.length * 8;
  let g = 0;
  for (let i = 0; i < b.length; i++) {
    g = ((g << 8) | b[i]!) >>> 0;
    if (i < GRAM - 1) continue;
    const bit = bitOf(g, bits);
    out[bit >>> 3]! |= 1 << (bit & 7);
  }
  return out;
}

/** The grams of a text piece (as in sketchOf), or undefined when it is shorter than a gram. */
export function gramsOf(piece: Uint8Array): number[] | undefined {
  if (piece.length < GRAM) return undefined;
  const out = new Set<number>();
  let g = 0;
  for (let i = 0; i < piece.length; i++) {
    g = ((g << 8) | piece[i]!) >>> 0;
    if (i >= GRAM - 1) out.add(g);
  }
  return [...out];
}

/** Whether a blob with this sketch may hold every gram of `grams` (false: it cannot hold the piece). */
export function mayHold(sketch: Uint8Array, grams: readonly number[]): boolean {
  const bits = sketch.length * 8;
  for (const g of grams) {
    const bit = bitOf(g, bits);
    if ((sketch[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}
