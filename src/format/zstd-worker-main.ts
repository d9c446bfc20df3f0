// Owns the body of the decompression worker thread: reads the bundle file, hashes every byte it reads
// (the sibling check covers exactly the bytes decompressed: the file is read once), opens an age STREAM
// payload when given its key (crypto/age.ts's PayloadOpener), and decompresses into the output
// ring (zstd.ts's ZstdDecoder), so the rules and errors are those of the main thread's reader. Posts its
// end or its failure, and ends by itself as soon as the main thread sets STOP: it looks between zstd
// calls and at least every STOP_CHECK_MS while it waits (the main thread never terminates it, see
// zstd-worker.ts). Started by zstd-worker.ts, with its input or ahead of the read (then the input is
// the first message); never imported by anything else.

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PayloadOpener } from '../crypto/age.js';
import { NativeModuleError, SnapshotError } from '../model/errors.js';
import { ZstdDecoder } from './zstd.js';
import {
  HEAD,
  READ_SIZE,
  SLOT_SIZE,
  SLOTS,
  STATE,
  STOP,
  STOP_CHECK_MS,
  TAIL,
  type WorkerFailure,
  type WorkerInput,
  type WorkerMessage,
} from './zstd-ring.js';

// Its input: the workerData it was started with, or, started ahead of the read (prestarted, with none),
// the first message it receives; begin() sets these before anything reads them.
let input: WorkerInput;
let C: Int32Array;
let lens: Int32Array;
let views: Buffer[];
const PROGRESS_EVERY = 4 * 1024 * 1024;

/** Unwinds the worker when the main thread asked it to stop; nothing more is posted. */
class Stopped extends Error {}

const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

function end(m: WorkerMessage): void {
  post(m);
  Atomics.store(C, STATE, 1);
  Atomics.notify(C, HEAD);
}

/** The next free output slot (each decompression step writes into one); waits for one, or STOP. */
function nextOutput(): Buffer {
  const head = Atomics.load(C, HEAD);
  for (;;) {
    if (Atomics.load(C, STOP)) throw new Stopped();
    const tail = Atomics.load(C, TAIL);
    if (head - tail < SLOTS) return views[head % SLOTS]!;
    Atomics.wait(C, TAIL, tail, STOP_CHECK_MS);
  }
}

/** Hands the slot nextOutput() returned, holding `out`, to the main thread. */
function publish(out: Buffer): void {
  const head = Atomics.load(C, HEAD);
  lens[head % SLOTS] = out.length;
  Atomics.store(C, HEAD, head + 1);
  Atomics.notify(C, HEAD);
}

function failure(err: unknown): WorkerFailure {
  // The loader's own error, so that the main thread describes it for its Node.js (nativeModuleError).
  if (err instanceof NativeModuleError && err.cause instanceof Error) err = err.cause;
  if (err instanceof SnapshotError)
    return { type: 'error', typed: true, code: err.code, message: err.message };
  const e = err as NodeJS.ErrnoException | undefined;
  return { type: 'error', typed: false, code: e?.code ?? 'IO', message: String(e?.message ?? e) };
}

function run(fd: number): void {
  const decoder = new ZstdDecoder();
  const opener = input.decrypt ? new PayloadOpener(Buffer.from(input.decrypt.key)) : undefined;
  const decode = (src: Buffer): void => {
    for (const out of decoder.push(src, nextOutput)) publish(out);
  };
  let skip = input.decrypt?.offset ?? 0; // the age header and nonce are hashed, not decrypted
  const hash = createHash('sha256');
  // Decoding copies what it keeps (zstd's window, the opener's partial chunk): one read buffer will do.
  const read = Buffer.allocUnsafe(READ_SIZE);
  let total = 0;
  let reported = 0;
  try {
    for (;;) {
      if (Atomics.load(C, STOP)) throw new Stopped();
      const n = readSync(fd, read, 0, READ_SIZE, null);
      if (n === 0) break;
      total += n;
      if (total - reported >= PROGRESS_EVERY) {
        reported = total;
        post({ type: 'read', bytes: total });
      }
      let raw = read.subarray(0, n);
      hash.update(raw);
      if (!opener) {
        decode(raw);
        continue;
      }
      const skipped = Math.min(skip, raw.length);
      skip -= skipped;
      raw = raw.subarray(skipped);
      for (const plain of opener.push(raw)) decode(plain);
    }
    if (opener) decode(opener.end());
    decoder.end();
    end({ type: 'end', bytes: total, sha256: hash.digest('hex') });
  } finally {
    decoder.release();
  }
}

function begin(given: WorkerInput): void {
  input = given;
  C = new Int32Array(input.ctrl);
  lens = new Int32Array(input.lens);
  views = Array.from({ length: SLOTS }, (_, i) => Buffer.from(input.data, i * SLOT_SIZE, SLOT_SIZE));
  let fd: number | undefined;
  try {
    fd = openSync(input.path, 'r');
    run(fd);
  } catch (err) {
    if (!(err instanceof Stopped)) end(failure(err));
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

if (workerData) begin(workerData as WorkerInput);
else parentPort!.once('message', begin);
