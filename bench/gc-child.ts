// Owns one measured retention sweep in its own process: times LocalSnapshotter.gc over every agent of
// a store (dry run or real) and prints one JSON line with the wall time, peak RSS (VmHWM and maxRSS,
// KiB) and the counts of the sweep's report.

import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

interface Args {
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  keepCount: number;
  maxAgeDays: number;
  dryRun: boolean;
  /** The fixture's `now`, so the decisions do not drift as the reused fixture ages. */
  now: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const s = new LocalSnapshotter({
  stateRoot: args.stateRoot,
  memdirRoot: args.memdirRoot,
  sqliteRoot: args.sqliteRoot,
});
const t0 = performance.now();
const r = await s.gc({
  policy: { keepCount: args.keepCount, maxAgeDays: args.maxAgeDays },
  dryRun: args.dryRun,
  now: args.now,
});
const ms = performance.now() - t0;
console.log(
  JSON.stringify({
    ms,
    ...rssFields(),
    dry_run: r.dry_run,
    agents_visited: r.agents_visited,
    agents_busy: r.agents_busy,
    errors: r.errors,
    first_error: r.agents.find((a) => a.error)?.error,
    bundles_deleted: r.bundles_deleted,
    bundles_kept: r.bundles_kept,
    bytes_freed: r.bytes_freed,
    orphan_staging_dirs_removed: r.orphan_staging_dirs_removed,
    backups_removed: r.backups_removed,
  }),
);
