// Owns random bytes for the synchronous code that needs them (temporary file names, new snapshot ids,
// backend temporaries) without loading node:crypto with the modules that hold that code: node:crypto
// costs ~17 M instructions (~7 ms) to load, which commands that make none of them (`list`, `--version`)
// need not pay (CLI start-up, docs/operations.md). ESM has no synchronous import, so the built-in
// module is required on the first call.

import { createRequire } from 'node:module';

let crypto: typeof import('node:crypto') | undefined;

/** `n` cryptographically strong random bytes (node:crypto's randomBytes). */
export function randomBytes(n: number): Buffer {
  crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return crypto.randomBytes(n);
}
