// The default layout (the original's): the memdir and the database directory are the same directory,
// `<root>/<agent>/`, the state files beside the databases. A snapshot takes the databases and the state
// as their components only, never again, raw, as memory files; a restore stages them in the staged
// memdir and swaps everything in with one rename: the databases are the checked copies, the state is
// the snapshot's, the memory files and the history are exact, and nothing of the restore is left inside
// the agent's directory. Until 2026-12-02 every snapshot also held the raw database files as memory
// files, and a restore swapped the memdir in after the databases, so those raw, unchecked copies were
// what the agent got back. Both stores.

import assert from 'node:assert/strict';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { git } from '../scripts/sample-agent.js';
import { LocalSnapshotter } from '../src/index.js';
import { addMemoryFiles, forgeBundle, readEntries, writeBundleFile } from './helpers/bundles.js';
import { json } from './helpers/cli-json.js';
import { type RunResult, runCli, sampleAgent } from './helpers/env.js';

/** A sample agent moved into the default layout: its databases and state files in its memdir. */
function defaultLayout(t: TestContext, store: 'bundles' | 'repository') {
  const a = sampleAgent(t);
  for (const name of readdirSync(a.sqliteDir)) renameSync(join(a.sqliteDir, name), join(a.memdir, name));
  const s = new LocalSnapshotter({
    stateRoot: join(a.root, `state-${store}`),
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.memdirRoot,
    store,
  });
  return { a, s, dir: a.memdir };
}

const rows = (file: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM memories').pluck().get() as number;
  } finally {
    db.close();
  }
};

for (const store of ['bundles', 'repository'] as const) {
  test(`${store}: databases and state in the memdir are taken once, as themselves, and restored as the checked copies`, async (t) => {
    const { a, s, dir } = defaultLayout(t, store);
    const before = rows(join(dir, 'long_term.sqlite'));
    const cursor = readFileSync(join(dir, 'extract_cursor.json'), 'utf8');
    const status = git(dir, ['status', '--porcelain']);
    const snap = await s.snapshot({ agentId: 'ana' });

    // taken once: the memory files are the memdir's own files only
    const report = await s.verifySnapshot('ana', undefined, snap.id);
    assert.equal(report.status, 'verified');
    const listed = await s.ls('ana', undefined, snap.id, 'memdir');
    const names = listed.entries.map((e) => e.path);
    assert.ok(names.length > 0);
    assert.ok(
      names.every((p) => !/\.sqlite|extract_cursor\.json|dream_run\.json/.test(p)),
      names.join(', '),
    );

    // change everything, and take away a database the snapshot has
    const live = new Database(join(dir, 'long_term.sqlite'));
    live
      .prepare(
        "INSERT INTO memories (created_at, kind, content, importance) VALUES (1, 'note', 'after', 0.5)",
      )
      .run();
    live.close();
    writeFileSync(join(dir, 'extract_cursor.json'), '{"last_message_id": 999999}\n');
    writeFileSync(join(dir, 'MEMORY.md'), 'changed\n');
    renameSync(join(dir, 'concepts.sqlite'), join(a.root, 'concepts.sqlite'));
    const r1 = await s.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
    assert.deepEqual(r1.sqlite_removed_dbs, []);
    // nothing of the restore inside the agent's directory (looked at before this test opens a database)
    const inside = readdirSync(dir);
    assert.deepEqual(
      inside.filter((n) => n.includes('restore') || n.endsWith('-wal') || n.endsWith('-shm')),
      [],
    );
    assert.equal(rows(join(dir, 'long_term.sqlite')), before);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'extract_cursor.json'), 'utf8')), JSON.parse(cursor));
    assert.equal(git(dir, ['status', '--porcelain']), status);
    assert.ok(readFileSync(join(dir, 'concepts.sqlite')).length > 0, 'the snapshot had it: back');
    const backup = readdirSync(a.memdirRoot).filter((n) => n.startsWith('.ana.pre-restore-'));
    assert.equal(backup.length, 1);
    assert.equal(rows(join(a.memdirRoot, backup[0]!, 'long_term.sqlite')), before + 1);
  });
}

test("default layout: memory files named like a restore's directories (.restore-*, .pre-restore-*) are the agent's: snapshot, recover and gc leave them, the snapshot takes them (stop 61 review)", async (t) => {
  const { a, s, dir } = defaultLayout(t, 'repository');
  mkdirSync(join(dir, '.restore-plan'));
  writeFileSync(join(dir, '.restore-plan', 'steps.md'), 'step one\n');
  writeFileSync(join(dir, '.restore-checklist.md'), 'check\n');
  git(dir, ['add', '.restore-plan', '.restore-checklist.md']);
  git(dir, ['commit', '-qm', 'restore notes']);
  writeFileSync(join(dir, '.restore-todo.md'), 'uncommitted\n');
  mkdirSync(join(dir, '.pre-restore-notes'));
  writeFileSync(join(dir, '.pre-restore-notes', 'old.md'), 'old\n');
  writeFileSync(join(dir, '.pre-restore-notes.md'), 'old\n');
  const old = new Date(Date.now() - 30 * 86_400_000);
  for (const n of ['.pre-restore-notes', '.pre-restore-notes.md']) utimesSync(join(dir, n), old, old);
  const ours = [
    '.pre-restore-notes',
    '.pre-restore-notes.md',
    '.restore-checklist.md',
    '.restore-plan',
    '.restore-todo.md',
  ];
  const kept = () =>
    readdirSync(dir)
      .filter((n) => n.includes('restore-'))
      .sort();

  const snap = await s.snapshot({ agentId: 'ana' });
  assert.deepEqual(kept(), ours);
  assert.equal(git(dir, ['status', '--porcelain', '--', '.restore-plan', '.restore-checklist.md']), '');
  const listed = (await s.ls('ana', undefined, snap.id, 'memdir')).entries.map((e) => e.path);
  for (const p of ours) assert.ok(listed.includes(`memdir/${p}`), `${p} taken: ${listed.join(', ')}`);
  await s.recover('ana');
  const gc = await s.gc({ agentId: 'ana', backupMaxAgeDays: 7 });
  assert.deepEqual(
    gc.agents.flatMap((g) => g.backups_removed ?? []),
    [],
  );
  assert.deepEqual(kept(), ours);
  assert.equal(readFileSync(join(dir, '.restore-todo.md'), 'utf8'), 'uncommitted\n');
  // a restore's own backup beside it (the memdir's, in the memdir root) is still aged and removed
  await s.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
  const backups = readdirSync(a.memdirRoot).filter((n) => n.startsWith('.ana.pre-restore-'));
  assert.equal(backups.length, 1);
  const later = await s.gc({ agentId: 'ana', backupMaxAgeDays: 7, now: Date.now() + 8 * 86_400_000 });
  assert.deepEqual(
    later.agents.flatMap((g) => g.backups_removed ?? []),
    [join(a.memdirRoot, backups[0]!)],
  );
  assert.deepEqual(kept(), ours);
});

test('default layout: a bundle with a memory file under a database or state file is refused; the database stays a file and the agent keeps working', async (t) => {
  const { a, s, dir } = defaultLayout(t, 'bundles');
  const before = rows(join(dir, 'long_term.sqlite'));
  const snap = await s.snapshot({ agentId: 'ana' });
  const entries = await readEntries(snap.bundle_path);
  for (const under of ['long_term.sqlite/x', 'long_term.sqlite-wal/x', 'extract_cursor.json/x']) {
    const bad = writeBundleFile(
      join(a.root, 'under.tar.zst'),
      forgeBundle(entries, (m, rest) =>
        addMemoryFiles(m, rest, [[`memory_files/${under}`, Buffer.from('x')]]),
      ),
    );
    assert.equal((await s.verify(bad)).status, 'damaged', under);
    await assert.rejects(s.restore({ agentId: 'ana', bundle: bad, autoPreSnapshot: false }), {
      code: 'UNSAFE_ENTRY',
      exitCode: 2,
    });
    assert.equal(rows(join(dir, 'long_term.sqlite')), before, under);
  }
  assert.ok((await s.snapshot({ agentId: 'ana' })).id, 'the agent still snapshots');
});

test('a memdir kept apart from the databases, with a top-level directory named as a database file: the capture skips it, so its bundle verifies and restores', async (t) => {
  const a = sampleAgent(t);
  mkdirSync(join(a.memdir, 'long_term.sqlite'));
  writeFileSync(join(a.memdir, 'long_term.sqlite', 'note.md'), 'x');
  git(a.memdir, ['add', '-f', 'long_term.sqlite/note.md']);
  git(a.memdir, ['commit', '-qm', 'a directory named as a database']);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal((await a.snapshotter.verify(snap.bundle_path)).status, 'verified');
  await a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path, autoPreSnapshot: false });
});

test('a bundle from before 2026-12-02, which also holds the databases as memory files, restores in the default layout', async (t) => {
  const { a, s, dir } = defaultLayout(t, 'bundles');
  const before = rows(join(dir, 'long_term.sqlite'));
  const snap = await s.snapshot({ agentId: 'ana' });
  // what the earlier capture wrote: the raw database file also as a memory file
  const entries = await readEntries(snap.bundle_path);
  const raw = readFileSync(join(dir, 'long_term.sqlite'));
  const old = writeBundleFile(
    join(a.root, 'old.tar.zst'),
    forgeBundle(entries, (m, rest) => addMemoryFiles(m, rest, [['memory_files/long_term.sqlite', raw]])),
  );
  const live = new Database(join(dir, 'long_term.sqlite'));
  live
    .prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (1, 'note', 'after', 0.5)")
    .run();
  live.close();
  await s.restore({ agentId: 'ana', bundle: old, autoPreSnapshot: false });
  assert.equal(rows(join(dir, 'long_term.sqlite')), before, 'the database artifact, not the memory file');
});

test('roots whose real paths overlap otherwise than as given (through a symlink) are refused at the start of every command, naming both paths; the same layout given plainly works (stop 47)', async (t) => {
  // Before: a database directory reached through a symlink into the memdir was captured raw as memory
  // files (memdir/db/ana/long_term.sqlite …) and a restore put them over the databases it had restored;
  // a state root reached through a symlink into the memdir put the store's own packs in the snapshot.
  const a = sampleAgent(t, 'ana', { memories: 40 });
  mkdirSync(join(a.memdir, 'db'));
  renameSync(a.sqliteDir, join(a.memdir, 'db', 'ana'));
  symlinkSync(join(a.memdir, 'db'), join(a.root, 'dblink'));
  const env = { NEXO_MEMORY_RESTORE_ALLOW: 'true' };
  const given = ['--state-root', a.stateRoot, '--json', '--no-progress'];
  symlinkSync(a.memdirRoot, join(a.root, 'memlink'));
  const hidden = [
    // the database root through a symlink into the memdir
    ['--memdir-root', a.memdirRoot, '--sqlite-root', join(a.root, 'dblink')],
    // the memdir root through a symlink, the database root given by its real path inside the memdir
    ['--memdir-root', join(a.root, 'memlink'), '--sqlite-root', join(a.memdir, 'db')],
  ];
  const refused = (r: RunResult, what: string) => {
    assert.equal(r.code, 1, `${what}: ${r.stdout}${r.stderr}`);
    // gc reports it as that agent's error and goes on with the others (the sweep's JSON)
    const out = json(r) as {
      error?: { code: string; message: string };
      agents?: Array<{ error: string; error_code: string }>;
    };
    const e = out.error ?? { code: out.agents?.[0]?.error_code, message: out.agents?.[0]?.error ?? '' };
    assert.equal(e.code, 'INVALID_INPUT', what);
    assert.match(
      e.message,
      /database directory \/\S+\/ana is apart from its memdir \/\S+\/ana as given, but by their real paths \/\S+\/memdir\/ana\/db\/ana is inside \/\S+\/memdir\/ana /,
    );
  };
  // The same layout given by the real path: the databases are the snapshot's databases, not memory files.
  const plain = [...given, '--memdir-root', a.memdirRoot, '--sqlite-root', join(a.memdir, 'db')];
  const snap = await runCli(['snapshot', '--agent', 'ana', ...plain]);
  assert.equal(snap.code, 0, snap.stderr);
  const ls = await runCli([
    'ls',
    '--agent',
    'ana',
    '--state-root',
    a.stateRoot,
    '--json',
    'latest',
    'memdir',
  ]);
  assert.doesNotMatch(ls.stdout, /"memdir\/db/, 'no database file taken as a memory file');
  for (const sqlite of hidden) {
    for (const cmd of [
      ['snapshot', '--agent', 'ana'],
      ['restore', '--agent', 'ana', '--from', 'latest'],
      ['diff', '--agent', 'ana', 'latest', 'live'],
      ['gc', '--agent', 'ana'],
    ])
      refused(await runCli([...cmd, ...given, ...sqlite], { env }), `${cmd[0]} ${sqlite[1]}`);
  }
  // the config's roots go through the same check
  const cfg = join(a.root, 'memory.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    root: ${a.stateRoot}\n    memdir_root: ${a.memdirRoot}\n    sqlite_root: ${join(a.root, 'dblink')}\n`,
  );
  refused(await runCli(['snapshot', '--agent', 'ana', '--config', cfg, '--json']), 'the config');
  // A state root reached through a symlink into the memdir: refused, naming both.
  mkdirSync(join(a.memdir, 'st'));
  symlinkSync(join(a.memdir, 'st'), join(a.root, 'stlink'));
  const st = await runCli([
    'snapshot',
    '--agent',
    'ana',
    '--memdir-root',
    a.memdirRoot,
    '--sqlite-root',
    join(a.memdir, 'db'),
    '--state-root',
    join(a.root, 'stlink'),
    '--json',
  ]);
  assert.equal(st.code, 1);
  assert.match(
    (json(st) as { error: { message: string } }).error.message,
    /its memdir .*memdir\/ana holds the state root .*stlink by their real paths \(.*memdir\/ana holds .*memdir\/ana\/st/,
  );
});

test('a default-layout agent snapshotted with another SQLite root says its databases were taken as memory files, and how to give the root (stop 63)', async (t) => {
  const { a } = defaultLayout(t, 'repository');
  // `--memdir-root` given, `--sqlite-root` not: the SQLite root is the state root, where the agent has none
  const s = new LocalSnapshotter({
    stateRoot: join(a.root, 'state-other'),
    memdirRoot: a.memdirRoot,
    store: 'repository',
  });
  const snap = await s.snapshot({ agentId: 'ana' });
  const warning = (snap.warnings ?? []).find((w) => w.startsWith('no database directory at'));
  assert.ok(warning, JSON.stringify(snap.warnings));
  assert.match(
    warning,
    /the memdir holds long_term\.sqlite, vector\.sqlite, concepts\.sqlite, compactions\.sqlite, taken as memory files \(copied as they are, not consistent copies\): give the memdir's root as the SQLite root too$/,
  );
});
