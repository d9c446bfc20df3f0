// Owns keeping V8's young generation at its initial size in a process that asks for it (the CLI):
// `--semi-space-growth-factor=1`, set at run time, stops the new space growing past its initial 1 MiB
// semi-spaces. Node puts the process's V8 flags back to their command-line values whenever it starts a
// worker thread, so every worker this package starts is watched and the flag is set again once the
// worker is online (worker-rpc.ts, module-worker.ts, store/lock.ts). Why, with numbers:
// docs/operations.md, "Peak RSS".

import { setFlagsFromString } from 'node:v8';
import type { Worker } from 'node:worker_threads';

const FLAG = '--semi-space-growth-factor=1';
let wanted = false;

/** From now on, in this process: no young-generation growth (the CLI calls it before its work). */
export function keepYoungGenerationSmall(): void {
  wanted = true;
  setFlagsFromString(FLAG);
}

/** Sets the flag again once `worker` has started (its start reset it); returns the worker. */
export function watchWorker(worker: Worker): Worker {
  if (wanted) worker.once('online', () => setFlagsFromString(FLAG));
  return worker;
}
