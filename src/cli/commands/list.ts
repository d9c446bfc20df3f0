// `nexo-memory list`: an agent's snapshots, newest first (reads sidecars or bundle heads only).

import { Command } from '../commander.js';
import { printJsonArray, runCommand, snapshotterFrom } from '../context.js';
import { printText } from '../terminal.js';
import { agentOption, configOption, jsonOption, stateRootOption, tenantOption } from './options.js';

export function listCommand() {
  return new Command('list')
    .description("list an agent's snapshots, newest first")
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory list --agent ana\n  nexo-memory list --agent ana --tenant acme --json',
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const s = snapshotterFrom(opts);
        // a remote repository's listing can be large: the small-heap settings before it is read
        if (s.repository.remote) (await import('../../util/heap-settings.js')).keepHeapSmall();
        const metas = await s.list(opts.agent, opts.tenant);
        if (opts.json) await printJsonArray(metas);
        // the table's module only for the table: `list --json` is what runtimes call before an action
        else printText((await import('../format.js')).formatList(metas));
        return 0;
      });
    });
}
