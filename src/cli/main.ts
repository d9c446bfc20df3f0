#!/usr/bin/env node
// The `nexo-memory` program: runs the command line of this process (program.ts). Tests call `main` from
// program.ts in-process; importing this module runs the CLI.

// First, before the program's modules allocate anything.
import './heap-settings.js';
import { main } from './program.js';

await main(process.argv);
