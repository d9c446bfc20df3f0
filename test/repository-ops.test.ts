// Operations on the repository store that must never lose data: a long-lived snapshotter (the daemon)
// after a prune, repository locks (dead holders, reused pids, a lock lost while held), snapshots and
// manifests left unlisted by a kill, snapshot and prune from two processes at once, a full disk during
// snapshot and prune, and retention (gc) over repository snapshots. Kill -9 at random instants of every
// operation is in repository-kill-trials.test.ts (its own file, so it runs beside this one).

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { concurrentRounds, trialAgent } from '../scripts/trials/driver.js';
import type { Backend, ObjectType } from '../src/backend/backend.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { remoteFactories } from '../src/backend/open.js';
import { LocalSnapshotter, type RetentionTickReport, RetentionWorker, WriteGate } from '../src/index.js';
import { checkRepository } from '../src/repository/check.js';
import { lockRepository } from '../src/repository/locks.js';
import { Repository } from '../src/repository/repository.js';
import { forgetSnapshot } from '../src/repository/snapshots.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { type Agent, builtScript, runCli, sampleAgent, startFixture, tempDir } from './helpers/env.js';

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

function packCount(a: Agent): number {
  const dir = join(a.stateRoot, 'repository', 'packs');
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).reduce((n, d) => n + readdirSync(join(dir, d)).length, 0);
}

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

test('a gated writer that rewrites and prunes its git history as soon as the gate opens: the snapshot still stores the history it recorded', async (t) => {
  const a = repoAgent(t);
  const s = freshOf(a);
  await s.snapshot({ agentId: 'ana' });
  const gitIn = (args: string[]) =>
    execFileSync('git', args, {
      cwd: a.memdir,
      encoding: 'utf8',
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' },
    });
  writeFileSync(join(a.memdir, 'MEMORY.md'), 'recorded\n');
  gitIn(['commit', '-qam', 'recorded']);
  const recorded = gitIn(['rev-parse', 'HEAD']).trim();

  // The repository is busy when the snapshot wants it (after the gate): the writer's batch runs then.
  const holder = startFixture(t, 'hold-repo-lock.ts', [join(a.stateRoot, 'repository'), 'exclusive']);
  await holder.ready;
  const snapping = s.snapshot({ agentId: 'ana' });
  snapping.catch(() => {});
  // the capture has begun (its copies are in staging): the gate is the snapshot's until it ends
  const staged = () =>
    readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).some(
      (n) =>
        n.startsWith('.staging-') &&
        existsSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana', n, 'sqlite')),
    );
  while (!staged()) await new Promise((r) => setTimeout(r, 5));
  await WriteGate.forAgent(a.stateRoot, 'ana').write(async () => {
    writeFileSync(join(a.memdir, 'MEMORY.md'), 'rewritten\n');
    gitIn(['commit', '-qa', '--amend', '-m', 'rewritten']);
    gitIn(['reflog', 'expire', '--expire=now', '--all']);
    gitIn(['prune', '--expire=now']);
  });
  assert.notEqual(
    spawnSync('git', ['cat-file', '-e', recorded], { cwd: a.memdir }).status,
    0,
    'the recorded commit is gone from the live repository',
  );
  await holder.killGroup('SIGKILL');
  const meta = await snapping; // packing the live repository failed here: "bad object"
  assert.equal(meta.git_oid, recorded);
  assert.deepEqual(await allVerify(a), [meta.id, (await s.list('ana'))[1]!.id]);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);
});

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
  const packs = join(a.stateRoot, 'repository', 'packs');
  const packBytes = () =>
    readdirSync(packs, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .reduce((n, e) => n + statSync(join(e.parentPath, e.name)).size, 0);
  const before = packBytes();
  const pruned = await s.prune();
  assert.ok(pruned.packs_removed + pruned.packs_rewritten > 0, JSON.stringify(pruned));
  assert.equal(pruned.bytes_freed, before - packBytes(), 'bytes_freed is what the packs no longer take');
  // The same snapshotter (one cached repository handle, as in the daemon) checks and snapshots again.
  const check = await s.check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  writeFileSync(alt, contentA); // content whose data the prune removed
  await s.snapshot({ agentId: 'ana', label: 'A again' });
  assert.equal((await allVerify(a)).length, 2);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);
});

test('a long-lived snapshotter checks the index files as they are now: one damaged after it read it is found', async (t) => {
  const a = repoAgent(t);
  const s = a.snapshotter;
  await s.snapshot({ agentId: 'ana' });
  assert.equal((await s.check()).ok, true, 'the index is read and checked');
  const dir = join(a.stateRoot, 'repository', 'index');
  const file = join(dir, readdirSync(dir)[0]!);
  const bytes = readFileSync(file);
  bytes[20]! ^= 0x01;
  writeFileSync(file, bytes);
  const check = await s.check();
  assert.equal(check.ok, false, 'the same snapshotter finds the damage a new process finds');
  assert.match(JSON.stringify(check.problems), /does not hash to its name/);
  assert.equal((await freshOf(a).check()).ok, false);
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
  // The child exits only once its parent shell has become `sleep` (which never reaps): a child that
  // exited before the exec could be reaped by the shell and leave no zombie (seen once in CI).
  const child = 'until grep -qx sleep /proc/$PPID/comm; do sleep 0.01; done';
  const parent = spawn('sh', ['-c', `sh -c '${child}' & echo $!; exec sleep 60`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const zombiePid = Number((await new Promise<Buffer>((r) => parent.stdout.once('data', r))).toString());
  const state = () => /\) (\S) /.exec(readFileSync(`/proc/${zombiePid}/stat`, 'utf8'))?.[1];
  for (let i = 0; i < 1000 && state() !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(state(), 'Z', 'the child is a zombie');
  await backend.save({ type: 'locks', name: 'c'.repeat(64) }, lockOf(zombiePid, { exclusive: true }));
  const sh = await lockRepository(backend, false, 'snapshot', 0);
  await sh.release();
  // A lock removed while held (judged stale by another host) is lost: its holder finds out.
  const held = await lockRepository(backend, false, 'snapshot', 0);
  await held.check();
  await backend.remove({ type: 'locks', name: held.name });
  await assert.rejects(held.check(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'REPOSITORY_LOCKED');
    // which of the two ways it was lost: the object is gone (not a refresh that came too late)
    assert.match(err.message, new RegExp(`lost: its object locks/${held.name} is no longer in `));
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

test('gc applies retention to repository snapshots, then prunes; a busy repository is not waited for', async (t) => {
  const a = repoAgent(t);
  const s = a.snapshotter;
  const alt = join(a.memdir, 'topics', 'alt.md');
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    writeFileSync(alt, randomBytes(200 * 1024).toString('base64'));
    ids.push((await s.snapshot({ agentId: 'ana', label: `s${i}` })).id);
  }
  await s.pin('ana', 'default', ids[0]!);
  const packsBefore = packCount(a);

  const dry = await s.gc({ agentId: 'ana', policy: { keepCount: 1 }, dryRun: true });
  assert.deepEqual(
    dry.agents[0]!.decisions.map((d) => [d.action, d.reasons]),
    [
      ['keep', ['newest', 'keep-count']],
      ['delete', []],
      ['delete', []],
      ['keep', ['pinned']],
    ],
  );
  assert.equal(dry.prune?.status, 'dry-run');
  assert.ok(
    dry.prune && 'bytes_freed' in dry.prune && dry.prune.bytes_freed > 400 * 1024,
    JSON.stringify(dry.prune),
  );
  assert.equal((await s.list('ana')).length, 4, 'a dry run deletes nothing');
  assert.equal(packCount(a), packsBefore);

  // The daemon's worker sweeps through the same method; a sweep asked for (the API's POST /v1/gc) is
  // told to onTick, where the daemon logs it, as the loop's are.
  const told: RetentionTickReport[] = [];
  const worker = new RetentionWorker(s, {
    policy: { keepCount: 1 },
    intervalMs: 60_000,
    onTick: (r) => told.push(r),
  });
  const swept = await worker.tick();
  assert.deepEqual(told, [swept]);
  assert.equal(swept.bundles_deleted, 2);
  assert.equal(swept.errors, 0);
  assert.equal(swept.prune?.status, 'pruned');
  assert.ok(swept.prune && 'bytes_freed' in swept.prune && swept.prune.bytes_freed > 400 * 1024);
  assert.ok(swept.bytes_freed >= swept.prune.bytes_freed);
  assert.ok(packCount(a) < packsBefore);
  assert.deepEqual(await allVerify(a), [ids[3], ids[0]]);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);

  // Another process holds the repository lock: forgetting still happens, the prune is reported busy.
  writeFileSync(alt, randomBytes(200 * 1024).toString('base64'));
  const next = await s.snapshot({ agentId: 'ana' });
  const holder = startFixture(t, 'hold-repo-lock.ts', [join(a.stateRoot, 'repository'), 'shared']);
  await holder.ready;
  const busy = await s.gc({ agentId: 'ana', policy: { keepCount: 1 } });
  assert.equal(busy.prune?.status, 'busy');
  assert.match(
    busy.prune && 'skipped' in busy.prune ? busy.prune.skipped : '',
    /^busy: shared lock of test-holder/,
  );
  assert.equal(busy.errors, 0);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [next.id, ids[0]],
    'the snapshot no rule keeps was forgotten',
  );
  // A sweep that may wait for the lock (the daemon's, stop 56: its own scheduled snapshots, always
  // overlapping on a busy host, otherwise starved its prune) waits; its holder killed, the lock is stale
  // at once, and the prune runs.
  let waited = false;
  const after = await s.gc({
    agentId: 'ana',
    policy: { keepCount: 1 },
    pruneWaitMs: 60_000,
    aroundPrune: async (prune) => {
      const p = prune();
      const first = await Promise.race([
        p.then(() => 'answered'),
        new Promise((r) => setTimeout(() => r('waiting'), 500)),
      ]);
      waited = first === 'waiting';
      await holder.killGroup('SIGKILL');
      return p;
    },
  });
  assert.ok(waited, 'the prune waited for the lock instead of answering busy');
  assert.equal(after.prune?.status, 'pruned');
  assert.ok(after.prune && 'bytes_freed' in after.prune && after.prune.bytes_freed > 100 * 1024);
  assert.deepEqual(await allVerify(a), [next.id, ids[0]]);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);
});

/**
 * A real backend whose next `op` on objects of `type` waits until the test releases it: an operation
 * paused in the middle, holding whatever locks it holds (a slow store makes the same holder).
 */
function pausable(inner: Backend) {
  let armed: { op: 'list' | 'stat'; type: ObjectType; reached: () => void; gate: Promise<void> } | undefined;
  const wait = async (op: 'list' | 'stat', type: ObjectType) => {
    const a = armed;
    if (a?.op !== op || a.type !== type) return;
    armed = undefined;
    a.reached();
    await a.gate;
  };
  const backend = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'list')
        return async function* (type: ObjectType) {
          await wait('list', type);
          yield* target.list(type);
        };
      if (prop === 'stat')
        return async (h: { type: ObjectType; name: string }) => {
          await wait('stat', h.type);
          return target.stat(h);
        };
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return {
    backend,
    /** Pauses the next such call: `reached` once it is waiting, `release` lets it go on. */
    arm(op: 'list' | 'stat', type: ObjectType) {
      let reached!: () => void;
      let release!: () => void;
      const r = new Promise<void>((res) => {
        reached = res;
      });
      armed = { op, type, reached, gate: new Promise<void>((res) => (release = res)) };
      return { reached: r, release };
    },
  };
}

test('a dry run of gc or prune takes only what a reader takes: a snapshot of another process runs while it holds them; a real prune still excludes it', async (t) => {
  const a = repoAgent(t);
  const alt = join(a.memdir, 'topics', 'alt.md');
  for (let i = 0; i < 3; i++) {
    writeFileSync(alt, randomBytes(200 * 1024).toString('base64'));
    await a.snapshotter.snapshot({ agentId: 'ana' });
  }
  // This process's snapshotter reaches the repository through a backend the test can pause (as an
  // s3:// store whose objects are the repository's directory); another process snapshots the same
  // agent into the same repository, waiting at most 1 s for any lock.
  const p = pausable(new LocalBackend(join(a.stateRoot, 'repository')));
  const real = remoteFactories.s3;
  remoteFactories.s3 = async () => async () => p.backend;
  t.after(() => {
    remoteFactories.s3 = real;
  });
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
    repo: 's3://paused/repository',
  });
  const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
  writeFileSync(config, 'snapshot:\n  lock_timeout_secs: 1\n');
  const otherSnapshot = async () => {
    writeFileSync(alt, randomBytes(200 * 1024).toString('base64'));
    return runBuiltCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', config, '--json'], {
      env: { NEXO_MEMORY_STORE_FORMAT: 'repository' },
    });
  };

  // The API's preview (GET /v1/agents/:agent/retention): gc's dry run, paused first while it reads the
  // agent's listing (where a sweep holds the agent's locks), then in its prune's dry run.
  const before = (await s.list('ana')).length;
  const atAgent = p.arm('stat', 'listing');
  const dry = s.gc({ agentId: 'ana', policy: { keepCount: 1 }, dryRun: true });
  await atAgent.reached;
  const one = await otherSnapshot();
  assert.equal(one.code, 0, `a snapshot beside the dry run's agent step: ${one.stderr}`);
  const atPrune = p.arm('list', 'packs');
  atAgent.release();
  await atPrune.reached;
  const dryLocks = readdirSync(join(a.stateRoot, 'repository', 'locks')).map(
    (n) =>
      JSON.parse(readFileSync(join(a.stateRoot, 'repository', 'locks', n), 'utf8')) as { exclusive: boolean },
  );
  assert.deepEqual(
    dryLocks.map((l) => l.exclusive),
    [false],
    'the dry run holds a shared lock',
  );
  const two = await otherSnapshot();
  assert.equal(two.code, 0, `a snapshot beside the dry run's prune: ${two.stderr}`);
  atPrune.release();
  const report = await dry;
  assert.equal(report.errors, 0, JSON.stringify(report));
  assert.equal(report.prune?.status, 'dry-run');
  const decisions = report.agents[0]!.decisions;
  assert.ok(decisions.length >= 3);
  assert.equal(decisions.filter((d) => d.action === 'delete').length, decisions.length - 1);
  assert.equal(
    (await s.list('ana')).length,
    before + 2,
    'the dry run deleted nothing; both snapshots are there',
  );

  // `prune --dry-run` alike; beside a holder of a repository lock, a pack no index knows may be that
  // writer's: it is reported in flight, not as removed.
  const stray = 'ab'.repeat(32);
  mkdirSync(join(a.stateRoot, 'repository', 'packs', 'ab'), { recursive: true });
  writeFileSync(join(a.stateRoot, 'repository', 'packs', 'ab', stray), randomBytes(4096));
  const alone = await s.prune({ dryRun: true });
  assert.equal(alone.packs_unindexed_removed, 1);
  assert.equal(alone.in_flight, undefined);
  const holder = startFixture(t, 'hold-repo-lock.ts', [join(a.stateRoot, 'repository'), 'shared']);
  await holder.ready;
  const beside = await s.prune({ dryRun: true });
  assert.equal(beside.packs_unindexed_removed, 0);
  assert.equal(beside.bytes_freed, alone.bytes_freed - 4096);
  assert.equal(beside.in_flight?.packs_unindexed, 1);
  assert.equal(beside.in_flight?.bytes, 4096);
  assert.match(beside.in_flight?.locks.join() ?? '', /^shared lock of test-holder/);
  await holder.killGroup('SIGKILL');

  // The real prune still excludes: paused under its lock, a snapshot of another process gives up.
  const atRealPrune = p.arm('list', 'packs');
  const pruning = s.prune();
  await atRealPrune.reached;
  const three = await otherSnapshot();
  assert.equal(three.code, 4, three.stderr);
  assert.match(three.stderr, /REPOSITORY_LOCKED|exclusive lock of prune/);
  atRealPrune.release();
  const pruned = await pruning;
  assert.equal(pruned.packs_unindexed_removed, 1);
  assert.equal((await freshOf(a).check({ readData: true })).ok, true);
});

test('gc over bundles and repository snapshots of one agent applies one policy; gc --all finds agents only the repository knows', async (t) => {
  const a = repoAgent(t);
  const bundles = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'bundles',
  });
  const b1 = await bundles.snapshot({ agentId: 'ana' });
  const b2 = await bundles.snapshot({ agentId: 'ana' });
  const r1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const r2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  // The repository knows an agent whose snapshot directory is gone (e.g. one imported on another host).
  const bob = repoAgent(t, {}, 'bob');
  const bobS = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: bob.memdirRoot,
    sqliteRoot: bob.sqliteRoot,
    store: 'repository',
  });
  await bobS.snapshot({ agentId: 'bob' });
  await bobS.snapshot({ agentId: 'bob' });
  rmSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'bob'), { recursive: true });

  const r = await runCli(['gc', '--all', '--keep-count', '2', '--json', '--state-root', a.stateRoot]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as RetentionTickReport;
  assert.deepEqual(
    report.agents.map((x) => x.agent_id),
    ['ana', 'bob'],
  );
  const ana = report.agents[0]!;
  assert.deepEqual(
    ana.decisions.map((d) => [d.id, d.action]),
    [
      [r2.id, 'keep'],
      [r1.id, 'keep'],
      [b2.id, 'delete'],
      [b1.id, 'delete'],
    ],
  );
  assert.equal(report.agents[1]!.decisions.length, 2);
  assert.equal(report.prune?.status, 'pruned');
  assert.deepEqual(
    (await freshOf(a).list('ana')).map((m) => m.id),
    [r2.id, r1.id],
  );
  const human = await runCli(['gc', '--all', '--state-root', a.stateRoot]);
  assert.match(human.stdout, /^repository: removed \d+ pack\(s\), rewrote \d+/m);
});

test('snapshot and prune started at once from two processes, prune removing data the snapshot brings back: both succeed, nothing is lost', async (t) => {
  const ctx = await trialAgent(tempDir(t), { memories: 600, embeddings: 100, files: 15 });
  ctx.runOp = [builtScript('scripts/trials/run-op.ts')];
  const rounds = await concurrentRounds(ctx, { rounds: 3, seed: 11 });
  assert.equal(rounds.length, 3);
});

/** Runs `fn` with a tmpfs of `size` mounted at `dir` (created); `resize` changes its size. */
async function withTmpfs(dir: string, size: string, fn: (resize: (size: string) => void) => Promise<void>) {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  try {
    await fn((next) => execFileSync('mount', ['-o', `remount,size=${next}`, dir]));
  } finally {
    execFileSync('umount', ['-l', dir]);
  }
}

/** Fills the file system of `dir` with one file until it is full; returns its path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    closeSync(fd);
  }
  return path;
}

const noSpace = (err: Error & { code?: string }) => {
  assert.equal(err.code, 'IO', err.message);
  assert.match(err.message, /no space left on device/);
  return true;
};

test('a full disk (a real small tmpfs) during snapshot and during prune: a clear error, nothing half-visible, check clean afterwards', async (t) => {
  const a = repoAgent(t, { memories: 2000 });
  const s = a.snapshotter;
  const repoDir = join(a.stateRoot, 'repository');
  await withTmpfs(repoDir, '256k', async (resize) => {
    const alt = join(a.memdir, 'topics', 'alt.md');
    writeFileSync(alt, randomBytes(600 * 1024).toString('base64'));

    // Snapshot: its packs do not fit.
    await assert.rejects(s.snapshot({ agentId: 'ana' }), noSpace);
    assert.deepEqual(await s.list('ana'), [], 'nothing listed');
    assert.deepEqual(
      readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')),
      [],
      'no staging left',
    );
    let check = await freshOf(a).check({ readData: true });
    assert.equal(check.ok, true, JSON.stringify(check.problems));
    assert.equal(check.snapshots, 0);

    // With room, snapshots work; then the disk fills up again and prune must rewrite a pack.
    resize('16m');
    const one = await s.snapshot({ agentId: 'ana' });
    writeFileSync(alt, randomBytes(600 * 1024).toString('base64'));
    const two = await s.snapshot({ agentId: 'ana' });
    await s.delete('ana', 'default', one.id);
    // Full but for a few blocks: the lock fits, the rewritten pack does not.
    const filler = fill(repoDir);
    truncateSync(filler, statSync(filler).size - 32 * 1024);
    await assert.rejects(s.prune(), noSpace);
    // A snapshot into the full repository fails the same way.
    writeFileSync(alt, randomBytes(600 * 1024).toString('base64'));
    await assert.rejects(s.snapshot({ agentId: 'ana' }), noSpace);
    truncateSync(filler, 0);
    check = await freshOf(a).check({ readData: true });
    assert.equal(check.ok, true, JSON.stringify(check.problems));
    assert.deepEqual(await allVerify(a), [two.id]);

    // Room again: prune completes and removes what the failed operations left.
    rmSync(filler);
    const pruned = await s.prune();
    assert.ok(pruned.packs_rewritten + pruned.packs_removed + pruned.packs_unindexed_removed > 0);
    check = await freshOf(a).check({ readData: true });
    assert.equal(check.ok, true, JSON.stringify(check.problems));
    assert.deepEqual(await allVerify(a), [two.id]);
  });
});

test('check and prune of an encrypted repository open it with --decrypt-identity when no identity is configured; a dry run speaks in the conditional', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 20, embeddings: 5, files: 2, commits: 2 });
  const id = join(a.root, 'id.txt');
  let r = await runCli(['keygen', '--age', '--out', id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const recipient = execFileSync('age-keygen', ['-y', id], { encoding: 'utf8' }).trim();
  const config = join(a.root, 'nexo.yaml');
  writeFileSync(
    config,
    `memory:\n  snapshot:\n    store:\n      format: repository\n    encryption:\n      recipients: ["${recipient}"]\n`,
  );
  const root = ['--state-root', a.stateRoot, '--config', config];
  const env = { env: { NEXO_MEMORY_STORE_FORMAT: 'repository' } };
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', config, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { encrypted: boolean }).encrypted, true);
  r = await runCli(['check', '--read-data', ...root], env);
  assert.equal(r.code, 7, 'no identity: ENCRYPTION');
  r = await runCli(['check', '--read-data', '--decrypt-identity', id, ...root, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const checked = JSON.parse(r.stdout) as { ok: boolean; packs_read: number };
  assert.ok(checked.ok && checked.packs_read > 0, r.stdout);
  r = await runCli(['prune', '--dry-run', '--decrypt-identity', id, ...root], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /^would remove 0 pack\(s\) and rewrite 0; 0 B would be freed of .+ \(1 snapshot\(s\) kept\)$/m,
  );
  r = await runCli(['prune', '--decrypt-identity', id, ...root], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^removed 0 pack\(s\), rewrote 0; 0 B freed of /m);
});

test('check beside a snapshot and forgets reports no damage: a snapshot published while check reads, a snapshot forgotten between its listing and its manifest (stop 62 review)', async (t) => {
  const a = sampleAgent(
    t,
    'ana',
    { files: 3, commits: 2, memories: 20, embeddings: 5, concepts: 5, compactions: 2 },
    {
      store: 'repository',
    },
  );
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await a.snapshotter.snapshot({ agentId: 'ana' })).id);
  const [early, late] = [ids[0]!, ids[1]!];
  const dir = join(a.stateRoot, 'repository');
  const plain = await Repository.open(new LocalBackend(dir));
  const fired: string[] = [];
  const inner = new LocalBackend(dir);
  // the backend check reads through, running each hook once as check reaches its call
  const hooks: Array<{ op: 'list' | 'load'; type: ObjectType; name?: string; run: () => Promise<void> }> = [
    {
      op: 'list',
      type: 'snapshots',
      run: async () => {
        // new data (a new table's rows): blobs no index file read before this moment holds
        const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
        db.exec(
          `CREATE TABLE extra (v TEXT); INSERT INTO extra VALUES ('${randomBytes(4096).toString('hex')}')`,
        );
        db.close();
        ids.push((await a.snapshotter.snapshot({ agentId: 'ana' })).id);
        await forgetSnapshot(plain, early); // forgotten between check's reads of the listing and the manifests
      },
    },
    { op: 'load', type: 'snapshots', name: late, run: () => forgetSnapshot(plain, late) },
  ];
  const hooked = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (key !== 'list' && key !== 'load') return typeof value === 'function' ? value.bind(target) : value;
      return (...args: unknown[]) => {
        const type = key === 'list' ? (args[0] as ObjectType) : (args[0] as { type: ObjectType }).type;
        const name = key === 'list' ? undefined : (args[0] as { name: string }).name;
        const i = hooks.findIndex(
          (h) => h.op === key && h.type === type && (h.name === undefined || h.name === name),
        );
        const call = () => (value as (...a: unknown[]) => AsyncIterable<unknown>).apply(target, args);
        if (i < 0) return call();
        const [hook] = hooks.splice(i, 1);
        return (async function* () {
          await hook!.run();
          fired.push(`${key} ${type}`);
          yield* call();
        })();
      };
    },
  }) as Backend;
  const report = await checkRepository(await Repository.open(hooked));
  assert.deepEqual(fired, ['list snapshots', 'load snapshots'], 'both hooks ran inside check');
  assert.deepEqual(report.problems, []);
  assert.deepEqual(report.damaged_snapshots, []);
  assert.equal(report.snapshots, 2, 'the third and the new one: the first two were forgotten meanwhile');
  // and a check after it all agrees
  assert.deepEqual((await checkRepository(plain, { readData: true })).problems, []);
});

test('cat and find beside a forget and its prune: a snapshot deleted while cat waited for the lock is NOT_FOUND, never damage; find leaves it out (stop 62 review)', async (t) => {
  const a = sampleAgent(
    t,
    'ana',
    { files: 3, commits: 2, memories: 20, embeddings: 5, concepts: 5, compactions: 2 },
    {
      store: 'repository',
      lockTimeoutMs: 60_000,
    },
  );
  const dir = join(a.stateRoot, 'repository');
  const backend = new LocalBackend(dir);
  const outcome = (p: Promise<string>) =>
    p.catch((err: Error & { code?: string }) => err.code ?? err.message);
  // find first (it searches the snapshot kept), then cat (whose prune removes every pack)
  for (const op of ['find', 'cat'] as const) {
    const gone = (await a.snapshotter.snapshot({ agentId: 'ana' })).id;
    await a.snapshotter.snapshot({ agentId: 'ana' });
    // what the command reads before it takes the repository lock: find the listing, cat the manifest
    const first = join(dir, op === 'cat' ? 'snapshots' : 'listing', gone);
    utimesSync(first, new Date(0), statSync(first).mtime); // its next read sets its access time (relatime)
    const held = await lockRepository(backend, true, 'prune', 0); // a prune's lock
    const run = outcome(
      op === 'cat'
        ? a.snapshotter.cat('ana', undefined, gone, 'memdir/MEMORY.md').then(() => 'read')
        : a.snapshotter
            .find({ agentId: 'ana', text: 'a' })
            .then((r) => `found in ${r.snapshots.map((s) => s.snapshot_id)}`),
    );
    for (const deadline = Date.now() + 60_000; statSync(first).atimeMs === 0; ) {
      assert.ok(Date.now() < deadline, `${op} never read ${first}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await forgetSnapshot({ backend }, gone);
    // the prune, under the lock the test holds: for cat, every pack
    if (op === 'cat')
      for (const p of readdirSync(join(dir, 'packs'))) rmSync(join(dir, 'packs', p), { recursive: true });
    await held.release();
    const got = await run;
    if (op === 'cat') assert.equal(got, 'NOT_FOUND');
    else assert.ok(got.startsWith('found in ') && !got.includes(gone), got);
  }
});
