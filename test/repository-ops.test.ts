// Operations on the repository store that must never lose data: a long-lived snapshotter (the daemon)
// after a prune, repository locks (dead holders, reused pids, a lock lost while held), snapshots and
// manifests left unlisted by a kill, snapshot and prune from two processes at once, a full disk during
// snapshot and prune, and retention (gc) over repository snapshots.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { LocalSnapshotter } from '../src/index.js';
import { lockRepository } from '../src/repository/locks.js';
import { type Agent, sampleAgent } from './helpers/env.js';

function repoAgent(
  t: Parameters<typeof sampleAgent>[0],
  opts: Parameters<typeof sampleAgent>[2] = {},
  agentId = 'ana',
): Agent {
  return sampleAgent(
    t,
    agentId,
    { memories: 300, embeddings: 50, files: 10, commits: 3, ...opts },
    { store: 'repository' },
  );
}

/** A fresh snapshotter on the same roots (a new process's view: no cached repository handle). */
const freshOf = (a: Agent) =>
  new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });

/** Every listed snapshot of `agent` verifies (through a fresh snapshotter); returns their ids. */
async function allVerify(a: Agent, agent = 'ana'): Promise<string[]> {
  const s = freshOf(a);
  const ids: string[] = [];
  for (const m of await s.list(agent)) {
    const r = await s.verifySnapshot(agent, 'default', m.id);
    assert.equal(r.status, 'verified', `${m.id}: ${JSON.stringify(r.problems)}`);
    ids.push(m.id);
  }
  return ids;
}

test('a long-lived snapshotter sees what a prune removed: its next snapshot and check are right', async (t) => {
  const a = repoAgent(t);
  const s = a.snapshotter;
  const alt = join(a.memdir, 'topics', 'alt.md');
  // Incompressible content that dominates the first pack, so prune rewrites that pack.
  const contentA = randomBytes(600 * 1024).toString('base64');
  writeFileSync(alt, contentA);
  const one = await s.snapshot({ agentId: 'ana', label: 'A' });
  writeFileSync(alt, randomBytes(600 * 1024).toString('base64'));
  await s.snapshot({ agentId: 'ana', label: 'B' });
  await s.delete('ana', 'default', one.id);
  const pruned = await s.prune();
  assert.ok(pruned.packs_removed + pruned.packs_rewritten > 0, JSON.stringify(pruned));
  // The same snapshotter (one cached repository handle, as in the daemon) checks and snapshots again.
  const check = await s.check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  writeFileSync(alt, contentA); // content whose data the prune removed
  await s.snapshot({ agentId: 'ana', label: 'A again' });
  assert.equal((await allVerify(a)).length, 2);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);
});

test('repository locks: a dead holder, a reused pid and a zombie do not block; a lost lock is detected', async (t) => {
  const backend = new MemoryBackend();
  const now = Date.now();
  const lockOf = (pid: number, extra: object = {}) =>
    Buffer.from(
      JSON.stringify({
        exclusive: false,
        operation: 'snapshot',
        host: hostname(),
        pid,
        created_at_ms: now,
        refreshed_at_ms: now,
        ...extra,
      }),
    );
  // A live process of this host holds a pid; the lock names that pid but another process start:
  // the pid was reused after the lock's process died.
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => sleeper.kill('SIGKILL'));
  await new Promise((r) => sleeper.once('spawn', r));
  await backend.save({ type: 'locks', name: 'b'.repeat(64) }, lockOf(sleeper.pid!, { start: '1' }));
  const ex = await lockRepository(backend, true, 'prune', 0);
  await ex.release();
  // A zombie: a process that exited but whose parent never reaped it still answers kill(pid, 0).
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 60'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const zombiePid = Number((await new Promise<Buffer>((r) => parent.stdout.once('data', r))).toString());
  for (let i = 0; i < 200 && !readFileSync(`/proc/${zombiePid}/stat`, 'utf8').includes(') Z '); i++)
    await new Promise((r) => setTimeout(r, 10));
  await backend.save({ type: 'locks', name: 'c'.repeat(64) }, lockOf(zombiePid, { exclusive: true }));
  const sh = await lockRepository(backend, false, 'snapshot', 0);
  await sh.release();
  // A lock removed while held (judged stale by another host) is lost: its holder finds out.
  const held = await lockRepository(backend, false, 'snapshot', 0);
  await held.check();
  await backend.remove({ type: 'locks', name: held.name });
  await assert.rejects(held.check(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'REPOSITORY_LOCKED');
    assert.match(err.message, /lost/);
    return true;
  });
  await held.release();
});

test('prune finishes interrupted forgets and snapshots: a manifest without a listing entry goes, with its data', async (t) => {
  const a = repoAgent(t);
  const s = a.snapshotter;
  const alt = join(a.memdir, 'topics', 'alt.md');
  writeFileSync(alt, randomBytes(300 * 1024).toString('base64'));
  const one = await s.snapshot({ agentId: 'ana' });
  writeFileSync(alt, randomBytes(300 * 1024).toString('base64'));
  const two = await s.snapshot({ agentId: 'ana' });
  // A forget killed after removing the listing entry (or a snapshot killed before writing it).
  const backend = new LocalBackend(join(a.stateRoot, 'repository'));
  await backend.remove({ type: 'listing', name: one.id });
  let check = await freshOf(a).check();
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  assert.deepEqual(check.unlisted_snapshots, [one.id]);
  const pruned = await freshOf(a).prune();
  assert.equal(pruned.snapshots, 1);
  assert.equal(pruned.unlisted_removed, 1);
  assert.ok(pruned.bytes_freed > 300 * 1024, JSON.stringify(pruned));
  check = await freshOf(a).check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  assert.deepEqual(check.unlisted_snapshots, []);
  assert.deepEqual(await allVerify(a), [two.id]);
});
