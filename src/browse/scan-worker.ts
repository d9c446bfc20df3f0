// Owns running find's scan of repository blobs on worker threads (scan-worker-main.ts), so that
// opening and scanning every distinct chunk (zstd, SHA-256, the search) runs beside the main thread,
// which reads the manifests and the packs meanwhile (one worker per core, at most two). Runs are read here (the repository's backend)
// and handed over; results come back in order. A blob that does not open or check is the same
// BundleDamagedError as on the main thread.

import { BundleDamagedError } from '../model/errors.js';
import type { Repository, StoredRun } from '../repository/repository.js';
import { startModuleWorker } from '../util/module-worker.js';
import { WorkerRpc } from '../util/worker-rpc.js';
import type { Query } from './match.js';
import type { BlobScan, ScanJob } from './scan-worker-main.js';

/** Runs handed over at once (per worker): enough to keep the workers busy while the main thread reads. */
const IN_FLIGHT = 6;

export type { BlobScan };

export interface ScanRole {
  chunk: boolean;
  file: boolean;
}

export class ScanWorker {
  private readonly rpcs: WorkerRpc<ScanJob>[];
  private next = 0;

  /** `threads` workers (runs are handed out in turn; results come back in order). */
  constructor(query: Query, threads = 1) {
    this.rpcs = Array.from(
      { length: Math.max(1, threads) },
      () =>
        new WorkerRpc<ScanJob>(
          startModuleWorker(import.meta.url, 'scan-worker-main', {
            workerData: { text: query.text, regex: query.regex },
          }),
          'find scan worker',
        ),
    );
  }

  private async job(run: StoredRun, roles: ScanRole[]): Promise<BlobScan[]> {
    // hand the run's bytes over without a copy when they are a buffer of their own
    const own = run.bytes.byteOffset === 0 && run.bytes.byteLength === run.bytes.buffer.byteLength;
    const bytes = own ? new Uint8Array(run.bytes.buffer) : new Uint8Array(run.bytes);
    try {
      const rpc = this.rpcs[this.next++ % this.rpcs.length]!;
      return await rpc.run<BlobScan[]>({ pack: run.pack, bytes, key: run.key, blobs: run.blobs, roles }, [
        bytes.buffer as ArrayBuffer,
      ]);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'BUNDLE_DAMAGED') throw new BundleDamagedError(e.message);
      throw err;
    }
  }

  /**
   * Scans the blobs `ids` (in this order: pack order reads forward) with their roles, calling `each`
   * for every blob in order.
   */
  async scan(
    repo: Repository,
    ids: readonly string[],
    roleOf: (id: string) => ScanRole,
    read: { ahead: number; window: number; gap: number },
    each: (id: string, raw: number, r: BlobScan) => void,
  ): Promise<void> {
    const pending: Promise<{ run: StoredRun; out: BlobScan[] }>[] = [];
    const settle = async () => {
      const { run, out } = await pending.shift()!;
      for (const [i, b] of run.blobs.entries()) each(b.id, b.raw, out[i]!);
    };
    try {
      for await (const run of repo.storedRuns(ids, read.ahead, read.window, read.gap)) {
        const p = this.job(
          run,
          run.blobs.map((b) => roleOf(b.id)),
        ).then((out) => ({ run, out }));
        p.catch(() => {}); // awaited in order below
        pending.push(p);
        if (pending.length >= IN_FLIGHT * this.rpcs.length) await settle();
      }
      while (pending.length > 0) await settle();
    } finally {
      pending.length = 0;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.rpcs.map((r) => r.close()));
  }
}
