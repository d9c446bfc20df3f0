// `nexo-memory snapshot`: capture one agent into a new snapshot of the store (repository or bundle).

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
      "snapshot an agent's memory (memdir, SQLite databases, state) into the store: the repository (storing only what changed), or a tar.zst bundle file in a 0.2 bundle store",
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
    .option('--redact', 'redact secrets from everything the snapshot stores (default: an exact copy)')
    .option('--no-redact', 'an exact copy, secrets included (the default unless redaction.enabled: true)')
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Encryption: in a bundle store, --encrypt writes <id>.tar.zst.age. A repository is encrypted or not from
its creation: a plain one refuses --encrypt (INVALID_INPUT); in an encrypted one every snapshot is
encrypted, --encrypt must name its recipients, and encryption.identity_path must be set. A state root
without a repository gets an encrypted one when recipients are given and encryption.identity_path is
set (README, "snapshot"; docs/repository.md §7).

Examples:
  nexo-memory snapshot --agent ana --label before-dream
  nexo-memory snapshot --agent ana --redact           # secrets replaced by [REDACTED:<rule>]
  nexo-memory snapshot --agent ana --sign /etc/nexo/sign.key
  nexo-memory snapshot --agent ana --config /etc/nexo/memory.yaml   # encryption: recipients + identity_path
  NEXO_MEMORY_STORE_FORMAT=bundles nexo-memory snapshot --agent ana --encrypt age1… --encrypt age1…
  nexo-memory snapshot --agent ana --state-root /var/lib/nexo/state --memdir-root /srv/agents --sqlite-root /srv/agents --json`,
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
          ...(opts.encrypt !== undefined ? { encrypt: opts.encrypt } : {}),
          ...(opts.sign !== undefined ? { sign: checkSigningKeyFile(opts.sign) } : {}),
          onProgress: progress.listener,
        });
        progress.done();
        if (opts.json) printJson(meta);
        else printText(formatSnapshot(meta));
        return 0;
      });
    });
}
