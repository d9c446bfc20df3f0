// Owns the protocol between the decompression worker (zstd-worker-main.ts) and the main thread
// (zstd-worker.ts): the two rings of slots in shared memory, the control words, what the worker is
// given and the messages it posts. Pure: no I/O.

// Output ring (decompressed) and input ring (the file's bytes as read). Fewer, larger slots: every
// hand-over costs a wake-up of the other thread.
export const SLOTS = 8;
export const SLOT_SIZE = 1024 * 1024;
export const RAW_SLOTS = 4;
export const RAW_SIZE = 1024 * 1024;

// Control words (Int32 indexes). The worker alone advances the heads and STATE, the main thread alone
// the tails and STOP. The main thread waits on HEAD for both rings (the worker notifies HEAD when it
// fills a slot of either, and when it ends); the worker waits on the tail of the ring it fills.
/** Output slots filled. */
export const HEAD = 0;
/** Output slots consumed. */
export const TAIL = 1;
/** 0 while the worker runs, 1 once it has posted its end (or failed). */
export const STATE = 2;
/** Set by the main thread: the worker is to end by itself. */
export const STOP = 3;
/** Input slots read. */
export const RAW_HEAD = 4;
/** Input slots hashed (and so free again). */
export const RAW_TAIL = 5;
export const CONTROL_WORDS = 6;

/** The longest a waiting worker goes without looking at STOP. */
export const STOP_CHECK_MS = 200;

/** The shared memory of one read. */
export interface Rings {
  ctrl: SharedArrayBuffer;
  /** Int32 per output slot: the bytes it holds. */
  lens: SharedArrayBuffer;
  data: SharedArrayBuffer;
  /** Int32 per input slot: the bytes it holds. */
  rawLens: SharedArrayBuffer;
  raw: SharedArrayBuffer;
}

export function allocateRings(): Rings {
  return {
    ctrl: new SharedArrayBuffer(CONTROL_WORDS * 4),
    lens: new SharedArrayBuffer(SLOTS * 4),
    data: new SharedArrayBuffer(SLOTS * SLOT_SIZE),
    rawLens: new SharedArrayBuffer(RAW_SLOTS * 4),
    raw: new SharedArrayBuffer(RAW_SLOTS * RAW_SIZE),
  };
}

/** The worker's workerData. */
export interface WorkerInput extends Rings {
  path: string;
  /** For an age file: the payload key and where the STREAM payload starts. */
  decrypt: { key: Uint8Array; offset: number } | null;
}

/** What the worker posts: progress, then exactly one end or error. */
export type WorkerMessage = { type: 'read'; bytes: number } | { type: 'end'; bytes: number } | WorkerFailure;

/**
 * A failure: `typed` when it was one of the library's errors (code and message as thrown), otherwise
 * Node's error code (e.g. ENOENT) and message, which may be a native module's loader error.
 */
export interface WorkerFailure {
  type: 'error';
  typed: boolean;
  code: string;
  message: string;
}
