// `nexo-memory snapshot`: capture one agent into a new bundle.

import { snapshotRedactDefault } from '../../config/runtime.js';
import { Command } from '../commander.js';
import { checkSigningKeyFile, loadFlagsConfig, printJson, runCommand, snapshotterFrom } from '../context.js';
import { formatSnapshot } from '../format.js';
import { printText } from '../terminal.js';
import {
  agentOption,
  configOption,
  encryptOption,
  jsonOption,
  memdirRootOption,
  noProgressOption,
  signOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
  zstdLevelOption,
} from './options.js';

export function snapshotCommand() {
  return new Command('snapshot')
    .description(
      "snapshot an agent's memory (memdir, SQLite databases, state) into a verified tar.zst bundle",
    )
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(zstdLevelOption())
    .addOption(encryptOption())
    .addOption(signOption())
    .option('--label <text>', 'free-text label (at most 200 characters)')
    .option('--redact', 'redact secrets from everything the bundle ships (default: an exact copy)')
    .option('--no-redact', 'an exact copy, secrets included (the default unless redaction.enabled: true)')
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Examples:
  nexo-memory snapshot --agent ana --label before-dream
  nexo-memory snapshot --agent ana --redact           # secrets replaced by [REDACTED:<rule>]
  nexo-memory snapshot --agent ana --encrypt age1… --encrypt age1…
  nexo-memory snapshot --agent ana --sign /etc/nexo/sign.key
  nexo-memory snapshot --agent ana --state-root /var/lib/nexo/state --memdir-root /srv/agents --json`,
    )
    .action(async (opts) => {
      await runCommand(opts, async (progress) => {
        const s = snapshotterFrom(opts);
        // exact unless asked: a snapshot stays on the host for rollback (export redacts what leaves it)
        const redact = opts.redact ?? snapshotRedactDefault(loadFlagsConfig(opts)?.snapshot ?? {});
        const meta = await s.snapshot({
          agentId: opts.agent,
          tenant: opts.tenant,
          ...(opts.label !== undefined ? { label: opts.label } : {}),
          createdBy: 'cli',
          redact,
          ...(opts.encrypt ? { encrypt: opts.encrypt } : {}),
          ...(opts.sign ? { sign: checkSigningKeyFile(opts.sign) } : {}),
          onProgress: progress.listener,
        });
        progress.done();
        if (opts.json) printJson(meta);
        else printText(formatSnapshot(meta));
        return 0;
      });
    });
}
