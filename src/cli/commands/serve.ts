// `nexo-memory serve`: the long-running daemon (HTTP API, scheduled snapshots, retention worker,
// /metrics). Maps flags, config and environment onto the daemon's options, prints the bound address
// once, and exits 0 after a clean shutdown on SIGTERM or SIGINT.

import { Command, Option } from '@commander-js/extra-typings';
import { SnapshotMetrics } from '../../metrics/metrics.js';
import { MetricsObserver } from '../../metrics/observer.js';
import type { RetentionPolicy } from '../../policy/retention.js';
import { Daemon, DEFAULT_LISTEN } from '../../server/daemon.js';
import { loadFlagsConfig, printJson, runCommand, snapshotterFrom } from '../context.js';
import { configOption, jsonOption, memdirRootOption, sqliteRootOption, stateRootOption } from './options.js';

export const TOKEN_ENV = 'NEXO_MEMORY_TOKEN';

export function serveCommand() {
  return new Command('serve')
    .description('run the daemon: HTTP API, scheduled snapshots, retention worker, /metrics, /healthz')
    .addOption(configOption())
    .addOption(
      new Option(
        '--listen <host:port>',
        `address of the HTTP API (default server.listen, else ${DEFAULT_LISTEN}; port 0 picks a free port)`,
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
Restore over the API needs server.allow_restore: true AND NEXO_MEMORY_RESTORE_ALLOW=true.
SIGTERM/SIGINT: stop accepting, let the operation in progress finish, exit 0 (a second signal exits 1 at once).

Examples:
  nexo-memory serve --config /etc/nexo/memory.yaml
  NEXO_MEMORY_TOKEN=s3cret nexo-memory serve --listen 127.0.0.1:0 --json`,
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const log = (line: string) => process.stderr.write(`nexo-memory serve: ${line}\n`);
        const cfg = loadFlagsConfig(opts)?.snapshot ?? {};
        const metrics = new SnapshotMetrics();
        const snapshotter = snapshotterFrom(opts, {
          observers: [new MetricsObserver(metrics)],
          onWarning: (m) => log(`warning: ${m}`),
        });
        const r = cfg.retention ?? {};
        const policy: Partial<RetentionPolicy> = {
          ...(r.keep_count !== undefined ? { keepCount: r.keep_count } : {}),
          ...(r.max_age_days !== undefined ? { maxAgeDays: r.max_age_days } : {}),
          ...(r.keep_daily !== undefined ? { keepDaily: r.keep_daily } : {}),
          ...(r.keep_weekly !== undefined ? { keepWeekly: r.keep_weekly } : {}),
          ...(r.keep_monthly !== undefined ? { keepMonthly: r.keep_monthly } : {}),
        };
        const token = process.env[TOKEN_ENV] || undefined;
        const daemon = new Daemon({
          snapshotter,
          listen: opts.listen ?? DEFAULT_LISTEN,
          ...(token ? { token } : {}),
          ...(cfg.encryption?.identity_path ? { identityPath: cfg.encryption.identity_path } : {}),
          retention: {
            intervalMs: 3600_000,
            policy,
            ...(r.backup_max_age_days !== undefined ? { backupMaxAgeDays: r.backup_max_age_days } : {}),
            ...(r.leftover_grace_secs !== undefined ? { leftoverGraceMs: r.leftover_grace_secs * 1000 } : {}),
          },
          metrics,
          log,
        });
        const bound = await daemon.start();
        if (opts.json)
          printJson({ listening: bound.url, host: bound.host, port: bound.port, pid: process.pid });
        else process.stdout.write(`listening on ${bound.url}\n`);
        const stopped = new Promise<void>((resolve) => {
          let signals = 0;
          const onSignal = (sig: NodeJS.Signals) => {
            signals++;
            if (signals > 1) {
              log(`${sig} again: exiting at once (leftovers are cleaned by the next operation)`);
              process.exit(1);
            }
            log(`${sig}: shutting down, waiting for ${daemon.tracker.inFlight} operation(s) in progress`);
            void daemon.stop().then(resolve);
          };
          process.on('SIGTERM', onSignal);
          process.on('SIGINT', onSignal);
        });
        await stopped;
        log('stopped');
        return 0;
      });
      // Nothing of the daemon is left running; do not wait for stray handles (keep-alive sockets, …).
      process.exit(process.exitCode ?? 0);
    });
}
