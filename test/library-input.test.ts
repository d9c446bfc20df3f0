// What a library caller passes may be anything (JavaScript, or TypeScript with `as`): every argument of
// the wrong type or range is INVALID_INPUT before anything is read, written or deleted (stop 50, a
// hostile review: `gc({policy: {keepCount: undefined}})`'s neighbours NaN and -1 deleted all but the
// newest snapshot; a `createdBy` object was sealed into a manifest every reader then called damaged).

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalSnapshotter, PreDreamSnapshotAdapter, SnapshotError, WriteGate } from '../src/index.js';
import { sampleAgent } from './helpers/env.js';

const SMALL = { files: 2, commits: 1, memories: 5, embeddings: 2, concepts: 2, compactions: 1 };

/** Rejects with INVALID_INPUT (a SnapshotError), its message matching `message`. */
async function invalid(what: string, call: () => unknown, message: RegExp): Promise<void> {
  await assert.rejects(
    async () => call(),
    (err: unknown) => {
      assert.ok(err instanceof SnapshotError, `${what}: ${String(err)}`);
      assert.equal(err.code, 'INVALID_INPUT', what);
      assert.match(err.message, message, what);
      return true;
    },
    what,
  );
}

const bundlesOf = (stateRoot: string): string[] => {
  const dir = join(stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((n) => n.endsWith('.tar.zst'))
        .sort()
    : [];
};

test('gc: a rule left undefined is the default; NaN, negative, fractional, text and unknown rules are refused, nothing deleted', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  for (let i = 0; i < 4; i++) await a.snapshotter.snapshot({ agentId: 'ana', label: `s${i}` });
  const before = bundlesOf(a.stateRoot);
  assert.equal(before.length, 4);
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ keepCount: Number.NaN }, /keepCount must be a whole number ≥ 0, got NaN/],
    [{ keepCount: -1 }, /got -1/],
    [{ keepCount: null }, /got null/],
    [{ keepCount: 1.5 }, /got 1\.5/],
    [{ maxAgeDays: '30' }, /maxAgeDays must be a whole number ≥ 0, got "30"/],
    [{ keep_count: 1 }, /"keep_count" is no retention rule/],
  ];
  for (const [policy, message] of refused)
    await invalid(JSON.stringify(policy), () => a.snapshotter.gc({ agentId: 'ana', policy }), message);
  await invalid(
    'backupMaxAgeDays',
    () => a.snapshotter.gc({ agentId: 'ana', backupMaxAgeDays: Number.NaN }),
    /backupMaxAgeDays/,
  );
  assert.deepEqual(bundlesOf(a.stateRoot), before, 'nothing deleted');
  // undefined: the default (30 kept): nothing goes; a real rule applies
  const r = await a.snapshotter.gc({
    agentId: 'ana',
    policy: { keepCount: undefined, maxAgeDays: undefined },
  });
  assert.equal(r.policy.keep_count, 30);
  assert.deepEqual(bundlesOf(a.stateRoot), before);
  await a.snapshotter.gc({ agentId: 'ana', policy: { keepCount: 2 } });
  assert.equal(bundlesOf(a.stateRoot).length, 2);
});

test('snapshot: createdBy, label, sign and encrypt of the wrong type are refused, nothing written', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const s = a.snapshotter;
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['createdBy {}', { createdBy: {} }, /invalid created_by/],
    ['createdBy 123', { createdBy: 123 }, /invalid created_by/],
    ['label 12', { label: 12 }, /invalid label: a string, got number/],
    ['sign true', { sign: true }, /sign must be a signing key/],
    ['encrypt "age1…"', { encrypt: 'age1x' }, /encrypt must be a list/],
  ];
  for (const [what, extra, message] of bad)
    await invalid(what, () => s.snapshot({ agentId: 'ana', ...extra } as never), message);
  assert.deepEqual(bundlesOf(a.stateRoot), []);
  const ok = await s.snapshot({ agentId: 'ana' });
  // the readers: a number or an object where a snapshot, a path or a side belongs
  const reads: Array<[string, () => unknown, RegExp]> = [
    [
      'restore snapshot 12',
      () => s.restore({ agentId: 'ana', snapshot: 12 as never, dryRun: true }),
      /snapshot must be a string/,
    ],
    [
      'restore bundle {}',
      () => s.restore({ agentId: 'ana', bundle: {} as never, dryRun: true }),
      /bundle must be a string/,
    ],
    ['diff a 5', () => s.diff({ agentId: 'ana', a: 5 as never, b: 'live' }), /a must be a string/],
    ['verify 12', () => s.verify(12 as never), /bundle path must be a string/],
    [
      'verifySnapshot null',
      () => s.verifySnapshot('ana', undefined, null as never),
      /snapshot must be a string/,
    ],
    ['delete 12', () => s.delete('ana', undefined, 12 as never), /snapshot must be a string/],
    ['pin note 12', () => s.pin('ana', undefined, ok.id, 12 as never), /invalid note: a string/],
    [
      'export target 5',
      () => s.export('ana', undefined, ok.id, 5 as never),
      /export target must be a string/,
    ],
  ];
  for (const [what, call, message] of reads) await invalid(what, call, message);
  assert.deepEqual(bundlesOf(a.stateRoot).length, 1, 'the snapshot is still there');
  await invalid(
    'WriteGate.write(5)',
    () => WriteGate.forAgent(a.stateRoot, 'ana').write(5 as never),
    /a function/,
  );
});

test('LocalSnapshotter: lockTimeoutMs, zstdWorkers and store are checked like zstdLevel', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const options: Array<[Record<string, unknown>, RegExp]> = [
    [{ lockTimeoutMs: '1000' }, /lockTimeoutMs must be a whole number ≥ 0/],
    [{ lockTimeoutMs: Number.NaN }, /lockTimeoutMs/],
    [{ lockTimeoutMs: -1 }, /lockTimeoutMs/],
    [{ zstdWorkers: '2' }, /zstdWorkers must be a whole number ≥ 0/],
    [{ store: 'bogus' }, /store must be one of auto, repository, bundles, got "bogus"/],
  ];
  for (const [extra, message] of options)
    await invalid(
      JSON.stringify(extra),
      () => new LocalSnapshotter({ stateRoot: a.stateRoot, ...extra } as never),
      message,
    );
});

test('a pre-dream snapshot needs the run id it is named by (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const hook = new PreDreamSnapshotAdapter(a.snapshotter);
  for (const runId of ['', 7 as never]) {
    const r = await hook.snapshotBeforeDream('ana', undefined, runId);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, 'INVALID_INPUT');
  }
  assert.deepEqual(bundlesOf(a.stateRoot), []);
  const ok = await hook.snapshotBeforeDream('ana', undefined, 'run-1');
  assert.equal(ok.ok && ok.snapshot.label, 'auto:pre-dream-run-1');
});
