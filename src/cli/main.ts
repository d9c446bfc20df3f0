#!/usr/bin/env node
// The `nexo-memory` command line: parses arguments with commander and hands each command to its module
// in cli/commands/. No logic of its own beyond reporting usage errors (exit 1, and the JSON error object
// under --json, like every other error).

import { Command, CommanderError } from '@commander-js/extra-typings';
import { InvalidInputError } from '../model/errors.js';
import { PACKAGE_DESCRIPTION, PACKAGE_VERSION } from '../util/version.js';
import { deleteCommand } from './commands/delete.js';
import { diffCommand } from './commands/diff.js';
import { exportCommand } from './commands/export.js';
import { gcCommand, pinCommand, unpinCommand } from './commands/gc.js';
import { keygenCommand } from './commands/keygen.js';
import { listCommand } from './commands/list.js';
import { mcpCommand } from './commands/mcp.js';
import { migrateCommand } from './commands/migrate.js';
import { metricsFileOption, natsOption } from './commands/options.js';
import { checkCommand, pruneCommand } from './commands/repository.js';
import { importCommand, recoverCommand, restoreCommand } from './commands/restore.js';
import { serveCommand } from './commands/serve.js';
import { snapshotCommand } from './commands/snapshot.js';
import { verifyCommand } from './commands/verify.js';
import { reportError, setCurrentCommand } from './context.js';

export function buildProgram() {
  const program = new Command('nexo-memory')
    .description(PACKAGE_DESCRIPTION)
    .version(PACKAGE_VERSION)
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Exit status: 0 ok, 1 usage/config/I/O error, 2 bundle damaged, 3 not fully verified, 4 agent busy,
5 not found, 6 refused, 7 encryption error. See README.md for the full table.

Examples:
  nexo-memory snapshot --agent ana --label before-dream
  nexo-memory list --agent ana
  NEXO_MEMORY_RESTORE_ALLOW=true nexo-memory restore --agent ana --from <bundle> --dry-run
  nexo-memory verify state/tenants/default/snapshots/ana/<id>.tar.zst --deep
  nexo-memory keygen --out sign.key && nexo-memory snapshot --agent ana --sign sign.key
  nexo-memory serve --config memory.yaml --listen 127.0.0.1:0
  nexo-memory mcp --agent ana --config memory.yaml`,
    );
  for (const cmd of [
    snapshotCommand(),
    restoreCommand(),
    importCommand(),
    recoverCommand(),
    verifyCommand(),
    listCommand(),
    diffCommand(),
    exportCommand(),
    deleteCommand(),
    gcCommand(),
    pinCommand(),
    unpinCommand(),
    checkCommand(),
    pruneCommand(),
    migrateCommand(),
    keygenCommand(),
    serveCommand(),
    mcpCommand(),
  ]) {
    program.addCommand(cmd);
  }
  program.exitOverride();
  for (const c of program.commands) {
    // Global on every command: events and metrics of one-shot runs.
    c.addOption(natsOption()).addOption(metricsFileOption()).exitOverride();
  }
  program.hook('preAction', (_program, actionCommand) => setCurrentCommand(actionCommand));
  return program;
}

/** Whether the command line asks for JSON (`--json` before any `--`). */
function wantsJson(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        process.exitCode = 0;
        return;
      }
      // commander printed its message already; --json gets the error object as well
      const usage = new InvalidInputError(err.message.replace(/^error: /, ''));
      process.exitCode = reportError(usage, wantsJson(argv), true);
      return;
    }
    process.exitCode = reportError(err, wantsJson(argv));
  }
}

await main(process.argv);
