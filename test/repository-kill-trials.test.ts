// Kill -9 at random instants of snapshot, prune, import and migrate on the repository store (the
// trial driver of `npm run kill-trials`, a few trials): after each kill, check passes and every listed
// snapshot verifies and restores byte for byte what it captured. In a file of its own so the suite runs
// it beside the other repository tests (repository-ops.test.ts).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { killTrials, trialAgent } from '../scripts/trials/driver.js';
import { builtScript, tempDir } from './helpers/env.js';

test('kill -9 at random instants of snapshot, prune, import and migrate: check passes, every listed snapshot verifies and restores byte-for-byte what it captured (npm run kill-trials runs many more)', async (t) => {
  const ctx = await trialAgent(tempDir(t), { memories: 600, embeddings: 100, files: 15 });
  ctx.runOp = [builtScript('scripts/trials/run-op.ts')];
  const records = await killTrials(ctx, {
    trials: 4,
    seed: 5,
    readDataEvery: 1,
    restoreEach: 1,
    calibrationRuns: 1,
  });
  assert.deepEqual(
    records.map((r) => r.op),
    ['snapshot', 'prune', 'import', 'migrate'],
  );
  assert.ok(records.at(-1)!.restored >= 1, 'the last trial restores every listed snapshot');
  assert.match(records[3]!.settled ?? '', /next run moved/);
});
