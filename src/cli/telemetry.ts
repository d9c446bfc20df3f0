// Owns a CLI run's metrics and events: one SnapshotMetrics registry when the run writes a metrics
// textfile (`--metrics-file` or `metrics.textfile`) or serves /metrics, and, when a broker is configured
// (`--nats URL` or `events.nats_url`), one NATS publisher, both observing every snapshotter the run
// builds. A run that writes no metrics never loads prom-client, and one without metrics or a broker
// loads neither observer (CLI start-up: `list` without a config loads none of it). At the end of the run, queued events get
// until `events.close_timeout_ms` to be delivered (the rest is dropped and counted), then the metrics
// textfile is written atomically, failure outcome included.

import type { SnapshotConfig } from '../config/config.js';
import { CONFIG_DEFAULTS } from '../config/defaults.js';
import { natsOptionsFromConfig } from '../config/runtime.js';
import type { NatsEventPublisher } from '../events/nats.js';
import type { SnapshotMetrics } from '../metrics/metrics.js';
import type { OperationObserver } from '../snapshotter/observer.js';
import { terminalText } from './terminal.js';

export interface TelemetryFlags {
  /** Broker URL for lifecycle events (overrides events.nats_url). */
  nats?: string;
  /** node_exporter textfile to write at the end of the run (overrides metrics.textfile). */
  metricsFile?: string;
}

const warn = (m: string) => process.stderr.write(`warning: ${terminalText(m)}\n`);

export class RunTelemetry {
  readonly publisher: NatsEventPublisher | undefined;
  readonly observers: OperationObserver[];
  private readonly textfile: string | undefined;
  private readonly closeTimeoutMs: number;

  /**
   * `metrics`: the registry of the run, when it writes a textfile or serves /metrics; `publisher`: the
   * run's broker client, when one is configured; `observers`: theirs (built by prepareRunTelemetry).
   */
  constructor(
    cfg: SnapshotConfig,
    flags: TelemetryFlags,
    readonly metrics: SnapshotMetrics | undefined,
    publisher: NatsEventPublisher | undefined,
    observers: OperationObserver[],
  ) {
    this.publisher = publisher;
    this.observers = observers;
    this.textfile = flags.metricsFile ?? cfg.metrics?.textfile;
    this.closeTimeoutMs = cfg.events?.close_timeout_ms ?? CONFIG_DEFAULTS.events.close_timeout_ms;
  }

  /** Delivers or drops queued events within the deadline, then writes the textfile. Never throws. */
  async finish(): Promise<void> {
    await this.publisher?.close(this.closeTimeoutMs);
    if (!this.textfile || !this.metrics) return;
    try {
      const { writeMetricsTextfile } = await import('../metrics/textfile.js');
      await writeMetricsTextfile(this.textfile, this.metrics);
    } catch (err) {
      warn(`could not write the metrics file ${this.textfile}: ${(err as Error).message}`);
    }
  }
}

let current: RunTelemetry | undefined;

/**
 * Creates the run's telemetry before its command body runs (which builds snapshotters synchronously):
 * the metrics registry only when the run writes a textfile or (`serveMetrics`) serves /metrics.
 */
export async function prepareRunTelemetry(
  cfg: SnapshotConfig,
  flags: TelemetryFlags,
  serveMetrics: boolean,
): Promise<RunTelemetry> {
  if (current) return current;
  const wanted = serveMetrics || (flags.metricsFile ?? cfg.metrics?.textfile) !== undefined;
  const metrics = wanted ? new (await import('../metrics/metrics.js')).SnapshotMetrics() : undefined;
  // the publisher's module only when a broker is configured (events/from-config.ts)
  const events = natsOptionsFromConfig(cfg, flags.nats, metrics, warn);
  const publisher = events ? new (await import('../events/nats.js')).NatsEventPublisher(events) : undefined;
  const observers: OperationObserver[] = [];
  if (metrics) observers.push(new (await import('../metrics/observer.js')).MetricsObserver(metrics));
  if (publisher)
    observers.push(new (await import('../events/observer.js')).LifecycleEventsObserver(publisher));
  current ??= new RunTelemetry(cfg, flags, metrics, publisher, observers);
  return current;
}

/** The run's telemetry, prepared by prepareRunTelemetry (runCommand does, before a command body runs). */
export function runTelemetry(): RunTelemetry {
  if (!current) throw new Error('internal: the run telemetry was not prepared before the command');
  return current;
}

/**
 * Ends the run's telemetry. A run that failed before building a snapshotter (bad config, usage) still
 * writes the textfile when `--metrics-file` is given, so a scrape sees the run happened.
 */
export async function finishRunTelemetry(flags: TelemetryFlags): Promise<void> {
  const t =
    current ??
    (flags.metricsFile
      ? await prepareRunTelemetry({}, { metricsFile: flags.metricsFile }, false)
      : undefined);
  current = undefined;
  await t?.finish();
}
