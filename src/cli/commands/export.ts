// `nexo-memory export`: copy one bundle and its sibling out of the store, verified.

import { Command } from '@commander-js/extra-typings';
import { printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatExport } from '../format.js';
import {
  agentOption,
  configOption,
  jsonOption,
  noProgressOption,
  stateRootOption,
  tenantOption,
} from './options.js';

export function exportCommand() {
  return new Command('export')
    .description('copy a snapshot bundle and its .sha256 sibling to a path; the copy is verified')
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(configOption())
    .requiredOption('--id <snapshot>', 'snapshot id (or a unique prefix)')
    .requiredOption('--to <path>', 'target file, or an existing directory')
    .option('--force', 'overwrite an existing target')
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory export --agent ana --id 0190c3a2 --to /backups/\n  nexo-memory export --agent ana --id 0190c3a2-… --to ana.tar.zst --force',
    )
    .action(async (opts) => {
      await runCommand(opts, async (progress) => {
        const r = await snapshotterFrom(opts).export(opts.agent, opts.tenant, opts.id, opts.to, {
          force: opts.force === true,
          onProgress: progress.listener,
        });
        progress.done();
        if (opts.json) printJson(r);
        else process.stdout.write(`${formatExport(r)}\n`);
        return 0;
      });
    });
}
