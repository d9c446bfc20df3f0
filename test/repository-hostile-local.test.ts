// A local repository's bytes written by someone else (stop 44, a hunter's findings): packs far larger
// than any pack may be, listing entries too large to read, key files planted beside the real one, labels
// with control characters. Each through the CLI (`main(argv)` in the test process: the exit status and
// what is printed are what is checked) on a real repository: reported as damage or
// skipped with a warning, never an INTERNAL error, never memory the size of the hostile object, never
// another master key.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { CachedBackend } from '../src/backend/cache.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import type { SnapshotError } from '../src/model/errors.js';
import { newKeyFile } from '../src/repository/crypto.js';
import type { RepoManifest } from '../src/repository/manifest.js';
import { MAX_PACK } from '../src/repository/pack.js';
import { Repository, zstdFrameOf } from '../src/repository/repository.js';
import { type ListingMeta, listSnapshots, MANIFEST_MAX, saveSnapshot } from '../src/repository/snapshots.js';
import { fleetOverview } from '../src/snapshotter/fleet.js';
import { listAll } from './helpers/backend-conformance.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';

const SMALL = { files: 2, commits: 2, memories: 10, embeddings: 4, concepts: 4, compactions: 2 };
const REPOSITORY = { NEXO_MEMORY_STORE_FORMAT: 'repository' };

interface Problem {
  code: string;
  object: string;
  message: string;
}

test('check --read-data: a pack larger than any pack may be (a 5 GB sparse file) is damage, exit 2, never read or allocated for', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const env = { env: REPOSITORY };
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const name = `ab${'0'.repeat(62)}`;
  const dir = join(a.stateRoot, 'repository', 'packs', 'ab');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, '');
  truncateSync(file, 5 * 1024 ** 3); // sparse: costs nothing on disk
  r = await runCli(['check', '--read-data', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr); // was INTERNAL (exit 1): "The value of size is out of range"
  const report = JSON.parse(r.stdout) as { problems: Problem[]; bytes_read: number; packs_read: number };
  assert.deepEqual(
    report.problems.map((p) => [p.code, p.object]),
    [['BUNDLE_DAMAGED', `packs/${name}`]],
  );
  assert.match(report.problems[0]!.message, new RegExp(`more than any pack may be \\(${MAX_PACK}\\)`));
  assert.ok(report.bytes_read < MAX_PACK, `${report.bytes_read} bytes read`);
  // without --read-data the structure pass says the same
  r = await runCli(['check', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  // the real packs still check
  truncateSync(file, 0);
  r = await runCli(['check', '--read-data', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, 'an empty pack file is damage too');
  assert.match(r.stdout, /does not hash to its name/);
});

test('listing entries with fields of the wrong types, or of an agent id that is none, are skipped with a warning by list, gc and the fleet view; a lock object over 64 KiB is not a lock (stop 62 review)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
  const env = { env: REPOSITORY };
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    ids.push((JSON.parse(r.stdout) as { id: string }).id);
  }
  const [odd, sound] = ids as [string, string];
  const listing = join(a.stateRoot, 'repository', 'listing');
  const entry = (id: string) =>
    JSON.parse(readFileSync(join(listing, id), 'utf8')) as { meta: Record<string, unknown> };
  const e = entry(odd);
  e.meta.created_by = { auto: true }; // crashed retention: "startsWith is not a function"
  e.meta.label = 7; // crashed list: "text.replace is not a function"
  writeFileSync(join(listing, odd), JSON.stringify(e));
  const ghost = randomUUID();
  const g = entry(sound);
  g.meta.id = ghost;
  g.meta.agent_id = 'Bad Id'; // failed the fleet view for every agent: 400 INVALID_INPUT
  writeFileSync(join(listing, ghost), JSON.stringify(g));
  // 70 KB in a lock's place (failed every operation: OBJECT_TOO_LARGE, exit 2, "damaged")
  writeFileSync(join(a.stateRoot, 'repository', 'locks', 'f'.repeat(64)), ' '.repeat(70 * 1024));

  let r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(r.stdout.includes(sound) && !r.stdout.includes(odd), r.stdout);
  assert.match(r.stderr, new RegExp(`listing/${odd} is unreadable; skipped`));
  r = await runCli(['gc', '--agent', 'ana', '--keep-count', '5', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await runCli(['verify', '--agent', 'ana', '--id', sound, '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const fleet = await fleetOverview(a.snapshotter);
  assert.deepEqual(
    fleet.map((o) => o.agent_id),
    ['ana'],
  );
});

test('an oversized listing entry (2 MB of spaces) is skipped with a warning by list and gc, reported by check; gc escapes a listing label as list does', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const env = { env: REPOSITORY };
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  const listing = join(a.stateRoot, 'repository', 'listing');
  const planted = randomUUID();
  writeFileSync(join(listing, planted), ' '.repeat(2 * 1024 * 1024));
  // the real entry's label, as a writer of the repository may set it (plaintext): a newline in it
  const own = join(listing, id);
  const entry = JSON.parse(readFileSync(own, 'utf8')) as { meta: { label?: string } };
  entry.meta.label = 'evil\nDELETED everything';
  writeFileSync(own, `${JSON.stringify(entry)}\n`);

  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr); // was OBJECT_TOO_LARGE, exit 2
  assert.deepEqual(
    (JSON.parse(r.stdout) as Array<{ id: string }>).map((m) => m.id),
    [id],
  );
  assert.match(r.stderr, new RegExp(`listing/${planted} is larger than 1048576 bytes; skipped`));
  r = await runCli(['gc', '--agent', 'ana', '--keep-count', '5', ...a.flags], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`listing/${planted} is larger than`));
  assert.match(r.stdout, new RegExp(`keep +${id} .* evil\\\\nDELETED everything `));
  assert.doesNotMatch(r.stdout, /^DELETED/m, 'the label stays on its line');
  r = await runCli(['gc', '--all', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);

  r = await runCli(['check', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  const problems = (JSON.parse(r.stdout) as { problems: Problem[] }).problems;
  assert.ok(
    problems.some(
      (p) =>
        p.object === `listing/${planted}` &&
        /more than any may be \(1048576\); list and gc skip it/.test(p.message),
    ),
    JSON.stringify(problems),
  );
});

test("a key file planted in an encrypted repository (to the victim's recipient) never makes a writer use its master key: ignored beside the one the config names, refused in an older repository, and pinned on first use when it replaces it", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const id = join(a.root, 'id.txt');
  let r = await runCli(['keygen', '--age', '--out', id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const recipient = execFileSync('age-keygen', ['-y', id], { encoding: 'utf8' }).trim();
  const config = join(a.root, 'nexo.yaml');
  writeFileSync(
    config,
    `memory:\n  snapshot:\n    store:\n      format: repository\n    encryption:\n      recipients: ["${recipient}"]\n      identity_path: ${id}\n`,
  );
  const env = { env: REPOSITORY };
  const snapshot = () =>
    runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', config, '--json'], env);
  r = await snapshot();
  assert.equal(r.code, 0, r.stderr);
  const repo = join(a.stateRoot, 'repository');
  const configFile = join(repo, 'config', 'config');
  const repoConfig = JSON.parse(readFileSync(configFile, 'utf8')) as {
    id: string;
    encryption: { key_file?: string };
  };
  const pin = join(a.stateRoot, 'repository-keys', repoConfig.id);
  assert.match(readFileSync(pin, 'utf8'), /^[0-9a-f]{64}\n$/, 'the first snapshot pinned the master key');
  const keys = join(repo, 'keys');
  const [real] = readdirSync(keys);
  assert.equal(repoConfig.encryption.key_file, real, 'the config names its key file (stop 55)');
  const snapshots = () => readdirSync(join(repo, 'listing')).length;
  const before = snapshots();
  const verifyLatest = async () =>
    runCli(
      [
        'verify',
        '--agent',
        'ana',
        '--id',
        'latest',
        '--state-root',
        a.stateRoot,
        '--config',
        config,
        '--json',
      ],
      env,
    );

  // the attacker's key file: its own master key, sealed to the victim's public recipient. The config
  // names the repository's key file: the planted one is never opened, and snapshots go on under the
  // real key (verify reads it with that key)
  const planted = (await newKeyFile([recipient])).bytes;
  const plantedName = createHash('sha256').update(planted).digest('hex');
  writeFileSync(join(keys, plantedName), planted);
  r = await snapshot();
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(snapshots(), before + 1);
  r = await verifyLatest();
  assert.equal(r.code, 0, r.stdout + r.stderr);

  // a repository created before stop 55 (its config names no key file): every key file the identity
  // opens must hold the same master key, so the planted one is refused; the refusal names the one that
  // opens every index file, as a hint (an index file can be planted too)
  const { key_file: _named, ...older } = repoConfig.encryption;
  writeFileSync(configFile, `${JSON.stringify({ ...repoConfig, encryption: older }, null, 2)}\n`);
  r = await snapshot();
  assert.equal(r.code, 7, r.stdout + r.stderr);
  assert.match(r.stdout, /"code": "ENCRYPTION"/);
  assert.match(r.stderr, /key files of this repository hold different master keys/);
  assert.ok(r.stderr.includes(`keys/${real} is the one that opens every index file`), r.stderr);
  r = await runCli(
    ['list', '--agent', 'ana', '--state-root', a.stateRoot, '--config', config, '--json'],
    env,
  );
  assert.equal(r.code, 0, 'list needs no key');

  // the real key file gone: only the planted one opens, whether the config names it (rewritten by the
  // attacker) or names none; the pin refuses it
  renameSync(join(keys, real!), join(a.root, 'real-key'));
  for (const encryption of [older, { ...older, key_file: plantedName }]) {
    writeFileSync(configFile, `${JSON.stringify({ ...repoConfig, encryption }, null, 2)}\n`);
    r = await snapshot();
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.match(r.stderr, /not the one this state root pinned for it on first use/);
  }
  // the config naming the real key, gone: damage, named
  writeFileSync(configFile, `${JSON.stringify(repoConfig, null, 2)}\n`);
  r = await snapshot();
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`key file keys/${real}, which its config names, is missing`));
  assert.equal(snapshots(), before + 1, 'nothing was stored under the planted key');

  // the repository's own key back: snapshots go on
  rmSync(join(keys, plantedName));
  renameSync(join(a.root, 'real-key'), join(keys, real!));
  r = await snapshot();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(snapshots(), before + 2);
});

test('two hosts whose first snapshots create one encrypted repository at once both succeed, and it opens afterwards (stop 55)', async (t) => {
  // Two processes (the built CLI): before stop 55, the creator whose config lost the race left its key
  // file, and every later open refused the repository for holding two master keys: 7 rounds of 8 by hand.
  const a = sampleAgent(t, 'ana', SMALL);
  const b = sampleAgent(t, 'bob', { ...SMALL, seed: 7 });
  const id = join(a.root, 'id.txt');
  assert.equal((await runCli(['keygen', '--age', '--out', id, '--json'])).code, 0);
  const recipient = execFileSync('age-keygen', ['-y', id], { encoding: 'utf8' }).trim();
  const config = join(a.root, 'nexo.yaml');
  writeFileSync(
    config,
    `memory:\n  snapshot:\n    encryption:\n      recipients: ["${recipient}"]\n      identity_path: ${id}\n`,
  );
  for (let round = 0; round < 2; round++) {
    const repo = join(tempDir(t), 'shared');
    const snapshot = (x: typeof a, agent: string) =>
      runBuiltCli(['snapshot', '--agent', agent, ...x.flags, '--repo', repo, '--config', config, '--json'], {
        env: REPOSITORY,
      });
    const results = await Promise.all([snapshot(a, 'ana'), snapshot(b, 'bob')]);
    for (const r of results) assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(readdirSync(join(repo, 'keys')).length, 1, 'the loser removed its key file');
    for (const [x, agent] of [
      [a, 'ana'],
      [b, 'bob'],
    ] as const) {
      const r = await runCli(
        ['verify', '--agent', agent, '--id', 'latest', '--state-root', x.stateRoot, '--repo', repo],
        { env: { ...REPOSITORY, NEXO_MEMORY_CONFIG: config } },
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
  }
});

test("an oversized listing entry behind the remote stores' cache (its listing file, loadMany) is skipped with a warning too", async (t) => {
  const inner = new MemoryBackend();
  const good = randomUUID();
  const meta = { id: good, agent_id: 'ana', tenant: 'default', created_at_ms: 1_700_000_000_000 };
  await inner.save(
    { type: 'listing', name: good },
    Buffer.from(`${JSON.stringify({ listing_version: 1, meta })}\n`),
  );
  const big = randomUUID();
  await inner.save({ type: 'listing', name: big }, Buffer.alloc(2 * 1024 * 1024, ' '));
  const cached = new CachedBackend(inner, tempDir(t));
  for (const round of [1, 2]) {
    const warnings: string[] = [];
    const listed = await listSnapshots({ backend: cached }, {}, (m) => warnings.push(m));
    assert.deepEqual(
      listed.map((m) => m.id),
      [good],
      `round ${round}`,
    );
    assert.deepEqual(warnings, [`listing/${big} is larger than 1048576 bytes; skipped`], `round ${round}`);
  }
});

/** An agent with a repository of two snapshots, and the CLI on its state root. */
async function twoInRepository(t: TestContext) {
  const a = sampleAgent(t, 'ana', SMALL);
  const env = { env: { ...REPOSITORY, NEXO_MEMORY_RESTORE_ALLOW: 'true' } };
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    writeFileSync(join(a.memdir, 'topics', 'alt.md'), `version ${i}\n`);
    const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    ids.push((JSON.parse(r.stdout) as { id: string }).id);
  }
  /** The CLI on the agent's state root (with `roots`, its memdir and database roots too). */
  const cli = (args: string[], roots = false) =>
    runCli([...args, ...(roots ? a.flags : ['--state-root', a.stateRoot])], env);
  return { a, ids, repo: join(a.stateRoot, 'repository'), cli };
}

test('a symlinked listing entry, index file, manifest or pin is refused (UNSAFE_OBJECT, exit 2) by list, check and prune, never skipped', async (t) => {
  const { a, ids, repo, cli } = await twoInRepository(t);
  const [s1] = ids as [string, string];
  const index = readdirSync(join(repo, 'index'))[0]!;
  // a pin of s1, so that a symlinked pin has something to hide
  const pinned = await cli(['pin', '--agent', 'ana', '--id', s1]);
  assert.equal(pinned.code, 0, pinned.stdout + pinned.stderr);
  for (const object of [`listing/${s1}`, `index/${index}`, `snapshots/${s1}`, `pins/${s1}`]) {
    const file = join(repo, object);
    const elsewhere = join(a.root, 'moved');
    renameSync(file, elsewhere);
    symlinkSync(elsewhere, file);
    // before stop 45 list showed one snapshot, check passed (s1 "unlisted", or its blobs "not in the
    // index") or said nothing of the symlink
    // a pin is read by list (and retention), not by check or prune
    const readers = object.startsWith('pins/')
      ? [['list', '--agent', 'ana']]
      : [['check'], ['prune', '--dry-run'], ['prune']];
    if (object.startsWith('listing/')) readers.unshift(['list', '--agent', 'ana']);
    for (const cmd of readers) {
      const r = await cli(cmd);
      assert.equal(r.code, 2, `${object}: ${cmd.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(
        r.stdout + r.stderr,
        new RegExp(`unsafe storage: ${object} is a symlink in ${repo}`),
        `${object}: ${cmd}`,
      );
    }
    rmSync(file);
    renameSync(elsewhere, file);
  }
  const r = await cli(['check', '--read-data']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((JSON.parse((await cli(['list', '--agent', 'ana', '--json'])).stdout) as unknown[]).length, 2);
});

/** Every file under `dir` with its size, sorted (a directory that is not there: none). */
function treeOf(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return [];
  }
  return names
    .filter((n) => !lstatSync(join(dir, n)).isDirectory())
    .map((n) => `${n}:${lstatSync(join(dir, n)).size}`)
    .sort();
}

test('a repository directory swapped for a symlink after the first snapshot is refused (UNSAFE_OBJECT, exit 2) by the same LocalSnapshotter: its next snapshot, delete, prune and gc write nothing into and remove nothing from where it points', async (t) => {
  // One snapshotter across the swap (the daemon's, a library user's): before, its backend remembered the
  // directories it had checked and followed the symlink from then on (a hostile review's repro: the next
  // snapshot wrote its listing entry into the directory the link pointed to).
  for (const dir of ['listing', 'packs', 'index', 'snapshots']) {
    const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
    const s = a.snapshotter;
    const repo = join(a.stateRoot, 'repository');
    const first = await s.snapshot({ agentId: 'ana' });
    writeFileSync(join(a.memdir, 'topics', 'alt.md'), 'version 2\n');
    await s.snapshot({ agentId: 'ana' });
    await s.prune(); // every type listed and its directories checked once, by this snapshotter
    // the real directory moved outside the repository (its objects with it: a removal there would show),
    // a symlink to it in its place
    const outside = `${a.root}/${dir}-outside`;
    renameSync(join(repo, dir), outside);
    symlinkSync(outside, join(repo, dir));
    const before = treeOf(outside);
    assert.ok(before.length > 0, dir);
    const unsafe = (err: SnapshotError) => {
      assert.equal(err.code, 'UNSAFE_OBJECT', `${dir}: ${err.message}`);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, new RegExp(`${join(repo, dir)} is a symlink`));
      return true;
    };
    // new content, so the snapshot has new packs and an index file to write too
    writeFileSync(join(a.memdir, 'topics', 'swap.md'), `${randomUUID()}\n`.repeat(200));
    await assert.rejects(s.snapshot({ agentId: 'ana' }), unsafe, `${dir}: snapshot`);
    assert.deepEqual(treeOf(outside), before, `${dir}: the snapshot wrote nothing where the link points`);
    // a delete forgets a listing entry and a manifest, after reading the index (it reads no pack)
    if (dir !== 'packs') await assert.rejects(s.delete('ana', undefined, first.id), unsafe, `${dir}: delete`);
    else await s.delete('ana', undefined, first.id);
    await assert.rejects(s.prune(), unsafe, `${dir}: prune`);
    const gc = await s.gc({ agentId: 'ana', policy: { keepCount: 0, anchorKeepCount: 0 } }).then(
      (report) => JSON.stringify(report),
      (err: SnapshotError) => `${err.code}: ${err.message}`,
    );
    assert.match(gc, /UNSAFE_OBJECT|unsafe storage/, `${dir}: gc`);
    assert.deepEqual(treeOf(outside), before, `${dir}: nothing written into or removed from where it points`);
    // put back, the same snapshotter works again
    rmSync(join(repo, dir));
    renameSync(outside, join(repo, dir));
    const second = await s.snapshot({ agentId: 'ana' });
    assert.notEqual(second.id, first.id);
  }
});

test('a pack larger than any pack may be (the real pack extended to 5 GB) is damage wherever it is read: verify, restore, diff, export, a header read', async (t) => {
  const { a, ids, repo, cli } = await twoInRepository(t);
  const [s1, s2] = ids as [string, string];
  // every pack extended (sparse) to 5 GB: their blobs are where the index says, and before stop 45
  // verify, restore, diff and export read them as if nothing were wrong
  const packs = readdirSync(join(repo, 'packs')).flatMap((d) =>
    readdirSync(join(repo, 'packs', d)).map((n) => join(repo, 'packs', d, n)),
  );
  for (const file of packs) truncateSync(file, 5 * 1024 ** 3);
  const pack = basename(packs[0]!);
  const damaged = /packs\/[0-9a-f]{64} is 5368709120 bytes, more than any pack may be \(67108864\); not read/;
  assert.equal(MAX_PACK, 67108864);
  const runs: Array<[string[], boolean]> = [
    [['verify', '--agent', 'ana', '--id', s1, '--json'], false],
    [['restore', '--agent', 'ana', '--from', s1, '--json'], true],
    [['diff', '--agent', 'ana', s1, 'live'], true],
    [['export', '--agent', 'ana', '--id', s2, '--to', join(a.root, 'out.tar.zst')], false],
  ];
  for (const [args, roots] of runs) {
    const r = await cli(args, roots);
    assert.equal(r.code, 2, `${args[0]}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, damaged, args[0]);
    assert.match(r.stdout + r.stderr, /BUNDLE_DAMAGED|bundle damaged/, args[0]);
  }
  // prune's keeper checks read a pack's header (Repository.readPackHeader): refused from its stat size
  const repository = await Repository.open(new LocalBackend(repo));
  await assert.rejects(repository.readPackHeader(pack), (err: SnapshotError) => {
    assert.equal(err.code, 'BUNDLE_DAMAGED');
    assert.match(err.message, damaged);
    return true;
  });
});

test('an index file whose frame claims far more than it holds (a few KB of zstd, 100 MiB of spaces) is damage naming it, refused from its frame header (stop 62 review)', async (t) => {
  const { ids, repo, cli } = await twoInRepository(t);
  const spaces = Buffer.alloc(1024 * 1024, ' ');
  const bomb = Buffer.concat(
    zstdFrameOf(function* () {
      yield Buffer.from('{"index_version":1,"packs":[]');
      for (let i = 0; i < 100; i++) yield spaces;
      yield Buffer.from('}');
    }, 19),
  );
  assert.ok(bomb.length < 100_000, `${bomb.length} bytes`);
  const name = createHash('sha256').update(bomb).digest('hex'); // index files are named by their hash
  writeFileSync(join(repo, 'index', name), bomb);
  const named = new RegExp(`index/${name}: its frame of ${bomb.length} bytes claims 104857630 bytes`);
  for (const args of [['verify', '--agent', 'ana', '--id', ids[0]!], ['prune'], ['check']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args[0]}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, named, args[0]);
  }
  rmSync(join(repo, 'index', name));
  assert.equal((await cli(['check'])).code, 0, 'the real index files pass: they compress about twofold');
});

test('a manifest whose frame holds more than any manifest may (9.8 KB of zstd, 200 MB of JSON) is damage naming it, refused from its frame header; a writer never writes one', async (t) => {
  const { ids, repo, cli } = await twoInRepository(t);
  const [s1] = ids as [string, string];
  const mib = Buffer.alloc(1024 * 1024, 'x');
  const bomb = Buffer.concat(
    zstdFrameOf(function* () {
      yield Buffer.from('{"a":"');
      for (let i = 0; i < 200; i++) yield mib;
      yield Buffer.from('"}');
    }, 19),
  );
  assert.ok(bomb.length < 100_000, `${bomb.length} bytes`);
  writeFileSync(join(repo, 'snapshots', s1), bomb);
  const named = new RegExp(
    `snapshots/${s1}: its frame holds 209715208 bytes, more than any may \\(${MANIFEST_MAX}\\)`,
  );
  for (const args of [['verify', '--agent', 'ana', '--id', s1], ['prune'], ['check']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args[0]}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, named, args[0]);
  }
  // the writer's side: a manifest readers would refuse is not written
  const backend = new MemoryBackend();
  const repository = await Repository.init(backend);
  const id = randomUUID();
  await assert.rejects(
    saveSnapshot(repository, { snapshot_id: id } as RepoManifest, Buffer.alloc(MANIFEST_MAX + 1, ' '), {
      id,
    } as ListingMeta),
    (err: SnapshotError) => err.code === 'INVALID_INPUT' && /more than any may be/.test(err.message),
  );
  assert.equal((await listAll(backend, 'snapshots')).size, 0);
});
