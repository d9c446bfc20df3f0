// Transfer to and from a remote repository follows what changed, not the agent's size (issue 12,
// "transfer only what is new"): measured by the store metrics the CLI writes with --metrics-file
// (bytes uploaded and downloaded through the backend; each run's own: the CLI runs in the test process,
// `main(argv)`, and a run's metrics are its own), against s3rver in a process of its own. The
// second snapshot of an agent after a small change uploads a small fraction of the first; a restore of
// one agent on another host downloads that agent's data, not the other agents' packs in the repository.

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { type RunResult, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { type S3Server, startS3ServerProcess } from './helpers/s3-server.js';

const BUCKET = 'nexo-transfer';
let server: S3Server;

before(async () => {
  server = await startS3ServerProcess([BUCKET]);
});
after(async () => {
  await server?.stop();
});

/** Bytes the run moved through the s3 backend in `direction`, from a metrics textfile (0 when none). */
function storeBytes(file: string, direction: 'up' | 'down'): number {
  const text = readFileSync(file, 'utf8');
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('nexo_memory_snapshot_store_bytes_total{')) continue;
    if (!line.includes('backend="s3"') || !line.includes(`direction="${direction}"`)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

test('s3: the second snapshot uploads only what changed; a restore downloads only its agent', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 1500, embeddings: 200, files: 12, commits: 3 });
  const bob = sampleAgent(t, 'bob', { memories: 20, embeddings: 4, files: 2, commits: 1, seed: 5 });
  const host2 = sampleAgent(t, 'ana', { memories: 3, embeddings: 1, files: 1, commits: 1, seed: 11 });
  const metrics = tempDir(t);
  const env = {
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    NEXO_MEMORY_REPO: `s3://${BUCKET}/${randomUUID()}`,
    NEXO_MEMORY_RESTORE_ALLOW: 'yes',
  };
  let run = 0;
  /** Runs the CLI (each host its own state root) and returns its JSON and the metrics file it wrote. */
  const cli = async (args: string[], what: string): Promise<{ out: { id: string }; metrics: string }> => {
    const file = join(metrics, `run-${++run}.prom`);
    const r: RunResult = await runCli([...args, '--json', '--metrics-file', file], { env });
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return { out: JSON.parse(r.stdout), metrics: file };
  };

  const first = await cli(['snapshot', '--agent', 'ana', ...a.flags], 'first snapshot');
  const firstUp = storeBytes(first.metrics, 'up');
  assert.ok(firstUp > 200_000, `the first snapshot uploads the agent (${firstUp} bytes)`);

  // Another agent's data in the same repository: incompressible, larger than ana's whole upload.
  writeFileSync(join(bob.memdir, 'topics', 'big.md'), randomBytes(firstUp).toString('base64'));
  const bobSnap = await cli(['snapshot', '--agent', 'bob', ...bob.flags], 'snapshot of bob');
  assert.ok(storeBytes(bobSnap.metrics, 'up') > firstUp, 'bob uploaded more than ana');

  // A small change: one memory row and a line in MEMORY.md.
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (?, 'fact', ?, 0.5)").run(
    Date.now(),
    'learned after the first snapshot',
  );
  db.close();
  appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- one more thing\n');
  const second = await cli(['snapshot', '--agent', 'ana', ...a.flags], 'second snapshot');
  const secondUp = storeBytes(second.metrics, 'up');
  assert.ok(secondUp > 0, 'the second snapshot uploads something');
  assert.ok(
    secondUp < firstUp * 0.15,
    `the second snapshot uploads ${secondUp} bytes, not a full copy (the first: ${firstUp})`,
  );

  // Host 2 restores ana's newest snapshot: it downloads ana's data, never bob's larger packs.
  const restored = await cli(
    ['restore', '--agent', 'ana', '--from', second.out.id, '--no-auto-pre-snapshot', ...host2.flags],
    'restore on host 2',
  );
  const down = storeBytes(restored.metrics, 'down');
  assert.ok(down > 0, 'the restore downloaded the snapshot');
  assert.ok(
    down < (firstUp + secondUp) * 1.25,
    `the restore downloads ${down} bytes: ana's data (${firstUp + secondUp} uploaded), not bob's`,
  );
  t.diagnostic(`uploaded ${firstUp} then ${secondUp} bytes; the restore downloaded ${down}`);
  assert.equal(
    readFileSync(join(host2.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
    readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'),
  );
});
