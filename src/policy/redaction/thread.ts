// Owns the redaction worker thread from the main thread's side: starting it (under tsx in development,
// from dist when installed), sending jobs in order and turning failures into rejections.

import { Worker } from 'node:worker_threads';
import type { RedactionOptions } from './scan.js';
import type { SqliteRedaction } from './sqlite.js';
import type { ThreadJob } from './thread-main.js';

export type FileOutcome =
  | { status: 'too_large' | 'binary'; size: number }
  | { status: 'text'; size: number; counts: Record<string, number>; matches: number };

const fromSource = import.meta.url.endsWith('.ts');
const MAIN_URL = new URL(`./thread-main${fromSource ? '.ts' : '.js'}`, import.meta.url).href;
// Worker threads do not inherit tsx's loader hooks: register them inside the worker first.
const BOOT = fromSource
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(MAIN_URL)}); })`
  : `import(${JSON.stringify(MAIN_URL)})`;

export class RedactionThread {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  constructor(options: RedactionOptions) {
    this.worker = new Worker(BOOT, { eval: true, workerData: options });
    this.worker.on(
      'message',
      (msg: { id: number; value?: unknown; error?: { message: string; code?: string } }) => {
        const w = this.waiting.get(msg.id);
        if (!w) return;
        this.waiting.delete(msg.id);
        if (msg.error) {
          const e = new Error(msg.error.message) as NodeJS.ErrnoException;
          if (msg.error.code) e.code = msg.error.code;
          w.reject(e);
        } else w.resolve(msg.value);
      },
    );
    this.worker.on('error', (err) => this.failAll(err));
    this.worker.on('exit', (code) => this.failAll(new Error(`redaction worker exited with code ${code}`)));
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  private run<T>(job: ThreadJob): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, job });
    });
  }

  sqlite(path: string, artifact: string): Promise<SqliteRedaction> {
    return this.run({ kind: 'sqlite', path, artifact });
  }

  file(path: string, maxBytes: number): Promise<FileOutcome> {
    return this.run({ kind: 'file', path, maxBytes });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
