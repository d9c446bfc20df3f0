// `nexo-memory verify`: check any bundle file; exit 0 verified, 2 damaged, 3 not fully verified.

import { Command, Option } from '@commander-js/extra-typings';
import { InvalidInputError } from '../../model/errors.js';
import { verifyBundleFile, verifyExitCode } from '../../verify/verify.js';
import { printJson, runCommand } from '../context.js';
import { formatVerify } from '../format.js';
import { jsonOption, noProgressOption } from './options.js';

export function verifyCommand() {
  return new Command('verify')
    .description('verify a bundle: sibling, seals, schema, layout, every artifact hash (streaming)')
    .argument('[bundle]', 'path of the bundle file')
    .addOption(new Option('--bundle <path>', 'path of the bundle file (the original spelling)').hideHelp())
    .option('--deep', 'also run PRAGMA integrity_check on every database and git bundle verify')
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Exit status: 0 verified, 2 damaged or not a bundle, 3 not fully verified (e.g. no sibling), 1 usage or I/O error.

Examples:
  nexo-memory verify state/tenants/default/snapshots/ana/0190c3a2-….tar.zst
  nexo-memory verify exported.tar.zst --deep --json`,
    )
    .action(async (positional, opts) => {
      await runCommand(opts, async (progress) => {
        const path = positional ?? opts.bundle;
        if (!path) throw new InvalidInputError('verify needs a bundle path');
        const report = await verifyBundleFile(path, {
          deep: opts.deep === true,
          onProgress: progress.listener,
        });
        progress.done();
        if (opts.json) printJson(report);
        else process.stdout.write(`${formatVerify(report)}\n`);
        return verifyExitCode(report);
      });
    });
}
