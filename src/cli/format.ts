// Owns the human-readable rendering of results (tables and key: value lines). JSON output never passes
// through here; it prints the library's objects as they are.

import type { SnapshotDiff } from '../diff/diff.js';
import { snapshotKind } from '../model/kind.js';
import { recoveredRestoreLine } from '../model/restore-note.js';
import type {
  ExportResult,
  RecoverSweepEntry,
  RestoreReport,
  SnapshotMeta,
  VerifyReport,
} from '../model/types.js';
import type { PruneReport } from '../repository/prune.js';
import { durationText } from '../snapshotter/capture-time.js';
import type { RetentionTickReport } from '../snapshotter/gc.js';
import { shellWord } from '../util/shell-word.js';
import { terminalField } from './terminal.js';

export { shellWord };

export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * A rename as `git diff --stat` shows it: the parts both paths share (a leading directory, a trailing
 * `/…`) once, the rest as `{old => new}`; `old => new` when they share none (or a path must be quoted).
 */
export function renameShown(from: string, to: string): string {
  if (shellWord(from) !== from || shellWord(to) !== to) return `${shellWord(from)} => ${shellWord(to)}`;
  let pfx = 0; // a common prefix that ends with '/'
  for (let i = 0; i < Math.min(from.length, to.length) && from[i] === to[i]; i++)
    if (from[i] === '/') pfx = i + 1;
  let sfx = 0; // a common suffix that starts with '/', not reaching into the prefix
  for (let k = 1; k <= Math.min(from.length, to.length) - pfx; k++) {
    const c = from[from.length - k];
    if (c !== to[to.length - k]) break;
    if (c === '/') sfx = k;
  }
  if (pfx === 0 && sfx === 0) return `${from} => ${to}`;
  return `${from.slice(0, pfx)}{${from.slice(pfx, from.length - sfx)} => ${to.slice(pfx, to.length - sfx)}}${from.slice(from.length - sfx)}`;
}

export function formatSnapshot(m: SnapshotMeta): string {
  return [
    `snapshot id:  ${m.id}`,
    `agent:        ${m.agent_id} (tenant ${m.tenant})`,
    ...(m.label !== undefined ? [`label:        ${terminalField(m.label)}`] : []),
    `created:      ${iso(m.created_at_ms)}${m.clock_behind_ms ? ` (the host clock is ${durationText(m.clock_behind_ms)} behind: dated 1 ms after the agent's newest snapshot, so that this one is the newest)` : ''}`,
    `bundle:       ${m.bundle_path}`,
    `size_bytes:   ${m.bundle_size_bytes} (${humanBytes(m.bundle_size_bytes)})`,
    // what the snapshot cost its store, as list's ADDED (`?` when not known)
    `added_bytes:  ${typeof m.added_bytes === 'number' ? `${m.added_bytes} (${humanBytes(m.added_bytes)})` : '?'}`,
    `sha256:       ${m.bundle_sha256} (digest seal)`,
    ...(m.file_sha256 ? [`file sha256:  ${m.file_sha256}`] : []),
    `git head:     ${m.git_oid ?? '(none)'}`,
    `encrypted:    ${m.encrypted}`,
    `signed by:    ${m.signed_by ? `key ${m.signed_by}` : '(unsigned)'}`,
    `redactions:   ${m.redactions_applied}${m.redactions_applied ? ' (scanned by the redaction rules; what they found was replaced, see the manifest)' : ''}`,
    ...(m.memdir_skipped
      ? [
          `not captured: ${m.memdir_skipped.length} memdir entr${m.memdir_skipped.length === 1 ? 'y' : 'ies'} (not in this snapshot):`,
          ...m.memdir_skipped.map((e) => `  ${JSON.stringify(e.path)}: ${e.reason}`),
        ]
      : []),
  ].join('\n');
}

/** The longest pin note `list` shows whole, in characters (user-perceived: a flag or emoji is one). */
export const PIN_NOTE_SHOWN = 40;
// Made on first use: a segmenter loads ICU's break data, ~15-20 ms, which every command importing this
// module paid at start-up although only a list with a long pin note uses it.
let graphemes: Intl.Segmenter | undefined;

/**
 * A pin's note as a list cell: at most PIN_NOTE_SHOWN characters (a longer one is cut at a character
 * boundary and ends in `…`; `list --json` has it whole), every control character escaped (a note
 * written before notes were checked may hold any).
 */
export function shownPinNote(note: string): string {
  graphemes ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  const parts = [...graphemes.segment(note)].map((s) => s.segment);
  const cut = parts.length > PIN_NOTE_SHOWN ? `${parts.slice(0, PIN_NOTE_SHOWN - 1).join('')}…` : note;
  return terminalField(cut);
}

export function formatList(metas: SnapshotMeta[]): string {
  if (metas.length === 0) return '(no snapshots)';
  // the pins' notes get a column when any listed snapshot has one
  const notes = metas.some((m) => m.pinned && m.pin_note !== undefined);
  const rows = metas.map((m) => [
    m.id,
    iso(m.created_at_ms),
    humanBytes(m.bundle_size_bytes),
    // what it cost the store: a repository snapshot's new packed data, a bundle's whole file; `?` when
    // not known (a listing entry rebuilt after a kill: its size would overstate it)
    m.added_bytes === null || m.added_bytes === undefined ? '?' : humanBytes(m.added_bytes),
    [
      ...(m.encrypted ? ['enc'] : []),
      ...(m.redactions_applied ? ['red'] : []),
      ...(m.signed_by ? [`sig:${m.signed_by}`] : []),
      ...(m.pinned ? ['pinned'] : []),
    ].join(',') || '-',
    terminalField(m.created_by ?? '-'),
    terminalField(m.label ?? '-'),
    ...(notes ? [m.pinned && m.pin_note !== undefined ? shownPinNote(m.pin_note) : '-'] : []),
  ]);
  const header = ['ID', 'CREATED', 'SIZE', 'ADDED', 'FLAGS', 'BY', 'LABEL', ...(notes ? ['PIN NOTE'] : [])];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) =>
        i === 2 || i === 3 ? c.padStart(widths[i]!) : i === r.length - 1 ? c : c.padEnd(widths[i]!),
      )
      .join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatVerify(r: VerifyReport): string {
  const sv = r.schema_versions;
  // An incomplete report has no failed check (one would make it damaged): its false fields were not
  // checked, and the text says so (the JSON keeps the original's booleans, with not_checked beside).
  // So does a damaged one's flag whose check did not complete (listed in not_checked: a stream that
  // failed before its end).
  const ok = (v: boolean, check?: string): string =>
    v
      ? 'true'
      : r.status === 'incomplete' || r.not_checked.some((n) => n.check === check)
        ? 'false (not checked)'
        : 'false';
  const lines = [
    `bundle:           ${terminalField(r.bundle)}`,
    // the JSON's status stays `damaged` (API clients rely on it); the text says what a newer
    // version's snapshot is (stop 47)
    `status:           ${r.status}${
      r.status === 'damaged' && r.problems.length > 0 && r.problems.every((p) => p.code === 'SCHEMA_TOO_NEW')
        ? ' (written by a newer nexo-memory-snapshot: upgrade to read it)'
        : ''
    }`,
    `manifest_ok:      ${ok(r.manifest_ok)}`,
    // a repository snapshot (`<repository>#<id>`) has no sibling file: its digest seal is checked
    `bundle_sha256_ok: ${r.bundle_sha256_ok} ${/#[0-9a-f]{8}-[0-9a-f-]{27}$/.test(r.bundle) ? '(digest seal)' : `(sibling ${r.sibling})`}`,
    `per_artifact_ok:  ${ok(r.per_artifact_ok, 'artifacts')} (${r.artifacts_checked}/${r.artifacts_total} artifacts, ${humanBytes(r.bytes_checked)})`,
    `layout_ok:        ${ok(r.layout_ok, 'layout')}`,
    `size_ok:          ${ok(r.size_ok, 'size')}`,
    `age_protected:    ${r.age_protected}`,
    ...(r.signature
      ? [`signature:        ${r.signature.status}${r.signature.key_id ? ` (key ${r.signature.key_id})` : ''}`]
      : []),
    ...(r.bundle_format
      ? [`format:           ${r.bundle_format} (manifest_version ${r.manifest_version})`]
      : []),
    ...(sv
      ? [
          `schema_versions:  long_term=${sv.long_term} vector=${sv.vector} concepts=${sv.concepts} compactions=${sv.compactions} manifest=${sv.manifest}`,
        ]
      : []),
  ];
  if (r.deep) {
    const dbs = Object.entries(r.deep.sqlite_integrity).map(([k, v]) => `${k}=${v}`);
    lines.push(`deep sqlite:      ${dbs.length ? dbs.join(' ') : '(no databases)'}`);
    lines.push(`deep git:         ${r.deep.git ?? '(no history)'}`);
  }
  lines.push(`all_checks_ok:    ${r.status === 'verified'}`);
  for (const p of r.problems)
    lines.push(
      `problem: [${p.code}] ${p.path ? `${terminalField(JSON.stringify(p.path))}: ` : ''}${terminalField(p.message)}`,
    );
  for (const n of r.not_checked) lines.push(`not checked: ${n.check}: ${n.reason}`);
  return lines.join('\n');
}

/** What the exported copy is, in one line. */
function exportCopyLine(r: ExportResult): string {
  switch (r.copy) {
    case 'redacted': {
      const red = r.redaction;
      const rules = red?.rules_applied.length ? `: ${red.rules_applied.join(', ')}` : '';
      const history = red?.git_history === 'rewritten' ? '; git history rewritten' : '';
      const refs = red?.git_object_refs
        ? `; ${red.git_object_refs} git ref(s) to a blob or tree scanned like files and kept`
        : '';
      return `redacted: yes, re-packed (${red?.matches_redacted ?? 0} secret(s) replaced${rules}${history}${refs}); --no-redact for an exact copy`;
    }
    case 'already_redacted':
      return `redacted: yes (the snapshot itself is redacted; ${r.repacked ? 'written as it is' : 'copied as it is'})`;
    case 'encrypted':
      return `redacted: no (age-encrypted, so protected: ${r.repacked ? 'written as it is' : 'copied as it is'})`;
    default:
      return 'redacted: no (--no-redact: an exact copy, secrets included)';
  }
}

export function formatExport(r: ExportResult): string {
  return [
    `exported: ${r.path}`,
    `sibling:  ${r.sibling_path}`,
    `size:     ${r.bundle_size_bytes} (${humanBytes(r.bundle_size_bytes)})`,
    `sha256:   ${r.file_sha256}`,
    exportCopyLine(r),
    `verify:   ${r.verify.status}`,
    ...(r.verify.signature
      ? [
          `signature: ${r.verify.signature.status}${r.verify.signature.key_id ? ` (key ${r.verify.signature.key_id})` : ''}${
            r.repacked && r.verify.signature.status === 'unsigned'
              ? ' (a re-packed copy is signed with signing.key_path; none is configured)'
              : ''
          }`,
        ]
      : []),
  ].join('\n');
}

export function formatRestore(r: RestoreReport): string {
  const lines = [
    r.dry_run
      ? `dry run: nothing was changed; restoring ${r.from} would do this:`
      : `restored:     agent ${r.agent_id} (tenant ${r.tenant}) from snapshot ${r.from}`,
    ...(r.imported_from
      ? [`imported from: agent ${r.imported_from.agent_id} (tenant ${r.imported_from.tenant})`]
      : []),
    ...(r.stored_snapshot ? [`stored as:    snapshot ${r.stored_snapshot} in the repository`] : []),
    ...(r.restore_id ? [`restore id:   ${r.restore_id}`] : []),
    ...(r.pre_snapshot
      ? [`pre_snapshot: ${r.pre_snapshot} (undo: nexo-memory restore --undo --agent ${r.agent_id})`]
      : []),
    ...(r.git_reset_oid
      ? [
          `git HEAD:     ${r.git_reset_oid}${r.pre_restore_tag ? ` (previous HEAD kept as tag ${r.pre_restore_tag})` : ''}`,
        ]
      : []),
    `sqlite_restored: [${r.sqlite_restored_dbs.join(', ')}]${r.sqlite_removed_dbs.length ? ` removed: [${r.sqlite_removed_dbs.join(', ')}]` : ''}`,
    `state_files:  [${r.state_files_restored.join(', ')}]`,
    `workers_restarted: ${r.workers_restarted}`,
    ...(r.signature && r.signature.status !== 'unsigned'
      ? [`signature:    ${r.signature.status} (key ${r.signature.key_id})`]
      : []),
    ...(r.redacted ? redactionLines(r.redaction, r.dry_run) : []),
    ...r.backups.map((b) => `backup:       ${b}`),
    ...placeholderLines(r),
    'changes:',
  ];
  for (const c of r.components) {
    const parts = [`  ${c.component.padEnd(20)} ${c.action.padEnd(9)}`];
    if (c.old_bytes !== undefined || c.new_bytes !== undefined) {
      parts.push(
        `${c.old_bytes === undefined ? '-' : humanBytes(c.old_bytes)} → ${c.new_bytes === undefined ? '-' : humanBytes(c.new_bytes)}`,
      );
    }
    for (const [t, n] of Object.entries(c.rows ?? {}))
      if (n.old !== n.new) parts.push(`${t} rows ${n.old} → ${n.new}`);
    if (c.head && c.head.old !== c.head.new)
      parts.push(`HEAD ${c.head.old?.slice(0, 12) ?? '(none)'} → ${c.head.new?.slice(0, 12) ?? '(none)'}`);
    if (c.refs && c.refs.added.length + c.refs.removed.length + c.refs.changed.length > 0)
      parts.push(`refs +${c.refs.added.length} -${c.refs.removed.length} ~${c.refs.changed.length}`);
    if (c.files)
      parts.push(`files +${c.files.added.length} -${c.files.removed.length} ~${c.files.changed.length}`);
    lines.push(parts.join('  '));
    // a ref the snapshot does not have is gone from the restored memdir: named, as it is easy to miss
    const gone = c.refs?.removed ?? [];
    if (gone.length > 0)
      lines.push(
        `  ${''.padEnd(20)} refs removed: ${gone.slice(0, 10).map(shellWord).join(', ')}${gone.length > 10 ? `, … (${gone.length} in all)` : ''}`,
      );
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export function formatRecover(results: RecoverSweepEntry[]): string {
  if (results.length === 0) return 'nothing to recover';
  return results
    .map((r) => {
      if (r.outcome === 'failed')
        return `${r.agent_id} (tenant ${r.tenant}): failed: ${r.error_code}: ${r.error}`;
      const left = r.leftovers_removed?.length ?? 0;
      const what =
        r.outcome === 'cleaned'
          ? 'no interrupted restore'
          : `restore ${r.restore_id} ${r.outcome.replace('_', ' ')}`;
      const forgot = r.forgotten_snapshot
        ? `; snapshot ${r.forgotten_snapshot} of an interrupted import forgotten`
        : '';
      return `${r.agent_id} (tenant ${r.tenant}): ${what}${forgot}${left ? `; ${left} leftover(s) of killed operations removed or completed` : ''}`;
    })
    .join('\n');
}

export function formatGc(r: RetentionTickReport): string {
  const p = r.policy;
  const rules = {
    user: `snapshots (keep-count ${p.keep_count}, max-age-days ${p.max_age_days}, daily ${p.keep_daily}, weekly ${p.keep_weekly}, monthly ${p.keep_monthly})`,
    anchor: `automatic anchors (the ${p.anchor_keep_count} newest of each kind, ${p.anchor_max_age_days > 0 ? `none older than ${p.anchor_max_age_days} days` : 'no age limit'})`,
    tool: `snapshots the agent took (tool-keep-count ${p.tool_keep_count}, tool-max-age-days ${p.tool_max_age_days})`,
  };
  // Said only where such anchors are: their rule replaces the per-kind one.
  const preTool = `; pre-mutating-tool anchors: the ${p.pre_mutating_tool_keep_count} newest, ${p.pre_mutating_tool_max_age_hours > 0 ? `none older than ${p.pre_mutating_tool_max_age_hours} hours` : 'no age limit'})`;
  const action = (a: 'keep' | 'delete') =>
    (a === 'keep' ? 'keep' : r.dry_run ? 'would delete' : 'delete').padEnd(r.dry_run ? 12 : 6);
  const lines = r.dry_run ? ['dry run: nothing was deleted'] : [];
  for (const a of r.agents) {
    lines.push(
      `${terminalField(a.agent_id)} (tenant ${terminalField(a.tenant)})${a.skipped ? `: skipped, ${a.skipped}` : ''}${a.error ? `: error: ${a.error}` : ''}`,
    );
    for (const group of ['user', 'tool', 'anchor'] as const) {
      const decisions = a.decisions.filter((d) => d.group === group);
      if (decisions.length === 0) continue;
      const header =
        group === 'anchor' && decisions.some((d) => snapshotKind(d.created_by) === 'pre-mutating-tool')
          ? `${rules.anchor.slice(0, -1)}${preTool}`
          : rules[group];
      lines.push(`  ${header}:`);
      for (const d of decisions) {
        const why = d.action === 'keep' ? d.reasons.join(', ') : d.because;
        // a label is a listing's plaintext: kept on its line, as list shows it
        lines.push(
          `    ${action(d.action)}  ${d.id}  ${iso(d.created_at_ms)}  ${terminalField(d.label ?? '-')}  (${why})`,
        );
      }
    }
    for (const l of a.listing_problems ?? [])
      lines.push(`  not counted: ${l.id}  (${JSON.stringify(l.problem).slice(1, -1)})`);
    if (a.restore_recovered) lines.push(`  ${recoveredRestoreLine(a.agent_id, a.restore_recovered)}`);
    for (const l of a.leftovers_removed) lines.push(`  ${l}`);
    for (const b of a.backups_removed)
      lines.push(`  ${r.dry_run ? 'would remove' : 'removed'} restore backup ${b}`);
  }
  lines.push(
    // bytes_freed counts files (bundles, their companions, backups) and what the repository's prune
    // freed (its own line says how), also of snapshots forgotten before this run: not "of" the deleted
    // ones (stop 58: "deleted 0 snapshot(s) (1.7 KiB of files freed)")
    `${r.dry_run ? 'would delete' : 'deleted'} ${r.bundles_deleted} snapshot(s), kept ${r.bundles_kept}; ${humanBytes(r.bytes_freed)}${r.dry_run ? ' would be freed' : ' freed'} in all; ` +
      `${r.dry_run ? 'would remove' : 'removed'} ${r.backups_removed} backup(s), ${r.orphan_staging_dirs_removed} leftover(s); ${r.agents_visited} agent(s) swept, ` +
      `${r.agents_busy} busy, ${r.errors} error(s)` +
      (r.restores_recovered.length > 0
        ? `; ${r.restores_recovered.length} interrupted restore(s) finished or rolled back`
        : ''),
  );
  const pr = r.prune;
  if (pr?.status === 'busy') lines.push(`repository: not pruned, ${pr.skipped} (the next sweep prunes)`);
  else if (pr?.status === 'error') lines.push(`repository: prune failed: ${pr.error}`);
  else if (pr)
    lines.push(
      `repository: ${pruneSummary(pr.status === 'dry-run', pr)}` +
        (pr.leftovers_removed > 0 ? `; swept ${pr.leftovers_removed} leftover(s) of interrupted saves` : ''),
      ...staleLockLines(pr).map((l) => `repository: ${l}`),
    );
  return lines.join('\n');
}

/**
 * One line per stale lock of another process a prune removed (stop 47): the object, whose it was and
 * how old. The host and operation are the lock's own bytes: control characters escaped as JSON does.
 */
export function staleLockLines(r: { stale_locks_removed?: PruneReport['stale_locks_removed'] }): string[] {
  const shown = (v: unknown) => JSON.stringify(String(v)).slice(1, -1);
  return (r.stale_locks_removed ?? []).map((l) => {
    const d = new Date(l.refreshed_at_ms);
    const at = Number.isNaN(d.getTime()) ? String(l.refreshed_at_ms) : d.toISOString();
    return `removed stale ${l.exclusive ? 'exclusive' : 'shared'} lock ${l.lock} of ${shown(l.operation)} (pid ${shown(l.pid)} on ${shown(l.host)}): last refreshed ${at}, ${Math.round(l.age_ms / 60_000)} min ago`;
  });
}

/** One line of what a prune did, or in a dry run would do (in the conditional throughout). */
export function pruneSummary(
  dry: boolean,
  r: {
    packs_removed: number;
    packs_unindexed_removed: number;
    packs_rewritten: number;
    bytes_freed: number;
    bytes_before: number;
    snapshots: number;
    unlisted_removed?: number;
    orphan_pins_removed?: number;
    in_flight?: PruneReport['in_flight'];
  },
): string {
  const packs = r.packs_removed + r.packs_unindexed_removed;
  const freed = `${humanBytes(r.bytes_freed)} ${dry ? 'would be freed' : 'freed'} of ${humanBytes(r.bytes_before)}`;
  const unlisted =
    (r.unlisted_removed ?? 0) > 0
      ? `, ${r.unlisted_removed} unlisted manifest(s) ${dry ? 'would be removed' : 'removed'}`
      : '';
  const orphans =
    (r.orphan_pins_removed ?? 0) > 0
      ? `, ${r.orphan_pins_removed} orphan pin(s) ${dry ? 'would be removed' : 'removed'}`
      : '';
  const f = r.in_flight;
  const inFlight = f
    ? `; not counted: ${f.packs_unindexed} unindexed pack(s) (${humanBytes(f.bytes)}) and ${f.unlisted} unlisted manifest(s) that running operations may still index or list (${f.locks.join('; ')})`
    : '';
  return dry
    ? `would remove ${packs} pack(s) and rewrite ${r.packs_rewritten}; ${freed} (${r.snapshots} snapshot(s) kept${unlisted}${orphans})${inFlight}`
    : `removed ${packs} pack(s), rewrote ${r.packs_rewritten}; ${freed} (${r.snapshots} snapshot(s) kept${unlisted}${orphans})`;
}

export function formatDiff(d: SnapshotDiff): string {
  const g = d.git_summary;
  const lines = [`diff ${d.a} → ${d.b}`];
  lines.push(
    `history: ${g.commits_between} commit(s) in ${d.b} not in ${d.a}, ${g.commits_reverse} in ${d.a} not in ${d.b}` +
      (g.head_a || g.head_b
        ? ` (HEAD ${g.head_a?.slice(0, 12) ?? '-'} → ${g.head_b?.slice(0, 12) ?? '-'})`
        : ''),
  );
  if (d.files.length > 0) {
    const shown = new Map(
      d.files.map((f) => [f, f.old_path !== undefined ? renameShown(f.old_path, f.path) : shellWord(f.path)]),
    );
    const width = Math.min(60, Math.max(...[...shown.values()].map((w) => w.length)));
    const maxChange = Math.max(1, ...d.files.map((f) => f.insertions + f.deletions));
    const scale = Math.min(1, 40 / maxChange);
    for (const f of d.files) {
      const n = f.insertions + f.deletions;
      const graph =
        f.status === 'redacted'
          ? 'redacted'
          : f.binary
            ? 'Bin'
            : `${String(n).padStart(5)}${n > 0 ? ' ' : ''}${'+'.repeat(Math.ceil(f.insertions * scale))}${'-'.repeat(Math.ceil(f.deletions * scale))}`;
      const tag = f.status === 'added' ? ' (new)' : f.status === 'removed' ? ' (gone)' : '';
      lines.push(` ${(shown.get(f) as string).padEnd(width)} | ${graph}${tag}`);
    }
  }
  lines.push(
    ` ${g.files_changed} file(s) changed, ${g.insertions} insertion(s)(+), ${g.deletions} deletion(s)(-)`,
  );
  // the REDACTED column only when some row differs only by redaction
  const withRedacted = d.redactions.rows > 0;
  const rows = d.databases.flatMap((db) =>
    db.tables
      .filter((t) => t.added || t.removed || t.changed || t.redacted)
      .map((t) => [
        db.db,
        t.table,
        String(t.added),
        String(t.removed),
        String(t.changed),
        ...(withRedacted ? [String(t.redacted)] : []),
        `${t.rows_a} → ${t.rows_b}`,
      ]),
  );
  if (rows.length > 0) {
    const header = [
      'DB',
      'TABLE',
      'ADDED',
      'REMOVED',
      'CHANGED',
      ...(withRedacted ? ['REDACTED'] : []),
      'ROWS',
    ];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const numeric = (i: number) => i >= 2 && i < header.length - 1;
    lines.push('sqlite:');
    for (const r of [header, ...rows])
      lines.push(
        `  ${r.map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')}`,
      );
  } else {
    lines.push('sqlite: no row changes');
  }
  for (const db of d.databases) {
    if (db.presence !== 'both') lines.push(`  ${db.db}: only in ${db.presence === 'only_a' ? d.a : d.b}`);
    for (const c of db.schema_changes) lines.push(`  ${db.db}: schema ${c.change}: ${c.type} ${c.name}`);
  }
  const st = d.state_summary;
  const stateWord = (changed: boolean, key: string) =>
    changed ? 'changed' : d.redactions.state.includes(key) ? 'redacted' : 'unchanged';
  lines.push(
    `state: extract_cursor ${stateWord(st.extract_cursor_changed, 'extract_cursor')}, dream_run ${stateWord(st.last_dream_run_changed, 'dream_run')}`,
  );
  if (d.state) {
    for (const [k, v] of Object.entries(d.state))
      if (JSON.stringify(v.a) !== JSON.stringify(v.b))
        lines.push(`  ${k}: ${JSON.stringify(v.a)} → ${JSON.stringify(v.b)}`);
  }
  for (const f of d.files) if (f.patch) lines.push('', f.patch.trimEnd());
  for (const db of d.databases) {
    for (const t of db.tables) {
      if (!t.rows) continue;
      for (const r of t.rows.added) lines.push(`+ ${db.db}.${t.table} ${JSON.stringify(r)}`);
      for (const r of t.rows.removed) lines.push(`- ${db.db}.${t.table} ${JSON.stringify(r)}`);
      for (const r of t.rows.changed)
        lines.push(`~ ${db.db}.${t.table} ${JSON.stringify(r.before)} → ${JSON.stringify(r.after)}`);
      for (const r of t.rows.redacted)
        lines.push(
          `r ${db.db}.${t.table} ${JSON.stringify(r.key)} ${r.columns.join(', ')}: placeholder in ${r.placeholders_in}, the secret on the other side`,
        );
    }
  }
  const red = d.redactions;
  if (red.files + red.rows + red.state.length > 0)
    lines.push(
      `redacted only (placeholders on one side for secrets on the other, not counted as changes): ${red.files} file(s), ${red.rows} row(s)${red.state.length ? `, state ${red.state.join(', ')}` : ''}`,
    );
  if (d.state)
    // --detail: values were shown
    lines.push(
      red.output === 'redacted'
        ? 'secrets in values are shown redacted (--show-secrets shows them)'
        : 'values are shown as stored, secrets included (--show-secrets)',
    );
  return lines.join('\n');
}

/** A restore's redaction lines: what the snapshot's redaction replaced, and a note only when it did. */
function redactionLines(red: RestoreReport['redaction'], dryRun: boolean): string[] {
  if (red && red.matches_redacted === 0)
    return ['redacted:     scanned, no secret found (nothing was replaced)'];
  const rules = red?.rules_applied.length ? `: ${red.rules_applied.join(', ')}` : '';
  const history = red?.git_history === 'rewritten' ? '; git history rewritten' : '';
  return [
    `redacted:     yes (${red?.matches_redacted ?? '?'} secret(s) replaced${rules}${history})`,
    dryRun
      ? 'note: the snapshot is redacted: restoring it in place writes its placeholders over the live values and needs --allow-redacted'
      : 'note: the snapshot was redacted; the secrets it replaced were not restored',
  ];
}

/** How many placeholder locations a human report lists (JSON lists up to 1,000). */
const PLACEHOLDER_LINES = 50;

/** A dry run of a redacted bundle: where its placeholders would replace live values. */
function placeholderLines(r: RestoreReport): string[] {
  if (!r.placeholders) return [];
  const where = (p: NonNullable<RestoreReport['placeholders']>[number]): string =>
    p.table !== undefined
      ? `${p.table}.${p.column} ${p.rowid !== undefined ? `rowid ${p.rowid}` : `key ${JSON.stringify(p.key)}`}`
      : `line ${p.line}`;
  const total = r.placeholders_total ?? r.placeholders.length;
  const lines = [
    `placeholders: ${total} value(s) would become placeholders:`,
    ...r.placeholders
      .slice(0, PLACEHOLDER_LINES)
      .map((p) => `  ${p.artifact} ${where(p)}: [REDACTED:${p.rule}]`),
  ];
  if (total > PLACEHOLDER_LINES)
    lines.push(`  … and ${total - PLACEHOLDER_LINES} more (--json lists up to 1,000)`);
  if (r.redaction?.git_history === 'rewritten')
    lines.push('  git history: rewritten (the redacted file versions and messages; commit ids change)');
  return lines;
}
