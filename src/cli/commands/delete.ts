// `nexo-memory delete`: remove one snapshot (never the agent's last, nor a pinned one): a repository
// snapshot, or a bundle with its sibling and sidecar.

import { InvalidInputError } from '../../model/errors.js';
import { Command } from '../commander.js';
import { printJson, runCommand, snapshotterFrom } from '../context.js';
import { agentOption, configOption, jsonOption, stateRootOption, tenantOption } from './options.js';

export function deleteCommand() {
  return new Command('delete')
    .description(
      "delete a snapshot: a repository snapshot (its data goes with the next prune) or a bundle file with its sibling and sidecar; refuses the agent's last snapshot and a pinned one",
    )
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(configOption())
    .requiredOption('--id <snapshot>', 'snapshot id, a unique prefix, or latest')
    .option('--yes', 'confirm the deletion')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory delete --agent ana --id 0190c3a2-7f1e --yes\n  nexo-memory delete --agent ana --id 0190c3a2-… --yes --json',
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        if (!opts.yes)
          throw new InvalidInputError('delete removes a snapshot for good: pass --yes to confirm');
        const r = await snapshotterFrom(opts).delete(opts.agent, opts.tenant, opts.id);
        if (opts.json) printJson(r);
        else process.stdout.write(`deleted: ${r.id}\n`);
        return 0;
      });
    });
}
