// Owns the body of a SQLite worker thread: runs the jobs of jobs.ts, hashes files, and calls a function
// of another package module on what it copied (a snapshot plans a copy's chunks there, beside the main
// thread; the module is loaded on its first call), one job at a time in the order posted. Started by
// worker.ts; never imported by anything else.

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parentPort } from 'node:worker_threads';
import { sha256File } from '../util/hash.js';
import type { PackageModule } from '../util/module-worker.js';
import { copyDatabase, integrityCheck } from './jobs.js';

export type ThreadJob =
  | { kind: 'copy'; src: string; dst: string; busyTimeoutMs: number }
  | { kind: 'hash'; path: string }
  | { kind: 'integrity'; path: string; maxErrors: number }
  | { kind: 'call'; module: PackageModule; fn: string; args: unknown[] };

type Exports = Record<string, (...args: unknown[]) => unknown>;
const modules = new Map<string, Exports>();

/**
 * `module`, loaded once: TypeScript source through tsx's require hook (which the thread registered
 * before loading this module), compiled ESM by import().
 */
async function load(module: PackageModule): Promise<Exports> {
  let m = modules.get(module.path);
  if (m === undefined) {
    m =
      module.tsx !== undefined
        ? (createRequire(module.path)(module.path) as Exports)
        : ((await import(pathToFileURL(module.path).href)) as Exports);
    modules.set(module.path, m);
  }
  return m;
}

async function run(job: ThreadJob): Promise<unknown> {
  switch (job.kind) {
    case 'copy':
      return copyDatabase(job.src, job.dst, job.busyTimeoutMs);
    case 'hash':
      return sha256File(job.path);
    case 'integrity':
      return integrityCheck(job.path, job.maxErrors);
    case 'call':
      return (await load(job.module))[job.fn]!(...job.args);
  }
}

async function serve({ id, job }: { id: number; job: ThreadJob }): Promise<void> {
  try {
    parentPort!.postMessage({ id, value: await run(job) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: String(e?.message ?? e), code: e?.code } });
  }
}

// one job at a time: a call may await, and the next job waits for it
let queue = Promise.resolve();
parentPort!.on('message', (msg: { id: number; job: ThreadJob }) => {
  queue = queue.then(() => serve(msg));
});
