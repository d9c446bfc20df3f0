// Owns the EventPublisher port (the original's, fire-and-forget) and the publisher that discards
// everything. Publishing never throws and never waits: implementations queue and deliver in the
// background; `close()` delivers what it can before a deadline.

import type { LifecycleEvent, MutationEvent } from './payloads.js';

export interface PublisherStats {
  published: number;
  dropped: number;
  queued: number;
}

export interface EventPublisher {
  /** Queues a lifecycle event for `<lifecycle prefix>.<agent>.<kind>` (gc: `._all.gc`). */
  publishLifecycle(event: LifecycleEvent): void;
  /** Queues a mutation event for `<mutation prefix>.<agent>`. */
  publishMutation(event: MutationEvent): void;
  /** Delivers what is queued until `deadlineMs` passes, drops (and counts) the rest, disconnects. */
  close(deadlineMs?: number): Promise<PublisherStats>;
  stats(): PublisherStats;
}

/** The publisher when no broker is configured: accepts and discards. */
export class NoopPublisher implements EventPublisher {
  publishLifecycle(_event: LifecycleEvent): void {}
  publishMutation(_event: MutationEvent): void {}
  async close(): Promise<PublisherStats> {
    return this.stats();
  }
  stats(): PublisherStats {
    return { published: 0, dropped: 0, queued: 0 };
  }
}
