// The `nexo-memory` command line as a function (main.ts runs it for the process): `main(argv)` parses
// arguments with commander and hands each command to its module in cli/commands/. No logic of its own beyond reporting usage errors (exit 1, and the JSON error object
// under --json, like every other error). Start-up is kept short: only the module of the command being
// run is imported (each imports what its command needs); help, an unknown command or none load them all.

import { InvalidInputError } from '../model/errors.js';
import { PACKAGE_DESCRIPTION, PACKAGE_VERSION } from '../util/version.js';
import { Command, CommanderError } from './commander.js';
import { metricsFileOption, natsOption, noProgressOption, repoOption } from './commands/options.js';
import { reportError, setCurrentCommand } from './context.js';
import { checkGivenOptions, deferMandatory } from './option-checks.js';
import { asksOnlyVersion } from './version-flag.js';

type SubCommand = Parameters<InstanceType<typeof Command>['addCommand']>[0];

/** Every command in the order help lists them, each built by its own module, imported on demand. */
const COMMANDS: ReadonlyArray<readonly [string, () => Promise<SubCommand>]> = [
  ['snapshot', async () => (await import('./commands/snapshot.js')).snapshotCommand()],
  ['restore', async () => (await import('./commands/restore.js')).restoreCommand()],
  ['import', async () => (await import('./commands/restore.js')).importCommand()],
  ['recover', async () => (await import('./commands/restore.js')).recoverCommand()],
  ['verify', async () => (await import('./commands/verify.js')).verifyCommand()],
  ['list', async () => (await import('./commands/list.js')).listCommand()],
  ['diff', async () => (await import('./commands/diff.js')).diffCommand()],
  ['ls', async () => (await import('./commands/browse.js')).lsCommand()],
  ['cat', async () => (await import('./commands/browse.js')).catCommand()],
  ['find', async () => (await import('./commands/browse.js')).findCommand()],
  ['export', async () => (await import('./commands/export.js')).exportCommand()],
  ['delete', async () => (await import('./commands/delete.js')).deleteCommand()],
  ['gc', async () => (await import('./commands/gc.js')).gcCommand()],
  ['pin', async () => (await import('./commands/gc.js')).pinCommand()],
  ['unpin', async () => (await import('./commands/gc.js')).unpinCommand()],
  ['check', async () => (await import('./commands/repository.js')).checkCommand()],
  ['prune', async () => (await import('./commands/repository.js')).pruneCommand()],
  ['migrate', async () => (await import('./commands/migrate.js')).migrateCommand()],
  ['keygen', async () => (await import('./commands/keygen.js')).keygenCommand()],
  ['serve', async () => (await import('./commands/serve.js')).serveCommand()],
  ['mcp', async () => (await import('./commands/mcp.js')).mcpCommand()],
];

/**
 * The commands the program needs for this command line: the one named first (the program itself has
 * no option taking a value), none for `--version` alone, and every one otherwise (help, `help <cmd>`,
 * no command, a misspelt one: commander lists them or suggests the nearest).
 */
export function commandsFor(
  argv: readonly string[],
): ReadonlyArray<readonly [string, () => Promise<SubCommand>]> {
  const args = argv.slice(2);
  const first = args.find((a) => !a.startsWith('-'));
  const named = COMMANDS.find(([name]) => name === first);
  if (named) return [named];
  if (asksOnlyVersion(args)) return [];
  return COMMANDS;
}

/** The program with the commands `argv` needs (default: every command). */
export async function buildProgram(argv?: readonly string[]) {
  const commands = await Promise.all((argv ? commandsFor(argv) : COMMANDS).map(([, build]) => build()));
  const program = new Command('nexo-memory')
    .description(PACKAGE_DESCRIPTION)
    .version(PACKAGE_VERSION)
    // The program's own options (-V, -h) only before the command: after it, `--label -V` is a label,
    // not a request for the version (which printed it and exited 0 without taking the snapshot).
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Exit status: 0 ok, 1 usage/config/I/O error, 2 bundle damaged, 3 not fully verified, 4 agent busy,
5 not found, 6 refused, 7 encryption error, 8 remote store unavailable. See README.md for the
full table.

Examples:
  nexo-memory snapshot --agent ana --label before-dream
  nexo-memory list --agent ana
  nexo-memory list --agent ana --repo s3://fleet-bucket/agents
  nexo-memory restore --agent ana --from latest --dry-run
  nexo-memory verify --agent ana --id latest --deep
  nexo-memory keygen --out sign.key && nexo-memory snapshot --agent ana --sign sign.key
  nexo-memory serve --config memory.yaml --listen 127.0.0.1:0
  nexo-memory mcp --agent ana --config memory.yaml`,
    );
  for (const cmd of commands) program.addCommand(cmd);
  program.exitOverride();
  for (const c of program.commands) {
    // Global on every command: the repository's location, events and metrics of one-shot runs, and
    // --no-progress.
    c.addOption(repoOption()).addOption(natsOption()).addOption(metricsFileOption()).exitOverride();
    // on every command, so a script can pass it to all (those that show no progress ignore it)
    if (!c.options.some((o) => o.long === '--no-progress')) c.addOption(noProgressOption());
    deferMandatory(c); // checked after unknown options: `--ag ana` is an unknown option (option-checks.ts)
  }
  program.hook('preAction', (_program, actionCommand) => {
    checkGivenOptions(actionCommand);
    setCurrentCommand(actionCommand);
  });
  return program;
}

/** Whether the command line asks for JSON (`--json` before any `--`). */
function wantsJson(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

const HELP_OR_VERSION = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version']);

export async function main(argv: string[]): Promise<void> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, `help [command]` and --version: commander printed what was asked, and that is success;
      // no command at all is a usage error (commander printed the help on stderr, exit code 1)
      if (HELP_OR_VERSION.has(err.code)) {
        if (err.exitCode === 0) {
          process.exitCode = 0;
          return;
        }
        const usage = new InvalidInputError('no command given (nexo-memory --help lists them)');
        process.exitCode = reportError(usage, wantsJson(argv));
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
