// Owns the pre-dream hook for host runtimes (the original's PreDreamSnapshotAdapter, §15): before an
// autonomous "dream" consolidation rewrites an agent's memory, take a snapshot labelled
// `auto:pre-dream-<run id>`, created_by `auto-pre-dream`, never redacted and not encrypted unless the
// snapshotter encrypts everything, so the dream can be rolled back exactly. Never throws: a failure is
// returned (and the dream may proceed, as in the original).

import type { SnapshotConfig } from '../config/config.js';
import { CONFIG_DEFAULTS } from '../config/config.js';
import { asSnapshotError } from '../model/errors.js';
import { DEFAULT_TENANT } from '../model/ids.js';
import type { SnapshotMeta, SnapshotRequest } from '../model/types.js';
import type { MemorySnapshotter } from '../snapshotter/interface.js';

export const PRE_DREAM_CREATED_BY = 'auto-pre-dream';
export const PRE_DREAM_LABEL_PREFIX = 'auto:pre-dream-';

export function preDreamLabel(runId: string): string {
  return `${PRE_DREAM_LABEL_PREFIX}${runId}`;
}

export type PreDreamResult =
  | { ok: true; snapshot: SnapshotMeta }
  /** The snapshot failed: `code` is the error's stable code, `error` its message. */
  | { ok: false; code: string; error: string };

/** What a dream runner calls before each dream. */
export interface PreDreamSnapshotHook {
  snapshotBeforeDream(agentId: string, tenant: string | undefined, runId: string): Promise<PreDreamResult>;
}

export class PreDreamSnapshotAdapter implements PreDreamSnapshotHook {
  constructor(private readonly snapshotter: MemorySnapshotter) {}

  async snapshotBeforeDream(
    agentId: string,
    tenant: string | undefined,
    runId: string,
  ): Promise<PreDreamResult> {
    // the run's id names the anchor (`auto:pre-dream-<run id>`): an empty one would name no run
    if (typeof runId !== 'string' || runId.length === 0)
      return {
        ok: false,
        code: 'INVALID_INPUT',
        error: `a pre-dream snapshot needs the dream run's id (a non-empty string), got ${typeof runId === 'string' ? 'an empty string' : typeof runId}`,
      };
    // `redact: false` explicitly: the anchor must restore the memory exactly as it was. (The request
    // type gains `redact` with the redaction work; until then the field is simply not read.)
    const request: SnapshotRequest & { redact?: boolean } = {
      agentId,
      tenant: tenant ?? DEFAULT_TENANT,
      label: preDreamLabel(runId),
      createdBy: PRE_DREAM_CREATED_BY,
      redact: false,
    };
    try {
      return { ok: true, snapshot: await this.snapshotter.snapshot(request) };
    } catch (err) {
      const e = asSnapshotError(err, `pre-dream snapshot of agent ${agentId}`);
      return { ok: false, code: e.code, error: e.message };
    }
  }
}

/** The adapter when `memory.snapshot.auto_pre_dream` is true (and snapshots are enabled), else undefined. */
export function preDreamHookFromConfig(
  snapshotter: MemorySnapshotter,
  cfg: SnapshotConfig,
): PreDreamSnapshotAdapter | undefined {
  const enabled =
    (cfg.enabled ?? CONFIG_DEFAULTS.enabled) && (cfg.auto_pre_dream ?? CONFIG_DEFAULTS.auto_pre_dream);
  return enabled ? new PreDreamSnapshotAdapter(snapshotter) : undefined;
}
