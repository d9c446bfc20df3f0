// Owns the retention sweep (`nexo-memory gc`, the daemon's worker): for each agent whose locks are
// free — an agent being snapshotted, restored or exported is skipped, never touched — finish an
// interrupted restore, remove leftovers older than the grace period, delete what the policy does not
// keep among the agent's snapshots of both stores (bundles are unlinked, repository snapshots
// forgotten; with the group — user snapshot or automatic anchor — and the rule that keeps each kept
// one), and remove restore backups older than their age. Then the repository is pruned under its
// exclusive lock, taken without waiting: a busy repository is reported and pruned next time. A dry run
// only reads, and takes what a reader takes: no agent lock, the repository's shared lock. Agents whose
// sweeps take the same lock (tenants sharing live memory) are swept one after the other, never busy
// by the sweep itself.

import { existsSync } from 'node:fs';
import { lstat, readdir, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  asSnapshotError,
  InvalidInputError,
  type Outcome,
  outcomeOfCode,
  RepositoryLockedError,
  StoreUnavailableError,
  UnknownAgentError,
} from '../model/errors.js';
import { idAfterPrefix, uuidV7Time, validateAgentId, validateTenant } from '../model/ids.js';
import { interruptedRestoreNote } from '../model/restore-note.js';
import type { SnapshotMeta } from '../model/types.js';
import {
  type Decision,
  decide,
  policyReport,
  type RetentionPolicy,
  type RetentionPolicyReport,
  retentionPolicyOf,
} from '../policy/retention.js';
import type { PruneReport } from '../repository/prune.js';
import type { ListingMeta } from '../repository/snapshots.js';
import { PRE_RESTORE_PREFIX } from '../restore/stage.js';
import { removeQuietly } from '../store/atomic.js';
import { cachedLister, type DirLister, dirNames, listDir, storeAgents } from '../store/catalog.js';
import { type HeldLock, recordOwner, tryAcquire } from '../store/lock.js';
import { siblingPathOf, sidecarPathOf } from '../store/paths.js';
import { pinPathOf } from '../store/pins.js';
import { type LongTimer, setLongTimeout } from '../util/long-timer.js';
import { mapLimit } from '../util/settle.js';
import type { LocalSnapshotter } from './local.js';

export interface GcOptions {
  /** One agent; omit for every agent (of `tenant`, or of every tenant). */
  agentId?: string;
  tenant?: string;
  policy?: Partial<RetentionPolicy>;
  dryRun?: boolean;
  /** Restore backups older than this are removed (default 7 days; 0 keeps them). */
  backupMaxAgeDays?: number;
  /** Leftovers younger than this are left alone (default 10 minutes). */
  leftoverGraceMs?: number;
  now?: number;
  /**
   * How long the repository's prune waits for the lock (default 0: a busy repository is reported and
   * pruned next time). The daemon waits a little, with its own scheduled snapshots held meanwhile
   * (`aroundPrune`), so that its own schedule, always holding a shared lock on a busy host, never
   * starves its prune (stop 56).
   */
  pruneWaitMs?: number;
  /** Runs the repository's prune (the daemon holds its scheduled snapshots back until it ends). */
  aroundPrune?: <T>(prune: () => Promise<T>) => Promise<T>;
}

export interface AgentGcReport {
  agent_id: string;
  tenant: string;
  /** Why the agent was not swept (busy: an operation holds its lock; an export is reading). */
  skipped?: string;
  error?: string;
  /** The error's stable code and exit status (with `error`), as the typed errors carry them. */
  error_code?: string;
  exit_code?: number;
  /** Over the HTTP API: the id of the daemon's log line with the whole `error` (server/client-errors.ts). */
  error_id?: string;
  decisions: Decision[];
  /**
   * Listing entries of the agent that retention did not count (stop 44): no manifest, a manifest that
   * cannot be read, or one of another agent or tenant. Neither kept nor deleted: `check` and the
   * operator decide (`delete` removes an entry without a manifest).
   */
  listing_problems?: Array<{ id: string; problem: string; code?: string; exit_code?: number }>;
  /**
   * An interrupted restore of the agent (its journal left by a killed restore) that the sweep finished
   * (`completed`: it had committed) or rolled back (`rolled_back`: the agent is as before it). Not a
   * leftover: absent when there was none.
   */
  restore_recovered?: { restore_id: string; outcome: 'rolled_back' | 'completed' };
  /** Leftovers of killed operations removed (staging, partial files, restore staging), bundles completed. */
  leftovers_removed: string[];
  backups_removed: string[];
  bytes_freed: number;
}

/**
 * What the sweep's prune of the repository did: `pruned` (or `dry-run`: what it would remove once the
 * deletions are done) with prune's report, `busy` when another process held the repository lock (the
 * next sweep prunes), `error` when it failed (counted in `errors`).
 */
export type GcPruneReport =
  | ({ status: 'pruned' | 'dry-run' } & PruneReport)
  | { status: 'busy'; skipped: string }
  | { status: 'error'; error: string; error_code: string; exit_code: number; error_id?: string };

/** The original's RetentionTickReport fields first, then what the port adds. */
export interface RetentionTickReport {
  bundles_deleted: number;
  orphan_staging_dirs_removed: number;
  agents_visited: number;
  errors: number;
  bundles_kept: number;
  bytes_freed: number;
  backups_removed: number;
  agents_busy: number;
  /** The interrupted restores the sweep finished or rolled back (each agent's `restore_recovered`). */
  restores_recovered: Array<{
    agent_id: string;
    tenant: string;
    restore_id: string;
    outcome: 'rolled_back' | 'completed';
  }>;
  dry_run: boolean;
  /** The rules applied, under the config's key names. */
  policy: RetentionPolicyReport;
  agents: AgentGcReport[];
  /**
   * Temporary files of atomic writes left in the shared `locks/` and `cache/` directories, older than
   * 10 minutes (a write that failed on a full disk, a killed writer), that the sweep removed; absent when
   * none (stop 46).
   */
  temp_files_removed?: string[];
  /** The repository's prune; absent when the state root has no repository. */
  prune?: GcPruneReport;
}

const DAY_MS = 86_400_000;
/** Agents swept at once (their file-system waits overlap). */
const AGENT_PARALLELISM = 4;
/** Unlinks in flight per agent. */
const UNLINK_PARALLELISM = 16;

/** Restore backups of an agent (`.pre-restore-<rid>` beside its databases and memdir) older than `maxAgeMs`. */
async function oldBackups(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  maxAgeMs: number,
  now: number,
  list: DirLister,
): Promise<string[]> {
  const memdir = s.resolver.memdir(agentId, tenant);
  const sqliteDir = s.resolver.sqliteDir(agentId, tenant);
  // only names a restore gives (the prefix and its id): the database directory may be the memdir
  const made = new Map<string, string>();
  for (const n of await list(sqliteDir)) {
    const id = idAfterPrefix(n, PRE_RESTORE_PREFIX);
    if (id) made.set(join(sqliteDir, n), id);
  }
  const memPrefix = `.${basename(memdir)}${PRE_RESTORE_PREFIX}`;
  for (const n of await list(dirname(memdir))) {
    const id = idAfterPrefix(n, memPrefix);
    if (id) made.set(join(dirname(memdir), n), id);
  }
  // Aged by the restore that made it (its id is a UUID v7, the restore's start) and by its mtime,
  // whichever is newer: the memdir's backup is the old memdir renamed, and a rename keeps the mtime of
  // the directory's last entry created or removed, which may be weeks old (edits and commits leave it).
  const out: string[] = [];
  for (const [c, id] of made) {
    const st = await stat(c).catch(() => undefined);
    if (!st) continue;
    if (now - Math.max(st.mtimeMs, uuidV7Time(id) ?? 0) > maxAgeMs) out.push(c);
  }
  return out;
}

/**
 * Takes the agent's locks for a sweep, without waiting, into `held`: its agent lock (and the default
 * tenant's when it shares that live memory) and its readers lock, all exclusive — the agent locks
 * shared for a dry run's look (`probe`), which releases them at once. Returns why the agent is skipped
 * when one is busy.
 */
function lockForSweep(
  s: LocalSnapshotter,
  tenant: string,
  agentId: string,
  held: HeldLock[],
  probe = false,
): string | undefined {
  const mode = probe ? 'shared' : 'exclusive';
  // Never wait: an agent in use is swept next time.
  const lock = tryAcquire(s.layout.agentLockPath(tenant, agentId), mode);
  if (!lock) return 'busy: another operation holds the agent lock';
  held.push(lock);
  if (tenant !== 'default' && s.sharesLiveMemory(agentId, tenant)) {
    // the same live memory as the default tenant's agent: its lock too (LocalSnapshotter.lockAgent)
    const shared = tryAcquire(s.layout.agentLockPath('default', agentId), mode);
    if (!shared) return 'busy: another operation holds the agent lock';
    held.push(shared);
  }
  const readers = tryAcquire(s.layout.readersLockPath(tenant, agentId), 'exclusive');
  if (!readers) return 'busy: a snapshot of this agent is being exported';
  held.push(readers);
  return undefined;
}

/**
 * The (tenant, agent) pairs grouped by the lock their sweeps share, as indexes into `pairs` in its
 * order: an agent of another tenant whose live memory is the default tenant's agent's takes that
 * agent's lock too (lockForSweep), so it goes with the default tenant's agent of its id and with the
 * other tenants sharing it; every other agent is a group of its own.
 */
function sharingLock(s: LocalSnapshotter, pairs: ReadonlyArray<readonly [string, string]>): number[][] {
  const groups = new Map<string, number[]>();
  pairs.forEach(([t, a], i) => {
    let shares = false;
    try {
      shares = t !== 'default' && s.sharesLiveMemory(a, t);
    } catch {
      // paths the resolver refuses: the agent's sweep reports that error, alone
    }
    const key = JSON.stringify(shares ? ['default', a] : [t, a]);
    groups.set(key, [...(groups.get(key) ?? []), i]);
  });
  return [...groups.values()];
}

async function sweepAgent(
  s: LocalSnapshotter,
  tenant: string,
  agentId: string,
  policy: RetentionPolicy,
  o: Required<Pick<GcOptions, 'dryRun' | 'backupMaxAgeDays' | 'leftoverGraceMs' | 'now'>>,
  list: DirLister,
  /** The agent's repository snapshots as listed at the start of the sweep (newest first). */
  listed: readonly ListingMeta[],
  /** Receives the repository snapshots deleted (forgotten, or that a dry run would forget). */
  forgotten: Set<string>,
): Promise<AgentGcReport> {
  const report: AgentGcReport = {
    agent_id: agentId,
    tenant,
    decisions: [],
    leftovers_removed: [],
    backups_removed: [],
    bytes_freed: 0,
  };
  const held: HeldLock[] = [];
  try {
    // A dry run holds no lock (it reads, as list does): a preview never makes a snapshot, restore or
    // export of the agent wait. It only looks whether the sweep would find the agent busy — the agent
    // lock tried shared, the readers lock tried, each released at once — and decides on what is stored
    // now, as the real sweep would.
    const skipped = lockForSweep(s, tenant, agentId, held, o.dryRun);
    if (o.dryRun) for (const h of held.splice(0).reverse()) h.release();
    if (skipped) return { ...report, skipped };
    if (!o.dryRun) {
      await recordOwner(s.layout.agentLockPath(tenant, agentId), 'gc');
      const notes: string[] = [];
      const r = await s.recoverInterrupted(agentId, tenant, o.leftoverGraceMs, (n) => notes.push(n), list);
      // A restore finished or rolled back is said as such, not counted among the leftovers.
      if (r?.restore_id !== undefined && r.outcome !== 'cleaned') {
        const recovered = { restore_id: r.restore_id, outcome: r.outcome };
        report.restore_recovered = recovered;
        const note = interruptedRestoreNote(r.restore_id, agentId, r.outcome);
        report.leftovers_removed = notes.filter((n) => n !== note);
      } else report.leftovers_removed = notes;
    } else if (existsSync(s.layout.journalPath(tenant, agentId))) {
      // The recovery previewed as far as reading: a journal the real sweep refuses as damaged fails the
      // agent in the preview too (JOURNAL_DAMAGED), and nothing is touched (stop 51).
      const { readJournal } = await import('../restore/journal.js');
      await readJournal(s.layout.journalPath(tenant, agentId));
    }
    const dir = s.layout.snapshotsDir(tenant, agentId);
    // What goes, decided on what is stored now (plan). A real sweep that would forget repository
    // snapshots decides again under the agent's repository lock (stop 47), which delete and pin on any
    // host take: a pin added meanwhile keeps its snapshot. Taken without waiting, and only then (an
    // agent with nothing to forget costs no lock): held by another host, the agent is swept next time.
    let plan = await planSweep(s, tenant, agentId, policy, o.now, listed, dir);
    const forgets = (p: SweepPlan) => p.doomedIds.some((id) => p.repoIds.has(id));
    if (!o.dryRun && forgets(plan)) {
      let busy: string | undefined;
      const swept = await s.repository
        .lockedAgent(
          agentId,
          tenant,
          'gc',
          async (repoLock) => {
            plan = await planSweep(s, tenant, agentId, policy, o.now, listed, dir);
            if (forgets(plan)) await repoLock.check();
            // Repository snapshots are forgotten (their data goes with the prune that ends the sweep).
            for (const id of plan.doomedIds)
              if (plan.repoIds.has(id)) await s.repository.forgetForRetention(id);
          },
          0,
        )
        .then(
          () => true,
          (err: unknown) => {
            if (!(err instanceof RepositoryLockedError)) throw err;
            busy = `busy: another operation holds the agent's repository lock (${err.message})`;
            return false;
          },
        );
      if (!swept) return { ...report, skipped: busy! };
    }
    const { bundles, repoIds, doomedIds } = plan;
    if (plan.listingProblems) report.listing_problems = plan.listingProblems;
    report.decisions = plan.decisions;
    for (const id of doomedIds) if (repoIds.has(id)) forgotten.add(id);
    const doomedSet = new Set(doomedIds);
    if (!o.dryRun) {
      const doomed = bundles.filter((m) => doomedSet.has(m.id));
      // Only the companions that exist are unlinked (one listing instead of three failed unlinks each),
      // several bundles at once: an unlink waits on the file system's journal, and waits overlap
      // (measured here: 4,500 unlinks in 130-210 ms 16 at a time, 270-320 ms one after the other).
      const names = doomed.length > 0 ? new Set(await dirNames(dir)) : new Set<string>();
      await mapLimit(doomed, UNLINK_PARALLELISM, async (m) => {
        await unlink(m.bundle_path);
        for (const extra of companionsOf(m, names)) {
          const size = await bytesOf(extra);
          await removeQuietly(extra);
          report.bytes_freed += size;
        }
      });
      for (const m of doomed) report.bytes_freed += m.bundle_size_bytes;
      // No directory fsync: a deletion lost to a power cut is redone by the next sweep, and a bundle
      // whose sibling went first is verified and completed by recoverInterrupted.
    } else {
      const doomed = bundles.filter((m) => doomedSet.has(m.id));
      const names = doomed.length > 0 ? new Set(await dirNames(dir)) : new Set<string>();
      for (const m of doomed) {
        report.bytes_freed += m.bundle_size_bytes;
        for (const extra of companionsOf(m, names)) report.bytes_freed += await bytesOf(extra);
      }
    }
    if (o.backupMaxAgeDays > 0) {
      report.backups_removed = await oldBackups(s, agentId, tenant, o.backupMaxAgeDays * DAY_MS, o.now, list);
      for (const b of report.backups_removed) {
        report.bytes_freed += await bytesOf(b);
        if (!o.dryRun) await rm(b, { recursive: true, force: true });
      }
    }
    return report;
  } catch (err) {
    const e = asSnapshotError(err, `retention of agent ${agentId}`);
    return { ...report, error: e.message, error_code: e.code, exit_code: e.exitCode };
  } finally {
    for (const h of held.reverse()) h.release();
  }
}

interface SweepPlan {
  bundles: SnapshotMeta[];
  repoIds: Set<string>;
  decisions: AgentGcReport['decisions'];
  doomedIds: string[];
  listingProblems?: AgentGcReport['listing_problems'];
}

/** What a sweep of the agent removes by `policy`, decided on what its stores hold now. */
async function planSweep(
  s: LocalSnapshotter,
  tenant: string,
  agentId: string,
  policy: RetentionPolicy,
  now: number,
  listed: readonly ListingMeta[],
  dir: string,
): Promise<SweepPlan> {
  // A bundle that cannot be read, or whose manifest is another snapshot's or another agent's, is not
  // counted, as a repository's entry without a matching manifest: reported (stop 46), never silent.
  const { metas: bundles, skipped: unlisted } = await listDir(dir, agentId, tenant);
  // The repository's entries as listed before this agent's lock was taken: look again at the ones
  // still there (a delete may have run meanwhile) and at their pins (a pin may have been added).
  const again = await s.repository.stillListed(listed.map((m) => m.id));
  const still = listed.filter((m) => again.listed.has(m.id));
  // A listing entry is counted only when its manifest exists and is this agent's (stop 44): a forged
  // entry kept as the "newest" made the real snapshots go, one naming another agent made them go
  // under that agent's policy.
  const unmatched = await s.repository.unmatchedEntries(still);
  const listingProblems =
    unmatched.size > 0 || unlisted.length > 0
      ? [...[...unmatched].map(([id, problem]) => ({ id, problem })), ...unlisted]
      : undefined;
  const inRepository = still
    .filter((m) => !unmatched.has(m.id))
    .map((m) => ({ ...m, pinned: again.pinned.has(m.id) }));
  // A snapshot in both stores (a bundle that migrate stored but had not removed yet) is one snapshot,
  // as list shows it: decided once, pinned when either copy is, and both copies go when it goes.
  const repoIds = new Set(inRepository.map((m) => m.id));
  const pinnedBundles = new Set(bundles.filter((m) => m.pinned).map((m) => m.id));
  const metas: SnapshotMeta[] = [
    ...inRepository.map((m) => (pinnedBundles.has(m.id) ? { ...m, pinned: true } : m)),
    ...bundles.filter((m) => !repoIds.has(m.id)),
  ].sort((x, y) => y.created_at_ms - x.created_at_ms || (x.id < y.id ? 1 : -1));
  const pinned = new Set(metas.filter((m) => m.pinned).map((m) => m.id));
  const decisions = decide(metas, policy, pinned, now);
  const doomedIds = decisions.filter((d) => d.action === 'delete').map((d) => d.id);
  return { bundles, repoIds, decisions, doomedIds, ...(listingProblems ? { listingProblems } : {}) };
}

/** The companion files of a bundle (sibling, sidecar, pin) that exist among `names` of its directory. */
function companionsOf(m: SnapshotMeta, names: ReadonlySet<string>): string[] {
  return [siblingPathOf(m.bundle_path), sidecarPathOf(m.bundle_path), pinPathOf(m.bundle_path)].filter((p) =>
    names.has(basename(p)),
  );
}

/** The bytes of the file, or of every file under the directory, at `path` (0 when it is gone). */
async function bytesOf(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return st?.size ?? 0;
  let total = 0;
  for (const e of await readdir(path, { withFileTypes: true }).catch(() => []))
    total += await bytesOf(join(path, e.name));
  return total;
}

/**
 * An agent named to gc must be one the store or the host knows: snapshots in either store, a restore
 * journal, or live memory (whose restore backups and leftovers gc removes). Otherwise UNKNOWN_AGENT
 * before any lock file is made: a mistyped id swept nothing and reported success (found in stop 38).
 */
async function knownAgent(s: LocalSnapshotter, agentId: string, tenant: string, inRepository: boolean) {
  if (inRepository) return;
  if ((await storeAgents(s.layout, tenant)).some(([, a]) => a === agentId)) return;
  const live = [s.resolver.memdir(agentId, tenant), s.resolver.sqliteDir(agentId, tenant)];
  if (live.some((p) => existsSync(p))) return;
  throw new UnknownAgentError(agentId, tenant, live);
}

/** One retention sweep; never throws for one agent's problem (counted in `errors`). */
export async function collectGarbage(
  s: LocalSnapshotter,
  opts: GcOptions = {},
): Promise<RetentionTickReport> {
  const policy: RetentionPolicy = retentionPolicyOf(opts.policy);
  for (const [name, v] of [
    ['backupMaxAgeDays', opts.backupMaxAgeDays],
    ['leftoverGraceMs', opts.leftoverGraceMs],
    ['now', opts.now],
    ['pruneWaitMs', opts.pruneWaitMs],
  ] as const)
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0))
      throw new InvalidInputError(`gc's ${name} must be a number ≥ 0, got ${String(v)}`);
  const o = {
    dryRun: opts.dryRun ?? false,
    backupMaxAgeDays: opts.backupMaxAgeDays ?? 7,
    leftoverGraceMs: opts.leftoverGraceMs ?? 10 * 60_000,
    now: opts.now ?? Date.now(),
  };
  const tenant = opts.tenant === undefined ? undefined : validateTenant(opts.tenant);
  const agentId = opts.agentId === undefined ? undefined : validateAgentId(opts.agentId);
  // A remote repository whose buckets the first snapshot has not created yet has nothing to sweep.
  const hasRepository = await s.repository.exists().catch((err: unknown) => {
    if (err instanceof StoreUnavailableError && err.code === 'STORE_MISSING') return false;
    throw err;
  });
  // The repository's listing, read once for every agent (no identity needed).
  const byAgent = new Map<string, ListingMeta[]>();
  for (const m of hasRepository ? await s.repository.listAll(tenant) : [])
    if (
      agentId === undefined
        ? validIds(m.tenant, m.agent_id) // a listing entry is untrusted: its ids become lock paths
        : m.agent_id === agentId && m.tenant === (tenant ?? 'default')
    ) {
      const key = `${m.tenant}/${m.agent_id}`;
      byAgent.set(key, [...(byAgent.get(key) ?? []), m]);
    }
  if (agentId !== undefined) await knownAgent(s, agentId, tenant ?? 'default', byAgent.size > 0);
  const pairs: Array<[string, string]> = agentId
    ? [[tenant ?? 'default', agentId]]
    : await storeAgents(s.layout, tenant);
  const known = new Set(pairs.map(([t, a]) => `${t}/${a}`));
  for (const m of [...byAgent.values()].map((l) => l[0]!))
    if (!known.has(`${m.tenant}/${m.agent_id}`)) pairs.push([m.tenant, m.agent_id]);
  pairs.sort(([t1, a1], [t2, a2]) => (t1 === t2 ? (a1 < a2 ? -1 : 1) : t1 < t2 ? -1 : 1));
  // Agents are independent (each swept under its own locks); a few at a time hide file-system latency.
  // The agents that take the same lock (one id in tenants sharing live memory) are swept one after the
  // other: swept side by side, each found the others' lock held, by this sweep, and was skipped "busy".
  const list = cachedLister();
  const forgotten = new Set<string>();
  const agents = new Array<AgentGcReport>(pairs.length);
  await mapLimit(sharingLock(s, pairs), AGENT_PARALLELISM, async (group) => {
    for (const i of group) {
      const [t, a] = pairs[i]!;
      agents[i] = await sweepAgent(s, t, a, policy, o, list, byAgent.get(`${t}/${a}`) ?? [], forgotten);
    }
  });
  const pruneNow = () => pruneRepository(s, o.dryRun, forgotten, o.dryRun ? 0 : (opts.pruneWaitMs ?? 0));
  const prune = hasRepository
    ? await (opts.aroundPrune && !o.dryRun ? opts.aroundPrune(pruneNow) : pruneNow())
    : undefined;
  const temps = o.dryRun ? [] : await staleTemps(s, [...new Set(pairs.map(([t]) => t))]);
  const count = (f: (r: AgentGcReport) => number) => agents.reduce((n, r) => n + f(r), 0);
  return {
    bundles_deleted: count((r) => r.decisions.filter((d) => d.action === 'delete').length),
    orphan_staging_dirs_removed: count((r) => r.leftovers_removed.length),
    agents_visited: agents.filter((r) => !r.skipped).length,
    // an agent whose sweep failed, or that has a bundle that could not be read (damage, as the
    // repository's unreadable manifest fails its prune); the prune when it failed
    errors: agents.filter((r) => r.error || unreadableListed(r)).length + (prune?.status === 'error' ? 1 : 0),
    bundles_kept: count((r) => r.decisions.filter((d) => d.action === 'keep').length),
    bytes_freed: count((r) => r.bytes_freed) + (prune && 'bytes_freed' in prune ? prune.bytes_freed : 0),
    backups_removed: count((r) => r.backups_removed.length),
    agents_busy: agents.filter((r) => r.skipped).length,
    restores_recovered: agents.flatMap((r) =>
      r.restore_recovered ? [{ agent_id: r.agent_id, tenant: r.tenant, ...r.restore_recovered }] : [],
    ),
    dry_run: o.dryRun,
    policy: policyReport(policy),
    agents,
    ...(temps.length > 0 ? { temp_files_removed: temps } : {}),
    ...(prune ? { prune } : {}),
  };
}

/** The sweep of the shared directories' stale temporary files: each tenant's `locks/`, the state root's `cache/`. */
async function staleTemps(s: LocalSnapshotter, tenants: string[]): Promise<string[]> {
  const { cleanStaleTemps, SHARED_DIR_TEMPS } = await import('../store/leftovers.js');
  const removed: string[] = [];
  for (const t of tenants)
    removed.push(...(await cleanStaleTemps(s.layout.locksDir(t), SHARED_DIR_TEMPS.locks)));
  removed.push(...(await cleanStaleTemps(join(s.layout.root, 'cache'), SHARED_DIR_TEMPS.cache)));
  return removed;
}

/**
 * The sweep's prune: waits `waitMs` at most for the repository lock (busy: reported, pruned next time).
 * A dry run reports what a prune would remove once the snapshots the sweep would delete are gone.
 */
async function pruneRepository(
  s: LocalSnapshotter,
  dryRun: boolean,
  forgotten: ReadonlySet<string>,
  waitMs: number,
): Promise<GcPruneReport> {
  try {
    const r = await s.repository.prune({ waitMs, dryRun, ...(dryRun ? { forgotten } : {}) });
    return { status: dryRun ? 'dry-run' : 'pruned', ...r };
  } catch (err) {
    if (err instanceof RepositoryLockedError)
      return { status: 'busy', skipped: `busy: ${err.message.replace(/^the repository is locked: /, '')}` };
    const e = asSnapshotError(err, 'prune of the repository');
    return { status: 'error', error: e.message, error_code: e.code, exit_code: e.exitCode };
  }
}

/**
 * The first error of a sweep (an agent's, then the prune's, then an unreadable bundle's), by which its
 * exit status and outcome are told; undefined without errors.
 */
function firstGcError(r: RetentionTickReport): { code?: string; exit_code?: number } | undefined {
  if (r.errors === 0) return undefined;
  const agent = r.agents.find((a) => a.error);
  if (agent)
    return {
      ...(agent.error_code !== undefined ? { code: agent.error_code } : {}),
      ...(agent.exit_code !== undefined ? { exit_code: agent.exit_code } : {}),
    };
  if (r.prune?.status === 'error') return { code: r.prune.error_code, exit_code: r.prune.exit_code };
  return r.agents.map(unreadableListed).find((l) => l !== undefined) ?? {};
}

/**
 * The exit status of a sweep: 0 without errors; else the status of its first error (an agent's, then
 * the prune's: 8 for a remote store that cannot be used, 7 for a missing identity, …), 1 when unknown.
 */
export function gcExitCode(r: RetentionTickReport): number {
  const first = firstGcError(r);
  return first === undefined ? 0 : (first.exit_code ?? 1);
}

/**
 * The metric outcome of a sweep that ended with a report, agreeing with its exit status (stop 47): `ok`
 * without errors, else the outcome of the error that gave the exit status (`damaged` for a bundle
 * that could not be read, …; `error` when its code is unknown).
 */
export function gcOutcome(r: RetentionTickReport): Outcome {
  const first = firstGcError(r);
  return first === undefined ? 'ok' : outcomeOfCode(first.code);
}

/** The agent's first listing problem that is a bundle that could not be read (with its code). */
function unreadableListed(a: AgentGcReport): { code?: string; exit_code?: number } | undefined {
  return a.listing_problems?.find((l) => l.code !== undefined);
}

function validIds(tenant: string, agentId: string): boolean {
  try {
    validateTenant(tenant);
    validateAgentId(agentId);
    return true;
  } catch {
    return false;
  }
}

/** The daemon's retention loop: one sweep now, then one per interval; sweeps never overlap. */
export class RetentionWorker {
  private timer: LongTimer | undefined;
  /** The sweep of every tenant running or queued (ticks join it). */
  private running: Promise<RetentionTickReport> | undefined;
  /** The end of the last sweep started or queued: sweeps run one after the other. */
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly snapshotter: LocalSnapshotter,
    private readonly opts: GcOptions & {
      intervalMs: number;
      onTick?: (r: RetentionTickReport) => void;
      onError?: (e: unknown) => void;
      /** Runs each sweep of the loop (not those asked for: their asker tracks them), e.g. on a board. */
      track?: (sweep: () => Promise<RetentionTickReport>) => Promise<RetentionTickReport>;
    },
  ) {}

  /**
   * One sweep (waits for a sweep already running instead of starting a second). Every sweep, the
   * loop's or one asked for (the API's), is told to onTick or onError once. With `tenant` (the API's
   * `?tenant=`): a sweep of that tenant's agents only, with the worker's options; it runs after the
   * sweep in progress, never beside it (two sweeps would find each other's agents and the repository
   * busy).
   */
  tick(tenant?: string): Promise<RetentionTickReport> {
    if (tenant !== undefined) return this.sweep({ ...this.opts, tenant });
    return this.everyTenant(false);
  }

  /** The sweep of every tenant, joined when one runs; `fromLoop`: started by the loop (tracked). */
  private everyTenant(fromLoop: boolean): Promise<RetentionTickReport> {
    if (!this.running) {
      this.running = this.sweep(this.opts, fromLoop).finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  /** Runs a sweep after the ones before it; its report (or failure) is told to onTick (onError). */
  private sweep(opts: GcOptions, fromLoop = false): Promise<RetentionTickReport> {
    // Through the snapshotter, so its observers (metrics, events) see every sweep.
    const run = () => this.snapshotter.gc(opts);
    const track = fromLoop ? this.opts.track : undefined;
    const sweep = this.queue.then(() => (track ? track(run) : run()));
    this.queue = sweep.catch(() => undefined);
    sweep.then(
      (r) => this.opts.onTick?.(r),
      (err: unknown) => this.opts.onError?.(err),
    );
    return sweep;
  }

  start(): void {
    this.stopped = false;
    const loop = async () => {
      await this.everyTenant(true).catch(() => undefined); // told to onError by the sweep
      if (!this.stopped) this.timer = setLongTimeout(loop, Math.max(1000, this.opts.intervalMs));
    };
    void loop();
  }

  /** Stops the loop; resolves when a sweep in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.clear();
    await this.queue;
  }
}
