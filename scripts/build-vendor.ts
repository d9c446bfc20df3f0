// `npm run build` (after tsc): bundles the dependencies a quick command loads at start-up into one file
// each, dist/vendor/<name>.cjs, which src/util/vendored.ts loads instead of the package (the list is
// VENDORED there). Loading the `yaml` package is 72 files (each resolved, read and compiled on its own);
// its bundle is one. Measured: a CLI run with a config file loads in ~110 M instructions (~20 ms) less
// (docs/operations.md, "Start-up"). The command-line parser (commander through its typed wrapper, loaded
// by every run): ~11 ms less per run than importing it as ESM from its CommonJS package.
// Same code, same version (the installed package); nothing is fetched.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { VENDORED, VENDORED_EXPORTS } from '../src/util/vendored.js';

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
}
