// Test helper: the package as a user gets it. `npm pack` of this checkout (dist/ rebuilt first when
// stale; once per test process) unpacked into `node_modules/nexo-memory-snapshot` of a scratch project,
// beside the packages the test chooses to provide (symlinks to this checkout's node_modules, so no
// registry is needed). What the project does not link, the installed package cannot see.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { ensureBuilt, ensureConsoleBuilt } from './built-cli.js';
import { REPO, tempDir } from './env.js';

export const PACKAGE_NAME = 'nexo-memory-snapshot';

let packed: string | undefined;

/** The tarball `npm pack` makes of this checkout (built once per process, removed at exit). */
export function packTarball(): string {
  if (packed) return packed;
  ensureBuilt();
  ensureConsoleBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'nexo-pack-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  // --ignore-scripts: `prepare` would rebuild dist/, which ensureBuilt() just brought up to date.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [info] = JSON.parse(out) as Array<{ filename: string }>;
  packed = join(dir, info!.filename);
  return packed;
}

/** The package's runtime `dependencies` (what `npm install` would add beside it). */
export function runtimeDependencies(): string[] {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  return Object.keys(pkg.dependencies ?? {});
}

export interface ScratchProject {
  dir: string;
  /** The installed package's directory (`node_modules/nexo-memory-snapshot`). */
  packageDir: string;
}

/**
 * A scratch project with the packed package installed and `links` (package names) provided from this
 * checkout's node_modules.
 */
export function scratchProject(t: TestContext, links: readonly string[]): ScratchProject {
  const dir = tempDir(t, 'nexo-consumer-');
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const modules = join(dir, 'node_modules');
  const packageDir = join(modules, PACKAGE_NAME);
  mkdirSync(packageDir, { recursive: true });
  execFileSync('tar', ['-xzf', packTarball(), '-C', packageDir, '--strip-components=1']);
  for (const name of links) {
    const target = join(modules, name);
    mkdirSync(join(target, '..'), { recursive: true });
    symlinkSync(join(REPO, 'node_modules', name), target, 'dir');
  }
  return { dir, packageDir };
}
