// Cleanup that fails never takes the place of an operation's outcome (stop 54): a scratch directory, a
// restore's staging, a leftover of an interrupted operation that cannot be removed, or a rollback that
// fails leaves the user the error that stopped the operation (or its success, with a warning), keeps
// nothing locked, and later operations work. A directory that cannot be removed is one holding a mount
// point (root only: skipped elsewhere); the other failures are injected (util/faults.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { IoError } from '../src/model/errors.js';
import { openDownload } from '../src/snapshotter/download.js';
import { startFixture } from './helpers/env.js';
import { agent, expected, fingerprint, mutate } from './helpers/restore.js';

/**
 * Makes `dir` impossible to remove (a tmpfs mounted on a directory inside it) while `fn` runs; skipped
 * without root. Unmounted before the test's own directories are removed.
 */
async function unremovableWhile(t: TestContext, dir: string, fn: () => Promise<void>): Promise<void> {
  const held = join(dir, 'held');
  mkdirSync(held, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', held], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a tmpfs here (needs root)');
    return;
  }
  try {
    await fn();
  } finally {
    execFileSync('umount', [held]);
  }
}

/** Runs `fn` with NEXO_MEMORY_FAULTS set to `faults`. */
async function withFaults<T>(faults: string, fn: () => Promise<T>): Promise<T> {
  process.env.NEXO_MEMORY_FAULTS = faults;
  try {
    return await fn();
  } finally {
    delete process.env.NEXO_MEMORY_FAULTS;
  }
}

const TWO_DAYS_AGO = new Date(Date.now() - 2 * 24 * 3600 * 1000);

test('a leftover that cannot be removed is a warning: the snapshot is taken and the other leftovers go', async (t) => {
  const warnings: string[] = [];
  const a = agent(t, 'ana', warnings);
  const stuck = join(a.sqliteDir, '.restore-01a24b00-0000-7000-8000-000000000001');
  const other = join(a.memdirRoot, '.ana.restore-01a24b00-0000-7000-8000-000000000002');
  mkdirSync(other);
  writeFileSync(join(other, 'x'), 'x');
  await unremovableWhile(t, stuck, async () => {
    for (const d of [stuck, other]) utimesSync(d, TWO_DAYS_AGO, TWO_DAYS_AGO);
    const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
    assert.equal(meta.agent_id, 'ana');
    assert.equal(existsSync(other), false, 'the leftover that could go went');
    assert.ok(existsSync(stuck));
    assert.ok(
      warnings.some((w) => w.startsWith(`could not remove staging of an interrupted restore: ${stuck}: `)),
      warnings.join('\n'),
    );
  });
});

test('a restore killed mid-swap whose staging cannot be removed: recover rolls it back, removes the journal, and the agent works again', async (t) => {
  const warnings: string[] = [];
  const a = agent(t, 'ana', warnings);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  mutate(a);
  const old = await fingerprint(a);
  const child = startFixture(
    t,
    'restore-once.ts',
    [a.stateRoot, a.memdirRoot, a.sqliteRoot, 'ana', snap.bundle_path],
    { NEXO_MEMORY_FAULTS: 'restore.swap.memdir.aside=kill' },
  );
  assert.equal(await child.exited, -1, `the restore was killed: ${child.errors()}`);
  const journal = a.snapshotter.layout.journalPath('default', 'ana');
  assert.ok(existsSync(journal), 'a journal is left');
  const staged = readdirSync(a.sqliteDir).filter((n) => n.startsWith('.restore-'));
  assert.equal(staged.length, 1, `the restore's database staging: ${staged}`);
  await unremovableWhile(t, join(a.sqliteDir, staged[0]!), async () => {
    const r = await a.snapshotter.recover('ana');
    assert.equal(r?.outcome, 'rolled_back');
    assert.equal(existsSync(journal), false, 'the journal goes once the rollback is done');
    assert.deepEqual(await fingerprint(a), old);
    // the write gate opens again: the next snapshot is taken (the staging left is a warning)
    await a.snapshotter.snapshot({ agentId: 'ana' });
    assert.ok(
      warnings.some((w) => w.startsWith('could not remove staging of an interrupted restore: ')),
      warnings.join('\n'),
    );
  });
});

test('a restore whose rollback fails too keeps its own error, says what finishes it, and recover does', async (t) => {
  const a = agent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  mutate(a);
  const old = await fingerprint(a);
  await withFaults('restore.state=EIO,restore.rollback=EIO', () =>
    assert.rejects(a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path }), (err: Error) => {
      assert.ok(err instanceof IoError, `${err.name}: ${err.message}`);
      assert.equal(err.errno, 'EIO', 'the error of the step that failed first');
      assert.match(err.message, /injected fault at restore\.state/);
      assert.match(
        err.message,
        /rolling the restore back failed as well \(.*injected fault at restore\.rollback/,
      );
      assert.match(err.message, /`nexo-memory recover --agent ana`/);
      return true;
    }),
  );
  assert.ok(existsSync(a.snapshotter.layout.journalPath('default', 'ana')), 'the journal stays for recover');
  assert.equal((await a.snapshotter.recover('ana'))?.outcome, 'rolled_back');
  assert.deepEqual(await fingerprint(a), old);
});

test('a committed restore whose cleanup fails succeeds with a warning, and the next operation finishes it', async (t) => {
  const a = agent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  mutate(a);
  const report = await withFaults('restore.cleanup=EIO', () =>
    a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path }),
  );
  assert.ok(
    report.warnings.some((w) => w.startsWith('the restore is done, but removing its staging failed')),
    report.warnings.join('\n'),
  );
  assert.deepEqual(await fingerprint(a), await expected(snap.bundle_path));
  const journal = a.snapshotter.layout.journalPath('default', 'ana');
  assert.ok(existsSync(journal), 'the committed journal is left');
  await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal(existsSync(journal), false, 'the next operation finished it');
  assert.deepEqual(await fingerprint(a), await expected(snap.bundle_path));
});

test('scratch directories that cannot be removed: a deep verify and a download still give their result, and nothing is an unhandled rejection', async (t) => {
  const a = agent(t, 'ana');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const rejections: unknown[] = [];
  const onRejection = (r: unknown) => rejections.push(r);
  process.on('unhandledRejection', onRejection);
  t.after(() => process.off('unhandledRejection', onRejection));
  await withFaults('scratch.remove=EIO', async () => {
    const v = await a.snapshotter.verifySnapshot('ana', 'default', meta.id, { deep: true });
    assert.equal(v.status, 'verified', JSON.stringify(v.problems));
    const d = await openDownload(a.snapshotter, 'ana', 'default', meta.id, { redact: false });
    let bytes = 0;
    for await (const c of d.stream) bytes += (c as Buffer).length;
    assert.equal(bytes, d.size);
    await new Promise((r) => setTimeout(r, 50)); // the stream's close removes the scratch
  });
  assert.deepEqual(rejections, []);
  // Left behind, and removed by this process's next operation that makes one (a daemon runs for weeks:
  // waiting for its exit would keep decrypted memory on the disk as long).
  const ours = () => readdirSync(tmpdir()).filter((n) => new RegExp(`^nexo-[a-z-]+-${process.pid}-`).test(n));
  assert.ok(ours().length >= 2, `the failed removals left their directories: ${ours().join(' ')}`);
  const v = await a.snapshotter.verifySnapshot('ana', 'default', meta.id, { deep: true });
  assert.equal(v.status, 'verified', JSON.stringify(v.problems));
  assert.deepEqual(ours(), [], 'the next one removed them, and its own');
});

test('a restore rolled back before it wrote the state leaves the state files as they were, byte for byte', async (t) => {
  const a = agent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  mutate(a); // writes extract_cursor.json compact, as a host's writer may
  const files = ['extract_cursor.json', 'dream_run.json'].map((f) => join(a.sqliteDir, f));
  const before = files.map((f) => (existsSync(f) ? readFileSync(f) : undefined));
  await withFaults('restore.state=EIO', () =>
    assert.rejects(a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path }), /restore\.state/),
  );
  assert.deepEqual(
    files.map((f) => (existsSync(f) ? readFileSync(f) : undefined)),
    before,
  );
});
