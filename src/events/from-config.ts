// Owns building the NATS publisher a config names: the options config/runtime.ts reads from it, and the
// publisher of events/nats.ts. A module of its own so that reading a config does not load the publisher
// and its subjects: a command run without a broker (every `list` a runtime calls before an action, most
// CLI runs) never needs them.

import type { SnapshotConfig } from '../config/config.js';
import { natsOptionsFromConfig } from '../config/runtime.js';
import type { SnapshotMetrics } from '../metrics/metrics.js';
import { NatsEventPublisher } from './nats.js';

/** A NATS publisher for the config (or the override URL), or undefined when no broker is configured. */
export function natsPublisherFromConfig(
  cfg: SnapshotConfig,
  natsUrl?: string,
  metrics?: SnapshotMetrics,
  onWarning?: (message: string) => void,
): NatsEventPublisher | undefined {
  const o = natsOptionsFromConfig(cfg, natsUrl, metrics, onWarning);
  return o ? new NatsEventPublisher(o) : undefined;
}
