// Owns the observer port of the snapshotter: every operation that changes the store (snapshot, restore,
// delete, gc), and every automatic snapshot a throttle skipped, reports its outcome — success with its result, failure with the typed error and its
// metric `outcome` label — to the observers given at construction (metrics, lifecycle events, a host's
// own). Observers are called synchronously after the operation; one that throws is reported as a
// warning and never changes the operation's result.

import type { Outcome, SnapshotError } from '../model/errors.js';
import type { DeleteResult, RestoreReport, SnapshotMeta } from '../model/types.js';
import type { RetentionTickReport } from './gc.js';

interface Base {
  outcome: Outcome;
  durationMs: number;
  /** Set when the operation failed. */
  error?: SnapshotError;
}

export type OperationRecord =
  | (Base & {
      op: 'snapshot';
      agentId: string;
      tenant: string;
      /** `created_by` of the snapshot (`auto-pre-restore` for the one a restore takes). */
      createdBy: string;
      meta?: SnapshotMeta;
    })
  | (Base & { op: 'restore'; agentId: string; tenant: string; dryRun: boolean; report?: RestoreReport })
  | (Base & { op: 'delete'; agentId: string; tenant: string; result?: DeleteResult })
  | (Base & { op: 'gc'; dryRun: boolean; report?: RetentionTickReport })
  | (Base & {
      /** An automatic snapshot that was not taken (outcome `ok`: nothing failed). */
      op: 'snapshot-skipped';
      agentId: string;
      tenant: string;
      createdBy: string;
      /** `interval`: one was taken less than the minimum interval ago; `in_flight`: one was being taken. */
      reason: 'interval' | 'in_flight';
    });

export interface OperationObserver {
  onOperation(record: OperationRecord): void;
}

/** Calls each observer; a throwing observer becomes a warning. */
export function notifyObservers(
  observers: readonly OperationObserver[],
  record: OperationRecord,
  warn: (message: string) => void,
): void {
  for (const o of observers) {
    try {
      o.onOperation(record);
    } catch (err) {
      warn(`an operation observer failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }
}
