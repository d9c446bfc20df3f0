// Owns one measured diff in its own process: times LocalSnapshotter.diff between two snapshots of the
// reference agent (summary only, no --detail) and prints one JSON line with the wall time, peak RSS
// (VmHWM and maxRSS, KiB) and the summary numbers run.ts checks against the change it made.

import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

interface Args {
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  agentId: string;
  a: string;
  b: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const s = new LocalSnapshotter({
  stateRoot: args.stateRoot,
  memdirRoot: args.memdirRoot,
  sqliteRoot: args.sqliteRoot,
});
const t0 = performance.now();
const d = await s.diff({ agentId: args.agentId, a: args.a, b: args.b });
const ms = performance.now() - t0;
const longTerm = d.databases.find((x) => x.db === 'long_term');
const otherDbRows = d.databases
  .filter((x) => x.db !== 'long_term')
  .reduce((n, x) => n + x.tables.reduce((m, t) => m + t.added + t.removed + t.changed, 0), 0);
console.log(
  JSON.stringify({
    ms,
    ...rssFields(),
    commits_between: d.git_summary.commits_between,
    commits_reverse: d.git_summary.commits_reverse,
    files_changed: d.git_summary.files_changed,
    insertions: d.git_summary.insertions,
    deletions: d.git_summary.deletions,
    long_term_rows_added: d.sqlite_summary.long_term_rows_added,
    long_term_rows_removed: d.sqlite_summary.long_term_rows_removed,
    long_term_rows_changed: longTerm ? longTerm.tables.reduce((n, t) => n + t.changed, 0) : 0,
    other_db_rows_differing: otherDbRows,
    schema_changes: d.databases.reduce((n, x) => n + x.schema_changes.length, 0),
    state_changed: d.state_summary.extract_cursor_changed || d.state_summary.last_dream_run_changed,
  }),
);
