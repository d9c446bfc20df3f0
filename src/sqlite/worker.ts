// Owns running SQLite work off the event loop: a worker thread that makes transactionally consistent
// copies (`VACUUM INTO`, one statement, never the stepwise backup that livelocks under a writer),
// hashes files, runs `PRAGMA integrity_check`, and calls a function of another package module on what
// it copied (a snapshot plans a copy's chunks there, beside the main thread; the module is loaded on
// its first call). Jobs run one at a time, in the order posted. Blocking statements of better-sqlite3
// stay in the worker; the main thread only awaits messages.

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { NativeModuleError, SqliteError } from '../model/errors.js';
import type { PackageModule } from '../util/module-worker.js';
import { WorkerRpc } from '../util/worker-rpc.js';

export interface CopyResult {
  journal_mode: string;
  page_size: number;
}

type Job =
  | { kind: 'copy'; src: string; dst: string; busyTimeoutMs: number }
  | { kind: 'hash'; path: string }
  | { kind: 'integrity'; path: string; maxErrors: number }
  | { kind: 'call'; module: PackageModule; fn: string; args: unknown[] };

// Plain CommonJS so the same code runs under tsx (tests) and from dist (installed package).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const crypto = require('node:crypto');
const fs = require('node:fs');
// Page cache of each connection: 2 MiB (SQLite's default) instead of better-sqlite3's 16 MiB. A copy
// (the source and the VACUUM INTO target) and an integrity check read each page about once, so the
// large cache only raised the peak RSS (by ~30 MB per worker), not the speed (measured: no slower).
const CACHE_KIB = -2000;

function sha256File(path) {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let size = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      size += n;
    }
  } finally { fs.closeSync(fd); }
  return { size, sha256: h.digest('hex') };
}

function copy(job) {
  const src = new Database(job.src, { readonly: true, fileMustExist: true, timeout: job.busyTimeoutMs });
  let journal_mode, page_size;
  try {
    journal_mode = String(src.pragma('journal_mode', { simple: true })).toLowerCase();
    page_size = Number(src.pragma('page_size', { simple: true }));
    src.pragma('cache_size = ' + CACHE_KIB);
    // VACUUM INTO writes its target with the source connection's sync level: the copy is staging, read
    // once and stored (the repository and the bundle make their own writes durable), so it is not
    // fsynced; the bytes are the same.
    src.pragma('synchronous = OFF');
    src.prepare('VACUUM INTO ?').run(job.dst);
  } finally { src.close(); }
  if (journal_mode === 'wal') {
    // keep the live database's WAL mode in the copy's header; closing checkpoints and removes -wal/-shm
    const dst = new Database(job.dst, { fileMustExist: true });
    try { dst.pragma('synchronous = OFF'); dst.pragma('journal_mode = WAL'); } finally { dst.close(); }
  }
  return { journal_mode, page_size };
}

function integrity(job) {
  const db = new Database(job.path, { fileMustExist: true });
  try {
    db.pragma('cache_size = ' + CACHE_KIB);
    const rows = db.prepare('PRAGMA integrity_check(' + Number(job.maxErrors) + ')').pluck().all();
    return { result: rows.map(String) };
  } finally { db.close(); }
}

// A package module, loaded on its first call: compiled ESM by import(), TypeScript source through tsx.
const modules = new Map();
async function call(job) {
  let m = modules.get(job.module.path);
  if (m === undefined) {
    if (job.module.tsx !== undefined) {
      require(job.module.tsx).register();
      m = require(job.module.path);
    } else {
      m = await import(require('node:url').pathToFileURL(job.module.path).href);
    }
    modules.set(job.module.path, m);
  }
  return m[job.fn](...job.args);
}

async function serve({ id, job }) {
  try {
    const value =
      job.kind === 'copy' ? copy(job)
      : job.kind === 'hash' ? sha256File(job.path)
      : job.kind === 'call' ? await call(job)
      : integrity(job);
    parentPort.postMessage({ id, value });
  } catch (err) {
    parentPort.postMessage({ id, error: { message: String(err && err.message || err), code: err && err.code } });
  }
}

// one job at a time: a call may await, and the next job waits for it
let queue = Promise.resolve();
parentPort.on('message', (msg) => { queue = queue.then(() => serve(msg)); });
`;

const driverPath = createRequire(import.meta.url).resolve('better-sqlite3');

/** One worker thread serving SQLite jobs in order. Call close() when done. */
export class SqliteWorker {
  private readonly rpc: WorkerRpc<Job>;

  constructor() {
    this.rpc = new WorkerRpc(
      new Worker(WORKER_SOURCE, { eval: true, workerData: { driver: driverPath } }),
      'sqlite worker',
    );
  }

  private run<T>(job: Job): Promise<T> {
    return this.rpc.run<T>(job);
  }

  /** Consistent copy of a live database into `dst` (which must not exist). */
  async copy(src: string, dst: string, busyTimeoutMs = 10_000): Promise<CopyResult> {
    try {
      return await this.run<CopyResult>({ kind: 'copy', src, dst, busyTimeoutMs });
    } catch (err) {
      if (err instanceof NativeModuleError) throw err;
      throw new SqliteError(`copying ${src}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** SHA-256 and size of a file, computed on the worker thread. */
  async hash(path: string): Promise<{ size: number; sha256: string }> {
    return this.run({ kind: 'hash', path });
  }

  /**
   * `module`'s export `fn` called on the worker thread with `args` (structured-cloned both ways), after
   * the jobs posted before it.
   */
  call<T>(module: PackageModule, fn: string, ...args: unknown[]): Promise<T> {
    return this.run<T>({ kind: 'call', module, fn, args });
  }

  /** `ok`, or the problems PRAGMA integrity_check reported (at most `maxErrors`). */
  async integrityCheck(path: string, maxErrors = 10): Promise<string> {
    try {
      const { result } = await this.run<{ result: string[] }>({ kind: 'integrity', path, maxErrors });
      return result.length === 1 && result[0] === 'ok' ? 'ok' : result.join('; ');
    } catch (err) {
      if (err instanceof NativeModuleError) throw err; // says nothing about the database
      return `not a valid database: ${(err as Error).message}`;
    }
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}
