#!/usr/bin/env node
// The `nexo-memory` program: runs the command line of this process (program.ts). Tests call `main` from
// program.ts in-process; importing this module runs the CLI. `--version` alone is answered here, before
// the program is loaded: the same line commander prints, without loading commander.

// First, before the program's modules allocate anything.
import './heap-settings.js';
import { bundleCandidates, bundleReadEarly } from './early-read.js';
import { asksOnlyVersion } from './version-flag.js';

// A reader that stops early (`nexo-memory list | head`) closes the pipe: the rest of the output is
// dropped and the command finishes as it would have, its exit status unchanged, without a stack trace
// (any other write error still ends the process as before).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

// The AWS SDK's notice that its releases after January 2027 want Node 22 concerns who upgrades the SDK,
// not who runs a command: on Node 20 it was printed (7 lines) by every command that used S3. The README
// says which Node versions are tested. Set to `false` to see it again.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

if (asksOnlyVersion(process.argv.slice(2)))
  process.stdout.write(`${(await import('../util/version.js')).PACKAGE_VERSION}\n`);
else {
  // a bundle's decompression thread starts now, while the program loads (early-read.ts)
  const bundle = bundleReadEarly(bundleCandidates(process.argv.slice(2)));
  if (bundle !== undefined) (await import('../snapshotter/prepare-read.js')).prepareBundleRead(bundle);
  await (await import('./program.js')).main(process.argv);
}
