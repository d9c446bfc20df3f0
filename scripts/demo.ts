// `npm run demo`: builds a sample agent on the embedded default (local files, SQLite, the repository),
// then drives the real CLI: snapshot, verify --deep, check, change the agent (one change holds an API
// key), snapshot again (exact: it stays on the host; it adds only what changed), diff, dry-run and
// restore the baseline, undo, export (redacted: it leaves the host) read by GNU tar, a refused restore of
// the redacted copy, a damaged copy refused, and a signed and encrypted bundle. Prints each command and
// what it answered, and checks the outcomes. `npm run demo -- --serve` runs it all and then starts `nexo-memory serve`
// on the demo's store and prints the web console's address and a token to log in with (Ctrl-C ends it).

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
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

function nexo(args: string[], expectCode = 0, env: Record<string, string> = {}): string {
  const shown = args.map((a) => (a.startsWith(root) ? a.replace(root, '$DEMO') : a)).join(' ');
  process.stdout.write(`$ nexo-memory ${shown}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NEXO_MEMORY_RESTORE_ALLOW: 'true', ...env },
  });
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

/** A snapshot's listing metadata (`list --json`), for the bytes it added to the repository. */
function listed(id: string): { added_bytes?: number; bundle_size_bytes: number } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', cli, 'list', '--agent', 'ana', '--json', '--state-root', a.stateRoot],
    {
      encoding: 'utf8',
    },
  );
  const m = (JSON.parse(r.stdout) as { id: string; added_bytes?: number; bundle_size_bytes: number }[]).find(
    (x) => x.id === id,
  );
  if (!m) throw new Error(`snapshot ${id} is not listed`);
  return m;
}
const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

step(`Build a sample agent "ana" under ${root} (DEMO)`);
const a = buildSampleAgent(root, 'ana', { memories: 2_000, embeddings: 1_000, files: 40, commits: 12 });
process.stdout.write(
  `memdir:   $DEMO/memdir/ana (git, 12 commits, MEMORY.md + 40 topic files)\n` +
    `sqlite:   $DEMO/sqlite/ana/{long_term,vector,concepts,compactions}.sqlite (WAL)\n` +
    `state:    $DEMO/sqlite/ana/{extract_cursor,dream_run}.json\n` +
    `store:    $DEMO/state/repository/ (content-addressed: every snapshot stores only new chunks)\n`,
);
const roots = ['--state-root', a.stateRoot, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];

step('Snapshot it');
const first = parseSnapshot(nexo(['snapshot', '--agent', 'ana', '--label', 'demo-baseline', ...roots]));

const firstAdded = listed(first.id).added_bytes ?? 0;
process.stdout.write(
  `it stored ${kb(firstAdded)} in the repository for ${kb(listed(first.id).bundle_size_bytes)} of memory\n`,
);

step('Verify it, deeply (every chunk and seal, the history rebuilt, integrity_check)');
nexo(['verify', '--agent', 'ana', '--id', first.id, '--deep', '--state-root', a.stateRoot]);

step('Check the whole repository, reading every pack');
nexo(['check', '--read-data', '--state-root', a.stateRoot]);

step(
  'Change the agent: new memory rows (one holds an API key), an edited topic file (uncommitted), a commit',
);
// A made-up key in the shape of an Anthropic one, built here so no secret-looking literal is in the repo.
const fakeKey = `sk-ant-api03-${'demo'.repeat(6)}${Date.now().toString(36)}AbCdEf0123456789`;
const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
const insert = db.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)');
insert.run(Date.now(), 'fact', 'The demo ran.', 1);
insert.run(Date.now(), 'fact', `The deploy script uses ${fakeKey} for the API.`, 1);
db.close();
appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- learned during the demo\n');
execFileSync('git', ['commit', '-qam', 'memory: demo change'], { cwd: a.memdir, env: gitEnv });
appendFileSync(join(a.memdir, 'topics', 'people', 'topic-0000.md'), '\nAn uncommitted edit.\n');
process.stdout.write('done\n');

step('Snapshot again and list (newest first): the second snapshot adds only what changed');
const second = parseSnapshot(nexo(['snapshot', '--agent', 'ana', '--label', 'after-change', ...roots]));
nexo(['list', '--agent', 'ana', '--state-root', a.stateRoot]);
const secondAdded = listed(second.id).added_bytes ?? 0;
process.stdout.write(
  `check: the first snapshot stored ${kb(firstAdded)}, the second only ${kb(secondAdded)} ` +
    `(${((100 * secondAdded) / Math.max(1, firstAdded)).toFixed(1)} %)\n`,
);
if (!(secondAdded > 0 && secondAdded < firstAdded / 4)) process.exit(1);

step('A snapshot stays on the host for rollback, so it is exact: the key is in it too');
const exact = join(root, 'ana-exact.tar.zst');
nexo([
  'export',
  '--agent',
  'ana',
  '--id',
  second.id,
  '--to',
  exact,
  '--no-redact',
  '--state-root',
  a.stateRoot,
]);
const live = readFileSync(join(a.sqliteDir, 'long_term.sqlite')).includes(fakeKey);
const kept = execFileSync('zstd', ['-dc', exact], { maxBuffer: 1 << 30 }).includes(fakeKey);
process.stdout.write(
  `check: live database ${live ? 'holds the key' : 'LOST THE KEY'}; the snapshot (exported exactly) ${kept ? 'holds it too (a rollback restores it)' : 'LOST IT'}\n`,
);
if (!live || !kept) process.exit(1);

step('What changed between the two snapshots (commits, files, lines, rows, state; values shown redacted)');
const diff = nexo(['diff', first.id, second.id, '--agent', 'ana', '--detail', '--state-root', a.stateRoot]);
if (diff.includes(fakeKey) || !diff.includes('[REDACTED:anthropic-api-key]')) {
  process.stderr.write('demo: diff --detail must show the key as [REDACTED:anthropic-api-key]\n');
  process.exit(1);
}

step('Dry run: what restoring the baseline would change (nothing is changed)');
nexo(['restore', '--agent', 'ana', '--from', first.id, '--dry-run', ...roots]);

step('Restore the baseline in place (atomic; a pre-restore snapshot is taken first)');
nexo(['restore', '--agent', 'ana', '--from', first.id, ...roots]);
const rows = new Database(join(a.sqliteDir, 'long_term.sqlite'), { readonly: true });
const demoRows = rows.prepare("SELECT count(*) FROM memories WHERE content = 'The demo ran.'").pluck().get();
rows.close();
const memory = readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8');
const head = execFileSync('git', ['-C', a.memdir, 'log', '-1', '--format=%s']).toString().trim();
process.stdout.write(
  `check: the demo row is ${demoRows === 0 ? 'gone' : 'STILL THERE'}, MEMORY.md ${memory.includes('learned during the demo') ? 'STILL CHANGED' : 'is back'}, HEAD is "${head}"\n`,
);
if (demoRows !== 0 || memory.includes('learned during the demo')) process.exit(1);

step('Undo the restore (restores the automatic pre-restore snapshot)');
nexo(['restore', '--agent', 'ana', '--undo', ...roots]);
const again = readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8').includes('learned during the demo');
process.stdout.write(`check: the change is ${again ? 'back' : 'MISSING'}\n`);
if (!again) process.exit(1);

step('Export the second snapshot to share it: what leaves the host is redacted (the copy is verified)');
const shared = join(root, 'ana-shared.tar.zst');
nexo([
  'export',
  '--agent',
  'ana',
  '--id',
  second.id.slice(0, 13),
  '--to',
  shared,
  '--state-root',
  a.stateRoot,
]);
const copy = execFileSync('zstd', ['-dc', shared], { maxBuffer: 1 << 30 });
process.stdout.write(
  `check: the copy ${copy.includes(fakeKey) ? 'STILL HOLDS THE KEY' : 'does not hold the key'}, it holds ` +
    `${copy.includes('[REDACTED:anthropic-api-key]') ? '[REDACTED:anthropic-api-key] instead' : 'NO MARKER'}; ` +
    `the snapshot in the repository is unchanged (exact, as exported above)\n`,
);
process.stdout.write(
  `$ tar --zstd -tf $DEMO/ana-shared.tar.zst | head -4   # a plain bundle: GNU tar reads it\n`,
);
process.stdout.write(
  `${execFileSync('tar', ['--zstd', '-tf', shared]).toString().split('\n').slice(0, 4).join('\n')}\n`,
);
const inStore = true;
if (copy.includes(fakeKey) || !inStore) process.exit(1);

step(
  'Restoring the redacted copy in place would replace the live key by a placeholder: the dry run says where',
);
nexo(['restore', '--agent', 'ana', '--from', shared, '--dry-run', ...roots]);
process.stdout.write('without --allow-redacted it is refused (exit 6), nothing changes:\n');
nexo(['restore', '--agent', 'ana', '--from', shared, ...roots], 6);

step('A damaged copy is refused (exit 2)');
execFileSync('sh', ['-c', `printf 'X' | dd of=${shared} bs=1 seek=200 conv=notrunc status=none`]);
nexo(['verify', shared], 2);

step('Sign and encrypt a bundle: keys, --sign, --encrypt; verify needs the identity and trusts the key');
process.stdout.write(
  '(a bundle store here: an encrypted repository is made with its recipients, docs/repository.md §7)\n',
);
nexo(['keygen', '--out', join(root, 'sign.key')]);
const recipient = /age1[0-9a-z]+/.exec(nexo(['keygen', '--age', '--out', join(root, 'age.txt')]))?.[0];
if (!recipient) throw new Error('keygen --age printed no recipient');
const bundleRoots = [
  '--state-root',
  join(root, 'bundle-state'),
  '--memdir-root',
  a.memdirRoot,
  '--sqlite-root',
  a.sqliteRoot,
];
const sealed = parseSnapshot(
  nexo(
    [
      'snapshot',
      '--agent',
      'ana',
      '--label',
      'signed-encrypted',
      '--sign',
      join(root, 'sign.key'),
      '--encrypt',
      recipient,
      ...bundleRoots,
    ],
    0,
    { NEXO_MEMORY_STORE_FORMAT: 'bundles' },
  ),
);
nexo(['verify', sealed.bundle_path], 3);
nexo([
  'verify',
  sealed.bundle_path,
  '--decrypt-identity',
  join(root, 'age.txt'),
  '--trust',
  join(root, 'sign.key.pub'),
]);
nexo(['keygen', '--out', join(root, 'other.key')]);
process.stdout.write('a key that did not sign it is not trusted (exit 2):\n');
nexo(
  [
    'verify',
    sealed.bundle_path,
    '--decrypt-identity',
    join(root, 'age.txt'),
    '--trust',
    join(root, 'other.key.pub'),
  ],
  2,
);

step('Summary');
process.stdout.write(
  `snapshots of ana: ${first.id} (demo-baseline), ${second.id} (after-change), in the repository:\n` +
    `the first stored ${kb(firstAdded)}, the second only ${kb(secondAdded)} (its new chunks);\n` +
    `both verified; the second captures the uncommitted edit and the new rows, the API key in one of\n` +
    `them included (a snapshot stays on the host and restores exactly); restore brought the baseline\n` +
    `back and undo returned to the changed state; the exported copy has the key replaced by a\n` +
    `placeholder, and restoring it in place needs --allow-redacted; a signed, encrypted snapshot\n` +
    `verified only with the identity, and only against the key that signed it.\n` +
    `Demo files are in ${root} (remove them when done).\n`,
);

if (process.argv.includes('--serve')) {
  step('Serve the web console on the demo store (Ctrl-C stops it)');
  if (!existsSync(join(repo, 'dist', 'console', 'index.html')))
    execFileSync(process.execPath, ['--import', 'tsx', join(repo, 'scripts', 'build-console.ts')], {
      stdio: 'inherit',
    });
  const token = randomBytes(16).toString('hex');
  const daemon = spawn(
    process.execPath,
    ['--import', 'tsx', cli, 'serve', '--listen', '127.0.0.1:0', ...roots],
    { env: { ...process.env, NEXO_MEMORY_TOKEN: token }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  daemon.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
    const m = /listening on (http:\/\/\S+)\n/.exec(out);
    if (m) {
      process.stdout.write(
        `console:  ${m[1]}/\ntoken:    ${token}   (paste it on the login page; it has write rights)\n` +
          `The request log follows; Ctrl-C stops the daemon.\n`,
      );
      out = '';
    }
  });
  process.on('SIGINT', () => daemon.kill('SIGTERM'));
  daemon.on('exit', (code) => process.exit(code ?? 0));
} else {
  process.stdout.write(
    "(`npm run demo -- --serve` runs the demo again and then serves the web console on that run's store)\n",
  );
}
