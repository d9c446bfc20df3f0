// Owns the daemon's scheduled snapshots: one fixed-rate timer per (tenant, agent) — runs at start +
// k × interval of monotonic time, no jitter, no drift, whatever the wall clock does — whose runs never overlap: a tick that finds the previous run of
// that agent still going, or the agent or the repository locked by another process, is skipped and counted. Runs are
// tracked operations, so a shutdown waits for the one in progress and starts no new one. While the daemon's
// prune runs (hold), runs that fall due wait for it.

import { SnapshotError } from '../model/errors.js';
import { validateLabel } from '../model/ids.js';
import type { ProgressEvent, SnapshotMeta } from '../model/types.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { type LongTimer, monotonicNow, setLongTimeout } from '../util/long-timer.js';
import { type ActivityBoard, summarizeSnapshot } from './activity.js';
import { ClientErrors } from './client-errors.js';
import type { OperationTracker } from './tracker.js';

export interface ScheduleEntry {
  agentId: string;
  tenant: string;
  intervalMs: number;
  /** Label of the scheduled snapshots (default `scheduled`). */
  label?: string;
}

export interface ScheduleStatus {
  agent_id: string;
  tenant: string;
  interval_secs: number;
  running: boolean;
  /** A run is due but waits for the daemon's repository prune to end (hold()); it starts when that ends. */
  waiting_for_prune: boolean;
  runs: number;
  failures: number;
  /** Ticks skipped: the previous run was still going, or another process held the agent or the repository. */
  skipped_busy: number;
  next_at_ms?: number;
  last_started_at_ms?: number;
  last_finished_at_ms?: number;
  last_snapshot_id?: string;
  /** The client's form of the last failure (client-errors.ts): no host path; the log has it under error_id. */
  last_error?: { code: string; message: string; error_id: string };
}

export type ScheduleOutcome =
  | { kind: 'ok'; meta: SnapshotMeta }
  | { kind: 'skipped'; reason: string }
  /** A due run waits for the daemon's prune (hold()); an outcome of the run follows when it ends. */
  | { kind: 'waiting'; reason: string }
  | { kind: 'failed'; error: unknown; errorId: string };

export const SCHEDULED_LABEL = 'scheduled';

/** A refusal because another operation holds what the run needs: the errors whose outcome is `concurrent`. */
const busy = (err: unknown): err is SnapshotError =>
  err instanceof SnapshotError && err.outcome === 'concurrent';
export const SCHEDULED_CREATED_BY = 'scheduled';

/**
 * The scheduler's clocks. The grid, its timers and the lateness of an agent are on the monotonic clock
 * (performance.now: never stepped, by NTP, an administrator or a VM's resume); the wall clock only
 * dates what the status shows.
 */
export interface SchedulerClock {
  /** Wall time, ms since the epoch. */
  now(): number;
  /** Monotonic time, ms from any origin. */
  monotonic(): number;
  /** Runs `fn` once after `ms` of monotonic time. */
  setTimer(fn: () => void, ms: number): LongTimer;
}

export const SYSTEM_CLOCK: SchedulerClock = {
  now: () => Date.now(),
  monotonic: monotonicNow,
  setTimer: (fn, ms) => setLongTimeout(fn, ms, monotonicNow),
};

interface Slot {
  entry: ScheduleEntry;
  status: ScheduleStatus;
  timer?: LongTimer;
  /** Monotonic time of the start: slot k is due at startedAt + k × interval. */
  startedAt: number;
  k: number;
  /** Monotonic time the armed slot is due. */
  dueAt?: number;
  /** Monotonic time the last successful run finished. */
  lastOkAt?: number;
  running?: Promise<void>;
}

export class Scheduler {
  private readonly slots: Slot[];
  private stopped = true;
  /** Holds in progress (hold()): the runs due meanwhile wait for `released`. */
  private holds = 0;
  private released: Promise<void> = Promise.resolve();
  private release: () => void = () => {};
  private readonly errors: ClientErrors;
  private readonly clock: SchedulerClock;

  constructor(
    private readonly snapshotter: LocalSnapshotter,
    entries: readonly ScheduleEntry[],
    private readonly opts: {
      tracker: OperationTracker;
      /** Shows each run (and its progress) on the daemon's activity board. */
      activity?: ActivityBoard;
      /** What the schedule's status tells of a failed run (and the log line under its id). */
      clientErrors?: ClientErrors;
      onOutcome?: (entry: ScheduleEntry, outcome: ScheduleOutcome) => void;
      /** Default: the system's clocks (tests give their own). */
      clock?: SchedulerClock;
    },
  ) {
    this.errors = opts.clientErrors ?? new ClientErrors();
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    // A label no snapshot can carry is refused now (INVALID_INPUT), not by every run hours later.
    for (const e of entries) validateLabel(e.label);
    this.slots = entries.map((entry) => ({
      entry,
      startedAt: 0,
      k: 0,
      status: {
        agent_id: entry.agentId,
        tenant: entry.tenant,
        interval_secs: entry.intervalMs / 1000,
        running: false,
        waiting_for_prune: false,
        runs: 0,
        failures: 0,
        skipped_busy: 0,
      },
    }));
  }

  start(): void {
    this.stopped = false;
    const now = this.clock.monotonic();
    for (const slot of this.slots) {
      slot.startedAt = now;
      slot.k = 0;
      this.arm(slot);
    }
  }

  private arm(slot: Slot): void {
    if (this.stopped) return;
    // Monotonic time: a wall clock stepped back a day no longer arms the next run a day late (it did,
    // and the schedule went quiet that long after the clock was put right; stop 46).
    const now = this.clock.monotonic();
    const interval = slot.entry.intervalMs;
    // The next slot strictly in the future; missed slots (a long run, a stopped process) are not replayed.
    slot.k = Math.max(slot.k + 1, Math.floor((now - slot.startedAt) / interval) + 1);
    slot.dueAt = slot.startedAt + slot.k * interval;
    slot.timer = this.clock.setTimer(() => this.fire(slot), slot.dueAt - now);
  }

  /**
   * Runs `fn` (the daemon's prune) with the schedule held back: a run due meanwhile starts when `fn` has
   * ended (one per agent; a later slot of an agent whose run waits is skipped, as behind a long run).
   * Without it, on a host whose scheduled snapshots always overlap, some snapshot always held the
   * repository's shared lock and the sweep's prune found it busy every time (stop 56).
   */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    if (this.holds++ === 0)
      this.released = new Promise((resolve) => {
        this.release = resolve;
      });
    try {
      return await fn();
    } finally {
      if (--this.holds === 0) this.release();
    }
  }

  private fire(slot: Slot): void {
    if (this.stopped) return;
    if (slot.running) {
      slot.status.skipped_busy++;
      const reason = slot.status.running
        ? 'the previous run is still going'
        : 'the previous run waits for the repository prune';
      this.opts.onOutcome?.(slot.entry, { kind: 'skipped', reason });
    } else {
      slot.running = this.runOnce(slot).finally(() => {
        slot.running = undefined;
      });
    }
    this.arm(slot);
  }

  private async runOnce(slot: Slot): Promise<void> {
    const { entry, status } = slot;
    let meta: SnapshotMeta;
    if (this.holds > 0) {
      status.waiting_for_prune = true;
      this.opts.onOutcome?.(entry, {
        kind: 'waiting',
        reason: 'the repository prune runs; it starts when that ends',
      });
      try {
        await this.released;
      } finally {
        status.waiting_for_prune = false;
      }
      if (this.stopped) return;
    }
    status.running = true;
    status.last_started_at_ms = this.clock.now();
    try {
      const take = (onProgress?: (p: ProgressEvent) => void) =>
        this.snapshotter.snapshot({
          agentId: entry.agentId,
          tenant: entry.tenant,
          label: entry.label ?? SCHEDULED_LABEL,
          createdBy: SCHEDULED_CREATED_BY,
          ...(onProgress ? { onProgress } : {}),
        });
      const board = this.opts.activity;
      meta = await this.opts.tracker.run(() =>
        board
          ? board.track(
              { op: 'snapshot', source: 'scheduled', agent_id: entry.agentId, tenant: entry.tenant },
              take,
              summarizeSnapshot,
            )
          : take(),
      );
    } catch (err) {
      // Every busy refusal — the agent's lock or its write gate (CONCURRENT), a repository lock held by
      // another process (REPOSITORY_LOCKED) — is a skip, as the metrics count it (outcome `concurrent`).
      if (busy(err)) {
        status.skipped_busy++;
        this.opts.onOutcome?.(entry, { kind: 'skipped', reason: err.message });
      } else {
        status.failures++;
        const told = this.errors.report(err, `snapshot of ${entry.tenant}/${entry.agentId} (scheduled)`);
        status.last_error = { code: told.code, message: told.message, error_id: told.error_id };
        this.opts.onOutcome?.(entry, { kind: 'failed', error: err, errorId: told.error_id });
      }
      return;
    } finally {
      status.running = false;
      status.last_finished_at_ms = this.clock.now();
    }
    slot.lastOkAt = this.clock.monotonic();
    status.runs++;
    status.last_snapshot_id = meta.id;
    delete status.last_error;
    this.opts.onOutcome?.(entry, { kind: 'ok', meta });
  }

  /** `next_at_ms`: when the armed slot is due, as the wall clock reads now (the timer runs on the monotonic one). */
  status(): ScheduleStatus[] {
    const wall = this.clock.now();
    const mono = this.clock.monotonic();
    return this.slots.map((s) => ({
      ...s.status,
      ...(s.dueAt !== undefined && !this.stopped ? { next_at_ms: Math.round(wall + (s.dueAt - mono)) } : {}),
    }));
  }

  /**
   * How long the agent has gone without a snapshot, as far as the daemon can tell (the fleet's `late`).
   * After a successful run of its own: the monotonic time since that run ended, or the wall-clock age
   * of `lastSnapshotAtMs` (the store's newest snapshot, maybe another process's) when that is less.
   * Before one: that age (a snapshot taken before the daemon started counts), or the monotonic time
   * since the schedule started when there is none. An age below 0 (a date ahead of the clock) says the
   * clock was stepped and is not taken. Undefined: the agent is not scheduled here, or the schedule is
   * not running.
   */
  sinceLastSnapshotMs(tenant: string, agentId: string, lastSnapshotAtMs?: number): number | undefined {
    const slot = this.slots.find((s) => s.entry.tenant === tenant && s.entry.agentId === agentId);
    if (!slot || this.stopped) return undefined;
    const mono = this.clock.monotonic();
    const dated = lastSnapshotAtMs === undefined ? undefined : this.clock.now() - lastSnapshotAtMs;
    const wall = dated !== undefined && dated >= 0 ? dated : undefined;
    if (slot.lastOkAt === undefined) return wall ?? mono - slot.startedAt;
    return Math.min(mono - slot.lastOkAt, wall ?? Number.POSITIVE_INFINITY);
  }

  /** No new runs; resolves when the runs in progress have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.release(); // a run waiting for a hold starts nothing now
    for (const s of this.slots) {
      s.timer?.clear();
      delete s.dueAt;
    }
    await Promise.all(this.slots.map((s) => s.running));
  }
}
