// Owns the body of the chunk-planning worker thread: plans the files it is sent (chunk-plan.ts) and
// posts each plan, or the error. Started by chunk-worker.ts; never imported by anything else.

import { parentPort } from 'node:worker_threads';
import { type PlanJob, planChunks } from './chunk-plan.js';

parentPort!.on('message', ({ id, job }: { id: number; job: PlanJob }) => {
  planChunks(job).then(
    (value) => parentPort!.postMessage({ id, value }),
    (err: unknown) => {
      const e = err as NodeJS.ErrnoException;
      parentPort!.postMessage({ id, error: { message: String(e?.message ?? e), code: e?.code } });
    },
  );
});
