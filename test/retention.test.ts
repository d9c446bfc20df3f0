// Retention: the policy's decisions and reasons (keep-count, max age, daily/weekly/monthly, pins, the
// newest), gc on a real store (what it deletes and what it never touches), and gc running in a loop
// beside snapshots and a restore without breaking any of them.

import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatGc } from '../src/cli/format.js';
import { LifecycleEventsObserver } from '../src/events/observer.js';
import type { LifecycleEvent } from '../src/events/payloads.js';
import type { EventPublisher } from '../src/events/publisher.js';
import type { SnapshotMeta } from '../src/index.js';
import { newSnapshotId } from '../src/model/ids.js';
import { DEFAULT_POLICY, decide, weekKey } from '../src/policy/retention.js';
import { type AgentGcReport, gcExitCode, type RetentionTickReport } from '../src/snapshotter/gc.js';
import type { OperationRecord } from '../src/snapshotter/observer.js';
import { tryAcquire } from '../src/store/lock.js';
import { runCli, sampleAgent, startFixture } from './helpers/env.js';

const DAY = 86_400_000;
const NOW = Date.parse('2026-11-26T12:00:00Z');

function metas(ages: number[], createdBy: string[] = []): SnapshotMeta[] {
  return ages.map((ageDays, i) => ({
    id: `0190c3a2-0000-7000-8000-${String(i).padStart(12, '0')}`,
    agent_id: 'ana',
    tenant: 'default',
    created_at_ms: NOW - ageDays * DAY,
    bundle_path: `/x/${i}`,
    bundle_size_bytes: 1,
    bundle_sha256: '0'.repeat(64),
    schema_versions: { long_term: 1, vector: 1, concepts: 1, compactions: 1, manifest: 2 },
    encrypted: false,
    redactions_applied: false,
    ...(createdBy[i] ? { created_by: createdBy[i] } : {}),
  }));
}

test('policy: keep-count keeps the newest, max age limits it, the newest and pinned are always kept', () => {
  const m = metas([0, 1, 2, 100, 200]);
  const d = decide(m, { ...DEFAULT_POLICY, keepCount: 4, maxAgeDays: 90 }, new Set([m[4]!.id]), NOW);
  assert.deepEqual(
    d.map((x) => [x.action, x.reasons.join('+')]),
    [
      ['keep', 'newest+keep-count'],
      ['keep', 'keep-count'],
      ['keep', 'keep-count'],
      ['delete', ''],
      ['keep', 'pinned'],
    ],
  );
  assert.match(d[3]!.because!, /older than 90 days/);
  const none = decide(m, { ...DEFAULT_POLICY, keepCount: 0, maxAgeDays: 0 }, new Set(), NOW);
  assert.deepEqual(
    none.map((x) => x.action),
    ['keep', 'delete', 'delete', 'delete', 'delete'],
    'the last snapshot survives keep-count 0',
  );
  assert.match(none[1]!.because!, /beyond the 0 newest/);
});

test('policy: automatic anchors have their own rule per kind and never count against the user rules', () => {
  const m = metas(
    [0, 0.5, 1, 2, 4, 5, 6],
    [
      'auto-pre-restore',
      'auto-pre-restore',
      'cli',
      'auto-pre-dream',
      'auto-pre-dream',
      'auto-pre-dream',
      'cli',
    ],
  );
  const policy = { ...DEFAULT_POLICY, keepCount: 2, anchorKeepCount: 2, anchorMaxAgeDays: 0 };
  const show = (d: ReturnType<typeof decide>) =>
    d.map((x) => `${x.group}:${x.action}:${x.reasons.join('+')}`);
  let d = decide(m, policy, new Set(), NOW);
  assert.deepEqual(show(d), [
    'anchor:keep:newest+anchor-keep-count',
    'anchor:keep:anchor-keep-count',
    'user:keep:keep-count',
    'anchor:keep:anchor-keep-count',
    'anchor:keep:anchor-keep-count',
    'anchor:delete:',
    'user:keep:keep-count',
  ]);
  assert.match(d[5]!.because!, /beyond the 2 newest auto-pre-dream anchors/);
  d = decide(m, { ...policy, anchorMaxAgeDays: 3 }, new Set(), NOW);
  assert.equal(d[4]!.action, 'delete');
  assert.match(d[4]!.because!, /anchor older than 3 days/);
  // the user's buckets see only the user's snapshots: the newest of the day is the user snapshot
  d = decide(m, { ...policy, keepCount: 0, keepDaily: 1 }, new Set(), NOW);
  assert.deepEqual(d[2]!.reasons, ['daily']);
  assert.equal(d[6]!.action, 'delete');
  assert.match(d[6]!.because!, /beyond the 0 newest snapshots/);
});

test("policy: the agent's own snapshots (tool, MCP) have their own rule: thirty of them push no operator snapshot out (stop 50)", () => {
  // the operator's two snapshots, oldest, then the agent's 30 (one a minute)
  const m = metas(
    [...Array.from({ length: 30 }, (_, i) => i / 1440), 1, 2],
    [...Array.from({ length: 30 }, () => 'tool'), 'cli', 'scheduled'],
  );
  const policy = { ...DEFAULT_POLICY, keepCount: 2, toolKeepCount: 10, toolMaxAgeDays: 0 };
  const d = decide(m, policy, new Set(), NOW);
  assert.deepEqual(
    d.slice(30).map((x) => `${x.group}:${x.action}:${x.reasons.join('+')}`),
    ['user:keep:keep-count', 'user:keep:keep-count'],
  );
  assert.deepEqual(
    d.slice(0, 30).map((x) => x.action),
    [...Array.from({ length: 10 }, () => 'keep'), ...Array.from({ length: 20 }, () => 'delete')],
  );
  assert.ok(d.slice(0, 30).every((x) => x.group === 'tool'));
  assert.match(d[10]!.because!, /beyond the 10 newest snapshots the agent took \(tool\)/);
  // their age limit, and the user's daily rule does not see them
  const old = decide(
    metas([0, 5, 40], ['cli', 'tool', 'tool']),
    { ...DEFAULT_POLICY, toolMaxAgeDays: 30 },
    new Set(),
    NOW,
  );
  assert.deepEqual(
    old.map((x) => x.action),
    ['keep', 'keep', 'delete'],
  );
  assert.match(old[2]!.because!, /agent's snapshot older than 30 days/);
  const daily = decide(
    metas([0, 0.1], ['tool', 'cli']),
    { ...DEFAULT_POLICY, keepCount: 0, keepDaily: 1 },
    new Set(),
    NOW,
  );
  assert.deepEqual(daily[1]!.reasons, ['daily'], "the newest user snapshot of the day, not the agent's");
});

test('policy: anchors taken before mutating tools have their own rule (the N newest within H hours), apart from the other anchors', () => {
  const HOUR = 1 / 24;
  const ages = [0, 1 * HOUR, 2 * HOUR, 3 * HOUR, 5 * HOUR, 30 * HOUR, 2, 3];
  const kinds = [
    'auto-pre-mutating-tool',
    'auto-pre-mutating-tool',
    'auto-pre-mutating-tool',
    'auto-pre-mutating-tool',
    'auto-pre-mutating-tool',
    'auto-pre-mutating-tool',
    'auto-pre-dream',
    'cli',
  ];
  const m = metas(ages, kinds);
  const policy = { ...DEFAULT_POLICY, anchorKeepCount: 1, preToolKeepCount: 3, preToolMaxAgeHours: 24 };
  const show = (d: ReturnType<typeof decide>) => d.map((x) => `${x.action}:${x.reasons.join('+')}`);
  let d = decide(m, policy, new Set(), NOW);
  assert.deepEqual(show(d), [
    'keep:newest+pre-mutating-tool-keep-count',
    'keep:pre-mutating-tool-keep-count',
    'keep:pre-mutating-tool-keep-count',
    'delete:',
    'delete:',
    'delete:',
    'keep:anchor-keep-count',
    'keep:keep-count',
  ]);
  assert.match(d[3]!.because!, /beyond the 3 newest auto-pre-mutating-tool anchors/);
  // the age limit: none older than 24 hours, however many the count allows
  d = decide(m, { ...policy, preToolKeepCount: 10 }, new Set(), NOW);
  assert.deepEqual(
    d.slice(0, 6).map((x) => x.action),
    ['keep', 'keep', 'keep', 'keep', 'keep', 'delete'],
  );
  assert.match(d[5]!.because!, /anchor older than 24 hours/);
  // 0 hours: no age limit
  d = decide(m, { ...policy, preToolKeepCount: 10, preToolMaxAgeHours: 0 }, new Set(), NOW);
  assert.equal(d[5]!.action, 'keep');
});

test('policy: daily, weekly and monthly keep the newest snapshot of each recent bucket', () => {
  // two a day for 40 days, newest first
  const ages: number[] = [];
  for (let day = 0; day < 40; day++) ages.push(day + 0.1, day + 0.6);
  const m = metas(ages);
  const d = decide(
    m,
    { ...DEFAULT_POLICY, keepCount: 0, maxAgeDays: 0, keepDaily: 3, keepWeekly: 2, keepMonthly: 2 },
    new Set(),
    NOW,
  );
  const kept = d.filter((x) => x.action === 'keep');
  const daily = kept.filter((x) => x.reasons.includes('daily'));
  assert.equal(daily.length, 3);
  assert.deepEqual(new Set(daily.map((x) => new Date(x.created_at_ms).toISOString().slice(0, 10))).size, 3);
  for (const x of daily) {
    // the newest of its day
    const sameDay = m.filter(
      (y) =>
        new Date(y.created_at_ms).toISOString().slice(0, 10) ===
        new Date(x.created_at_ms).toISOString().slice(0, 10),
    );
    assert.equal(Math.max(...sameDay.map((y) => y.created_at_ms)), x.created_at_ms);
  }
  const weekly = kept.filter((x) => x.reasons.includes('weekly'));
  assert.deepEqual(
    weekly.map((x) => weekKey(x.created_at_ms)),
    ['2026-W48', '2026-W47'],
  );
  const monthly = kept.filter((x) => x.reasons.includes('monthly'));
  assert.deepEqual(
    monthly.map((x) => new Date(x.created_at_ms).toISOString().slice(0, 7)),
    ['2026-11', '2026-10'],
  );
  assert.ok(d.filter((x) => x.action === 'delete').length > 70);
});

test('policy: the daily and monthly buckets hold past year 9999, and a time beyond a Date decides without failing (stop 63)', () => {
  const Y10K = Date.parse('+010000-01-10T12:00:00Z');
  // newest first (as gc gives them): two later months, then three days of January 10000
  const m = metas([80, 40, 2, 1, 0].map((days) => (NOW - Y10K) / DAY - days));
  const now = Y10K + 81 * DAY;
  const policy = { ...DEFAULT_POLICY, keepCount: 0, maxAgeDays: 0 };
  for (const [rule, actions] of [
    // four days, the newest of each: the months' two and January's 12th and 11th
    [{ keepDaily: 4 }, ['keep', 'keep', 'keep', 'keep', 'delete']],
    // three months, the newest of each: March's, February's and January's 12th
    [{ keepMonthly: 3 }, ['keep', 'keep', 'keep', 'delete', 'delete']],
  ] as const) {
    const d = decide(m, { ...policy, ...rule }, new Set(), now);
    assert.deepEqual(
      d.map((x) => x.action),
      actions,
      JSON.stringify(rule),
    );
  }
  // a time no Date holds (a forged or wild clock) is a time like any other, never "Invalid time value"
  const wild = metas([0, 1]).map((x, i) => ({ ...x, created_at_ms: 9e15 - i }));
  const d = decide(wild, { ...policy, keepDaily: 1, keepWeekly: 1, keepMonthly: 1 }, new Set(), NOW);
  assert.deepEqual(
    d.map((x) => x.action),
    ['keep', 'delete'],
  );
});

test('gc deletes what no rule keeps, with sibling, sidecar and pin; dry run deletes nothing; pins hold', async (t) => {
  const a = sampleAgent(t);
  const s = a.snapshotter;
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await s.snapshot({ agentId: 'ana' })).id);
  await s.pin('ana', 'default', ids[0]!, 'the first one');
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  const dry = await s.gc({ agentId: 'ana', policy: { keepCount: 2 }, dryRun: true });
  assert.equal(dry.bundles_deleted, 2);
  assert.equal((await s.list('ana')).length, 5, 'dry run deleted nothing');
  const bytesOnDisk = () => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  const before = bytesOnDisk();
  const r = await s.gc({ agentId: 'ana', policy: { keepCount: 2 } });
  assert.equal(r.bundles_deleted, 2);
  assert.equal(r.bundles_kept, 3);
  // every byte that went: the bundles and their siblings and sidecars, as the dry run said
  assert.equal(r.bytes_freed, before - bytesOnDisk());
  assert.equal(dry.bytes_freed, r.bytes_freed);
  const decisions = r.agents[0]!.decisions;
  assert.deepEqual(decisions.find((d) => d.id === ids[0])!.reasons, ['pinned']);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [ids[4], ids[3], ids[0]],
  );
  for (const id of [ids[1], ids[2]]) {
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.startsWith(id!)),
      [],
      `nothing of ${id} is left`,
    );
  }
  assert.ok(existsSync(join(dir, `${ids[0]}.tar.zst.pin`)));
  assert.equal(await s.unpin('ana', 'default', ids[0]!), true);
  const later = await s.gc({ agentId: 'ana', policy: { keepCount: 0, maxAgeDays: 0 } });
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [ids[4]],
    'the newest always stays',
  );
  assert.equal(later.bundles_deleted, 2);
});

test('gc reports a bundle it cannot read (listing_problems, an error, exit 2), as the repository its unreadable entry (stop 46); its outcome is `damaged`, not `ok`, and what it deleted is still announced (stop 47)', async (t) => {
  // The host's observer and the lifecycle events' observer (the EventPublisher port, as a host
  // implements it, recording what it is given): the outcome must agree with the exit status.
  const records: OperationRecord[] = [];
  const events: LifecycleEvent[] = [];
  const publisher: EventPublisher = {
    publishLifecycle: (e) => events.push(e),
    publishMutation: () => {},
    close: async () => ({ published: 0, dropped: 0, queued: 0 }),
    stats: () => ({ published: 0, dropped: 0, queued: 0 }),
  };
  const a = sampleAgent(
    t,
    'ana',
    {},
    { observers: [{ onOperation: (r) => records.push(r) }, new LifecycleEventsObserver(publisher)] },
  );
  const s = a.snapshotter;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await s.snapshot({ agentId: 'ana' })).id);
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  // the newest truncated and its sidecar gone: list warns, and gc said nothing (errors 0, exit 0)
  const bundle = join(dir, `${ids[2]}.tar.zst`);
  writeFileSync(bundle, readFileSync(bundle).subarray(0, 100));
  rmSync(`${bundle}.meta.json`);
  for (const dryRun of [true, false]) {
    const r = await s.gc({ agentId: 'ana', policy: { keepCount: 1 }, dryRun });
    const ana = r.agents[0]!;
    assert.deepEqual(
      ana.listing_problems?.map((l) => [l.id, l.code, l.exit_code]),
      [[ids[2], 'BUNDLE_DAMAGED', 2]],
    );
    assert.match(ana.listing_problems![0]!.problem, /truncated|damaged/);
    assert.equal(r.errors, 1);
    assert.equal(gcExitCode(r), 2);
    assert.match(formatGc(r), new RegExp(`not counted: ${ids[2]} .*\\n[^]*1 error\\(s\\)`));
    // it is neither kept nor deleted: the two readable ones are decided
    assert.deepEqual(ana.decisions.map((d) => d.id).sort(), [ids[0], ids[1]].sort());
    const rec = records.findLast((x) => x.op === 'gc');
    assert.equal(rec?.outcome, 'damaged', 'the outcome agrees with exit 2');
  }
  assert.ok(existsSync(bundle), 'the unreadable bundle is left for the operator');
  // the real sweep deleted ids[0] (keep-count 1 kept ids[1]): announced although the sweep had an error
  assert.deepEqual(
    events.flatMap((e) =>
      e.kind === 'deleted'
        ? [`deleted ${e.snapshot_id}`]
        : e.kind === 'gc'
          ? [`gc errors ${e.report.errors}`]
          : [],
    ),
    [`deleted ${ids[0]}`, 'gc errors 1'],
  );
  // a sweep without errors is `ok`
  rmSync(bundle);
  await s.gc({ agentId: 'ana', policy: { keepCount: 1 } });
  assert.equal(records.findLast((x) => x.op === 'gc')?.outcome, 'ok');
});

test("a bundle imported under a new id is dated after the agent's newest snapshot, so gc --keep-count 1 keeps it (stop 63)", async (t) => {
  // ana's last snapshot was taken while the clock was 10 minutes ahead (another host's, say); then a
  // bundle of bob is stored as ana's (a new id: made now, by the import). Dated by the raw clock, it
  // sorted below that snapshot, and gc --keep-count 1 deleted the one snapshot holding what was taken last.
  let skew = 10 * 60_000;
  const a = sampleAgent(t, 'ana', {}, { store: 'repository', now: () => Date.now() + skew });
  const s = a.snapshotter;
  await s.snapshot({ agentId: 'ana', createdBy: 'cli', label: 'old' });
  const ahead = await s.snapshot({ agentId: 'ana', createdBy: 'cli', label: 'clock ahead' });
  skew = 0;
  const bob = sampleAgent(t, 'bob', {}, { store: 'bundles' });
  const bundle = await bob.snapshotter.snapshot({ agentId: 'bob' });
  const { snapshot } = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.notEqual(snapshot.id, bundle.id, 'stored under a new id');
  assert.ok(snapshot.created_at_ms > ahead.created_at_ms, 'dated after the newest snapshot');
  assert.equal(await s.snapshotRef('ana', undefined, 'latest'), snapshot.id);
  const r = await s.gc({ agentId: 'ana', policy: { keepCount: 1 } });
  assert.equal(r.agents[0]!.error, undefined);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [snapshot.id],
    'the import, taken last, is the one kept',
  );
});

test('gc --keep-count 2 keeps the user snapshots; the anchors of two restores are kept by their own rule; a clock that was ahead reorders none of them (stop 46)', async (t) => {
  // The first snapshot and the first restore are taken with the clock a day ahead, the rest after it
  // was corrected (a hostile tester's faketime, stop 46): snapshots are ordered by created_at_ms, and
  // without monotonic dates the first ones stayed the newest — restore --undo went back to the first
  // restore's anchor, `latest` named it, and gc --keep-count 1 deleted the snapshot taken last.
  let skew = DAY;
  const warnings: string[] = [];
  const a = sampleAgent(t, 'ana', {}, { now: () => Date.now() + skew, onWarning: (w) => warnings.push(w) });
  const s = a.snapshotter;
  const first = await s.snapshot({ agentId: 'ana', createdBy: 'cli', label: 'mine' });
  const r1 = await s.restore({ agentId: 'ana', bundle: first.bundle_path });
  skew = 0;
  const second = await s.snapshot({ agentId: 'ana', createdBy: 'cli' });
  const r2 = await s.restore({ agentId: 'ana', bundle: first.bundle_path });
  const anchors = [r2.pre_snapshot!, r1.pre_snapshot!];
  const undo = await s.restore({ agentId: 'ana', undo: true, dryRun: true });
  assert.ok(undo.bundle.includes(r2.pre_snapshot!), `undo goes back before the last restore: ${undo.bundle}`);
  assert.equal(await s.snapshotRef('ana', undefined, 'latest'), r2.pre_snapshot);
  assert.ok(second.created_at_ms > first.created_at_ms, 'the snapshot taken last is dated after the others');
  assert.ok(
    second.clock_behind_ms! > DAY - 60_000 && second.clock_behind_ms! <= DAY,
    String(second.clock_behind_ms),
  );
  assert.equal(first.clock_behind_ms, undefined, 'a snapshot dated by its clock says nothing');
  assert.ok(
    warnings.some((w) => w.includes(second.id) && /, 23 h after this host's clock/.test(w)),
    warnings.join('\n'),
  );
  const root = ['--state-root', a.stateRoot];
  let r = await runCli(['gc', '--agent', 'ana', '--keep-count', '2', '--json', ...root]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.bundles_deleted, 0, 'the user snapshots are not evicted by the anchors');
  assert.deepEqual(
    report.agents[0].decisions.map(
      (d: { id: string; group: string; reasons: string[] }) => `${d.id}:${d.group}:${d.reasons.join('+')}`,
    ),
    [
      `${anchors[0]}:anchor:newest+anchor-keep-count`,
      `${second.id}:user:keep-count`,
      `${anchors[1]}:anchor:anchor-keep-count`,
      `${first.id}:user:keep-count`,
    ],
  );
  assert.deepEqual(report.policy, {
    keep_count: 2,
    max_age_days: 90,
    keep_daily: 0,
    keep_weekly: 0,
    keep_monthly: 0,
    anchor_keep_count: 5,
    anchor_max_age_days: 30,
    pre_mutating_tool_keep_count: 20,
    pre_mutating_tool_max_age_hours: 24,
    tool_keep_count: 30,
    tool_max_age_days: 90,
  });
  // each group with its rule in the human output
  r = await runCli(['gc', '--agent', 'ana', '--keep-count', '1', '--anchor-keep-count', '1', ...root]);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /^ {2}snapshots \(keep-count 1, max-age-days 90, daily 0, weekly 0, monthly 0\):$/m);
  assert.match(out, /^ {2}automatic anchors \(the 1 newest of each kind, none older than 30 days\):$/m);
  assert.ok(out.indexOf(`keep    ${second.id}`) > out.indexOf('  snapshots ('), out);
  assert.ok(out.indexOf(`delete  ${anchors[1]}`) > out.indexOf('  automatic anchors ('), out);
  assert.match(out, new RegExp(`delete  ${first.id} .*\\(beyond the 1 newest snapshots\\)`));
  // the summary: what was deleted and kept, then the bytes freed in all (stop 58: they read as "of" the
  // deleted snapshots, "deleted 0 snapshot(s) (1.7 KiB of files freed)", when a prune freed them)
  assert.match(
    out,
    /^deleted 2 snapshot\(s\), kept 2; \S+ \S+ freed in all; removed 0 backup\(s\), 0 leftover\(s\); 1 agent\(s\) swept, 0 busy, 0 error\(s\)$/m,
  );
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [anchors[0], second.id],
  );
});

test('gc counts a snapshot held in both stores once (a bundle migrate had not removed yet), and removes both copies', async (t) => {
  const a = sampleAgent(t);
  const bundles = { NEXO_MEMORY_STORE_FORMAT: 'bundles' };
  const ids: string[] = [];
  for (const label of ['b1', 'b2', 'b3']) {
    const r = await runCli(['snapshot', '--agent', 'ana', '--label', label, '--json', ...a.flags], {
      env: bundles,
    });
    assert.equal(r.code, 0, r.stderr);
    ids.push(JSON.parse(r.stdout).id);
  }
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  for (const id of ids) {
    const r = await runCli(
      [
        'import',
        '--from',
        join(dir, `${id}.tar.zst`),
        '--agent',
        'ana',
        '--store-only',
        '--json',
        ...a.flags,
      ],
      { env: { NEXO_MEMORY_STORE_FORMAT: 'repository' } },
    );
    assert.equal(r.code, 0, r.stderr);
  }
  const s = a.snapshotter;
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [...ids].reverse(),
    'listed once each',
  );
  const r = await s.gc({ agentId: 'ana', policy: { keepCount: 2 } });
  assert.deepEqual(
    r.agents[0]!.decisions.map((d) => `${d.action} ${d.id}`),
    [`keep ${ids[2]}`, `keep ${ids[1]}`, `delete ${ids[0]}`],
    'one decision per snapshot',
  );
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [ids[2], ids[1]],
  );
  assert.ok(
    !existsSync(join(dir, `${ids[0]}.tar.zst`)),
    'the bundle copy of the deleted snapshot is gone too',
  );
  const again = await s.gc({ agentId: 'ana', policy: { keepCount: 2 } });
  assert.equal(again.agents[0]!.decisions.filter((d) => d.action === 'delete').length, 0);
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [ids[2], ids[1]],
    'a second sweep keeps both',
  );
});

// Stop 46: a hostile tester's clock (faketime) reordered an agent's snapshots: snapshots are ordered by
// created_at_ms alone, so one taken with the clock ahead stayed the newest after it was corrected (gc
// --keep-count 1 deleted the real latest snapshot; restore --undo went to the first restore's anchor),
// and one taken with the clock reset to 1970 was deleted at once as older than 90 days. The
// snapshotter's clock (`now`) is set wrong here the way faketime set the process's.
test('a clock reset to 1970 dates the snapshot after the newest one: gc keeps it as the newest, not as older than 90 days (stop 46)', async (t) => {
  let clock = Date.now;
  const a = sampleAgent(t, 'ana', {}, { now: () => clock(), store: 'repository' });
  const s = a.snapshotter;
  const first = await s.snapshot({ agentId: 'ana', label: 'before the reset' });
  clock = () => DAY; // 1970-01-02
  const reset = await s.snapshot({ agentId: 'ana', label: 'clock reset' });
  assert.match(reset.bundle_path, /#/, 'a repository snapshot');
  const r = await s.gc({ agentId: 'ana' });
  assert.deepEqual(
    r.agents[0]!.decisions.map((d) => `${d.action} ${d.id} ${d.reasons.join('+')}`),
    [`keep ${reset.id} newest+keep-count`, `keep ${first.id} keep-count`],
  );
  assert.equal(reset.created_at_ms, first.created_at_ms + 1);
  assert.equal(reset.clock_behind_ms, first.created_at_ms + 1 - DAY);
});

test('delete: a bundle beside repository snapshots is not the last one; a pinned snapshot is refused until unpinned', async (t) => {
  const a = sampleAgent(t);
  // (the test harness makes bundles by default: helpers/env.ts)
  const snap = async (env: Record<string, string> = { NEXO_MEMORY_STORE_FORMAT: 'repository' }) => {
    const r = await runCli(['snapshot', '--agent', 'ana', '--json', ...a.flags], { env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).id as string;
  };
  const repo = [await snap(), await snap()];
  const bundle = await snap({ NEXO_MEMORY_STORE_FORMAT: 'bundles' });
  const pinnedBundle = await snap({ NEXO_MEMORY_STORE_FORMAT: 'bundles' });
  const del = (id: string) =>
    runCli(['delete', '--agent', 'ana', '--id', id, '--yes', '--json', '--state-root', a.stateRoot]);
  // four snapshots in two stores: the bundle is not the agent's last one
  let r = await del(bundle);
  assert.equal(r.code, 0, r.stderr);
  const s = a.snapshotter;
  await s.pin('ana', 'default', repo[0]!, 'keep');
  await s.pin('ana', 'default', pinnedBundle, 'keep');
  // a repository pin keeps its note, as a bundle's does
  const pinFile = join(a.stateRoot, 'repository', 'pins', repo[0]!);
  assert.equal((JSON.parse(readFileSync(pinFile, 'utf8')) as { note?: string }).note, 'keep');
  for (const id of [repo[0]!, pinnedBundle]) {
    r = await del(id);
    assert.equal(r.code, 6, `${id}: ${r.stdout}`);
    assert.equal(JSON.parse(r.stdout).error.code, 'RETENTION');
    assert.match(r.stderr, /is pinned \(unpin it first\)/);
  }
  assert.deepEqual((await s.list('ana')).map((m) => m.id).sort(), [repo[0], repo[1], pinnedBundle].sort());
  assert.equal(await s.unpin('ana', 'default', repo[0]!), true);
  r = await del(repo[0]!);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await s.list('ana')).map((m) => m.id).sort(), [repo[1], pinnedBundle].sort());
});

test('gc --agent of an agent nobody knows is UNKNOWN_AGENT (exit 5) and makes no lock file', async (t) => {
  const a = sampleAgent(t);
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const r = await runCli(['gc', '--agent', 'anna', '--json', '--no-progress', ...a.flags]);
  assert.equal(r.code, 5, r.stdout);
  assert.equal(JSON.parse(r.stdout).error.code, 'UNKNOWN_AGENT');
  const locks = join(a.stateRoot, 'tenants', 'default', 'locks');
  assert.deepEqual(
    readdirSync(locks).filter((n) => n.startsWith('anna')),
    [],
    'no lock file for the mistyped id',
  );
  // an agent with live memory and no snapshot yet is swept (its backups and leftovers)
  const fresh = await runCli(['gc', '--agent', 'ana', '--json', '--no-progress', ...a.flags]);
  assert.equal(fresh.code, 0, fresh.stderr);
});

test('gc removes stale leftovers and old restore backups, and leaves fresh ones', async (t) => {
  const a = sampleAgent(t);
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  const old = (Date.now() - 2 * 3600_000) / 1000;
  const ancient = (Date.now() - 30 * DAY) / 1000;
  mkdirSync(join(dir, '.staging-0190c3a2-aaaa-7000-8000-000000000001'));
  writeFileSync(join(dir, '0190c3a2-aaaa-7000-8000-000000000002.tar.zst.partial'), 'x');
  utimesSync(join(dir, '.staging-0190c3a2-aaaa-7000-8000-000000000001'), old, old);
  utimesSync(join(dir, '0190c3a2-aaaa-7000-8000-000000000002.tar.zst.partial'), old, old);
  writeFileSync(join(dir, '0190c3a2-aaaa-7000-8000-000000000003.tar.zst.partial'), 'fresh'); // in its grace period
  // a restore's backup is named by its restore's id, a UUID v7 (of a restore 30 days ago here)
  const ms = (Date.now() - 30 * DAY).toString(16).padStart(12, '0');
  const rid = (n: number) => `${ms.slice(0, 8)}-${ms.slice(8)}-7000-8000-00000000000${n}`;
  const [oldDb, newDb, oldMem] = [
    `.pre-restore-${rid(1)}`,
    `.pre-restore-${rid(2)}`,
    `.ana.pre-restore-${rid(3)}`,
  ];
  mkdirSync(join(a.sqliteDir, oldDb));
  mkdirSync(join(a.sqliteDir, newDb)); // its mtime is now: kept
  mkdirSync(join(a.memdirRoot, oldMem));
  writeFileSync(join(a.sqliteDir, oldDb, 'long_term.sqlite'), Buffer.alloc(1000));
  mkdirSync(join(a.memdirRoot, oldMem, 'topics'));
  writeFileSync(join(a.memdirRoot, oldMem, 'topics', 'a.md'), Buffer.alloc(500));
  utimesSync(join(a.sqliteDir, oldDb), ancient, ancient);
  utimesSync(join(a.memdirRoot, oldMem), ancient, ancient);
  // a name a restore never gives is not a backup, however old (the database directory may be the
  // memdir, whose files these may be: stop 61 review)
  mkdirSync(join(a.sqliteDir, '.pre-restore-old'));
  writeFileSync(join(a.sqliteDir, '.pre-restore-old', 'notes.md'), 'mine');
  utimesSync(join(a.sqliteDir, '.pre-restore-old'), ancient, ancient);
  // a restore of a moment ago renamed the old memdir, whose mtime is that of its last entry created,
  // weeks ago: the backup is as old as the restore (its id), not as its mtime
  const justNow = `.ana.pre-restore-${newSnapshotId()}`;
  mkdirSync(join(a.memdirRoot, justNow));
  utimesSync(join(a.memdirRoot, justNow), ancient, ancient);
  // the CLI takes the roots as snapshot and restore do: its dry run sees the old backups
  const dry = await runCli(['gc', '--agent', 'ana', '--dry-run', '--json', '--no-progress', ...a.flags]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(JSON.parse(dry.stdout).backups_removed, 2);
  assert.equal(JSON.parse(dry.stdout).bytes_freed, 1500, 'the backups to remove, by their files');
  const r = await a.snapshotter.gc({ agentId: 'ana', backupMaxAgeDays: 7 });
  assert.equal(r.bytes_freed, 1500, 'the backups removed, by their files');
  assert.equal(r.orphan_staging_dirs_removed, 2, JSON.stringify(r.agents[0]!.leftovers_removed));
  assert.equal(r.backups_removed, 2);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.includes('aaaa')),
    ['0190c3a2-aaaa-7000-8000-000000000003.tar.zst.partial'],
  );
  assert.ok(existsSync(join(a.sqliteDir, newDb)));
  assert.ok(!existsSync(join(a.sqliteDir, oldDb)));
  assert.ok(!existsSync(join(a.memdirRoot, oldMem)));
  assert.ok(existsSync(join(a.sqliteDir, '.pre-restore-old', 'notes.md')));
  assert.ok(existsSync(join(a.memdirRoot, justNow)), 'the backup of a restore made just now is kept');
});

test('gc skips an agent that is in use (its lock held by another process, or an export reading)', async (t) => {
  const a = sampleAgent(t);
  for (let i = 0; i < 3; i++) await a.snapshotter.snapshot({ agentId: 'ana' });
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  let r = await a.snapshotter.gc({ policy: { keepCount: 1 } });
  assert.equal(r.agents_busy, 1);
  assert.equal(r.bundles_deleted, 0);
  assert.match(r.agents[0]!.skipped!, /busy/);
  holder.child.kill('SIGKILL');
  await holder.exited;
  const reading = tryAcquire(a.snapshotter.layout.readersLockPath('default', 'ana'), 'shared')!;
  r = await a.snapshotter.gc({ policy: { keepCount: 1 } });
  assert.match(r.agents[0]!.skipped!, /exported/);
  reading.release();
  r = await a.snapshotter.gc({ policy: { keepCount: 1 } });
  assert.equal(r.bundles_deleted, 2);
  assert.equal((await a.snapshotter.list('ana')).length, 1);
});

test('gc of an agent id in several tenants sharing its live memory sweeps every tenant: no "busy" of its own (stop 47)', async (t) => {
  // The default resolver ignores the tenant: ana of t2 and t3 is the default tenant's ana, and their
  // sweeps take its lock too. The sweep once found them "busy" by its own sweep of default/ana.
  const a = sampleAgent(t);
  const s = a.snapshotter;
  assert.ok(s.sharesLiveMemory('ana', 't2') && s.sharesLiveMemory('ana', 't3'));
  await s.snapshot({ agentId: 'ana' });
  for (let i = 0; i < 3; i++) await s.snapshot({ agentId: 'ana', tenant: 't2' });
  for (let i = 0; i < 2; i++) await s.snapshot({ agentId: 'ana', tenant: 't3' });
  const byTenant = (r: RetentionTickReport) =>
    r.agents.map((g) => [g.tenant, g.skipped ?? g.decisions.map((d) => d.action).join(',')]);
  const swept = [
    ['default', 'keep'],
    ['t2', 'keep,delete,delete'],
    ['t3', 'keep,delete'],
  ];
  // Another process holding the shared lock still makes each of them a busy skip.
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  let r = await s.gc({ policy: { keepCount: 1 } });
  assert.equal(r.agents_busy, 3, JSON.stringify(byTenant(r)));
  for (const g of r.agents) assert.match(g.skipped!, /^busy: another operation holds the agent lock/);
  holder.child.kill('SIGKILL');
  await holder.exited;
  // The dry run and the run agree.
  const dry = await s.gc({ policy: { keepCount: 1 }, dryRun: true });
  assert.deepEqual(byTenant(dry), swept);
  r = await s.gc({ policy: { keepCount: 1 } });
  assert.deepEqual(byTenant(r), swept);
  assert.equal(r.agents_busy, 0);
  assert.equal(r.bundles_deleted, dry.bundles_deleted);
  assert.equal(r.bundles_deleted, 3);
  for (const tenant of ['default', 't2', 't3']) assert.equal((await s.list('ana', tenant)).length, 1, tenant);
  // The CLI's sweep of every tenant says no agent was busy.
  for (let i = 0; i < 2; i++) await s.snapshot({ agentId: 'ana', tenant: 't2' });
  const cli = await runCli(['gc', '--all', '--keep-count', '1', ...a.flags]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.doesNotMatch(cli.stdout, /skipped/);
  assert.match(cli.stdout, /3 agent\(s\) swept, 0 busy/);
  assert.equal((await s.list('ana', 't2')).length, 1);
});

test("CLI: gc --tool-keep-count sweeps the agent's own snapshots under their own heading; the operator's stay (stop 50)", async (t) => {
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 2 }, { store: 'bundles' });
  const s = a.snapshotter;
  const operator = await s.snapshot({ agentId: 'ana', label: 'operator', createdBy: 'cli' });
  for (let i = 0; i < 3; i++) await s.snapshot({ agentId: 'ana', label: `agent ${i}`, createdBy: 'tool' });
  const r = await runCli(['gc', '--agent', 'ana', '--keep-count', '1', '--tool-keep-count', '1', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /snapshots the agent took \(tool-keep-count 1, tool-max-age-days 90\):/);
  assert.match(r.stdout, /beyond the 1 newest snapshots the agent took \(tool\)/);
  const left = (await s.list('ana')).map((m) => m.label).sort();
  assert.deepEqual(left, ['agent 2', 'operator']);
  assert.ok((await s.list('ana')).some((m) => m.id === operator.id));
});

test('gc in a loop beside snapshots and a restore: every operation succeeds and every bundle verifies', async (t) => {
  const a = sampleAgent(t);
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  let stop = false;
  let sweeps = 0;
  const loop = (async () => {
    while (!stop) {
      const r = await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 2 }, leftoverGraceMs: 0 });
      assert.equal(r.errors, 0, JSON.stringify(r.agents));
      sweeps++;
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
  try {
    await a.snapshotter.pin('ana', 'default', first.id);
    for (let i = 0; i < 6; i++) await a.snapshotter.snapshot({ agentId: 'ana' });
    const r = await a.snapshotter.restore({ agentId: 'ana', bundle: first.bundle_path });
    assert.equal(r.from, first.id);
    for (let i = 0; i < 3; i++) await a.snapshotter.snapshot({ agentId: 'ana' });
  } finally {
    stop = true;
    await loop;
  }
  assert.ok(sweeps > 3, `gc ran ${sweeps} times`);
  const list = await a.snapshotter.list('ana');
  assert.ok(
    list.some((m) => m.id === first.id),
    'the pinned snapshot survived',
  );
  for (const m of list) assert.equal((await a.snapshotter.verify(m.bundle_path)).status, 'verified');
});

test('CLI: gc --dry-run --json shows each decision and its rule; pin and unpin', async (t) => {
  const a = sampleAgent(t);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await a.snapshotter.snapshot({ agentId: 'ana' })).id);
  const root = ['--state-root', a.stateRoot];
  let r = await runCli(['pin', '--agent', 'ana', '--id', ids[0]!.slice(0, 13), ...root]);
  assert.equal(r.code, 0, r.stderr);
  // list shows the pin: a `pinned` field in JSON, a flag in the table
  r = await runCli(['list', '--agent', 'ana', '--json', ...root]);
  assert.deepEqual(
    JSON.parse(r.stdout).map((m: { id: string; pinned: boolean }) => [m.id, m.pinned]),
    [
      [ids[2], false],
      [ids[1], false],
      [ids[0], true],
    ],
  );
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.pinned),
    [false, false, true],
  );
  r = await runCli(['list', '--agent', 'ana', ...root]);
  const row = (id: string) => r.stdout.split('\n').find((l) => l.startsWith(id))!;
  assert.match(row(ids[0]!), /\bpinned\b/);
  assert.doesNotMatch(row(ids[1]!), /pinned/);
  r = await runCli(['gc', '--agent', 'ana', '--keep-count', '1', '--dry-run', '--json', ...root]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  for (const k of ['bundles_deleted', 'orphan_staging_dirs_removed', 'agents_visited', 'errors'])
    assert.ok(k in report, k);
  assert.deepEqual(
    report.agents[0].decisions.map(
      (d: { action: string; reasons: string[] }) => `${d.action}:${d.reasons.join('+')}`,
    ),
    ['keep:newest+keep-count', 'delete:', 'keep:pinned'],
  );
  r = await runCli(['gc', '--agent', 'ana', '--keep-count', '1', ...root]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /delete .*beyond the 1 newest/);
  assert.equal((await a.snapshotter.list('ana')).length, 2);
  r = await runCli(['unpin', '--agent', 'ana', '--id', ids[0]!, ...root]);
  assert.match(r.stdout, /unpinned/);
  r = await runCli(['gc', '--all', '--keep-count', '1', ...root]);
  assert.equal((await a.snapshotter.list('ana')).length, 1);
  r = await runCli(['gc', ...root]);
  assert.equal(r.code, 1);
});

test("gc's exit status is its first error's: 8 for a remote store that cannot be used, 7 for a missing identity; 1 when unknown", () => {
  const base = { errors: 0, agents: [] as AgentGcReport[] } as unknown as RetentionTickReport;
  const agentError = (exit_code?: number) =>
    ({
      agent_id: 'ana',
      tenant: 'default',
      error: 'x',
      ...(exit_code ? { exit_code } : {}),
    }) as AgentGcReport;
  assert.equal(gcExitCode(base), 0);
  assert.equal(gcExitCode({ ...base, errors: 1, agents: [agentError(8)] }), 8);
  assert.equal(gcExitCode({ ...base, errors: 1, agents: [agentError()] }), 1);
  assert.equal(
    gcExitCode({
      ...base,
      errors: 1,
      prune: { status: 'error', error: 'encryption: …', error_code: 'ENCRYPTION', exit_code: 7 },
    }),
    7,
  );
});
