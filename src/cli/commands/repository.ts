// `nexo-memory check` and `nexo-memory prune`: the repository's structure (and data, with --read-data)
// checked, and unreferenced data removed under the exclusive repository lock (docs/repository.md).

import { InvalidInputError } from '../../model/errors.js';
import { Command, Option } from '../commander.js';
import { checkIdentityFile, parseIntFlag, printJson, runCommand, snapshotterFrom } from '../context.js';
import { humanBytes, pruneSummary, staleLockLines } from '../format.js';
import { printText, terminalField } from '../terminal.js';
import { configOption, identityOption, jsonOption, stateRootOption } from './options.js';

export function checkCommand() {
  return new Command('check')
    .description("check the repository's structure; --read-data also reads and hashes every pack")
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(identityOption())
    .option('--read-data', 'read every pack whole and check every blob')
    .addOption(
      new Option(
        '--read-data-subset <percent>',
        'read this percentage of the packs (1..100), chosen at random',
      )
        .argParser((v) => {
          const n = parseIntFlag('--read-data-subset')(v.replace(/%$/, ''));
          if (n < 1 || n > 100) throw new InvalidInputError(`--read-data-subset must be 1..100, got ${n}`);
          return n;
        })
        .conflicts('readData'),
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExit status: 0 no problem found, 2 damage found.\n\nExamples:\n  nexo-memory check\n  nexo-memory check --read-data\n  nexo-memory check --read-data-subset 10%',
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const r = await snapshotterFrom(opts).check({
          ...(opts.readData
            ? { readData: true }
            : opts.readDataSubset
              ? { readData: opts.readDataSubset }
              : {}),
          ...(opts.decryptIdentity !== undefined
            ? { decryptIdentity: checkIdentityFile(opts.decryptIdentity) }
            : {}),
        });
        if (opts.json) printJson(r);
        else {
          process.stdout.write(
            `${r.snapshots} snapshot(s), ${r.packs} pack(s), ${r.blobs} blob(s); ${r.packs_read} pack(s) read (${humanBytes(r.bytes_read)})\n`,
          );
          for (const p of r.problems)
            printText(`problem: ${terminalField(p.object)}: ${p.code}: ${terminalField(p.message)}`);
          // a snapshot a newer version wrote is not damage: said apart (the JSON keeps it among
          // damaged_snapshots, with its problem's code SCHEMA_TOO_NEW; stop 47)
          const newer = new Set(
            r.problems
              .filter((p) => p.code === 'SCHEMA_TOO_NEW' && p.object.startsWith('snapshots/'))
              .map((p) => p.object.slice('snapshots/'.length)),
          );
          const damaged = r.damaged_snapshots.filter((id) => !newer.has(id));
          const tooNew = r.damaged_snapshots.filter((id) => newer.has(id));
          if (damaged.length > 0) printText(`damaged snapshots: ${terminalField(damaged.join(', '))}`);
          if (tooNew.length > 0)
            printText(
              `snapshots written by a newer nexo-memory-snapshot (upgrade to read them): ${terminalField(tooNew.join(', '))}`,
            );
          if (r.unlisted_snapshots.length > 0)
            process.stdout.write(
              `${r.unlisted_snapshots.length} manifest(s) without a listing entry (an interrupted snapshot or forget; the next prune removes them)\n`,
            );
          if (r.orphan_pins.length > 0)
            printText(
              `${r.orphan_pins.length} orphan pin(s), of snapshots that do not exist (${terminalField(r.orphan_pins.join(', '))}; the next prune removes them)`,
            );
          process.stdout.write(r.ok ? 'no problems found\n' : `${r.problems.length} problem(s) found\n`);
        }
        return r.ok ? 0 : 2;
      });
    });
}

export function pruneCommand() {
  return new Command('prune')
    .description('remove repository data no snapshot references (waits for running snapshots)')
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(identityOption())
    .option('--dry-run', 'report what would be removed, remove nothing')
    .addOption(jsonOption())
    .addHelpText('after', '\nExamples:\n  nexo-memory prune --dry-run\n  nexo-memory prune')
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const r = await snapshotterFrom(opts).prune({
          ...(opts.dryRun ? { dryRun: true } : {}),
          ...(opts.decryptIdentity !== undefined
            ? { decryptIdentity: checkIdentityFile(opts.decryptIdentity) }
            : {}),
        });
        if (opts.json) printJson(r);
        else {
          process.stdout.write(`${pruneSummary(r.dry_run, r)}\n`);
          for (const line of staleLockLines(r)) process.stdout.write(`${line}\n`);
          if (r.leftovers_removed > 0)
            process.stdout.write(
              `swept ${r.leftovers_removed} leftover(s) of interrupted saves (${humanBytes(r.leftover_bytes_freed)})\n`,
            );
          for (const note of r.leftover_notes ?? []) process.stdout.write(`note: ${note}\n`);
        }
        return 0;
      });
    });
}
