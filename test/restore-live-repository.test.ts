// What of the live git repository outlives a restore, in unusual but honest repositories (stop 63, a
// review): its config, but never the repository's format (a memdir re-made as sha256 since the
// snapshot, restored to a sha1 history, was left unreadable); the config of a repository whose `.git`
// is a pointer file; and the records of linked worktrees outside the memdir (they were no longer git
// repositories after a restore); a restore over a merge in progress says so; a snapshot of a partial
// clone is refused (the bundle store's fetched the objects it lacked from the promisor). Both stores.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisorOf } from '../src/git/own-repository.js';
import { sampleAgent } from './helpers/env.js';

const SMALL = { files: 3, commits: 3, memories: 5, embeddings: 2, concepts: 2, compactions: 1 };
const ID = ['-c', 'user.name=agent', '-c', 'user.email=agent@example.com'];

function git(dir: string, args: string[]): string {
  return execFileSync('git', ['-C', dir, ...ID, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

for (const store of ['bundles', 'repository'] as const) {
  test(`a restore keeps the live config but the snapshot's object format: a memdir re-made as sha256 since gets its sha1 history back, readable (${store})`, async (t) => {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
    const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
    execFileSync('rm', ['-rf', join(a.memdir, '.git')]);
    git(a.memdir, ['init', '-q', '--object-format=sha256', '-b', 'main']);
    git(a.memdir, ['add', '-A']);
    git(a.memdir, ['commit', '-qm', 're-made as sha256']);
    git(a.memdir, ['config', 'remote.origin.url', 'https://example.com/memory.git']);
    await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
    assert.equal(git(a.memdir, ['rev-parse', '--show-object-format']).trim(), 'sha1');
    assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), head, 'the history is readable');
    git(a.memdir, ['fsck', '--no-progress']);
    assert.equal(
      git(a.memdir, ['config', 'remote.origin.url']).trim(),
      'https://example.com/memory.git',
      'the live settings carried over',
    );
    // the next snapshot of the restored agent works
    await a.snapshotter.snapshot({ agentId: 'ana' });
  });

  test(`a restore keeps a linked worktree outside the memdir a git repository (${store})`, async (t) => {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    const side = join(a.root, 'side');
    git(a.memdir, ['worktree', 'add', '-q', '-b', 'side', side, 'HEAD~1']);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
    writeFileSync(join(a.memdir, 'MEMORY.md'), 'changed\n');
    const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
    assert.ok(
      r.warnings.some((w) => /linked worktrees/.test(w)),
      JSON.stringify(r.warnings),
    );
    assert.equal(git(side, ['rev-parse', '--abbrev-ref', 'HEAD']).trim(), 'side');
    assert.equal(git(side, ['status', '--porcelain']), '', 'the worktree is clean, as it was');
    assert.match(git(a.memdir, ['worktree', 'list']), /side/);
  });
}

test('a restore keeps the live config of a repository whose .git is a pointer file (allow_external_git)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository', allowExternalGit: true });
  const separate = join(a.root, 'separate.git');
  renameSync(join(a.memdir, '.git'), separate);
  writeFileSync(join(a.memdir, '.git'), `gitdir: ${separate}\n`);
  git(a.memdir, ['config', 'remote.origin.url', 'https://example.com/memory.git']);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
  assert.equal(git(a.memdir, ['config', 'remote.origin.url']).trim(), 'https://example.com/memory.git');
});

test('a restore over a merge in progress says that the merge state is not restored (it stays in the backup)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  git(a.memdir, ['checkout', '-q', '-b', 'other', 'HEAD~1']);
  writeFileSync(join(a.memdir, 'MEMORY.md'), 'theirs\n');
  git(a.memdir, ['commit', '-qam', 'theirs']);
  git(a.memdir, ['checkout', '-q', 'main']);
  writeFileSync(join(a.memdir, 'MEMORY.md'), 'ours\n');
  git(a.memdir, ['commit', '-qam', 'ours']);
  assert.throws(() => git(a.memdir, ['merge', '-q', 'other']), 'a conflict');
  const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
  assert.ok(
    r.warnings.some((w) => /had a merge in progress: the restored one has not/.test(w)),
    JSON.stringify(r.warnings),
  );
});

test('a snapshot of a partial clone (a promisor remote) is refused (GIT) as other repositories reaching outside the memdir are; the live repository untouched', async (t) => {
  for (const store of ['bundles', 'repository'] as const) {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    git(a.memdir, ['config', 'core.repositoryformatversion', '1']);
    git(a.memdir, ['config', 'remote.origin.url', 'https://example.com/memory.git']);
    git(a.memdir, ['config', 'remote.origin.promisor', 'true']);
    git(a.memdir, ['config', 'extensions.partialClone', 'origin']);
    const config = readFileSync(join(a.memdir, '.git', 'config'), 'utf8');
    await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'GIT', err.message);
      assert.match(err.message, /is a partial clone \(promisor remote origin\).*git fetch --refetch origin/);
      assert.match(err.message, /allow_external_git/);
      return true;
    });
    assert.equal(readFileSync(join(a.memdir, '.git', 'config'), 'utf8'), config);
    assert.deepEqual(await a.snapshotter.list('ana'), [], store);
  }
  // what is read of a config: sections and keys as git spells them, in any case, comments ignored
  assert.equal(promisorOf('[remote "up"]\n\turl = x\n\tpromisor = yes\n'), 'up');
  assert.equal(promisorOf('[Extensions]\n\tpartialClone = "up"\n'), 'up');
  assert.equal(promisorOf('[remote "up"]\n\t# promisor = true\n\tpromisor = false\n'), undefined);
  assert.equal(promisorOf('[core]\n\tbare = false\n'), undefined);
});
