// Tests of prune, retention and delete against hostile bytes in a local repository (a hunter's findings,
// stop 44): hidden index files, a symlinked pack directory or pack, forged index rows, forged listing
// entries. Real repositories on disk, the CLI run in the test process (`main(argv)`: its exit status and
// output are what is checked); what must hold is that nothing a kept snapshot references is removed,
// and that the refusal is damage (exit 2) naming what is wrong.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LocalBackend } from '../src/backend/local.js';
import { LocalSnapshotter } from '../src/index.js';
import { decodeIndex } from '../src/repository/index-file.js';
import { PACK_TARGET, PackBuilder } from '../src/repository/pack.js';
import { Repository, saveContentAddressed } from '../src/repository/repository.js';
import { type Agent, runCli, sampleAgent } from './helpers/env.js';

/** An agent with a repository of two snapshots whose data differ (each has packs of its own). */
async function twoSnapshots(t: TestContext): Promise<{ a: Agent; repo: string; ids: string[] }> {
  const a = sampleAgent(
    t,
    'ana',
    { memories: 40, embeddings: 5, files: 3, commits: 2 },
    { store: 'repository' },
  );
  const alt = join(a.memdir, 'topics', 'alt.md');
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    writeFileSync(alt, randomBytes(200 * 1024).toString('base64'));
    ids.push((await a.snapshotter.snapshot({ agentId: 'ana' })).id);
  }
  return { a, repo: join(a.stateRoot, 'repository'), ids };
}

/** Every pack file as `prefix/name`, sorted. */
function packFiles(repo: string): string[] {
  const dir = join(repo, 'packs');
  return readdirSync(dir)
    .flatMap((d) => readdirSync(join(dir, d)).map((n) => `${d}/${n}`))
    .sort();
}

const cli = (a: Agent, args: string[]) =>
  runCli([...args, '--state-root', a.stateRoot], {
    env: { NEXO_MEMORY_STORE_FORMAT: 'repository' },
  });

/** Every listed snapshot of ana verifies through a fresh snapshotter; returns their ids, newest first. */
async function allVerify(a: Agent): Promise<string[]> {
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  });
  const ids: string[] = [];
  for (const m of await s.list('ana')) {
    const r = await s.verifySnapshot('ana', 'default', m.id);
    assert.equal(r.status, 'verified', `${m.id}: ${JSON.stringify(r.problems)}`);
    ids.push(m.id);
  }
  return ids;
}

test('prune: a referenced blob in no listed, indexed pack (index files hidden) stops prune before anything is removed', async (t) => {
  const { a, repo, ids } = await twoSnapshots(t);
  const packs = packFiles(repo);
  const hidden = join(a.root, 'hidden-index');
  renameSync(join(repo, 'index'), hidden);
  mkdirSync(join(repo, 'index'));
  const r = await cli(a, ['prune']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /prune stopped before removing anything: \d+ blob\(s\) the kept snapshots reference/,
  );
  assert.deepEqual(packFiles(repo), packs, 'no pack removed');
  assert.deepEqual(readdirSync(join(repo, 'index')), [], 'no index file written');
  // a dry run says the same (it is what prune would do)
  assert.equal((await cli(a, ['prune', '--dry-run'])).code, 2);
  rmSync(join(repo, 'index'), { recursive: true });
  renameSync(hidden, join(repo, 'index'));
  assert.deepEqual((await allVerify(a)).sort(), [...ids].sort());
});

test('prune and check: a symlinked pack prefix directory or pack file is refused (UNSAFE_OBJECT), never skipped', async (t) => {
  const { a, repo, ids } = await twoSnapshots(t);
  const packs = packFiles(repo);
  const indexFiles = readdirSync(join(repo, 'index')).sort();
  // the prefix directory of the first pack, swapped for a symlink to a copy elsewhere
  const prefix = packs[0]!.slice(0, 2);
  const dir = join(repo, 'packs', prefix);
  const copy = join(a.root, 'copy');
  cpSync(dir, copy, { recursive: true });
  rmSync(dir, { recursive: true });
  symlinkSync(copy, dir);
  for (const cmd of [['prune'], ['check']]) {
    const r = await cli(a, cmd);
    assert.equal(r.code, 2, `${cmd}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /unsafe storage: .*packs\/[0-9a-f]{2} is a symlink/, cmd[0]);
  }
  assert.deepEqual(readdirSync(join(repo, 'index')).sort(), indexFiles, 'the index is as it was');
  rmSync(dir);
  cpSync(copy, dir, { recursive: true });
  // one pack file swapped for a symlink to its copy
  const file = join(repo, 'packs', packs[1]!);
  const elsewhere = join(a.root, 'pack-copy');
  cpSync(file, elsewhere);
  rmSync(file);
  symlinkSync(elsewhere, file);
  const r = await cli(a, ['prune']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /unsafe storage: packs\/[0-9a-f]{64} is a symlink/);
  assert.deepEqual(readdirSync(join(repo, 'index')).sort(), indexFiles);
  rmSync(file);
  cpSync(elsewhere, file);
  assert.deepEqual(packFiles(repo), packs);
  assert.deepEqual((await allVerify(a)).sort(), [...ids].sort());
  assert.equal((await cli(a, ['prune'])).code, 0);
  assert.deepEqual((await allVerify(a)).sort(), [...ids].sort());
});

/** Rewrites `listing/<from>` as `listing/<to>` with `edit` applied to its meta. */
function forgeListing(repo: string, from: string, to: string, edit: (m: Record<string, unknown>) => void) {
  const entry = JSON.parse(readFileSync(join(repo, 'listing', from), 'utf8')) as {
    meta: Record<string, unknown>;
  };
  entry.meta.id = to;
  edit(entry.meta);
  writeFileSync(join(repo, 'listing', to), `${JSON.stringify(entry)}\n`);
}

test('retention counts only listing entries whose manifest exists and is the agent’s; delete checks the manifest’s agent', async (t) => {
  const { a, repo, ids } = await twoSnapshots(t);
  const [s1, s2] = ids as [string, string];
  // a ghost: S1's entry under a new, newer id, with no manifest
  const ghost = '01ffffff-ffff-7fff-bfff-ffffffffffff';
  forgeListing(repo, s1, ghost, (m) => {
    m.created_at_ms = Date.now() + 1000;
  });
  let r = await cli(a, [
    'gc',
    '--agent',
    'ana',
    '--keep-count',
    '1',
    '--max-age-days',
    '0',
    ...a.flags.slice(2),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as {
    agents: {
      decisions: { id: string; action: string }[];
      listing_problems?: { id: string; problem: string }[];
    }[];
  };
  const ana = report.agents[0]!;
  assert.deepEqual(
    ana.decisions.map((d) => [d.id, d.action]),
    [
      [s2, 'keep'],
      [s1, 'delete'],
    ],
  );
  assert.deepEqual(ana.listing_problems, [{ id: ghost, problem: 'its listing entry has no manifest' }]);
  assert.deepEqual(readdirSync(join(repo, 'snapshots')), [s2], 'S1 forgotten, S2 kept');
  // delete removes the ghost entry (nothing of a snapshot is there to keep)
  r = await cli(a, ['delete', '--agent', 'ana', '--id', ghost, '--yes']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(readdirSync(join(repo, 'listing')), [s2]);
  assert.deepEqual(await allVerify(a), [s2]);

  // ana's snapshots listed as eve's: eve's gc counts none of them, eve's delete refuses
  writeFileSync(join(a.memdir, 'topics', 'alt.md'), randomBytes(100 * 1024).toString('base64'));
  const s3 = (await a.snapshotter.snapshot({ agentId: 'ana' })).id;
  for (const id of [s2, s3])
    forgeListing(repo, id, id, (m) => {
      m.agent_id = 'eve';
    });
  r = await cli(a, [
    'gc',
    '--agent',
    'eve',
    '--keep-count',
    '1',
    '--max-age-days',
    '0',
    ...a.flags.slice(2),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const eve = (JSON.parse(r.stdout) as typeof report).agents[0]!;
  assert.deepEqual(eve.decisions, []);
  assert.deepEqual(eve.listing_problems?.map((l) => l.id).sort(), [s2, s3].sort());
  assert.match(eve.listing_problems![0]!.problem, /its manifest agent ana \(tenant default\)/);
  r = await cli(a, ['delete', '--agent', 'eve', '--id', s2, '--yes']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  // refused by the one check of every command given an id (findSnapshot): naming the entry, not whose it is
  assert.match(
    r.stderr,
    new RegExp(`listing/${s2}: its manifest names another agent or tenant, not agent eve`),
  );
  assert.doesNotMatch(r.stderr, /agent ana\b|ana's/);
  assert.deepEqual(readdirSync(join(repo, 'snapshots')).sort(), [s2, s3].sort());
});

test('prune: index rows placing a pack’s referenced blobs in another pack are confirmed from that pack’s header before it goes', async (t) => {
  const { a, repo, ids } = await twoSnapshots(t);
  const backend = new LocalBackend(repo);
  const r0 = await Repository.open(backend);
  const real = readdirSync(join(repo, 'index'));
  const records = (
    await Promise.all(
      real.map(async (name) =>
        decodeIndex(r0.decodeFile(readFileSync(join(repo, 'index', name)), name), name),
      ),
    )
  ).flat();
  const sorted = [...records].sort((x, y) => y.entries.length - x.entries.length);
  const big = sorted[0]!;
  const small = sorted.at(-1)!;
  assert.notEqual(big.id, small.id);
  const packs = packFiles(repo);
  // the small pack's rows claim the big pack's blobs too (at offset 0, 10 bytes)
  const forgedSmall = {
    ...small,
    entries: [...small.entries, ...big.entries.map((e) => ({ ...e, offset: 0, stored: 10, raw: 10 }))],
  };
  const others = records.filter((r) => r.id !== big.id && r.id !== small.id);
  const hidden = join(a.root, 'real-index');
  renameSync(join(repo, 'index'), hidden);
  for (const forged of [
    [forgedSmall, ...others, big], // the big pack indexed after: it would go as holding nothing kept
    [forgedSmall, ...others], // the big pack not indexed at all: it would go as a killed writer's
  ]) {
    mkdirSync(join(repo, 'index'));
    await (await Repository.open(backend)).saveIndex(forged);
    const r = await cli(a, ['prune']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `the index places blob [0-9a-f]{64} in packs/${small.id}, but that pack's header does not hold it there; packs/${big.id}`,
      ),
    );
    assert.deepEqual(packFiles(repo), packs, 'no pack removed');
    rmSync(join(repo, 'index'), { recursive: true });
  }
  // a forged pack whose header names the big pack's blobs (at the offsets its own index rows give),
  // with other bytes: the header agrees with the rows, the bytes are not the blobs
  const w = await Repository.open(backend);
  const builder = new PackBuilder(w.key, PACK_TARGET);
  for (const e of big.entries) builder.add(e.id, e.kind, Buffer.from(`not ${e.id}`), 3);
  const done = builder.finish();
  await saveContentAddressed(backend, { type: 'packs', name: done.id }, done.parts);
  const fake = { id: done.id, entries: builder.entries };
  mkdirSync(join(repo, 'index'));
  await w.saveIndex([fake, ...records]);
  const r1 = await cli(a, ['prune']);
  assert.equal(r1.code, 2, r1.stdout + r1.stderr);
  assert.match(r1.stderr, new RegExp(`in packs/${done.id}, but its copy there is not that blob`));
  assert.deepEqual(packFiles(repo), [...packs, `${done.id.slice(0, 2)}/${done.id}`].sort());
  rmSync(join(repo, 'index'), { recursive: true });
  rmSync(join(repo, 'packs', done.id.slice(0, 2), done.id));
  renameSync(hidden, join(repo, 'index'));
  assert.deepEqual((await allVerify(a)).sort(), [...ids].sort());
  const r = await cli(a, ['prune']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual((await allVerify(a)).sort(), [...ids].sort());
});

test('delete: a ghost listing entry (no manifest, or another agent’s) never lets the agent’s real last snapshot go; the ghost itself is removed as asked', async (t) => {
  const { a, repo, ids } = await twoSnapshots(t);
  const [s1, s2] = ids as [string, string];
  let r = await cli(a, ['delete', '--agent', 'ana', '--id', s1, '--yes']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // s2 is ana's last real snapshot; beside it a ghost (s2's entry under a new id, no manifest) and an
  // entry of eve's snapshot relabelled as ana's
  const ghost = '01ffffff-ffff-7fff-bfff-ffffffffffff';
  forgeListing(repo, s2, ghost, () => {});
  const eve = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  });
  cpSync(a.memdir, join(a.memdirRoot, 'eve'), { recursive: true });
  const other = (await eve.snapshot({ agentId: 'eve' })).id;
  forgeListing(repo, other, other, (m) => {
    m.agent_id = 'ana';
  });
  // before stop 45 the guard counted three snapshots and s2 went
  r = await cli(a, ['delete', '--agent', 'ana', '--id', s2, '--yes', '--json']);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /RETENTION/);
  assert.match(r.stderr, /refusing to delete last snapshot for agent ana/);
  assert.ok(readdirSync(join(repo, 'snapshots')).includes(s2), 's2 is still there');
  // the ghost goes as asked (nothing of a snapshot is there to keep), and s2 stays the last
  r = await cli(a, ['delete', '--agent', 'ana', '--id', ghost, '--yes']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(!readdirSync(join(repo, 'listing')).includes(ghost));
  r = await cli(a, ['delete', '--agent', 'ana', '--id', s2, '--yes']);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  forgeListing(repo, other, other, (m) => {
    m.agent_id = 'eve';
  });
  assert.deepEqual(await allVerify(a), [s2]);
});
