// Kill -9 at random instants of snapshot, prune and import on the repository store (the trial driver
// of `npm run kill-trials`, one trial of each): after each kill, check passes and every listed snapshot
// verifies and restores byte for byte what it captured. Migrate, the driver's fourth operation, is
// killed here only by the script: repository-migrate-kill.test.ts kills it at chosen steps and at a
// random instant. In a file of its own so the suite runs it beside the other repository tests
// (repository-ops.test.ts).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { killTrials, trialAgent } from '../scripts/trials/driver.js';
import { builtScript, tempDir } from './helpers/env.js';

test('kill -9 at random instants of snapshot, prune and import: check passes, every listed snapshot verifies and restores byte-for-byte what it captured (npm run kill-trials runs many more, migrate too)', async (t) => {
  const ctx = await trialAgent(tempDir(t), { memories: 600, embeddings: 100, files: 15 });
  ctx.runOp = [builtScript('scripts/trials/run-op.ts')];
  const ops = ['snapshot', 'prune', 'import'];
  const records = await killTrials(ctx, {
    trials: ops.length,
    ops,
    seed: 5,
    readDataEvery: 1,
    restoreEach: 1,
    calibrationRuns: 1,
  });
  assert.deepEqual(
    records.map((r) => r.op),
    ops,
  );
  assert.ok(records.at(-1)!.restored >= 1, 'the last trial restores every listed snapshot');
});
