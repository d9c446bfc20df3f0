// Owns the retention policy as a pure decision: given an agent's snapshots (newest first), which to
// keep and why, which to delete. Snapshots fall in three groups: automatic anchors (every `created_by`
// starting with `auto-`: pre-restore, pre-dream, …), the agent's own (`tool`: taken by the agent through
// MCP's memory_snapshot) and the user's snapshots (everything else: cli, api, scheduled, library). Each
// group has its own rules and never counts against another's. Rules, each keeping snapshots
// independently (a snapshot is kept when any rule keeps it):
//   keep_count N          the user's N newest, but none older than max_age_days (the original's pair)
//   keep_daily N          the newest user snapshot of each of the N most recent days that have one (UTC)
//   keep_weekly N         … of each of the N most recent ISO weeks; keep_monthly N … months
//   anchor_keep_count N   the N newest anchors of each kind, none older than anchor_max_age_days
//   pre_mutating_tool_keep_count N   instead, for the anchors taken before memory-mutating tools (many
//                         a day): the N newest, none older than pre_mutating_tool_max_age_hours
//   tool_keep_count N     the agent's own N newest, none older than tool_max_age_days (an agent that
//                         snapshots in a loop cannot push the operator's snapshots out of keep_count)
//   pinned                always (nexo-memory pin)
//   newest                the agent's newest snapshot is never deleted (the one taken last: a
//                         snapshot's created_at_ms is monotonic per agent, whatever the clock said)

import { InvalidInputError } from '../model/errors.js';
import type { SnapshotMeta } from '../model/types.js';

export interface RetentionPolicy {
  /** The user's snapshots: the N newest. */
  keepCount: number;
  /** 0 disables the age limit. */
  maxAgeDays: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  /** Automatic anchors: the N newest of each kind (`created_by`). */
  anchorKeepCount: number;
  /** No anchor older than this is kept by anchorKeepCount; 0 disables the age limit. */
  anchorMaxAgeDays: number;
  /** Anchors taken before memory-mutating tools (`auto-pre-mutating-tool`): the N newest. */
  preToolKeepCount: number;
  /** … none older than this many hours; 0 disables the age limit. */
  preToolMaxAgeHours: number;
  /** The agent's own snapshots (`created_by: tool`, MCP's memory_snapshot): the N newest. */
  toolKeepCount: number;
  /** … none older than this; 0 disables the age limit. */
  toolMaxAgeDays: number;
}

/** `created_by` of the snapshots the agent takes itself (MCP's memory_snapshot). */
export const TOOL_KIND = 'tool';

/** `created_by` of the anchors taken before memory-mutating tool calls (agent/pre-mutating-tool.ts). */
export const PRE_MUTATING_TOOL_KIND = 'auto-pre-mutating-tool';

export const DEFAULT_POLICY: Readonly<RetentionPolicy> = Object.freeze({
  keepCount: 30,
  maxAgeDays: 90,
  keepDaily: 0,
  keepWeekly: 0,
  keepMonthly: 0,
  anchorKeepCount: 5,
  anchorMaxAgeDays: 30,
  preToolKeepCount: 20,
  preToolMaxAgeHours: 24,
  toolKeepCount: 30,
  toolMaxAgeDays: 90,
});

/**
 * `rules` over DEFAULT_POLICY, as a library caller gives them (gc's `policy`): a key left out or
 * undefined is the default; every other value must be a whole number ≥ 0 (as the config's and the
 * flags' are), and a key that is no rule is refused too, each INVALID_INPUT naming it. (`keepCount:
 * NaN` or `-1` kept only the newest snapshot and deleted the rest, "older than 90 days".)
 */
export function retentionPolicyOf(rules: Partial<RetentionPolicy> | undefined): RetentionPolicy {
  const policy: RetentionPolicy = { ...DEFAULT_POLICY };
  if (rules === undefined || rules === null) return policy;
  if (typeof rules !== 'object' || Array.isArray(rules))
    throw new InvalidInputError('a retention policy is an object of rules (keepCount, maxAgeDays, …)');
  for (const [key, value] of Object.entries(rules)) {
    if (!Object.hasOwn(DEFAULT_POLICY, key))
      throw new InvalidInputError(
        `${JSON.stringify(key)} is no retention rule (the rules: ${Object.keys(DEFAULT_POLICY).join(', ')})`,
      );
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
      throw new InvalidInputError(
        `retention rule ${key} must be a whole number ≥ 0, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`,
      );
    policy[key as keyof RetentionPolicy] = value;
  }
  return policy;
}

/** The policy as reports print it (snake_case, the config's key names). */
export interface RetentionPolicyReport {
  keep_count: number;
  max_age_days: number;
  keep_daily: number;
  keep_weekly: number;
  keep_monthly: number;
  anchor_keep_count: number;
  anchor_max_age_days: number;
  pre_mutating_tool_keep_count: number;
  pre_mutating_tool_max_age_hours: number;
  tool_keep_count: number;
  tool_max_age_days: number;
}

export function policyReport(p: RetentionPolicy): RetentionPolicyReport {
  return {
    keep_count: p.keepCount,
    max_age_days: p.maxAgeDays,
    keep_daily: p.keepDaily,
    keep_weekly: p.keepWeekly,
    keep_monthly: p.keepMonthly,
    anchor_keep_count: p.anchorKeepCount,
    anchor_max_age_days: p.anchorMaxAgeDays,
    pre_mutating_tool_keep_count: p.preToolKeepCount,
    pre_mutating_tool_max_age_hours: p.preToolMaxAgeHours,
    tool_keep_count: p.toolKeepCount,
    tool_max_age_days: p.toolMaxAgeDays,
  };
}

export type KeepReason =
  | 'pinned'
  | 'newest'
  | 'keep-count'
  | 'daily'
  | 'weekly'
  | 'monthly'
  | 'anchor-keep-count'
  | 'pre-mutating-tool-keep-count'
  | 'tool-keep-count';

/**
 * `anchor`: an automatic snapshot (created_by `auto-…`); `tool`: one the agent took itself (MCP);
 * `user`: every other snapshot.
 */
export type RetentionGroup = 'user' | 'anchor' | 'tool';

const groupOf = (m: Pick<SnapshotMeta, 'created_by'>): RetentionGroup =>
  isAnchor(m) ? 'anchor' : m.created_by === TOOL_KIND ? 'tool' : 'user';

/** Whether a snapshot is an automatic anchor (pre-restore, pre-dream, and any later `auto-…` kind). */
export const isAnchor = (m: Pick<SnapshotMeta, 'created_by'>): boolean =>
  m.created_by?.startsWith('auto-') === true;

export interface Decision {
  id: string;
  created_at_ms: number;
  label?: string;
  created_by?: string;
  /** Whose rules decided it. */
  group: RetentionGroup;
  action: 'keep' | 'delete';
  /** Why it is kept (every rule that keeps it), empty when deleted. */
  reasons: KeepReason[];
  /** Why it is deleted. */
  because?: string;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/**
 * A time as a Date whatever it is: one beyond what a Date holds (±8.64e15 ms; a forged or wild clock)
 * falls in the first or last day a Date has, never an invalid Date (its keys would be NaN, and
 * toISOString throws).
 */
const dateOf = (ms: number): Date => new Date(Math.min(8.64e15, Math.max(-8.64e15, ms)));
const pad2 = (n: number): string => String(n).padStart(2, '0');
// from the UTC fields, not toISOString's text: past year 9999 that reads `+010000-01-…`, and its first
// ten characters were then a month, its first seven a year (stop 63)
const monthKey = (ms: number): string => {
  const d = dateOf(ms);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}`;
};
const dayKey = (ms: number): string => `${monthKey(ms)}-${pad2(dateOf(ms).getUTCDate())}`;

/** ISO 8601 week, e.g. `2026-W48`: the week holding that date's Thursday, counted in that Thursday's year. */
export function weekKey(ms: number): string {
  const d = dateOf(ms);
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
 * Decides, for snapshots sorted newest first, what the policy keeps. `pinned` holds ids. Decisions come
 * back in the same order.
 */
export function decide(
  newestFirst: readonly SnapshotMeta[],
  policy: RetentionPolicy,
  pinned: ReadonlySet<string>,
  nowMs: number,
): Decision[] {
  const user = newestFirst.filter((m) => groupOf(m) === 'user');
  const tool = newestFirst.filter((m) => groupOf(m) === 'tool');
  const daily = bucketRule(user, policy.keepDaily, dayKey);
  const weekly = bucketRule(user, policy.keepWeekly, weekKey);
  const monthly = bucketRule(user, policy.keepMonthly, monthKey);
  // Position of each snapshot within its group (anchors: within their kind).
  const rank = new Map<string, number>([
    ...user.map((m, i) => [m.id, i]),
    ...tool.map((m, i) => [m.id, i]),
  ] as [string, number][]);
  const perKind = new Map<string, number>();
  for (const m of newestFirst) {
    if (!isAnchor(m)) continue;
    const n = perKind.get(m.created_by!) ?? 0;
    rank.set(m.id, n);
    perKind.set(m.created_by!, n + 1);
  }
  const limit = (days: number) => (days > 0 ? days * DAY_MS : Number.POSITIVE_INFINITY);
  return newestFirst.map((m, i) => {
    const group = groupOf(m);
    const j = rank.get(m.id)!;
    const reasons: KeepReason[] = [];
    if (pinned.has(m.id)) reasons.push('pinned');
    if (i === 0) reasons.push('newest');
    // a snapshot dated after `now` (a clock that was ahead, an import from such a host) is of age 0,
    // never negative: it is as young as a snapshot can be, and no arithmetic on it goes astray (stop 46)
    const age = Math.max(0, nowMs - m.created_at_ms);
    let because: string;
    if (m.created_by === PRE_MUTATING_TOOL_KIND) {
      const tooOld = age > (policy.preToolMaxAgeHours > 0 ? policy.preToolMaxAgeHours * HOUR_MS : Infinity);
      if (j < policy.preToolKeepCount && !tooOld) reasons.push('pre-mutating-tool-keep-count');
      because =
        j >= policy.preToolKeepCount
          ? `beyond the ${policy.preToolKeepCount} newest ${m.created_by} anchors`
          : `anchor older than ${policy.preToolMaxAgeHours} hours`;
    } else if (group === 'anchor') {
      const tooOld = age > limit(policy.anchorMaxAgeDays);
      if (j < policy.anchorKeepCount && !tooOld) reasons.push('anchor-keep-count');
      because =
        j >= policy.anchorKeepCount
          ? `beyond the ${policy.anchorKeepCount} newest ${m.created_by} anchors`
          : `anchor older than ${policy.anchorMaxAgeDays} days`;
    } else if (group === 'tool') {
      const tooOld = age > limit(policy.toolMaxAgeDays);
      if (j < policy.toolKeepCount && !tooOld) reasons.push('tool-keep-count');
      because =
        j >= policy.toolKeepCount
          ? `beyond the ${policy.toolKeepCount} newest snapshots the agent took (tool)`
          : `agent's snapshot older than ${policy.toolMaxAgeDays} days`;
    } else {
      const tooOld = age > limit(policy.maxAgeDays);
      if (j < policy.keepCount && !tooOld) reasons.push('keep-count');
      if (daily.has(m.id)) reasons.push('daily');
      if (weekly.has(m.id)) reasons.push('weekly');
      if (monthly.has(m.id)) reasons.push('monthly');
      because =
        j >= policy.keepCount
          ? `beyond the ${policy.keepCount} newest snapshots`
          : `older than ${policy.maxAgeDays} days`;
    }
    const base = {
      id: m.id,
      created_at_ms: m.created_at_ms,
      ...(m.label !== undefined ? { label: m.label } : {}),
      ...(m.created_by !== undefined ? { created_by: m.created_by } : {}),
      group,
    };
    if (reasons.length > 0) return { ...base, action: 'keep', reasons };
    return { ...base, action: 'delete', reasons, because };
  });
}
