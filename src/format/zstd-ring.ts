// Owns the protocol between the decompression worker (zstd-worker-main.ts) and the main thread
// (zstd-worker.ts): which files go through it, the two rings of slots in shared memory, the control
// words, what the worker is given and the messages it posts. Pure: no I/O, nothing imported (the CLI
// reads OFF_THREAD_MIN_BYTES before it loads anything else, cli/early-read.ts).

/**
 * The smallest file a whole-bundle read decodes on a worker thread. Starting the thread costs ~30-40 ms
 * (its isolate and Node's bootstrap, the zstd binding loaded again) before the first byte; this thread
 * decompresses ~4 MiB in that time. A smaller bundle (a small agent's, a pre-tool snapshot's) is
 * decoded here, where it is done before a worker would have started.
 */
export const OFF_THREAD_MIN_BYTES = 4 * 1024 * 1024;

// The output ring (decompressed bytes). Fewer, larger slots: every hand-over costs a wake-up of the
// other thread. The file's bytes as read stay on the worker, which hashes them itself.
export const SLOTS = 8;
export const SLOT_SIZE = 1024 * 1024;
/** The worker's read size. */
export const READ_SIZE = 1024 * 1024;

// Control words (Int32 indexes). The worker alone advances the heads and STATE, the main thread alone
// the tail and STOP. The main thread waits on HEAD (the worker notifies HEAD when it fills a slot, and
// when it ends); the worker waits on TAIL.
/** Output slots filled. */
export const HEAD = 0;
/** Output slots consumed. */
export const TAIL = 1;
/** 0 while the worker runs, 1 once it has posted its end (or failed). */
export const STATE = 2;
/** Set by the main thread: the worker is to end by itself. */
export const STOP = 3;
export const CONTROL_WORDS = 4;

/** The longest a waiting worker goes without looking at STOP. */
export const STOP_CHECK_MS = 200;

/** The shared memory of one read. */
export interface Rings {
  ctrl: SharedArrayBuffer;
  /** Int32 per output slot: the bytes it holds. */
  lens: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

export function allocateRings(): Rings {
  return {
    ctrl: new SharedArrayBuffer(CONTROL_WORDS * 4),
    lens: new SharedArrayBuffer(SLOTS * 4),
    data: new SharedArrayBuffer(SLOTS * SLOT_SIZE),
  };
}

/** The worker's workerData. */
export interface WorkerInput extends Rings {
  path: string;
  /** For an age file: the payload key and where the STREAM payload starts. */
  decrypt: { key: Uint8Array; offset: number } | null;
}

/**
 * What the worker posts: progress, then exactly one end (the file's size and the SHA-256 of exactly the
 * bytes it decompressed) or error.
 */
export type WorkerMessage =
  | { type: 'read'; bytes: number }
  | { type: 'end'; bytes: number; sha256: string }
  | WorkerFailure;

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
