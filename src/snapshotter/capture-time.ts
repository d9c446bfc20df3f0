// Owns the time a new snapshot is dated by (stop 46): monotonic per agent and tenant, not the raw wall
// clock. Snapshots are ordered by created_at_ms alone (the id breaks ties) for every purpose — list,
// `latest`, `restore --undo`'s anchor, retention's "newest" and keep-count — so a snapshot dated by a
// clock that is behind (reset to 1970, stepped back) sorted below the ones taken before it, and one
// taken while the clock was ahead stayed "newest" after it was corrected: retention deleted the real
// latest snapshot. Every capture holds the agent lock, so the agent's newest snapshot (either store)
// cannot change meanwhile: the new one is dated max(clock, newest + 1 ms). Pure: the callers read the
// listings they already read (the repository's) or the catalogue (the bundle store's).

import type { SnapshotMeta } from '../model/types.js';

type Dated = Pick<SnapshotMeta, 'id' | 'created_at_ms'>;

export interface CaptureTime {
  /** What the snapshot is dated: the clock, or 1 ms after the agent's newest snapshot when later. */
  createdAtMs: number;
  /** How far the clock was behind that (0 when the clock was used as it is). */
  clockBehindMs: number;
  /** The newest existing snapshot that dated it, when it did. */
  after?: Dated;
}

/** The newest of the agent's snapshots in `lists` (each in any order), by created_at_ms then id. */
export function newestOf(...lists: ReadonlyArray<readonly Dated[]>): Dated | undefined {
  let newest: Dated | undefined;
  for (const list of lists)
    for (const m of list)
      if (
        !newest ||
        m.created_at_ms > newest.created_at_ms ||
        (m.created_at_ms === newest.created_at_ms && m.id > newest.id)
      )
        newest = m;
  return newest;
}

/** The date of a snapshot taken now (`nowMs`, the clock) when `newest` is the agent's newest one. */
export function captureTime(nowMs: number, newest: Dated | undefined): CaptureTime {
  if (!newest || nowMs > newest.created_at_ms) return { createdAtMs: nowMs, clockBehindMs: 0 };
  const createdAtMs = newest.created_at_ms + 1;
  return { createdAtMs, clockBehindMs: createdAtMs - nowMs, after: newest };
}

/** The field a new snapshot's report has when the clock was behind (SnapshotMeta.clock_behind_ms). */
export function clockBehindOf(t: CaptureTime): Pick<SnapshotMeta, 'clock_behind_ms'> {
  return t.clockBehindMs > 0 ? { clock_behind_ms: t.clockBehindMs } : {};
}

/** A clock difference as people read it: `850 ms`, `42 s`, `17 min`, `5 h`, `3 days` (rounded down). */
export function durationText(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.floor(ms / 1_000)} s`;
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${Math.floor(ms / 3_600_000)} h`;
  return `${Math.floor(ms / 86_400_000)} days`;
}

/** The warning of a snapshot dated after its agent's newest instead of by the clock (the log, stderr). */
export function clockBehindNote(agentId: string, id: string, t: CaptureTime): string | undefined {
  if (t.clockBehindMs === 0 || !t.after) return undefined;
  const iso = (ms: number) => new Date(ms).toISOString();
  return (
    `snapshot ${id} of agent ${agentId} is dated ${iso(t.createdAtMs)}, ${durationText(t.clockBehindMs)} after this host's clock: ` +
    `the agent's newest snapshot ${t.after.id} is dated ${iso(t.after.created_at_ms)}, and a new snapshot is always ` +
    "dated after it so that it is the newest (latest, undo, retention); check the host's clock " +
    '(a snapshot dated wrongly by it keeps later ones dated after it until it is deleted)'
  );
}
