// The repository as the snapshotter's store (the default of new state roots): snapshots through the
// library and the CLI, what the second one adds, list, verify by id, check and check --read-data on
// real damage, delete, pin, prune, and a state root holding bundles that keeps them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { git } from '../scripts/sample-agent.js';
import { humanBytes } from '../src/cli/format.js';
import { generateIdentity } from '../src/crypto/age.js';
import { manifestSeal } from '../src/format/seal.js';
import { LocalSnapshotter } from '../src/index.js';
import { loadSnapshot } from '../src/repository/snapshots.js';
import { type Agent, runCli, sampleAgent } from './helpers/env.js';

const repoEnv = { NEXO_MEMORY_STORE_FORMAT: 'repository' };
const require = createRequire(import.meta.url);

function repoAgent(
  t: Parameters<typeof sampleAgent>[0],
  opts: Parameters<typeof sampleAgent>[2] = {},
): Agent {
  const a = sampleAgent(t, 'ana', { memories: 3000, embeddings: 500, files: 30, commits: 6, ...opts });
  const snapshotter = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  return { ...a, snapshotter };
}

function packFiles(root: string): string[] {
  const dir = join(root, 'repository', 'packs');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((d) => readdirSync(join(dir, d)).map((f) => join(dir, d, f)));
}

test('repository store: a new state root snapshots into the repository; the second snapshot adds only what changed', async (t) => {
  const a = repoAgent(t);
  const first = await a.snapshotter.snapshot({ agentId: 'ana', label: 'one' });
  assert.ok(existsSync(join(a.stateRoot, 'repository', 'config', 'config')), 'the repository was created');
  assert.equal(first.bundle_format, 'nexo-memory-snapshot-v4');
  assert.ok(first.bundle_path.endsWith(`#${first.id}`));
  assert.equal(
    existsSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana', `${first.id}.tar.zst`)),
    false,
  );
  const added1 = (first as { added_bytes?: number }).added_bytes!;
  assert.ok(added1 > 0);

  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare(
    "INSERT INTO memories (created_at, kind, content, importance) VALUES (1, 'fact', 'one new memory', 0.5)",
  ).run();
  db.close();
  writeFileSync(join(a.memdir, 'topics', 'new.md'), 'a new topic\n');
  git(a.memdir, ['add', '.']);
  git(a.memdir, ['commit', '-qm', 'new topic']);
  const second = await a.snapshotter.snapshot({ agentId: 'ana', label: 'two' });
  const added2 = (second as { added_bytes?: number }).added_bytes!;
  assert.ok(added2 < added1 / 5, `second snapshot added ${added2} bytes, the first ${added1}`);

  const listed = await a.snapshotter.list('ana');
  assert.deepEqual(
    listed.map((m) => m.id),
    [second.id, first.id],
  );
  assert.equal(listed[0]!.label, 'two');
  for (const m of [first, second]) {
    const report = await a.snapshotter.verifySnapshot('ana', 'default', m.id.slice(0, 13));
    assert.equal(report.status, 'verified', JSON.stringify(report.problems));
    assert.equal(report.artifacts_checked, report.artifacts_total);
  }
});

test('encrypting into a repository that is not encrypted: INVALID_INPUT once the capture ended, nothing left of it', async (t) => {
  const a = repoAgent(t);
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  // The repository opens while the agent is captured: the refusal comes after the capture, which
  // leaves no staging directory, releases the write gate and adds no snapshot.
  await assert.rejects(
    a.snapshotter.snapshot({ agentId: 'ana', encrypt: [generateIdentity().recipient] }),
    (err: { code?: string; message?: string }) =>
      err.code === 'INVALID_INPUT' && /not encrypted/.test(err.message ?? ''),
  );
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.startsWith('.staging-')),
    [],
  );
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    [first.id],
  );
  const again = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.notEqual(again.id, first.id);
});

test('an encrypted repository refuses recipients other than its own (a key rotation would change nothing)', async (t) => {
  const a = repoAgent(t, { memories: 50, embeddings: 5, files: 3, commits: 2 });
  const k1 = generateIdentity();
  const k3 = generateIdentity();
  const identityPath = join(a.stateRoot, '..', 'k1.txt');
  writeFileSync(identityPath, `${k1.identity}\n`, { mode: 0o600 });
  const opts = { stateRoot: a.stateRoot, memdirRoot: a.memdirRoot, sqliteRoot: a.sqliteRoot, identityPath };
  const s = new LocalSnapshotter({ ...opts, store: 'repository', recipients: [k1.recipient] });
  const first = await s.snapshot({ agentId: 'ana' });
  assert.equal(first.encrypted, true);
  // the configured recipients changed to another key, or --encrypt names another one: refused, said why
  const rotated = new LocalSnapshotter({ ...opts, store: 'repository', recipients: [k3.recipient] });
  for (const attempt of [
    () => rotated.snapshot({ agentId: 'ana' }),
    () => s.snapshot({ agentId: 'ana', encrypt: [k1.recipient, k3.recipient] }),
  ])
    await assert.rejects(attempt(), (err: { code?: string; message?: string }) => {
      assert.equal(err.code, 'INVALID_INPUT');
      assert.match(err.message ?? '', /recipients cannot change/);
      return true;
    });
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [first.id],
    'nothing added',
  );
  // its own recipients, given again: taken
  assert.equal((await s.snapshot({ agentId: 'ana', encrypt: [k1.recipient] })).encrypted, true);
});

test('a second snapshot while a writer that ignores the write gate commits rows: a consistent point in time, restored exactly', async (t) => {
  const a = repoAgent(t);
  await a.snapshotter.snapshot({ agentId: 'ana', label: 'one' });
  const path = join(a.sqliteDir, 'long_term.sqlite');
  const count = () => {
    const db = new Database(path, { readonly: true });
    try {
      return (db.prepare("SELECT count(*) AS n FROM memories WHERE kind = 'racing'").get() as { n: number })
        .n;
    } finally {
      db.close();
    }
  };
  // a separate process committing one row per transaction, numbered, until it is stopped
  const writer = spawn(
    process.execPath,
    [
      '-e',
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new D(process.argv[1]); db.pragma('busy_timeout = 10000');
       const ins = db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (?, 'racing', ?, 0.5)");
       for (let i = 1; ; i++) ins.run(i, 'racing row ' + i + ' ' + 'x'.repeat(300));`,
      path,
    ],
    { stdio: 'ignore' },
  );
  t.after(() => writer.kill('SIGKILL'));
  while (count() < 200) await new Promise((r) => setTimeout(r, 20));
  const before = count();
  const second = await a.snapshotter.snapshot({ agentId: 'ana', label: 'two' });
  const after = count();
  writer.kill('SIGKILL');
  await new Promise((r) => writer.once('exit', r));
  const report = await a.snapshotter.verifySnapshot('ana', 'default', second.id, { deep: true });
  assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  await a.snapshotter.restore({ agentId: 'ana', snapshot: second.id });
  const db = new Database(path, { readonly: true });
  const rows = db
    .prepare("SELECT created_at AS i, content FROM memories WHERE kind = 'racing' ORDER BY created_at")
    .all() as Array<{ i: number; content: string }>;
  db.close();
  assert.ok(rows.length >= before && rows.length <= after, `${before} <= ${rows.length} <= ${after}`);
  rows.forEach((r, k) => {
    assert.equal(r.i, k + 1, 'every committed row up to the point in time, none after a gap');
    assert.equal(r.content, `racing row ${k + 1} ${'x'.repeat(300)}`);
  });
});

test('repository store through the CLI: snapshot, list, verify --id, check, damage found by check --read-data and verify, delete, pin, prune', async (t) => {
  const a = repoAgent(t);
  const full = ['--state-root', a.stateRoot, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
  const root = ['--state-root', a.stateRoot];
  const snap = async () => {
    const r = await runCli(['snapshot', '--agent', 'ana', '--json', ...full], { env: repoEnv });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { id: string };
  };
  const one = await snap();
  const two = await snap();
  let r = await runCli(['list', '--agent', 'ana', '--json', ...root], { env: repoEnv });
  const listed = JSON.parse(r.stdout) as { id: string; bundle_size_bytes: number; added_bytes: number }[];
  assert.deepEqual(
    listed.map((m) => m.id),
    [two.id, one.id],
  );
  // the text table: SIZE is the snapshot's data, ADDED what it stored (nothing new the second time)
  assert.ok(listed[1]!.added_bytes > 0 && listed[0]!.added_bytes === 0, JSON.stringify(listed));
  r = await runCli(['list', '--agent', 'ana', ...root], { env: repoEnv });
  assert.match(r.stdout, /^ID\s+CREATED\s+SIZE\s+ADDED\s+FLAGS\s+BY\s+LABEL$/m);
  for (const m of listed)
    assert.match(
      r.stdout,
      new RegExp(
        `^${m.id}\\s+\\S+\\s+${humanBytes(m.bundle_size_bytes)}\\s+${humanBytes(m.added_bytes)}\\s`,
        'm',
      ),
    );
  r = await runCli(['verify', '--agent', 'ana', '--id', one.id, '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await runCli(['check', '--read-data', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).ok, true);

  r = await runCli(['pin', '--agent', 'ana', '--id', one.id, ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['list', '--agent', 'ana', '--json', ...root], { env: repoEnv });
  assert.equal((JSON.parse(r.stdout) as { pinned: boolean }[])[1]!.pinned, true);

  // One flipped byte in the first snapshot's data: the structure check cannot see it, read-data and verify do.
  const packs = packFiles(a.stateRoot).sort();
  const victim = packs[0]!;
  const bytes = readFileSync(victim);
  bytes[100] = bytes[100]! ^ 0x40;
  writeFileSync(victim, bytes);
  r = await runCli(['check', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 0, 'structure alone is intact');
  r = await runCli(['check', '--read-data', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 2, r.stdout);
  const report = JSON.parse(r.stdout) as { damaged_snapshots: string[] };
  assert.ok(report.damaged_snapshots.includes(one.id), JSON.stringify(report));
  r = await runCli(['verify', '--agent', 'ana', '--id', one.id, '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 2, r.stdout);
  // A subset reads round(packs × pct / 100) packs, at least one (not a coin flip per pack, which read
  // none at all in a quarter of the runs); 100 % reads every pack and finds the damage.
  // the two ways of reading data are alternatives, as the synopsis shows
  r = await runCli(['check', '--read-data', '--read-data-subset', '10%', '--json', ...root], {
    env: repoEnv,
  });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /cannot be used with option '--read-data'/);
  r = await runCli(['check', '--read-data-subset', '1%', '--json', ...root], { env: repoEnv });
  const sub = JSON.parse(r.stdout) as { packs: number; packs_read: number };
  assert.ok(sub.packs >= 1, `${sub.packs} packs`);
  assert.equal(sub.packs_read, 1, r.stdout);
  r = await runCli(['check', '--read-data-subset', '100%', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 2, r.stdout);
  assert.equal((JSON.parse(r.stdout) as { packs_read: number }).packs_read, sub.packs);
  r = await runCli(['check', ...root], { env: repoEnv });
  assert.match(r.stdout, /^\d+ snapshot\(s\), \d+ pack\(s\), \d+ blob\(s\); 0 pack\(s\) read \(0 B\)$/m);
  bytes[100] = bytes[100]! ^ 0x40;
  writeFileSync(victim, bytes);

  r = await runCli(['delete', '--agent', 'ana', '--id', two.id, '--yes', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['delete', '--agent', 'ana', '--id', one.id, '--yes', ...root], { env: repoEnv });
  assert.equal(r.code, 6, 'the last snapshot is refused');
  const before = packFiles(a.stateRoot).length;
  r = await runCli(['prune', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stderr);
  const pruned = JSON.parse(r.stdout) as { snapshots: number };
  assert.equal(pruned.snapshots, 1);
  // a prune with nothing to do replaces nothing, and says so
  for (const dry of [[], ['--dry-run']]) {
    r = await runCli(['prune', '--json', ...dry, ...root], { env: repoEnv });
    const idle = JSON.parse(r.stdout) as { index_files_replaced: number; packs_removed: number };
    assert.deepEqual([idle.index_files_replaced, idle.packs_removed], [0, 0], r.stdout);
  }
  assert.ok(packFiles(a.stateRoot).length <= before);
  r = await runCli(['check', '--read-data', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout);
  r = await runCli(['verify', '--agent', 'ana', '--id', one.id, ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout);
});

test('auto: a new state root gets a repository; one holding bundles, or encrypting without an identity, keeps bundles; a repository, once there, is used', async (t) => {
  const fresh = sampleAgent(t, 'ana');
  const opts = { stateRoot: fresh.stateRoot, memdirRoot: fresh.memdirRoot, sqliteRoot: fresh.sqliteRoot };
  const encryptedOnly = await new LocalSnapshotter({
    ...opts,
    store: 'auto',
    recipients: [generateIdentity().recipient],
  }).snapshot({ agentId: 'ana' });
  assert.ok(
    encryptedOnly.bundle_path.endsWith('.tar.zst.age'),
    'recipients without an identity: an encrypted bundle',
  );
  const fresh2 = sampleAgent(t, 'ana');
  const newRoot = await new LocalSnapshotter({
    stateRoot: fresh2.stateRoot,
    memdirRoot: fresh2.memdirRoot,
    sqliteRoot: fresh2.sqliteRoot,
    store: 'auto',
  }).snapshot({ agentId: 'ana' });
  assert.equal(newRoot.bundle_format, 'nexo-memory-snapshot-v4', 'a new state root gets a repository');
  const a = sampleAgent(t);
  const bundle = await new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'bundles',
  }).snapshot({ agentId: 'ana' });
  const auto = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'auto',
  });
  const next = await auto.snapshot({ agentId: 'ana' });
  assert.ok(next.bundle_path.endsWith('.tar.zst'), next.bundle_path);
  assert.equal(existsSync(join(a.stateRoot, 'repository')), false);
  assert.deepEqual(
    (await auto.list('ana')).map((m) => m.id),
    [next.id, bundle.id],
  );
  const inRepo = await new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  }).snapshot({ agentId: 'ana' });
  const auto2 = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'auto',
  });
  const third = await auto2.snapshot({ agentId: 'ana' });
  assert.equal(third.bundle_format, 'nexo-memory-snapshot-v4', 'the repository, once it exists');
  assert.deepEqual(
    (await auto2.list('ana')).map((m) => m.id),
    [third.id, inRepo.id, next.id, bundle.id],
  );
});

test('a manifest read with keep is reused by the next read only while its stored bytes are the same (restore reads it for the id, before and under its locks)', async (t) => {
  const a = sampleAgent(
    t,
    'ana',
    { memories: 5, embeddings: 2, files: 1, commits: 1 },
    { store: 'repository' },
  );
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = await a.snapshotter.repository.open();
  const first = await loadSnapshot(repo, snap.id, undefined, true);
  assert.equal(await loadSnapshot(repo, snap.id), first, 'the same bytes: the kept parse');
  assert.notEqual(await loadSnapshot(repo, snap.id), first, 'kept for one read only');
  // a read that asks to keep it keeps the reused parse for the next (a restore by id reads it three
  // times: the id's check, the head, under the locks; a second parse raised its peak memory)
  const checked = await loadSnapshot(repo, snap.id, undefined, true);
  assert.equal(await loadSnapshot(repo, snap.id, undefined, true), checked);
  assert.equal(await loadSnapshot(repo, snap.id), checked, 'still the first parse, under the locks');
  // kept again, then the stored manifest replaced (another label, sealed anew): parsed anew
  await loadSnapshot(repo, snap.id, undefined, true);
  const file = join(a.stateRoot, 'repository', 'snapshots', snap.id);
  const m = JSON.parse(repo.decodeFile(readFileSync(file), snap.id).toString('utf8')) as Record<
    string,
    unknown
  >;
  m.label = 'changed';
  m.manifest_seal = manifestSeal(m);
  writeFileSync(file, repo.encodeFile(Buffer.from(JSON.stringify(m))));
  const again = await loadSnapshot(repo, snap.id);
  assert.equal(again.manifest.label, 'changed');
  assert.notEqual(again, first);
});

test('verify of a repository snapshot whose manifest cannot be read claims no check it did not run', async (t) => {
  const a = repoAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const file = join(a.stateRoot, 'repository', 'snapshots', snap.id);
  const bytes = readFileSync(file);
  const at = bytes.length >> 1;
  bytes[at] = bytes[at]! ^ 0x40;
  writeFileSync(file, bytes);
  const r = await a.snapshotter.verifySnapshot('ana', undefined, snap.id);
  assert.equal(r.status, 'damaged');
  assert.equal(r.manifest_ok, false);
  assert.equal(r.artifacts_checked, 0);
  assert.deepEqual(
    { sibling: r.sibling, layout_ok: r.layout_ok, size_ok: r.size_ok, schema_ok: r.schema_ok },
    { sibling: 'unreadable', layout_ok: false, size_ok: false, schema_ok: false },
  );
  // and an intact one says ok for each
  const good = await a.snapshotter.snapshot({ agentId: 'ana' });
  const v = await a.snapshotter.verifySnapshot('ana', undefined, good.id);
  assert.equal(v.status, 'verified', JSON.stringify(v.problems));
  assert.deepEqual(
    { sibling: v.sibling, layout_ok: v.layout_ok, size_ok: v.size_ok },
    { sibling: 'ok', layout_ok: true, size_ok: true },
  );
});

test("a repository snapshot's bundle_path, as snapshot and list report it, is accepted by verify(path) and restore({ bundle }) (the README's library example)", async (t) => {
  const a = repoAgent(t);
  const s = a.snapshotter;
  const meta = await s.snapshot({ agentId: 'ana', label: 'one' });
  assert.ok(meta.bundle_path.endsWith(`#${meta.id}`), meta.bundle_path);
  const report = await s.verify(meta.bundle_path, { deep: true });
  assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  assert.equal(report.snapshot_id, meta.id);
  const listed = (await s.list('ana'))[0]!;
  const dry = await s.restore({ agentId: 'ana', bundle: listed.bundle_path, dryRun: true });
  assert.equal(dry.from, meta.id);
  // a path that only looks like one names a file (there is none), and an id the repository lacks is NOT_FOUND
  const missing = `${meta.bundle_path.slice(0, -meta.id.length)}${'0'.repeat(8)}-0000-7000-8000-000000000000`;
  await assert.rejects(s.verify(missing), { code: 'NOT_FOUND' });
  await assert.rejects(s.verify(`${meta.bundle_path}x`), { code: 'IO' });
  // from another state root the path names no file: the message says how to reach the snapshot
  const elsewhere = new LocalSnapshotter({ stateRoot: join(a.root, 'other-state') });
  await assert.rejects(elsewhere.verify(meta.bundle_path), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'IO');
    assert.match(e.message, /a repository snapshot: give its state root or --repo, or use --agent and --id/);
    return true;
  });
});

test('auto: a first snapshot encrypted on request (--encrypt) without an identity takes a bundle, and the next ones work (a repository made encrypted refused them all)', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 20, embeddings: 5, files: 3, commits: 2 });
  const id = generateIdentity();
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'auto',
  });
  const first = await s.snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  assert.equal(first.encrypted, true);
  assert.ok(first.bundle_path.endsWith('.tar.zst.age'), first.bundle_path);
  assert.equal(existsSync(join(a.stateRoot, 'repository')), false);
  const again = await s.snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  const plain = await s.snapshot({ agentId: 'ana' });
  assert.ok(
    !again.bundle_path.includes('#') && !plain.bundle_path.includes('#'),
    'bundles, as the state root holds',
  );
  // the CLI, a new process on the same state root: the same
  const r = await runCli(['snapshot', '--agent', 'ana', '--json', '--encrypt', id.recipient, ...a.flags], {
    env: { NEXO_MEMORY_STORE_FORMAT: 'auto' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await s.list('ana')).length, 4);
});
