// Test helper: the installed entry point `bin/nexo-memory.js` runs the compiled dist/; this rebuilds
// dist when any source file is newer, so tests that spawn the real binary never run stale code; the
// same for the web console's bundle (dist/console, built from console/).

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './env.js';

export const BIN = join(REPO, 'bin', 'nexo-memory.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

export function ensureBuilt(): void {
  const out = join(REPO, 'dist', 'src', 'cli', 'main.js');
  if (existsSync(out) && statSync(out).mtimeMs >= newestMtime(join(REPO, 'src'))) return;
  execFileSync(
    process.execPath,
    [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: REPO,
      stdio: 'inherit',
    },
  );
}

/** Rebuilds dist/console (the web console's bundle) when a file under console/ is newer. */
export function ensureConsoleBuilt(): void {
  const out = join(REPO, 'dist', 'console', 'console.js');
  if (existsSync(out) && statSync(out).mtimeMs >= newestMtime(join(REPO, 'console'))) return;
  execFileSync(process.execPath, ['--import', 'tsx', join(REPO, 'scripts', 'build-console.ts')], {
    cwd: REPO,
    stdio: 'inherit',
  });
}
