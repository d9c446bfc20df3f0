// The operations the kill trials and the concurrency rounds run in their own processes (one entry per
// operation): `prepare` runs in the trial driver before each trial, gives the operation something to
// do and records what the snapshots it makes hold (restore-check.ts `Capture`); `run` runs in the
// child process (scripts/trials/run-op.ts) and is what gets killed; `effect` says how far it got;
// `settle` (migrate) runs after the repository was found intact and finishes what the kill left, as
// the next run of the operation would. snapshot, prune, import (of a bundle of the same agent, stored
// only: `import --store-only`; the restore an import also does is a restore, killed in
// test/repository-restore.test.ts) and migrate (two 0.2 bundles written into the state root).

import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LocalBackend } from '../../src/backend/local.js';
import { LocalSnapshotter } from '../../src/index.js';
import type { SampleAgentPaths } from '../sample-agent.js';
import { type Capture, captureAgent } from './restore-check.js';

/** What the child process is given: the agent's roots and, for import, the bundle. */
export interface OpPaths extends SampleAgentPaths {
  bundle?: string;
}

/** What a trial works on: one agent (its roots) and its repository. */
export interface TrialContext extends OpPaths {
  /** Two large contents that alternate in one memory file, so snapshots share and drop data in turn. */
  alternates: [string, string];
  /** Counts prepared trials (the alternation and the unique files follow it). */
  round: number;
  /** What each snapshot of the agent holds, by snapshot id (recorded when it was taken or prepared). */
  captures: Map<string, Capture>;
  /** What a snapshot the running operation takes holds (its id is known only afterwards). */
  pending?: Capture;
  /**
   * The node arguments that run scripts/trials/run-op.ts (default: it under tsx); the tests give its
   * transform against the built package (test/helpers/env.ts builtScript).
   */
  runOp?: string[];
}

/** The child's part of the context. */
export const opPaths = (ctx: TrialContext): OpPaths => {
  const { alternates: _a, round: _r, captures: _c, pending: _p, runOp: _o, ...paths } = ctx;
  return paths;
};

/** The names of the repository's objects of each type that operations change, and the agent's bundles. */
export type RepoObjects = Record<(typeof OBJECT_KINDS)[number], Set<string>> & { bundles: Set<string> };
const OBJECT_KINDS = ['packs', 'index', 'snapshots', 'listing'] as const;

export async function repoObjects(p: SampleAgentPaths): Promise<RepoObjects> {
  const backend = new LocalBackend(join(p.stateRoot, 'repository'));
  const out = { bundles: new Set(bundleNames(p)) } as RepoObjects;
  for (const type of OBJECT_KINDS) {
    out[type] = new Set();
    for await (const o of backend.list(type)) out[type].add(o.name);
  }
  return out;
}

/** The agent's 0.2 bundle files in the state root. */
export function bundleNames(p: SampleAgentPaths): string[] {
  const dir = snapshotterOf(p).layout.snapshotsDir('default', p.agentId);
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.tar.zst')) : [];
}

const added = (before: Set<string>, after: Set<string>) => [...after].some((n) => !before.has(n));
const changed = (b: RepoObjects, a: RepoObjects) =>
  OBJECT_KINDS.some((k) => b[k].size !== a[k].size || added(b[k], a[k]));

export interface TrialOperation {
  /** Runs in the driver before the operation starts. */
  prepare(ctx: TrialContext): Promise<void>;
  /** Runs in the child process; its result is printed as JSON. */
  run(p: OpPaths): Promise<unknown>;
  /** How far a (killed) run got, from the repository's objects before and after: for the trial log. */
  effect(before: RepoObjects, after: RepoObjects, ctx: TrialContext): Promise<string>;
  /** Runs after the trial's repository was found intact: finishes the work (throws if it cannot). */
  settle?(ctx: TrialContext): Promise<string>;
}

export const snapshotterOf = (
  p: SampleAgentPaths,
  store: 'repository' | 'bundles' = 'repository',
): LocalSnapshotter =>
  new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    store,
    lockTimeoutMs: 120_000,
  });

/** Takes a snapshot in the driver (store: the repository or 0.2 bundles) and records what it holds. */
export async function snapshotCaptured(
  ctx: TrialContext,
  label: string,
  store: 'repository' | 'bundles' = 'repository',
  stateRoot = ctx.stateRoot,
) {
  const capture = captureAgent(ctx);
  const meta = await snapshotterOf({ ...ctx, stateRoot }, store).snapshot({ agentId: ctx.agentId, label });
  ctx.captures.set(meta.id, capture);
  return meta;
}

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
      ctx.pending = captureAgent(ctx);
    },
    run: (p) => snapshotterOf(p).snapshot({ agentId: p.agentId, label: 'trial' }),
    effect: async (b, a) => storeEffect(b, a),
  },
  prune: {
    async prepare(ctx) {
      // Two new snapshots, then all but the newest forgotten: prune removes some packs and rewrites others.
      ctx.pending = undefined;
      for (let i = 0; i < 2; i++) {
        changeAgent(ctx);
        await snapshotCaptured(ctx, 'for prune');
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
  import: {
    async prepare(ctx) {
      // a bundle of the agent as it is now, made in a state root of its own: what a host ships
      ctx.pending = undefined;
      changeAgent(ctx);
      const source = join(ctx.root, 'import-source');
      rmSync(source, { recursive: true, force: true });
      ctx.bundle = (await snapshotCaptured(ctx, 'to import', 'bundles', source)).bundle_path;
    },
    run: (p) => snapshotterOf(p).storeBundle({ bundle: p.bundle!, agentId: p.agentId }),
    effect: async (b, a) => storeEffect(b, a),
  },
  migrate: {
    async prepare(ctx) {
      // two 0.2 bundles in the state root (a store that has both, as after an upgrade)
      ctx.pending = undefined;
      for (let i = 0; i < 2; i++) {
        changeAgent(ctx);
        await snapshotCaptured(ctx, 'to migrate', 'bundles');
      }
    },
    run: (p) => snapshotterOf(p).migrate(),
    async effect(b, a) {
      const moved = [...b.bundles].filter((n) => !a.bundles.has(n)).length;
      if (a.bundles.size === 0) return 'all moved';
      if (moved > 0) return `${moved} of ${b.bundles.size} moved`;
      return changed(b, a) ? 'stored, no bundle removed' : 'nothing written';
    },
    async settle(ctx) {
      // the next run finishes it: every bundle moved and checked, none failed, each id now a repository
      // snapshot (the restores of the following trials compare their bytes)
      const s = snapshotterOf(ctx);
      const r = await s.migrate();
      if (r.failed + r.skipped > 0 || bundleNames(ctx).length > 0)
        throw new Error(`the run after the kill did not finish the migration: ${JSON.stringify(r)}`);
      const listed = await s.list(ctx.agentId);
      for (const m of listed)
        if (!m.bundle_path.includes('#')) throw new Error(`snapshot ${m.id} is still a bundle after migrate`);
      const resumed = r.results.filter((x) => x.resumed).length;
      return `next run moved ${r.migrated}${resumed ? ` (${resumed} resumed)` : ''}`;
    },
  },
};

/** How far a snapshot or import got, from the objects it wrote. */
function storeEffect(b: RepoObjects, a: RepoObjects): string {
  if (added(b.listing, a.listing)) return 'listed';
  if (added(b.snapshots, a.snapshots)) return 'manifest, not listed';
  if (added(b.index, a.index)) return 'packs and index';
  if (added(b.packs, a.packs)) return 'packs';
  return 'nothing written';
}
