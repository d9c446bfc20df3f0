// Test helpers: temporary directories that are removed after each test, a sample agent with a ready
// snapshotter, running the CLI (in-process, helpers/cli.ts) and fixture scripts as real child processes,
// reading bundles with GNU tar.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import {
  buildSampleAgent,
  gitEnv,
  type SampleAgentOptions,
  type SampleAgentPaths,
} from '../../scripts/sample-agent.js';
import { LocalSnapshotter, type LocalSnapshotterOptions } from '../../src/index.js';
import { runOnHost, startProgramHost } from '../../src/util/program-host.js';
import { ensureBuilt } from './built-cli.js';
import { outsideEnv, runCliInProcess } from './cli.js';
import { REPO } from './repo.js';
import { transformed } from './transform.js';

// The suite's existing tests exercise the bundle store (the exchange format, and 0.2 state roots);
// test/repository-*.test.ts exercise the repository, the default of new state roots.
process.env.NEXO_MEMORY_STORE_FORMAT ??= 'bundles';

// A test process grows to 200-300 MB: every git the library forks from it costs more than from a small
// process, so the tests' library calls run git from the program host from the start, as the daemon does
// (src/util/program-host.ts; test/program-host.test.ts holds the host to a direct spawn's answers).
startProgramHost();

export { REPO };
export const CLI = join(REPO, 'src', 'cli', 'main.ts');

/** Fixture processes still running per test: stopped before that test's directories are removed. */
const fixtures = new WeakMap<TestContext, Array<() => Promise<void>>>();

/**
 * Registers `stop` (a process of the test: a daemon, a fixture) to run, and be waited for, before any
 * directory of the test (tempDir) is removed: a process still writing there made the removal fail
 * (ENOTEMPTY) now and then, whatever order the test's `after` hooks run in.
 */
export function stopBeforeCleanup(t: TestContext, stop: () => Promise<void>): void {
  fixtures.set(t, [...(fixtures.get(t) ?? []), stop]);
}

/** Sets `vars` in this process's environment for the rest of the test. */
export function setEnv(t: TestContext, vars: Record<string, string>): void {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  t.after(() => {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

export function tempDir(t: TestContext, prefix = 'nexo-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(async () => {
    await Promise.all((fixtures.get(t) ?? []).map((stop) => stop()));
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  });
  return dir;
}

/**
 * The sample agent is seeded and deterministic, so each set of options is built once (by the first
 * test process that needs it, into a cache under the temporary directory keyed by the builder's
 * source) and copied for every test: each test still owns a real, writable agent of its own. The copy
 * keeps modification times and refreshes the git index, so git sees the same clean work tree.
 */
const BUILDER = join(REPO, 'scripts', 'sample-agent.ts');
const CACHE = join(
  tmpdir(),
  `nexo-test-agents-${createHash('sha256').update(readFileSync(BUILDER)).digest('hex').slice(0, 16)}`,
);

export function copySampleAgent(
  root: string,
  agentId: string,
  opts: SampleAgentOptions = {},
): SampleAgentPaths {
  const key = createHash('sha256')
    .update(JSON.stringify([agentId, opts]))
    .digest('hex')
    .slice(0, 16);
  const template = join(CACHE, key);
  if (!existsSync(template)) {
    mkdirSync(CACHE, { recursive: true });
    const building = mkdtempSync(join(CACHE, `.${key}-`));
    buildSampleAgent(building, agentId, opts);
    try {
      renameSync(building, template); // atomic: another test process may have built it meanwhile
    } catch {
      rmSync(building, { recursive: true, force: true });
    }
  }
  cpSync(template, root, { recursive: true, preserveTimestamps: true });
  const paths: SampleAgentPaths = {
    root,
    agentId,
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    stateRoot: join(root, 'state'),
    memdir: join(root, 'memdir', agentId),
    sqliteDir: join(root, 'sqlite', agentId),
  };
  execFileSync('git', ['update-index', '-q', '--refresh'], {
    cwd: paths.memdir,
    env: gitEnv,
    stdio: 'ignore',
  });
  return paths;
}

/**
 * Writes `<root>/memory.yaml`: a `memory.snapshot` section naming the agent's three roots, then `lines`
 * (YAML under `snapshot:`, written as given, each indented four spaces by the caller). Returns its path.
 */
export function agentConfig(a: SampleAgentPaths, lines: string[] = []): string {
  const cfg = join(a.root, 'memory.yaml');
  writeFileSync(
    cfg,
    [
      'memory:',
      '  snapshot:',
      `    root: ${a.stateRoot}`,
      `    memdir_root: ${a.memdirRoot}`,
      `    sqlite_root: ${a.sqliteRoot}`,
      ...lines,
      '',
    ].join('\n'),
  );
  return cfg;
}

export interface Agent extends SampleAgentPaths {
  snapshotter: LocalSnapshotter;
  /** CLI flags pointing at this agent's roots. */
  flags: string[];
}

export function sampleAgent(
  t: TestContext,
  agentId = 'ana',
  opts: SampleAgentOptions = {},
  snap: Partial<LocalSnapshotterOptions> = {},
): Agent {
  const root = tempDir(t);
  copySampleAgent(root, agentId, opts);
  return agentAt(root, agentId, snap);
}

/** An agent copied from `from` (a sample agent's root, as a test left it) into a directory of its own. */
export function copiedAgent(t: TestContext, from: string, agentId = 'ana'): Agent {
  const root = tempDir(t);
  cpSync(from, root, { recursive: true, preserveTimestamps: true });
  return agentAt(root, agentId);
}

function agentAt(root: string, agentId: string, snap: Partial<LocalSnapshotterOptions> = {}): Agent {
  const p: SampleAgentPaths = {
    root,
    agentId,
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    stateRoot: join(root, 'state'),
    memdir: join(root, 'memdir', agentId),
    sqliteDir: join(root, 'sqlite', agentId),
  };
  return {
    ...p,
    snapshotter: new LocalSnapshotter({
      stateRoot: p.stateRoot,
      memdirRoot: p.memdirRoot,
      sqliteRoot: p.sqliteRoot,
      lockTimeoutMs: 5_000,
      ...snap,
    }),
    flags: ['--state-root', p.stateRoot, '--memdir-root', p.memdirRoot, '--sqlite-root', p.sqliteRoot],
  };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `git ARGS` in `dir` as scripts/sample-agent.ts's `git` runs it (its environment), started from the
 * program host when it is up: a fork of this 200-300 MB test process costs ~10 ms more wall and ~5 ms
 * more CPU per git than one of the small host (docs/operations.md, "stop 36"). Its standard output;
 * throws when git fails.
 */
export async function gitAsync(dir: string, args: string[]): Promise<string> {
  const run = { file: 'git', args, cwd: dir, env: gitEnv };
  const r =
    runOnHost(run) ??
    new Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }>((resolvePromise) => {
      execFile('git', args, { cwd: dir, env: gitEnv, encoding: 'buffer' }, (err, stdout, stderr) =>
        resolvePromise({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const { code, stdout, stderr } = await r;
  if (code !== 0) throw new Error(`git ${args.join(' ')} in ${dir}: exit ${code}: ${stderr.toString()}`);
  return stdout.toString('utf8');
}

/** Runs a TypeScript file of this repository as a child process: under tsx, a fixture as fixtureCommand says. */
export function runTs(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  const fixtures = join(REPO, 'test', 'fixtures');
  const path = resolve(REPO, file);
  const command = dirname(path) === fixtures ? fixtureCommand(basename(path)) : ['--import', 'tsx', file];
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [...command, ...args],
      { cwd: opts.cwd ?? REPO, env: { ...outsideEnv(), ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolvePromise({ code: typeof code === 'number' ? code : 1, stdout, stderr });
      },
    );
  });
}

/**
 * Runs `nexo-memory ARGS` in this process (helpers/cli.ts): for tests of what a command does and prints.
 * Tests of the process itself (exit of a real process, signals, kills, stdin, start-up) use runBuiltCli
 * (helpers/built-cli.ts).
 */
export const runCli = (
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> => runCliInProcess(args, opts);

/**
 * A TypeScript file of this repository (outside src/) as a module plain node runs against the built
 * package (helpers/transform.ts). Builds dist/ first when it is stale.
 */
export function builtScript(file: string): string {
  ensureBuilt();
  return transformed(resolve(REPO, file));
}

/**
 * The command that runs a fixture script (test/fixtures/*.ts) as a real process: its transform on the
 * built package (builtScript), so the process starts like the installed package instead of compiling
 * the library under tsx (about half a second of CPU per process, and again in every worker thread it
 * starts).
 */
export function fixtureCommand(file: string): string[] {
  return [builtScript(join('test', 'fixtures', file))];
}

/** Starts a fixture script and resolves once it prints `ready` on stdout. */
export function startFixture(t: TestContext, file: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [...fixtureCommand(file), ...args], {
    cwd: REPO,
    env: { ...outsideEnv(), ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true, // its own process group: killGroup also ends the git or sqlite3 it spawned
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  const ready = new Promise<void>((resolvePromise, reject) => {
    child.stdout.on('data', (c) => {
      out += c;
      if (out.includes('ready')) resolvePromise();
    });
    child.on('exit', (code) => reject(new Error(`fixture ${file} exited ${code} before ready: ${err}`)));
  });
  ready.catch(() => {}); // awaited by callers that need it; never an unhandled rejection
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code, signal) => r(code ?? (signal ? -1 : null))),
  );
  /** Sends `signal` to the fixture and everything it started, then waits for the fixture to exit. */
  const killGroup = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    }
    await exited;
  };
  stopBeforeCleanup(t, () => killGroup());
  t.after(() => killGroup());
  return { child, ready, exited, killGroup, output: () => out, errors: () => err };
}

/** Extracts a bundle with GNU tar (zstd filter) into a new directory. */
export function gnuExtract(t: TestContext, bundle: string): string {
  const dir = tempDir(t, 'nexo-extract-');
  execFileSync('tar', ['--zstd', '-xf', bundle, '-C', dir]);
  return dir;
}

export function gnuList(bundle: string): string[] {
  return execFileSync('tar', ['--zstd', '-tf', bundle]).toString().trim().split('\n');
}
