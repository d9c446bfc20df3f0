// Owns running the integrity check of a database whose schema has something the check evaluates for
// every row (per-row.ts: a virtual generated column, an index on an expression, a partial index, a
// virtual table) in a process of its own (check-main.ts) under a fuse: a few KB of a snapshot's database
// can hold an expression that takes hours or gigabytes per check, and a worker thread stuck in SQLite's
// native code can neither be interrupted (better-sqlite3 has no progress handler, interrupt or
// sqlite3_limit) nor terminated. The process's CPU time is limited as git's is (git/git.ts: `sh` sets
// `ulimit -t`, the kernel stops it with SIGXCPU), and its memory by RLIMIT_DATA (`ulimit -d`): SQLite's
// own `PRAGMA hard_heap_limit` does nothing in better-sqlite3's build (SQLITE_DEFAULT_MEMSTATUS=0, so
// SQLite keeps no count to hold it to), while an allocation over RLIMIT_DATA fails, and SQLite answers
// SQLITE_NOMEM. A check stopped by its fuse is the database's damage (its result names the limit and the
// variable that raises it), as a git delta bomb is. Runs on the program host when it is up
// (util/program-host.ts), else spawned here.

import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IoError, SqliteError } from '../model/errors.js';
import { childrenApart } from '../util/child-group.js';
import { envInteger } from '../util/env-number.js';
import { packageModule, sourceBoot } from '../util/module-worker.js';
import { type ProgramResult, runOnHost } from '../util/program-host.js';
import type { CheckAnswer } from './check-main.js';

const MiB = 1024 * 1024;

/**
 * The limits of a check's process: `cpuSeconds` of CPU (RLIMIT_CPU, SIGXCPU at it) and `maxBytes` of
 * data memory (RLIMIT_DATA: the process's heap and private mappings, Node's own ~100 MiB included).
 * 0 turns either off.
 */
export interface SqliteCheckFuse {
  cpuSeconds: number;
  maxBytes: number;
}

/** The defaults: a sound database of 1 GB is checked in seconds, even with an index on an expression. */
export const SQLITE_CHECK_CPU_SECONDS = 60;
/** CPU seconds added per MiB of the database. */
export const SQLITE_CHECK_CPU_SECONDS_PER_MIB = 1;
/**
 * At most this many seconds are added for the database's size: a database of a few KB in a bundle
 * expands to any size, so its size must not lift the limit far.
 */
export const SQLITE_CHECK_CPU_SECONDS_MAX_FOR_SIZE = 540;
export const SQLITE_CHECK_MAX_BYTES = 1024 * MiB;
/**
 * At most this many bytes are added for the database's size (a byte per byte of it: the check may hold
 * a copy of the database's largest value).
 */
export const SQLITE_CHECK_MAX_BYTES_MAX_FOR_SIZE = 3072 * MiB;
/** The lowest memory limit taken: Node itself needs about 100 MiB to start. */
export const SQLITE_CHECK_MIN_BYTES = 256 * MiB;

/**
 * A limit from the environment (util/env-number.ts): `0` turns it off; any other whole number is raised
 * to `min`; unset, blank or not a whole number, the default.
 */
const envLimit = (
  name: 'NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS' | 'NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES',
  fallback: number,
  min: number,
): number => {
  const v = envInteger(name, fallback);
  return v === 0 ? 0 : Math.max(min, v);
};

/**
 * The fuse for a database of `dbBytes`, from NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS and
 * NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES (read at each call), else the defaults; each plus some for the
 * database's size, capped.
 */
export function sqliteCheckFuse(dbBytes: number): SqliteCheckFuse {
  const cpu = envLimit('NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS', SQLITE_CHECK_CPU_SECONDS, 1);
  const cpuForSize = Math.min(
    SQLITE_CHECK_CPU_SECONDS_MAX_FOR_SIZE,
    Math.ceil((dbBytes / MiB) * SQLITE_CHECK_CPU_SECONDS_PER_MIB),
  );
  const mem = envLimit('NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES', SQLITE_CHECK_MAX_BYTES, SQLITE_CHECK_MIN_BYTES);
  const memForSize = Math.min(SQLITE_CHECK_MAX_BYTES_MAX_FOR_SIZE, dbBytes);
  return { cpuSeconds: cpu === 0 ? 0 : cpu + cpuForSize, maxBytes: mem === 0 ? 0 : mem + memForSize };
}

/**
 * Why the check of a schema with `perRow` (per-row.ts) stopped at `fuse` (a sentence naming the limit
 * and how to raise it), or undefined when it did not: the kernel's SIGXCPU at the soft CPU limit (the
 * hard one, 5 s on, is SIGKILL: only for a process that would not stop), or an allocation refused at the
 * memory limit (SQLite's SQLITE_NOMEM, or Node's own out-of-memory end).
 */
export function checkFuseTripped(
  r: { signal: NodeJS.Signals | null; stderr: string; answer?: CheckAnswer },
  fuse: SqliteCheckFuse,
  perRow: string,
): string | undefined {
  const why = `its schema's ${perRow} is evaluated for every row, and a database whose check needs more is refused, as a bomb would be`;
  if (fuse.cpuSeconds > 0 && r.signal === 'SIGXCPU')
    return (
      `the check used its limit of ${fuse.cpuSeconds} s of CPU (NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS, plus ` +
      `${SQLITE_CHECK_CPU_SECONDS_PER_MIB} s per MiB of database): ${why}: if the snapshot is trusted, ` +
      'raise NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS'
    );
  const nomem =
    (r.answer !== undefined && 'error' in r.answer && r.answer.error.code === 'SQLITE_NOMEM') ||
    (r.answer === undefined && /out of memory|allocation failed/i.test(r.stderr));
  if (fuse.maxBytes > 0 && nomem)
    return (
      `the check used its limit of ${fuse.maxBytes} bytes of memory (NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES, ` +
      `plus the database's size): ${why}: if the snapshot is trusted, raise NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES`
    );
  return undefined;
}

/** The program, arguments and environment of the check's process under `fuse` (`sh` sets the limits). */
function checkCommand(fuse: SqliteCheckFuse): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const m = packageModule(import.meta.url, 'check-main');
  const node = [
    process.execPath,
    ...(m.tsx === undefined ? [m.path] : ['-e', sourceBoot({ path: m.path, tsx: m.tsx })]),
  ];
  // (a lower limit the caller's shell already set stays: raising it fails, and the check runs under it)
  const limits = [
    ...(fuse.cpuSeconds > 0
      ? [`ulimit -t ${fuse.cpuSeconds + 5} 2>/dev/null`, `ulimit -S -t ${fuse.cpuSeconds} 2>/dev/null`]
      : []),
    ...(fuse.maxBytes > 0 ? [`ulimit -d ${Math.ceil(fuse.maxBytes / 1024)} 2>/dev/null`] : []),
  ];
  return {
    file: 'sh',
    args: ['-c', [...limits, 'exec "$@"'].join('; '), 'sh', ...node],
    env: { ...process.env },
  };
}

/** Failures to start a process that are this host's lack of a resource, not the database's fault. */
const RESOURCE_ERRNOS = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM']);

const startError = (e: Error): IoError | SqliteError => {
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && RESOURCE_ERRNOS.has(code)
    ? new IoError('cannot start the process of an integrity check', e)
    : new SqliteError(`cannot start the process of an integrity check: ${e.message}`, { cause: e });
};

/** Runs `c` with `input` on its standard input: on the program host when it is up, else spawned here. */
function run(
  c: { file: string; args: string[]; env: NodeJS.ProcessEnv },
  cwd: string,
  input: string,
): Promise<ProgramResult> {
  const hosted = runOnHost({ file: c.file, args: c.args, cwd, env: c.env, input });
  if (hosted) return hosted.catch((e: Error) => Promise.reject(startError(e)));
  return new Promise((resolve, reject) => {
    // apart from this process's group when this process handles its stop signals (util/child-group.ts)
    const child = spawn(c.file, c.args, { cwd, env: c.env, stdio: 'pipe', detached: childrenApart() });
    child.on('error', (e) => reject(startError(e)));
    if (child.pid === undefined) return;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }),
    );
    child.stdin.on('error', () => {}); // the process ending before it read it all: its status says why
    child.stdin.end(input);
  });
}

const parseAnswer = (stdout: Buffer): CheckAnswer | undefined => {
  try {
    const a = JSON.parse(stdout.toString('utf8')) as CheckAnswer;
    return Array.isArray((a as { result?: unknown }).result) || 'error' in a ? a : undefined;
  } catch {
    return undefined;
  }
};

/**
 * `PRAGMA integrity_check(maxErrors)` of the database at `path`, whose schema has `perRow` (per-row.ts),
 * in a process under its fuse (sqliteCheckFuse of its size): what the check reported (`['ok']` or the
 * problems), or, when the fuse stopped it, why (checkFuseTripped), as its one problem. Throws the
 * check's own failure as SQLite's error (its message and code: the database is not one, say), and
 * IoError or SqliteError (never the database's damage) when the process could not run.
 */
export async function checkUnderFuse(path: string, maxErrors: number, perRow: string): Promise<string[]> {
  const fuse = sqliteCheckFuse((await stat(path)).size);
  const r = await run(checkCommand(fuse), dirname(path), JSON.stringify({ path, maxErrors }));
  const answer = parseAnswer(r.stdout);
  const stderr = r.stderr.toString('utf8').trim();
  const tripped = checkFuseTripped({ signal: r.signal, stderr, ...(answer ? { answer } : {}) }, fuse, perRow);
  if (tripped !== undefined) return [tripped];
  if (answer === undefined)
    throw new SqliteError(
      `the integrity check of ${path} ended (${r.signal ?? `exit ${r.code}`}) without an answer` +
        (stderr ? `: ${stderr.slice(0, 2000)}` : ''),
    );
  if ('error' in answer)
    throw Object.assign(new Error(answer.error.message), {
      ...(answer.error.code !== undefined ? { code: answer.error.code } : {}),
    });
  return answer.result;
}
