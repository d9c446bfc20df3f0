// Node's compile cache for the CLI (src/cli/compile-cache.ts): which directory is used and which is not
// (code in it is run, so only a directory this user alone can write to), and, as real processes of
// this Node, that the installed CLI fills it and reads it back (Node 22.1+: the matrix runs this file on
// Node 22 and 24) or leaves the disk untouched (Node 20, which has no such cache).

import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import module from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { compileCacheDirectory } from '../src/cli/compile-cache.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { tempDir } from './helpers/env.js';

const nodeHasCache =
  typeof (module as unknown as { enableCompileCache?: unknown }).enableCompileCache === 'function';

/** `list` of an empty state root, the CLI's quickest real command, with HOME (and no Node cache switch) set. */
async function listEmpty(home: string, env: NodeJS.ProcessEnv = {}) {
  const root = join(home, 'state');
  mkdirSync(root, { recursive: true });
  const r = await runBuiltCli(['list', '--agent', 'ana', '--json', '--state-root', root], {
    env: {
      HOME: home,
      XDG_CACHE_HOME: undefined,
      NODE_COMPILE_CACHE: undefined,
      NODE_DISABLE_COMPILE_CACHE: undefined,
      ...env,
    },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '[]');
  return r;
}

/** The cache entries under `dir` (one subdirectory per Node version and flags, files in it). */
const entries = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => e.name)
    : [];

test('the cache directory: made private under XDG_CACHE_HOME or ~/.cache, refused when others could write to it', (t) => {
  const base = tempDir(t);
  chmodSync(base, 0o700);
  const home = join(base, 'home');
  mkdirSync(home);
  const dir = compileCacheDirectory({ HOME: home });
  assert.equal(dir, join(home, '.cache', 'nexo-memory', 'compile-cache'));
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(home, '.cache', 'nexo-memory')).mode & 0o777, 0o700);
  const xdg = join(base, 'xdg');
  assert.equal(
    compileCacheDirectory({ HOME: home, XDG_CACHE_HOME: xdg }),
    join(xdg, 'nexo-memory', 'compile-cache'),
  );
  // no absolute base: none (a relative HOME would depend on the working directory)
  assert.equal(compileCacheDirectory({ HOME: 'home' }), undefined);
  assert.equal(compileCacheDirectory({}), undefined);

  // a cache directory others may write to, or its parent: not used
  const open = join(base, 'open');
  mkdirSync(join(open, 'nexo-memory', 'compile-cache'), { recursive: true, mode: 0o700 });
  chmodSync(join(open, 'nexo-memory', 'compile-cache'), 0o777);
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: open }), undefined);
  chmodSync(join(open, 'nexo-memory', 'compile-cache'), 0o700);
  chmodSync(join(open, 'nexo-memory'), 0o770);
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: open }), undefined);
  chmodSync(join(open, 'nexo-memory'), 0o700);
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: open }), join(open, 'nexo-memory', 'compile-cache'));
  // a base others may write to: only when sticky (/tmp), where they cannot rename our directory away
  chmodSync(open, 0o777);
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: open }), undefined);
  chmodSync(open, 0o1777);
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: open }), join(open, 'nexo-memory', 'compile-cache'));

  // a symbolic link in place of our directory: not followed
  const linked = join(base, 'linked');
  mkdirSync(linked, { mode: 0o700 });
  const elsewhere = join(base, 'elsewhere');
  mkdirSync(join(elsewhere, 'compile-cache'), { recursive: true, mode: 0o700 });
  chmodSync(elsewhere, 0o700);
  symlinkSync(elsewhere, join(linked, 'nexo-memory'));
  assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: linked }), undefined);

  // owned by another user (only root can make one here)
  if (process.getuid?.() === 0) {
    const theirs = join(base, 'theirs');
    mkdirSync(join(theirs, 'nexo-memory', 'compile-cache'), { recursive: true, mode: 0o700 });
    chownSync(join(theirs, 'nexo-memory', 'compile-cache'), 65534, 65534);
    assert.equal(compileCacheDirectory({ XDG_CACHE_HOME: theirs }), undefined);
  }
});

test(`the installed CLI ${nodeHasCache ? 'fills its compile cache and reads it back' : 'writes no compile cache on this Node'} (${process.version})`, async (t) => {
  const home = tempDir(t);
  const cache = join(home, '.cache', 'nexo-memory', 'compile-cache');
  await listEmpty(home);
  if (!nodeHasCache) {
    assert.equal(
      existsSync(join(home, '.cache')),
      false,
      'nothing is written where Node has no compile cache',
    );
    return;
  }
  const written = entries(cache);
  assert.ok(written.length >= 20, `the modules of \`list\` are cached (${written.length} entries)`);
  const again = await listEmpty(home, { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' });
  // Node's debug line (its wording differs: 22 "cache for file://…", 24 "V8 code cache for ESM file://…")
  assert.match(again.stderr, /cache for (?:ESM )?file:\/\/\S+\/dist\/src\/cli\/program\.js was accepted/);
});

test('no compile cache where the user turned it off or where others could write to it', async (t) => {
  const off = tempDir(t);
  await listEmpty(off, { NODE_DISABLE_COMPILE_CACHE: '1' });
  assert.deepEqual(entries(join(off, '.cache')), []);

  const shared = tempDir(t);
  const dir = join(shared, '.cache', 'nexo-memory', 'compile-cache');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o777);
  await listEmpty(shared);
  assert.deepEqual(entries(dir), [], 'a directory others may write to is left alone');
});
