// `nexo-memory verify`: check any bundle file, or one snapshot of the store by agent and id; exit 0
// verified, 2 damaged (or a bad, missing or untrusted signature where trust requires one), 3 not fully
// verified. Trust and identity come from the snapshotter (the config), as in the daemon and MCP.

import { InvalidInputError } from '../../model/errors.js';
import { verifyExitCode } from '../../model/types.js';
import type { VerifyRequestOptions } from '../../snapshotter/interface.js';
import { prepareBundleRead } from '../../snapshotter/prepare-read.js';
import { Command, Option } from '../commander.js';
import { identityFrom, printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatVerify } from '../format.js';
import { printText } from '../terminal.js';
import {
  configOption,
  identityOption,
  jsonOption,
  noProgressOption,
  stateRootOption,
  tenantOption,
  trustOption,
} from './options.js';

export function verifyCommand() {
  return new Command('verify')
    .description(
      'verify a bundle file, or a snapshot of the store (--agent, --id): seals, schema, layout, every artifact hash (streaming)',
    )
    .argument(
      '[bundle]',
      "path of a bundle file, or a repository snapshot's bundle_path <repository>#<id> as snapshot and list print it (the same repository: same --state-root or --repo)",
    )
    .addOption(new Option('--bundle <path>', 'path of the bundle file (the original spelling)').hideHelp())
    .addOption(new Option('--agent <id>', 'verify a snapshot of this agent in the store (with --id)'))
    .addOption(new Option('--id <snapshot>', 'snapshot id, a unique prefix, or latest, of --agent'))
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .option(
      '--deep',
      "also run PRAGMA integrity_check on every database (and git fsck of a v1 bundle's history)",
    )
    .addOption(identityOption())
    .addOption(trustOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Without --trust, the config's signing.trusted_keys apply (a signature by one of them is required when
signing.require_signature is set), as for the daemon's verify route and the MCP tool.

Exit status: 0 verified, 2 damaged or not a bundle (with --trust or require_signature: also a bad,
missing or untrusted signature), 3 not fully verified (no sibling; encrypted and no identity), 7 the
identity does not open the bundle, 1 usage, key or I/O error.

Examples:
  nexo-memory verify --agent ana --id latest
  nexo-memory verify --agent ana --id 0190c3a2-7f1e --deep
  nexo-memory verify --state-root /var/lib/nexo/state "/var/lib/nexo/state/repository#0190c3a2-…"
  nexo-memory verify exported.tar.zst --deep --json
  nexo-memory verify ana.tar.zst --trust nexo-sign-pub1… --trust /etc/nexo/ops.pub`,
    )
    .action(async (positional, opts) => {
      // a bundle file's decompression thread starts while the command's modules load
      prepareBundleRead(positional ?? opts.bundle);
      await runCommand(opts, async (progress) => {
        const path = positional ?? opts.bundle;
        const byId = opts.agent !== undefined || opts.id !== undefined;
        if (path === '') throw new InvalidInputError('the bundle path is empty');
        if (path !== undefined && byId)
          throw new InvalidInputError('verify takes a bundle path or --agent and --id, not both');
        if (byId && (opts.agent === undefined || opts.id === undefined))
          throw new InvalidInputError('--agent and --id go together');
        if (path === undefined && !byId)
          throw new InvalidInputError('verify needs a bundle path (or --agent and --id)');
        const s = snapshotterFrom(opts);
        const identity = identityFrom(opts);
        const request: VerifyRequestOptions = {
          deep: opts.deep === true,
          onProgress: progress.listener,
          ...(identity ? { decryptIdentity: identity } : {}),
          ...(opts.trust?.length ? { trust: opts.trust } : {}),
        };
        const report = path
          ? await s.verify(path, request)
          : await s.verifySnapshot(opts.agent!, opts.tenant, opts.id!, request);
        // only a verified bundle is work done: a damaged, untrusted or incomplete one gets no done line
        if (report.status === 'verified') progress.done();
        else progress.fail();
        if (opts.json) printJson(report);
        else printText(formatVerify(report));
        return verifyExitCode(report);
      });
    });
}
