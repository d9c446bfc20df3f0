// Unusual but honest databases (stop 63, a review): a table with a column named `rowid` (SQLite allows
// it; the name then reads the column, not the rowid): redaction updates each row by its real rowid,
// under a name no column takes, so a secret's placeholder never lands in other rows that share the
// column's value (it rewrote them); a table where no name of its rowid is left and that has no primary
// key is refused rather than guessed at; a diff pairs such a table's rows by their real rowid. A UTF-16
// database diffed against a side without it (an empty in-memory database, UTF-8, could not attach it),
// and two sides of different encodings refused with a message that says so.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { compilePolicy } from '../src/policy/redaction/scan.js';
import { redactDatabase } from '../src/policy/redaction/sqlite.js';
import { copyError } from '../src/sqlite/worker.js';
import { sampleAgent, tempDir } from './helpers/env.js';

const TOKEN = `ghp_${'abcdefghijklmnopqrstuvwxyz0123456789'}`;

test('redaction of a table with a column named rowid changes only the row that holds the secret', (t) => {
  const path = join(tempDir(t), 'concepts.sqlite');
  const db = new Database(path);
  db.exec('CREATE TABLE concepts (id INTEGER PRIMARY KEY, rowid INTEGER, name TEXT)');
  db.exec('CREATE TABLE notes (rowid TEXT, name TEXT)');
  const put = db.prepare('INSERT INTO concepts VALUES (?, ?, ?)');
  put.run(1, 7, `token ${TOKEN} here`);
  put.run(2, 7, 'innocent note about berlin');
  put.run(3, null, 'another innocent note');
  const note = db.prepare('INSERT INTO notes VALUES (?, ?)');
  note.run(null, `key ${TOKEN}`);
  note.run(null, 'plain');
  db.close();
  const r = redactDatabase(compilePolicy(), path, 'sqlite/concepts.sqlite');
  assert.ok(r.values_redacted >= 2, JSON.stringify(r));
  const after = new Database(path, { readonly: true });
  t.after(() => after.close());
  const names = after.prepare('SELECT name FROM concepts ORDER BY id').pluck().all() as string[];
  assert.match(names[0]!, /^token \[REDACTED:github-token\] here$/);
  assert.deepEqual(names.slice(1), ['innocent note about berlin', 'another innocent note']);
  assert.deepEqual(after.prepare('SELECT name FROM notes ORDER BY _rowid_').pluck().all(), [
    'key [REDACTED:github-token]',
    'plain',
  ]);
});

test('redaction refuses a table that has columns rowid, _rowid_ and oid and no primary key (REDACTION)', (t) => {
  const path = join(tempDir(t), 'concepts.sqlite');
  const db = new Database(path);
  db.exec('CREATE TABLE concepts (rowid TEXT, _rowid_ TEXT, oid TEXT, name TEXT)');
  db.prepare('INSERT INTO concepts VALUES (?, ?, ?, ?)').run('a', 'b', 'c', `token ${TOKEN}`);
  db.close();
  assert.throws(() => redactDatabase(compilePolicy(), path, 'sqlite/concepts.sqlite'), {
    code: 'REDACTION',
    message: /"concepts" has no name left for its rowid .* and no primary key/,
  });
});

test('diff pairs the rows of a table with a column named rowid by their real rowid: one update is one change', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 3 }, { store: 'bundles' });
  const path = join(a.sqliteDir, 'concepts.sqlite');
  const db = new Database(path);
  db.exec('CREATE TABLE notes (rowid TEXT, name TEXT)');
  const put = db.prepare('INSERT INTO notes VALUES (?, ?)');
  for (const [rowid, name] of [
    ['same', 'a'],
    ['same', 'b'],
    [null, 'c'],
    ['x', 'd'],
  ])
    put.run(rowid, name);
  db.close();
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const live = new Database(path);
  live.prepare("UPDATE notes SET name = 'B' WHERE name = 'b'").run();
  live.close();
  const d = await a.snapshotter.diff({ agentId: 'ana', a: snap.id, b: 'live', detail: true });
  const notes = d.databases.find((x) => x.db === 'concepts')!.tables.find((x) => x.table === 'notes')!;
  assert.deepEqual(
    { added: notes.added, removed: notes.removed, changed: notes.changed },
    { added: 0, removed: 0, changed: 1 },
  );
  const change = notes.rows!.changed[0]! as {
    before: Record<string, unknown>;
    after: Record<string, unknown>;
  };
  assert.deepEqual([change.before.name, change.after.name], ['b', 'B']);
});

test('diff of a UTF-16 database against a side that has none: its rows added; two encodings: SQLITE, saying so', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 3 }, { store: 'bundles' });
  const path = join(a.sqliteDir, 'concepts.sqlite');
  rmSync(path, { force: true });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const db = new Database(path);
  db.pragma("encoding = 'UTF-16le'");
  db.exec(
    "CREATE TABLE concepts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO concepts (name) VALUES ('é'), ('ü')",
  );
  db.close();
  const d = await a.snapshotter.diff({ agentId: 'ana', a: snap.id, b: 'live' });
  const concepts = d.databases.find((x) => x.db === 'concepts')!;
  assert.equal(concepts.tables.find((x) => x.table === 'concepts')!.added, 2);
  // the other way: a UTF-8 database in a snapshot, a UTF-16 one live
  const utf16 = await a.snapshotter.snapshot({ agentId: 'ana' });
  rmSync(path);
  const utf8 = new Database(path);
  utf8.exec(
    "CREATE TABLE concepts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO concepts (name) VALUES ('é')",
  );
  utf8.close();
  await assert.rejects(a.snapshotter.diff({ agentId: 'ana', a: utf16.id, b: 'live' }), {
    code: 'SQLITE',
    message: /concepts: the two sides' databases use different text encodings \(UTF-16le and UTF-8\)/,
  });
});

test("a copy SQLite refuses as read-only or locked says what that code means here, not only SQLite's words", () => {
  const readOnly = copyError(
    '/a/concepts.sqlite',
    '/s/concepts.sqlite',
    Object.assign(new Error('attempt to write a readonly database'), { code: 'SQLITE_READONLY_DIRECTORY' }),
  );
  assert.equal((readOnly as Error & { code?: string }).code, 'SQLITE');
  assert.match(
    readOnly.message,
    /SQLITE_READONLY_DIRECTORY: a database in WAL mode is read through its -shm and -wal files/,
  );
  const locked = copyError(
    '/a/concepts.sqlite',
    '/s/concepts.sqlite',
    Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' }),
  );
  assert.match(locked.message, /locking_mode=EXCLUSIVE holds it until it closes/);
});
