// Prepares a run of test files on the built package (scripts/test.sh): builds dist/ when it is stale,
// then writes the transform of each test file named on the command line and of every module outside
// src/ it imports (test/helpers/transform.ts), and prints each test file's transform, one per line.
// Usage: node --import tsx scripts/build-tests.ts FILE…

import { resolve } from 'node:path';
import { ensureBuilt } from '../test/helpers/built-cli.js';
import { transformed } from '../test/helpers/transform.js';

ensureBuilt();
for (const file of process.argv.slice(2)) process.stdout.write(`${transformed(resolve(file))}\n`);
