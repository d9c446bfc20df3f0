// The agent's repository lock (stop 47): two state roots ("hosts") on one repository — each with its
// own agent lock — deleting the agent's last two snapshots at once, or one deleting a snapshot while
// the other pins it. The decisive checks ("the last snapshot", "pinned", "still listed") are made under
// the agent's lock object in the repository, so one of the two is refused: never both deleted, never
// "pinned" reported for a snapshot that is gone, never a pin left of no snapshot. An orphan pin (left
// by an older version) is reported by check and removed by prune. A local repository (the file
// backend) on purpose: the same lock objects and code as NATS and S3, without a cluster's cost.

import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LocalBackend } from '../src/backend/local.js';
import { LocalSnapshotter } from '../src/index.js';
import { agentScope, lockRepository } from '../src/repository/locks.js';
import { sampleAgent, tempDir } from './helpers/env.js';
import { SMALL } from './helpers/exchange.js';

type Host = LocalSnapshotter;

/** A host: a state root of its own on the repository `repo` (the agent's live roots are not needed). */
function host(root: string, name: string, repo: string): Host {
  return new LocalSnapshotter({
    stateRoot: join(root, name, 'state'),
    memdirRoot: join(root, name, 'memdir'),
    sqliteRoot: join(root, name, 'sqlite'),
    lockTimeoutMs: 10_000,
    store: 'repository',
    repo,
  });
}

const code = (r: PromiseSettledResult<unknown>): string | undefined =>
  r.status === 'rejected' ? (r.reason as { code?: string }).code : 'ok';

/** An agent's three snapshots x, y, z in a repository, and `fresh()`: a copy of it and two hosts on it. */
async function rounds(t: TestContext) {
  const a = sampleAgent(t, 'ana', SMALL);
  const root = tempDir(t);
  const template = join(root, 'template');
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
    repo: template,
  });
  const x = (await s.snapshot({ agentId: 'ana', label: 'x' })).id;
  const y = (await s.snapshot({ agentId: 'ana', label: 'y' })).id;
  const z = (await s.snapshot({ agentId: 'ana', label: 'z' })).id;
  // Rounds on copies of one repository (cheap): each round two fresh hosts.
  let round = 0;
  const fresh = () => {
    const repo = join(root, `repo${++round}`);
    cpSync(template, repo, { recursive: true });
    return { repo, A: host(root, `A${round}`, repo), B: host(root, `B${round}`, repo) };
  };
  return { fresh, x, y, z };
}

test('two hosts: delete + delete of the last two snapshots, one is refused', async (t) => {
  const { fresh, x, y, z } = await rounds(t);

  // The agent's last two snapshots (z forgotten first), deleted at once from two hosts.
  for (let i = 0; i < 3; i++) {
    const { A, B } = fresh();
    await A.delete('ana', 'default', z);
    const [ra, rb] = await Promise.allSettled([A.delete('ana', 'default', x), B.delete('ana', 'default', y)]);
    const outcomes = [code(ra), code(rb)].sort();
    assert.deepEqual(outcomes, ['RETENTION', 'ok'], `round ${i}: ${outcomes}`);
    assert.equal((await B.list('ana')).length, 1, 'the last snapshot stays');
  }
});

test('two hosts: delete + pin of one snapshot, never both pass, no orphan pin left', async (t) => {
  const { fresh, x } = await rounds(t);
  // delete + pin of the same snapshot on two hosts: pinned and kept, or deleted and the pin refused.
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const { repo, A, B } = fresh();
    const [rd, rp] = await Promise.allSettled([A.delete('ana', 'default', x), B.pin('ana', 'default', x)]);
    const outcome = `${code(rd)}/${code(rp)}`;
    seen.add(outcome);
    const listed = await B.list('ana');
    const entry = listed.find((m) => m.id === x);
    if (outcome === 'ok/NOT_FOUND') assert.equal(entry, undefined, `round ${i}: deleted`);
    else {
      assert.equal(outcome, 'RETENTION/ok', `round ${i}: delete and pin both reported success`);
      assert.equal(entry?.pinned, true, `round ${i}: pinned and kept`);
    }
    assert.equal(existsSync(join(repo, 'pins', x)), entry !== undefined, `round ${i}: no orphan pin`);
    assert.deepEqual((await B.check()).orphan_pins, []);
  }
  t.diagnostic(`delete/pin outcomes: ${[...seen].join(', ')}`);
});

test("the agent's repository lock held by another host: a delete waits for it, gc skips the agent", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const root = tempDir(t);
  const repo = join(root, 'repo');
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
    repo,
  });
  const x = (await s.snapshot({ agentId: 'ana' })).id;
  await s.snapshot({ agentId: 'ana' });
  const B = host(root, 'B', repo);
  const backend = new LocalBackend(repo);
  // Another host holds the agent's lock (its delete or pin between its check and its write): this
  // host's delete waits for it, and decides on what the repository holds when it gets it.
  const held = await lockRepository(backend, false, 'pin', 0, { scope: agentScope('default', 'ana') });
  const deleting = B.delete('ana', 'default', x);
  let settled = false;
  void deleting.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(settled, false, 'delete waits for the agent lock of another host');
  // that host pins x meanwhile (its pin object written under its lock), then releases the lock
  await backend.save(
    { type: 'pins', name: x },
    Buffer.from(`${JSON.stringify({ pinned_at_ms: Date.now() })}\n`),
  );
  await held.release();
  await assert.rejects(deleting, (e: { code?: string; message: string }) => {
    assert.equal(e.code, 'RETENTION');
    assert.match(e.message, /pinned/);
    return true;
  });
  assert.equal((await B.list('ana')).find((m) => m.id === x)?.pinned, true);

  // gc never waits: an agent whose lock another host holds is skipped as busy, nothing forgotten
  const again = await lockRepository(backend, false, 'delete', 0, { scope: agentScope('default', 'ana') });
  await B.unpin('ana', 'default', x);
  const r = await B.gc({ policy: { keepCount: 1 } });
  const ana = r.agents.find((g) => g.agent_id === 'ana');
  assert.match(String(ana?.skipped), /repository lock/, JSON.stringify(ana));
  assert.equal((await B.list('ana')).length, 2, 'nothing forgotten');
  // a lock of another agent's scope, or the repository's shared lock, does not stop it
  await again.release();
  const other = await lockRepository(backend, false, 'snapshot', 0, { scope: agentScope('default', 'bob') });
  const shared = await lockRepository(backend, false, 'snapshot', 0);
  const r2 = await B.gc({ policy: { keepCount: 1 } });
  assert.equal(r2.agents.find((g) => g.agent_id === 'ana')?.skipped, undefined);
  assert.equal((await B.list('ana')).length, 1, 'gc forgot the older one');
  await other.release();
  await shared.release();
});

test('an orphan pin (a pin of no snapshot): check reports it, prune removes it', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const repo = join(tempDir(t), 'repo');
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
    repo,
  });
  const x = (await s.snapshot({ agentId: 'ana' })).id;
  await s.pin('ana', 'default', x);
  const orphan = '01900000-0000-7000-8000-000000000001';
  mkdirSync(join(repo, 'pins'), { recursive: true });
  writeFileSync(join(repo, 'pins', orphan), `${JSON.stringify({ pinned_at_ms: 1 })}\n`);
  const c = await s.check();
  assert.deepEqual(c.orphan_pins, [orphan]);
  assert.equal(c.ok, true, 'not damage');
  const p = await s.prune();
  assert.equal(p.orphan_pins_removed, 1);
  assert.equal(existsSync(join(repo, 'pins', orphan)), false);
  assert.equal(existsSync(join(repo, 'pins', x)), true, "a listed snapshot's pin stays");
  assert.deepEqual((await s.check()).orphan_pins, []);
});
