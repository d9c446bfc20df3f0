// `nexo-memory verify`: check any bundle file; exit 0 verified, 2 damaged (or, with --trust, a bad,
// missing or untrusted signature), 3 not fully verified.

import { Command, Option } from '@commander-js/extra-typings';
import { loadIdentities } from '../../crypto/age.js';
import { InvalidInputError } from '../../model/errors.js';
import { verifyBundleFile, verifyExitCode } from '../../verify/verify.js';
import { identityFrom, printJson, runCommand, trustFrom } from '../context.js';
import { formatVerify } from '../format.js';
import { configOption, identityOption, jsonOption, noProgressOption, trustOption } from './options.js';

export function verifyCommand() {
  return new Command('verify')
    .description('verify a bundle: sibling, seals, schema, layout, every artifact hash (streaming)')
    .argument('[bundle]', 'path of the bundle file')
    .addOption(new Option('--bundle <path>', 'path of the bundle file (the original spelling)').hideHelp())
    .option('--deep', 'also run PRAGMA integrity_check on every database and git bundle verify')
    .addOption(identityOption())
    .addOption(trustOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Exit status: 0 verified, 2 damaged or not a bundle (with --trust: also a bad, missing or untrusted
signature), 3 not fully verified (no sibling; encrypted and no identity), 7 the identity does not open
the bundle, 1 usage, key or I/O error.

Examples:
  nexo-memory verify state/tenants/default/snapshots/ana/0190c3a2-….tar.zst
  nexo-memory verify exported.tar.zst --deep --json
  nexo-memory verify ana.tar.zst --trust nexo-sign-pub1… --trust /etc/nexo/ops.pub`,
    )
    .action(async (positional, opts) => {
      await runCommand(opts, async (progress) => {
        const path = positional ?? opts.bundle;
        if (!path) throw new InvalidInputError('verify needs a bundle path');
        const identity = identityFrom(opts);
        const trust = trustFrom(opts);
        const report = await verifyBundleFile(path, {
          deep: opts.deep === true,
          onProgress: progress.listener,
          ...(identity ? { identities: loadIdentities(identity) } : {}),
          ...(trust ? { trust } : {}),
        });
        progress.done();
        if (opts.json) printJson(report);
        else process.stdout.write(`${formatVerify(report)}\n`);
        return verifyExitCode(report);
      });
    });
}
