// Owns the body of the process that runs one integrity check under a fuse (check-fuse.ts starts it, under
// its limits on CPU time and memory): reads `{ path, maxErrors }` as JSON on standard input, runs `PRAGMA
// integrity_check` on a connection opened as every check's is (jobs.ts openForCheck: CHECK constraints
// ignored), and writes its answer as JSON on standard output: `{ result }` (what the check reported) or
// `{ error: { message, code } }` (it could not run: SQLite's code, SQLITE_NOMEM when the memory limit
// stopped it). Never imported by anything else.

import { openForCheck, runIntegrityCheck } from './jobs.js';

/** What the process writes on standard output. */
export type CheckAnswer = { result: string[] } | { error: { message: string; code?: string } };

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const { path, maxErrors } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    path: string;
    maxErrors: number;
  };
  let answer: CheckAnswer;
  try {
    const db = openForCheck(path);
    try {
      answer = { result: runIntegrityCheck(db, maxErrors) };
    } finally {
      db.close();
    }
  } catch (err) {
    const e = err as { message?: unknown; code?: unknown };
    answer = {
      error: {
        message: String(e?.message ?? err),
        ...(typeof e?.code === 'string' ? { code: e.code } : {}),
      },
    };
  }
  process.stdout.write(JSON.stringify(answer));
}

// (no top-level await: under tsx, from source, this module is loaded by require)
main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exitCode = 1;
});
