// The operations the kill trials and the concurrency rounds run in their own processes (one entry per
// operation): `prepare` runs in the trial driver before each trial and gives the operation something
// to do; `run` runs in the child process (scripts/trials/run-op.ts) and is what gets killed. Adding an
// operation (import, migrate) is one entry here.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LocalBackend } from '../../src/backend/local.js';
import { LocalSnapshotter } from '../../src/index.js';
import type { SampleAgentPaths } from '../sample-agent.js';

/** What a trial works on: one agent (its roots) and its repository. */
export interface TrialContext extends SampleAgentPaths {
  /** Two large contents that alternate in one memory file, so snapshots share and drop data in turn. */
  alternates: [string, string];
  /** Counts prepared trials (the alternation and the unique files follow it). */
  round: number;
}

/** The names of the repository's objects of each type that operations change. */
export type RepoObjects = Record<(typeof OBJECT_KINDS)[number], Set<string>>;
const OBJECT_KINDS = ['packs', 'index', 'snapshots', 'listing'] as const;

export async function repoObjects(p: SampleAgentPaths): Promise<RepoObjects> {
  const backend = new LocalBackend(join(p.stateRoot, 'repository'));
  const out = {} as RepoObjects;
  for (const type of OBJECT_KINDS) {
    out[type] = new Set();
    for await (const o of backend.list(type)) out[type].add(o.name);
  }
  return out;
}

const added = (before: Set<string>, after: Set<string>) => [...after].some((n) => !before.has(n));
const changed = (b: RepoObjects, a: RepoObjects) =>
  OBJECT_KINDS.some((k) => b[k].size !== a[k].size || added(b[k], a[k]));

export interface TrialOperation {
  /** Runs in the driver before the operation starts. */
  prepare(ctx: TrialContext): Promise<void>;
  /** Runs in the child process; its result is printed as JSON. */
  run(p: SampleAgentPaths): Promise<unknown>;
  /** How far a (killed) run got, from the repository's objects before and after: for the trial log. */
  effect(before: RepoObjects, after: RepoObjects, ctx: TrialContext): Promise<string>;
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
  // Incompressible and new each round: every snapshot writes packs, every prune has data to remove.
  writeFileSync(join(ctx.memdir, 'topics', 'round.md'), randomBytes(768 * 1024).toString('base64'));
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
    async effect(b, a) {
      if (added(b.listing, a.listing)) return 'listed';
      if (added(b.snapshots, a.snapshots)) return 'manifest, not listed';
      if (added(b.index, a.index)) return 'packs and index';
      if (added(b.packs, a.packs)) return 'packs';
      return 'nothing written';
    },
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
    async effect(b, a, ctx) {
      if (!changed(b, a)) return 'nothing removed';
      const left = await snapshotterOf(ctx).prune({ dryRun: true });
      const work =
        left.packs_removed + left.packs_rewritten + left.packs_unindexed_removed + left.unlisted_removed;
      return work === 0 && left.index_files_replaced <= 1 ? 'complete' : 'part done';
    },
  },
};
