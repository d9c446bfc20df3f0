// Owns the daemon's lifecycle (`nexo-memory serve`): bind the HTTP API, start the scheduled snapshots
// and the retention worker (whose sweeps also finish interrupted restores and remove leftovers of dead
// operations), report the bound address once, and on SIGTERM/SIGINT shut down cleanly: stop accepting,
// start nothing new, let every operation in progress finish (so nothing is left half-written), close,
// never waiting long on a client (http.ts).
// It also serves the web console (the built files, see console-assets.ts) and the live feed of the
// operations it runs (activity.ts); open feeds are ended first on shutdown.

import type { AddressInfo } from 'node:net';
import { CONFIG_DEFAULTS, tokenProblem } from '../config/config.js';
import { asSnapshotError, ConfigError } from '../model/errors.js';
import { recoveredRestoreLine } from '../model/restore-note.js';
import { operationsOfOthers, storeAgentPairs } from '../snapshotter/fleet.js';
import { type GcOptions, RetentionWorker } from '../snapshotter/gc.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { envInteger } from '../util/env-number.js';
import { startProgramHost } from '../util/program-host.js';
import { ActivityBoard } from './activity.js';
import { ClientErrors } from './client-errors.js';
import { loadConsoleAssets } from './console-assets.js';
import { createApiServer, DEFAULT_MAX_CONNECTIONS, isLoopback } from './http.js';

export { isLoopback };

import { monotonicNow } from '../util/long-timer.js';
import { apiRoutes, type MetricsSource } from './routes.js';
import { type ScheduleEntry, type ScheduleOutcome, Scheduler } from './scheduler.js';
import { OperationTracker } from './tracker.js';

export const DEFAULT_LISTEN = CONFIG_DEFAULTS.server.listen;

/**
 * How long the daemon's retention sweep waits for the repository lock to prune, its own scheduled
 * snapshots held back meanwhile (Scheduler.hold): long enough for the snapshots under way to end.
 */
export const DAEMON_PRUNE_WAIT_MS = 30_000;

export interface DaemonOptions {
  snapshotter: LocalSnapshotter;
  /** HOST:PORT (`[::1]:PORT` for IPv6); port 0 picks a free port. Default 127.0.0.1:9464. */
  listen?: string;
  /** Bearer token for the API; required for mutating routes, and to listen beyond loopback. */
  token?: string;
  /** A token that only reads (read routes, the console without write controls). */
  readToken?: string;
  allowRestore?: boolean;
  /** `redact` of API snapshots whose body omits it (config `redaction.enabled`; default false). */
  redactDefault?: boolean;
  /** Refuse every route that writes the store (`enabled: false`). */
  readOnly?: boolean;
  identityPath?: string;
  maxBodyBytes?: number;
  schedule?: ScheduleEntry[];
  /** Retention worker: sweep options and interval; undefined switches it off. */
  retention?: GcOptions & { intervalMs: number };
  metrics?: MetricsSource;
  /** Diagnostics (one line each): requests, scheduled runs, sweeps, shutdown. */
  log?: (line: string) => void;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListen(value: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new ConfigError(
      `listen address ${JSON.stringify(value)}: expected HOST:PORT (e.g. 127.0.0.1:9464)`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

function describe(o: ScheduleOutcome): string {
  if (o.kind === 'ok') return `snapshot ${o.meta.id} (${o.meta.bundle_size_bytes} bytes)`;
  if (o.kind === 'skipped') return `skipped: ${o.reason}`;
  if (o.kind === 'waiting') return `due, waits: ${o.reason}`;
  return `failed (error ${o.errorId})`;
}

export class Daemon {
  readonly tracker = new OperationTracker();
  readonly activity: ActivityBoard;
  private readonly server;
  private readonly snapshotter: LocalSnapshotter;
  private readonly scheduler: Scheduler;
  private readonly retention: RetentionWorker | undefined;
  private readonly log: (line: string) => void;
  private readonly listen: ListenAddress;
  private stopping: Promise<void> | undefined;
  url = '';

  constructor(opts: DaemonOptions) {
    this.log = opts.log ?? (() => {});
    // One for every surface of the daemon: an error on the board and in the response has one id, one line.
    const clientErrors = new ClientErrors({ hostPaths: opts.snapshotter.hostPaths(), log: this.log });
    this.activity = new ActivityBoard(clientErrors);
    for (const [name, token] of [
      ['token', opts.token],
      ['readToken', opts.readToken],
    ] as const) {
      const problem = token ? tokenProblem(token) : undefined;
      if (problem) throw new ConfigError(`DaemonOptions.${name} ${problem}`);
    }
    this.listen = parseListen(opts.listen ?? DEFAULT_LISTEN);
    if (!isLoopback(this.listen.host) && !opts.token && !opts.readToken) {
      throw new ConfigError(
        `server.listen: refusing to listen on ${this.listen.host} (not loopback) without an API token (server.token or NEXO_MEMORY_TOKEN)`,
      );
    }
    const s = opts.snapshotter;
    this.snapshotter = s;
    this.scheduler = new Scheduler(s, opts.schedule ?? [], {
      tracker: this.tracker,
      activity: this.activity,
      clientErrors,
      onOutcome: (e, o) => this.log(`schedule ${e.tenant}/${e.agentId}: ${describe(o)}`),
    });
    this.retention = opts.retention
      ? new RetentionWorker(s, {
          ...opts.retention,
          // the sweep's prune waits for the snapshots under way, the schedule's next ones held back (stop 56)
          pruneWaitMs: opts.retention.pruneWaitMs ?? DAEMON_PRUNE_WAIT_MS,
          aroundPrune: (prune) => this.scheduler.hold(prune),
          // each sweep of the loop on the board (the activity feed and the console), as the API's are
          track: (sweep) =>
            this.activity.track({ op: 'gc', source: 'retention' }, sweep, (r) => ({
              bundles_deleted: r.bundles_deleted,
              bytes_freed: r.bytes_freed,
              errors: r.errors,
            })),
          onTick: (r) => {
            const p = r.prune;
            const pruned = p && 'bytes_freed' in p && p.bytes_freed > 0;
            if (
              r.bundles_deleted ||
              r.orphan_staging_dirs_removed ||
              r.restores_recovered.length ||
              r.errors ||
              r.backups_removed ||
              pruned ||
              p?.status === 'busy'
            )
              this.log(
                `gc: ${r.bundles_deleted} deleted, ${r.orphan_staging_dirs_removed} leftovers removed, ${r.backups_removed} backups removed, ${r.errors} errors, ${r.agents_busy} busy` +
                  r.restores_recovered.map((x) => `; ${recoveredRestoreLine(x.agent_id, x)}`).join('') +
                  (!p
                    ? ''
                    : 'bytes_freed' in p
                      ? `; repository pruned, ${p.bytes_freed} bytes freed`
                      : p.status === 'busy'
                        ? `; repository not pruned (${p.skipped})`
                        : `; repository prune failed: ${p.error}`),
              );
          },
          onError: (e) => this.log(`gc failed: ${e instanceof Error ? e.message : String(e)}`),
        })
      : undefined;
    this.server = createApiServer({
      loopbackHostsOnly: isLoopback(this.listen.host),
      maxConnections: envInteger('NEXO_MEMORY_SERVE_MAX_CONNECTIONS', DEFAULT_MAX_CONNECTIONS),
      routes: apiRoutes({
        snapshotter: s,
        tracker: this.tracker,
        allowRestore: opts.allowRestore === true,
        readOnly: opts.readOnly === true,
        ...(opts.redactDefault !== undefined ? { redactDefault: opts.redactDefault } : {}),
        ...(opts.identityPath ? { identityPath: opts.identityPath } : {}),
        ...(opts.metrics ? { metrics: opts.metrics } : {}),
        ...(this.retention && opts.retention
          ? { retention: { worker: this.retention, options: opts.retention } }
          : {}),
        scheduler: this.scheduler,
        startedAt: monotonicNow(),
        activity: this.activity,
        clientErrors,
        consoleAssets: loadConsoleAssets(),
      }),
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.readToken ? { readToken: opts.readToken } : {}),
      ...(opts.maxBodyBytes ? { maxBodyBytes: opts.maxBodyBytes } : {}),
      tracker: this.tracker,
      clientErrors,
      log: (l) => this.log(l),
    });
  }

  /** Binds the API, then starts the scheduler and the retention worker. Resolves with the bound address. */
  async start(): Promise<ListenAddress & { url: string }> {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) =>
        reject(asSnapshotError(err, `listening on ${this.listen.host}:${this.listen.port}`));
      this.server.once('error', fail);
      this.server.listen(this.listen.port, this.listen.host, () => {
        this.server.off('error', fail);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.url = `http://${host}:${a.port}`;
    // a long-lived process that grows: the git and sync its snapshots and restores run start from the
    // program host, a small process, from now on (util/program-host.ts)
    startProgramHost();
    this.scheduler.start();
    this.retention?.start();
    const s = this.snapshotter;
    this.activity.watchOthers(
      async () => operationsOfOthers(s, await storeAgentPairs(s)),
      async (a) => {
        // a snapshot of another process: the agent's newest snapshot, if taken since it started
        if (a.op !== 'snapshot' || !a.agent_id) return undefined;
        const newest = (await s.list(a.agent_id, a.tenant))[0];
        return newest && newest.created_at_ms >= a.started_at_ms
          ? { snapshot_id: newest.id, ...(newest.label !== undefined ? { label: newest.label } : {}) }
          : undefined;
      },
    );
    return { host: a.address, port: a.port, url: this.url };
  }

  /**
   * Stops accepting, starts nothing new, refuses the requests whose body is still arriving (503), waits
   * for every operation in progress (and, a bounded grace, for the responses being sent), closes.
   * Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      this.server.closeIdleConnections();
      this.activity.close();
      await Promise.all([this.scheduler.stop(), this.retention?.stop(), this.tracker.close()]);
      this.server.closeAllConnections();
      await closed;
    })();
    return this.stopping;
  }
}
