// A git "delta bomb" (a pack of a few KB whose deltas expand to far more) never costs more than the
// fuse on git allows (git.ts GitFuse): a snapshot whose history holds one is refused by verify (exit 2)
// and restore (BUNDLE_DAMAGED, the agent unchanged, no scratch repository left), with a message naming
// the limit it hit and the variable that raises it; in both stores. The bombs are built byte by byte
// (helpers/delta-bomb.ts) and planted on a branch of the live repository, so the snapshot carries them
// as any history; the limits are set low here so the bombs stay small. A legitimate history with a
// 12 MB file verifies and restores under the default fuse (every other test's git runs under it too).

import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { git } from '../scripts/sample-agent.js';
import { gitFuse } from '../src/git/git.js';
import { deltaBomb, plantBomb } from './helpers/delta-bomb.js';
import { type Agent, runCli, sampleAgent, setEnv, tempDir } from './helpers/env.js';

const MiB = 1024 * 1024;

/** A temporary directory of the test's own for git's scratch repositories (os.tmpdir() reads TMPDIR). */
function ownTmp(t: TestContext): string {
  const dir = join(tempDir(t), 'tmp');
  mkdirSync(dir);
  setEnv(t, { TMPDIR: dir });
  return dir;
}

type Err = Error & { code?: string; exitCode?: number };

/** verify reports the snapshot damaged, and restore (and import) refuse it, each with `message`. */
async function assertRefused(
  a: Agent,
  store: 'bundles' | 'repository',
  snap: { id: string; bundle_path: string },
  message: RegExp,
  tmp: string,
): Promise<void> {
  const before = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const memory = readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8');
  const report = await a.snapshotter.verify(snap.bundle_path);
  assert.equal(report.status, 'damaged', JSON.stringify(report.problems));
  assert.ok(
    report.problems.some((p) => message.test(p.message)),
    `verify names the limit: ${JSON.stringify(report.problems)}`,
  );
  const where = store === 'bundles' ? { bundle: snap.bundle_path } : { snapshot: snap.id };
  for (const req of [
    { agentId: 'ana', ...where, autoPreSnapshot: false },
    ...(store === 'bundles' ? [{ agentId: 'clone', bundle: snap.bundle_path, import: {} }] : []),
  ])
    await assert.rejects(a.snapshotter.restore(req), (err: Err) => {
      assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, message);
      return true;
    });
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), before, 'the live agent is unchanged');
  assert.equal(readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'), memory);
  assert.deepEqual(readdirSync(a.memdirRoot), ['ana'], 'no clone was made');
  assert.deepEqual(readdirSync(a.sqliteRoot), ['ana'], 'no directory of the clone is left');
  assert.deepEqual(readdirSync(tmp), [], 'no scratch repository is left');
  const staging = readdirSync(a.stateRoot, { recursive: true }).filter((f) =>
    /restore-staging/.test(String(f)),
  );
  assert.deepEqual(staging, [], 'no restore staging is left');
}

for (const store of ['bundles', 'repository'] as const) {
  test(`a delta bomb whose object is over the object limit: verify and restore refuse it, naming NEXO_MEMORY_GIT_MAX_OBJECT_BYTES; raised, it verifies (${store})`, async (t) => {
    const a = sampleAgent(t, 'ana', { files: 2, commits: 2, memories: 5 }, { store });
    const bomb = deltaBomb(1, 32 * MiB);
    assert.ok(bomb.pack.length < 4096, `a pack of ${bomb.pack.length} bytes`);
    plantBomb(a.memdir, bomb);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
    const tmp = ownTmp(t);
    setEnv(t, { NEXO_MEMORY_GIT_MAX_OBJECT_BYTES: String(8 * MiB) });
    await assertRefused(
      a,
      store,
      snap,
      /needs 3355443[67] bytes, over the limit of 8388608 bytes on one git object .*raise NEXO_MEMORY_GIT_MAX_OBJECT_BYTES/,
      tmp,
    );
    if (store === 'bundles') {
      const r = await runCli(['verify', snap.bundle_path]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stdout + r.stderr, /NEXO_MEMORY_GIT_MAX_OBJECT_BYTES/);
    }
    // trusted: raised above the object, the same snapshot verifies
    process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES = String(64 * MiB);
    const report = await a.snapshotter.verify(snap.bundle_path);
    assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  });
}

// The CPU limit in the bundle store only: both stores' gits get the same fuse (the object limit above
// shows that each place applies it), and each run of this test spends the limit's seconds several times.
test('a delta bomb of many objects each under the object limit: verify, restore and import stop it at the CPU limit, naming NEXO_MEMORY_GIT_CPU_SECONDS', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 2, memories: 5 }, { store: 'bundles' });
  // 1 GiB once expanded: ~5 s of index-pack's CPU, against a limit of 1 s (+1 s for the pack's MiB)
  const bomb = deltaBomb(64, 16 * MiB);
  plantBomb(a.memdir, bomb);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const tmp = ownTmp(t);
  setEnv(t, { NEXO_MEMORY_GIT_CPU_SECONDS: '1' });
  await assertRefused(
    a,
    'bundles',
    snap,
    /git used its limit of 2 s of CPU on the git history .*raise NEXO_MEMORY_GIT_CPU_SECONDS/,
    tmp,
  );
});

test('a legitimate history with a 12 MB file, in two versions, verifies and restores under the default fuse', async (t) => {
  for (const store of ['bundles', 'repository'] as const) {
    const agentId = store === 'bundles' ? 'ana' : 'bob';
    const a = sampleAgent(t, agentId, { files: 2, commits: 2, memories: 5 }, { store });
    // the second version changes one line in 10,000, as an edit would (a delta against the first)
    const line = (i: number, v: number) =>
      `- note ${i}: the agent learnt fact ${(i * 7919 + (i % 9973 === 0 ? v : 0)) % 100003}\n`;
    const big = (v: number) => Array.from({ length: 300_000 }, (_, i) => line(i, v)).join('');
    // in the history only (removed since): the fuse is on git, the memory files are the snapshot's own
    const file = join(a.memdir, 'archive.md');
    writeFileSync(file, big(0));
    git(a.memdir, ['add', 'archive.md']);
    git(a.memdir, ['commit', '-qm', 'archive']);
    writeFileSync(file, big(1));
    const bytes = readFileSync(file).length;
    assert.ok(bytes > 12_000_000, `${bytes} bytes`);
    git(a.memdir, ['commit', '-qam', 'archive again']);
    git(a.memdir, ['rm', '-q', 'archive.md']);
    git(a.memdir, ['commit', '-qm', 'archive moved out']);
    const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
    const snap = await a.snapshotter.snapshot({ agentId });
    const report = await a.snapshotter.verify(snap.bundle_path);
    assert.equal(report.status, 'verified', JSON.stringify(report.problems));
    git(a.memdir, ['reset', '-q', '--hard', 'HEAD~3']);
    const where = store === 'bundles' ? { bundle: snap.bundle_path } : { snapshot: snap.id };
    const r = await a.snapshotter.restore({ agentId, ...where, autoPreSnapshot: false });
    assert.equal(r.git_reset_oid, head);
    assert.equal(git(a.memdir, ['cat-file', '-s', 'HEAD~1:archive.md']).trim(), String(bytes));
  }
});

test('the limits from the environment: 0 turns one off; a tiny object limit, a fraction, a blank or odd spelling of 0 or a typo never does', (t) => {
  const fuse = (bytes: string | undefined, seconds: string | undefined) => {
    for (const [k, v] of [
      ['NEXO_MEMORY_GIT_MAX_OBJECT_BYTES', bytes],
      ['NEXO_MEMORY_GIT_CPU_SECONDS', seconds],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    return gitFuse(3 * MiB);
  };
  const before = {
    b: process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES,
    s: process.env.NEXO_MEMORY_GIT_CPU_SECONDS,
  };
  t.after(() => {
    for (const [k, v] of [
      ['NEXO_MEMORY_GIT_MAX_OBJECT_BYTES', before.b],
      ['NEXO_MEMORY_GIT_CPU_SECONDS', before.s],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  assert.deepEqual(fuse(undefined, undefined), { maxObjectBytes: 512 * MiB, cpuSeconds: 63 });
  assert.deepEqual(fuse('0', '0'), { maxObjectBytes: 0, cpuSeconds: 0 });
  assert.deepEqual(fuse(' 0\n', '\t0 '), { maxObjectBytes: 0, cpuSeconds: 0 });
  assert.deepEqual(fuse('1000000', '2'), { maxObjectBytes: 4 * MiB, cpuSeconds: 5 });
  assert.deepEqual(fuse(String(64 * MiB), '90'), { maxObjectBytes: 64 * MiB, cpuSeconds: 93 });
  // a pack's size adds 1 s a MiB, at most 9 minutes: a forged size in a manifest lifts nothing more
  delete process.env.NEXO_MEMORY_GIT_CPU_SECONDS;
  assert.equal(gitFuse(100 * 1024 * MiB).cpuSeconds, 60 + 540);
  // only a whole number in digits counts (util/env-number.ts, stop 47): Number() read each of the
  // first six as 0, which turned the fuse off
  for (const typo of [' ', '', '0x0', '0.0', '-0', '0b0', '0.5', '2.2', 'abc', '-5', '60s', '1e999'])
    assert.deepEqual(fuse(typo, typo), { maxObjectBytes: 512 * MiB, cpuSeconds: 63 }, typo);
});
