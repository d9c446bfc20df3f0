// The pre-mutating-tool hook (auto_pre_mutating_tool): a snapshot labelled with the tool before a
// memory-mutating call (created_by auto-pre-mutating-tool; the call rolls back exactly from it), at
// most one per interval per agent — in this process and across processes — skipped calls counted by
// reason, concurrent calls sharing one snapshot, failures returned not thrown, the config keys, and
// retention's own rule for these anchors.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import {
  CONFIG_DEFAULTS,
  LocalSnapshotter,
  METRIC,
  MetricsObserver,
  PRE_MUTATING_TOOL_CREATED_BY,
  PreMutatingToolSnapshotAdapter,
  preMutatingToolHookFromConfig,
  SnapshotMetrics,
} from '../src/index.js';
import { runTs, sampleAgent, startFixture } from './helpers/env.js';
import { sample } from './helpers/prom.js';

function setup(t: Parameters<typeof sampleAgent>[0], minIntervalSecs = 3600) {
  const metrics = new SnapshotMetrics();
  const a = sampleAgent(
    t,
    'ana',
    { memories: 400, files: 10 },
    { store: 'repository', observers: [new MetricsObserver(metrics)] },
  );
  const hook = new PreMutatingToolSnapshotAdapter(a.snapshotter, { minIntervalSecs });
  const skipped = async (reason: string) =>
    sample(await metrics.render(), METRIC.skippedTotal, { agent: 'ana', tenant: 'default', reason }) ?? 0;
  const taken = async () =>
    sample(await metrics.render(), METRIC.snapshotTotal, {
      agent: 'ana',
      tenant: 'default',
      outcome: 'ok',
    }) ?? 0;
  return { a, hook, metrics, skipped, taken };
}

/**
 * The hook of a runtime that starts now on the agent of `a` (its own snapshotter, nothing in memory),
 * with `opts` added to the snapshotter's options.
 */
function newRuntime(
  a: { stateRoot: string; memdirRoot: string; sqliteRoot: string },
  minIntervalSecs: number,
  opts: Partial<ConstructorParameters<typeof LocalSnapshotter>[0]> = {},
): PreMutatingToolSnapshotAdapter {
  return new PreMutatingToolSnapshotAdapter(
    new LocalSnapshotter({
      stateRoot: a.stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store: 'repository',
      ...opts,
    }),
    { minIntervalSecs },
  );
}

const oneRow = (sqliteDir: string, n: number) => {
  const db = new Database(join(sqliteDir, 'long_term.sqlite'));
  db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (?, 'fact', ?, 0.5)").run(
    n,
    `tool call ${n}`,
  );
  db.close();
};

test('before a mutating tool: a snapshot labelled with the tool; within the interval none, counted as skipped', async (t) => {
  const { a, hook, skipped, taken } = setup(t);
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first, JSON.stringify(first));
  assert.equal(first.snapshot.created_by, PRE_MUTATING_TOOL_CREATED_BY);
  assert.equal(first.snapshot.label, 'auto:pre-mutating-tool-memory_write');
  assert.equal(first.snapshot.redactions_applied, false);
  oneRow(a.sqliteDir, 1);
  const second = await hook.snapshotBeforeTool('ana', undefined, 'memory_delete');
  assert.deepEqual(second, { ok: true, skipped: 'interval' });
  assert.equal(await skipped('interval'), 1);
  assert.equal(await taken(), 1);
  const listed = await a.snapshotter.list('ana');
  assert.deepEqual(
    listed.map((m) => m.id),
    [first.snapshot.id],
  );
  // The anchor holds the memory as it was before the call, and verifies.
  assert.equal((await a.snapshotter.verifySnapshot('ana', 'default', first.snapshot.id)).status, 'verified');
  // Another agent is throttled on its own.
  const bob = sampleAgent(t, 'bob', { memories: 100 });
  const s2 = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: bob.memdirRoot,
    sqliteRoot: bob.sqliteRoot,
    store: 'repository',
  });
  const r = await new PreMutatingToolSnapshotAdapter(s2, { minIntervalSecs: 3600 }).snapshotBeforeTool(
    'bob',
    undefined,
    'memory_write',
  );
  assert.ok(r.ok && 'snapshot' in r);
});

test('the interval holds across processes: another runtime of the same agent takes none inside it', async (t) => {
  const { a, hook } = setup(t);
  const first = await hook.snapshotBeforeTool('ana', 'default', 'memory_write');
  assert.ok(first.ok && 'snapshot' in first);
  const args = [a.stateRoot, a.memdirRoot, a.sqliteRoot, 'ana', 'memory_write'];
  let r = await runTs(join('test', 'fixtures', 'pre-tool-once.ts'), [...args, '3600']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ok: true, skipped: 'interval' });
  // With interval 0 every call snapshots, in any process.
  r = await runTs(join('test', 'fixtures', 'pre-tool-once.ts'), [...args, '0']);
  assert.equal(r.code, 0, r.stderr);
  const other = JSON.parse(r.stdout) as { ok: boolean; snapshot?: { id: string; created_by: string } };
  assert.equal(other.snapshot?.created_by, PRE_MUTATING_TOOL_CREATED_BY);
  assert.equal((await a.snapshotter.list('ana')).length, 2);
  // This process learns of the other's snapshot from the record beside the lock, not from memory.
  const fresh = newRuntime(a, 3600);
  assert.deepEqual(await fresh.snapshotBeforeTool('ana', undefined, 'x'), { ok: true, skipped: 'interval' });
  // Concurrent calls of a runtime that starts now: the first finds the other's snapshot, and the calls
  // that waited for it were skipped for the same reason (`in_flight` says a snapshot was being taken).
  const metrics = new SnapshotMetrics();
  const newcomer = newRuntime(a, 3600, { observers: [new MetricsObserver(metrics)] });
  const burst = await Promise.all(
    Array.from({ length: 5 }, () => newcomer.snapshotBeforeTool('ana', undefined, 'memory_write')),
  );
  assert.deepEqual(burst, Array(5).fill({ ok: true, skipped: 'interval' }));
  const text = await metrics.render();
  const labels = { agent: 'ana', tenant: 'default' };
  assert.equal(sample(text, METRIC.skippedTotal, { ...labels, reason: 'interval' }), 5);
  assert.equal(sample(text, METRIC.skippedTotal, { ...labels, reason: 'in_flight' }) ?? 0, 0);
});

test('inside the interval a call is skipped at once while another process holds the agent lock (a fresh runtime too)', async (t) => {
  const { a, hook } = setup(t);
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first);
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  // a runtime that starts now knows nothing in memory: it reads the record beside the lock, without the lock
  const fresh = newRuntime(a, 3600, { lockTimeoutMs: 2000 });
  assert.deepEqual(await fresh.snapshotBeforeTool('ana', undefined, 'memory_edit'), {
    ok: true,
    skipped: 'interval',
  });
  // a call that is due still waits for the lock, and fails with CONCURRENT when it is not given up
  const due = newRuntime(a, 0, { lockTimeoutMs: 300 });
  const r = await due.snapshotBeforeTool('ana', undefined, 'memory_edit');
  assert.equal(r.ok, false);
  assert.equal((r as { code?: string }).code, 'CONCURRENT');
  assert.equal((await a.snapshotter.list('ana')).length, 1);
});

test('after the interval the next call snapshots again; concurrent calls share one snapshot', async (t) => {
  const { a, hook, skipped } = setup(t, 1);
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first);
  await new Promise((r) => setTimeout(r, 1100)); // longer than the interval
  oneRow(a.sqliteDir, 2);
  const results = await Promise.all([
    hook.snapshotBeforeTool('ana', undefined, 'a'),
    hook.snapshotBeforeTool('ana', undefined, 'b'),
    hook.snapshotBeforeTool('ana', undefined, 'c'),
  ]);
  assert.equal(results.filter((r) => r.ok && 'snapshot' in r).length, 1, JSON.stringify(results));
  assert.equal(results.filter((r) => r.ok && 'skipped' in r && r.skipped === 'in_flight').length, 2);
  assert.equal(await skipped('in_flight'), 2);
  assert.equal((await a.snapshotter.list('ana')).length, 2);
});

test('the tool call rolls back exactly from its snapshot (bundle store: restore reads bundles)', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 50, files: 3 }, { store: 'bundles' });
  const hook = new PreMutatingToolSnapshotAdapter(a.snapshotter, { minIntervalSecs: 60 });
  const before = await hook.snapshotBeforeTool('ana', undefined, 'memory_forget');
  assert.ok(before.ok && 'snapshot' in before);
  // The tool forgets a memory.
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  const victim = db.prepare('SELECT id, content FROM memories ORDER BY id LIMIT 1').get() as {
    id: number;
    content: string;
  };
  db.prepare('DELETE FROM memories WHERE id = ?').run(victim.id);
  db.close();
  await a.snapshotter.restore({ agentId: 'ana', bundle: before.snapshot.bundle_path });
  const after = new Database(join(a.sqliteDir, 'long_term.sqlite'), { readonly: true });
  t.after(() => after.close());
  assert.deepEqual(after.prepare('SELECT id, content FROM memories WHERE id = ?').get(victim.id), victim);
});

test('the interval holds while the clock is behind the newest snapshot: the call is dated after it and the next one skipped (stop 46)', async (t) => {
  let skew = 3_600_000; // a snapshot taken while the clock was an hour ahead, then the clock corrected
  const a = sampleAgent(t, 'ana', {}, { store: 'repository', now: () => Date.now() + skew });
  const ahead = await a.snapshotter.snapshot({ agentId: 'ana' });
  skew = 0;
  const hook = new PreMutatingToolSnapshotAdapter(a.snapshotter, { minIntervalSecs: 600 });
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first, JSON.stringify(first));
  assert.ok(first.snapshot.created_at_ms > ahead.created_at_ms, 'dated after the newest snapshot');
  assert.ok(first.snapshot.clock_behind_ms! > 3_500_000, String(first.snapshot.clock_behind_ms));
  // the interval is counted by the clock: the anchor's date (an hour ahead of it) does not make every
  // call until the clock catches up look due
  assert.deepEqual(await hook.snapshotBeforeTool('ana', undefined, 'memory_delete'), {
    ok: true,
    skipped: 'interval',
  });
});

test('failures are returned, never thrown: an unknown agent, a bad tool name', async (t) => {
  const { hook } = setup(t);
  const r = await hook.snapshotBeforeTool('nobody', undefined, 'memory_write');
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.code, 'UNKNOWN_AGENT');
  const bad = await hook.snapshotBeforeTool('ana', undefined, 'bad\ntool');
  assert.equal(!bad.ok && bad.code, 'INVALID_INPUT');
  const bad2 = await hook.snapshotBeforeTool('ana', undefined, '');
  assert.equal(!bad2.ok && bad2.code, 'INVALID_INPUT');
  // A failed call is not remembered: the next one tries again.
  const ok = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(ok.ok && 'snapshot' in ok);
});

test('config: auto_pre_mutating_tool attaches the hook with pre_mutating_tool.min_interval_secs', (t) => {
  const { a } = setup(t);
  assert.equal(preMutatingToolHookFromConfig(a.snapshotter, {}), undefined, 'off by default');
  const on = preMutatingToolHookFromConfig(a.snapshotter, { auto_pre_mutating_tool: true });
  assert.equal(on?.minIntervalMs, CONFIG_DEFAULTS.pre_mutating_tool.min_interval_secs * 1000);
  assert.equal(
    preMutatingToolHookFromConfig(a.snapshotter, {
      auto_pre_mutating_tool: true,
      pre_mutating_tool: { min_interval_secs: 5 },
    })?.minIntervalMs,
    5000,
  );
  assert.equal(
    preMutatingToolHookFromConfig(a.snapshotter, { auto_pre_mutating_tool: true, enabled: false }),
    undefined,
  );
});

test('gc keeps pre-mutating-tool anchors by their own rule and never lets them evict the other snapshots', async (t) => {
  const { a } = setup(t);
  const s = a.snapshotter;
  const user = await s.snapshot({ agentId: 'ana', label: 'mine' });
  const hook = new PreMutatingToolSnapshotAdapter(s, { minIntervalSecs: 0 });
  const anchors: string[] = [];
  for (let i = 0; i < 4; i++) {
    writeFileSync(join(a.memdir, 'topics', 'tool.md'), `call ${i}\n`);
    const r = await hook.snapshotBeforeTool('ana', undefined, `tool_${i}`);
    assert.ok(r.ok && 'snapshot' in r);
    anchors.unshift(r.snapshot.id);
  }
  const report = await s.gc({ agentId: 'ana', policy: { keepCount: 1, preToolKeepCount: 2 } });
  assert.deepEqual(
    report.agents[0]!.decisions.map((d) => [d.id, d.action, d.reasons.join('+')]),
    [
      [anchors[0], 'keep', 'newest+pre-mutating-tool-keep-count'],
      [anchors[1], 'keep', 'pre-mutating-tool-keep-count'],
      [anchors[2], 'delete', ''],
      [anchors[3], 'delete', ''],
      [user.id, 'keep', 'keep-count'],
    ],
  );
  assert.equal(report.prune?.status, 'pruned');
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [anchors[0], anchors[1], user.id],
  );
});

test('an anchor deleted inside the interval covers nothing: the next runtime takes a new one (stop 57)', async (t) => {
  const { a, hook } = setup(t);
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first, JSON.stringify(first));
  // while it is there, another runtime is skipped
  assert.deepEqual(await newRuntime(a, 3600).snapshotBeforeTool('ana', undefined, 'x'), {
    ok: true,
    skipped: 'interval',
  });
  const user = await a.snapshotter.snapshot({ agentId: 'ana', label: 'user' }); // (the last one stays)
  await a.snapshotter.delete('ana', undefined, first.snapshot.id);
  // the runtime that took it goes by its memory of it, and looks whether it is still stored
  const after = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(after.ok && 'snapshot' in after, JSON.stringify(after));
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    [after.snapshot.id, user.id],
  );
  // and another runtime, which reads the record under the agent lock
  await a.snapshotter.delete('ana', undefined, after.snapshot.id);
  const other = await newRuntime(a, 3600).snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(other.ok && 'snapshot' in other, JSON.stringify(other));
  // a record naming no snapshot id (damaged, or written by hand: a path) covers nothing either
  const record = execFileSync('find', [a.stateRoot, '-name', 'ana.auto-pre-mutating-tool.last'], {
    encoding: 'utf8',
  }).trim();
  assert.ok(record, 'the record beside the agent lock');
  writeFileSync(
    record,
    `${JSON.stringify({ created_at_ms: Date.now(), snapshot_id: '../../../etc/passwd' })}\n`,
  );
  const fresh = await newRuntime(a, 3600).snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(fresh.ok && 'snapshot' in fresh, JSON.stringify(fresh));
  // inside the interval of a stored anchor, both skip
  for (const runtime of [hook, newRuntime(a, 3600)])
    assert.deepEqual(await runtime.snapshotBeforeTool('ana', undefined, 'x'), {
      ok: true,
      skipped: 'interval',
    });
});

test('a tool name the snapshot label refuses is refused at once, inside the interval too; an interval past exact milliseconds is refused (stop 57)', async (t) => {
  const { a, hook } = setup(t);
  const first = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
  assert.ok(first.ok && 'snapshot' in first, JSON.stringify(first));
  for (const tool of ['a\u2028b', 'a\u202eb', 'a\u0085b']) {
    const r = await hook.snapshotBeforeTool('ana', undefined, tool);
    assert.equal(r.ok, false, `${JSON.stringify(tool)}: ${JSON.stringify(r)}`);
    assert.equal((r as { code: string }).code, 'INVALID_INPUT');
  }
  const s = a.snapshotter;
  assert.throws(
    () => new PreMutatingToolSnapshotAdapter(s, { minIntervalSecs: 9_007_199_254_741 }),
    /min_interval_secs \(minIntervalSecs\) must be an integer from 0 to 9007199254740/,
  );
  assert.equal(
    new PreMutatingToolSnapshotAdapter(s, { minIntervalSecs: 9_007_199_254_740 }).minIntervalMs,
    9_007_199_254_740_000,
  );
});
