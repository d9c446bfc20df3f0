// Owns the body of the compression worker thread (compress-thread.ts starts it; nothing else imports
// this): it claims the oldest submitted slot of the ring (compress-ring.ts), compresses it, marks it
// done and wakes the main thread, and waits when there is none, until the main thread sets STOP. It
// ends by itself, never by terminate(): a worker terminated inside a zstd-napi call aborts the process
// on Node 22 and 24.

import { parentPort, workerData } from 'node:worker_threads';
import {
  CLAIMED,
  compressSlot,
  DONE,
  FAILED,
  GEN,
  type Ring,
  ringViews,
  SLOTS,
  STOP,
  STOP_CHECK_MS,
  SUBMITTED,
  seqAt,
  stateAt,
} from './compress-ring.js';

const { ring, level } = workerData as { ring: Ring; level: number };
const v = ringViews(ring);
const C = v.ctrl;

/** The submitted slot with the lowest submission number, or -1. */
function oldestSubmitted(): number {
  let best = -1;
  for (let s = 0; s < SLOTS; s++)
    if (Atomics.load(C, stateAt(s)) === SUBMITTED && (best < 0 || C[seqAt(s)]! < C[seqAt(best)]!)) best = s;
  return best;
}

while (Atomics.load(C, STOP) === 0) {
  const gen = Atomics.load(C, GEN);
  const s = oldestSubmitted();
  if (s < 0) {
    Atomics.wait(C, GEN, gen, STOP_CHECK_MS);
    continue;
  }
  if (Atomics.compareExchange(C, stateAt(s), SUBMITTED, CLAIMED) !== SUBMITTED) continue; // the main thread took it
  try {
    compressSlot(v, s, level);
    Atomics.store(C, stateAt(s), DONE);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ message: String(e?.message ?? e), code: e?.code });
    Atomics.store(C, stateAt(s), FAILED);
  }
  Atomics.notify(C, stateAt(s));
}
