// A memdir whose git repository uses the sha256 object format: snapshots in both stores verify,
// restore (the history in a sha256 repository again, HEAD and uncommitted edits as they were), diff,
// export (redacted: no planted secret in any object of the history) and import. Until 2026-12-02 a
// repository snapshot of such a memdir was written and then could not be read (its manifest's refs were
// checked as sha1 ids), and a bundle's restore failed with BUNDLE_DAMAGED.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LocalSnapshotter } from '../src/index.js';
import { tempDir } from './helpers/env.js';

const SECRET = `ghp_${'b'.repeat(36)}`;

const git = (cwd: string, args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: '/dev/null' },
  });

/** An agent with only a memdir: a sha256 repository, three commits (one with a secret), an uncommitted edit. */
function sha256Agent(t: TestContext, store: 'bundles' | 'repository') {
  const root = tempDir(t);
  const memdir = join(root, 'memdir', 'ana');
  mkdirSync(memdir, { recursive: true });
  git(memdir, ['init', '-q', '--object-format=sha256', '-b', 'main']);
  writeFileSync(join(memdir, 'MEMORY.md'), 'one\n');
  git(memdir, ['add', '.']);
  git(memdir, ['commit', '-qm', 'one']);
  writeFileSync(join(memdir, 'notes.md'), `token ${SECRET}\n`);
  git(memdir, ['add', '.']);
  git(memdir, ['commit', '-qm', 'notes']);
  writeFileSync(join(memdir, 'MEMORY.md'), 'one\ntwo\n');
  git(memdir, ['commit', '-qam', 'two']);
  writeFileSync(join(memdir, 'MEMORY.md'), 'one\ntwo\nuncommitted\n');
  const s = new LocalSnapshotter({
    stateRoot: join(root, 'state'),
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    store,
  });
  return { root, memdir, s };
}

for (const store of ['bundles', 'repository'] as const) {
  test(`a sha256 memdir, ${store} store: snapshot, verify, restore, diff, export redacted and import`, async (t) => {
    const { root, memdir, s } = sha256Agent(t, store);
    const head = git(memdir, ['rev-parse', 'HEAD']).trim();
    assert.equal(head.length, 64);
    const snap = await s.snapshot({ agentId: 'ana' });
    assert.equal((await s.verifySnapshot('ana', undefined, snap.id)).status, 'verified');
    assert.equal((await s.verifySnapshot('ana', undefined, snap.id, { deep: true })).status, 'verified');

    // change the live memdir: a new commit, the edit committed away
    writeFileSync(join(memdir, 'MEMORY.md'), 'changed\n');
    git(memdir, ['commit', '-qam', 'changed']);
    const d = await s.diff({ agentId: 'ana', a: snap.id, b: 'live' });
    assert.equal(d.git_summary.commits_between, 1, JSON.stringify(d.git_summary));
    assert.equal(d.git_summary.commits_reverse, 0);
    assert.equal(d.git_summary.head_a, head);

    const r = await s.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
    assert.equal(r.git_reset_oid, head);
    assert.equal(git(memdir, ['rev-parse', '--show-object-format']).trim(), 'sha256');
    assert.equal(git(memdir, ['rev-parse', 'HEAD']).trim(), head);
    assert.equal(git(memdir, ['symbolic-ref', 'HEAD']).trim(), 'refs/heads/main');
    assert.equal(readFileSync(join(memdir, 'MEMORY.md'), 'utf8'), 'one\ntwo\nuncommitted\n');
    assert.equal(git(memdir, ['status', '--porcelain']).trim(), 'M MEMORY.md');
    git(memdir, ['fsck', '--no-dangling']);

    // a redacted export: no object of its history holds the secret
    const out = join(root, 'export.tar.zst');
    await s.export('ana', undefined, snap.id, out, { redact: true });
    const x = join(root, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-I', 'zstd', '-xf', out, '-C', x]);
    const clone = join(root, 'clone');
    git(root, ['clone', '-q', join(x, 'git', 'memdir.bundle'), clone]);
    assert.equal(git(clone, ['rev-parse', '--show-object-format']).trim(), 'sha256');
    assert.equal(git(clone, ['log', '--oneline']).trim().split('\n').length, 3);
    const objects = git(clone, ['cat-file', '--batch-all-objects', '--batch']);
    assert.ok(!objects.includes(SECRET), 'the secret is in no object of the exported history');
    assert.ok(objects.includes('[REDACTED:github-token]'));

    // an exact export imported as another agent: the same history, in sha256
    const exact = join(root, 'exact.tar.zst');
    await s.export('ana', undefined, snap.id, exact, { redact: false });
    await s.restore({ agentId: 'bob', bundle: exact, import: {} });
    const bob = join(root, 'memdir', 'bob');
    assert.equal(git(bob, ['rev-parse', 'HEAD']).trim(), head);
    assert.equal(git(bob, ['rev-parse', '--show-object-format']).trim(), 'sha256');
    // and stored into a repository as it is (import --store-only)
    const repository = new LocalSnapshotter({ stateRoot: join(root, 'state2'), store: 'repository' });
    const stored = await repository.storeBundle({ agentId: 'carl', bundle: exact });
    assert.equal((await repository.verifySnapshot('carl', undefined, stored.snapshot.id)).status, 'verified');
  });
}
