// Owns turning snapshotter operation records into lifecycle events: `created` for every snapshot
// written (pre-restore snapshots included), `restored` for every committed restore, `deleted` for every
// bundle removed (by delete, or by a gc sweep: one per bundle), and one `gc` per sweep that deleted or
// removed something — one with errors too (its outcome is not `ok`, stop 47, but what it deleted is
// gone). Failures, dry runs and sweeps that changed nothing publish nothing: events announce changes to
// the store.

import type { OperationObserver, OperationRecord } from '../snapshotter/observer.js';
import { createdEvent, deletedEvent, gcEvent, restoredEvent } from './payloads.js';
import type { EventPublisher } from './publisher.js';

export class LifecycleEventsObserver implements OperationObserver {
  constructor(readonly publisher: EventPublisher) {}

  onOperation(r: OperationRecord): void {
    // a sweep that ended with a report changed what it reports, whatever its outcome
    if (r.outcome !== 'ok' && !(r.op === 'gc' && r.report)) return;
    switch (r.op) {
      case 'snapshot':
        if (r.meta) this.publisher.publishLifecycle(createdEvent(r.meta));
        break;
      case 'restore':
        if (r.report && !r.dryRun) this.publisher.publishLifecycle(restoredEvent(r.report));
        break;
      case 'delete':
        if (r.result) this.publisher.publishLifecycle(deletedEvent(r.result, 'operator'));
        break;
      case 'gc': {
        if (r.dryRun || !r.report) break;
        const g = r.report;
        // A sweep that deleted and removed nothing changed nothing: no event (a quiet store stays quiet).
        if (
          g.bundles_deleted +
            g.orphan_staging_dirs_removed +
            g.backups_removed +
            g.restores_recovered.length ===
          0
        )
          break;
        const now = Date.now();
        for (const a of r.report.agents) {
          for (const d of a.decisions) {
            if (d.action === 'delete')
              this.publisher.publishLifecycle(
                deletedEvent({ agent_id: a.agent_id, tenant: a.tenant, id: d.id }, 'retention', now),
              );
          }
        }
        this.publisher.publishLifecycle(gcEvent(r.report, now));
        break;
      }
    }
  }
}
