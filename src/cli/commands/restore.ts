// `nexo-memory restore`, `import` and `recover`: put a snapshot back in place (a bundle file, or one of
// the agent's snapshots by id: repository or bundle) or clone a bundle as another agent, and finish
// interrupted restores. restore and import are gated by NEXO_MEMORY_RESTORE_ALLOW.

import { existsSync } from 'node:fs';
import { InvalidInputError } from '../../model/errors.js';
import { LATEST, parseSnapshotId, parseSnapshotPrefix } from '../../model/ids.js';
import type { RestoreRequest } from '../../model/types.js';
import { checkRestoreGate } from '../../snapshotter/gate.js';
import type { LocalSnapshotter } from '../../snapshotter/local.js';
import { prepareBundleRead } from '../../snapshotter/prepare-read.js';
import { Command, Option } from '../commander.js';
import {
  autoPreSnapshotFrom,
  identityFrom,
  type OutputFlags,
  printJson,
  runCommand,
  type StoreFlags,
  snapshotterFrom,
} from '../context.js';
import { formatRecover, formatRestore } from '../format.js';
import type { ProgressReporter } from '../progress.js';
import { printText, terminalText } from '../terminal.js';
import {
  agentOption,
  configOption,
  identityOption,
  jsonOption,
  memdirRootOption,
  noProgressOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
  trustOption,
} from './options.js';

const fromOption = () => new Option('--from <bundle>', 'path of the bundle file to restore');
const restoreFromOption = () =>
  new Option(
    '--from <bundle|id>',
    "a bundle file, a repository snapshot's bundle_path (<repository>#<id>), or one of the agent's snapshots by id, unique prefix or `latest` (repository or bundle)",
  );
const noPreOption = () =>
  new Option('--no-auto-pre-snapshot', 'do not take the automatic pre-restore snapshot');
type RestoreFlags = StoreFlags &
  OutputFlags & {
    autoPreSnapshot?: boolean;
    decryptIdentity?: string;
    trust?: string[];
    allowRedacted?: boolean;
  };

/** restore and import alike: the flags every restore takes, the run, and its report. */
async function restoreAndPrint(
  s: LocalSnapshotter,
  opts: RestoreFlags,
  progress: ProgressReporter,
  req: Pick<RestoreRequest, 'agentId' | 'tenant' | 'bundle' | 'snapshot' | 'dryRun' | 'import'>,
): Promise<number> {
  const identity = identityFrom(opts);
  const r = await s.restore({
    ...req,
    autoPreSnapshot: autoPreSnapshotFrom(opts),
    ...(identity ? { decryptIdentity: identity } : {}),
    ...(opts.trust?.length ? { trust: opts.trust, requireSignature: true } : {}),
    ...(opts.allowRedacted ? { allowRedacted: true } : {}),
    onProgress: progress.listener,
  });
  progress.done();
  if (opts.json) printJson(r);
  else printText(formatRestore(r));
  return 0;
}

export function restoreCommand() {
  return new Command('restore')
    .description(
      "restore an agent's memory from a snapshot, in place and atomically (a pre-restore snapshot is taken first)",
    )
    .addOption(agentOption())
    .addOption(restoreFromOption())
    .addOption(tenantOption())
    .option('--dry-run', 'report what would change, change nothing')
    .option('--undo', "restore the agent's latest pre-restore snapshot (undo the last restore)")
    .option(
      '--allow-redacted',
      'restore a redacted bundle although its placeholders replace the live secrets',
    )
    .addOption(noPreOption())
    .addOption(identityOption())
    .addOption(trustOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Requires NEXO_MEMORY_RESTORE_ALLOW=true (1, true, yes or on), except for --dry-run. --from names a bundle file when such a
file exists, else one of the agent's snapshots by id or unique prefix (in the repository or among its
bundles: \`nexo-memory list\` shows them). With --trust (or the config's
signing.require_signature) a bundle without a valid signature by a trusted key is refused (exit 2)
before anything is written. A redacted bundle (secrets replaced by [REDACTED:<rule>]) is refused
(exit 6, REDACTED_BUNDLE) unless --allow-redacted: --dry-run lists where its placeholders would land.

Examples:
  nexo-memory restore --agent ana --from 0190a5c3 --dry-run
  nexo-memory restore --agent ana --from latest --dry-run
  nexo-memory restore --agent ana --from /backups/ana.tar.zst --json
  nexo-memory restore --agent ana --undo`,
    )
    .action(async (opts) => {
      // a bundle file's decompression thread starts while the command's modules load
      if (!opts.undo) prepareBundleRead(opts.from);
      await runCommand(opts, async (progress) => {
        // a dry run changes nothing: not gated, as the API's is not (stop 58: the CLI's was)
        if (!opts.dryRun) checkRestoreGate();
        const s = snapshotterFrom(opts);
        if (opts.undo && opts.from !== undefined)
          throw new InvalidInputError('pass either --from or --undo, not both');
        const from = opts.undo ? undefined : opts.from;
        if (!opts.undo && from === undefined)
          throw new InvalidInputError('restore needs --from <bundle|id> (or --undo)');
        // `latest` is the agent's newest snapshot (even beside a file of that name: `./latest` is the
        // file); another existing file is a bundle path; an id or prefix names one of the agent's snapshots
        const source =
          from !== undefined &&
          from.toLowerCase() !== LATEST &&
          (existsSync(from) ||
            (parseSnapshotPrefix(from) === undefined && parseSnapshotId(from) === undefined))
            ? { bundle: from }
            : from !== undefined
              ? { snapshot: from }
              : { undo: true };
        return restoreAndPrint(s, opts, progress, {
          agentId: opts.agent,
          tenant: opts.tenant,
          ...source,
          dryRun: opts.dryRun === true,
        });
      });
    });
}

export function importCommand() {
  return new Command('import')
    .description(
      'restore a bundle as another agent (clone), refusing a target that already has memory unless --force',
    )
    .addOption(agentOption())
    .addOption(fromOption().makeOptionMandatory())
    .addOption(tenantOption())
    .option(
      '--force',
      'replace the memory the target agent already has (a pre-restore snapshot is taken first)',
    )
    .option(
      '--store-only',
      'only store the bundle as a snapshot of the agent in the repository; nothing live changes',
    )
    .addOption(noPreOption())
    .addOption(identityOption())
    .addOption(trustOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(noProgressOption())
    .addHelpText(
      'after',
      `
Requires NEXO_MEMORY_RESTORE_ALLOW=true (not with --store-only). When the store is a repository the
bundle is also stored as a snapshot of the agent (\`stored_snapshot\`): with the bundle's id, label and
time when it is the same agent and tenant, else a new id and created_by "import". --store-only does
only that (the agent may already have memory).

Examples:
  nexo-memory import --from /backups/ana.tar.zst --agent ana-copy
  nexo-memory import --from ana.tar.zst --agent ana --tenant acme --force
  nexo-memory import --from old/ana-0190c3a2-7f1e.tar.zst --agent ana --store-only`,
    )
    .action(async (opts) => {
      prepareBundleRead(opts.from);
      await runCommand(opts, async (progress) => {
        const s = snapshotterFrom(opts);
        if (opts.storeOnly) {
          if (opts.force)
            throw new InvalidInputError('--store-only changes nothing live: --force does not apply');
          const identity = identityFrom(opts);
          const r = await s.storeBundle({
            bundle: opts.from,
            agentId: opts.agent,
            tenant: opts.tenant,
            ...(identity ? { decryptIdentity: identity } : {}),
            ...(opts.trust?.length ? { trust: opts.trust, requireSignature: true } : {}),
            onProgress: progress.listener,
          });
          progress.done();
          if (opts.json) printJson(r);
          else
            process.stdout.write(
              `${r.stored === 'new' ? 'stored' : 'already stored'} ${r.imported_from.snapshot_id} (agent ${r.imported_from.agent_id}) as snapshot ${r.snapshot.id} of agent ${r.snapshot.agent_id}\n`,
            );
          return 0;
        }
        checkRestoreGate();
        return restoreAndPrint(s, opts, progress, {
          agentId: opts.agent,
          tenant: opts.tenant,
          bundle: opts.from,
          import: { force: opts.force === true },
        });
      });
    });
}

export function recoverCommand() {
  return new Command('recover')
    .description(
      'finish or roll back interrupted restores and remove what killed operations left (after a crash or kill)',
    )
    .addOption(new Option('--agent <id>', 'one agent').conflicts('all'))
    .option('--all', 'every agent of the store (the same recovery as --agent, for each)')
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory recover --agent ana\n  nexo-memory recover --all --json',
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        if (opts.agent === undefined && !opts.all)
          throw new InvalidInputError('recover needs --agent <id> or --all');
        const s = snapshotterFrom(opts);
        const results = opts.all
          ? await s.recoverAll()
          : [await s.recover(opts.agent!, opts.tenant)].filter((r) => r !== undefined);
        if (opts.json) printJson(results);
        else printText(formatRecover(results));
        // A sweep recovers every agent it can; each failure is said on stderr, and the exit status is
        // the first failure's (as gc's), 0 when none failed.
        let code = 0;
        for (const r of results) {
          if (r.outcome !== 'failed') continue;
          process.stderr.write(`error: agent ${r.agent_id} (tenant ${r.tenant}): ${terminalText(r.error)}\n`);
          code ||= r.exit_code;
        }
        return code;
      });
    });
}
