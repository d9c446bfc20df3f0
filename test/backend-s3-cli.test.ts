// The CLI on S3-compatible storage (s3rver in a process of its own) with nothing but the SDK's own
// environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, …) and NEXO_MEMORY_REPO=s3://bucket/prefix:
// snapshot on host A, list, verify and restore on host B, prune; the secret is never printed. A bundle
// exported from host A's local store is imported (--store-only) on host B into the S3 repository. Two
// hosts snapshot different agents while a third prunes: nothing lost. Commands run in this process
// (runCli) but for the three that overlap, which are processes of the built CLI. A file of its own so it
// runs beside test/backend-s3.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runBuiltCli } from './helpers/built-cli.js';
import { type RunResult, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { bundleImportedInto, restoreAna } from './helpers/remote-cli.js';
import { type S3Server, startS3ServerProcess } from './helpers/s3-server.js';

const BUCKET = 'nexo-cli';
const SECRET = 'cli-secret-never-shown-0f3c';
let server: S3Server;

before(async () => {
  server = await startS3ServerProcess([BUCKET]);
});
after(async () => {
  await server?.stop();
});

test('s3: the CLI with --repo s3://… and the SDK environment: snapshot on A, list, verify and restore on B, prune', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 30, embeddings: 8, files: 3, commits: 2 });
  const b = sampleAgent(t, 'bob', { memories: 5, embeddings: 2, files: 1, commits: 1, seed: 9 });
  const prefix = `cli/${randomUUID()}`;
  const env = {
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: SECRET,
    AWS_REGION: 'us-east-1',
    NEXO_MEMORY_REPO: `s3://${BUCKET}/${prefix}`,
    NEXO_MEMORY_RESTORE_ALLOW: 'yes',
  };
  const cli = async (args: string[]) => {
    const r = await runCli([...args, '--json'], { env });
    assert.ok(!`${r.stdout}${r.stderr}`.includes(SECRET), 'the secret is never printed');
    return r;
  };
  const okJson = (r: RunResult, what: string) => {
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const snap = okJson(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
  assert.ok(readdirSync(join(server.dir, BUCKET, prefix, 'packs')).length > 0, 'packs in the bucket');
  const listed = okJson(await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list on B');
  const ids = (Array.isArray(listed) ? listed : listed.snapshots).map((m: { id: string }) => m.id);
  assert.deepEqual(ids, [snap.id]);
  const v = okJson(
    await cli(['verify', '--agent', 'ana', '--id', snap.id, '--state-root', b.stateRoot]),
    'verify on B',
  );
  assert.equal(v.status, 'verified');
  await restoreAna(cli, snap.id, a, b, 'restore on B');
  okJson(await cli(['prune', '--state-root', b.stateRoot]), 'prune on B');
});

/** The SDK's environment for s3rver and a fresh repository prefix. */
function s3Env(): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: SECRET,
    AWS_REGION: 'us-east-1',
    NEXO_MEMORY_RESTORE_ALLOW: 'yes',
  };
}

function okJson(r: RunResult, what: string) {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

const idsOf = (listed: { id: string }[] | { snapshots: { id: string }[] }) =>
  (Array.isArray(listed) ? listed : listed.snapshots).map((m) => m.id);

test('s3: a bundle exported from the local store of host A is imported on host B into the S3 repository (--store-only): it lists, verifies and restores', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 20, embeddings: 5, files: 2, commits: 2, seed: 5 });
  const b = sampleAgent(t, 'bob', { memories: 5, embeddings: 2, files: 1, commits: 1, seed: 7 });
  const repo = `s3://${BUCKET}/import/${randomUUID()}`;
  const env = s3Env();
  const cli = (args: string[]) => runCli([...args, '--json'], { env });
  await bundleImportedInto(t, cli, repo, a, b);
});

test('s3: two hosts snapshot different agents into one S3 repository while a third prunes: nothing lost', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 20, embeddings: 5, files: 2, commits: 2, seed: 31 });
  const b = sampleAgent(t, 'bob', { memories: 20, embeddings: 5, files: 2, commits: 2, seed: 37 });
  const c = sampleAgent(t, 'cyd', { memories: 5, embeddings: 2, files: 1, commits: 1, seed: 41 });
  const env = { ...s3Env(), NEXO_MEMORY_REPO: `s3://${BUCKET}/busy/${randomUUID()}` };
  const cli = (args: string[]) => runCli([...args, '--json'], { env });
  // The three hosts that overlap are processes of the built CLI (in-process runs are one at a time).
  const host = (args: string[]) => runBuiltCli([...args, '--json'], { env });
  // Garbage for prune: ana's first snapshot, deleted after a second one.
  const s1 = okJson(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'first snapshot of ana');
  appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- a line only the second snapshot has\n');
  const s2 = okJson(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'second snapshot of ana');
  okJson(
    await cli(['delete', '--agent', 'ana', '--id', s1.id, '--yes', '--state-root', a.stateRoot]),
    'delete',
  );
  appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- and a line only the third has\n');

  const [s3, sb, pruned] = await Promise.all([
    host(['snapshot', '--agent', 'ana', ...a.flags]),
    host(['snapshot', '--agent', 'bob', ...b.flags]),
    host(['prune', '--state-root', c.stateRoot]),
  ]);
  const third = okJson(s3, 'snapshot of ana on A');
  const ofBob = okJson(sb, 'snapshot of bob on B');
  okJson(pruned, 'prune on C');
  // the AWS SDK's notice about its future Node versions is not the CLI's to print (docs/decisions.md)
  for (const r of [s3, sb, pruned]) assert.doesNotMatch(r.stderr, /NodeVersionSupportWarning|AWS SDK/);

  const check = okJson(await cli(['check', '--read-data', '--state-root', c.stateRoot]), 'check on C');
  assert.deepEqual(check.problems ?? [], []);
  assert.deepEqual(
    idsOf(okJson(await cli(['list', '--agent', 'ana', '--state-root', c.stateRoot]), 'list ana')).sort(),
    [s2.id, third.id].sort(),
  );
  assert.deepEqual(
    idsOf(okJson(await cli(['list', '--agent', 'bob', '--state-root', c.stateRoot]), 'list bob')),
    [ofBob.id],
  );
  for (const [agent, id, from] of [
    ['ana', s2.id, a],
    ['ana', third.id, a],
    ['bob', ofBob.id, b],
  ] as const) {
    const root = tempDir(t, 'nexo-restore-');
    const flags = ['--state-root', join(root, 'state'), '--memdir-root', root, '--sqlite-root', root];
    okJson(await cli(['restore', '--agent', agent, '--from', id, ...flags]), `restore ${agent} ${id}`);
    if (id !== s2.id)
      assert.equal(
        readFileSync(join(root, agent, 'MEMORY.md'), 'utf8'),
        readFileSync(join(from.memdir, 'MEMORY.md'), 'utf8'),
        `${agent} ${id}`,
      );
  }
});
