// Owns one measured restore in its own process: restores the bundle over the live reference agent
// (without the automatic pre-restore snapshot, which is a snapshot and measured as such), then removes
// the backups the restore kept (the replaced files and the `pre-restore-<id>` tag it adds to the memdir's
// repository, which later snapshots would carry, one more per run), and prints one JSON line with the
// wall time and peak RSS.

import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

interface Args {
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  agentId: string;
  bundle: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const s = new LocalSnapshotter({
  stateRoot: args.stateRoot,
  memdirRoot: args.memdirRoot,
  sqliteRoot: args.sqliteRoot,
});
const t0 = performance.now();
const r = await s.restore({ agentId: args.agentId, bundle: args.bundle, autoPreSnapshot: false });
const ms = performance.now() - t0;
const rss = rssFields();
for (const b of r.backups) rmSync(b, { recursive: true, force: true });
const memdir = s.resolver.memdir(args.agentId, 'default');
if (r.pre_restore_tag)
  execFileSync('git', ['-C', memdir, 'tag', '-d', r.pre_restore_tag], { stdio: 'ignore' });
const memdirParent = dirname(memdir);
for (const n of readdirSync(memdirParent))
  if (n.includes('.pre-restore-')) rmSync(join(memdirParent, n), { recursive: true, force: true });
console.log(JSON.stringify({ ms, ...rss, dbs: r.sqlite_restored_dbs.length, warnings: r.warnings.length }));
