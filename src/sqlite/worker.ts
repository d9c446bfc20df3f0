// Owns running SQLite work without blocking the event loop on a large database: jobs (jobs.ts) for the
// databases of one snapshot, restore or verify, run in order by a runner. A runner is a worker thread
// (thread-main.ts) when the databases are large enough to pay for starting one (~80 ms of CPU with
// better-sqlite3 loaded, on stop 27's machine), or the calling thread when they are small
// (`sqliteRunners`): there a copy of a live database never waits for a writer's lock; a copy that
// would wait goes to a thread started then. Blocking statements of better-sqlite3 on a large database
// stay on a thread; the main thread only awaits messages.

import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sqlitePath } from '../format/constants.js';
import {
  IoError,
  NativeModuleError,
  nativeModuleError,
  SnapshotError,
  SqliteError,
} from '../model/errors.js';
import { DB_NAMES } from '../model/types.js';
import { envInteger } from '../util/env-number.js';
import { sha256File } from '../util/hash.js';
import { type PackageModule, startModuleWorker } from '../util/module-worker.js';
import { WorkerRpc } from '../util/worker-rpc.js';
import { checkUnderFuse } from './check-fuse.js';
import type { CopyResult, IntegrityAnswer } from './jobs.js';
import type { ThreadJob } from './thread-main.js';

export type { CopyResult } from './jobs.js';

/**
 * The databases (bytes in all) below which a command's SQLite jobs run on the calling thread. Near it the
 * two ways cost about the same: on stop 27's machine, under load, one thread copied a 16.8 MiB database
 * in 143-181 ms and checked it in 40-119 ms, and a thread takes ~80 ms of CPU to start.
 */
export const SQLITE_THREADS_MIN_BYTES = 16 * 1024 * 1024;

/**
 * SQLITE_THREADS_MIN_BYTES, or what NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES sets (the tests take the
 * threads with small agents).
 */
export const sqliteThreadsMinBytes = (): number =>
  envInteger('NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES', SQLITE_THREADS_MIN_BYTES);

/** What a runner of SQLite jobs does; jobs given to one runner run one at a time, in order. */
export interface SqliteJobs {
  /** Whether the jobs run on a worker thread of their own (not on the calling thread). */
  readonly threaded: boolean;
  /** Consistent copy of a live database into `dst` (which must not exist). */
  copy(src: string, dst: string, busyTimeoutMs?: number): Promise<CopyResult>;
  /** SHA-256 and size of a file. */
  hash(path: string): Promise<{ size: number; sha256: string }>;
  /**
   * `module`'s export `fn` called with `args` (structured-cloned both ways on a thread), after the jobs
   * given before it.
   */
  call<T>(module: PackageModule, fn: string, ...args: unknown[]): Promise<T>;
  /**
   * `ok`, or the problems PRAGMA integrity_check reported (at most `maxErrors`); CHECK constraints are not
   * evaluated, and a schema with something else the check evaluates per row is checked in a process
   * under a fuse (check-fuse.ts), whose tripping is a problem.
   */
  integrityCheck(path: string, maxErrors?: number): Promise<string>;
  close(): Promise<void>;
}

/**
 * `count` runners for SQLite work on databases of `bytes` in all: worker threads (started now, so they
 * start while the caller does other work) when that is at least sqliteThreadsMinBytes(), else runners
 * on the calling thread.
 */
export function sqliteRunners(bytes: number, count = 2): SqliteJobs[] {
  const here = bytes < sqliteThreadsMinBytes();
  return Array.from({ length: count }, () => (here ? new SqliteHere() : new SqliteWorker()));
}

/**
 * Bytes of the live databases in `sqliteDir` (each file and its WAL): what choosing between threads and
 * the calling thread for their copies goes by (`sqliteRunners`).
 */
export async function liveDatabaseBytes(sqliteDir: string): Promise<number> {
  const sizes = await Promise.all(
    DB_NAMES.flatMap((db) =>
      ['.sqlite', '.sqlite-wal'].map((ext) =>
        stat(join(sqliteDir, `${db}${ext}`)).then(
          (st) => (st.isFile() ? st.size : 0),
          () => 0,
        ),
      ),
    ),
  );
  return sizes.reduce((a, b) => a + b, 0);
}

/**
 * Runners for copying the live databases in `sqliteDir` (sqliteRunners by their size), started now: a
 * caller asks for them first, so that a worker thread starts (~80 ms of CPU: its isolate and
 * better-sqlite3) on the other core while the caller loads its other modules.
 */
export async function liveDatabaseRunners(sqliteDir: string, count = 2): Promise<SqliteJobs[]> {
  return sqliteRunners(await liveDatabaseBytes(sqliteDir), count);
}

/** A copy's failure as this package reports it (the message says what SQLite's code means here). */
export const copyError = (src: string, dst: string, err: unknown): Error => {
  if (err instanceof NativeModuleError || err instanceof SqliteError) return err;
  const code = String((err as { code?: unknown }).code ?? '');
  // a file refused by live-files.ts on a thread (its message names the file)
  if (code === 'SQLITE')
    return new SqliteError((err as Error).message.replace(/^sqlite: /, ''), { cause: err });
  // SQLite's unix VFS says SQLITE_FULL when write() fails with ENOSPC (or writes short): the disk that
  // is full is the copy's, not the live database's
  if (code === 'SQLITE_FULL') {
    const full = Object.assign(new Error(`ENOSPC: ${(err as Error).message}`, { cause: err }), {
      code: 'ENOSPC',
    });
    return new IoError(`writing ${dst}, the copy of ${src}`, full);
  }
  // a gated writer never holds the database while a snapshot copies: this is one outside the write gate
  // (or one in locking_mode=EXCLUSIVE, which holds it for good); a read-only database's SQLite reads
  // only if it can create the WAL index beside it (stop 63: "attempt to write a readonly database"
  // named no cause)
  const why = /^SQLITE_(BUSY|LOCKED)/.test(code)
    ? ' (a writer outside the write gate, docs/locking.md, held it for the whole wait; a writer in locking_mode=EXCLUSIVE holds it until it closes)'
    : /^SQLITE_READONLY/.test(code) || /^SQLITE_CANTOPEN/.test(code)
      ? ` (${code}: a database in WAL mode is read through its -shm and -wal files, which SQLite must be able to create beside it when they are missing: a directory this user cannot write to, or a read-only mount, stops it)`
      : '';
  return new SqliteError(`copying ${src}: ${(err as Error).message}${why}`, { cause: err });
};

const integrityResult = (result: string[]): string =>
  result.length === 1 && result[0] === 'ok' ? 'ok' : result.join('; ');

/**
 * An integrity check that could not run: the database is not one (that answer), unless this host failed
 * it (stop 54: a full disk, whose -shm or temporary file SQLite could not grow, made a restore and a
 * deep verify call a sound snapshot damaged): SQLITE_FULL is `IO` ENOSPC, any other SQLITE_IOERR `IO`
 * with its code, each naming the file.
 */
const notADatabase = (err: unknown, path: string): string => {
  if (err instanceof NativeModuleError) throw err; // says nothing about the database
  const code = String((err as { code?: unknown }).code ?? '');
  if (code === 'SQLITE_FULL') {
    const full = Object.assign(new Error(`ENOSPC: ${(err as Error).message}`, { cause: err }), {
      code: 'ENOSPC',
    });
    throw new IoError(`checking ${path}`, full);
  }
  if (code.startsWith('SQLITE_IOERR')) throw new IoError(`checking ${path}`, err);
  return `not a valid database: ${(err as Error).message}`;
};

/**
 * The integrity check of `path`, whose answer on the runner was `answer`: its result, or the check in a
 * process under a fuse (check-fuse.ts) when the schema has something it evaluates per row. That
 * process's failure to run is thrown as it is (IoError, SqliteError: never the database's damage).
 */
async function integrityOf(answer: IntegrityAnswer, path: string, maxErrors: number): Promise<string> {
  if ('result' in answer) return integrityResult(answer.result);
  try {
    return integrityResult(await checkUnderFuse(path, maxErrors, answer.perRow));
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    return notADatabase(err, path);
  }
}

/** One worker thread serving SQLite jobs in order, started at once. Call close() when done. */
export class SqliteWorker implements SqliteJobs {
  readonly threaded = true;
  private readonly rpc = new WorkerRpc<ThreadJob>(
    startModuleWorker(import.meta.url, 'thread-main', {}),
    'sqlite worker',
  );

  private run<T>(job: ThreadJob): Promise<T> {
    return this.rpc.run<T>(job);
  }

  async copy(src: string, dst: string, busyTimeoutMs = 10_000): Promise<CopyResult> {
    try {
      return await this.run<CopyResult>({ kind: 'copy', src, dst, busyTimeoutMs });
    } catch (err) {
      throw copyError(src, dst, err);
    }
  }

  hash(path: string): Promise<{ size: number; sha256: string }> {
    return this.run({ kind: 'hash', path });
  }

  call<T>(module: PackageModule, fn: string, ...args: unknown[]): Promise<T> {
    return this.run<T>({ kind: 'call', module, fn, args });
  }

  async integrityCheck(path: string, maxErrors = 10): Promise<string> {
    let answer: IntegrityAnswer;
    try {
      answer = await this.run<IntegrityAnswer>({ kind: 'integrity', path, maxErrors });
    } catch (err) {
      return notADatabase(err, path);
    }
    return integrityOf(answer, path, maxErrors);
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}

/**
 * SQLite jobs on the calling thread, for small databases, in order. A copy does not wait for a
 * writer's lock here (that would stop the event loop): one that finds the database locked is made
 * again on a worker thread started for it, which waits as a thread copy does.
 */
export class SqliteHere implements SqliteJobs {
  readonly threaded = false;
  private queue: Promise<unknown> = Promise.resolve();
  private thread: SqliteWorker | undefined;

  /** `job` after every job given before it. */
  private inOrder<T>(job: () => Promise<T>): Promise<T> {
    const done = this.queue.then(job);
    this.queue = done.catch(() => {});
    return done;
  }

  copy(src: string, dst: string, busyTimeoutMs = 10_000): Promise<CopyResult> {
    return this.inOrder(async () => {
      let jobs: typeof import('./jobs.js');
      try {
        jobs = await import('./jobs.js');
      } catch (err) {
        throw nativeModuleError(err) ?? err;
      }
      try {
        return jobs.copyDatabase(src, dst, 0);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_LOCKED') throw copyError(src, dst, err);
      }
      await rm(dst, { force: true });
      this.thread ??= new SqliteWorker();
      return this.thread.copy(src, dst, busyTimeoutMs);
    });
  }

  hash(path: string): Promise<{ size: number; sha256: string }> {
    return this.inOrder(() => sha256File(path));
  }

  call<T>(module: PackageModule, fn: string, ...args: unknown[]): Promise<T> {
    return this.inOrder(async () => {
      const m = (await import(pathToFileURL(module.path).href)) as Record<string, (...a: unknown[]) => T>;
      return m[fn]!(...args);
    });
  }

  integrityCheck(path: string, maxErrors = 10): Promise<string> {
    return this.inOrder(async () => {
      let answer: IntegrityAnswer;
      try {
        const jobs = await import('./jobs.js');
        answer = jobs.integrityCheck(path, maxErrors);
      } catch (err) {
        return notADatabase(nativeModuleError(err) ?? err, path);
      }
      return integrityOf(answer, path, maxErrors);
    });
  }

  async close(): Promise<void> {
    await this.queue;
    await this.thread?.close();
  }
}

/**
 * `PRAGMA integrity_check` of each database among the files a verify wrote (path in the bundle → file),
 * one after the other on one runner chosen by their size; database name → `ok` or the problems found.
 */
export async function checkIntegrity(written: ReadonlyMap<string, string>): Promise<Record<string, string>> {
  const files = DB_NAMES.flatMap((db) => {
    const path = written.get(sqlitePath(db));
    return path === undefined ? [] : [{ db, path }];
  });
  const sizes = await Promise.all(
    files.map(({ path }) =>
      stat(path).then(
        (st) => st.size,
        () => 0,
      ),
    ),
  );
  const [runner] = sqliteRunners(
    sizes.reduce((a, b) => a + b, 0),
    1,
  );
  const out: Record<string, string> = {};
  try {
    for (const { db, path } of files) out[db] = await runner!.integrityCheck(path);
  } finally {
    await runner!.close();
  }
  return out;
}
