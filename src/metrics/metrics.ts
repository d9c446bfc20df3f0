// Owns the Prometheus metric families of the original (§12) and the recorder that feeds them: a
// prom-client Registry per instance, `agent`/`tenant` label values capped at 256 distinct values each
// (the 257th and later report as `other`, shared across families, as the original), and the families
// the port adds (restore and delete outcomes, restore duration, event delivery counters, automatic
// snapshots skipped by their throttle, and a remote repository's requests, bytes and retries per
// backend: `storeObserver` is the BackendObserver backend/metered.ts and backend/retry.ts report to).

import { Counter, Histogram, Registry } from 'prom-client';
import type { BackendObserver } from '../backend/remote.js';
import type { Outcome } from '../model/errors.js';
import { isValidId } from '../model/ids.js';

/** The family names. The first five are the original's wire contract. */
export const METRIC = {
  snapshotTotal: 'nexo_memory_snapshot_total',
  restoreTotal: 'nexo_memory_snapshot_restore_total',
  gcTotal: 'nexo_memory_snapshot_gc_total',
  bytesTotal: 'nexo_memory_snapshot_bytes_total',
  durationMs: 'nexo_memory_snapshot_duration_ms',
  restoreDurationMs: 'nexo_memory_snapshot_restore_duration_ms',
  deleteTotal: 'nexo_memory_snapshot_delete_total',
  eventsPublished: 'nexo_memory_snapshot_events_published_total',
  eventsDropped: 'nexo_memory_snapshot_events_dropped_total',
  skippedTotal: 'nexo_memory_snapshot_skipped_total',
  storeRequests: 'nexo_memory_snapshot_store_requests_total',
  storeBytes: 'nexo_memory_snapshot_store_bytes_total',
  storeRetries: 'nexo_memory_snapshot_store_retries_total',
} as const;

/** The original's histogram bounds, in milliseconds (`+Inf` is implicit). */
export const DURATION_BUCKETS_MS = [50, 100, 250, 500, 1000, 5000, 15000, 60000] as const;

/** Distinct agent (and, separately, tenant) label values before new ones report as `other`. */
export const LABEL_CAP = 256;
export const OVERFLOW_LABEL = 'other';
/**
 * The `agent` (or `tenant`) label of an operation that named no valid id, or an agent this host does not
 * have: they take none of the capped values (a client could otherwise use them all up with made-up
 * names, and every real agent after would report as `other`). No id starts with `_`.
 */
export const INVALID_LABEL = '_invalid';
export const UNKNOWN_AGENT_LABEL = '_unknown';

/** Operations with an outcome counter. */
export type MeteredOperation = 'snapshot' | 'restore' | 'delete';

export interface MetricLabels {
  agent: string;
  tenant: string;
}

export interface SnapshotMetricsOptions {
  /** Register into this registry (default: a new one, so instances never share state). */
  registry?: Registry;
  /** Distinct values per label before `other` (default 256). */
  labelCap?: number;
}

/** Keeps at most `cap` distinct values; later new values map to `other`. */
class CappedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly cap: number) {}
  map(value: string): string {
    if (this.seen.has(value)) return value;
    if (value === UNKNOWN_AGENT_LABEL) return value;
    if (!isValidId(value)) return INVALID_LABEL;
    if (this.seen.size >= this.cap) return OVERFLOW_LABEL;
    this.seen.add(value);
    return value;
  }
}

export class SnapshotMetrics {
  readonly registry: Registry;
  private readonly agents: CappedLabel;
  private readonly tenants: CappedLabel;
  private readonly snapshotTotal: Counter<'agent' | 'tenant' | 'outcome'>;
  private readonly restoreTotal: Counter<'agent' | 'tenant' | 'outcome'>;
  private readonly deleteTotal: Counter<'agent' | 'tenant' | 'outcome'>;
  private readonly gcTotal: Counter<'agent' | 'tenant'>;
  private readonly bytesTotal: Counter<'agent' | 'tenant'>;
  private readonly duration: Histogram<'agent' | 'tenant'>;
  private readonly restoreDuration: Histogram<'agent' | 'tenant'>;
  private readonly published: Counter<'kind'>;
  private readonly dropped: Counter<'kind'>;
  private readonly skipped: Counter<'agent' | 'tenant' | 'reason'>;
  private readonly storeRequests: Counter<'backend' | 'op' | 'outcome'>;
  private readonly storeBytes: Counter<'backend' | 'direction'>;
  private readonly storeRetries: Counter<'backend' | 'op'>;

  constructor(opts: SnapshotMetricsOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    const cap = opts.labelCap ?? LABEL_CAP;
    this.agents = new CappedLabel(cap);
    this.tenants = new CappedLabel(cap);
    const registers = [this.registry];
    const outcomeLabels = ['agent', 'tenant', 'outcome'] as const;
    const agentLabels = ['agent', 'tenant'] as const;
    this.snapshotTotal = new Counter({
      name: METRIC.snapshotTotal,
      help: 'Snapshots attempted, by outcome.',
      labelNames: outcomeLabels,
      registers,
    });
    this.restoreTotal = new Counter({
      name: METRIC.restoreTotal,
      help: 'Restores attempted (dry runs excluded), by outcome.',
      labelNames: outcomeLabels,
      registers,
    });
    this.gcTotal = new Counter({
      name: METRIC.gcTotal,
      help: 'Snapshots deleted by retention (bundles removed, repository snapshots forgotten).',
      labelNames: agentLabels,
      registers,
    });
    this.bytesTotal = new Counter({
      name: METRIC.bytesTotal,
      help: 'Bytes written by successful snapshots (a bundle: its size; a repository snapshot: the data it added).',
      labelNames: agentLabels,
      registers,
    });
    this.duration = new Histogram({
      name: METRIC.durationMs,
      help: 'Snapshot duration in milliseconds (every outcome).',
      labelNames: agentLabels,
      buckets: [...DURATION_BUCKETS_MS],
      registers,
    });
    this.restoreDuration = new Histogram({
      name: METRIC.restoreDurationMs,
      help: 'Restore duration in milliseconds (every outcome, dry runs excluded).',
      labelNames: agentLabels,
      buckets: [...DURATION_BUCKETS_MS],
      registers,
    });
    this.deleteTotal = new Counter({
      name: METRIC.deleteTotal,
      help: 'Deletes of a snapshot requested by an operator, by outcome.',
      labelNames: outcomeLabels,
      registers,
    });
    this.published = new Counter({
      name: METRIC.eventsPublished,
      help: 'Events delivered to the broker, by kind.',
      labelNames: ['kind'] as const,
      registers,
    });
    this.skipped = new Counter({
      name: METRIC.skippedTotal,
      help: 'Automatic snapshots not taken, by reason (interval: one was taken less than min_interval_secs ago; in_flight: one was being taken).',
      labelNames: ['agent', 'tenant', 'reason'] as const,
      registers,
    });
    this.storeRequests = new Counter({
      name: METRIC.storeRequests,
      help: 'Requests to a remote repository (each attempt), by backend, operation and outcome.',
      labelNames: ['backend', 'op', 'outcome'] as const,
      registers,
    });
    this.storeBytes = new Counter({
      name: METRIC.storeBytes,
      help: 'Bytes moved to (up) and from (down) a remote repository, by backend.',
      labelNames: ['backend', 'direction'] as const,
      registers,
    });
    this.storeRetries = new Counter({
      name: METRIC.storeRetries,
      help: 'Retries of transient failures of a remote repository, by backend and operation.',
      labelNames: ['backend', 'op'] as const,
      registers,
    });
    this.dropped = new Counter({
      name: METRIC.eventsDropped,
      help: 'Events dropped after the retry bound (broker down or gone), by kind.',
      labelNames: ['kind'] as const,
      registers,
    });
  }

  /**
   * The observer of one remote repository's backend (`nats`, `s3`): requests by operation and outcome,
   * bytes uploaded (`up`) and downloaded (`down`), and retries of transient failures.
   */
  storeObserver(backend: string): BackendObserver {
    return {
      request: (op, outcome, bytes) => {
        this.storeRequests.inc({ backend, op, outcome });
        if (bytes > 0) {
          if (op === 'save') this.storeBytes.inc({ backend, direction: 'up' }, bytes);
          else if (op === 'load') this.storeBytes.inc({ backend, direction: 'down' }, bytes);
        }
      },
      retry: (op) => this.storeRetries.inc({ backend, op }),
    };
  }

  /** The capped label values for an (agent, tenant) pair. */
  labels(agent: string, tenant: string): MetricLabels {
    return { agent: this.agents.map(agent), tenant: this.tenants.map(tenant) };
  }

  /**
   * Records one finished operation. `bytes` counts only for successful snapshots; `durationMs` feeds
   * the snapshot or restore histogram.
   */
  observe(
    op: MeteredOperation,
    who: MetricLabels,
    outcome: Outcome,
    bytes?: number,
    durationMs?: number,
  ): void {
    const l = this.labels(who.agent, who.tenant);
    const withOutcome = { ...l, outcome };
    if (op === 'snapshot') {
      this.snapshotTotal.inc(withOutcome);
      if (outcome === 'ok' && bytes !== undefined && bytes > 0) this.bytesTotal.inc(l, bytes);
      if (durationMs !== undefined) this.duration.observe(l, Math.round(durationMs));
    } else if (op === 'restore') {
      this.restoreTotal.inc(withOutcome);
      if (durationMs !== undefined) this.restoreDuration.observe(l, Math.round(durationMs));
    } else {
      this.deleteTotal.inc(withOutcome);
    }
  }

  /** Adds the bundles retention deleted for one agent (nothing when zero, as the original). */
  observeGc(who: MetricLabels, deleted: number): void {
    if (deleted > 0) this.gcTotal.inc(this.labels(who.agent, who.tenant), deleted);
  }

  /** Counts an automatic snapshot that was not taken (the pre-mutating-tool hook's throttle). */
  observeSkipped(who: MetricLabels, reason: string): void {
    this.skipped.inc({ ...this.labels(who.agent, who.tenant), reason });
  }

  eventPublished(kind: string): void {
    this.published.inc({ kind });
  }

  eventDropped(kind: string, count = 1): void {
    if (count > 0) this.dropped.inc({ kind }, count);
  }

  /** The Prometheus text exposition of every family (what /metrics and the textfile serve). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
