// `npm run demo`: builds a sample agent on the embedded default (local files, SQLite), then drives the
// real CLI: snapshot, verify --deep, list, change the agent, snapshot again, export. Prints each command
// and what it answered. Later issues extend it (diff, restore).

import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { buildSampleAgent, gitEnv } from './sample-agent.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(repo, 'src', 'cli', 'main.ts');
const root = mkdtempSync(join(tmpdir(), 'nexo-memory-demo-'));
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(title: string): void {
  process.stdout.write(`\n${bold(`== ${title}`)}\n`);
}

function nexo(args: string[], expectCode = 0): string {
  const shown = args.map((a) => (a.startsWith(root) ? a.replace(root, '$DEMO') : a)).join(' ');
  process.stdout.write(`$ nexo-memory ${shown}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
  process.stdout.write(r.stdout);
  if (r.stderr) process.stdout.write(r.stderr);
  if (r.status !== expectCode) {
    process.stderr.write(`demo: expected exit ${expectCode}, got ${r.status}\n`);
    process.exit(1);
  }
  return r.stdout;
}

/** The id and bundle path from the human output of `snapshot`. */
function parseSnapshot(out: string): { id: string; bundle_path: string } {
  const id = /^snapshot id:\s+(\S+)/m.exec(out)?.[1];
  const bundle = /^bundle:\s+(\S+)/m.exec(out)?.[1];
  if (!id || !bundle) throw new Error(`unexpected snapshot output:\n${out}`);
  return { id, bundle_path: bundle };
}

step(`Build a sample agent "ana" under ${root} (DEMO)`);
const a = buildSampleAgent(root, 'ana', { memories: 2_000, embeddings: 1_000, files: 40, commits: 12 });
process.stdout.write(
  `memdir:   $DEMO/memdir/ana (git, 12 commits, MEMORY.md + 40 topic files)\n` +
    `sqlite:   $DEMO/sqlite/ana/{long_term,vector,concepts,compactions}.sqlite (WAL)\n` +
    `state:    $DEMO/sqlite/ana/{extract_cursor,dream_run}.json\n` +
    `store:    $DEMO/state/tenants/default/snapshots/ana/\n`,
);
const roots = ['--state-root', a.stateRoot, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];

step('Snapshot it');
const first = parseSnapshot(nexo(['snapshot', '--agent', 'ana', '--label', 'demo-baseline', ...roots]));

step('Verify the bundle, deeply (hashes, seals, layout, integrity_check, git bundle verify)');
nexo(['verify', first.bundle_path, '--deep']);

step('GNU tar and zstd read the bundle too');
process.stdout.write(`$ tar --zstd -tf ${first.bundle_path.replace(root, '$DEMO')} | head -4\n`);
process.stdout.write(
  execFileSync('tar', ['--zstd', '-tf', first.bundle_path]).toString().split('\n').slice(0, 4).join('\n') +
    '\n',
);

step('Change the agent: a new memory row, an edited topic file (uncommitted), a commit');
const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
db.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)').run(
  Date.now(),
  'fact',
  'The demo ran.',
  1,
);
db.close();
appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- learned during the demo\n');
execFileSync('git', ['commit', '-qam', 'memory: demo change'], { cwd: a.memdir, env: gitEnv });
appendFileSync(join(a.memdir, 'topics', 'people', 'topic-0000.md'), '\nAn uncommitted edit.\n');
process.stdout.write('done\n');

step('Snapshot again and list (newest first)');
const second = parseSnapshot(nexo(['snapshot', '--agent', 'ana', '--label', 'after-change', ...roots]));
nexo(['list', '--agent', 'ana', '--state-root', a.stateRoot]);

step('Export the first snapshot (the copy is verified)');
nexo([
  'export',
  '--agent',
  'ana',
  '--id',
  first.id.slice(0, 13),
  '--to',
  join(root, 'exported'),
  '--state-root',
  a.stateRoot,
]);

step('A damaged copy is refused (exit 2)');
const damaged = join(root, 'exported');
execFileSync('sh', ['-c', `printf 'X' | dd of=${damaged} bs=1 seek=200 conv=notrunc status=none`]);
nexo(['verify', damaged], 2);

step('Summary');
process.stdout.write(
  `snapshots of ana: ${first.id} (demo-baseline), ${second.id} (after-change)\n` +
    `both verified; the second captures the uncommitted edit and the new row.\n` +
    `Demo files are in ${root} (remove them when done).\n`,
);
