#!/usr/bin/env node
// The `nexo-memory` program: runs the command line of this process (program.ts). Tests call `main` from
// program.ts in-process; importing this module runs the CLI.

// First, before the program's modules allocate anything.
import './heap-settings.js';
import { main } from './program.js';

// A reader that stops early (`nexo-memory list | head`) closes the pipe: the rest of the output is
// dropped and the command finishes as it would have, its exit status unchanged, without a stack trace
// (any other write error still ends the process as before).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

await main(process.argv);
