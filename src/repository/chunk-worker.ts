// Owns planning files' chunks (chunk-plan.ts) on worker threads (chunk-worker-main.ts), from the main
// thread's side: a snapshot hands each database copy over as soon as it is made, so reading, cutting and
// hashing the copies (the snapshot's largest cost after the copies when little changed) runs on other
// cores, beside the copies still running and beside the main thread. Each file goes to the thread with
// the fewest bytes waiting. The threads start when the planner is made (with the first file).

import { stat } from 'node:fs/promises';
import { startModuleWorker } from '../util/module-worker.js';
import { WorkerRpc } from '../util/worker-rpc.js';
import type { ChunkPlan, PlanJob } from './chunk-plan.js';
import type { ChunkerParams } from './chunker.js';

export type { ChunkPlan };

export class ChunkPlanner {
  private readonly lanes: Array<{ rpc: WorkerRpc<PlanJob>; waiting: number }>;

  constructor(threads = 2) {
    this.lanes = Array.from({ length: Math.max(1, threads) }, () => ({
      rpc: new WorkerRpc<PlanJob>(
        startModuleWorker(import.meta.url, 'chunk-worker-main', {}),
        'chunk planning worker',
      ),
      waiting: 0,
    }));
  }

  /** The chunk plan of `path` (which must not change until the plan is used), made on a worker thread. */
  async plan(path: string, params: ChunkerParams, sqlite: boolean): Promise<ChunkPlan> {
    const size = (await stat(path)).size;
    const lane = this.lanes.reduce((a, b) => (b.waiting < a.waiting ? b : a));
    lane.waiting += size;
    try {
      return await lane.rpc.run<ChunkPlan>({ path, params, sqlite });
    } finally {
      lane.waiting -= size;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.rpc.close()));
  }
}
