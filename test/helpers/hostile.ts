// Test helper for the hostile-bundle tests (verify.test.ts, verify-hostile.test.ts): a small real agent
// with history and its snapshot's entries to forge bundles from, and the check that a bundle is refused
// everywhere: verify says damaged (exit 2), restore and import (also into a repository store) refuse
// with exit 2, and nothing live or stored changed, nothing staged left behind.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { LocalSnapshotter } from '../../src/index.js';
import { verifyBundleFile, verifyExitCode } from '../../src/verify/verify.js';
import { type ArtifactSpec, readEntries } from './bundles.js';
import { type Agent, sampleAgent, tempDir } from './env.js';

/** The problem codes of a verify report. */
export const codes = (r: { problems: Array<{ code: string }> }): string[] => r.problems.map((p) => p.code);

/** A memory file artifact. */
export const mem = (path: string, data = 'x'): ArtifactSpec => ({ path, kind: 'memory_file', data });

/** SHA-256 of every file under the agent's memdir (its .git included) and database directory. */
export function liveDigest(a: Agent): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    if (!existsSync(dir)) {
      h.update(`absent ${dir}\n`);
      return;
    }
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else h.update(`${p}\n`).update(readFileSync(p));
    }
  };
  walk(a.memdir);
  walk(a.sqliteDir);
  return h.digest('hex');
}

/** A small real agent with history, its snapshot's entries and a directory for forged bundles. */
export async function hostileBase(t: TestContext) {
  const a = sampleAgent(t, 'ana', {
    files: 3,
    memories: 20,
    embeddings: 5,
    concepts: 5,
    compactions: 2,
    commits: 3,
  });
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  return { a, meta, entries: await readEntries(meta.bundle_path), dir: tempDir(t, 'nexo-hostile-') };
}

/**
 * Verify says damaged (exit 2, with `code` among the problems); restore and import refuse with exit 2
 * (with `code` when given), import into a repository store too (with the restore as another agent,
 * and --store-only as another agent and as the bundle's own); the live agent is unchanged, no
 * pre-restore snapshot was taken, the import target was not created, and nothing reached a repository.
 */
/** A message whose kind is said twice ("bundle damaged: bundle damaged: …"). */
const DOUBLED = /^([a-z ]+): (?:.*: )?\1: /;

export async function refusedEverywhere(a: Agent, bundle: string, code?: string): Promise<void> {
  const r = await verifyBundleFile(bundle);
  assert.equal(r.status, 'damaged', `verify: ${JSON.stringify(r.problems)}`);
  assert.equal(verifyExitCode(r), 2);
  if (code) assert.ok(codes(r).includes(code), `verify: ${JSON.stringify(r.problems)}`);
  const before = liveDigest(a);
  const listed = (await a.snapshotter.list('ana')).map((m) => m.id);
  // Nothing staged is left by a refused attempt (checked after each: the next restore of an agent
  // removes what an interrupted one left): staged memdirs (where a git bundle's pack is indexed as it
  // streams), staged databases, work directories.
  const staged = (dir: string) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((n) => n.includes('.restore-'))
          .map((n) => join(dir, n))
      : [];
  const noStaging = (who: string) =>
    assert.deepEqual(
      [
        ...staged(a.memdirRoot),
        ...['ana', 'clone'].flatMap((agent) => [
          ...staged(join(a.sqliteRoot, agent)),
          ...staged(join(a.stateRoot, 'tenants', 'default', 'snapshots', agent)),
        ]),
      ],
      [],
      `${who}: no staging left behind`,
    );
  for (const req of [
    { agentId: 'ana', bundle },
    { agentId: 'clone', bundle, import: {} },
  ]) {
    await assert.rejects(a.snapshotter.restore(req), (err: Error & { code?: string; exitCode?: number }) => {
      assert.equal(err.exitCode, 2, `${req.agentId}: ${err.code} ${err.message}`);
      if (code) assert.equal(err.code, code, `${req.agentId}: ${err.message}`);
      assert.doesNotMatch(err.message, DOUBLED, 'the message says its kind once');
      return true;
    });
    noStaging(`restore ${req.agentId}`);
  }
  const repository = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  for (const [name, attempt] of [
    ['import into a repository', () => repository.restore({ agentId: 'clone', bundle, import: {} })],
    ['import --store-only', () => repository.storeBundle({ agentId: 'clone', bundle })],
    ['import --store-only as its agent', () => repository.storeBundle({ agentId: 'ana', bundle })],
  ] as const) {
    await assert.rejects(attempt(), (err: Error & { code?: string; exitCode?: number }) => {
      assert.equal(err.exitCode, 2, `${name}: ${err.code} ${err.message}`);
      if (code) assert.equal(err.code, code, `${name}: ${err.message}`);
      assert.doesNotMatch(err.message, DOUBLED, 'the message says its kind once');
      return true;
    });
    noStaging(name);
  }
  assert.equal(liveDigest(a), before, 'the live agent is unchanged');
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    listed,
    'no pre-restore snapshot',
  );
  assert.equal(await a.snapshotter.agentExists('clone', 'default'), false, 'no imported agent');
  assert.equal(existsSync(join(a.stateRoot, 'repository')), false, 'nothing reached a repository');
}
