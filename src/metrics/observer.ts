// Owns turning snapshotter operation records into metric samples: snapshot and restore outcomes,
// bytes and durations, delete outcomes, the bundles each gc sweep deleted per agent, and automatic
// snapshots skipped by their throttle. Dry runs
// change nothing and are not counted.

import type { OperationObserver, OperationRecord } from '../snapshotter/observer.js';
import type { SnapshotMetrics } from './metrics.js';

export class MetricsObserver implements OperationObserver {
  constructor(readonly metrics: SnapshotMetrics) {}

  onOperation(r: OperationRecord): void {
    switch (r.op) {
      case 'snapshot':
        this.metrics.observe(
          'snapshot',
          { agent: r.agentId, tenant: r.tenant },
          r.outcome,
          r.meta?.bundle_size_bytes,
          r.durationMs,
        );
        break;
      case 'restore':
        if (!r.dryRun)
          this.metrics.observe('restore', { agent: r.agentId, tenant: r.tenant }, r.outcome, 0, r.durationMs);
        break;
      case 'delete':
        this.metrics.observe('delete', { agent: r.agentId, tenant: r.tenant }, r.outcome);
        break;
      case 'snapshot-skipped':
        this.metrics.observeSkipped({ agent: r.agentId, tenant: r.tenant }, r.reason);
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
