// A snapshot's database can carry expressions SQLite's `PRAGMA integrity_check` evaluates for every row,
// which a few KB of database can make cost hours or gigabytes (a CHECK constraint, a VIRTUAL generated
// column, an index on an expression, a partial index). The check ignores CHECK constraints (they are the
// writer's to enforce): a CHECK bomb, a CHECK the rows break and a sound CHECK all verify and restore.
// Anything else of the kind (sqlite/per-row.ts) sends the check to a process under a fuse
// (sqlite/check-fuse.ts): a bomb there is refused as damage by `verify --deep` (exit 2) and by restore
// (BUNDLE_DAMAGED, on the calling thread and on SQLite threads), the live agent unchanged, with a message
// naming the limit and the variable that raises it; a sound index on an expression passes. The bombs are
// planted in the live agent's database (its schema rewritten with `writable_schema` after the rows were
// written), so the snapshot carries them as any database; the limits are set low here.

import assert from 'node:assert/strict';
import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { checkUnderFuse } from '../src/sqlite/check-fuse.js';
import { openForCheck } from '../src/sqlite/jobs.js';
import { perRowExpression } from '../src/sqlite/per-row.js';
import { type Agent, runCli, sampleAgent, setEnv, tempDir } from './helpers/env.js';
import { liveDigest } from './helpers/hostile.js';

const SMALL = { files: 2, memories: 10, embeddings: 3, concepts: 3, compactions: 1, commits: 1 };

/** `n` rows (id 1…n, a name) inserted into `table` by `db`. */
const rows = (table: string, n: number): string =>
  `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${n}) ` +
  `INSERT INTO ${table} (id, name) SELECT i, 'Name ' || i FROM c`;

/**
 * Runs `sql` on the database file `path`, then gives table `table` the schema text `hostile` (through
 * `writable_schema`, as a hostile writer would: the rows were written under the schema before it).
 */
function plant(path: string, sql: string[], table?: string, hostile?: string): void {
  const db = new Database(path);
  try {
    db.unsafeMode(true);
    for (const s of sql) db.exec(s);
    if (table !== undefined && hostile !== undefined) {
      db.pragma('writable_schema = ON');
      db.prepare('UPDATE sqlite_schema SET sql = ? WHERE name = ?').run(hostile, table);
      db.pragma('writable_schema = OFF');
    }
  } finally {
    db.close();
  }
}

/** The live long_term database of `a`. */
const longTerm = (a: Agent): string => join(a.sqliteDir, 'long_term.sqlite');

/** A snapshot of `a` whose long_term database has had `sql` (and `hostile`) planted in it. */
async function snapshotWith(
  a: Agent,
  sql: string[],
  table?: string,
  hostile?: string,
): Promise<{ id: string; bundle_path: string }> {
  plant(longTerm(a), sql, table, hostile);
  return a.snapshotter.snapshot({ agentId: 'ana' });
}

/** `verify --deep --json` of `bundle`: its exit code and report. */
async function verifyDeep(bundle: string) {
  const r = await runCli(['verify', bundle, '--deep', '--json']);
  return {
    code: r.code,
    report: JSON.parse(r.stdout) as {
      status: string;
      problems: { message: string }[];
      deep?: { sqlite_integrity: Record<string, string> };
    },
  };
}

/** `verify --deep` of `bundle` passes with long_term ok, and a restore of it puts long_term back. */
async function assertPasses(a: Agent, bundle: string): Promise<void> {
  const v = await verifyDeep(bundle);
  assert.equal(v.code, 0, JSON.stringify(v.report.problems));
  assert.equal(v.report.status, 'verified');
  assert.equal(v.report.deep?.sqlite_integrity.long_term, 'ok');
  const r = await a.snapshotter.restore({ agentId: 'ana', bundle, autoPreSnapshot: false });
  assert.ok(r.sqlite_restored_dbs.includes('long_term'), JSON.stringify(r));
}

type Err = Error & { code?: string; exitCode?: number };

/**
 * verify --deep says damaged (exit 2) and restore refuses (BUNDLE_DAMAGED, exit 2), each with
 * `message`, on the calling thread and on SQLite threads; the live agent is unchanged and no staging
 * is left.
 */
async function assertRefused(t: TestContext, a: Agent, bundle: string, message: RegExp): Promise<void> {
  const v = await verifyDeep(bundle);
  assert.equal(v.code, 2, JSON.stringify(v.report.problems));
  assert.equal(v.report.status, 'damaged');
  assert.ok(
    v.report.problems.some((p) => message.test(p.message)),
    `verify names the limit: ${JSON.stringify(v.report.problems)}`,
  );
  const before = liveDigest(a);
  for (const threadsMin of ['1000000000', '0']) {
    setEnv(t, { NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES: threadsMin });
    await assert.rejects(
      a.snapshotter.restore({ agentId: 'ana', bundle, autoPreSnapshot: false }),
      (err: Err) => {
        assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
        assert.equal(err.exitCode, 2);
        assert.match(err.message, /sqlite\/long_term\.sqlite: integrity_check failed/);
        assert.match(err.message, message);
        return true;
      },
    );
    assert.equal(liveDigest(a), before, 'the live agent is unchanged');
    const staged = readdirSync(a.sqliteDir).filter((n) => n.includes('.restore-'));
    assert.deepEqual(staged, [], 'no staged database is left');
  }
}

test('CHECK constraints are not evaluated: a CHECK bomb, a broken CHECK and a sound one pass', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const plain = 'CREATE TABLE x (id INTEGER PRIMARY KEY, name TEXT NOT NULL)';
  plant(longTerm(a), [
    plain.replace(' x ', ' bomb '),
    rows('bomb', 50),
    plain.replace(' x ', ' broken '),
    rows('broken', 5),
    "CREATE TABLE sound (id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (name LIKE 'Name %'))",
    rows('sound', 5),
  ]);
  plant(
    longTerm(a),
    [],
    'bomb',
    "CREATE TABLE bomb (id INTEGER PRIMARY KEY, name TEXT NOT NULL, CHECK (length(printf('%.*c', 100000000, 'x')) > 0))",
  );
  const snap = await snapshotWith(
    a,
    [],
    'broken',
    'CREATE TABLE broken (id INTEGER PRIMARY KEY, name TEXT NOT NULL, CHECK (id < 0))',
  );
  // the fuse is small: none of these goes to it (a CHECK is no reason to)
  setEnv(t, { NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS: '1' });
  await assertPasses(a, snap.bundle_path);
  const db = new Database(longTerm(a), { readonly: true });
  try {
    assert.equal(db.prepare('SELECT count(*) FROM bomb').pluck().get(), 50);
    assert.equal(db.prepare('SELECT count(*) FROM broken').pluck().get(), 5);
  } finally {
    db.close();
  }
});

test('a VIRTUAL generated column bomb is refused as damage at the CPU fuse', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = await snapshotWith(
    a,
    [
      'CREATE TABLE bomb (id INTEGER PRIMARY KEY, name TEXT NOT NULL, v INT GENERATED ALWAYS AS (1) VIRTUAL NOT NULL)',
      rows('bomb', 200),
    ],
    'bomb',
    'CREATE TABLE bomb (id INTEGER PRIMARY KEY, name TEXT NOT NULL, ' +
      "v INT GENERATED ALWAYS AS (length(printf('%.*c', 100000000, 'x'))) VIRTUAL NOT NULL)",
  );
  setEnv(t, { NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS: '1' });
  await assertRefused(
    t,
    a,
    snap.bundle_path,
    /limit of \d+ s of CPU .*virtual generated column "v" of table "bomb".*raise NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS/,
  );
});

test('an index on an expression that bombs is refused as damage at the memory fuse', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = await snapshotWith(
    a,
    [
      'CREATE TABLE bomb (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
      rows('bomb', 3),
      'CREATE INDEX boom ON bomb (length(name))',
    ],
    'boom',
    "CREATE INDEX boom ON bomb (length(printf('%.*c', 500000000, 'x')))",
  );
  setEnv(t, { NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES: String(256 * 1024 * 1024) });
  await assertRefused(
    t,
    a,
    snap.bundle_path,
    /limit of \d+ bytes of memory .*index "boom" on an expression.*raise NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES/,
  );
});

test('sound indexes on an expression and partial indexes pass the check in its process', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = await snapshotWith(a, [
    'CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    rows('people', 100),
    'CREATE INDEX people_lower ON people (lower(name))',
    "CREATE INDEX people_some ON people (name) WHERE name > 'Name 5'",
  ]);
  setEnv(t, { NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS: '10' });
  await assertPasses(a, snap.bundle_path);
  // the same database checked by the process: sound; and one whose index lost an entry: its problems
  const dir = tempDir(t);
  const copy = join(dir, 'people.sqlite');
  copyFileSync(longTerm(a), copy);
  assert.deepEqual(await checkUnderFuse(copy, 10, 'index'), ['ok']);
  plant(copy, [], 'people_lower', 'CREATE INDEX people_lower ON people (upper(name))');
  const problems = await checkUnderFuse(copy, 10, 'index');
  assert.ok(
    problems.some((p) => /missing from index people_lower/.test(p)),
    JSON.stringify(problems),
  );
});

test('what the check evaluates per row is found in any schema; a sample agent has none', (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  for (const file of readdirSync(a.sqliteDir).filter((f) => f.endsWith('.sqlite'))) {
    const db = openForCheck(join(a.sqliteDir, file));
    try {
      assert.equal(perRowExpression(db), undefined, `${file}: checked on the runner, with no process`);
    } finally {
      db.close();
    }
  }
  const dir = tempDir(t);
  // names a quoting bug would trip on: quotes of each kind, a bracket, a space
  const odd = '"we""ird\'` [t]"';
  const cases: [string, string[], string | undefined][] = [
    ['stored', [`CREATE TABLE ${odd} (a TEXT, b INT GENERATED ALWAYS AS (length(a)) STORED)`], undefined],
    ['check', [`CREATE TABLE ${odd} (a TEXT CHECK (length(a) > 0))`], undefined],
    ['plain index', [`CREATE TABLE ${odd} (a TEXT UNIQUE)`, `CREATE INDEX "i""x" ON ${odd} (a)`], undefined],
    [
      'view',
      [`CREATE TABLE ${odd} (a TEXT)`, `CREATE VIEW v AS SELECT printf('%.*c', 100000000, 'x')`],
      undefined,
    ],
    [
      'virtual column',
      [`CREATE TABLE ${odd} (a TEXT, b INT GENERATED ALWAYS AS (length(a)) VIRTUAL)`],
      `virtual generated column "b" of table "we\\"ird'\` [t]"`,
    ],
    [
      'expression index',
      [`CREATE TABLE ${odd} (a TEXT)`, `CREATE INDEX "i""x" ON ${odd} (lower(a))`],
      'index "i\\"x" on an expression',
    ],
    [
      'partial index',
      [`CREATE TABLE ${odd} (a TEXT)`, `CREATE INDEX "i""x" ON ${odd} (a) WHERE a > ''`],
      'partial index "i\\"x"',
    ],
    ['virtual table', [`CREATE VIRTUAL TABLE ${odd} USING fts5(body)`], `virtual table "we\\"ird'\` [t]"`],
  ];
  for (const [name, sql, found] of cases) {
    const path = join(dir, `${name.replaceAll(' ', '-')}.sqlite`);
    plant(path, sql);
    const db = openForCheck(path);
    try {
      assert.equal(perRowExpression(db), found, name);
    } finally {
      db.close();
    }
  }
});
