// The CLI on S3-compatible storage (s3rver in a process of its own) with nothing but the SDK's own
// environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, …) and NEXO_MEMORY_REPO=s3://bucket/prefix:
// snapshot on host A, list, verify and restore on host B, prune; the secret is never printed. A bundle
// exported from host A's local store is imported (--store-only) on host B into the S3 repository. A file
// of its own so it runs beside test/backend-s3.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunResult, runCli, sampleAgent, tempDir } from './helpers/env.js';
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
  okJson(await cli(['restore', '--agent', 'ana', '--from', snap.id, ...b.flags]), 'restore on B');
  assert.equal(
    readFileSync(join(b.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
    readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'),
  );
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
  // Host A: its own local repository, and a bundle exported from it.
  const local = okJson(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'local snapshot on A');
  const out = tempDir(t, 'nexo-bundle-');
  const exported = okJson(
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
  // Host B: into the S3 repository, nothing live.
  const imported = okJson(
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
  assert.equal(imported.snapshot.id, local.id);
  const remote = (args: string[]) => cli([...args, '--repo', repo]);
  assert.deepEqual(
    idsOf(okJson(await remote(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list')),
    [local.id],
  );
  const v = okJson(
    await remote(['verify', '--agent', 'ana', '--id', local.id, '--state-root', b.stateRoot]),
    'verify on B',
  );
  assert.equal(v.status, 'verified');
  okJson(await remote(['restore', '--agent', 'ana', '--from', local.id, ...b.flags]), 'restore on B');
  assert.equal(
    readFileSync(join(b.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
    readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'),
  );
});
