// Test helper: the installed entry point `bin/nexo-memory.js` runs the compiled dist/; this rebuilds
// dist when any source file is newer (one test process at a time: a lock directory), so tests that
// spawn the real binary never run stale code, and runs it as a child process for the tests where the
// process boundary is what is tested (exit status of a real process, signals, kills, stdin, start-up);
// the same rebuild for the web console's bundle (dist/console, built from console/), and the start-up
// dependencies' bundles (dist/vendor) when they are missing.

import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VENDORED } from '../../src/util/vendored.js';
import { outsideEnv } from './cli.js';
import type { RunResult } from './env.js';
import { REPO } from './repo.js';

export const BIN = join(REPO, 'bin', 'nexo-memory.js');
/** The longest a spawned CLI runs (far beyond any test's command on a loaded machine). */
const CLI_TIMEOUT_MS = 10 * 60_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

const fresh = (): boolean => {
  const out = join(REPO, 'dist', 'src', 'cli', 'main.js');
  return existsSync(out) && statSync(out).mtimeMs >= newestMtime(join(REPO, 'src'));
};

const sleep = (ms: number): void => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms) as never;

export function ensureBuilt(): void {
  ensureVendorBuilt();
  if (fresh()) return;
  // Test files run in parallel: one builds while the others wait, then finds dist fresh.
  const lock = join(REPO, 'dist', '.build-lock');
  mkdirSync(join(REPO, 'dist'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // a build older than 5 minutes died with its process
      const since = statSync(lock, { throwIfNoEntry: false })?.mtimeMs;
      if (since !== undefined && Date.now() - since > 300_000) rmSync(lock, { recursive: true, force: true });
      sleep(200);
    }
  }
  try {
    if (fresh()) return;
    execFileSync(
      process.execPath,
      [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
      { cwd: REPO, stdio: 'inherit' },
    );
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Runs the built `nexo-memory ARGS` as a child process (building dist first when it is stale). */
export function runBuiltCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<RunResult> {
  ensureBuilt();
  return new Promise((resolvePromise) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: opts.cwd ?? REPO,
        env: { ...outsideEnv(), ...opts.env },
        maxBuffer: 64 * 1024 * 1024,
        // A command that hangs fails its test with what it printed instead of holding the suite.
        timeout: CLI_TIMEOUT_MS,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        const killed = (err as { killed?: boolean } | null)?.killed
          ? `\n(killed after ${CLI_TIMEOUT_MS} ms)`
          : '';
        resolvePromise({ code: typeof code === 'number' ? code : 1, stdout, stderr: stderr + killed });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/**
 * Builds dist/vendor (the one-file bundles of start-up dependencies, scripts/build-vendor.ts) when one
 * is missing; `npm ci` builds it, a bare `tsc` does not. It depends only on node_modules.
 */
function ensureVendorBuilt(): void {
  if (Object.keys(VENDORED).every((name) => existsSync(join(REPO, 'dist', 'vendor', `${name}.cjs`)))) return;
  execFileSync(process.execPath, ['--import', 'tsx', join(REPO, 'scripts', 'build-vendor.ts')], {
    cwd: REPO,
    stdio: 'inherit',
  });
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
