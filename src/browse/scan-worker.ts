// Owns running find's scan of repository blobs (scan-run.ts) on worker threads (scan-worker-main.ts),
// so that opening and scanning every distinct chunk (zstd, SHA-256, the search) runs beside the main
// thread, which reads the manifests and the packs meanwhile. The workers start with the first scan of
// at least INLINE_BELOW bytes; smaller scans (a small agent) run on the main thread, without the
// workers' start-up. Runs are read here (the repository's backend) and handed over; results come back
// in order. A blob that does not open or check is the same BundleDamagedError either way.

import { BundleDamagedError, rethrownFrom } from '../model/errors.js';
import { newBlobScratch } from '../repository/pack.js';
import type { Repository, StoredRun } from '../repository/repository.js';
import { startModuleWorker } from '../util/module-worker.js';
import { WorkerRpc } from '../util/worker-rpc.js';
import { matcherOf, type Query } from './match.js';
import { type BlobScan, type ScanJob, scanRun } from './scan-run.js';

/** Runs handed over at once (per worker): enough to keep the workers busy while the main thread reads. */
const IN_FLIGHT = 6;
/** A scan of fewer bytes (uncompressed) than this, before the workers are started, runs on the main thread. */
const INLINE_BELOW = 16 * 1024 * 1024;

export type { BlobScan };

export interface ScanRole {
  chunk: boolean;
  file: boolean;
  /** Compute the blob's sketch too (BlobScan.sketch). */
  sketch?: boolean;
}

export class ScanWorker {
  private rpcs: WorkerRpc<ScanJob>[] = [];
  private next = 0;
  private readonly scratch = newBlobScratch();

  /**
   * Up to `threads` workers (runs are handed out in turn; results come back in order), started by the
   * first scan of at least `inlineBelow` bytes.
   */
  constructor(
    private readonly query: Query,
    private readonly threads = 1,
    private readonly inlineBelow = INLINE_BELOW,
  ) {}

  private start(): void {
    this.rpcs = Array.from(
      { length: Math.max(1, this.threads) },
      () =>
        new WorkerRpc<ScanJob>(
          startModuleWorker(import.meta.url, 'scan-worker-main', {
            workerData: { text: this.query.text, regex: this.query.regex },
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
      if (e.code === 'BUNDLE_DAMAGED') throw rethrownFrom(BundleDamagedError, e.message);
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
    if (this.rpcs.length === 0) {
      let raw = 0;
      for (const id of ids) raw += repo.index.get(id)?.raw ?? 0;
      if (raw < this.inlineBelow) {
        const m = matcherOf(this.query);
        for await (const run of repo.storedRuns(ids, read.ahead, read.window, read.gap)) {
          const job = {
            pack: run.pack,
            bytes: run.bytes,
            key: run.key,
            blobs: run.blobs,
            roles: [] as ScanRole[],
          };
          job.roles = run.blobs.map((b) => roleOf(b.id));
          const out = scanRun(m, job, this.scratch);
          for (const [i, b] of run.blobs.entries()) each(b.id, b.raw, out[i]!);
        }
        return;
      }
      this.start();
    }
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
