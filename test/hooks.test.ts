// Hooks for host runtimes: the pre-dream adapter (label, created_by, never redacted, failures returned
// not thrown) and the documented runtime example — writes under the write gate, mutation events, a
// pre-dream snapshot that rolls the dream back exactly.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import {
  MemoryMutationPublisher,
  NatsEventPublisher,
  PRE_DREAM_CREATED_BY,
  PreDreamSnapshotAdapter,
  WriteGate,
} from '../src/index.js';
import { sampleAgent } from './helpers/env.js';
import { collect, startNats } from './helpers/nats.js';

test('pre-dream adapter: label auto:pre-dream-<run id>, created_by auto-pre-dream, unredacted; failures are returned', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const hook = new PreDreamSnapshotAdapter(a.snapshotter);
  const r = await hook.snapshotBeforeDream('ana', undefined, 'run-0042');
  assert.ok(r.ok);
  assert.equal(r.snapshot.label, 'auto:pre-dream-run-0042');
  assert.equal(r.snapshot.created_by, PRE_DREAM_CREATED_BY);
  assert.equal(r.snapshot.redactions_applied, false);
  assert.equal(r.snapshot.tenant, 'default');
  const listed = (await a.snapshotter.list('ana'))[0]!;
  assert.equal(listed.id, r.snapshot.id);
  assert.equal(listed.created_by, 'auto-pre-dream');
  assert.equal((await a.snapshotter.verify(listed.bundle_path)).status, 'verified');

  const missing = await hook.snapshotBeforeDream('nobody', 'default', 'run-1');
  assert.deepEqual(
    { ok: missing.ok, code: !missing.ok && missing.code },
    { ok: false, code: 'UNKNOWN_AGENT' },
  );
  const bad = await hook.snapshotBeforeDream('ana', 'default', 'x'.repeat(300));
  assert.equal(bad.ok, false, 'a label over 200 characters is refused, not thrown');
});

test('the README runtime example: gated writes, mutation events, a dream rolled back from its pre-dream snapshot', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const nats = await startNats(t);
  const sub = await collect(t, nats.url, 'nexo.memory.mutated.ana');
  const publisher = new NatsEventPublisher({ url: nats.url });
  t.after(() => publisher.close(0));
  const mutations = new MemoryMutationPublisher(publisher);
  const preDream = new PreDreamSnapshotAdapter(a.snapshotter);
  const gate = WriteGate.forAgent(a.stateRoot, 'ana');
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  t.after(() => db.close());

  const remember = (content: string) =>
    gate.write(() => {
      const id = Number(
        db
          .prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)')
          .run(Date.now(), 'fact', content, 0.5).lastInsertRowid,
      );
      mutations.onMutation('ana', 'default', 'sqlite_long_term', 'insert', String(id));
      return id;
    });

  const kept = await remember('the user prefers tea');
  const before = await preDream.snapshotBeforeDream('ana', 'default', 'dream-1');
  assert.ok(before.ok);
  // The "dream" rewrites memory.
  await gate.write(() => {
    db.prepare('DELETE FROM memories WHERE id = ?').run(kept);
    mutations.onMutation('ana', 'default', 'sqlite_long_term', 'delete', String(kept));
  });
  assert.deepEqual(
    (await sub.waitFor(2)).map((m) => [m.data.op, m.data.key]),
    [
      ['insert', String(kept)],
      ['delete', String(kept)],
    ],
  );
  db.close();
  await a.snapshotter.restore({ agentId: 'ana', bundle: before.snapshot.bundle_path });
  const after = new Database(join(a.sqliteDir, 'long_term.sqlite'), { readonly: true });
  t.after(() => after.close());
  assert.equal(
    (after.prepare('SELECT content FROM memories WHERE id = ?').get(kept) as { content: string }).content,
    'the user prefers tea',
    'the pre-dream snapshot brought the forgotten memory back',
  );
});
