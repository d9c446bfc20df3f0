// A snapshot whose repository lock is lost between its last lock check and the save of its manifest (a
// pause past the lock staleness: a VM suspended, SIGSTOP; stop 47). Another process judged the lock
// stale, removed it and pruned the snapshot's new packs: the snapshot must not be published damaged.
// The window is opened in process (publishHooks.beforeSave), on a real local repository; the "other
// host" is a second snapshotter on the same state root that removes the lock file and prunes.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Handle, listNames } from '../src/backend/backend.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { LocalSnapshotter } from '../src/index.js';
import { lockRepository } from '../src/repository/locks.js';
import { publishHooks } from '../src/snapshotter/repository.js';
import { type Agent, runCli, sampleAgent } from './helpers/env.js';

const other = (a: Agent, lockTimeoutMs = 5_000) =>
  new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs,
    store: 'repository',
  });

/** Removes every repository lock (what a host that judged them stale does). */
function removeLocks(a: Agent): number {
  const dir = join(a.stateRoot, 'repository', 'locks');
  const names = readdirSync(dir);
  for (const n of names) rmSync(join(dir, n));
  return names.length;
}

test('a snapshot whose lock was lost before its manifest, and whose new packs a prune removed, publishes nothing and fails REPOSITORY_LOCKED', async (t) => {
  const warnings: string[] = [];
  const a = sampleAgent(
    t,
    'ana',
    { memories: 10, embeddings: 2, files: 2, commits: 1 },
    { store: 'repository', onWarning: (m) => warnings.push(m) },
  );
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'topics', 'big.md'), randomBytes(400 * 1024).toString('base64'));
  let pruned: Awaited<ReturnType<LocalSnapshotter['prune']>> | undefined;
  publishHooks.beforeSave = async () => {
    publishHooks.beforeSave = undefined;
    assert.equal(removeLocks(a), 1, 'the snapshot held its shared lock');
    pruned = await other(a).prune();
  };
  t.after(() => {
    publishHooks.beforeSave = undefined;
  });
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'REPOSITORY_LOCKED', err.message);
    assert.match(err.message, /lock was lost while snapshot \S+ was written/);
    assert.match(err.message, /nothing was published; run the snapshot again/);
    return true;
  });
  assert.ok(
    pruned && pruned.packs_removed >= 1,
    `the prune removed the new packs: ${JSON.stringify(pruned)}`,
  );
  // nothing of the failed snapshot is left: only the first is listed, no other manifest is stored
  const s = other(a);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [first.id],
  );
  const manifests: string[] = [];
  for await (const o of new LocalBackend(join(a.stateRoot, 'repository')).list('snapshots'))
    manifests.push(o.name);
  assert.deepEqual(manifests, [first.id], 'the failed snapshot left no manifest');
  const check = await s.check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  assert.deepEqual(check.unlisted_snapshots, []);
  assert.equal(check.snapshots, 1);
  // the next snapshot works
  const again = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal((await s.check({ readData: true })).ok, true);
  assert.notEqual(again.id, first.id);
  assert.deepEqual(warnings, []);
});

test('a snapshot whose lock was lost before its manifest, but whose data are all still stored, is kept with a warning', async (t) => {
  const warnings: string[] = [];
  const a = sampleAgent(
    t,
    'ana',
    { memories: 10, embeddings: 2, files: 2, commits: 1 },
    { store: 'repository', onWarning: (m) => warnings.push(m) },
  );
  await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'topics', 'big.md'), randomBytes(100 * 1024).toString('base64'));
  publishHooks.beforeSave = async () => {
    publishHooks.beforeSave = undefined;
    assert.equal(removeLocks(a), 1);
  };
  t.after(() => {
    publishHooks.beforeSave = undefined;
  });
  const second = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.match(warnings[0]!, /lock was lost while it was written.*so it is kept/);
  const s = other(a);
  assert.equal((await s.list('ana')).length, 2);
  const check = await s.check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  assert.ok(existsSync(join(a.stateRoot, 'repository')));
  assert.ok((await s.list('ana')).some((m) => m.id === second.id));
});

/** A lock of another host (its pid means nothing here), last refreshed `ageMs` ago. */
function plantLock(a: Agent, name: string, ageMs: number, operation = 'snapshot'): number {
  const at = Date.now() - ageMs;
  writeFileSync(
    join(a.stateRoot, 'repository', 'locks', name),
    JSON.stringify({
      exclusive: false,
      operation,
      host: 'host-d',
      host_id: 'another-boot/pid:[1]',
      pid: 4242,
      created_at_ms: at,
      refreshed_at_ms: at,
    }),
  );
  return at;
}

test('prune reports each stale lock of another host it removed (JSON and text); REPOSITORY_LOCKED says when a live one turns stale', async (t) => {
  const a = sampleAgent(
    t,
    'ana',
    { memories: 5, embeddings: 1, files: 1, commits: 1 },
    { store: 'repository' },
  );
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const cli = (args: string[]) =>
    runCli([...args, '--state-root', a.stateRoot], { env: { NEXO_MEMORY_STORE_FORMAT: 'repository' } });

  // a live lock of another host: prune is refused, told when that lock becomes stale
  const live = plantLock(a, 'c'.repeat(64), 10 * 60 * 1000);
  const busy = await other(a, 0)
    .prune()
    .then(
      () => assert.fail('prune ran beside a live lock'),
      (e: Error & { code?: string; details?: Record<string, unknown> }) => e,
    );
  assert.equal(busy.code, 'REPOSITORY_LOCKED');
  const staleAt = new Date(live + 30 * 60 * 1000).toISOString();
  assert.ok(busy.message.includes(`stale after ${staleAt} (in 20 minutes)`), busy.message);
  assert.equal(busy.details?.stale_after_ms, live + 30 * 60 * 1000);
  rmSync(join(a.stateRoot, 'repository', 'locks', 'c'.repeat(64)));

  // stale ones (40 minutes without a refresh) are removed, and said so
  const old = plantLock(a, 'd'.repeat(64), 40 * 60 * 1000);
  const json = await cli(['prune', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(report.stale_locks_removed.length, 1, json.stdout);
  const [r] = report.stale_locks_removed;
  assert.equal(r.lock, `locks/${'d'.repeat(64)}`);
  assert.equal(r.host, 'host-d');
  assert.equal(r.pid, 4242);
  assert.equal(r.operation, 'snapshot');
  assert.equal(r.refreshed_at_ms, old);
  assert.ok(r.age_ms >= 40 * 60 * 1000 && r.age_ms < 41 * 60 * 1000, String(r.age_ms));
  plantLock(a, 'e'.repeat(64), 45 * 60 * 1000, 'import');
  const text = await cli(['prune']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    new RegExp(
      `removed stale shared lock locks/${'e'.repeat(64)} of import \\(pid 4242 on host-d\\): last refreshed \\S+, 45 min ago`,
    ),
  );
  // none left, none reported
  const again = JSON.parse((await cli(['prune', '--json'])).stdout);
  assert.deepEqual(again.stale_locks_removed, []);
  assert.deepEqual(readdirSync(join(a.stateRoot, 'repository', 'locks')), []);
});

test('an import whose lock was lost before its manifest, and whose new packs a prune removed, publishes nothing either (stop 55)', async (t) => {
  const a = sampleAgent(
    t,
    'ana',
    { memories: 10, embeddings: 2, files: 2, commits: 1 },
    { store: 'repository' },
  );
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  // a bundle of content the repository does not hold yet (its packs are new)
  writeFileSync(join(a.memdir, 'topics', 'big.md'), randomBytes(400 * 1024).toString('base64'));
  const bundles = new LocalSnapshotter({
    stateRoot: join(a.root, 'host-b'),
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'bundles',
  });
  const bundle = await bundles.snapshot({ agentId: 'ana' });
  let pruned: Awaited<ReturnType<LocalSnapshotter['prune']>> | undefined;
  publishHooks.beforeSave = async () => {
    publishHooks.beforeSave = undefined;
    assert.equal(removeLocks(a), 1, 'the import held its shared lock');
    pruned = await other(a).prune();
  };
  t.after(() => {
    publishHooks.beforeSave = undefined;
  });
  // before stop 55 an import saved its manifest without checking its lock: listed, and damaged
  await assert.rejects(
    a.snapshotter.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'REPOSITORY_LOCKED', err.message);
      assert.match(err.message, /nothing was published/);
      return true;
    },
  );
  assert.ok(pruned && pruned.packs_removed >= 1, JSON.stringify(pruned));
  const s = other(a);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [first.id],
  );
  assert.equal((await s.check({ readData: true })).ok, true);
  // the import again: stored
  assert.equal(
    (await a.snapshotter.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' })).stored,
    'new',
  );
  assert.equal((await s.check({ readData: true })).ok, true);
});

test('a repository lock this process left behind (its removal failed) does not block its own exclusive lock; one it holds does (stop 62 review)', async () => {
  const inner = new MemoryBackend();
  let failRemove = true;
  const backend = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (key === 'remove')
        return async (h: Handle) => {
          if (failRemove && h.type === 'locks') {
            failRemove = false;
            throw new Error('the store failed the removal (injected)');
          }
          return inner.remove(h);
        };
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as MemoryBackend;
  const held = await lockRepository(backend, false, 'snapshot', 0);
  await assert.rejects(
    lockRepository(backend, true, 'prune', 0),
    { code: 'REPOSITORY_LOCKED' },
    'held: it blocks',
  );
  await assert.rejects(held.release(), /injected/);
  assert.equal((await listNames(backend, 'locks')).length, 1, 'the lock is still in the store');
  // before: REPOSITORY_LOCKED until the lock went stale by age, 30 minutes on
  const prune = await lockRepository(backend, true, 'prune', 0);
  assert.equal(prune.staleRemoved?.length, 1);
  await prune.release();
  assert.deepEqual(await listNames(backend, 'locks'), []);
});
