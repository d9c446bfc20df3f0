// Owns the protocol between a BlobWriter's compression thread (compress-thread-main.ts) and the main
// thread (compress-thread.ts): SLOTS slots of shared memory, each a batch of blobs laid end to end with
// room for their compressed bytes; a state word per slot that either thread claims with a
// compare-and-swap, so a submitted batch is compressed by whichever thread gets to it first; and the
// compression of one batch, the same for both threads (compressInto, as PackBuilder.add does). Pure: no
// I/O.

import { zstdBinding } from '../format/zstd.js';
import { compressInto } from './pack.js';

export const SLOTS = 4;
/** Bytes of blobs in one slot; a larger blob is compressed by the main thread on its own. */
export const SLOT_INPUT = 256 * 1024;
/** Room for a slot's compressed blobs: a batch closes before the sum of its blobs' bounds exceeds it. */
export const SLOT_OUTPUT = 384 * 1024;
/** Blobs in one slot, at most. */
export const SLOT_BLOBS = 1024;

// Slot states. The main thread moves FREE → FILLING → SUBMITTED and DONE → FREE; either thread moves
// SUBMITTED → CLAIMED (compare-and-swap: one wins) and then CLAIMED → DONE (or FAILED).
export const FREE = 0;
export const FILLING = 1;
export const SUBMITTED = 2;
export const CLAIMED = 3;
export const DONE = 4;
export const FAILED = 5;

// Control words (Int32 indexes).
/** Advanced (and notified) by the main thread at every submission and at STOP: the worker waits on it. */
export const GEN = 0;
/** Set by the main thread: the worker is to end by itself. */
export const STOP = 1;
const SLOT_WORDS = 3;
/** A slot's state. */
export const stateAt = (slot: number): number => 2 + slot * SLOT_WORDS;
/** A slot's submission number (the worker takes the oldest submitted slot, the main thread the newest). */
export const seqAt = (slot: number): number => 3 + slot * SLOT_WORDS;
/** How many blobs a slot holds. */
export const countAt = (slot: number): number => 4 + slot * SLOT_WORDS;
const CONTROL_WORDS = 2 + SLOTS * SLOT_WORDS;

/** The longest a waiting worker goes without looking at STOP. */
export const STOP_CHECK_MS = 100;

export interface Ring {
  ctrl: SharedArrayBuffer;
  /** Uint32 per blob: its length (filled by the main thread), then its compressed length. */
  lengths: SharedArrayBuffer;
  sizes: SharedArrayBuffer;
  flags: SharedArrayBuffer;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
}

export function allocateRing(): Ring {
  return {
    ctrl: new SharedArrayBuffer(CONTROL_WORDS * 4),
    lengths: new SharedArrayBuffer(SLOTS * SLOT_BLOBS * 4),
    sizes: new SharedArrayBuffer(SLOTS * SLOT_BLOBS * 4),
    flags: new SharedArrayBuffer(SLOTS * SLOT_BLOBS),
    input: new SharedArrayBuffer(SLOTS * SLOT_INPUT),
    output: new SharedArrayBuffer(SLOTS * SLOT_OUTPUT),
  };
}

/** Views of a ring, one per thread. */
export interface RingViews {
  ctrl: Int32Array;
  lengths: Uint32Array;
  sizes: Uint32Array;
  flags: Uint8Array;
  input: Buffer;
  output: Buffer;
}

export function ringViews(r: Ring): RingViews {
  return {
    ctrl: new Int32Array(r.ctrl),
    lengths: new Uint32Array(r.lengths),
    sizes: new Uint32Array(r.sizes),
    flags: new Uint8Array(r.flags),
    input: Buffer.from(r.input),
    output: Buffer.from(r.output),
  };
}

/** A slot's input and output bytes. */
export const slotInput = (v: RingViews, slot: number): Buffer =>
  v.input.subarray(slot * SLOT_INPUT, (slot + 1) * SLOT_INPUT);
export const slotOutput = (v: RingViews, slot: number): Buffer =>
  v.output.subarray(slot * SLOT_OUTPUT, (slot + 1) * SLOT_OUTPUT);

/**
 * Compresses slot `slot` of a ring: its blobs (their count in the control words, their lengths in
 * `lengths`), laid end to end in its input, into its output end to end, each one's stored length and
 * flags in `sizes` and `flags`. The output has room for the sum of their compressBound.
 */
export function compressSlot(v: RingViews, slot: number, level: number): void {
  const { compressBound } = zstdBinding();
  const src = slotInput(v, slot);
  const dst = slotOutput(v, slot);
  const first = slot * SLOT_BLOBS;
  const n = Atomics.load(v.ctrl, countAt(slot));
  let from = 0;
  let at = 0;
  for (let i = first; i < first + n; i++) {
    const len = v.lengths[i]!;
    const c = compressInto(dst.subarray(at, at + compressBound(len)), src.subarray(from, from + len), level);
    v.sizes[i] = c.n;
    v.flags[i] = c.flags;
    from += len;
    at += c.n;
  }
}
