// The layering rule of docs/decisions.md, checked on the source: the surfaces (cli/, server/, mcp/)
// call the library through the snapshotter and the public modules, never the store or the verifier
// directly, so every surface applies the same rules (trust, locks) as the library.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers/env.js';

const SURFACES = ['cli', 'server', 'mcp'];
const FORBIDDEN = ['store', 'verify'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier of a file's static imports, re-exports and dynamic imports. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g))
    out.push(m[1]!);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

test('surfaces (cli, server, mcp) never import src/store or src/verify', () => {
  const src = join(REPO, 'src');
  const found: string[] = [];
  let files = 0;
  for (const surface of SURFACES) {
    for (const file of sources(join(src, surface))) {
      files++;
      for (const spec of specifiers(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = relative(src, join(file, '..', spec)).split('/')[0]!;
        if (FORBIDDEN.includes(target)) found.push(`${relative(REPO, file)} imports ${spec}`);
      }
    }
  }
  assert.ok(files > 20, `the surfaces' sources were found (${files})`);
  assert.deepEqual(found, []);
});

test('the import scanner sees the forms a surface could use', () => {
  const text = [
    "import { a } from '../store/catalog.js';",
    "import type {\n  B,\n} from '../../verify/verify.js';",
    "export { c } from '../store/paths.js';",
    "import '../store/side-effect.js';",
    "const d = await import('../verify/verify.js');",
  ].join('\n');
  assert.deepEqual(specifiers(text), [
    '../store/catalog.js',
    '../../verify/verify.js',
    '../store/paths.js',
    '../store/side-effect.js',
    '../verify/verify.js',
  ]);
});
