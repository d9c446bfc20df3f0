// `nexo-memory ls`, `cat` and `find`: memory as of a snapshot (docs/browse.md). `cat` prints a file as
// it is (every page of it unless --limit), a table's rows as JSON lines; `find` prints one line per
// snapshot and the first-seen / first-gone summary. --json prints the library's result unchanged.

import { type CatResult, type FindResult, type LsResult, MAX_LS_ENTRIES } from '../../browse/types.js';
import { Command } from '../commander.js';
import { identityFrom, parseIntFlag, printJson, runCommand, snapshotterFrom } from '../context.js';
import { humanBytes, shellWord } from '../format.js';
import { printText } from '../terminal.js';
import {
  agentOption,
  configOption,
  identityOption,
  jsonOption,
  memdirRootOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
} from './options.js';

const showSecretsOption = '--show-secrets';
const showSecretsHelp = 'show values as stored, secrets included (default: redacted)';

function formatLs(r: LsResult): string {
  if (r.entries.length === 0) return `(empty: ${r.path || '/'} of ${r.snapshot_id})`;
  return r.entries
    .map((e) => {
      const what =
        e.type === 'table'
          ? `${e.rows} rows`
          : e.type === 'virtual_table'
            ? (e.module ?? '')
            : e.size_bytes !== undefined
              ? humanBytes(e.size_bytes)
              : '';
      const type = e.type === 'virtual_table' ? 'virtual' : e.type;
      return `${type.padEnd(8)} ${what.padStart(12)}  ${shellWord(e.path)}${e.type === 'dir' ? '/' : ''}`;
    })
    .join('\n');
}

export function lsCommand() {
  return new Command('ls')
    .description('list memory as of a snapshot: memdir files, databases, tables with row counts, state')
    .argument('<snap>', 'snapshot id, unique prefix, or latest')
    .argument('[path]', 'browse path: memdir/…, sqlite, sqlite/<db>, state (default: the root)', '')
    .option(
      '--limit <n>',
      `entries per page, ≤ ${MAX_LS_ENTRIES} (default: every entry)`,
      parseIntFlag('--limit'),
    )
    .option('--cursor <cursor>', 'the next_cursor of the page before (same path)')
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(identityOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory ls --agent ana 0190c3a2-7f1e\n  nexo-memory ls --agent ana 0190c3a2-7f1e memdir/topics\n  nexo-memory ls --agent ana 0190c3a2-7f1e sqlite/long_term',
    )
    .action(async (snap, path, opts) => {
      await runCommand(opts, async () => {
        const identity = identityFrom(opts);
        const r = await snapshotterFrom(opts).ls(opts.agent, opts.tenant, snap, path, {
          ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
          ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}),
          ...(identity ? { decryptIdentity: identity } : {}),
        });
        if (opts.json) printJson(r);
        else {
          printText(formatLs(r));
          // on stderr: stdout stays one entry per line
          if (r.next_cursor !== undefined)
            process.stderr.write(
              `(${r.entries.length} of ${r.total} entries shown; the next page: --cursor ${r.next_cursor})\n`,
            );
        }
        return 0;
      });
    });
}

export function catCommand() {
  return new Command('cat')
    .description("print a memory file, a state value or a table's rows (JSON lines) as of a snapshot")
    .argument('<snap>', 'snapshot id, unique prefix, or latest')
    .argument('<path>', 'memdir/<file>, state/<key>, sqlite/<db>/<table> or sqlite/<db>')
    .option('--offset <n>', 'rows (table) or bytes (file) to skip', parseIntFlag('--offset'))
    .option(
      '--limit <n>',
      'rows (default 100, ≤ 1000) or bytes (default: the whole file)',
      parseIntFlag('--limit'),
    )
    .option(showSecretsOption, showSecretsHelp)
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(identityOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory cat --agent ana 0190c3a2-7f1e memdir/MEMORY.md\n  nexo-memory cat --agent ana 0190c3a2-7f1e sqlite/long_term/memories --limit 20\n\nText is redacted by the redaction rules unless --show-secrets.',
    )
    .action(async (snap, path, opts) => {
      await runCommand(opts, async () => {
        const s = snapshotterFrom(opts);
        const identity = identityFrom(opts);
        const base = {
          ...(identity ? { decryptIdentity: identity } : {}),
          ...(opts.showSecrets ? { showSecrets: true } : {}),
        };
        let offset = opts.offset ?? 0;
        let r: CatResult = await s.cat(opts.agent, opts.tenant, snap, path, {
          ...base,
          offset,
          ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
        });
        if (opts.json) {
          printJson(r);
          return 0;
        }
        if (r.kind === 'file') {
          // the whole file unless --limit: page after page
          for (;;) {
            if (r.kind !== 'file') break;
            process.stdout.write(
              r.binary ? Buffer.from(r.content_base64 ?? '', 'base64') : (r.content ?? ''),
            );
            if (!r.truncated || opts.limit !== undefined || r.length === 0) break;
            offset = r.offset + r.length;
            r = await s.cat(opts.agent, opts.tenant, snap, path, { ...base, offset });
          }
          return 0;
        }
        const tables = r.kind === 'table' ? [r] : r.tables;
        for (const t of tables) {
          for (const row of t.rows)
            process.stdout.write(`${JSON.stringify(r.kind === 'table' ? row : { table: t.table, row })}\n`);
          if (t.truncated)
            process.stderr.write(
              `${t.path}: ${t.total_rows - t.offset - t.rows.length} more rows (--offset ${t.offset + t.rows.length})\n`,
            );
        }
        return 0;
      });
    });
}

function formatFind(r: FindResult): string {
  const what = r.query.text !== undefined ? JSON.stringify(r.query.text) : `/${r.query.regex}/`;
  const when = (x?: { snapshot_id: string; created_at_ms: number }) =>
    x ? `${x.snapshot_id} (${new Date(x.created_at_ms).toISOString()})` : 'never';
  const lines = [
    `${what}: first seen ${when(r.first_seen)}, first gone ${r.first_seen ? (r.first_gone ? when(r.first_gone) : 'still there') : '-'}`,
  ];
  for (const h of r.snapshots) {
    const where = h.locations
      .map((l) =>
        l.kind === 'row'
          ? `${l.path}#${l.rowid} (${JSON.stringify(l.column).slice(1, -1)})`
          : shellWord(l.path),
      )
      .join(', ');
    lines.push(
      `  ${h.snapshot_id}  ${new Date(h.created_at_ms).toISOString()}  ${h.found ? `found ×${h.count}: ${where}${h.count > h.locations.length ? ', …' : ''}` : '-'}`,
    );
  }
  return lines.join('\n');
}

export function findCommand() {
  return new Command('find')
    .description('which snapshots hold a text, where, and when it first appeared and was gone')
    .argument('[text]', 'text to find (case-sensitive)')
    .option('--regex <re>', 'a JavaScript regular expression instead of a text')
    .option('--since <time>', 'only snapshots taken since (ms since the epoch, or ISO 8601)')
    .option(showSecretsOption, 'also report matches inside secrets, and show them as stored')
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(identityOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  nexo-memory find --agent ana "blue whale"\n  nexo-memory find --agent ana --regex "whale[s]?" --since 2026-01-01 --json',
    )
    .action(async (text, opts) => {
      await runCommand(opts, async () => {
        const { parseSince } = await import('../../browse/since.js');
        const identity = identityFrom(opts);
        const r = await snapshotterFrom(opts).find({
          agentId: opts.agent,
          tenant: opts.tenant,
          ...(text !== undefined ? { text } : {}),
          ...(opts.regex !== undefined ? { regex: opts.regex } : {}),
          ...(opts.since !== undefined ? { sinceMs: parseSince(opts.since) } : {}),
          ...(opts.showSecrets ? { showSecrets: true } : {}),
          ...(identity ? { decryptIdentity: identity } : {}),
        });
        if (opts.json) printJson(r);
        else printText(formatFind(r));
        return 0;
      });
    });
}
