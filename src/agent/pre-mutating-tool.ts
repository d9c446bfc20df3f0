// Owns the pre-mutating-tool hook for host runtimes (the original's `auto_pre_mutating_tool`, which it
// never implemented): before a tool call that changes an agent's memory, take a snapshot labelled
// `auto:pre-mutating-tool-<tool>`, created_by `auto-pre-mutating-tool`, never redacted, so the call can
// be rolled back exactly — at most one per `min_interval_secs` per agent, across processes (the time
// of the last one is kept beside the agent lock). A call inside the interval, or while this process is
// already taking that agent's snapshot (it waits for it), is skipped and counted
// (`nexo_memory_snapshot_skipped_total{reason}`). Retention keeps these anchors by their own rule
// (retention.pre_mutating_tool_*). Never throws: a failure is returned, and the tool may proceed.

import type { SnapshotConfig } from '../config/config.js';
import { CONFIG_DEFAULTS } from '../config/config.js';
import { asSnapshotError, InvalidInputError } from '../model/errors.js';
import { DEFAULT_TENANT, validateLabel } from '../model/ids.js';
import type { SnapshotMeta, SnapshotRequest } from '../model/types.js';
import { PRE_MUTATING_TOOL_KIND } from '../policy/retention.js';
import type { OperationRecord } from '../snapshotter/observer.js';

export const PRE_MUTATING_TOOL_CREATED_BY = PRE_MUTATING_TOOL_KIND;
export const PRE_MUTATING_TOOL_LABEL_PREFIX = 'auto:pre-mutating-tool-';

/** Tool names: 1..100 printable characters (they become part of the label). */
const MAX_TOOL_CHARS = 100;

export function preMutatingToolLabel(tool: string): string {
  if (
    typeof tool !== 'string' ||
    tool.length < 1 ||
    [...tool].length > MAX_TOOL_CHARS ||
    /[\u0000-\u001f\u007f]/.test(tool) ||
    /\p{Surrogate}/u.test(tool)
  )
    throw new InvalidInputError(`invalid tool name: 1..${MAX_TOOL_CHARS} printable characters`);
  // the snapshot's own rule for labels too, so a name it refuses is refused here, before the interval
  // is looked at: such a name was skipped inside the interval and failed outside it (stop 57)
  return validateLabel(`${PRE_MUTATING_TOOL_LABEL_PREFIX}${tool}`)!;
}

export type SkipReason = 'interval' | 'in_flight';

export type PreMutatingToolResult =
  | { ok: true; snapshot: SnapshotMeta }
  /** No snapshot was needed: one of this agent was taken less than the interval ago, or was being taken. */
  | { ok: true; skipped: SkipReason }
  /** The snapshot failed: `code` is the error's stable code, `error` its message. */
  | { ok: false; code: string; error: string };

/** What a runtime calls before each memory-mutating tool call. */
export interface PreMutatingToolSnapshotHook {
  snapshotBeforeTool(
    agentId: string,
    tenant: string | undefined,
    tool: string,
  ): Promise<PreMutatingToolResult>;
}

/** What the hook needs of a snapshotter (LocalSnapshotter has both). */
export interface ThrottledSnapshotter {
  snapshotUnlessRecent(
    req: SnapshotRequest,
    minIntervalMs: number,
  ): Promise<{ snapshot: SnapshotMeta } | { skipped: 'interval'; last_at_ms: number; snapshot_id?: string }>;
  /** Whether the anchor `id` is still stored (a deleted one covers nothing). */
  stillStored(agentId: string, tenant: string, id: string): Promise<boolean>;
  observe(record: OperationRecord): void;
}

export interface PreMutatingToolOptions {
  /** At most one snapshot per agent per this many seconds (default 60; 0: before every call). */
  minIntervalSecs?: number;
}

export class PreMutatingToolSnapshotAdapter implements PreMutatingToolSnapshotHook {
  readonly minIntervalMs: number;
  /** When each agent's last snapshot of this kind was taken, and its id, as far as this process knows. */
  private readonly last = new Map<string, { at: number; id?: string }>();
  private readonly inFlight = new Map<string, Promise<PreMutatingToolResult>>();

  constructor(
    private readonly snapshotter: ThrottledSnapshotter,
    opts: PreMutatingToolOptions = {},
  ) {
    const secs = opts.minIntervalSecs ?? CONFIG_DEFAULTS.pre_mutating_tool.min_interval_secs;
    // its milliseconds must be exact too: 9007199254741 s was taken, and every call then failed (stop 57)
    if (!Number.isSafeInteger(secs) || secs < 0 || !Number.isSafeInteger(secs * 1000))
      throw new InvalidInputError(
        `min_interval_secs (minIntervalSecs) must be an integer from 0 to ${Math.floor(Number.MAX_SAFE_INTEGER / 1000)}`,
      );
    this.minIntervalMs = secs * 1000;
  }

  async snapshotBeforeTool(
    agentId: string,
    tenant: string | undefined,
    tool: string,
  ): Promise<PreMutatingToolResult> {
    const t = tenant ?? DEFAULT_TENANT;
    let label: string;
    try {
      label = preMutatingToolLabel(tool);
    } catch (err) {
      const e = asSnapshotError(err, 'pre-mutating-tool snapshot');
      return { ok: false, code: e.code, error: e.message };
    }
    const key = `${t}\u0000${agentId}`;
    const running = this.inFlight.get(key);
    if (running) {
      // The snapshot being taken shows the memory before this call too: wait for it, take none (its
      // failure is this call's too). When that call took none (another process took one inside the
      // interval), this one is skipped for the same reason: `in_flight` means a snapshot was being taken.
      const r = await running;
      if (!r.ok) return r;
      return this.skip(agentId, t, 'skipped' in r ? r.skipped : 'in_flight');
    }
    const last = this.last.get(key);
    const now = Date.now();
    // inside the interval of an anchor still stored (one stat: an anchor deleted meanwhile covers
    // nothing, stop 57); else the snapshotter decides under the agent lock
    if (last !== undefined && now >= last.at && now - last.at < this.minIntervalMs) {
      const stored = last.id === undefined ? true : await this.stillStored(agentId, t, last.id);
      if (stored === true) return this.skip(agentId, t, 'interval');
      if (stored !== false) return stored;
    }
    const run = this.take(agentId, t, label, key);
    this.inFlight.set(key, run);
    try {
      return await run;
    } finally {
      this.inFlight.delete(key);
    }
  }

  private async take(agentId: string, tenant: string, label: string, key: string) {
    const request: SnapshotRequest = {
      agentId,
      tenant,
      label,
      createdBy: PRE_MUTATING_TOOL_CREATED_BY,
      redact: false, // an anchor restores exactly
    };
    try {
      const r = await this.snapshotter.snapshotUnlessRecent(request, this.minIntervalMs);
      if ('skipped' in r) {
        // another process took one (counted by the snapshotter)
        this.last.set(key, { at: r.last_at_ms, ...(r.snapshot_id ? { id: r.snapshot_id } : {}) });
        return { ok: true as const, skipped: r.skipped };
      }
      this.last.set(key, { at: r.snapshot.created_at_ms, id: r.snapshot.id });
      return { ok: true as const, snapshot: r.snapshot };
    } catch (err) {
      const e = asSnapshotError(err, `pre-mutating-tool snapshot of agent ${agentId}`);
      return { ok: false as const, code: e.code, error: e.message };
    }
  }

  /** Whether the anchor is stored; a failure to tell is the call's result (never thrown). */
  private async stillStored(
    agentId: string,
    tenant: string,
    id: string,
  ): Promise<boolean | PreMutatingToolResult> {
    try {
      return await this.snapshotter.stillStored(agentId, tenant, id);
    } catch (err) {
      const e = asSnapshotError(err, `pre-mutating-tool snapshot of agent ${agentId}`);
      return { ok: false as const, code: e.code, error: e.message };
    }
  }

  private skip(agentId: string, tenant: string, reason: SkipReason): PreMutatingToolResult {
    this.snapshotter.observe({
      op: 'snapshot-skipped',
      agentId,
      tenant,
      createdBy: PRE_MUTATING_TOOL_CREATED_BY,
      reason,
      outcome: 'ok',
      durationMs: 0,
    });
    return { ok: true, skipped: reason };
  }
}

/**
 * The adapter when `memory.snapshot.auto_pre_mutating_tool` is true (and snapshots are enabled), with
 * `pre_mutating_tool.min_interval_secs`; else undefined.
 */
export function preMutatingToolHookFromConfig(
  snapshotter: ThrottledSnapshotter,
  cfg: SnapshotConfig,
): PreMutatingToolSnapshotAdapter | undefined {
  const enabled =
    (cfg.enabled ?? CONFIG_DEFAULTS.enabled) &&
    (cfg.auto_pre_mutating_tool ?? CONFIG_DEFAULTS.auto_pre_mutating_tool);
  if (!enabled) return undefined;
  return new PreMutatingToolSnapshotAdapter(snapshotter, {
    minIntervalSecs:
      cfg.pre_mutating_tool?.min_interval_secs ?? CONFIG_DEFAULTS.pre_mutating_tool.min_interval_secs,
  });
}
