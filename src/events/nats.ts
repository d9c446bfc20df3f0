// Owns delivering events to a NATS broker, best effort: one ordered background queue; each event gets a
// bounded number of attempts (connect with a timeout, publish, flush round trip with a timeout,
// backoff between attempts), then it is dropped and counted. While the broker is known to be down,
// later events get a single attempt so a dead broker costs little. No automatic reconnect of the
// client: each attempt reconnects itself, so every wait is bounded. `close()` has a deadline, so a
// one-shot CLI run exits promptly even when the broker is gone.

import type { NatsConnection } from '@nats-io/transport-node';
import type { SnapshotMetrics } from '../metrics/metrics.js';
import { credsFileAuthenticator, natsClient } from '../util/nats-client.js';
import type { LifecycleEvent, MutationEvent } from './payloads.js';
import type { EventPublisher, PublisherStats } from './publisher.js';
import {
  DEFAULT_PREFIXES,
  gcSubject,
  lifecycleSubject,
  mutationSubject,
  type SubjectPrefixes,
} from './subjects.js';

export interface NatsPublisherOptions {
  /** Broker URL(s): `nats://host:port`, or several separated by commas (no credentials: `auth`). */
  url: string;
  /** The broker's credentials: user and password, a token, or a `.creds` file (read at each connect). */
  auth?: { user?: string; password?: string; token?: string; credsFile?: string };
  prefixes?: Partial<SubjectPrefixes>;
  /** Counts delivered and dropped events by kind. */
  metrics?: SnapshotMetrics;
  /** Per connection attempt (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Waiting for the broker to confirm a publish (default 2000 ms). */
  flushTimeoutMs?: number;
  /** Attempts per event while the broker is believed up (default 3). */
  maxAttempts?: number;
  /** Wait before the second attempt; doubles each attempt (default 100 ms). */
  retryBackoffMs?: number;
  /** Events waiting beyond this are dropped (default 10,000). */
  maxQueue?: number;
  /**
   * Called once when events start to be dropped (the broker unreachable, or the credentials file
   * unusable), and once when they are delivered again.
   */
  onWarning?: (message: string) => void;
  /** Client name shown by the broker (default `nexo-memory`). */
  name?: string;
}

/**
 * The `.creds` file could not be used (unreadable, not a credentials file): no connection was tried, so
 * the warning names the file's problem, not an unreachable broker (stop 47).
 */
class CredentialsFileProblem extends Error {}

interface Item {
  subject: string;
  kind: string;
  data: string;
  settled: boolean;
}

/**
 * Resolves to the promise's value, or rejects after `ms`. The timer is a normal (ref'd) one: a run that
 * awaits close() must not exit before the deadline decided what was delivered and what was dropped.
 */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class NatsEventPublisher implements EventPublisher {
  readonly url: string;
  readonly prefixes: SubjectPrefixes;
  private readonly o: Required<
    Pick<
      NatsPublisherOptions,
      'connectTimeoutMs' | 'flushTimeoutMs' | 'maxAttempts' | 'retryBackoffMs' | 'maxQueue' | 'name'
    >
  >;
  private readonly metrics: SnapshotMetrics | undefined;
  private readonly warn: (message: string) => void;
  private readonly queue: Item[] = [];
  private pumping: Promise<void> | undefined;
  private nc: NatsConnection | undefined;
  private down = false;
  /** Why events are dropped, for the warning when they are delivered again. */
  private downBecause: 'broker' | 'credentials' = 'broker';
  private closed = false;
  private aborted = false;
  private published = 0;
  private dropped = 0;

  private readonly auth: NatsPublisherOptions['auth'];

  constructor(opts: NatsPublisherOptions) {
    this.url = opts.url;
    this.auth = opts.auth;
    this.prefixes = { ...DEFAULT_PREFIXES, ...opts.prefixes };
    this.o = {
      connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
      flushTimeoutMs: opts.flushTimeoutMs ?? 2000,
      maxAttempts: Math.max(1, opts.maxAttempts ?? 3),
      retryBackoffMs: opts.retryBackoffMs ?? 100,
      maxQueue: opts.maxQueue ?? 10_000,
      name: opts.name ?? 'nexo-memory',
    };
    this.metrics = opts.metrics;
    this.warn = opts.onWarning ?? (() => {});
  }

  publishLifecycle(event: LifecycleEvent): void {
    const subject =
      event.kind === 'gc'
        ? gcSubject(this.prefixes.lifecycle)
        : lifecycleSubject(this.prefixes.lifecycle, event.agent_id, event.kind);
    this.enqueue(subject, event.kind, event);
  }

  publishMutation(event: MutationEvent): void {
    this.enqueue(mutationSubject(this.prefixes.mutation, event.agent_id), 'mutated', event);
  }

  stats(): PublisherStats {
    return { published: this.published, dropped: this.dropped, queued: this.queue.length };
  }

  async close(deadlineMs = 2000): Promise<PublisherStats> {
    this.closed = true;
    if (this.pumping) {
      const drained = await withTimeout(
        this.pumping.then(() => true),
        Math.max(0, deadlineMs),
        'close',
      ).catch(() => false);
      if (!drained) {
        this.aborted = true;
        for (const item of this.queue.splice(0)) this.settle(item, false);
      }
    }
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !nc.isClosed()) await withTimeout(nc.close(), 500, 'disconnect').catch(() => {});
    return this.stats();
  }

  private enqueue(subject: string, kind: string, payload: unknown): void {
    const item: Item = { subject, kind, data: '', settled: false };
    try {
      item.data = JSON.stringify(payload);
    } catch {
      this.settle(item, false);
      return;
    }
    if (this.closed || this.queue.length >= this.o.maxQueue) {
      this.settle(item, false);
      return;
    }
    this.queue.push(item);
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
  }

  private settle(item: Item, delivered: boolean): void {
    if (item.settled) return;
    item.settled = true;
    if (delivered) {
      this.published++;
      this.metrics?.eventPublished(item.kind);
    } else {
      this.dropped++;
      this.metrics?.eventDropped(item.kind);
    }
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.aborted) {
      const item = this.queue[0]!;
      const ok = await this.deliver(item);
      if (this.queue[0] === item) this.queue.shift();
      this.settle(item, ok);
    }
  }

  private async deliver(item: Item): Promise<boolean> {
    const attempts = this.down ? 1 : this.o.maxAttempts;
    let lastError: unknown;
    for (let i = 0; i < attempts && !this.aborted; i++) {
      if (i > 0) await sleep(this.o.retryBackoffMs * 2 ** (i - 1));
      try {
        const nc = await this.connection();
        nc.publish(item.subject, item.data);
        await withTimeout(nc.flush(), this.o.flushTimeoutMs, 'publish confirmation');
        if (this.down)
          this.warn(
            this.downBecause === 'credentials'
              ? `event broker ${this.url}: its credentials file is usable again, events are delivered`
              : `event broker ${this.url} is reachable again`,
          );
        this.down = false;
        return true;
      } catch (err) {
        lastError = err;
        await this.discardConnection();
        // (reading the file again at once would fail the same way)
        if (err instanceof CredentialsFileProblem) break;
      }
    }
    const because = lastError instanceof CredentialsFileProblem ? 'credentials' : 'broker';
    if ((!this.down || because !== this.downBecause) && !this.aborted) {
      const why = (lastError as Error)?.message ?? String(lastError);
      this.warn(
        because === 'credentials'
          ? `event broker ${this.url} not contacted: ${why}; dropping events until the credentials file can be used`
          : `event broker ${this.url} unreachable (${why}); dropping events until it is back`,
      );
    }
    this.down = true;
    this.downBecause = because;
    return false;
  }

  private async connection(): Promise<NatsConnection> {
    if (this.nc && !this.nc.isClosed()) return this.nc;
    let gaveUp = false;
    // The client library is loaded by the first connection: a run that publishes nothing never loads it.
    const { connect } = natsClient();
    const auth = this.auth;
    let authenticator: ReturnType<typeof credsFileAuthenticator> | undefined;
    if (auth?.credsFile !== undefined) {
      try {
        authenticator = credsFileAuthenticator(auth.credsFile);
      } catch (err) {
        throw new CredentialsFileProblem((err as Error).message, { cause: err });
      }
    }
    const pending = connect({
      servers: this.url.split(',').map((s) => s.trim()),
      timeout: this.o.connectTimeoutMs,
      reconnect: false,
      name: this.o.name,
      ...(auth?.user !== undefined ? { user: auth.user, pass: auth.password ?? '' } : {}),
      ...(auth?.token !== undefined ? { token: auth.token } : {}),
      ...(authenticator !== undefined ? { authenticator } : {}),
    });
    // A connection that arrives after we stopped waiting must not keep the process alive.
    pending.then(
      (late) => {
        if (gaveUp) void late.close().catch(() => {});
      },
      () => {},
    );
    let nc: NatsConnection;
    try {
      nc = await withTimeout(pending, this.o.connectTimeoutMs + 250, 'connect');
    } catch (err) {
      gaveUp = true;
      throw err;
    }
    if (this.aborted) {
      await nc.close().catch(() => {});
      throw new Error('publisher closed');
    }
    this.nc = nc;
    return nc;
  }

  private async discardConnection(): Promise<void> {
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !nc.isClosed()) await withTimeout(nc.close(), 250, 'disconnect').catch(() => {});
  }
}
