// Lifecycle and mutation events against a real nats-server on 127.0.0.1: subjects and payloads of the
// original (§11) from the library and from the CLI (`--nats`, config prefixes); a broker that is down
// or goes away mid-run never fails or stalls an operation, and dropped events are counted.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  LifecycleEventsObserver,
  LocalSnapshotter,
  MemoryMutationPublisher,
  MetricsObserver,
  NatsEventPublisher,
  SnapshotMetrics,
} from '../src/index.js';
import { runCli, sampleAgent } from './helpers/env.js';
import { collect, deadBrokerUrl, silentBroker, startNats } from './helpers/nats.js';
import { stablePorts } from './helpers/ports.js';
import { sample } from './helpers/prom.js';
import { until } from './helpers/wait.js';

const SMALL = { files: 4, commits: 2, memories: 40, embeddings: 20 };

/** A sample agent whose snapshotter publishes to `url` and records metrics. */
function observedAgent(
  t: Parameters<typeof sampleAgent>[0],
  url: string,
  o: {
    maxAttempts?: number;
    connectTimeoutMs?: number;
    prefixes?: { lifecycle?: string; mutation?: string };
    onWarning?: (m: string) => void;
  } = {},
) {
  const metrics = new SnapshotMetrics();
  const publisher = new NatsEventPublisher({
    url,
    metrics,
    connectTimeoutMs: o.connectTimeoutMs ?? 1000,
    ...(o.maxAttempts ? { maxAttempts: o.maxAttempts } : {}),
    ...(o.onWarning ? { onWarning: o.onWarning } : {}),
    ...(o.prefixes ? { prefixes: o.prefixes } : {}),
  });
  t.after(() => publisher.close(0));
  const a = sampleAgent(t, 'ana', SMALL, {
    observers: [new MetricsObserver(metrics), new LifecycleEventsObserver(publisher)],
  });
  return { a, metrics, publisher };
}

test('library: created, restored, deleted and gc events with the original subjects and payloads', async (t) => {
  const nats = await startNats(t);
  const sub = await collect(t, nats.url, 'nexo.memory.snapshot.>');
  const { a, publisher } = observedAgent(t, nats.url);

  const first = await a.snapshotter.snapshot({ agentId: 'ana', label: 'one', createdBy: 'cli' });
  const second = await a.snapshotter.snapshot({ agentId: 'ana' });
  const [c1, c2] = await sub.waitFor(2);
  assert.equal(c1!.subject, 'nexo.memory.snapshot.ana.created');
  assert.deepEqual(c1!.data, { kind: 'created', ...JSON.parse(JSON.stringify(first)) });
  assert.equal(c1!.data.label, 'one');
  assert.equal(c2!.data.id, second.id);
  assert.equal('label' in c2!.data, false, 'absent optionals are omitted, never null');
  for (const k of [
    'id',
    'agent_id',
    'tenant',
    'created_at_ms',
    'bundle_path',
    'bundle_size_bytes',
    'bundle_sha256',
    'schema_versions',
    'encrypted',
    'redactions_applied',
  ])
    assert.ok(k in c1!.data, k);

  // A dry run and a failure publish nothing.
  await a.snapshotter.restore({ agentId: 'ana', bundle: first.bundle_path, dryRun: true });
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'nobody' }), { code: 'UNKNOWN_AGENT' });

  const report = await a.snapshotter.restore({ agentId: 'ana', bundle: first.bundle_path });
  const [, , pre, restored] = await sub.waitFor(4);
  assert.equal(pre!.subject, 'nexo.memory.snapshot.ana.created', 'the pre-restore snapshot is announced');
  assert.equal(pre!.data.id, report.pre_snapshot);
  assert.equal(pre!.data.created_by, 'auto-pre-restore');
  assert.equal(restored!.subject, 'nexo.memory.snapshot.ana.restored');
  assert.equal(restored!.data.kind, 'restored');
  assert.equal(restored!.data.agent_id, 'ana');
  assert.equal(restored!.data.from, first.id);
  assert.equal(restored!.data.pre_snapshot, report.pre_snapshot);
  assert.equal(restored!.data.dry_run, false);
  assert.deepEqual(restored!.data.sqlite_restored_dbs, report.sqlite_restored_dbs);
  assert.deepEqual(restored!.data.state_files_restored, report.state_files_restored);
  assert.equal(typeof restored!.data.workers_restarted, 'boolean');
  assert.equal('components' in restored!.data, false);

  await a.snapshotter.delete('ana', undefined, second.id);
  const [, , , , deleted] = await sub.waitFor(5);
  assert.equal(deleted!.subject, 'nexo.memory.snapshot.ana.deleted');
  assert.equal(deleted!.data.kind, 'deleted');
  assert.equal(deleted!.data.snapshot_id, second.id);
  assert.equal(deleted!.data.tenant, 'default');
  assert.equal(typeof deleted!.data.ts_ms, 'number');

  // gc: one `deleted` per bundle it removes, then one `gc` on the _all subject.
  // [pre-restore anchor, first]: keep-count 0 leaves the user none; the anchor is the newest
  const gc = await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 0, maxAgeDays: 0 } });
  assert.equal(gc.bundles_deleted, 1);
  const all = await sub.waitFor(7);
  assert.equal(all[5]!.subject, 'nexo.memory.snapshot.ana.deleted');
  assert.equal(all[5]!.data.snapshot_id, first.id);
  assert.equal(all[6]!.subject, 'nexo.memory.snapshot._all.gc');
  assert.equal(all[6]!.data.kind, 'gc');
  const r = all[6]!.data.report as Record<string, unknown>;
  assert.equal(r.bundles_deleted, 1);
  assert.equal(r.agents_visited, 1);
  assert.equal(r.errors, 0);
  assert.equal(r.orphan_staging_dirs_removed, 0);
  // A sweep that changes nothing announces nothing (events announce changes to the store).
  const idle = await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 1, maxAgeDays: 0 } });
  assert.equal(idle.bundles_deleted + idle.orphan_staging_dirs_removed + idle.backups_removed, 0);
  assert.deepEqual(await publisher.close(), { published: 7, dropped: 0, queued: 0 });
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(sub.messages.length, 7, 'nothing else was published');
});

test('CLI --nats: every command that changes the store publishes; config sets the subject prefix', async (t) => {
  const nats = await startNats(t);
  const sub = await collect(t, nats.url, '>');
  const a = sampleAgent(t, 'ana', SMALL);
  const nats_ = ['--nats', nats.url];
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, ...nats_, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(r.stdout);
  const [created] = await sub.waitFor(1);
  assert.equal(created!.subject, 'nexo.memory.snapshot.ana.created');
  assert.deepEqual(created!.data, { kind: 'created', ...meta });

  r = await runCli(
    ['restore', '--agent', 'ana', '--from', meta.bundle_path, ...a.flags, ...nats_, '--json'],
    {
      env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' },
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  const msgs = await sub.waitFor(3);
  assert.deepEqual(
    msgs.map((m) => m.subject),
    [
      'nexo.memory.snapshot.ana.created',
      'nexo.memory.snapshot.ana.created',
      'nexo.memory.snapshot.ana.restored',
    ],
  );
  assert.equal(msgs[1]!.data.id, report.pre_snapshot);
  assert.equal(msgs[2]!.data.from, meta.id);

  r = await runCli([
    'delete',
    '--agent',
    'ana',
    '--id',
    meta.id,
    '--yes',
    '--state-root',
    a.stateRoot,
    ...nats_,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [, , , del] = await sub.waitFor(4);
  assert.equal(del!.subject, 'nexo.memory.snapshot.ana.deleted');
  assert.equal(del!.data.snapshot_id, meta.id);

  // The broker and prefixes from the config file; gc publishes on <prefix>._all.gc.
  const cfg = join(a.root, 'nexo.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    events:\n      nats_url: \${NEXO_TEST_NATS}\n      lifecycle_subject_prefix: acme.mem\n`,
  );
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg], {
    env: { NEXO_TEST_NATS: nats.url },
  });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(
    [
      'gc',
      '--all',
      '--keep-count',
      '1',
      '--anchor-keep-count',
      '0',
      '--state-root',
      a.stateRoot,
      '--config',
      cfg,
    ],
    {
      env: { NEXO_TEST_NATS: nats.url },
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const rest = (await sub.waitFor(7)).slice(4);
  assert.deepEqual(
    rest.map((m) => m.subject),
    ['acme.mem.ana.created', 'acme.mem.ana.deleted', 'acme.mem._all.gc'],
  );
  assert.equal((rest[2]!.data.report as { bundles_deleted: number }).bundles_deleted, 1);
});

test('import into a repository announces the snapshot it stores: --store-only and a full import (created, then restored)', async (t) => {
  const nats = await startNats(t);
  const sub = await collect(t, nats.url, 'nexo.memory.snapshot.>');
  const metrics = new SnapshotMetrics();
  const publisher = new NatsEventPublisher({ url: nats.url, metrics, connectTimeoutMs: 1000 });
  t.after(() => publisher.close(0));
  const a = sampleAgent(t, 'ana', SMALL, {
    store: 'repository',
    observers: [new MetricsObserver(metrics), new LifecycleEventsObserver(publisher)],
  });
  const bundles = new LocalSnapshotter({
    stateRoot: join(a.root, 'host-a'),
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'bundles',
  });
  const bundle = await bundles.snapshot({ agentId: 'ana', label: 'from host A' });

  const stored = await a.snapshotter.storeBundle({ bundle: bundle.bundle_path, agentId: 'dora' });
  assert.equal(stored.stored, 'new');
  const [created] = await sub.waitFor(1);
  assert.equal(created!.subject, 'nexo.memory.snapshot.dora.created');
  const { pinned: _, ...listed } = stored.snapshot;
  assert.deepEqual(created!.data, { kind: 'created', ...JSON.parse(JSON.stringify(listed)) });

  const report = await a.snapshotter.restore({ agentId: 'eve', bundle: bundle.bundle_path, import: {} });
  const msgs = await sub.waitFor(3);
  assert.deepEqual(
    msgs.map((m) => m.subject),
    [
      'nexo.memory.snapshot.dora.created',
      'nexo.memory.snapshot.eve.created',
      'nexo.memory.snapshot.eve.restored',
    ],
  );
  assert.equal(msgs[1]!.data.id, report.stored_snapshot);
  assert.equal(msgs[1]!.data.created_by, 'import');
  const text = await metrics.render();
  for (const agent of ['dora', 'eve'])
    assert.equal(
      sample(text, 'nexo_memory_snapshot_total', { agent, tenant: 'default', outcome: 'ok' }),
      1,
      agent,
    );
});

test('a broker that requires a password: credentials in --nats or events.nats_url are refused and never repeated; events.user/password work', async (t) => {
  const secret = 'Pw0rd-not-in-logs';
  const nats = await startNats(t, 0, ['--user', 'nexo', '--pass', secret]);
  const sub = await collect(t, nats.url, '>', { user: 'nexo', pass: secret });
  const a = sampleAgent(t, 'ana', SMALL);
  const withCreds = nats.url.replace('nats://', `nats://nexo:${secret}@`);
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--nats', withCreds, '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'INVALID_INPUT');
  assert.match(r.stdout, /never in the URL/);
  assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'the password is not repeated');
  const cfg = join(a.root, 'nexo.yaml');
  writeFileSync(cfg, `memory:\n  snapshot:\n    events:\n      nats_url: ${withCreds}\n`);
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'CONFIG');
  assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'the password is not repeated');
  assert.equal((await a.snapshotter.list('ana')).length, 0, 'nothing was written');

  // a wrong password: the snapshot is taken, the warning does not carry it, the event is dropped
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    events:\n      nats_url: ${nats.url}\n      user: nexo\n      password: wrong-one\n      max_attempts: 1\n`,
  );
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /event broker nats:\/\/127\.0\.0\.1:\d+ unreachable \(Authorization Violation\)/i);
  assert.ok(!r.stderr.includes('wrong-one'));
  // the right one, from the environment: the created event arrives
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    events:\n      nats_url: ${nats.url}\n      user: nexo\n      password: \${NEXO_TEST_NATS_PASSWORD}\n`,
  );
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--json'], {
    env: { NEXO_TEST_NATS_PASSWORD: secret },
  });
  assert.equal(r.code, 0, r.stderr);
  const [created] = await sub.waitFor(1);
  assert.equal(created!.subject, 'nexo.memory.snapshot.ana.created');
  assert.equal(created!.data.id, JSON.parse(r.stdout).id);
  assert.equal(sub.messages.length, 1, 'only the snapshot made with the right password was announced');
});

test('a broker that is down: the operation succeeds at once, the event is dropped and counted', async (t) => {
  // At once: a broker that accepts the connection and never answers holds the event's delivery for
  // as long as the publisher waits to connect; the snapshot returns while its event is still queued.
  const silent = await silentBroker(t);
  const held = observedAgent(t, silent, { connectTimeoutMs: 3_600_000 });
  const first = await held.a.snapshotter.snapshot({ agentId: 'ana' });
  assert.ok(first.id);
  assert.deepEqual(held.publisher.stats(), { published: 0, dropped: 0, queued: 1 }, 'not waited for');
  assert.deepEqual(await held.publisher.close(0), { published: 0, dropped: 1, queued: 0 });

  const url = deadBrokerUrl();
  const warnings: string[] = [];
  const { a, metrics, publisher } = observedAgent(t, url, { onWarning: (m) => warnings.push(m) });
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.ok(meta.id);
  // Refused attempts end on their own, within the retry bound: the event is dropped with the warning
  // (a drop forced by close's deadline gives none), and close has nothing left to wait for.
  await until(() => publisher.stats().dropped === 1);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /unreachable/);
  const stats = await publisher.close(5000);
  assert.deepEqual(stats, { published: 0, dropped: 1, queued: 0 });
  const text = await metrics.render();
  assert.equal(sample(text, 'nexo_memory_snapshot_events_dropped_total', { kind: 'created' }), 1);
  assert.equal(
    sample(text, 'nexo_memory_snapshot_total', { agent: 'ana', tenant: 'default', outcome: 'ok' }),
    1,
  );

  // The CLI: same exit status and output, the drop in the metrics file; the warning says the event
  // was dropped after its refused attempts, not when the run's close deadline ran out.
  const b = sampleAgent(t, 'ana', SMALL);
  let r = await runCli(['snapshot', '--agent', 'ana', ...b.flags, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const plain = JSON.parse(r.stdout);
  const prom = join(b.root, 'run.prom');
  r = await runCli([
    'snapshot',
    '--agent',
    'ana',
    ...b.flags,
    '--nats',
    url,
    '--metrics-file',
    prom,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const down = JSON.parse(r.stdout);
  assert.ok(down.id);
  assert.deepEqual(Object.keys(down).sort(), Object.keys(plain).sort(), 'the same output');
  assert.match(r.stderr, /warning: event broker .* unreachable/);
  const file = readFileSync(prom, 'utf8');
  assert.equal(sample(file, 'nexo_memory_snapshot_events_dropped_total', { kind: 'created' }), 1);
  assert.equal(
    sample(file, 'nexo_memory_snapshot_total', { agent: 'ana', tenant: 'default', outcome: 'ok' }),
    1,
  );
});

test('a broker that goes away mid-run: operations go on, events are dropped after the retry bound, delivery resumes when it is back', async (t) => {
  // on a port below the ephemeral range: nothing else can take it while the broker is down
  const [port] = await stablePorts(1);
  const nats = await startNats(t, port);
  const sub = await collect(t, nats.url, 'nexo.memory.snapshot.>');
  const { a, metrics, publisher } = observedAgent(t, nats.url);
  await a.snapshotter.snapshot({ agentId: 'ana' });
  await sub.waitFor(1);
  // the subscriber can have the message before the publisher has its confirmation (the broker's flush
  // answer): it is counted a moment later
  await until(() => publisher.stats().published >= 1);
  assert.equal(publisher.stats().published, 1);

  await nats.kill();
  const during = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.ok(during.id, 'the snapshot succeeds while the broker is gone');
  await until(() => publisher.stats().dropped >= 1);
  assert.equal(publisher.stats().dropped, 1);
  assert.equal(
    sample(await metrics.render(), 'nexo_memory_snapshot_events_dropped_total', { kind: 'created' }),
    1,
  );

  // Back on the same port: the next event is delivered again.
  const again = await startNats(t, nats.port);
  const sub2 = await collect(t, again.url, 'nexo.memory.snapshot.>');
  const after = await a.snapshotter.snapshot({ agentId: 'ana' });
  const [m] = await sub2.waitFor(1);
  assert.equal(m!.data.id, after.id);
  assert.deepEqual(await publisher.close(), { published: 2, dropped: 1, queued: 0 });
});

test('close() has a deadline: queued events of an unreachable broker are dropped, not waited for', async () => {
  const url = deadBrokerUrl();
  const metrics = new SnapshotMetrics();
  const warnings: string[] = [];
  // Ten attempts with backoffs doubling from 1 s: the retry bound alone is over eight minutes.
  const p = new NatsEventPublisher({
    url,
    metrics,
    maxAttempts: 10,
    retryBackoffMs: 1000,
    onWarning: (m) => warnings.push(m),
  });
  for (let i = 0; i < 5; i++)
    p.publishLifecycle({
      kind: 'deleted',
      agent_id: 'ana',
      tenant: 'default',
      snapshot_id: `s${i}`,
      ts_ms: i,
    });
  const stats = await p.close(300);
  assert.deepEqual(stats, { published: 0, dropped: 5, queued: 0 });
  assert.deepEqual(warnings, [], 'the deadline cut the attempts short: they never ran out');
  assert.equal(
    sample(await metrics.render(), 'nexo_memory_snapshot_events_dropped_total', { kind: 'deleted' }),
    5,
  );
  p.publishLifecycle({ kind: 'deleted', agent_id: 'ana', tenant: 'default', snapshot_id: 'late', ts_ms: 9 });
  assert.equal(p.stats().dropped, 6, 'after close, events are dropped at once');
});

test('MemoryMutationPublisher: nexo.memory.mutated.<agent> with scope, op, key, hashes, ts_ms', async (t) => {
  const nats = await startNats(t);
  const sub = await collect(t, nats.url, 'nexo.memory.mutated.>');
  const publisher = new NatsEventPublisher({ url: nats.url });
  t.after(() => publisher.close(0));
  const hook = new MemoryMutationPublisher(publisher);
  const before = Date.now();
  hook.onMutation('ana', 'default', 'sqlite_long_term', 'insert', 'mem-42', { newHash: 'b'.repeat(64) });
  hook.onMutation('ana', 'acme', 'git', 'update', 'c0ffee', { oldHash: 'a1', newHash: 'b2' });
  hook.onMutation('bob', 'default', 'memory_file', 'delete', 'topics/x.md');
  const msgs = await sub.waitFor(3);
  assert.deepEqual(
    msgs.map((m) => m.subject),
    ['nexo.memory.mutated.ana', 'nexo.memory.mutated.ana', 'nexo.memory.mutated.bob'],
  );
  const { ts_ms, ...rest } = msgs[0]!.data;
  assert.deepEqual(rest, {
    agent_id: 'ana',
    tenant: 'default',
    scope: 'sqlite_long_term',
    op: 'insert',
    key: 'mem-42',
    new_hash: 'b'.repeat(64),
  });
  assert.ok((ts_ms as number) >= before);
  assert.deepEqual(Object.keys(msgs[1]!.data).sort(), [
    'agent_id',
    'key',
    'new_hash',
    'old_hash',
    'op',
    'scope',
    'tenant',
    'ts_ms',
  ]);
  assert.equal(
    'old_hash' in msgs[2]!.data || 'new_hash' in msgs[2]!.data,
    false,
    'hashes omitted when absent',
  );

  assert.throws(() => hook.onMutation('ana', 'default', 'bogus' as never, 'insert', 'k'), {
    code: 'INVALID_INPUT',
  });
  assert.throws(() => hook.onMutation('Ana', 'default', 'git', 'insert', 'k'), { code: 'INVALID_INPUT' });
  const off = new MemoryMutationPublisher(publisher, { enabled: false });
  assert.equal(off.onMutation('ana', 'default', 'git', 'update', 'x'), undefined);

  // Configured prefix.
  const custom = new NatsEventPublisher({ url: nats.url, prefixes: { mutation: 'acme.mutations' } });
  t.after(() => custom.close(0));
  const sub2 = await collect(t, nats.url, 'acme.mutations.>');
  new MemoryMutationPublisher(custom).onMutation('ana', 'default', 'git', 'update', 'abc');
  const [m] = await sub2.waitFor(1);
  assert.equal(m!.subject, 'acme.mutations.ana');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(sub.messages.length, 3, 'the disabled publisher sent nothing');
});
