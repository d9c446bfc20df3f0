// The two runners of SQLite jobs (src/sqlite/worker.ts) give the same answers: a worker thread, for large
// databases, and the calling thread, for small ones. On real database files: the same copy (bytes of
// every table, journal mode, page size), the same hash and the same integrity answers, valid or damaged.
// A copy on the calling thread never waits for a writer's lock there: one that finds the database
// locked is made on a thread, which waits for the writer like any thread copy, while the event loop
// goes on. A capture gives a runner all of its databases at once (it copies them back to back).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { NoopStateProvider } from '../src/agent/state.js';
import { captureAgent } from '../src/capture/capture.js';
import {
  SQLITE_THREADS_MIN_BYTES,
  SqliteHere,
  type SqliteJobs,
  SqliteWorker,
  sqliteRunners,
} from '../src/sqlite/worker.js';
import { tempDir } from './helpers/env.js';

/** A database of `rows` rows in journal mode `mode`. */
function makeDb(path: string, mode: 'wal' | 'delete', rows = 500): void {
  const db = new Database(path);
  db.pragma(`journal_mode = ${mode}`);
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
  const insert = db.prepare('INSERT INTO notes (body) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) insert.run(`note ${i} ${'x'.repeat(i % 97)}`);
  })();
  db.close();
}

const rowsOf = (path: string): unknown[] => {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT id, body FROM notes ORDER BY id').all();
  } finally {
    db.close();
  }
};

test('sqliteRunners: threads for large databases, the calling thread for small ones', async () => {
  const small = sqliteRunners(SQLITE_THREADS_MIN_BYTES - 1);
  const large = sqliteRunners(SQLITE_THREADS_MIN_BYTES, 1);
  try {
    assert.equal(small.length, 2);
    assert.ok(small.every((r) => r instanceof SqliteHere));
    assert.equal(large.length, 1);
    assert.ok(large[0] instanceof SqliteWorker);
  } finally {
    await Promise.all([...small, ...large].map((r) => r.close()));
  }
});

test('a thread and the calling thread copy, hash and check alike', async (t) => {
  const dir = tempDir(t);
  const wal = join(dir, 'wal.sqlite');
  const rollback = join(dir, 'rollback.sqlite');
  makeDb(wal, 'wal');
  makeDb(rollback, 'delete');
  const damaged = join(dir, 'damaged.sqlite');
  const bytes = readFileSync(rollback);
  bytes.fill(0x5a, 4096, 8192); // the table's first page
  writeFileSync(damaged, bytes);
  const junk = join(dir, 'junk.sqlite');
  writeFileSync(junk, 'not a database at all, not even close\n'.repeat(200));

  const results: Record<string, unknown>[] = [];
  for (const [name, runner] of [
    ['thread', new SqliteWorker()],
    ['here', new SqliteHere()],
  ] as Array<[string, SqliteJobs]>) {
    try {
      const out: Record<string, unknown> = {};
      for (const src of [wal, rollback]) {
        const dst = join(dir, `${name}-${src.endsWith('wal.sqlite') ? 'wal' : 'rollback'}-copy.sqlite`);
        out[`copy ${src}`] = await runner.copy(src, dst);
        out[`rows ${src}`] = rowsOf(dst);
        const h = await runner.hash(dst);
        assert.equal(h.sha256, createHash('sha256').update(readFileSync(dst)).digest('hex'));
        out[`integrity ${src}`] = await runner.integrityCheck(dst);
      }
      out.damaged = await runner.integrityCheck(damaged);
      out.junk = await runner.integrityCheck(junk);
      results.push(out);
    } finally {
      await runner.close();
    }
  }
  const [thread, here] = results;
  assert.deepEqual(here, thread);
  assert.deepEqual(thread![`copy ${wal}`], { journal_mode: 'wal', page_size: 4096 });
  assert.deepEqual(thread![`copy ${rollback}`], { journal_mode: 'delete', page_size: 4096 });
  assert.equal((thread![`rows ${wal}`] as unknown[]).length, 500);
  assert.equal(thread![`integrity ${wal}`], 'ok');
  assert.notEqual(thread!.damaged, 'ok');
  assert.match(String(thread!.junk), /^not a valid database: /);
});

test('a copy on the calling thread that finds a writer holding the database waits on a thread', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'live.sqlite');
  makeDb(src, 'delete');
  const writer = new Database(src);
  writer.exec('BEGIN EXCLUSIVE');
  writer.prepare('INSERT INTO notes (body) VALUES (?)').run('written while the copy waited');
  const runner = new SqliteHere();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  try {
    const copied = runner.copy(src, join(dir, 'copy.sqlite'));
    // the writer commits 400 ms later: the copy waited for it, and this thread ran meanwhile
    setTimeout(() => writer.exec('COMMIT'), 400);
    assert.deepEqual(await copied, { journal_mode: 'delete', page_size: 4096 });
    assert.ok(ticks >= 10, `the event loop ran while the copy waited (${ticks} ticks of 10 ms)`);
    const rows = rowsOf(join(dir, 'copy.sqlite'));
    assert.equal(rows.length, 501);
    assert.deepEqual(rows.at(-1), { id: 501, body: 'written while the copy waited' });
  } finally {
    clearInterval(timer);
    writer.close();
    await runner.close();
  }
});

test("a capture gives each runner all of its databases at once; a failing copy is rethrown once the lane's other copies ended", async (t) => {
  const dir = tempDir(t);
  const sqliteDir = join(dir, 'sqlite');
  mkdirSync(sqliteDir);
  makeDb(join(sqliteDir, 'vector.sqlite'), 'wal', 4000);
  makeDb(join(sqliteDir, 'long_term.sqlite'), 'delete', 2000);
  makeDb(join(sqliteDir, 'compactions.sqlite'), 'wal', 10);
  // One runner, one lane, copied largest first: vector, long_term, then concepts (not a database:
  // its copy fails), then compactions.
  writeFileSync(join(sqliteDir, 'concepts.sqlite'), Buffer.alloc(60_000, 'not a database '));
  const worker = new SqliteWorker();
  const events: string[] = [];
  const recorder: SqliteJobs = {
    threaded: true,
    copy: (src, dst, ms) => {
      const name = src.split('/').pop();
      events.push(`given ${name}`);
      const copied = worker.copy(src, dst, ms);
      copied.then(
        () => events.push(`copied ${name}`),
        () => events.push(`failed ${name}`),
      );
      return copied;
    },
    hash: (path) => worker.hash(path),
    call: (module, fn, ...args) => worker.call(module, fn, ...args),
    integrityCheck: (path, max) => worker.integrityCheck(path, max),
    close: () => worker.close(),
  };
  try {
    const input = {
      agentId: 'a',
      tenant: 'default',
      memdir: join(dir, 'memdir'),
      sqliteDir,
      state: new NoopStateProvider(),
      stagingDir: join(dir, 'staging'),
      sqlite: [recorder],
    };
    mkdirSync(input.stagingDir);
    await assert.rejects(captureAgent(input), (err: Error) => {
      assert.match(err.message, /concepts\.sqlite/);
      return true;
    });
    events.push('rejected');
    // every copy given before the first one ended (the thread never waits for this thread between two)
    assert.deepEqual(events.slice(0, 4), [
      'given vector.sqlite',
      'given long_term.sqlite',
      'given concepts.sqlite',
      'given compactions.sqlite',
    ]);
    // and the failure came only after the copy behind it had ended
    assert.deepEqual(events.slice(4), [
      'copied vector.sqlite',
      'copied long_term.sqlite',
      'failed concepts.sqlite',
      'copied compactions.sqlite',
      'rejected',
    ]);
  } finally {
    await worker.close();
  }
});
