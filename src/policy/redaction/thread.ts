// Owns the redaction worker thread from the main thread's side: starting it (under tsx in development,
// from dist when installed), sending jobs in order and turning failures into rejections.

import { startModuleWorker } from '../../util/module-worker.js';
import { WorkerRpc } from '../../util/worker-rpc.js';
import type { RedactionOptions } from './scan.js';
import type { SqliteRedaction } from './sqlite.js';
import type { ThreadJob } from './thread-main.js';

export type FileOutcome =
  | { status: 'too_large' | 'binary'; size: number }
  | { status: 'text'; size: number; counts: Record<string, number>; matches: number };

export class RedactionThread {
  private readonly rpc: WorkerRpc<ThreadJob>;

  constructor(options: RedactionOptions) {
    this.rpc = new WorkerRpc(
      startModuleWorker(import.meta.url, 'thread-main', { workerData: options }),
      'redaction worker',
    );
  }

  private run<T>(job: ThreadJob): Promise<T> {
    return this.rpc.run<T>(job);
  }

  sqlite(path: string, artifact: string): Promise<SqliteRedaction> {
    return this.run({ kind: 'sqlite', path, artifact });
  }

  file(path: string, maxBytes: number): Promise<FileOutcome> {
    return this.run({ kind: 'file', path, maxBytes });
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}
