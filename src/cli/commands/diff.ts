// `nexo-memory diff`: what changed between two snapshots of an agent, or a snapshot and `live`.

import { Command } from '../commander.js';
import { identityFrom, printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatDiff } from '../format.js';
import { printText } from '../terminal.js';
import {
  agentOption,
  configOption,
  identityOption,
  jsonOption,
  memdirRootOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
} from './options.js';

export function diffCommand() {
  return new Command('diff')
    .description('compare two snapshots (ids, unique prefixes, or "live"): commits, files, rows, state')
    .argument('<a>', 'snapshot id, unique prefix, latest, or live')
    .argument('<b>', 'snapshot id, unique prefix, latest, or live')
    .addOption(agentOption())
    .addOption(tenantOption())
    .option('--detail', 'unified diffs of text files, sample rows per table, state values')
    .option('--show-secrets', 'show values as stored, secrets included (default: redacted)')
    .addOption(identityOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
Examples:
  nexo-memory diff --agent ana 0190c3a2-7f1e 0190c3b7-2a04
  nexo-memory diff --agent ana 0190c3a2-7f1e live --detail
  nexo-memory diff --agent ana <a> <b> --json

Values shown (patches, rows, state) are redacted by the redaction rules unless --show-secrets; a
difference that is only a placeholder on one side for a secret on the other is listed as redacted,
not counted as a change.`,
    )
    .action(async (a, b, opts) => {
      await runCommand(opts, async () => {
        const identity = identityFrom(opts);
        const d = await snapshotterFrom(opts).diff({
          agentId: opts.agent,
          tenant: opts.tenant,
          a,
          b,
          detail: opts.detail === true,
          showSecrets: opts.showSecrets === true,
          ...(identity ? { decryptIdentity: identity } : {}),
        });
        if (opts.json) printJson(d);
        else printText(formatDiff(d));
        return 0;
      });
    });
}
