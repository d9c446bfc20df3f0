// `nexo-memory serve`: the long-running daemon (HTTP API, scheduled snapshots, retention worker,
// /metrics). Maps flags, config and environment onto the daemon's options, prints the bound address
// once, and exits 0 after a clean shutdown on SIGTERM, SIGINT or SIGHUP. The signals are caught from the program's
// first line (cli/stop-signals.ts): one that comes before the daemon listens ends it, status 0, unserved.

import { CONFIG_DEFAULTS, type SnapshotConfig, tokenProblem } from '../../config/config.js';
import {
  retentionWorkerOptionsFromConfig,
  scheduleFromConfig,
  snapshotRedactDefault,
} from '../../config/runtime.js';
import { ConfigError } from '../../model/errors.js';
import { Daemon } from '../../server/daemon.js';
import type { ScheduleEntry } from '../../server/scheduler.js';
import { Command, Option } from '../commander.js';
import { loadFlagsConfig, runCommand, snapshotterFrom } from '../context.js';
import { onStopSignal, stopSignalsDelivered } from '../stop-signals.js';
import { runTelemetry } from '../telemetry.js';
import { configOption, jsonOption, memdirRootOption, sqliteRootOption, stateRootOption } from './options.js';

export const TOKEN_ENV = 'NEXO_MEMORY_TOKEN';
export const READ_TOKEN_ENV = 'NEXO_MEMORY_READ_TOKEN';

/**
 * One entry per (tenant, agent) of `schedule`; an agent listed twice is a config error naming the entry
 * as the file spells its section (`keyPrefix`: `memory.snapshot` or `snapshot`).
 */
function scheduleFrom(cfg: SnapshotConfig, keyPrefix: string): ScheduleEntry[] {
  const out: ScheduleEntry[] = [];
  const seen = new Set<string>();
  scheduleFromConfig(cfg).forEach((e, i) => {
    for (const agentId of e.agents) {
      const key = `${e.tenant}/${agentId}`;
      if (seen.has(key))
        throw new ConfigError(
          `${keyPrefix}.schedule[${i}]: agent ${agentId} (tenant ${e.tenant}) is listed twice`,
        );
      seen.add(key);
      out.push({ agentId, tenant: e.tenant, intervalMs: e.intervalMs, label: e.label });
    }
  });
  return out;
}

/** server.token, else NEXO_MEMORY_TOKEN (at least 16 characters of printable ASCII either way). */
function tokenFrom(cfg: SnapshotConfig): string | undefined {
  return cfg.server?.token ?? envToken(TOKEN_ENV);
}

/** server.read_token, else NEXO_MEMORY_READ_TOKEN: a token that only reads. */
function readTokenFrom(cfg: SnapshotConfig): string | undefined {
  return cfg.server?.read_token ?? envToken(READ_TOKEN_ENV);
}

function envToken(name: string): string | undefined {
  const env = process.env[name];
  if (!env) return undefined;
  if (env.length < 16) throw new ConfigError(`${name} must be at least 16 characters`);
  const problem = tokenProblem(env);
  if (problem) throw new ConfigError(`${name} ${problem}`);
  return env;
}

export function serveCommand() {
  return new Command('serve')
    .description('run the daemon: HTTP API, scheduled snapshots, retention worker, /metrics, /healthz')
    .addOption(configOption())
    .addOption(
      new Option(
        '--listen <host:port>',
        `address of the HTTP API (default server.listen, else ${CONFIG_DEFAULTS.server.listen}; port 0 picks a free port)`,
      ),
    )
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
The API token comes from server.token in the config or ${TOKEN_ENV}; mutating routes need it.
A read-only token (server.read_token or ${READ_TOKEN_ENV}) reads but never writes.
The web console is at the daemon's address (/); log in with either token.
Restore over the API needs server.allow_restore: true AND NEXO_MEMORY_RESTORE_ALLOW=true.
SIGTERM/SIGINT/SIGHUP: stop accepting, let the operation in progress finish, exit 0 (a second signal exits 1 at once).

Examples:
  nexo-memory serve --config /etc/nexo/memory.yaml
  NEXO_MEMORY_TOKEN=$(openssl rand -hex 16) nexo-memory serve --listen 127.0.0.1:0 --json`,
    )
    .action(async (opts) => {
      const log = (line: string) => process.stderr.write(`nexo-memory serve: ${line}\n`);
      // Set first: a signal caught from the program's first line (cli/stop-signals.ts) is handed over
      // now. Before the daemon listens it only asks to stop; once it listens, it stops the daemon.
      let signals = 0;
      let stopAsked: NodeJS.Signals | undefined;
      let serving: Daemon | undefined;
      let stop = () => {};
      const stopped = new Promise<void>((resolve) => {
        stop = resolve;
      });
      onStopSignal((sig) => {
        if (++signals > 1) {
          log(`${sig} again: exiting at once (leftovers are cleaned by the next operation)`);
          process.exit(1);
        }
        stopAsked = sig;
        if (!serving) return;
        log(`${sig}: shutting down, waiting for ${serving.tracker.inFlight} operation(s) in progress`);
        void serving.stop().then(stop);
      });
      await runCommand({ ...opts, progress: false }, async () => {
        const loaded = loadFlagsConfig(opts);
        const cfg = loaded?.snapshot ?? {};
        // Metrics of every operation (and lifecycle events when a broker is configured).
        const snapshotter = snapshotterFrom(opts);
        await snapshotter.policies(); // a bad key or redaction option stops the daemon now, not its first restore
        const telemetry = runTelemetry(); // prepared by runCommand from --nats, --metrics-file and the config
        const enabled = cfg.enabled !== false;
        const token = tokenFrom(cfg);
        const readToken = readTokenFrom(cfg);
        if (token && readToken && token === readToken)
          throw new ConfigError('server.read_token must differ from server.token');
        const daemon = new Daemon({
          snapshotter,
          listen: opts.listen ?? cfg.server?.listen ?? CONFIG_DEFAULTS.server.listen,
          ...(token ? { token } : {}),
          ...(readToken ? { readToken } : {}),
          allowRestore: cfg.server?.allow_restore ?? CONFIG_DEFAULTS.server.allow_restore,
          readOnly: !enabled,
          redactDefault: snapshotRedactDefault(cfg),
          ...(cfg.encryption?.identity_path ? { identityPath: cfg.encryption.identity_path } : {}),
          schedule: scheduleFrom(cfg, loaded?.keyPrefix ?? 'memory.snapshot'),
          ...(enabled ? { retention: retentionWorkerOptionsFromConfig(cfg) } : {}),
          metrics: telemetry.metrics,
          log,
        });
        await stopSignalsDelivered();
        if (stopAsked) {
          log(`${stopAsked} while starting: stopped before serving`);
          return 0;
        }
        const bound = await daemon.start();
        if (stopAsked) {
          log(`${stopAsked} while starting: stopped before serving`);
          await daemon.stop();
          return 0;
        }
        serving = daemon;
        // A daemon without either token is read-only, and its reads are open: say so, every start
        // (stop 58: the README read as if memory always needed a token, and a user found cat and find
        // answering). With only the read token, reads need it and the API writes nothing.
        if (!token && !readToken)
          log(
            `no token (server.token or ${TOKEN_ENV}, server.read_token or ${READ_TOKEN_ENV}): the API writes nothing, and every route that reads (the agents' memory, redacted, and the fleet's state) answers every local user and process that reaches ${bound.url}`,
          );
        else if (!token)
          log(
            `no write token (server.token or ${TOKEN_ENV}): the API writes nothing; reads need the read token`,
          );
        // One line either way, so a supervisor (or a test) can read the address as soon as it is bound.
        if (opts.json)
          process.stdout.write(
            `${JSON.stringify({ listening: bound.url, host: bound.host, port: bound.port, pid: process.pid })}\n`,
          );
        else process.stdout.write(`listening on ${bound.url}\n`);
        await stopped;
        log('stopped');
        return 0;
      });
      // Nothing of the daemon is left running; do not wait for stray handles (keep-alive sockets, …).
      process.exit(process.exitCode ?? 0);
    });
}
