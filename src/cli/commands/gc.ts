// `nexo-memory gc`, `pin`, `unpin`: retention of snapshots and leftovers, and the pins it respects.

import { retentionPolicyFromConfig } from '../../config/runtime.js';
import { InvalidInputError } from '../../model/errors.js';
import type { RetentionPolicy } from '../../policy/retention.js';
import { Command, Option } from '../commander.js';
import { loadFlagsConfig, parseIntFlag, printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatGc } from '../format.js';
import { printText } from '../terminal.js';
import {
  agentOption,
  configOption,
  jsonOption,
  memdirRootOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
} from './options.js';

export function gcCommand() {
  return new Command('gc')
    .description(
      'apply the retention policy: delete snapshots no rule keeps, prune the repository, remove stale leftovers and old restore backups',
    )
    .addOption(new Option('--agent <id>', 'one agent').conflicts('all'))
    .option('--all', 'every agent (of --tenant, or of every tenant)')
    .addOption(
      new Option('--tenant <tenant>', 'tenant (default: every tenant with --all, default with --agent)'),
    )
    .addOption(
      new Option('--keep-count <n>', 'keep the N newest (default 30)').argParser(
        parseIntFlag('--keep-count'),
      ),
    )
    .addOption(
      new Option(
        '--max-age-days <n>',
        'keep-count keeps none older than D days (default 90, 0 = no limit)',
      ).argParser(parseIntFlag('--max-age-days')),
    )
    .addOption(
      new Option('--keep-daily <n>', 'keep the newest snapshot of each of the last N days').argParser(
        parseIntFlag('--keep-daily'),
      ),
    )
    .addOption(
      new Option('--keep-weekly <n>', 'keep the newest snapshot of each of the last N ISO weeks').argParser(
        parseIntFlag('--keep-weekly'),
      ),
    )
    .addOption(
      new Option('--keep-monthly <n>', 'keep the newest snapshot of each of the last N months').argParser(
        parseIntFlag('--keep-monthly'),
      ),
    )
    .addOption(
      new Option(
        '--anchor-keep-count <n>',
        'automatic anchors (pre-restore, pre-dream, …): keep the N newest of each kind (default 5)',
      ).argParser(parseIntFlag('--anchor-keep-count')),
    )
    .addOption(
      new Option(
        '--anchor-max-age-days <n>',
        'anchor-keep-count keeps no anchor older than D days (default 30, 0 = no limit)',
      ).argParser(parseIntFlag('--anchor-max-age-days')),
    )
    .addOption(
      new Option(
        '--pre-mutating-tool-keep-count <n>',
        'anchors taken before memory-mutating tools: keep the N newest (default 20)',
      ).argParser(parseIntFlag('--pre-mutating-tool-keep-count')),
    )
    .addOption(
      new Option(
        '--pre-mutating-tool-max-age-hours <n>',
        'pre-mutating-tool-keep-count keeps none older than H hours (default 24, 0 = no limit)',
      ).argParser(parseIntFlag('--pre-mutating-tool-max-age-hours')),
    )
    .addOption(
      new Option(
        '--tool-keep-count <n>',
        "the agent's own snapshots (taken through MCP, created_by tool): keep the N newest (default 30)",
      ).argParser(parseIntFlag('--tool-keep-count')),
    )
    .addOption(
      new Option(
        '--tool-max-age-days <n>',
        'tool-keep-count keeps none older than D days (default 90, 0 = no limit)',
      ).argParser(parseIntFlag('--tool-max-age-days')),
    )
    .addOption(
      new Option(
        '--backup-max-age-days <n>',
        'remove restore backups older than D days (default 7, 0 = keep)',
      ).argParser(parseIntFlag('--backup-max-age-days')),
    )
    .option('--dry-run', 'print the decisions, delete nothing')
    .addOption(stateRootOption())
    .addOption(memdirRootOption()) // where restore backups are, beside the live memdirs and databases
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
Automatic anchors (created_by auto-…: pre-restore, pre-dream, pre-mutating-tool) have their own
rules and never count against the user's rules. Pinned snapshots and each agent's newest snapshot are
always kept; agents in use are skipped. Repository snapshots are forgotten, then the repository is
pruned; a repository locked by another process is not waited for (reported busy, pruned next time).

Examples:
  nexo-memory gc --all --dry-run
  nexo-memory gc --agent ana --keep-count 10 --keep-daily 7 --keep-weekly 4 --keep-monthly 12`,
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        if (opts.agent === undefined && !opts.all)
          throw new InvalidInputError('gc needs --agent <id> or --all');
        const loaded = loadFlagsConfig(opts)?.snapshot ?? {};
        const cfg = loaded.retention ?? {};
        // The config's rules, then the flags over them.
        const policy: Partial<RetentionPolicy> = retentionPolicyFromConfig(loaded);
        const flags: Array<[number | undefined, string, keyof RetentionPolicy]> = [
          [opts.keepCount, '--keep-count', 'keepCount'],
          [opts.maxAgeDays, '--max-age-days', 'maxAgeDays'],
          [opts.keepDaily, '--keep-daily', 'keepDaily'],
          [opts.keepWeekly, '--keep-weekly', 'keepWeekly'],
          [opts.keepMonthly, '--keep-monthly', 'keepMonthly'],
          [opts.anchorKeepCount, '--anchor-keep-count', 'anchorKeepCount'],
          [opts.anchorMaxAgeDays, '--anchor-max-age-days', 'anchorMaxAgeDays'],
          [opts.preMutatingToolKeepCount, '--pre-mutating-tool-keep-count', 'preToolKeepCount'],
          [opts.preMutatingToolMaxAgeHours, '--pre-mutating-tool-max-age-hours', 'preToolMaxAgeHours'],
          [opts.toolKeepCount, '--tool-keep-count', 'toolKeepCount'],
          [opts.toolMaxAgeDays, '--tool-max-age-days', 'toolMaxAgeDays'],
        ];
        for (const [v, flag, key] of flags) {
          if (v === undefined) continue;
          if (v < 0) throw new InvalidInputError(`${flag} must be ≥ 0`);
          policy[key] = v;
        }
        if (opts.backupMaxAgeDays !== undefined && opts.backupMaxAgeDays < 0)
          throw new InvalidInputError('--backup-max-age-days must be ≥ 0');
        const backupMaxAgeDays = opts.backupMaxAgeDays ?? cfg.backup_max_age_days;
        const r = await snapshotterFrom(opts).gc({
          // a given value is passed on, empty included, and validated there (an empty --tenant swept every
          // tenant when it was read as not given)
          ...(opts.agent !== undefined ? { agentId: opts.agent } : {}),
          ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}),
          policy,
          dryRun: opts.dryRun === true,
          ...(backupMaxAgeDays !== undefined ? { backupMaxAgeDays } : {}),
          ...(cfg.leftover_grace_secs !== undefined
            ? { leftoverGraceMs: cfg.leftover_grace_secs * 1000 }
            : {}),
        });
        if (opts.json) printJson(r);
        else printText(formatGc(r));
        return (await import('../../snapshotter/gc.js')).gcExitCode(r);
      });
    });
}

export function pinCommand() {
  return new Command('pin')
    .description('pin a snapshot: retention never deletes it')
    .addOption(agentOption())
    .addOption(tenantOption())
    .requiredOption('--id <snapshot>', 'snapshot id, a unique prefix, or latest')
    .option('--note <text>', 'why it is pinned')
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory pin --agent ana --id 0190c3a2-7f1e --note "before the migration"',
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const m = await snapshotterFrom(opts).pin(opts.agent, opts.tenant, opts.id, opts.note);
        if (opts.json) printJson({ pinned: true, ...m });
        else process.stdout.write(`pinned: ${m.id}\n`);
        return 0;
      });
    });
}

export function unpinCommand() {
  return new Command('unpin')
    .description('remove the pin of a snapshot')
    .addOption(agentOption())
    .addOption(tenantOption())
    .requiredOption('--id <snapshot>', 'snapshot id, a unique prefix, or latest')
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText('after', '\nExamples:\n  nexo-memory unpin --agent ana --id 0190c3a2-7f1e')
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const was = await snapshotterFrom(opts).unpin(opts.agent, opts.tenant, opts.id);
        if (opts.json) printJson({ unpinned: was });
        else process.stdout.write(was ? 'unpinned\n' : 'was not pinned\n');
        return 0;
      });
    });
}
