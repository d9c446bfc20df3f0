// Owns the body of find's scan worker thread: opens, checks and scans the runs it is sent (scan-run.ts)
// and posts the results, or the error (a blob that does not open or check: BundleDamagedError's code
// and message). Started by scan-worker.ts; never imported by anything else.

import { parentPort, workerData } from 'node:worker_threads';
import { newBlobScratch } from '../repository/pack.js';
import { matcherOf, type Query } from './match.js';
import { type ScanJob, scanRun } from './scan-run.js';

const m = matcherOf(workerData as Query);
const scratch = newBlobScratch();

parentPort!.on('message', ({ id, job }: { id: number; job: ScanJob }) => {
  try {
    parentPort!.postMessage({ id, value: scanRun(m, job, scratch) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: String(e?.message ?? e), code: e?.code } });
  }
});
