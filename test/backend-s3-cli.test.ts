// The CLI on S3-compatible storage (s3rver in a process of its own) with nothing but the SDK's own
// environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, …) and NEXO_MEMORY_REPO=s3://bucket/prefix:
// snapshot on host A, list, verify and restore on host B, prune; the secret is never printed. A file of
// its own so it runs beside test/backend-s3.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunResult, runCli, sampleAgent } from './helpers/env.js';
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
