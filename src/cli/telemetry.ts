// Owns a CLI run's metrics and events: one SnapshotMetrics registry and, when a broker is configured
// (`--nats URL` or `events.nats_url`), one NATS publisher, both observing every snapshotter the run
// builds. At the end of the run, queued events get until `events.close_timeout_ms` to be delivered
// (the rest is dropped and counted), then the metrics textfile (`--metrics-file` or
// `metrics.textfile`) is written atomically, failure outcome included.

import type { SnapshotConfig } from '../config/config.js';
import { CONFIG_DEFAULTS } from '../config/config.js';
import { natsPublisherFromConfig } from '../config/runtime.js';
import type { NatsEventPublisher } from '../events/nats.js';
import { LifecycleEventsObserver } from '../events/observer.js';
import { SnapshotMetrics } from '../metrics/metrics.js';
import { MetricsObserver } from '../metrics/observer.js';
import { writeMetricsTextfile } from '../metrics/textfile.js';
import type { OperationObserver } from '../snapshotter/observer.js';

export interface TelemetryFlags {
  /** Broker URL for lifecycle events (overrides events.nats_url). */
  nats?: string;
  /** node_exporter textfile to write at the end of the run (overrides metrics.textfile). */
  metricsFile?: string;
}

const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);

export class RunTelemetry {
  readonly metrics = new SnapshotMetrics();
  readonly publisher: NatsEventPublisher | undefined;
  readonly observers: OperationObserver[];
  private readonly textfile: string | undefined;
  private readonly closeTimeoutMs: number;

  constructor(cfg: SnapshotConfig, flags: TelemetryFlags) {
    this.publisher = natsPublisherFromConfig(cfg, flags.nats, this.metrics, warn);
    this.observers = [
      new MetricsObserver(this.metrics),
      ...(this.publisher ? [new LifecycleEventsObserver(this.publisher)] : []),
    ];
    this.textfile = flags.metricsFile ?? cfg.metrics?.textfile;
    this.closeTimeoutMs = cfg.events?.close_timeout_ms ?? CONFIG_DEFAULTS.events.close_timeout_ms;
  }

  /** Delivers or drops queued events within the deadline, then writes the textfile. Never throws. */
  async finish(): Promise<void> {
    await this.publisher?.close(this.closeTimeoutMs);
    if (!this.textfile) return;
    try {
      await writeMetricsTextfile(this.textfile, this.metrics);
    } catch (err) {
      warn(`could not write the metrics file ${this.textfile}: ${(err as Error).message}`);
    }
  }
}

let current: RunTelemetry | undefined;

/** The run's telemetry, created on first use (a run builds one or more snapshotters). */
export function runTelemetry(cfg: SnapshotConfig, flags: TelemetryFlags): RunTelemetry {
  current ??= new RunTelemetry(cfg, flags);
  return current;
}

/**
 * Ends the run's telemetry. A run that failed before building a snapshotter (bad config, usage) still
 * writes the textfile when `--metrics-file` is given, so a scrape sees the run happened.
 */
export async function finishRunTelemetry(flags: TelemetryFlags): Promise<void> {
  const t =
    current ?? (flags.metricsFile ? new RunTelemetry({}, { metricsFile: flags.metricsFile }) : undefined);
  current = undefined;
  await t?.finish();
}
