// The operations the kill trials and the concurrency rounds run in their own processes (one entry per
// operation): `prepare` runs in the trial driver before each trial and gives the operation something
// to do; `run` runs in the child process (scripts/trials/run-op.ts) and is what gets killed. Adding an
// operation (import, migrate) is one entry here.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LocalSnapshotter } from '../../src/index.js';
import type { SampleAgentPaths } from '../sample-agent.js';

/** What a trial works on: one agent (its roots) and its repository. */
export interface TrialContext extends SampleAgentPaths {
  /** Two large contents that alternate in one memory file, so snapshots share and drop data in turn. */
  alternates: [string, string];
  /** Counts prepared trials (the alternation and the unique files follow it). */
  round: number;
}

export interface TrialOperation {
  /** Runs in the driver before the operation starts. */
  prepare(ctx: TrialContext): Promise<void>;
  /** Runs in the child process; its result is printed as JSON. */
  run(p: SampleAgentPaths): Promise<unknown>;
}

export const snapshotterOf = (p: SampleAgentPaths): LocalSnapshotter =>
  new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    store: 'repository',
    lockTimeoutMs: 120_000,
  });

/** Changes the agent: the alternating file, a file unique to this round, one new memory row. */
export function changeAgent(ctx: TrialContext): void {
  ctx.round++;
  writeFileSync(join(ctx.memdir, 'topics', 'alternate.md'), ctx.alternates[ctx.round % 2]!);
  writeFileSync(join(ctx.memdir, 'topics', 'round.md'), randomBytes(96 * 1024).toString('base64'));
  const db = new Database(join(ctx.sqliteDir, 'long_term.sqlite'));
  db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (?, 'fact', ?, 0.5)").run(
    ctx.round,
    `round ${ctx.round} ${randomBytes(512).toString('hex')}`,
  );
  db.close();
}

/** Forgets every snapshot of the agent but the newest `keep`: their data is what prune removes. */
export async function forgetAllBut(ctx: TrialContext, keep: number): Promise<void> {
  const s = snapshotterOf(ctx);
  for (const m of (await s.list(ctx.agentId)).slice(keep)) await s.delete(ctx.agentId, 'default', m.id);
}

export const TRIAL_OPS: Record<string, TrialOperation> = {
  snapshot: {
    async prepare(ctx) {
      changeAgent(ctx);
    },
    run: (p) => snapshotterOf(p).snapshot({ agentId: p.agentId, label: 'trial' }),
  },
  prune: {
    async prepare(ctx) {
      // Two new snapshots, then all but the newest forgotten: prune removes some packs and rewrites others.
      for (let i = 0; i < 2; i++) {
        changeAgent(ctx);
        await snapshotterOf(ctx).snapshot({ agentId: ctx.agentId, label: 'for prune' });
      }
      await forgetAllBut(ctx, 1);
    },
    run: (p) => snapshotterOf(p).prune(),
  },
};
