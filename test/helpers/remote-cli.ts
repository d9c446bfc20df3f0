// Test helper: the CLI steps the remote-store CLI tests (backend-s3-cli.test.ts, remote-nats.test.ts) run
// alike whatever the store: a restore on another host that must bring back ana's MEMORY.md, and a bundle
// exported on one host and imported (--store-only) on another into the shared repository. Each test
// passes its own `cli`: how a command reaches its store (a config, the SDK's environment, …).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type Json, ok } from './cli-json.js';
import { type Agent, type RunResult, tempDir } from './env.js';

/** Runs the CLI with these arguments (and whatever the test adds: --json, its store). */
export type Cli = (args: string[]) => Promise<RunResult>;

const ids = (out: Json): string[] => (Array.isArray(out) ? out : out.snapshots).map((m: Json) => m.id);

/**
 * Restores ana's snapshot `id` on host `to` (`what` names the step) and checks that the MEMORY.md it
 * wrote there is the one of ana on host `from` (`message`: the assertion's, if any).
 */
export async function restoreAna(
  cli: Cli,
  id: string,
  from: Agent,
  to: Agent,
  what: string,
  message?: string,
): Promise<void> {
  ok(await cli(['restore', '--agent', 'ana', '--from', id, ...to.flags]), what);
  assert.equal(
    readFileSync(join(to.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
    readFileSync(join(from.memdir, 'MEMORY.md'), 'utf8'),
    message,
  );
}

/**
 * Host `a` snapshots ana into its own local repository and exports the snapshot as a bundle; host `b`
 * imports the bundle into `repo` with --store-only (nothing live changes on B), where the snapshot keeps
 * its id, lists, verifies and restores on B. `cli` runs a command on the local store unless it names
 * --repo.
 */
export async function bundleImportedInto(
  t: TestContext,
  cli: Cli,
  repo: string,
  a: Agent,
  b: Agent,
): Promise<void> {
  // Host A: its own local repository, and a bundle exported from it.
  const local = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'local snapshot on A');
  const out = tempDir(t, 'nexo-bundle-');
  const exported = ok(
    await cli([
      'export',
      '--agent',
      'ana',
      '--id',
      local.id,
      '--to',
      `${out}/`,
      '--no-redact',
      '--state-root',
      a.stateRoot,
    ]),
    'export on A',
  );
  // Host B stores it in the shared repository; nothing live changes there.
  const imported = ok(
    await cli([
      'import',
      '--from',
      exported.path,
      '--agent',
      'ana',
      '--store-only',
      '--repo',
      repo,
      ...b.flags,
    ]),
    'import on B',
  );
  assert.equal(imported.stored, 'new');
  const id = imported.snapshot.id;
  assert.equal(id, local.id, 'the bundle keeps its snapshot id');
  const remote = (args: string[]) => cli([...args, '--repo', repo]);
  assert.deepEqual(ids(ok(await remote(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list')), [
    id,
  ]);
  const v = ok(
    await remote(['verify', '--agent', 'ana', '--id', id, '--state-root', b.stateRoot]),
    'verify on B',
  );
  assert.equal(v.status, 'verified');
  await restoreAna(remote, id, a, b, 'restore on B', "ana's memory arrived on B through the imported bundle");
}
