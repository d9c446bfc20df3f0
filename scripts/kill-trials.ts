// `npm run kill-trials [-- --trials N] [--concurrent N] [--restore-each N] [--seed S] [--keep]`: kill -9
// trials of every operation of scripts/trials/ops.ts (snapshot, prune, import, migrate) at random
// instants (default 120 in all), then rounds of a snapshot and a prune started at once (default 30).
// After each: `check` passes, every listed snapshot verifies, and snapshots restore byte-for-byte what
// they captured — the ones not restored before and a random sample of the rest, at most N per trial
// (default 3), every listed one after the last trial. The restore is compared with the agent's content
// recorded when the snapshot was prepared (memdir files and HEAD, state values, database dumps) and its
// database files with an export of the snapshot unpacked by GNU tar (scripts/trials/restore-check.ts).
// Prints one line per trial and a summary; exits 1 at the first damage, leaving the directory for
// inspection.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { concurrentRounds, killTrials, trialAgent } from './trials/driver.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '120' },
    concurrent: { type: 'string', default: '30' },
    'restore-each': { type: 'string', default: '3' },
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const trials = Number(values.trials);
const rounds = Number(values.concurrent);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const root = mkdtempSync(join(tmpdir(), 'nexo-kill-trials-'));
process.stdout.write(
  `kill trials: ${trials} trials, ${rounds} concurrent rounds, seed ${seed}, in ${root}\n`,
);
const t0 = Date.now();
try {
  const ctx = await trialAgent(root);
  const records = await killTrials(ctx, {
    trials,
    seed,
    restoreEach: Number(values['restore-each']),
    onTrial: (r) =>
      process.stdout.write(
        `trial ${String(r.trial).padStart(3)} ${r.op.padEnd(8)} kill at ${r.killAtMs.toFixed(0).padStart(5)} ms: ` +
          `${r.killed ? 'killed' : 'finished first'} (${r.effect}${r.settled ? `; ${r.settled}` : ''}); ` +
          `check ok, ${r.snapshots} snapshot(s) verified, ${r.restored} restored byte-for-byte\n`,
      ),
  });
  const concurrent = await concurrentRounds(ctx, {
    rounds,
    seed: seed + 1,
    onRound: (r) =>
      process.stdout.write(
        `round ${String(r.round).padStart(3)} snapshot + prune ${r.pruneDelayMs.toFixed(0).padStart(5)} ms later: both ok; check --read-data ok, ${r.snapshots} snapshot(s) verified\n`,
      ),
  });
  const summary: Record<string, { trials: number; killed: number; effects: Map<string, number> }> = {};
  for (const r of records) {
    const s = summary[r.op] ?? { trials: 0, killed: 0, effects: new Map<string, number>() };
    summary[r.op] = s;
    s.trials++;
    if (r.killed) s.killed++;
    s.effects.set(r.effect, (s.effects.get(r.effect) ?? 0) + 1);
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  process.stdout.write(
    `\nall intact after ${records.length} kill trials and ${concurrent.length} concurrent rounds, in ${secs} s (seed ${seed})\n`,
  );
  for (const [op, s] of Object.entries(summary)) {
    const effects = [...s.effects].map(([e, n]) => `${e} ${n}`).join(', ');
    process.stdout.write(
      `  ${op}: ${s.trials} trials, ${s.killed} killed while running; got as far as: ${effects}\n`,
    );
  }
  if (!values.keep) rmSync(root, { recursive: true, force: true });
} catch (err) {
  process.stdout.write(`\nDAMAGE: ${(err as Error).message}\n(left in ${root}; seed ${seed})\n`);
  process.exitCode = 1;
}
