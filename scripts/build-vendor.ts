// `npm run build` (after tsc): bundles the dependencies a quick command loads at start-up into one file
// each, dist/vendor/<name>.cjs, which src/util/vendored.ts loads instead of the package (the list is
// VENDORED there). Loading the `yaml` package is 72 files (each resolved, read and compiled on its own);
// its bundle is one. Measured: a CLI run with a config file loads in ~110 M instructions (~20 ms) less
// (docs/operations.md, "Start-up"). The command-line parser (commander through its typed wrapper, loaded
// by every run): ~11 ms less per run than importing it as ESM from its CommonJS package.
// Same code, same version (the installed package); nothing is fetched.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { VENDORED, VENDORED_EXPORTS } from '../src/util/vendored.js';

/**
 * Fixes of a dependency's code, applied to its bundle (each must match exactly once, or the build fails).
 * nats: the Node transport's close() of a connection that never got the server's INFO (a server that
 * accepts the TCP connection and stays silent: a stopped process, a wrong port) returned without
 * destroying the socket, so every connect attempt that timed out left an open socket, and a CLI
 * command kept running after it had failed (docs/decisions.md, "Remote repositories").
 */
const FIXES: Partial<Record<string, Array<{ why: string; find: string; replace: string }>>> = {
  nats: [
    {
      why: 'close the socket of a connection that never completed',
      find: `async _closed(err, internal = true) {
        if (!this.connected)
          return;`,
      replace: `async _closed(err, internal = true) {
        if (!this.connected) {
          this.socket?.destroy();
          return;
        }`,
    },
  ],
};

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(repo, 'dist', 'vendor');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [name, pkg] of Object.entries(VENDORED)) {
  // the whole package; several packages, each one's exports (`export *`); or (VENDORED_EXPORTS) an ES
  // module naming some exports, so that esbuild leaves out every module none of them reaches
  const names = VENDORED_EXPORTS[name as keyof typeof VENDORED];
  const esm = names !== undefined || typeof pkg !== 'string';
  const entry = join(out, esm ? `${name}.entry.mjs` : `${name}.entry.cjs`);
  writeFileSync(
    entry,
    typeof pkg !== 'string'
      ? pkg.map((p) => `export * from ${JSON.stringify(p)};\n`).join('')
      : names
        ? `export { ${names.join(', ')} } from ${JSON.stringify(pkg)};\n`
        : `module.exports = require(${JSON.stringify(pkg)});\n`,
  );
  await build({
    entryPoints: [entry],
    absWorkingDir: repo,
    nodePaths: [join(repo, 'node_modules')],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    outfile: join(out, `${name}.cjs`),
    logLevel: 'warning',
  });
  rmSync(entry);
  for (const fix of FIXES[name] ?? []) {
    const file = join(out, `${name}.cjs`);
    const text = readFileSync(file, 'utf8');
    if (text.split(fix.find).length !== 2)
      throw new Error(
        `build-vendor: ${name}: the code fixed by "${fix.why}" is not there once: review the fix`,
      );
    writeFileSync(file, text.replace(fix.find, fix.replace));
  }
}
