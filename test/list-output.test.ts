// `list --json` of many snapshots (src/cli/context.ts, printJsonArray): the built CLI prints a large
// answer in pieces as it makes them, and the pieces are exactly the text one JSON.stringify(…, null, 2)
// would have printed; a reader that waits before it reads gets all of it; a reader that stops early
// (`| head`) ends nothing badly. The repository holds 700 snapshots (copies of one, re-sealed).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, runBuiltCli } from './helpers/built-cli.js';
import { REPO, sampleAgent } from './helpers/env.js';
import { multiplySnapshot } from './helpers/many-snapshots.js';

const COUNT = 700;

test('list --json of 700 snapshots: the pretty JSON of one stringify, to a reader that waits and to one that stops early', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 5, embeddings: 2, files: 1, commits: 1 });
  const repo = join(a.root, 'repository');
  const snap = await runBuiltCli(['snapshot', '--agent', 'ana', ...a.flags, '--repo', repo, '--json']);
  assert.equal(snap.code, 0, snap.stderr);
  await multiplySnapshot(repo, COUNT);
  const listArgs = [BIN, 'list', '--agent', 'ana', '--state-root', a.stateRoot, '--repo', repo, '--json'];

  const listed = await runBuiltCli(listArgs.slice(1));
  assert.equal(listed.code, 0, listed.stderr);
  const metas = JSON.parse(listed.stdout) as Array<{ id: string; created_at_ms: number }>;
  assert.equal(metas.length, COUNT);
  assert.equal(new Set(metas.map((m) => m.id)).size, COUNT, 'every snapshot once');
  assert.ok(
    metas.every((m, i) => i === 0 || m.created_at_ms < metas[i - 1]!.created_at_ms),
    'newest first',
  );
  assert.equal(listed.stdout, `${JSON.stringify(metas, null, 2)}\n`, 'byte for byte the one-piece text');

  // a reader that reads nothing for a while: the CLI waits for the pipe, then writes the rest
  const slow = spawn(process.execPath, listArgs, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  slow.stdout.pause();
  await sleep(500);
  const chunks: Buffer[] = [];
  slow.stdout.on('data', (c: Buffer) => chunks.push(c));
  slow.stdout.resume();
  const [slowCode] = (await once(slow, 'close')) as [number | null];
  assert.equal(slowCode, 0);
  assert.equal(Buffer.concat(chunks).toString('utf8'), listed.stdout, 'a slow reader gets the same text');

  // a reader that stops after its first piece (`| head -c 100`): exit 0, no stack trace
  const early = spawn(process.execPath, listArgs, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  early.stderr.on('data', (c) => {
    err += c;
  });
  early.stdout.once('data', () => early.stdout.destroy());
  const [earlyCode] = (await once(early, 'close')) as [number | null];
  assert.equal(earlyCode, 0, err);
  assert.doesNotMatch(err, /EPIPE|Error/);
});
