// `nexo-memory export`: copy one bundle and its sibling out of the store, verified; what leaves the
// host is redacted unless asked otherwise.

import { armRemoveOnStop } from '../../util/remove-on-stop.js';
import { Command } from '../commander.js';
import { identityFrom, printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatExport } from '../format.js';
import { printText } from '../terminal.js';
import {
  agentOption,
  configOption,
  identityOption,
  jsonOption,
  noProgressOption,
  stateRootOption,
  tenantOption,
  trustOption,
} from './options.js';

export function exportCommand() {
  return new Command('export')
    .description(
      'write a snapshot (repository or bundle) to a path as a tar.zst bundle with its .sha256 sibling, redacted unless --no-redact; the copy is verified',
    )
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(configOption())
    .requiredOption('--id <snapshot>', 'snapshot id, a unique prefix, or latest')
    .requiredOption(
      '--to <path>',
      'target file, or a directory (ending in / or existing) to write <id>.tar.zst into; never created',
    )
    .option('--force', 'overwrite an existing target')
    .option('--redact', 'redact secrets from the copy (the default, config redact_secrets_default)')
    .option('--no-redact', 'an exact copy, secrets included')
    .option('--decrypt', 'write a plaintext copy of an encrypted snapshot (needs --decrypt-identity)')
    .addOption(identityOption())
    .addOption(trustOption())
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
What leaves the host is redacted: a plaintext snapshot that is not redacted is re-packed with its
secrets replaced by [REDACTED:<rule>] (same snapshot id, a redactions report, fresh seals, signed with
the configured signing key); --no-redact copies it exactly. An encrypted bundle is protected and is
copied as it is; --decrypt --decrypt-identity FILE writes a plaintext copy instead, redacted unless
--no-redact. An encrypted copy is verified fully only with --decrypt-identity (otherwise only its bytes
against the sibling); with --trust the snapshot must be signed by a trusted key. A repository
snapshot is written as a new bundle under the same rules; one of an encrypted repository is written
encrypted to encryption.recipients, or as a plaintext copy with --decrypt.

Examples:
  nexo-memory export --agent ana --id 0190c3a2-7f1e --to /backups/
  nexo-memory export --agent ana --id 0190c3a2-7f1e --to /backups/ --no-redact   # exact copy, secrets included
  nexo-memory export --agent ana --id 0190c3a2-7f1e --to /backups/ --decrypt-identity ~/.nexo/age.txt
  nexo-memory export --agent ana --id 0190c3a2-… --to ana.tar.zst --force --trust nexo-sign-pub1…`,
    )
    .action(async (opts) => {
      // a signal that ends the export removes its temporary copy from the target directory first
      const disarm = armRemoveOnStop();
      try {
        await runCommand(opts, async (progress) => {
          const r = await snapshotterFrom(opts).export(opts.agent, opts.tenant, opts.id, opts.to, {
            force: opts.force === true,
            ...(opts.redact !== undefined ? { redact: opts.redact } : {}),
            ...(opts.decrypt ? { decrypt: true } : {}),
            ...(identityFrom(opts) ? { decryptIdentity: identityFrom(opts)! } : {}),
            ...(opts.trust?.length ? { trust: opts.trust } : {}),
            onProgress: progress.listener,
          });
          progress.done();
          if (opts.json) printJson(r);
          else printText(formatExport(r));
          return 0;
        });
      } finally {
        disarm();
      }
    });
}
