// Native modules that cannot be loaded (built for another Node.js, for another platform, or not built)
// are reported as NATIVE_MODULE with what is wrong and how to fix it, not as a failed lock or I/O.
// The failures are real: Node's own loader refusing a module registered for another NODE_MODULE_VERSION
// (a small C module compiled here, as a module built by another Node.js registers itself), and dlopen
// refusing a file that is not a shared object.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { asSnapshotError, ExitCode, NativeModuleError, nativeModuleError } from '../src/model/errors.js';
import { REPO, sampleAgent, tempDir } from './helpers/env.js';
import { runtimeDependencies, scratchProject } from './helpers/installed.js';

/** NODE_MODULE_VERSION of another Node.js than this one, and that Node.js' major version. */
const OTHER = Number(process.versions.modules) === 127 ? { abi: 137, major: 24 } : { abi: 127, major: 22 };

/** Compiles a module that registers itself for `abi`, as an addon built by that Node.js does. */
function moduleBuiltFor(abi: number, out: string): void {
  const src = `${out}.c`;
  writeFileSync(
    src,
    `struct node_module { int nm_version; unsigned int nm_flags; void *dso; const char *file;
  void *reg; void *ctx_reg; const char *name; void *priv; void *link; };
extern void node_module_register(void *m);
static struct node_module m = { ${abi}, 0, 0, "stub.c", 0, 0, "stub", 0, 0 };
__attribute__((constructor)) static void init(void) { node_module_register(&m); }
`,
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', out, src]);
}

function dlopenError(path: string): Error {
  try {
    process.dlopen({ exports: {} }, path);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${path} loaded`);
}

test('a module built for another Node.js: NATIVE_MODULE naming both versions and `npm rebuild`', (t) => {
  const root = tempDir(t);
  const dir = join(root, 'node_modules', 'better-sqlite3', 'build', 'Release');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'better_sqlite3.node');
  moduleBuiltFor(OTHER.abi, file);
  const real = dlopenError(file);
  assert.equal((real as NodeJS.ErrnoException).code, 'ERR_DLOPEN_FAILED');
  assert.match(real.message, /NODE_MODULE_VERSION/);

  // What a lock that opens SQLite first made of it: a typed error, not "taking the lock …: <dlopen>".
  const e = asSnapshotError(real, `taking the lock ${join(root, 'ana.lock')}`);
  assert.ok(e instanceof NativeModuleError);
  assert.equal(e.code, 'NATIVE_MODULE');
  assert.equal(e.exitCode, ExitCode.error);
  assert.doesNotMatch(e.message, /taking the lock/);
  assert.match(e.message, /^native module better-sqlite3 was built for Node\.js /);
  assert.ok(e.message.includes(`Node.js ${OTHER.major} (NODE_MODULE_VERSION ${OTHER.abi})`), e.message);
  assert.ok(
    e.message.includes(
      `this is Node.js ${process.version} (NODE_MODULE_VERSION ${process.versions.modules})`,
    ),
    e.message,
  );
  assert.ok(e.message.includes(`npm rebuild better-sqlite3\` in ${root}`), e.message);
  assert.deepEqual(e.details, {
    module: 'better-sqlite3',
    node: process.version,
    node_module_version: Number(process.versions.modules),
    built_for_node_module_version: OTHER.abi,
    built_for_node: String(OTHER.major),
    path: file,
  });
});

test('a file that is not a shared object, a module that was never built: NATIVE_MODULE; other errors are left alone', (t) => {
  const root = tempDir(t);
  const dir = join(root, 'node_modules', 'zstd-napi', 'build', 'Release');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'binding.node');
  writeFileSync(file, 'not a shared object\n');
  const e = nativeModuleError(dlopenError(file));
  assert.ok(e, 'recognised');
  assert.match(e.message, /^native module zstd-napi cannot be loaded by Node\.js v[\d.]+ on \w+-\w+ \(/);
  assert.ok(e.message.includes(file), e.message);
  assert.ok(e.message.includes(`npm rebuild zstd-napi\` in ${root}`), e.message);

  // bindings (better-sqlite3's loader) when the module was installed without its build step
  const tried = new Error(
    `Could not locate the bindings file. Tried:\n → ${root}/node_modules/better-sqlite3/build/better_sqlite3.node\n → ${root}/node_modules/better-sqlite3/build/Release/better_sqlite3.node`,
  );
  const missing = nativeModuleError(tried);
  assert.match(missing?.message ?? '', /^native module better-sqlite3 is not built/);
  assert.ok(missing?.message.includes(`npm rebuild better-sqlite3\` in ${root}`));

  for (const other of [
    Object.assign(new Error(`ENOENT: no such file or directory, open '${root}/x.sqlite'`), {
      code: 'ENOENT',
    }),
    new Error('SQLITE_BUSY: database is locked'),
    'a string',
    undefined,
  ])
    assert.equal(nativeModuleError(other), undefined, String(other));
});

test('the installed CLI on a Node.js its better-sqlite3 was not built for: exit 1 NATIVE_MODULE, not a lock error', (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 5, embeddings: 2 });
  // The package as installed, with a better-sqlite3 whose compiled module belongs to another Node.js.
  const deps = runtimeDependencies().filter((d) => d !== 'better-sqlite3');
  const project = scratchProject(t, [...deps, 'bindings']);
  const sqlite = join(project.dir, 'node_modules', 'better-sqlite3');
  cpSync(join(REPO, 'node_modules', 'better-sqlite3', 'lib'), join(sqlite, 'lib'), { recursive: true });
  copyFileSync(join(REPO, 'node_modules', 'better-sqlite3', 'package.json'), join(sqlite, 'package.json'));
  mkdirSync(join(sqlite, 'build', 'Release'), { recursive: true });
  moduleBuiltFor(OTHER.abi, join(sqlite, 'build', 'Release', 'better_sqlite3.node'));

  const bin = join(project.packageDir, 'bin', 'nexo-memory.js');
  let stdout = '';
  let status = 0;
  try {
    stdout = execFileSync(process.execPath, [bin, 'snapshot', '--agent', 'ana', ...a.flags, '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { status: number; stdout: string };
    status = e.status;
    stdout = e.stdout;
  }
  assert.equal(status, 1, stdout);
  const error = JSON.parse(stdout).error;
  assert.equal(error.code, 'NATIVE_MODULE', error.message);
  assert.doesNotMatch(error.message, /taking the lock/);
  assert.ok(error.message.includes(`NODE_MODULE_VERSION ${OTHER.abi}`), error.message);
  assert.ok(error.message.includes(process.version), error.message);
  assert.ok(error.message.includes(`npm rebuild better-sqlite3\` in ${project.dir}`), error.message);
});
