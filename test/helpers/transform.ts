// A TypeScript module of this checkout outside src/ (a test file, a helper, a fixture, a script) as a
// module plain node runs against the built package: the file alone turned into JavaScript (esbuild, the
// transform tsx applies), its imports of src/ pointed at dist/src and its other relative imports at
// their own transforms, written under dist/test-build/ at its path in the checkout, named with the
// digest of what was written (so a file of that name is always that transform, and test processes
// writing the same one at once write the same bytes). Imports are relative, so a copy of the checkout
// with its dist/ (as scripts/node-matrix.sh makes) uses its own build. dist/ must be built first.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { transformSync } from 'esbuild';
import { REPO } from './repo.js';

/** Transforms written or found by this process, by source path (a module imported by many is done once). */
const done = new Map<string, string>();
/** Sources being transformed (their imports first): an import cycle outside src/ cannot be named by digest. */
const inProgress = new Set<string>();

/** The transform of `source` (an absolute path of a .ts file), written when missing; its path. */
export function transformed(source: string): string {
  const known = done.get(source);
  if (known !== undefined) return known;
  if (inProgress.has(source)) throw new Error(`an import cycle outside src/ reaches ${source} again`);
  inProgress.add(source);
  try {
    const out = write(source);
    done.set(source, out);
    return out;
  } finally {
    inProgress.delete(source);
  }
}

function write(source: string): string {
  const outDir = join(REPO, 'dist', 'test-build', dirname(relative(REPO, source)));
  const srcDir = join(REPO, 'src');
  const code = transformSync(readFileSync(source, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcefile: source,
  }).code.replace(/(from |import\(|import )"(\.[^"]*)"/g, (_m, how: string, spec: string) => {
    const target = resolve(dirname(source), spec);
    const to = target.startsWith(`${srcDir}${sep}`)
      ? join(REPO, 'dist', 'src', relative(srcDir, target))
      : transformed(target.replace(/\.js$/, '.ts'));
    const path = relative(outDir, to);
    return `${how}"${path.startsWith('.') ? path : `./${path}`}"`;
  });
  const digest = createHash('sha256').update(code).digest('hex').slice(0, 12);
  const out = join(outDir, basename(source).replace(/\.ts$/, `.${digest}.mjs`));
  if (!existsSync(out)) {
    mkdirSync(outDir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, code);
    renameSync(tmp, out); // atomic: another test process may write the same file meanwhile
  }
  return out;
}
