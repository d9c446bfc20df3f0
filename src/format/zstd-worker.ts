// Owns reading a whole bundle file on a worker thread, from the main thread's side: the worker
// (zstd-worker-main.ts) reads the file, hashes what it reads (the sibling check, over exactly the bytes
// decompressed), decrypts an age payload chunk by authenticated chunk when given its key, and
// decompresses into a ring of shared-memory output slots (zstd-ring.ts). The main thread counts the
// output against the size limit, and parses and hashes it as it arrives: two cores instead of one for
// verify and restore, the file's hashing on the worker's. The worker's
// failures become the same typed errors as those of the main thread's reader (zstd.ts, crypto/age.ts).
// Also which files a read decodes on a thread (OFF_THREAD_MIN_BYTES), and starting that thread ahead of
// the read, idle until the read hands it its input (prestartDecompressionWorker).

import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Worker } from 'node:worker_threads';
import {
  BundleDamagedError,
  EncryptionError,
  NotABundleError,
  nativeModuleError,
  rethrownFrom,
  UnsafeBundleError,
} from '../model/errors.js';
import { startModuleWorker } from '../util/module-worker.js';
import { waitWhile } from '../util/wait-async.js';
import { countDecompressed, type SizeLimit } from './zstd.js';
import {
  allocateRings,
  HEAD,
  OFF_THREAD_MIN_BYTES,
  SLOT_SIZE,
  SLOTS,
  STATE,
  STOP,
  TAIL,
  type WorkerFailure,
  type WorkerInput,
  type WorkerMessage,
} from './zstd-ring.js';

/** The errors the shared decoding rules throw, by code. */
const TYPED = {
  NOT_A_BUNDLE: NotABundleError,
  BUNDLE_DAMAGED: BundleDamagedError,
  UNSAFE_ENTRY: UnsafeBundleError,
  ENCRYPTION: EncryptionError,
} as const;

/** The error the worker's failure stands for: the class and message it was thrown with there. */
function rebuild(f: WorkerFailure): Error {
  const Typed = f.typed ? TYPED[f.code as keyof typeof TYPED] : undefined;
  if (Typed) return rethrownFrom<Error>(Typed, f.message);
  const e = new Error(f.message) as NodeJS.ErrnoException;
  e.code = f.code;
  return nativeModuleError(e) ?? e;
}

export interface OffThreadStream {
  /** Decompressed chunks; each is valid until the next pull. */
  chunks: AsyncGenerator<Buffer, void, undefined>;
  /** SHA-256 and size of the compressed file, once `chunks` has ended. */
  file(): { sha256: string; bytes: number } | undefined;
  /**
   * The worker's exit code once it has ended: by itself, after the end of the file, a failure, or the
   * stop request that `chunks` sends when it ends or is abandoned (0 unless the worker crashed).
   */
  exited: Promise<number>;
}

/** (zstd-ring.ts: the smallest file a whole-bundle read decodes on a worker thread) */
export { OFF_THREAD_MIN_BYTES } from './zstd-ring.js';

/**
 * A decompression worker started ahead of the read that will take it, and whether it ended already;
 * when it was given its input at once (a plain zstd file, `prestartDecompressionFor`), that input and
 * the messages it posted before a read took it.
 */
interface Spare {
  worker: Worker;
  exited: boolean;
  input?: WorkerInput;
  /** The file it was given, as it was then (fileIdentity): a read takes it over only if it still is. */
  identity?: string;
  posted?: WorkerMessage[];
}

/**
 * Which file a path names, and as of when: a file replaced since (renamed over, or written again) has
 * another. A read must not take over a worker that opened the file it replaced (a restore can wait
 * for its lock for a minute, and the `.sha256` sibling is read at the end).
 */
function fileIdentity(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}
let spare: Spare | undefined;

/**
 * Starts the next read's decompression worker now, idle until a read takes it (its input then comes as
 * a message): Node bootstraps every worker from scratch (100-200 ms on stop 28's machine while the
 * main thread loads modules), and that then overlaps what the caller does before it reads (a CLI
 * process's imports). At most one waits; it does not keep the process alive. With `input`, it starts
 * reading and decompressing that file at once, up to its ring's slots (8 MiB), for a read of the same
 * file to take over (a restore checks the manifest meanwhile).
 */
export function prestartDecompressionWorker(input?: WorkerInput): void {
  if (spare && !spare.exited) return;
  const identity = input ? fileIdentity(input.path) : undefined;
  const worker = startModuleWorker(import.meta.url, 'zstd-worker-main', { workerData: input ?? null });
  const s: Spare = { worker, exited: false };
  if (input) {
    s.input = input;
    s.identity = identity;
    const posted: WorkerMessage[] = [];
    s.posted = posted;
    worker.on('message', (m: WorkerMessage) => posted.push(m)); // until a read takes them (workerFor)
  }
  worker.once('exit', () => {
    s.exited = true;
  });
  worker.on('error', () => {}); // an idle worker that failed is not taken (its exit follows)
  worker.unref();
  spare = s;
}

/** The first bytes of every zstd frame (RFC 8878): a file that starts so is read without a key. */
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Prestarts the worker when the file at `path` is one a whole-bundle read decodes on a worker; a plain
 * zstd file (not age-encrypted: its key comes later) is given to it at once.
 */
export function prestartDecompressionFor(path: string): void {
  let size: number;
  const magic = Buffer.alloc(4);
  try {
    size = statSync(path).size;
    if (size >= OFF_THREAD_MIN_BYTES) {
      const fd = openSync(path, 'r');
      try {
        readSync(fd, magic, 0, 4, 0);
      } finally {
        closeSync(fd);
      }
    }
  } catch {
    return; // the read reports it
  }
  if (size < OFF_THREAD_MIN_BYTES) return;
  prestartDecompressionWorker(
    magic.equals(ZSTD_MAGIC) ? { ...allocateRings(), path: resolve(path), decrypt: null } : undefined,
  );
}

/** Tells a worker that was given another input to stop (it ends by itself: never terminate() it). */
function stopSpare(s: Spare): void {
  const C = new Int32Array(s.input!.ctrl);
  Atomics.store(C, STOP, 1);
  Atomics.notify(C, TAIL);
}

/**
 * The worker of the next read of `path` and its input: the prestarted one, taken over when it already
 * reads this file without a key (its input, and the messages it posted so far replayed to
 * `onMessage`), or given this read's input; or a new one.
 */
function workerFor(
  path: string,
  decrypt: WorkerInput['decrypt'],
  onMessage: (m: WorkerMessage) => void,
): { worker: Worker; input: WorkerInput } {
  const s = spare;
  spare = undefined;
  if (
    s &&
    !s.exited &&
    s.input &&
    s.input.path === resolve(path) &&
    decrypt === null &&
    s.identity !== undefined &&
    s.identity === fileIdentity(path)
  ) {
    s.worker.removeAllListeners('message');
    for (const m of s.posted ?? []) onMessage(m);
    s.worker.ref();
    s.worker.on('message', onMessage);
    return { worker: s.worker, input: s.input };
  }
  if (s?.input && !s.exited) stopSpare(s);
  const input: WorkerInput = { ...allocateRings(), path, decrypt };
  let worker: Worker;
  if (s && !s.exited && !s.input) {
    s.worker.postMessage(input);
    worker = s.worker;
  } else worker = startModuleWorker(import.meta.url, 'zstd-worker-main', { workerData: input });
  worker.ref();
  worker.on('message', onMessage);
  return { worker, input };
}

/** Reads, hashes and decompresses the file at `path` on a worker thread. */
export function decompressFileOffThread(
  path: string,
  limit: SizeLimit,
  onRead?: (compressedBytes: number) => void,
  decrypt?: { key: Buffer; offset: number },
): OffThreadStream {
  let file: { sha256: string; bytes: number } | undefined;
  type Ended = Exclude<WorkerMessage, { type: 'read' }>;
  let ended: Ended | undefined;
  let settle!: (m: Ended) => void;
  const endPromise = new Promise<Ended>((resolvePromise) => {
    settle = (m) => {
      ended ??= m;
      resolvePromise(ended);
    };
  });
  const { worker, input } = workerFor(
    path,
    decrypt ? { key: new Uint8Array(decrypt.key), offset: decrypt.offset } : null,
    (m: WorkerMessage) => {
      if (m.type === 'read') onRead?.(m.bytes);
      else {
        if (m.type === 'end') onRead?.(m.bytes);
        settle(m);
      }
    },
  );
  const C = new Int32Array(input.ctrl);
  const lens = new Int32Array(input.lens);
  const out = Buffer.from(input.data);
  /** A failure of the thread itself (it could not start, or it died): the reader must not wait on. */
  const died = (message: string): void => {
    settle({ type: 'error', typed: false, code: 'IO', message });
    Atomics.store(C, STATE, 1);
    Atomics.notify(C, HEAD);
  };
  worker.on('error', (err) => died(err.message));
  const exited = new Promise<number>((resolveExit) => {
    worker.on('exit', (code) => {
      // Node delivers every message the worker posted before 'exit': a worker that ends here without
      // having posted its end died.
      died(`the decompression worker exited with code ${code} before the end of the file`);
      resolveExit(code);
    });
  });

  async function* chunks(): AsyncGenerator<Buffer, void, undefined> {
    try {
      for (;;) {
        const state = Atomics.load(C, STATE);
        const head = Atomics.load(C, HEAD);
        const tail = Atomics.load(C, TAIL);
        if (tail < head) {
          const slot = tail % SLOTS;
          const n = lens[slot]!;
          countDecompressed(limit, n);
          yield out.subarray(slot * SLOT_SIZE, slot * SLOT_SIZE + n);
          Atomics.store(C, TAIL, tail + 1);
          Atomics.notify(C, TAIL);
          continue;
        }
        if (state !== 0) {
          const m = await endPromise;
          if (m.type === 'error') throw rebuild(m);
          file = { sha256: m.sha256, bytes: m.bytes };
          return;
        }
        // The timeout covers the end of the stream, which changes STATE but not HEAD.
        await waitWhile(C, HEAD, head, 20);
      }
    } finally {
      // The worker ends by itself on STOP: it checks it between zstd calls and at least every 200 ms
      // while it waits. Never terminate() it: on Node 22 and 24, a worker terminated inside a
      // zstd-napi call aborts the whole process ("terminate called after throwing 'Napi::Error'").
      Atomics.store(C, STOP, 1);
      Atomics.notify(C, TAIL);
    }
  }

  return {
    chunks: chunks(),
    file: () => file,
    exited,
  };
}
