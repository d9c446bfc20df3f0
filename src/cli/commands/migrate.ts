// `nexo-memory migrate`: moves every bundle of the state root into the repository (verified, then the
// bundle removed); idempotent and resumable. Prints one line (or JSON entry) per bundle.

import type { MigrateReport } from '../../snapshotter/migrate.js';
import { Command } from '../commander.js';
import { identityFrom, printJson, runCommand, snapshotterFrom } from '../context.js';
import { humanBytes } from '../format.js';
import { printText } from '../terminal.js';
import { configOption, identityOption, jsonOption, stateRootOption } from './options.js';

/** 0 when every bundle moved; else the exit status of the first bundle that did not. */
export function migrateExitCode(r: MigrateReport): number {
  const first = r.results.find((b) => b.outcome !== 'migrated');
  const code = first?.error?.exit_code;
  return first ? (typeof code === 'number' ? code : 1) : 0;
}

function formatMigrate(r: MigrateReport): string {
  const lines = r.results.map((b) => {
    const what = `${b.id} (agent ${b.agent_id}, tenant ${b.tenant})`;
    if (b.outcome === 'migrated')
      return `migrated ${what}${b.resumed ? ', resumed' : ''}${b.pinned ? ', pinned' : ''}${b.signature ? `, signature ${b.signature.status} (${b.signature.key_id})` : ''}`;
    const e = b.error as { code?: string; message?: string } | undefined;
    return `${b.outcome} ${what}: ${e?.code ?? 'ERROR'}: ${e?.message ?? ''}`;
  });
  for (const w of r.warnings ?? []) lines.push(`warning: ${w}`);
  lines.push(
    `${r.migrated} of ${r.bundles} bundle(s) migrated, ${r.skipped} skipped, ${r.failed} failed; ${humanBytes(r.added_bytes)} added to ${r.repository}${r.created_repository ? ' (created)' : ''}`,
  );
  return lines.join('\n');
}

export function migrateCommand() {
  return new Command('migrate')
    .description(
      'move every bundle of the state root into the repository (each verified there before its bundle is removed)',
    )
    .addOption(stateRootOption())
    .addOption(configOption())
    .addOption(identityOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
Creates the repository when there is none (encrypted to encryption.recipients when configured); from
then on new snapshots of this state root go into it (store.format: auto). Snapshot ids, labels,
creators, times and pins are kept; snapshots are signed with signing.key_path when configured, and the
bundle's own signature is recorded as checked. Re-running is safe: what moved is skipped, and a run that
was interrupted (even by kill -9) is finished. Encrypted bundles need the identity and an encrypted
repository; bundles that cannot move stay where they are.

Exit status: 0 every bundle migrated, else the status of the first that was not (2 damaged,
4 busy, 7 encryption, …).

Examples:
  nexo-memory migrate --state-root /var/lib/nexo
  nexo-memory migrate --config /etc/nexo/memory.yaml --json`,
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        const identity = identityFrom(opts);
        const r = await snapshotterFrom(opts).migrate(identity ? { decryptIdentity: identity } : {});
        if (opts.json) printJson(r);
        else printText(formatMigrate(r));
        return migrateExitCode(r);
      });
    });
}
