// Migrate of a bundle store into the repository killed (-9) after a chosen step of a chosen bundle and
// at random instants: the next run finishes the job and nothing is lost (every snapshot listed once
// with its id, label, creator, time and pin, verified, its export holding what its bundle held). In a
// file of its own so the suite runs these slow real-process tests beside repository-exchange.test.ts.
// One random instant here (each kill costs a migrate of five bundles and a full check of the result);
// `npm run kill-trials` kills migrate at random instants in a quarter of its 120 trials.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startFixture } from './helpers/env.js';
import { assertMigrated, killStore, snapshotterOf } from './helpers/exchange.js';

/** Random instants per run of this file (the script runs many more; docs/operations.md, "Kill trials"). */
const RANDOM_INSTANTS = 1;

for (const [step, n] of [
  ['stored', 1],
  ['checked', 2],
  ['removed', 3],
  ['stored', 5],
] as const) {
  test(`kill -9 of migrate after bundle ${n} was ${step}: the next run finishes it, nothing lost`, async (t) => {
    const { a, expected } = await killStore(t);
    const child = startFixture(t, 'migrate-once.ts', [a.stateRoot, step, String(n)]);
    assert.equal(await child.exited, -1, `killed after ${step} ${n}: ${child.errors()}`);
    const r = await snapshotterOf(a, { store: 'auto' }).migrate();
    assert.equal(r.failed + r.skipped, 0, JSON.stringify(r.results));
    if (step !== 'removed')
      assert.ok(
        r.results.some((b) => b.resumed),
        'the interrupted bundle was resumed',
      );
    await assertMigrated(t, a, expected);
  });
}

test('kill -9 of migrate at a random instant: the run after the kill finishes the job, nothing lost', async (t) => {
  for (let trial = 0; trial < RANDOM_INSTANTS; trial++) {
    await t.test(`trial ${trial}`, async (tt) => {
      const { a, expected } = await killStore(tt);
      const child = startFixture(tt, 'migrate-once.ts', [a.stateRoot]);
      await child.ready;
      const delay = Math.floor(Math.random() * 2500);
      await new Promise((r) => setTimeout(r, delay));
      await child.killGroup('SIGKILL');
      const finished = child.output().includes('"results"');
      tt.diagnostic(`killed after ${delay} ms: ${finished ? 'it had finished' : 'in the middle of the run'}`);
      const r = await snapshotterOf(a, { store: 'auto' }).migrate();
      assert.equal(r.failed + r.skipped, 0, JSON.stringify(r.results));
      await assertMigrated(tt, a, expected);
    });
  }
});
