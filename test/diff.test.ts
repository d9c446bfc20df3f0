// Diff: real counts for commits, files, lines, rows (added / removed / changed by primary key) and
// state between two snapshots, a snapshot and live, and across format versions; detail with patches
// and summarised rows; the temporary directory always removed.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import Database from 'better-sqlite3';
import { git, gitEnv } from '../scripts/sample-agent.js';
import { walkMemdir } from '../src/capture/memdir.js';
import { createAgentToolServer } from '../src/mcp/server.js';
import { createApiServer } from '../src/server/http.js';
import { apiRoutes } from '../src/server/routes.js';
import { OperationTracker } from '../src/server/tracker.js';
import { bundleOf, manifestFor, writeBundleFile } from './helpers/bundles.js';
import { type Agent, runCli, sampleAgent, tempDir } from './helpers/env.js';

function agent(t: Parameters<typeof sampleAgent>[0]): Agent {
  return sampleAgent(t, 'ana', {
    files: 6,
    commits: 3,
    memories: 40,
    embeddings: 10,
    concepts: 5,
    compactions: 4,
  });
}

/** Known changes: 1 row added, 2 removed, 1 changed; a vector changed; 2 commits; files edited, added, removed. */
function change(a: Agent): void {
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)').run(
    1,
    'fact',
    'x'.repeat(500),
    1,
  );
  lt.prepare('DELETE FROM memories WHERE id IN (1, 2)').run();
  lt.prepare("UPDATE memories SET content = 'rewritten' WHERE id = 7").run();
  lt.close();
  const vec = new Database(join(a.sqliteDir, 'vector.sqlite'));
  vec
    .prepare('UPDATE embeddings SET vec = ? WHERE id = 3')
    .run(Buffer.from(new Float32Array([3, 4, 0, 0, 0, 0]).buffer));
  vec.close();
  const cmp = new Database(join(a.sqliteDir, 'compactions.sqlite'));
  cmp
    .prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)')
    .run('s-new', 2, 'summary');
  cmp.close();
  writeFileSync(
    join(a.memdir, 'MEMORY.md'),
    `${readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8')}- one more line\n- and another\n`,
  );
  execFileSync('git', ['commit', '-qam', 'memory: two lines'], { cwd: a.memdir, env: gitEnv });
  writeFileSync(join(a.memdir, 'added.md'), 'a\nb\nc\n');
  execFileSync('git', ['add', 'added.md'], { cwd: a.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'memory: added'], { cwd: a.memdir, env: gitEnv });
  rmSync(join(a.memdir, 'topics', 'places', 'topic-0002.md')); // uncommitted removal
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), JSON.stringify({ last_message_id: 77 }));
}

test('diff of two snapshots counts commits, files, lines, rows and state for real', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const removedLines =
    readFileSync(join(a.memdir, 'topics', 'places', 'topic-0002.md'), 'utf8').split('\n').length - 1;
  change(a);
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: s2.id.slice(0, 13) });
  assert.equal(d.a, s1.id);
  assert.equal(d.b, s2.id);
  assert.deepEqual(d.git_summary, {
    commits_between: 2,
    files_changed: 3,
    insertions: 2 + 3,
    deletions: removedLines,
    commits_reverse: 0,
    head_a: s1.git_oid,
    head_b: s2.git_oid,
  });
  assert.deepEqual(
    d.files.map((f) => [f.path, f.status, f.insertions, f.deletions]),
    [
      ['MEMORY.md', 'modified', 2, 0],
      ['added.md', 'added', 3, 0],
      ['topics/places/topic-0002.md', 'removed', 0, removedLines],
    ],
  );
  assert.deepEqual(d.sqlite_summary, {
    long_term_rows_added: 1,
    long_term_rows_removed: 2,
    vector_rows_added: 0,
    vector_rows_removed: 0,
    concepts_rows_added: 0,
    concepts_rows_removed: 0,
    compactions_added: 1,
  });
  const memories = d.databases.find((x) => x.db === 'long_term')!.tables.find((x) => x.table === 'memories')!;
  assert.deepEqual(
    [memories.added, memories.removed, memories.changed, memories.rows_a, memories.rows_b],
    [1, 2, 1, 40, 39],
  );
  assert.equal(d.databases.find((x) => x.db === 'vector')!.tables[0]!.changed, 1);
  // concepts is byte-identical in both bundles: written once, not compared row by row, still listed
  const concepts = d.databases.find((x) => x.db === 'concepts')!;
  assert.equal(concepts.presence, 'both');
  assert.ok(concepts.tables.length > 0);
  for (const t of concepts.tables) {
    assert.deepEqual([t.added, t.removed, t.changed], [0, 0, 0], t.table);
    assert.equal(t.rows_a, t.rows_b);
  }
  assert.ok(concepts.tables.some((t) => t.rows_a > 0));
  assert.deepEqual(d.state_summary, { extract_cursor_changed: true, last_dream_run_changed: false });
  assert.equal(d.files[0]!.patch, undefined, 'no patches without --detail');
  // the other way round
  const back = await a.snapshotter.diff({ agentId: 'ana', a: s2.id, b: s1.id });
  assert.equal(back.git_summary.commits_between, 0);
  assert.equal(back.git_summary.commits_reverse, 2);
  assert.equal(back.sqlite_summary.long_term_rows_added, 2);
  assert.equal(back.sqlite_summary.long_term_rows_removed, 1);
});

test('--detail: unified patches, sample rows with long text cut and vectors summarised, state values', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  change(a);
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: s2.id, detail: true });
  const memory = d.files.find((f) => f.path === 'MEMORY.md')!;
  assert.match(memory.patch!, /^diff --git a\/MEMORY\.md b\/MEMORY\.md/);
  assert.match(memory.patch!, /^\+- one more line$/m);
  assert.match(d.files.find((f) => f.path === 'added.md')!.patch!, /^\+\+\+ b\/added\.md$/m);
  const mem = d.databases.find((x) => x.db === 'long_term')!.tables[0]!.rows!;
  assert.equal(mem.added.length, 1);
  assert.match(String((mem.added[0] as Record<string, unknown>).content), /^x{120}… \(500 chars\)$/);
  assert.deepEqual(
    mem.removed.map((r) => (r as Record<string, unknown>).id),
    [1, 2],
  );
  assert.equal((mem.changed[0]!.after as Record<string, unknown>).content, 'rewritten');
  const vec = d.databases.find((x) => x.db === 'vector')!.tables[0]!.rows!;
  assert.equal((vec.changed[0]!.after as Record<string, unknown>).vec, '<float32[6] norm 5.0000>');
  assert.deepEqual(d.state!.extract_cursor.b, { last_message_id: 77 });
});

test("--detail: a table on one side only is sampled by its stored columns; a VIRTUAL generated column, the database writer's expression, is never computed (stop 62 review)", async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  // 100 KB a row here; 300 million characters a row ran the diff out of heap (the MCP server, the daemon)
  db.exec(
    "CREATE TABLE gen (id INTEGER PRIMARY KEY, name TEXT, g TEXT GENERATED ALWAYS AS (printf('%.*c', 100000, 'x')) VIRTUAL, " +
      's TEXT GENERATED ALWAYS AS (upper(name)) STORED)',
  );
  for (let i = 1; i <= 3; i++) db.prepare('INSERT INTO gen (id, name) VALUES (?, ?)').run(i, `n${i}`);
  db.close();
  for (const b of [(await a.snapshotter.snapshot({ agentId: 'ana' })).id, 'live']) {
    const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b, detail: true });
    const gen = d.databases.find((x) => x.db === 'long_term')!.tables.find((x) => x.table === 'gen')!;
    assert.equal(gen.added, 3, b);

    assert.deepEqual(gen.rows!.added[0], { id: 1, name: 'n1', s: 'N1' }, b);
  }
});

test('diff against live, after a schema change, with the temporary directory always removed', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const db = new Database(join(a.sqliteDir, 'concepts.sqlite'));
  db.exec(
    'CREATE TABLE links (a INTEGER, b INTEGER, PRIMARY KEY (a, b)); INSERT INTO links VALUES (1, 2), (2, 3)',
  );
  db.close();
  writeFileSync(join(a.memdir, 'live-only.md'), 'x\n');
  const tmp = mkdtempSync(join(tempDir(t), 'tmp-'));
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live' });
    assert.equal(d.b, 'live');
    const concepts = d.databases.find((x) => x.db === 'concepts')!;
    assert.deepEqual(concepts.schema_changes, [{ type: 'table', name: 'links', change: 'added' }]);
    assert.equal(concepts.tables.find((x) => x.table === 'links')!.added, 2);
    assert.equal(d.sqlite_summary.concepts_rows_added, 2);
    assert.deepEqual(
      d.files.map((f) => [f.path, f.status]),
      [['live-only.md', 'added']],
    );
    await assert.rejects(
      a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: '0190c3a2-ffff-7000-8000-000000000000' }),
      { code: 'NOT_FOUND' },
    );
    // live against live of an agent that is not here is unknown, not an empty diff
    await assert.rejects(a.snapshotter.diff({ agentId: 'nobody', a: 'live', b: 'live' }), {
      code: 'UNKNOWN_AGENT',
    });
    assert.equal((await a.snapshotter.diff({ agentId: 'ana', a: 'live', b: 'live' })).files.length, 0);
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  // tsx's own compile cache (`tsx-<uid>`, written by worker threads started from source) is not ours.
  assert.deepEqual(
    readdirSync(tmp).filter((n) => !n.startsWith('tsx-')),
    [],
    'nothing left in the temporary directory',
  );
});

test('virtual tables are schema, not rows: diff and a restore dry run count the tables SQLite stores and run no module (FTS5, one this SQLite lacks)', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.exec('CREATE VIRTUAL TABLE notes_fts USING fts5(body)');
  db.prepare('INSERT INTO notes_fts (body) VALUES (?)').run('the whale');
  db.unsafeMode(true);
  db.exec('PRAGMA writable_schema = ON');
  db.prepare("INSERT INTO sqlite_schema VALUES ('table', 'vecs', 'vecs', 0, ?)").run(
    'CREATE VIRTUAL TABLE vecs USING vec0(embedding float[4])',
  );
  db.close();
  const memories = () => {
    const d = new Database(join(a.sqliteDir, 'long_term.sqlite'), { readonly: true });
    try {
      return (d.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n;
    } finally {
      d.close();
    }
  };
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  for (const b of [s2.id, 'live']) {
    const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b });
    const lt = d.databases.find((x) => x.db === 'long_term')!;
    const tables = lt.tables.map((x) => x.table);
    assert.ok(!tables.includes('notes_fts') && !tables.includes('vecs'), `${b}: ${tables.join(', ')}`);
    assert.equal(lt.tables.find((x) => x.table === 'notes_fts_content')!.added, 1, b);
    assert.deepEqual(
      lt.schema_changes
        .filter((c) => c.name === 'notes_fts' || c.name === 'vecs')
        .map((c) => c.name)
        .sort(),
      ['notes_fts', 'vecs'],
    );
    assert.equal(
      d.sqlite_summary.long_term_rows_added,
      lt.tables.reduce((n, x) => n + x.added, 0),
      `${b}: the shadow tables' rows, not the virtual table's again`,
    );
  }
  // the live database's rows are counted, not lost to the module it lacks
  const plan = await a.snapshotter.restore({ agentId: 'ana', snapshot: s1.id, dryRun: true });
  const rows = plan.components.find((c) => c.component === 'sqlite:long_term')!.rows!;
  assert.equal(rows.memories!.old, memories());
  assert.ok(!('vecs' in rows) && !('notes_fts' in rows), JSON.stringify(rows));
});

test('diff works across format versions (a v1 bundle of the original against a v2 snapshot)', async (t) => {
  const a = agent(t);
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const head = git(a.memdir, ['rev-parse', 'HEAD~1']).trim();
  const arts: Array<{ path: string; kind: string; data: Buffer }> = [];
  for (const rel of (await walkMemdir(a.memdir)).files) {
    if (rel !== 'MEMORY.md')
      arts.push({
        path: `memory_files/${rel}`,
        kind: 'memory_file',
        data: readFileSync(join(a.memdir, rel)),
      });
  }
  const v1id = '0190c3a2-0000-7000-8000-0000000000aa';
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  writeBundleFile(
    join(dir, `${v1id}.tar.zst`),
    bundleOf(
      manifestFor(
        arts,
        { snapshot_id: v1id, git: { head_oid: head, head_subject: '', head_author: '', head_ts_ms: 0 } },
        1,
      ),
      arts,
      [],
      { v1: true },
    ),
  );
  const d = await a.snapshotter.diff({ agentId: 'ana', a: v1id, b: s2.id });
  assert.deepEqual(
    d.files.map((f) => [f.path, f.status]),
    [['MEMORY.md', 'added']],
  );
  assert.equal(d.databases.find((x) => x.db === 'long_term')!.presence, 'only_b');
  assert.equal(d.sqlite_summary.long_term_rows_added, 40);
});

test('CLI diff: a git diff --stat plus a table per database; JSON keeps the original fields', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  change(a);
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  let r = await runCli(['diff', s1.id, s2.id, '--agent', 'ana', '--state-root', a.stateRoot]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ MEMORY\.md +\| +2 \+\+$/m);
  assert.match(r.stdout, /3 file\(s\) changed, 5 insertion\(s\)\(\+\)/);
  assert.match(r.stdout, /long_term\s+memories\s+1\s+2\s+1\s+40 → 39/);
  assert.match(r.stdout, /history: 2 commit\(s\)/);
  r = await runCli(['diff', '--agent', 'ana', s1.id, s2.id, '--json', '--state-root', a.stateRoot]);
  const d = JSON.parse(r.stdout);
  assert.equal(d.git_summary.commits_between, 2);
  for (const k of ['a', 'b', 'git_summary', 'sqlite_summary', 'state_summary']) assert.ok(k in d, k);
});

test('diff … live --detail prints no live secret unless asked; a placeholder against its secret is a redaction, not a change', async (t) => {
  const a = agent(t);
  // secrets assembled at run time: this file holds no secret-shaped literal
  const token = `${'gh'}p_${'Z9'.repeat(18)}`;
  const other = `${'gh'}p_${'Q7'.repeat(18)}`;
  const needles = [token.slice(4), other.slice(4)];
  writeFileSync(join(a.memdir, 'keys.md'), `# Keys\nThe deploy token is ${token}.\n`);
  git(a.memdir, ['add', 'keys.md']);
  git(a.memdir, ['commit', '-qm', 'keys']);
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.prepare('UPDATE memories SET content = ? WHERE id = 3').run(`The user pasted ${token} into the chat.`);
  lt.close();
  writeFileSync(
    join(a.sqliteDir, 'extract_cursor.json'),
    JSON.stringify({ last_message_id: 5, note: token }),
  );
  // the redacted snapshot holds placeholders where the live agent holds the secrets
  const red = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  // and one real change that also brings a new secret
  const lt2 = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt2.prepare('UPDATE memories SET content = ? WHERE id = 4').run(`Rotated: now ${other}.`);
  lt2.close();

  const d = await a.snapshotter.diff({ agentId: 'ana', a: red.id, b: 'live', detail: true });
  const json = JSON.stringify(d);
  for (const n of needles) assert.ok(!json.includes(n), 'no secret in the library result');
  const keys = d.files.find((f) => f.path === 'keys.md')!;
  assert.equal(keys.status, 'redacted');
  assert.equal(d.git_summary.files_changed, d.files.filter((f) => f.status !== 'redacted').length);
  const memories = d.databases.find((x) => x.db === 'long_term')!.tables.find((x) => x.table === 'memories')!;
  assert.deepEqual([memories.changed, memories.redacted], [1, 1], 'row 4 changed, row 3 only redacted');
  assert.equal(
    (memories.rows!.changed[0]!.after as Record<string, unknown>).content,
    'Rotated: now [REDACTED:github-token].',
  );
  assert.deepEqual(memories.rows!.redacted[0], {
    key: { id: 3 },
    columns: ['content'],
    placeholders_in: red.id,
  });
  assert.equal(d.state_summary.extract_cursor_changed, false, 'only redacted');
  assert.deepEqual(d.redactions, { output: 'redacted', files: 1, rows: 1, state: ['extract_cursor'] });

  // the CLI prints the same, placeholders shown as such; --show-secrets prints the values as stored
  let r = await runCli(['diff', red.id, 'live', '--detail', '--agent', 'ana', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  for (const n of needles) assert.ok(!r.stdout.includes(n), `stdout holds ${n.slice(0, 6)}…`);
  assert.match(r.stdout, /^ keys\.md +\| +redacted$/m);
  assert.match(r.stdout, /long_term\s+memories\s+0\s+0\s+1\s+1\s+40 → 40/);
  assert.match(r.stdout, /^r long_term\.memories \{"id":3\} content: placeholder in /m);
  assert.match(r.stdout, /secrets in values are shown redacted \(--show-secrets shows them\)/);
  r = await runCli(['diff', red.id, 'live', '--detail', '--json', '--agent', 'ana', ...a.flags]);
  for (const n of needles) assert.ok(!r.stdout.includes(n));
  r = await runCli(['diff', red.id, 'live', '--detail', '--show-secrets', '--agent', 'ana', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes(other.slice(4)), 'shown when asked');
  assert.ok(r.stdout.includes(token.slice(4)), 'shown when asked');
});

test('diff --detail: a state value next to its key (`"password": …`) and a secret used as a key are shown redacted', async (t) => {
  const a = agent(t);
  // secrets assembled at run time: this file holds no secret-shaped literal
  const password = `Hunter${'2'}Secret99`;
  const keyToken = `${'gh'}p_${'K3'.repeat(18)}`;
  writeFileSync(join(a.sqliteDir, 'dream_run.json'), JSON.stringify({ last: 1, password }));
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), JSON.stringify({ [keyToken]: 1 }));
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.sqliteDir, 'dream_run.json'), JSON.stringify({ last: 2, password }));
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true });
  const json = JSON.stringify(d);
  assert.ok(!json.includes(password), 'the password is not in the result');
  assert.ok(!json.includes(keyToken.slice(4)), 'the token used as a key is not in the result');
  assert.deepEqual(d.state!.dream_run.b, { last: 2, password: '[REDACTED:generic-secret]' });
  assert.equal(d.state_summary.last_dream_run_changed, true);
  const r = await runCli(['diff', s1.id, 'live', '--detail', '--json', '--agent', 'ana', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes(password) && !r.stdout.includes(keyToken.slice(4)), 'nor in the CLI output');
  const shown = await a.snapshotter.diff({
    agentId: 'ana',
    a: s1.id,
    b: 'live',
    detail: true,
    showSecrets: true,
  });
  assert.deepEqual(shown.state!.dream_run.b, { last: 2, password }, 'shown as stored when asked');
});

test('diff --detail: a patch is computed from the redacted texts: no line of a key block a hunk cuts, nor its END line or a hunk header, on any surface (library, CLI, HTTP, MCP)', async (t) => {
  const a = agent(t);
  // a key block assembled at run time (this file holds no secret-shaped literal): 25 body lines
  const kind = `RSA ${'PRIVATE'} KEY`;
  const body = Array.from({ length: 25 }, (_, i) =>
    createHash('sha512').update(`line ${i}`).digest('base64').slice(0, 64),
  );
  const pem = `-----BEGIN ${kind}-----\n${body.join('\n')}\n-----END ${kind}-----\n`;
  const other = `-----BEGIN ${kind}-----\n${body.map((l) => l.split('').reverse().join('')).join('\n')}\n-----END ${kind}-----\n`;
  writeFileSync(join(a.memdir, 'key.md'), `${pem}status: old\n`);
  writeFileSync(join(a.memdir, 'rotated.md'), `note\n${pem}`);
  git(a.memdir, ['add', 'key.md', 'rotated.md']);
  git(a.memdir, ['commit', '-qm', 'keys']);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'key.md'), `${pem}status: new\n`);
  // a change within the secret only: the shown texts are the same, so no patch
  writeFileSync(join(a.memdir, 'rotated.md'), `note\n${other}`);
  const secretParts = [...body, ...body.map((l) => l.split('').reverse().join('')), `END ${kind}`];
  const leaks = (out: string) => secretParts.filter((p) => out.includes(p)).map((p) => p.slice(0, 12));

  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true });
  assert.deepEqual(leaks(JSON.stringify(d)), [], 'no byte of the key in the library result');
  const key = d.files.find((f) => f.path === 'key.md')!;
  assert.equal(key.status, 'modified');
  assert.deepEqual([key.insertions, key.deletions], [1, 1], 'counted on the files as stored');
  assert.match(key.patch!, /^diff --git a\/key\.md b\/key\.md\n/);
  assert.match(key.patch!, /^@@ -1,2 \+1,2 @@\n \[REDACTED:private-key\]\n-status: old\n\+status: new\n$/m);
  const rotated = d.files.find((f) => f.path === 'rotated.md')!;
  assert.deepEqual([rotated.status, rotated.patch], ['modified', undefined]);
  // as stored when asked: the key's lines are there
  const shown = await a.snapshotter.diff({
    agentId: 'ana',
    a: s1.id,
    b: 'live',
    detail: true,
    showSecrets: true,
  });
  assert.ok(shown.files.find((f) => f.path === 'key.md')!.patch!.includes(`-----END ${kind}-----`));

  for (const args of [[], ['--json']]) {
    const r = await runCli(['diff', s1.id, 'live', '--detail', ...args, '--agent', 'ana', ...a.flags]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(leaks(r.stdout), [], `CLI ${args.join(' ')}`);
    assert.match(r.stdout, /\+status: new/);
  }

  const tracker = new OperationTracker();
  const server = createApiServer({
    routes: apiRoutes({ snapshotter: a.snapshotter, tracker, allowRestore: false, startedAt: Date.now() }),
    tracker,
    token: 'diff-test-token-0123456789',
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const res = await fetch(
    `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/agents/ana/diff?a=${s1.id}&b=live&detail=true`,
    { headers: { authorization: 'Bearer diff-test-token-0123456789' } },
  );
  const http = await res.text();
  assert.equal(res.status, 200, http);
  assert.deepEqual(leaks(http), [], 'HTTP');
  assert.equal(
    (JSON.parse(http) as { files: { path: string; patch?: string }[] }).files.find(
      (f) => f.path === 'key.md',
    )!.patch,
    key.patch,
  );

  const tool = createAgentToolServer({
    snapshotter: a.snapshotter,
    agentId: 'ana',
    tenant: 'default',
    redactDefault: false,
    tracker: new OperationTracker(),
  });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await tool.connect(st);
  const client = new Client({ name: 'diff-test', version: '1.0.0' });
  await client.connect(ct);
  t.after(() => client.close());
  const mcp = JSON.stringify(
    await client.callTool({ name: 'memory_diff', arguments: { a: s1.id, b: 'live', detail: true } }),
  );
  assert.ok(mcp.includes('+status: new'), mcp.slice(0, 300));
  assert.deepEqual(leaks(mcp), [], 'MCP');
});

/** Two snapshots of the sample agent with `before` run on long_term.sqlite first, `after` between them. */
async function rowDiff(t: Parameters<typeof sampleAgent>[0], before: string, after: string) {
  const a = agent(t);
  const path = join(a.sqliteDir, 'long_term.sqlite');
  let db = new Database(path);
  db.exec(before);
  db.close();
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  db = new Database(path);
  db.exec(after);
  db.close();
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: s2.id, detail: true });
  const lt = d.databases.find((x) => x.db === 'long_term')!;
  const table = (name: string) => lt.tables.find((y) => y.table === name)!;
  const counts = (name: string) => [table(name).added, table(name).removed, table(name).changed];
  const cli = () => runCli(['diff', s1.id, s2.id, '--detail', '--agent', 'ana', ...a.flags]);
  return { lt, table, counts, cli };
}

test('diff --detail of a file that is not UTF-8: only its changed line, its secret redacted (stop 52)', async (t) => {
  const a = agent(t);
  const token = `${'gh'}p_${'A1b2C3d4E5'.repeat(3)}abcdef`;
  const before = Buffer.from('caf\xe9 one\ncaf\xe9 two\nline three\n', 'latin1');
  writeFileSync(join(a.memdir, 'latin.txt'), before);
  git(a.memdir, ['add', 'latin.txt']);
  git(a.memdir, ['commit', '-qm', 'latin']);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'latin.txt'), Buffer.concat([before, Buffer.from(`key ${token}\n`)]));
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true });
  assert.ok(!JSON.stringify(d).includes(token.slice(4)), 'the token is not shown');
  const f = d.files.find((x) => x.path === 'latin.txt')!;
  assert.deepEqual([f.insertions, f.deletions], [1, 0]);
  const changedLines = f.patch!.split('\n').filter((l) => /^[-+](?![-+]{2} )/.test(l));
  assert.deepEqual(changedLines, ['+key [REDACTED:github-token]'], f.patch);
});

test('diff rows are compared exactly: a collation (NOCASE, RTRIM) or an affinity hides no change', async (t) => {
  const { counts } = await rowDiff(
    t,
    `CREATE TABLE cl (id INTEGER PRIMARY KEY, a TEXT COLLATE NOCASE, b TEXT COLLATE RTRIM, n);
     INSERT INTO cl VALUES (1, 'alpha', 'y', 1), (2, 'same', 'y', 1), (3, 'x', 'x', 1), (4, 'x', 'x', 1),
       (5, 'x', 'x', 1), (6, 'x', 'x', 1);
     CREATE TABLE ty (id INTEGER PRIMARY KEY, n INTEGER);
     INSERT INTO ty VALUES (1, 1), (2, 2);`,
    `UPDATE cl SET a = 'ALPHA' WHERE id = 1;
     UPDATE cl SET b = 'y   ' WHERE id = 2;
     UPDATE cl SET n = '1' WHERE id = 3;
     UPDATE cl SET n = 1.0 WHERE id = 4;
     UPDATE cl SET n = x'01' WHERE id = 5;
     DROP TABLE ty;
     CREATE TABLE ty (id INTEGER PRIMARY KEY, n);
     INSERT INTO ty VALUES (1, '1'), (2, 2);`,
  );
  // 'alpha'/'ALPHA', 'y'/'y   ', and 1 against '1', 1.0 and x'01' are different values; row 6 is unchanged
  assert.deepEqual(counts('cl'), [0, 0, 5]);
  // the column lost its INTEGER affinity: 2 is still 2, but '1' is not 1 (the affinity would make it 1)
  assert.deepEqual(counts('ty'), [0, 0, 1]);
});

test('diff rows: a value in a column on one side only (renamed, added, dropped) is a change, a NULL there is not', async (t) => {
  const { counts } = await rowDiff(
    t,
    `CREATE TABLE rn (id INTEGER PRIMARY KEY, t TEXT);
     INSERT INTO rn VALUES (1, 'a'), (2, 'b'), (3, NULL);
     CREATE TABLE nc (id INTEGER PRIMARY KEY, v TEXT);
     INSERT INTO nc VALUES (1, 'a'), (2, 'b');
     CREATE TABLE nn (id INTEGER PRIMARY KEY, v TEXT);
     INSERT INTO nn VALUES (1, 'a'), (2, 'b');`,
    `ALTER TABLE rn RENAME COLUMN t TO body;
     UPDATE rn SET body = 'changed' WHERE id = 1;
     ALTER TABLE nc ADD COLUMN z TEXT DEFAULT 'new fact';
     ALTER TABLE nn ADD COLUMN z TEXT;`,
  );
  // rows 1 and 2 hold a value in t (A only) and body (B only); row 3 holds NULL in both
  assert.deepEqual(counts('rn'), [0, 0, 2]);
  assert.deepEqual(counts('nc'), [0, 0, 2], 'an added column with a value in every row');
  assert.deepEqual(counts('nn'), [0, 0, 0], 'an added column that is NULL everywhere');
});

test('diff rows: keys holding NULL are paired by rowid, never cross-joined', async (t) => {
  const { counts } = await rowDiff(
    t,
    `CREATE TABLE nk (k TEXT PRIMARY KEY, v TEXT);
     INSERT INTO nk VALUES (NULL, 'a'), (NULL, 'b'), (NULL, 'c'), ('k', 'd');
     CREATE TABLE nk2 (k TEXT, j INTEGER, v TEXT, PRIMARY KEY (k, j));
     INSERT INTO nk2 VALUES (NULL, 1, 'a'), (NULL, 1, 'b'), ('k', NULL, 'c'), ('k', NULL, 'd');`,
    `INSERT INTO nk VALUES (NULL, 'e');
     UPDATE nk SET v = 'B' WHERE v = 'b';`,
  );
  assert.deepEqual(counts('nk'), [1, 0, 1]);
  assert.deepEqual(counts('nk2'), [0, 0, 0], 'an unchanged table');
});

test('diff rows: a WITHOUT ROWID table whose key changed counts its rows removed and added, no error', async (t) => {
  const { counts, lt, cli } = await rowDiff(
    t,
    `CREATE TABLE wr (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
     INSERT INTO wr VALUES ('a', '1'), ('b', '2');
     CREATE TABLE rk (k TEXT PRIMARY KEY, v TEXT);
     INSERT INTO rk VALUES ('a', '1'), ('b', '2');`,
    `DROP TABLE wr;
     CREATE TABLE wr (k TEXT, v TEXT, PRIMARY KEY (k, v)) WITHOUT ROWID;
     INSERT INTO wr VALUES ('a', '1'), ('c', '3');
     CREATE TABLE rk2 (k TEXT, v TEXT, PRIMARY KEY (k, v));
     INSERT INTO rk2 SELECT * FROM rk;
     DROP TABLE rk;
     ALTER TABLE rk2 RENAME TO rk;
     UPDATE rk SET v = 'two' WHERE k = 'b';`,
  );
  assert.deepEqual(counts('wr'), [2, 2, 0]);
  assert.ok(lt.schema_changes.some((c) => c.name === 'wr' && c.change === 'changed'));
  // rowid tables on both sides whose key changed are still paired by rowid
  assert.deepEqual(counts('rk'), [0, 0, 1]);
  const r = await cli();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /long_term\s+wr\s+2\s+2\s+0\s/);
});

test('diff --detail shows integers beyond 2^53 exactly', async (t) => {
  const { table, cli } = await rowDiff(
    t,
    `CREATE TABLE big (id INTEGER PRIMARY KEY, n INTEGER);
     INSERT INTO big VALUES (1, 9007199254740993);`,
    'UPDATE big SET n = 9007199254740992;',
  );
  const big = table('big').rows!.changed[0]!;
  const before = big.before as Record<string, unknown>;
  assert.deepEqual(
    [before.n, (big.after as Record<string, unknown>).n],
    ['9007199254740993', '9007199254740992'],
  );
  assert.equal(before.id, 1, 'small integers stay numbers');
  const r = await cli();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /9007199254740993/);
});

test('diff --detail: each file gets the patch its own header names; content with \\r and header-like lines cannot move or hide patches', async (t) => {
  const a = agent(t);
  for (const f of ['a', 'b', 'c']) writeFileSync(join(a.memdir, 'topics', `${f}.md`), `${f} one\n`);
  git(a.memdir, ['add', 'topics']);
  git(a.memdir, ['commit', '-qm', 'three topics']);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  // the hunter's repro: a line of a.md holding a carriage return and then a patch's header for c.md
  writeFileSync(join(a.memdir, 'topics', 'a.md'), 'hello\nnote\rdiff --git a/topics/c.md b/topics/c.md\n');
  writeFileSync(join(a.memdir, 'topics', 'b.md'), 'b one\nb two\n');
  writeFileSync(join(a.memdir, 'topics', 'c.md'), 'c changed\n');
  // and a name git quotes in its headers, and content that repeats a header line on a line of its own
  writeFileSync(
    join(a.memdir, 'topics', 'q "x"\t.md'),
    'diff --git a/topics/b.md b/topics/b.md\n@@ -1 +1 @@\n',
  );
  git(a.memdir, ['add', 'topics']);
  git(a.memdir, ['commit', '-qm', 'change them']);
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: s2.id, detail: true });
  const patch = (p: string) => d.files.find((f) => f.path === p)!.patch!;
  assert.match(patch('topics/a.md'), /^diff --git a\/topics\/a\.md b\/topics\/a\.md\n/);
  assert.ok(patch('topics/a.md').includes('+note\rdiff --git a/topics/c.md b/topics/c.md\n'));
  assert.match(patch('topics/b.md'), /^diff --git a\/topics\/b\.md b\/topics\/b\.md\n/);
  assert.match(patch('topics/b.md'), /^\+b two$/m);
  assert.match(patch('topics/c.md'), /^diff --git a\/topics\/c\.md b\/topics\/c\.md\n/);
  assert.match(patch('topics/c.md'), /^-c one\n\+c changed\n$/m);
  const q = patch('topics/q "x"\t.md');
  assert.match(q, /^diff --git "a\/topics\/q \\"x\\"\\t\.md" "b\/topics\/q \\"x\\"\\t\.md"\n/);
  assert.match(q, /^\+diff --git a\/topics\/b\.md b\/topics\/b\.md\n\+@@ -1 \+1 @@\n$/m);
  // the CLI prints the same patches, c.md's change among them
  const r = await runCli(['diff', s1.id, s2.id, '--detail', '--agent', 'ana', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^diff --git a\/topics\/c\.md b\/topics\/c\.md\n(?:.*\n)*?-c one\n\+c changed$/m);
  assert.match(r.stdout, /^diff --git a\/topics\/b\.md b\/topics\/b\.md\n(?:.*\n)*?\+b two$/m);
  const j = await runCli(['diff', s1.id, s2.id, '--detail', '--json', '--agent', 'ana', ...a.flags]);
  const files = JSON.parse(j.stdout).files as { path: string; patch: string }[];
  assert.equal(files.find((f) => f.path === 'topics/c.md')!.patch, patch('topics/c.md'));
});

test('diff --detail with maxPatchBytes: a patch over the bound is cut at a line end, the cut and the whole size said; without it, whole', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  // 40,000 added lines of 30 bytes (é: two bytes) — 1.2 MB of patch
  const line = (i: number) => `line ${String(i).padStart(6, '0')} é ${'x'.repeat(14)}\n`;
  writeFileSync(join(a.memdir, 'big.md'), Array.from({ length: 40_000 }, (_, i) => line(i)).join(''));
  writeFileSync(join(a.memdir, 'small.md'), 'small\n');
  const max = 1024 * 1024;
  const d = await a.snapshotter.diff({
    agentId: 'ana',
    a: s1.id,
    b: 'live',
    detail: true,
    maxPatchBytes: max,
  });
  const big = d.files.find((f) => f.path === 'big.md')!;
  const whole = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true });
  const full = whole.files.find((f) => f.path === 'big.md')!;
  assert.equal(full.patch_truncated, undefined);
  assert.equal(big.patch_truncated, true);
  assert.equal(big.patch_bytes, Buffer.byteLength(full.patch!));
  assert.ok(Buffer.byteLength(big.patch!) <= max);
  assert.ok(Buffer.byteLength(big.patch!) > max - 40, 'cut at the last line end within the bound');
  assert.ok(full.patch!.startsWith(big.patch!));
  assert.ok(big.patch!.endsWith('x\n'), 'whole lines');
  assert.equal(big.insertions, 40_000, 'the counts are the whole file');
  const small = d.files.find((f) => f.path === 'small.md')!;
  assert.deepEqual([small.patch_truncated, small.patch_bytes], [undefined, undefined]);
  assert.match(small.patch!, /^\+small$/m);
  await assert.rejects(
    a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true, maxPatchBytes: 0 }),
    {
      code: 'INVALID_INPUT',
    },
  );
});

test('diff pairs an exact rename (git mv: same content) as one renamed file, {old => new} as git diff --stat shows it; an edited move stays gone and new (stop 46)', async (t) => {
  const a = agent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const tracked = execFileSync('git', ['ls-files', 'topics'], { cwd: a.memdir, encoding: 'utf8' })
    .split('\n')
    .filter((p) => p.endsWith('.md'))
    .sort();
  const [first, second] = tracked as [string, string];
  const dirOf = first.slice(0, first.lastIndexOf('/'));
  execFileSync('git', ['mv', first, `${dirOf}/moved.md`], { cwd: a.memdir, env: gitEnv });
  execFileSync('git', ['mv', second, 'elsewhere.md'], { cwd: a.memdir, env: gitEnv });
  writeFileSync(join(a.memdir, 'elsewhere.md'), `${readFileSync(join(a.memdir, 'elsewhere.md'), 'utf8')}+\n`);
  const d = await a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live', detail: true });
  const moved = d.files.find((f) => f.path === `${dirOf}/moved.md`);
  assert.deepEqual(
    moved && { status: moved.status, old_path: moved.old_path, ins: moved.insertions, del: moved.deletions },
    { status: 'renamed', old_path: first, ins: 0, del: 0 },
    JSON.stringify(d.files.map((f) => [f.path, f.status])),
  );
  assert.equal(
    moved!.patch,
    `diff --git a/${first} b/${dirOf}/moved.md\nsimilarity index 100%\nrename from ${first}\nrename to ${dirOf}/moved.md\n`,
  );
  assert.ok(!d.files.some((f) => f.path === first), 'the old path is not also gone');
  // edited on the way: git's exact detection does not pair it either
  assert.deepEqual(
    d.files.filter((f) => f.path === 'elsewhere.md' || f.path === second).map((f) => f.status),
    ['added', 'removed'],
  );
  assert.equal(d.git_summary.files_changed, d.files.length);
  const r = await runCli(['diff', '--agent', 'ana', s1.id, 'live', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  const base = first.slice(dirOf.length + 1);
  assert.ok(r.stdout.includes(` ${dirOf}/{${base} => moved.md} `), r.stdout);
  assert.match(r.stdout, /=> moved\.md\} +\| +0\n/);
});
