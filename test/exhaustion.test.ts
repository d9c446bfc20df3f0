// Resource exhaustion (stop 46): a full disk, a read-only file system. A SQLite copy onto a full disk
// is IO ENOSPC naming the copy; a restore refused by its pre-snapshot keeps the errno; a pin and the
// atomic writers fail as IO and leave no temporary file, and gc removes the stale ones earlier
// versions left in the shared locks/ and cache/ directories; a staging directory on a read-only root
// fails with EROFS, not ENOENT; and a read-only state root (a backup mounted read-only) can be
// verified, read and exported. A full or read-only disk is a small tmpfs (root only: skipped
// elsewhere), or an injected fault (util/faults.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statfsSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { gitEnv } from '../scripts/sample-agent.js';
import { fetchHistory } from '../src/diff/memdir.js';
import type { Side } from '../src/diff/sides.js';
import { initBare } from '../src/git/git.js';
import { packObjects } from '../src/git/history.js';
import { LocalSnapshotter } from '../src/index.js';
import { GitError, IoError } from '../src/model/errors.js';
import { planChunks } from '../src/repository/chunk-plan.js';
import { DEFAULT_CHUNKER } from '../src/repository/chunker.js';
import { SqliteHere, SqliteWorker } from '../src/sqlite/worker.js';
import { writeFileAtomic, writeFileAtomicUnsynced } from '../src/store/atomic.js';
import { acquire } from '../src/store/lock.js';
import { pin } from '../src/store/pins.js';
import { hostWriteFailure } from '../src/util/disk-full.js';
import { makeDirs } from '../src/util/make-dirs.js';
import { json } from './helpers/cli-json.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';

/** A tmpfs of `size` mounted at a new directory, unmounted after the test; undefined (skipped) without root. */
function smallDisk(t: TestContext, size: string, options = ''): string | undefined {
  const mnt = mkdtempSync(join(tmpdir(), 'nexo-small-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${options}`, 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    rmSync(mnt, { recursive: true, force: true });
    t.skip('cannot mount a tmpfs here (needs root)');
    return undefined;
  }
  t.after(() => {
    execFileSync('umount', ['-l', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  return mnt;
}

/** Fills the file system of `dir` to its last byte. */
function fill(dir: string): void {
  try {
    writeFileSync(join(dir, 'fill'), Buffer.alloc(64 * 1024 * 1024));
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  }
}

/** A database at `path` of `rows` rows of 2 KiB of random bytes (which do not compress). */
function randomRowsDb(path: string, rows: number): void {
  const db = new Database(path);
  db.exec('CREATE TABLE m (v BLOB)');
  const insert = db.prepare('INSERT INTO m VALUES (?)');
  for (let i = 0; i < rows; i++) insert.run(randomBytes(2048));
  db.close();
}

test('a SQLite copy onto a full disk is IO ENOSPC naming the copy (on the calling thread and on a worker thread)', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  const live = join(tempDir(t), 'long_term.sqlite');
  randomRowsDb(live, 100);
  for (const [name, runner] of [
    ['here', new SqliteHere()],
    ['thread', new SqliteWorker()],
  ] as const) {
    const dst = join(mnt, `${name}.sqlite`);
    try {
      await assert.rejects(runner.copy(live, dst), (err: Error) => {
        assert.ok(err instanceof IoError, `${name}: ${err.name} ${err.message}`);
        assert.equal(err.errno, 'ENOSPC');
        assert.deepEqual(err.toJSON().details, { errno: 'ENOSPC' });
        assert.ok(err.message.startsWith(`writing ${dst}, the copy of ${live}`), err.message);
        assert.match(err.message, /no space left on device$/);
        return true;
      });
    } finally {
      await runner.close();
    }
  }
});

test('a snapshot onto a state root whose disk is full is IO ENOSPC naming the copy, not the write gate\'s "database or disk is full" (stop 54)', async (t) => {
  const mnt = smallDisk(t, '16m');
  if (!mnt) return;
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 400 });
  fill(mnt);
  for (const store of ['repository', 'bundles'] as const) {
    const s = new LocalSnapshotter({
      stateRoot: join(mnt, store),
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store,
      lockTimeoutMs: 2_000,
    });
    // the write gate's lock file is new: releasing it wrote its first page, failed, and its error took
    // the place of the copy's
    await assert.rejects(s.snapshot({ agentId: 'ana' }), (err: Error) => {
      assert.ok(err instanceof IoError, `${store}: ${err.name} ${err.message}`);
      assert.equal(err.errno, 'ENOSPC', err.message);
      assert.ok(err.message.startsWith(`writing ${join(mnt, store)}/`), err.message);
      assert.match(err.message, /, the copy of .*: no space left on device$/);
      return true;
    });
  }
  rmSync(join(mnt, 'fill'));
  // every lock the failed snapshots took was released: the next ones take them at once
  for (const store of ['repository', 'bundles'] as const) {
    const s: LocalSnapshotter = new LocalSnapshotter({
      stateRoot: join(mnt, store),
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store,
      lockTimeoutMs: 0,
    });
    const meta = await s.snapshot({ agentId: 'ana' });
    assert.equal(meta.agent_id, 'ana');
  }
});

test('releasing a lock whose file is new on a full disk does not throw, and the lock is free again (stop 54)', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  const path = join(mnt, 'gate.lock');
  fill(mnt);
  const held = await acquire(path, 'exclusive', 1_000);
  held.release(); // SQLite's COMMIT writes the new file's first page, which fails (SQLITE_FULL)
  const again = await acquire(path, 'exclusive', 0);
  again.release();
});

test("git saying it could not write is this host's failure only when the disk agrees: a hostile history cannot pass its damage off as a full disk (stop 54)", async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  const roomy = tempDir(t);
  const said = (m: string) => new GitError(`setting HEAD failed: ${m}`);
  const full = 'error: unable to write symref for HEAD: No space left on device';
  // what git quotes from the content (a submodule's name in an fsck finding) can say anything
  const quoted =
    'error: object 12ab: gitmodulesName: disallowed submodule name: ../x: fatal: No space left on device';
  assert.equal(await hostWriteFailure(said(full), roomy), undefined, 'a disk with room: the content');
  assert.equal(await hostWriteFailure(said(quoted), roomy), undefined);
  fill(mnt);
  const host = await hostWriteFailure(said(full), mnt);
  assert.ok(host instanceof IoError);
  assert.equal(host.errno, 'ENOSPC');
  assert.ok(host.message.includes(`(in ${mnt})`), host.message);
  assert.equal(
    await hostWriteFailure(said('fatal: pack has 2 unresolved deltas'), mnt),
    undefined,
    'not a write: the content, full disk or not',
  );
});

test('git init on a full disk is IO ENOSPC, not GIT (stop 54)', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  fill(mnt);
  await assert.rejects(initBare(join(mnt, 'history.git')), (err: Error) => {
    assert.ok(err instanceof IoError, `${err.name}: ${err.message}`);
    assert.equal(err.errno, 'ENOSPC');
    assert.ok(err.message.startsWith(`git init of ${join(mnt, 'history.git')} failed: `), err.message);
    return true;
  });
});

test('a history whose .gitmodules says "No space left on device" is damage, verified and restored as such (stop 54)', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 20 }, { store: 'repository' });
  writeFileSync(
    join(a.memdir, '.gitmodules'),
    '[submodule "../x: fatal: No space left on device"]\n\tpath = x\n\turl = https://e/x\n',
  );
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: a.memdir, env: gitEnv, encoding: 'utf8' });
  git('add', '.gitmodules');
  git('commit', '-qm', 'a submodule name that reads like a full disk');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const v = await a.snapshotter.verifySnapshot('ana', 'default', meta.id);
  assert.equal(v.status, 'damaged', JSON.stringify(v));
  assert.ok(
    v.problems.some((p) => p.code === 'BUNDLE_DAMAGED'),
    JSON.stringify(v.problems),
  );
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', snapshot: meta.id }), {
    code: 'BUNDLE_DAMAGED',
  });
});

test('an integrity check that the disk fails (SQLite cannot grow its -shm) is IO naming the database, not "not a valid database" (stop 54)', async (t) => {
  const mnt = smallDisk(t, '1m');
  if (!mnt) return;
  const path = join(mnt, 'long_term.sqlite');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE m (v TEXT); INSERT INTO m VALUES (1)');
  db.close(); // (the -shm and -wal go with the last connection)
  fill(mnt);
  for (const [name, runner] of [
    ['here', new SqliteHere()],
    ['thread', new SqliteWorker()],
  ] as const) {
    try {
      await assert.rejects(runner.integrityCheck(path), (err: Error) => {
        assert.ok(err instanceof IoError, `${name}: ${err.name} ${err.message}`);
        assert.ok(err.message.startsWith(`checking ${path}: `), err.message);
        assert.match(String(err.errno), /^(SQLITE_IOERR|ENOSPC)/);
        return true;
      });
    } finally {
      await runner.close();
    }
  }
});

test("a diff fetching a snapshot's history onto a full disk fails as IO ENOSPC, not as that history's damage (stop 54)", async (t) => {
  const mnt = smallDisk(t, '256k');
  if (!mnt) return;
  const src = join(tempDir(t), 'memdir');
  mkdirSync(src);
  const git = (...args: string[]) => execFileSync('git', args, { cwd: src, env: gitEnv, encoding: 'utf8' });
  git('init', '-q');
  writeFileSync(join(src, 'noise.bin'), randomBytes(1024 * 1024)); // does not compress
  git('add', '.');
  git('commit', '-qm', 'noise');
  const head = git('rev-parse', 'HEAD').trim();
  const bundle = join(tempDir(t), 'memdir.bundle');
  git('bundle', 'create', '-q', bundle, '--all');
  const side = {
    label: '01a24b00-0000-7000-8000-000000000001',
    head,
    history: { kind: 'bundle', path: bundle },
  };
  await assert.rejects(
    fetchHistory(side as unknown as Side, join(mnt, 'a.git')),
    (err: Error & { errno?: string }) => {
      assert.equal((err as IoError).code, 'IO', `${err.name}: ${err.message}`);
      assert.equal(err.errno, 'ENOSPC', err.message);
      return true;
    },
  );
});

test('migrate onto a state root with no room left reports no repository created, and a retry with room migrates (stop 54)', async (t) => {
  const mnt = smallDisk(t, '8m');
  if (!mnt) return;
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 100 });
  const opts = { stateRoot: mnt, memdirRoot: a.memdirRoot, sqliteRoot: a.sqliteRoot };
  await new LocalSnapshotter({ ...opts, store: 'bundles' }).snapshot({ agentId: 'ana' });
  fill(mnt);
  const s = new LocalSnapshotter({ ...opts, store: 'repository' });
  const full = await s.migrate().catch((err: Error) => err);
  if (!(full instanceof Error)) {
    assert.equal(full.created_repository, false, JSON.stringify(full));
    assert.equal(full.migrated, 0);
  }
  rmSync(join(mnt, 'fill'));
  const again = await new LocalSnapshotter({ ...opts, store: 'repository' }).migrate();
  assert.equal(again.migrated, 1, JSON.stringify(again));
  assert.equal(again.created_repository, true);
});

test('a deep verify and a diff whose scratch disk is full fail as IO with the disk full, never as a damaged snapshot (stop 54)', async (t) => {
  const mnt = smallDisk(t, '4m');
  if (!mnt) return;
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2, memories: 200 });
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'MEMORY.md'), 'changed\n');
  const second = await a.snapshotter.snapshot({ agentId: 'ana' });
  fill(mnt);
  const before = process.env.TMPDIR;
  process.env.TMPDIR = mnt;
  try {
    const outcome = async (run: () => Promise<unknown>): Promise<string> => {
      try {
        return JSON.stringify(await run());
      } catch (err) {
        return JSON.stringify((err as IoError).toJSON?.() ?? String(err));
      }
    };
    const verify = await outcome(() =>
      a.snapshotter.verifySnapshot('ana', 'default', second.id, { deep: true }),
    );
    const diff = await outcome(() => a.snapshotter.diff({ agentId: 'ana', a: first.id, b: second.id }));
    for (const [what, out] of [
      ['verify --deep', verify],
      ['diff', diff],
    ] as const) {
      assert.doesNotMatch(out, /BUNDLE_DAMAGED|"damaged"/, `${what}: ${out}`);
      assert.match(out, /ENOSPC|no space left on device/i, `${what}: ${out}`);
    }
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
  }
});

test('an ENOSPC whose message names no file names the one the system call was writing (stop 54)', () => {
  const cause = Object.assign(new Error("ENOSPC: no space left on device, copyfile '/a/obj' -> '/s/obj'"), {
    code: 'ENOSPC',
    path: '/a/obj',
    dest: '/s/obj',
  });
  assert.equal(
    new IoError('snapshot of agent ana', cause).message,
    'snapshot of agent ana: no space left on device for /s/obj',
  );
  assert.equal(new IoError('writing /s/obj', cause).message, 'writing /s/obj: no space left on device');
  const write = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  assert.equal(
    new IoError('snapshot of agent ana', write).message,
    'snapshot of agent ana: no space left on device',
  );
});

test("git's pack written onto a full disk fails the call (ENOSPC), never an unhandled rejection ending the process (stop 53)", async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  const repo = join(tempDir(t), 'memdir');
  mkdirSync(repo);
  const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, env: gitEnv, encoding: 'utf8' });
  git('init', '-q');
  writeFileSync(join(repo, 'noise.bin'), randomBytes(1024 * 1024)); // does not compress: a 1 MB pack
  git('add', '.');
  git('commit', '-qm', 'noise');
  const head = git('rev-parse', 'HEAD').trim();
  // the pack's file fills the disk while git still writes: the write's failure comes before git's end
  await assert.rejects(packObjects(repo, [head], [], join(mnt, 'history.pack')), (err: Error) => {
    // named, with its errno (stop 54: "no space left on device" naming nothing)
    assert.ok(err instanceof IoError, `${err.name}: ${err.message}`);
    assert.equal(err.errno, 'ENOSPC');
    assert.equal(
      err.message,
      `writing git pack-objects's output to ${join(mnt, 'history.pack')}: no space left on device`,
    );
    return true;
  });
});

test('chunks packed ahead onto a full disk: the error names the pack file and keeps ENOSPC, the code a snapshot falls back on (stop 53); no pack file is left', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  const copy = join(tempDir(t), 'vector.sqlite');
  randomRowsDb(copy, 200); // does not compress: ~400 KB packed
  const prefix = join(mnt, 'vector.sqlite.packed');
  const free = statfsSync(mnt).bavail;
  await assert.rejects(
    planChunks({
      path: copy,
      params: DEFAULT_CHUNKER,
      sqlite: true,
      pack: { level: 3, prefix, target: 16 * 1024 }, // (the first packs fit)
    }),
    (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOSPC');
      assert.match(err.message, /vector\.sqlite\.packed-\d+/);
      assert.ok(err.message.includes(prefix), err.message);
      return true;
    },
  );
  assert.deepEqual(
    readdirSync(mnt).filter((n) => n.includes('.packed')),
    [],
    'the pack files are removed',
  );
  assert.equal(statfsSync(mnt).bavail, free, 'and closed: their room is free again');
});

test('a restore refused because its pre-snapshot found the disk full keeps the errno (RESTORE_REFUSED, details.errno)', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 40 }, { store: 'bundles' });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  process.env.NEXO_MEMORY_FAULTS = 'snapshot.sibling=ENOSPC';
  try {
    await assert.rejects(
      a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path }),
      (err: Error) => {
        const j = (err as IoError).toJSON();
        assert.equal(j.code, 'RESTORE_REFUSED');
        assert.match(String(j.message), /auto-pre-snapshot failed: .*no space left on device/);
        assert.deepEqual(j.details, { errno: 'ENOSPC' });
        return true;
      },
    );
  } finally {
    delete process.env.NEXO_MEMORY_FAULTS;
  }
});

test('on a full disk a pin and both atomic writers fail as IO ENOSPC and leave no temporary file', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  fill(mnt);
  const bundle = join(mnt, '01a246c0-0295-7526-8ec3-5a2586500343.tar.zst');
  await assert.rejects(
    pin(bundle, 'keep me: a note long enough to need a block of its own'),
    (err: Error) => {
      assert.ok(err instanceof IoError, `${err.name}: ${err.message}`);
      assert.equal(err.errno, 'ENOSPC');
      assert.equal(err.message, `writing the pin ${bundle}.pin: no space left on device`);
      return true;
    },
  );
  await assert.rejects(writeFileAtomic(join(mnt, 'a.json'), 'x'.repeat(8192)), { code: 'ENOSPC' });
  assert.throws(() => writeFileAtomicUnsynced(join(mnt, 'ana.lock.owner'), 'x'.repeat(8192)), {
    code: 'ENOSPC',
  });
  assert.deepEqual(readdirSync(mnt), ['fill'], 'no temporary file left behind');
});

test("gc removes atomic writes' temporary files older than 10 minutes from locks/ and cache/, and nothing else there", async (t) => {
  const a = sampleAgent(t);
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const locks = join(a.stateRoot, 'tenants', 'default', 'locks');
  const cache = join(a.stateRoot, 'cache');
  mkdirSync(cache, { recursive: true });
  const old = (Date.now() - 11 * 60_000) / 1000;
  const files = {
    owner: join(locks, '.ana.lock.owner.tmp-0123456789ab'),
    last: join(locks, '.ana.auto-pre-dream.last.tmp-0123456789ab'),
    find: join(cache, '.find-abc-0.json.tmp-0123456789ab'),
    fresh: join(locks, '.ana.lock.owner.tmp-ba9876543210'),
    other: join(locks, '.ana.lock.tmp-0123456789ab'),
    otherCache: join(cache, '.sketch-x.tmp-0123456789ab'),
  };
  for (const [name, f] of Object.entries(files)) {
    writeFileSync(f, '');
    if (name !== 'fresh') utimesSync(f, old, old);
  }
  const r = await a.snapshotter.gc({});
  assert.deepEqual([...(r.temp_files_removed ?? [])].sort(), [files.find, files.last, files.owner].sort());
  for (const f of [files.owner, files.last, files.find]) assert.ok(!existsSync(f), f);
  for (const f of [files.fresh, files.other, files.otherCache]) assert.ok(existsSync(f), `${f} stays`);
  const dry = await a.snapshotter.gc({ dryRun: true });
  assert.equal(dry.temp_files_removed, undefined);
});

test('a staging directory on a read-only file system fails with EROFS, not the ENOENT of a recursive mkdir', async (t) => {
  const mnt = smallDisk(t, '64k', ',ro');
  if (!mnt) return;
  for (const dir of [join(mnt, '.ana.restore-x'), join(mnt, 'a', 'b')])
    await assert.rejects(makeDirs(dir), { code: 'EROFS' });
  const rw = tempDir(t);
  await makeDirs(join(rw, 'a', 'b'));
  await makeDirs(join(rw, 'a', 'b')); // there already: fine
  assert.ok(existsSync(join(rw, 'a', 'b')));
});

test('a snapshot of an agent new to a read-only state root fails IO with EROFS, not ENOENT (stop 50)', async (t) => {
  const mnt = smallDisk(t, '64k', ',ro');
  if (!mnt) return;
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 2 });
  for (const store of ['repository', 'bundles'] as const) {
    const s = new LocalSnapshotter({
      stateRoot: mnt,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store,
    });
    await assert.rejects(s.snapshot({ agentId: 'ana' }), (err: Error & { code?: string; errno?: string }) => {
      assert.equal(err.code, 'IO', err.message);
      assert.equal(err.errno, 'EROFS', err.message);
      return true;
    });
  }
});

test('a read-only state root (a backup mounted read-only): verify, cat and export work in both stores, each saying it reads without a lock', async (t) => {
  const mnt = smallDisk(t, '8m');
  if (!mnt) return;
  const a = sampleAgent(t, 'ana', { memories: 40 });
  const state = join(mnt, 'state');
  const flags = ['--agent', 'ana', '--state-root', state, '--no-progress'];
  const live = ['--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
  const inRepo = json(
    await runCli(['snapshot', ...flags, ...live, '--json'], {
      env: { NEXO_MEMORY_STORE_FORMAT: 'repository' },
    }),
  );
  const bundle = json(
    await runCli(['snapshot', ...flags, ...live, '--json'], { env: { NEXO_MEMORY_STORE_FORMAT: 'bundles' } }),
  );
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  const out = tempDir(t);
  for (const [id, lock] of [
    [
      bundle.id,
      /the state root is read-only \(EROFS\): this \w+ reads snapshot \S+ without the readers lock/,
    ],
    [
      inRepo.id,
      /the repository \S+ is on a read-only file system \(EROFS\): this \w+ reads it without its shared lock/,
    ],
  ] as const) {
    const verify = await runCli(['verify', ...flags, '--id', id, '--json']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(json(verify).status, 'verified');
    assert.match(verify.stderr, lock);
    const cat = await runCli(['cat', ...flags, id, 'memdir/MEMORY.md']);
    assert.equal(cat.code, 0, cat.stderr);
    if (id !== bundle.id) continue; // (the repository's lock is the same for every read: verify showed it)
    const exported = await runCli(['export', ...flags, '--id', id, '--to', join(out, `${id}.tar.zst`)]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, lock);
  }
});

test('an import whose target path passes PATH_MAX fails IO ENAMETOOLONG with a bounded message: the path once, its middle elided (stop 47)', async (t) => {
  // A memory file ~3,850 characters deep, imported under a memdir root of ~330: the staged path passes
  // PATH_MAX (4,096). The message quoted it whole twice (ours and Node's mkdir), ~8.5 KB.
  const a = sampleAgent(t, 'ana', { memories: 40 });
  let rel = '';
  for (let i = 0; i < 19; i++) rel += `/${'d'.repeat(199)}${i}`;
  mkdirSync(join(a.memdir, rel), { recursive: true });
  writeFileSync(join(a.memdir, rel, 'deep.md'), 'deep\n');
  const flags = ['--state-root', a.stateRoot, '--no-progress', '--json'];
  const live = ['--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
  const snap = json(
    await runCli(['snapshot', '--agent', 'ana', ...flags, ...live], {
      env: { NEXO_MEMORY_STORE_FORMAT: 'bundles' },
    }),
  ) as { bundle_path: string };
  const longRoot = join(tempDir(t), 'x'.repeat(200), 'y'.repeat(100));
  mkdirSync(longRoot, { recursive: true });
  const r = await runCli(
    ['import', '--agent', 'bob', '--from', snap.bundle_path, ...flags, '--memdir-root', longRoot],
    { env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' } },
  );
  assert.equal(r.code, 1, r.stderr);
  const err = (json(r) as { error: { code: string; message: string; details?: { errno?: string } } }).error;
  assert.equal(err.code, 'IO');
  assert.equal(err.details?.errno, 'ENAMETOOLONG');
  assert.ok(err.message.length < 700, `a bounded message, ${err.message.length} characters: ${err.message}`);
  assert.match(err.message, /^writing .*x{100}…\[\d+ characters\]….*d{100}18\/deep\.md: ENAMETOOLONG/);
  assert.equal(err.message.split('…[').length, 2, 'the path once, elided once');
  assert.ok(r.stderr.length < 1000, `stderr is bounded too: ${r.stderr.length}`);
});

test('keygen onto a full disk fails as IO and leaves no key file behind: with room again, it writes the key (stop 55)', async (t) => {
  const mnt = smallDisk(t, '64k');
  if (!mnt) return;
  fill(mnt);
  // before stop 55 an empty `.pub` (or identity file) stayed, and every later keygen refused it
  for (const args of [
    ['--out', join(mnt, 'sign.key')],
    ['--age', '--out', join(mnt, 'id.txt')],
  ]) {
    const r = await runCli(['keygen', ...args, '--json']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(json(r).error.code, 'IO');
    assert.deepEqual(readdirSync(mnt), ['fill'], 'no key file, whole or not, and no temporary file');
  }
  rmSync(join(mnt, 'fill'));
  for (const args of [
    ['--out', join(mnt, 'sign.key')],
    ['--age', '--out', join(mnt, 'id.txt')],
  ])
    assert.equal((await runCli(['keygen', ...args, '--json'])).code, 0);
  assert.deepEqual(readdirSync(mnt).sort(), ['id.txt', 'sign.key', 'sign.key.pub']);
});
