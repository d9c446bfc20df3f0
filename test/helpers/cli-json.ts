// Test helper: reading a CLI run's `--json` output (the remote-store tests read it field by field): the
// parsed stdout, or an error that shows what the command printed; `ok` also requires exit 0.

import assert from 'node:assert/strict';
import type { RunResult } from './env.js';

// biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON output, read field by field
export type Json = any;

/** The command's stdout as JSON (whatever its exit status). */
export function json(r: RunResult): Json {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** The command's stdout as JSON, once it exited 0 (else the assertion names `what` and the output). */
export function ok(r: RunResult, what: string): Json {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return json(r);
}
