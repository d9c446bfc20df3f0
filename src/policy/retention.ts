// Owns the retention policy as a pure decision: given an agent's snapshots (newest first), which to
// keep and why, which to delete. Rules, each keeping snapshots independently (a snapshot is kept when
// any rule keeps it):
//   keep_count N     the N newest, but none older than max_age_days (the original's pair)
//   keep_daily N     the newest snapshot of each of the N most recent days that have one (UTC)
//   keep_weekly N    … of each of the N most recent ISO weeks; keep_monthly N … months
//   pinned           always (nexo-memory pin)
//   newest           the agent's newest snapshot is never deleted
// A snapshot that is in use (being exported or restored from) is skipped, never deleted.

import type { SnapshotMeta } from '../model/types.js';

export interface RetentionPolicy {
  keepCount: number;
  /** 0 disables the age limit. */
  maxAgeDays: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
}

export const DEFAULT_POLICY: Readonly<RetentionPolicy> = Object.freeze({
  keepCount: 30,
  maxAgeDays: 90,
  keepDaily: 0,
  keepWeekly: 0,
  keepMonthly: 0,
});

export type KeepReason = 'pinned' | 'newest' | 'keep-count' | 'daily' | 'weekly' | 'monthly';

export interface Decision {
  id: string;
  created_at_ms: number;
  label?: string;
  action: 'keep' | 'delete';
  /** Why it is kept (every rule that keeps it), empty when deleted. */
  reasons: KeepReason[];
  /** Why it is deleted. */
  because?: string;
}

const DAY_MS = 86_400_000;

const dayKey = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const monthKey = (ms: number): string => new Date(ms).toISOString().slice(0, 7);

/** ISO 8601 week, e.g. `2026-W48`: the week holding that date's Thursday, counted in that Thursday's year. */
export function weekKey(ms: number): string {
  const d = new Date(ms);
  const monday0 = (d.getUTCDay() + 6) % 7;
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - monday0 + 3);
  const year = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / DAY_MS / 7) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** Keeps the newest snapshot of each of the `n` most recent buckets (restic's keep-daily etc.). */
function bucketRule(
  newestFirst: readonly SnapshotMeta[],
  n: number,
  key: (ms: number) => string,
): Set<string> {
  const kept = new Set<string>();
  if (n <= 0) return kept;
  let last: string | undefined;
  for (const m of newestFirst) {
    const k = key(m.created_at_ms);
    if (k === last) continue;
    last = k;
    kept.add(m.id);
    if (kept.size >= n) break;
  }
  return kept;
}

/**
 * Decides, for snapshots sorted newest first, what the policy keeps. `pinned` and `inUse` are ids.
 * Decisions come back in the same order.
 */
export function decide(
  newestFirst: readonly SnapshotMeta[],
  policy: RetentionPolicy,
  pinned: ReadonlySet<string>,
  nowMs: number,
): Decision[] {
  const daily = bucketRule(newestFirst, policy.keepDaily, dayKey);
  const weekly = bucketRule(newestFirst, policy.keepWeekly, weekKey);
  const monthly = bucketRule(newestFirst, policy.keepMonthly, monthKey);
  const maxAgeMs = policy.maxAgeDays > 0 ? policy.maxAgeDays * DAY_MS : Number.POSITIVE_INFINITY;
  return newestFirst.map((m, i) => {
    const reasons: KeepReason[] = [];
    if (pinned.has(m.id)) reasons.push('pinned');
    if (i === 0) reasons.push('newest');
    const tooOld = nowMs - m.created_at_ms > maxAgeMs;
    if (i < policy.keepCount && !tooOld) reasons.push('keep-count');
    if (daily.has(m.id)) reasons.push('daily');
    if (weekly.has(m.id)) reasons.push('weekly');
    if (monthly.has(m.id)) reasons.push('monthly');
    const base = {
      id: m.id,
      created_at_ms: m.created_at_ms,
      ...(m.label !== undefined ? { label: m.label } : {}),
    };
    if (reasons.length > 0) return { ...base, action: 'keep', reasons };
    const because =
      i >= policy.keepCount
        ? `beyond the ${policy.keepCount} newest`
        : `older than ${policy.maxAgeDays} days`;
    return { ...base, action: 'delete', reasons, because };
  });
}
