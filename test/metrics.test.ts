// Metrics: the original's families and labels after real operations (successes and typed failures with
// their outcome label), the node_exporter textfile of one-shot CLI runs (atomic, parseable), the
// cardinality cap and the histogram bounds.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DURATION_BUCKETS_MS,
  METRIC,
  MetricsObserver,
  SnapshotMetrics,
  writeMetricsTextfile,
} from '../src/index.js';
import { runCli, sampleAgent, startFixture, tempDir } from './helpers/env.js';
import { sample } from './helpers/prom.js';

const SMALL = { files: 4, commits: 2, memories: 40, embeddings: 20 };

/** Every line is a comment, blank, or `name{labels} number`: what the textfile collector accepts. */
function assertParseable(text: string): void {
  assert.ok(text.endsWith('\n'));
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    assert.match(line, /^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+]+$/, line);
  }
}

const ORIGINAL_FAMILIES: Array<[string, string]> = [
  ['nexo_memory_snapshot_total', 'counter'],
  ['nexo_memory_snapshot_restore_total', 'counter'],
  ['nexo_memory_snapshot_gc_total', 'counter'],
  ['nexo_memory_snapshot_bytes_total', 'counter'],
  ['nexo_memory_snapshot_duration_ms', 'histogram'],
];

test('after real operations: outcomes of successes and failures, bytes, durations, restore, delete, gc', async (t) => {
  const metrics = new SnapshotMetrics();
  const a = sampleAgent(t, 'ana', SMALL, { observers: [new MetricsObserver(metrics)], lockTimeoutMs: 300 });
  const who = { agent: 'ana', tenant: 'default' };
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'nobody' }), { outcome: 'not_found' });
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana', label: 'bad\u0001' }), {
    outcome: 'invalid_input',
  });
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), { outcome: 'concurrent' });
  holder.child.kill('SIGKILL');
  await holder.exited;

  const report = await a.snapshotter.restore({ agentId: 'ana', bundle: s1.bundle_path });
  const pre = (await a.snapshotter.list('ana')).find((m) => m.id === report.pre_snapshot)!;
  await a.snapshotter.restore({ agentId: 'ana', bundle: s1.bundle_path, dryRun: true });
  const damaged = join(a.root, 'damaged.tar.zst');
  copyFileSync(s2.bundle_path, damaged);
  const bytes = readFileSync(damaged);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  writeFileSync(damaged, bytes);
  const restoreError = await a.snapshotter
    .restore({ agentId: 'ana', bundle: damaged, autoPreSnapshot: false })
    .then(
      () => assert.fail('a damaged bundle must not restore'),
      (e: { outcome: string }) => e,
    );

  await a.snapshotter.delete('ana', undefined, s2.id);
  await assert.rejects(a.snapshotter.delete('ana', undefined, '00000000'), { outcome: 'not_found' });
  const gc = await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 0, maxAgeDays: 0 } });
  await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 0, maxAgeDays: 0 }, dryRun: true });

  const text = await metrics.render();
  assertParseable(text);
  for (const [name, type] of ORIGINAL_FAMILIES) {
    assert.match(text, new RegExp(`^# HELP ${name} .+$`, 'm'), name);
    assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
  }
  const total = (outcome: string, agent = 'ana') =>
    sample(text, METRIC.snapshotTotal, { agent, tenant: 'default', outcome });
  assert.equal(total('ok'), 3, 'two snapshots and the pre-restore one');
  assert.equal(total('not_found', '_unknown'), 1, 'an agent the host does not have takes no label value');
  assert.equal(total('invalid_input'), 1);
  assert.equal(total('concurrent'), 1);
  assert.equal(total('error'), undefined);
  assert.equal(
    sample(text, METRIC.bytesTotal, who),
    s1.bundle_size_bytes + s2.bundle_size_bytes + pre.bundle_size_bytes,
  );
  assert.equal(sample(text, `${METRIC.durationMs}_count`, who), 5, 'every outcome of ana is timed');
  assert.ok(sample(text, `${METRIC.durationMs}_sum`, who)! > 0);
  assert.equal(sample(text, `${METRIC.durationMs}_bucket`, { ...who, le: '+Inf' }), 5);

  assert.equal(sample(text, METRIC.restoreTotal, { ...who, outcome: 'ok' }), 1, 'the dry run is not counted');
  assert.ok(['damaged', 'checksum_mismatch'].includes(restoreError.outcome), restoreError.outcome);
  assert.equal(sample(text, METRIC.restoreTotal, { ...who, outcome: restoreError.outcome }), 1);
  assert.equal(sample(text, `${METRIC.restoreDurationMs}_count`, who), 2);

  assert.equal(sample(text, METRIC.deleteTotal, { ...who, outcome: 'ok' }), 1);
  assert.equal(sample(text, METRIC.deleteTotal, { ...who, outcome: 'not_found' }), 1);
  assert.ok(gc.bundles_deleted > 0);
  assert.equal(sample(text, METRIC.gcTotal, who), gc.bundles_deleted, 'the dry run adds nothing');
});

test('--metrics-file: the CLI writes the families atomically, failures included; config metrics.textfile', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const dir = join(a.root, 'textfiles');
  mkdirSync(dir);
  const prom = join(dir, 'nexo_memory.prom');
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--metrics-file', prom, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(r.stdout);
  let text = readFileSync(prom, 'utf8');
  assertParseable(text);
  for (const [name] of ORIGINAL_FAMILIES) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'));
  const who = { agent: 'ana', tenant: 'default' };
  assert.equal(sample(text, METRIC.snapshotTotal, { ...who, outcome: 'ok' }), 1);
  assert.equal(sample(text, METRIC.bytesTotal, who), meta.bundle_size_bytes);
  assert.equal(statSync(prom).mode & 0o777, 0o644, 'readable by the node_exporter user');
  assert.deepEqual(readdirSync(dir), ['nexo_memory.prom'], 'no temporary file left beside it');

  // A failed run replaces the file with its own outcome.
  r = await runCli(['snapshot', '--agent', 'nobody', ...a.flags, '--metrics-file', prom]);
  assert.equal(r.code, 5);
  text = readFileSync(prom, 'utf8');
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: '_unknown', tenant: 'default', outcome: 'not_found' }),
    1,
  );
  assert.equal(sample(text, METRIC.snapshotTotal, { ...who, outcome: 'ok' }), undefined);

  // metrics.textfile from the config (relative to the file); the flag overrides it.
  const cfg = join(a.root, 'nexo.yaml');
  writeFileSync(cfg, 'memory:\n  snapshot:\n    metrics:\n      textfile: textfiles/from-config.prom\n');
  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--config', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    readFileSync(join(dir, 'from-config.prom'), 'utf8'),
    /^# TYPE nexo_memory_snapshot_total counter$/m,
  );
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--metrics-file', prom]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sample(readFileSync(prom, 'utf8'), METRIC.snapshotTotal, { ...who, outcome: 'ok' }), 1);
  assert.equal(
    sample(readFileSync(join(dir, 'from-config.prom'), 'utf8'), METRIC.snapshotTotal, {
      ...who,
      outcome: 'ok',
    }),
    undefined,
    'the flag won',
  );

  // An unwritable path is a warning: the snapshot itself succeeded.
  r = await runCli([
    'snapshot',
    '--agent',
    'ana',
    ...a.flags,
    '--metrics-file',
    join(a.root, 'no', 'such', 'dir.prom'),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /could not write the metrics file/);
});

test('textfile writes are atomic: a reader never sees a partial file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'x.prom');
  const metrics = new SnapshotMetrics();
  // Make the file large enough that a non-atomic write would be observable.
  for (let i = 0; i < 200; i++)
    metrics.observe('snapshot', { agent: `agent-${i}`, tenant: 'default' }, 'ok', 1000, 42);
  await writeMetricsTextfile(path, metrics);
  let reads = 0;
  let writing = true;
  const reader = (async () => {
    while (writing) {
      const text = readFileSync(path, 'utf8');
      assertParseable(text);
      assert.match(text, /^# TYPE nexo_memory_snapshot_events_dropped_total counter$/m);
      reads++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  for (let i = 0; i < 100; i++) {
    metrics.observe('snapshot', { agent: 'agent-0', tenant: 'default' }, 'ok', 1, 1);
    await writeMetricsTextfile(path, metrics);
  }
  writing = false;
  await reader;
  assert.ok(reads > 10, `the reader ran (${reads} reads)`);
  assert.equal(
    sample(readFileSync(path, 'utf8'), METRIC.snapshotTotal, {
      agent: 'agent-0',
      tenant: 'default',
      outcome: 'ok',
    }),
    101,
  );
  assert.deepEqual(readdirSync(dir), ['x.prom']);
});

test('cardinality: at most 256 agents and 256 tenants per label, later ones report as other', async () => {
  const m = new SnapshotMetrics();
  for (let i = 0; i < 300; i++) m.observe('snapshot', { agent: `a${i}`, tenant: 't0' }, 'ok', 10, 1);
  m.observe('snapshot', { agent: 'a5', tenant: 't0' }, 'ok', 10, 1);
  for (let i = 0; i < 260; i++) m.observe('restore', { agent: 'a0', tenant: `t${i}` }, 'error', 0, 1);
  const text = await m.render();
  const agents = new Set(
    [...text.matchAll(/^nexo_memory_snapshot_total\{[^}]*agent="([^"]+)"/gm)].map((x) => x[1]),
  );
  assert.equal(agents.size, 257, '256 names and other');
  assert.equal(sample(text, METRIC.snapshotTotal, { agent: 'other', tenant: 't0', outcome: 'ok' }), 44);
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: 'a5', tenant: 't0', outcome: 'ok' }),
    2,
    'known names keep theirs',
  );
  assert.equal(
    sample(text, METRIC.bytesTotal, { agent: 'other', tenant: 't0' }),
    440,
    'the cap is shared by every family',
  );
  const tenants = new Set(
    [...text.matchAll(/^nexo_memory_snapshot_restore_total\{[^}]*tenant="([^"]+)"/gm)].map((x) => x[1]),
  );
  assert.equal(tenants.size, 257, 't0 (seen before) and 255 new names, then other');
  assert.equal(sample(text, METRIC.restoreTotal, { agent: 'a0', tenant: 'other', outcome: 'error' }), 4);
});

test('invalid ids and agents the host does not have take none of the 256 label values', async (t) => {
  const metrics = new SnapshotMetrics({ labelCap: 2 });
  const a = sampleAgent(t, 'ana', { memories: 5, files: 1 }, { observers: [new MetricsObserver(metrics)] });
  for (let i = 0; i < 5; i++) {
    await assert.rejects(a.snapshotter.snapshot({ agentId: `BAD AGENT ${i}` }), { code: 'INVALID_INPUT' });
    await assert.rejects(a.snapshotter.snapshot({ agentId: `nobody-${i}` }), { code: 'UNKNOWN_AGENT' });
    await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana', tenant: `Bad Tenant ${i}` }), {
      code: 'INVALID_INPUT',
    });
  }
  const ok = await a.snapshotter.snapshot({ agentId: 'ana' });
  const text = await metrics.render();
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: 'ana', tenant: 'default', outcome: 'ok' }),
    1,
    'the real agent keeps its name',
  );
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: '_invalid', tenant: 'default', outcome: 'invalid_input' }),
    5,
  );
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: '_unknown', tenant: 'default', outcome: 'not_found' }),
    5,
  );
  assert.equal(
    sample(text, METRIC.snapshotTotal, { agent: 'ana', tenant: '_invalid', outcome: 'invalid_input' }),
    5,
  );
  assert.doesNotMatch(text, /agent="other"|nobody|BAD AGENT|Bad Tenant/);
  // bytes: what the snapshot wrote (a bundle here: its size)
  assert.equal(sample(text, METRIC.bytesTotal, { agent: 'ana', tenant: 'default' }), ok.bundle_size_bytes);
});

test('a repository snapshot counts the bytes it added, not the size of the whole snapshot', async (t) => {
  const metrics = new SnapshotMetrics();
  const a = sampleAgent(
    t,
    'ana',
    { memories: 5, files: 1 },
    { store: 'repository', observers: [new MetricsObserver(metrics)] },
  );
  const first = (await a.snapshotter.snapshot({ agentId: 'ana' })) as {
    added_bytes?: number;
    bundle_size_bytes: number;
  };
  const second = (await a.snapshotter.snapshot({ agentId: 'ana' })) as {
    added_bytes?: number;
    bundle_size_bytes: number;
  };
  assert.ok(first.added_bytes !== undefined && second.added_bytes !== undefined);
  assert.ok(second.added_bytes < second.bundle_size_bytes, 'an unchanged agent adds little');
  const text = await metrics.render();
  assert.equal(
    sample(text, METRIC.bytesTotal, { agent: 'ana', tenant: 'default' }),
    first.added_bytes + second.added_bytes,
  );
});

test('duration histogram: the original bounds, a value on a bound falls in that bucket', async () => {
  const m = new SnapshotMetrics();
  const who = { agent: 'ana', tenant: 'default' };
  for (const ms of [50, 51, 1000, 70_000]) m.observe('snapshot', who, 'ok', 1, ms);
  const text = await m.render();
  const bucket = (le: string) => sample(text, `${METRIC.durationMs}_bucket`, { ...who, le });
  assert.deepEqual([...DURATION_BUCKETS_MS], [50, 100, 250, 500, 1000, 5000, 15000, 60000]);
  assert.equal(bucket('50'), 1);
  assert.equal(bucket('100'), 2);
  assert.equal(bucket('1000'), 3);
  assert.equal(bucket('60000'), 3);
  assert.equal(bucket('+Inf'), 4);
  assert.equal(sample(text, `${METRIC.durationMs}_sum`, who), 50 + 51 + 1000 + 70_000);
});
