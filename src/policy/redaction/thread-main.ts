// Owns the body of the redaction worker thread: compiles the policy it is given once, then redacts
// staged SQLite copies and staged (large) files on request, so the main thread's event loop stays free.
// Started by thread.ts; never imported by anything else.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { compilePolicy, type RedactionOptions, redactBytes } from './scan.js';
import { redactDatabase } from './sqlite.js';

export type ThreadJob =
  | { kind: 'sqlite'; path: string; artifact: string }
  | { kind: 'file'; path: string; maxBytes: number };

const policy = compilePolicy(workerData as RedactionOptions);

function fileJob(path: string, maxBytes: number) {
  const size = statSync(path).size;
  if (size > maxBytes) return { status: 'too_large' as const, size };
  const r = redactBytes(policy, readFileSync(path));
  if (r.binary) return { status: 'binary' as const, size };
  if (r.matches > 0) writeFileSync(path, r.bytes);
  return { status: 'text' as const, size: r.bytes.length, counts: r.counts, matches: r.matches };
}

parentPort!.on('message', ({ id, job }: { id: number; job: ThreadJob }) => {
  try {
    const value =
      job.kind === 'sqlite'
        ? redactDatabase(policy, job.path, job.artifact)
        : fileJob(job.path, job.maxBytes);
    parentPort!.postMessage({ id, value });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: String(e?.message ?? e), code: e?.code } });
  }
});
