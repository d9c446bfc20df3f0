// What survives a power cut, read from the system calls the product makes (strace of real processes:
// the built CLI, or a fixture of the library): a power cut cannot be made in a test, but the order of
// fsync, syncfs, mkdir, unlink and rename can be observed, and it is what decides what a file system
// keeps. Each test names a rule of docs/operations.md ("Durability and failure behaviour") that a
// review of the traces found broken (stop 63): git objects fetched into a staged memdir after the
// staging was synced; a state value removed without syncing its directory before the journal that
// records it; new directories whose own entry was never synced; a removed pin that a power cut could
// bring back. strace must be installed (.ci/run installs it); the tests fail without it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, type TestContext, test } from 'node:test';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import { fixtureCommand, REPO, sampleAgent, tempDir } from './helpers/env.js';

const STRACE = '/usr/bin/strace';
const SMALL = { files: 3, commits: 2, memories: 5, embeddings: 2, concepts: 2, compactions: 1 };

before(() => {
  assert.ok(existsSync(STRACE), `${STRACE} is missing: apt-get install strace (.ci/run installs it)`);
  ensureBuilt();
});

/** One system call of a trace, in the order the calls completed. */
interface Call {
  name: string;
  args: string;
  ok: boolean;
}

const TRACED =
  'mkdir,mkdirat,rename,renameat,renameat2,link,linkat,unlink,unlinkat,fsync,fdatasync,syncfs,execve';

/**
 * Runs `argv` (after `node`) under strace, following every process and thread, and returns its calls
 * (a call another thread interrupted is taken where it completed) with the command's own result.
 */
function traced(
  t: TestContext,
  argv: string[],
  env: NodeJS.ProcessEnv = {},
): { calls: Call[]; stdout: string } {
  const out = join(tempDir(t), 'strace.txt');
  const r = spawnSync(
    STRACE,
    [
      '-f',
      '--seccomp-bpf',
      '-qq',
      '-y',
      '-s',
      '4096',
      '-e',
      `trace=${TRACED}`,
      '-o',
      out,
      process.execPath,
      ...argv,
    ],
    // without eatmydata (scripts/test.sh): its fsync and syncfs return before reaching the kernel
    { cwd: REPO, env: { ...withoutEatmydata(), ...env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
  const pending = new Map<string, string>();
  const calls: Call[] = [];
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, pid, rest] = m as unknown as [string, string, string];
    if (rest.endsWith('<unfinished ...>')) {
      pending.set(pid, rest.slice(0, -'<unfinished ...>'.length));
      continue;
    }
    let text = rest;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed) text = (pending.get(pid) ?? `${resumed[1]}(`) + resumed[2];
    const call = /^(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(text);
    if (call) calls.push({ name: call[1]!, args: call[2]!, ok: Number(call[3]) >= 0 });
  }
  return { calls, stdout: r.stdout };
}

/** This process's environment without eatmydata's preload. */
function withoutEatmydata(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const kept = (env.LD_PRELOAD ?? '')
    .split(/[\s:]+/)
    .filter((lib) => lib !== '' && !lib.includes('eatmydata'));
  if (kept.length > 0) env.LD_PRELOAD = kept.join(':');
  else delete env.LD_PRELOAD;
  return env;
}

/** The index of the first call at or after `from` that `match` accepts; -1 when none. */
function indexOf(calls: Call[], match: (c: Call) => boolean, from = 0): number {
  for (let i = from; i < calls.length; i++) if (match(calls[i]!)) return i;
  return -1;
}

/** An fsync (or fdatasync) of the directory `dir` (strace -y shows the descriptor's path). */
const fsyncOf =
  (dir: string) =>
  (c: Call): boolean =>
    c.ok &&
    (c.name === 'fsync' || c.name === 'fdatasync') &&
    c.args.startsWith(`${/^\d+/.exec(c.args)?.[0]}<${dir}>`);
const isSyncfs = (c: Call): boolean => c.ok && c.name === 'syncfs';
/** The quoted path arguments of a call. */
const pathsOf = (c: Call): string[] => [...c.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);

test('a restore that fetches the live HEAD into its staged repository (a commit made meanwhile) syncs what git wrote before the swap makes it live', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const { calls, stdout } = traced(
    t,
    [...fixtureCommand('restore-moving-head.ts'), a.stateRoot, a.memdirRoot, a.sqliteRoot, 'ana', snap.id],
    { NEXO_MEMORY_RESTORE_ALLOW: 'true' },
  );
  assert.match(stdout, /"agent_id":"ana"/);
  // the last fetch of the live HEAD into the tag (the first made the tag while staging)
  const fetches = calls
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => c.name === 'execve' && c.ok && c.args.includes('"+HEAD:refs/tags/pre-restore-'));
  assert.ok(fetches.length >= 2, `the tag made while staging, then moved: ${fetches.length} fetches`);
  const fetch = fetches[fetches.length - 1]!.i;
  assert.ok(fetch >= 0, 'the pre-restore tag followed the live HEAD (git fetch into the staged repository)');
  const swap = indexOf(
    calls,
    (c) =>
      c.ok &&
      c.name.startsWith('rename') &&
      pathsOf(c)[0]?.includes('/.ana.restore-') === true &&
      pathsOf(c)[1] === a.memdir,
    fetch,
  );
  assert.ok(swap > fetch, 'the staged memdir was swapped in after the fetch');
  assert.ok(
    indexOf(calls, isSyncfs, fetch) > fetch && indexOf(calls, isSyncfs, fetch) < swap,
    'a syncfs between the fetch and the swap',
  );
});

test('a restore that removes a state value syncs the state directory before the journal that commits it', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const stateFile = join(a.sqliteDir, 'dream_run.json');
  if (existsSync(stateFile)) unlinkSync(stateFile);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(stateFile, '{"last_run_ms": 1}\n');
  const journal = join(a.stateRoot, 'tenants', 'default', 'journals', 'ana.restore.json');
  const { calls } = traced(
    t,
    [BIN, 'restore', '--agent', 'ana', '--from', snap.id, '--no-auto-pre-snapshot', '--json', ...a.flags],
    { NEXO_MEMORY_RESTORE_ALLOW: 'true' },
  );
  assert.equal(existsSync(stateFile), false, 'the state value was removed');
  const removed = indexOf(
    calls,
    (c) => c.ok && c.name.startsWith('unlink') && pathsOf(c).includes(stateFile),
  );
  assert.ok(removed >= 0, 'unlink of the state file');
  const journals = calls
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => c.ok && c.name.startsWith('rename') && pathsOf(c)[1] === journal);
  assert.equal(journals.length, 2, 'the prepared and the committed journal');
  const committed = journals[1]!.i;
  const synced = indexOf(calls, fsyncOf(dirname(stateFile)), removed);
  assert.ok(
    synced > removed && synced < committed,
    'the state directory synced before the committed journal',
  );
});

for (const store of ['bundles', 'repository'] as const)
  test(`every directory a first snapshot makes is synced in its parent (${store})`, async (t) => {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    const { calls } = traced(t, [BIN, 'snapshot', '--agent', 'ana', '--no-progress', '--json', ...a.flags], {
      NEXO_MEMORY_STORE_FORMAT: store,
    });
    const made = calls
      .map((c, i) => ({ c, i }))
      .filter(({ c }) => c.ok && c.name.startsWith('mkdir'))
      .map(({ c, i }) => ({ path: pathsOf(c)[0]!, i }))
      // what stays: the store's directories (not staging or scratch directories removed again), but for
      // the locks' directory: a lock is the running processes' (a power cut ends them all), its files
      // never synced (docs/locking.md)
      .filter(
        ({ path }) => path.startsWith(`${a.stateRoot}/`) && existsSync(path) && !path.endsWith('/locks'),
      );
    assert.ok(made.length >= 3, `the store's directories were made: ${JSON.stringify(made)}`);
    const unsynced = made.filter(({ path, i }) => indexOf(calls, fsyncOf(dirname(path)), i) < 0);
    assert.deepEqual(unsynced, [], 'each one synced in its parent after it was made');
  });

test('unpin of a bundle syncs the directory the pin was removed from', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  await a.snapshotter.pin('ana', 'default', snap.id);
  const pin = `${snap.bundle_path}.pin`;
  assert.ok(existsSync(pin));
  const { calls } = traced(t, [BIN, 'unpin', '--agent', 'ana', '--id', snap.id, '--state-root', a.stateRoot]);
  assert.equal(existsSync(pin), false);
  const removed = indexOf(calls, (c) => c.ok && c.name.startsWith('unlink') && pathsOf(c).includes(pin));
  assert.ok(removed >= 0, 'unlink of the pin');
  assert.ok(indexOf(calls, fsyncOf(dirname(pin)), removed) > removed, 'its directory synced after');
});
