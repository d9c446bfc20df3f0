// Owns the main thread's side of a job-serving worker thread: numbered jobs posted in order, each
// answered by `{id, value}` or `{id, error: {message, code}}`, failures turned into rejections (an
// error or exit of the worker rejects every waiting job and every later one; a native module the
// worker cannot load rejects with NativeModuleError).

import type { TransferListItem, Worker } from 'node:worker_threads';
import { nativeModuleError } from '../model/errors.js';
import { watchWorker } from './heap-settings.js';

type Reply = { id: number; value?: unknown; error?: { message: string; code?: string } };

export class WorkerRpc<Job> {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  /** `name` appears in the error when the worker exits. */
  constructor(
    private readonly worker: Worker,
    name: string,
  ) {
    watchWorker(worker);
    worker.on('message', (msg: Reply) => {
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) {
        const e = new Error(msg.error.message) as NodeJS.ErrnoException;
        if (msg.error.code) e.code = msg.error.code;
        w.reject(nativeModuleError(e) ?? e);
      } else {
        w.resolve(msg.value);
      }
    });
    worker.on('error', (err) => this.failAll(nativeModuleError(err) ?? err));
    worker.on('exit', (code) => this.failAll(new Error(`${name} exited with code ${code}`)));
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  /** Posts `job` (the objects in `transfer` are moved to the worker, not copied) and waits for its answer. */
  run<T>(job: Job, transfer?: readonly TransferListItem[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, job }, transfer);
    });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
