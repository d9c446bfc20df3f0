// Owns turning snapshotter operation records into metric samples: snapshot and restore outcomes,
// bytes and durations, delete outcomes, the bundles each gc sweep deleted per agent, and automatic
// snapshots skipped by their throttle. Dry runs
// change nothing and are not counted.

import type { OperationObserver, OperationRecord } from '../snapshotter/observer.js';
import { type SnapshotMetrics, UNKNOWN_AGENT_LABEL } from './metrics.js';

/** The labels of an operation's agent: an agent this host does not have reports as `_unknown`. */
const who = (r: { agentId: string; tenant: string; error?: { code?: string } }) => ({
  agent: r.error?.code === 'UNKNOWN_AGENT' ? UNKNOWN_AGENT_LABEL : r.agentId,
  tenant: r.tenant,
});

export class MetricsObserver implements OperationObserver {
  constructor(readonly metrics: SnapshotMetrics) {}

  onOperation(r: OperationRecord): void {
    switch (r.op) {
      case 'snapshot':
        this.metrics.observe(
          'snapshot',
          who(r),
          r.outcome,
          // a bundle's meta always says (its file); an unknown (null) adds nothing rather than a guess
          r.meta
            ? r.meta.added_bytes === undefined
              ? r.meta.bundle_size_bytes
              : (r.meta.added_bytes ?? undefined)
            : undefined,
          r.durationMs,
        );
        break;
      case 'restore':
        if (!r.dryRun) this.metrics.observe('restore', who(r), r.outcome, 0, r.durationMs);
        break;
      case 'delete':
        this.metrics.observe('delete', who(r), r.outcome);
        break;
      case 'snapshot-skipped':
        this.metrics.observeSkipped(who(r), r.reason);
        break;
      case 'gc':
        if (r.dryRun || !r.report) break;
        for (const a of r.report.agents) {
          const deleted = a.decisions.filter((d) => d.action === 'delete').length;
          this.metrics.observeGc({ agent: a.agent_id, tenant: a.tenant }, deleted);
        }
        break;
    }
  }
}
