// `npm run build` (after tsc): bundles the web console (console/src, Preact + htm) with esbuild into
// dist/console/ — console.js, console.css and index.html — which `nexo-memory serve` serves at `/` and
// the npm package ships. Nothing is fetched from the network; the output has no inline script.

import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(repo, 'console');
const out = join(repo, 'dist', 'console');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(src, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  outfile: join(out, 'console.js'),
  logLevel: 'warning',
});
copyFileSync(join(src, 'console.css'), join(out, 'console.css'));
copyFileSync(join(src, 'index.html'), join(out, 'index.html'));
