// find over a repository reads every distinct blob once, many blobs per request: the reads that join
// blobs of one pack across a gap return exactly each blob's bytes (plain and encrypted), with fewer
// requests; manifests parsed with an artifact memo (each distinct artifact checked once) come out the
// same and are refused for the same reasons with the same errors; checked manifests come from find's
// cache on the next run with the same answer, and a manifest whose stored bytes changed is checked
// again (a damaged one refused), an unusable cache ignored; the scan gives the same results on worker
// threads and on the main thread, and the same BundleDamagedError for a damaged blob; a blob that is a
// database chunk in one batch of manifests and a file in a later one is searched as both; and a blob in a pack whose bytes are not those of its id (damaged, or swapped for bytes
// that hold the text) stops find with BundleDamagedError (exit 2) instead of a false hit or a miss
// when find reads it (a blob that its sketch rules out is not read: no false hit either).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { buildSampleAgent, gitEnv } from '../scripts/sample-agent.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { textPieces } from '../src/browse/match.js';
import { type BlobScan, ScanWorker } from '../src/browse/scan-worker.js';
import { gramsOf, mayHold, sketchOf } from '../src/browse/sketch.js';
import { generateIdentity } from '../src/crypto/age.js';
import { BundleDamagedError, LocalSnapshotter } from '../src/index.js';
import { chunkIds } from '../src/repository/content.js';
import {
  ArtifactMemo,
  parseRepoManifest,
  type RepoArtifact,
  sealRepoManifest,
} from '../src/repository/manifest.js';
import { FLAG_RAW, KIND_DATA } from '../src/repository/pack.js';
import { Repository } from '../src/repository/repository.js';
import { loadSnapshot } from '../src/repository/snapshots.js';
import { tempDir } from './helpers/env.js';
import { repoManifestDraft } from './helpers/repo-manifest.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('streamBlobs: blobs of a pack a gap apart share one request and come back exactly', async () => {
  for (const recipients of [[], [generateIdentity().recipient]]) {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, recipients);
    const blobs = [randomBytes(3000), Buffer.alloc(5000, 1), randomBytes(700), Buffer.alloc(9000, 2)];
    const w = repo.writer();
    for (const b of blobs) await w.add(KIND_DATA, sha(b), b);
    await w.finish();
    let loads = 0;
    const load = backend.load.bind(backend);
    backend.load = (...args) => {
      loads++;
      return load(...args);
    };
    const wanted = [blobs[0]!, blobs[2]!, blobs[3]!];
    const read = async (gap: number) => {
      loads = 0;
      const out: Buffer[] = [];
      for await (const b of repo.streamBlobs(wanted.map(sha), 4, 1024 * 1024, false, gap)) out.push(b);
      return out;
    };
    const apart = await read(0);
    assert.equal(loads, 2, 'without a gap, blob 1 splits the run');
    const joined = await read(64 * 1024);
    assert.equal(loads, 1, 'with a gap, one request');
    for (const out of [apart, joined]) {
      assert.equal(out.length, 3);
      assert.deepEqual(out.map(sha), wanted.map(sha));
    }
  }
});

test('find: a blob whose stored bytes are not its id stops find with BundleDamagedError', async (t) => {
  const root = tempDir(t, 'nexo-find-scan-');
  const p = buildSampleAgent(root, 'ana', {
    files: 3,
    commits: 1,
    memories: 30,
    embeddings: 5,
    concepts: 5,
    compactions: 3,
  });
  // incompressible, so the pack stores the file's bytes as they are (raw): easy to swap for others;
  // and one whose sketch rules the text out (a random note's may not, a few times in a hundred), so the
  // sketched find below provably does not read it
  const needle = 'the narwhal migration';
  const grams = textPieces(needle).map((piece) => gramsOf(piece)!);
  let note = Buffer.from(randomBytes(48).toString('base64'));
  while (grams.some((g) => mayHold(sketchOf(note), g)))
    note = Buffer.from(randomBytes(48).toString('base64'));
  writeFileSync(join(p.memdir, 'note.md'), note);
  execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'note'], { cwd: p.memdir, env: gitEnv });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  await s.snapshot({ agentId: 'ana' });
  assert.equal((await s.find({ agentId: 'ana', text: needle })).first_seen, undefined);

  const repoDir = join(p.stateRoot, 'repository');
  const repo = await Repository.open(new LocalBackend(repoDir));
  await repo.loadIndex();
  const patch = (id: string, edit: (stored: Buffer) => void) => {
    const loc = repo.index.get(id)!;
    const file = join(repoDir, 'packs', loc.pack.slice(0, 2), loc.pack);
    const fd = openSync(file, 'r+');
    try {
      const stored = Buffer.alloc(loc.stored);
      readSync(fd, stored, 0, loc.stored, loc.offset);
      edit(stored);
      writeSync(fd, stored, 0, loc.stored, loc.offset);
    } finally {
      closeSync(fd);
    }
    return loc;
  };

  // the note's bytes swapped for bytes of the same length that hold the text: no hit, an error
  const loc = patch(sha(note), (stored) => {
    stored.fill('.');
    stored.write(needle);
  });
  assert.equal(loc.flags & FLAG_RAW, FLAG_RAW, 'the note is stored raw');
  // with the sketches of the first find (docs/browse.md) the note is not read: the answer of the bytes
  // that were checked then, no false hit; without them it is read, and refused
  const sketched = await s.find({ agentId: 'ana', text: needle, showSecrets: true });
  assert.equal(sketched.first_seen, undefined);
  assert.ok(sketched.stats.units_skipped! > 0);
  const noSketches = () => rmSync(join(p.stateRoot, 'cache'), { recursive: true, force: true });
  noSketches();
  await assert.rejects(
    s.find({ agentId: 'ana', text: needle }),
    (e: BundleDamagedError) => e instanceof BundleDamagedError && e.exitCode === 2,
  );
  patch(sha(note), (stored) => note.copy(stored));
  assert.equal((await s.find({ agentId: 'ana', text: needle })).first_seen, undefined, 'repaired');

  // a byte of a database chunk flipped: an error as well, whatever the text
  const dbChunk = [...repo.index.entries()].find(([, l]) => l.raw >= 4096 && l.kind === KIND_DATA)![0];
  patch(dbChunk, (stored) => {
    stored[stored.length >> 1]! ^= 0xff;
  });
  noSketches();
  await assert.rejects(s.find({ agentId: 'ana', text: 'anything at all' }), BundleDamagedError);
});

test('parseRepoManifest with a memo: the same manifests, the same refusals and errors', () => {
  const repositoryId = 'a'.repeat(64);
  const art = (i: number, extra: Partial<RepoArtifact> = {}): RepoArtifact => ({
    path_in_bundle: `memory_files/f${i}.md`,
    kind: 'memory_file',
    size_bytes: 10 + i,
    sha256: sha(Buffer.from(`f${i}`)),
    ...extra,
  });
  const seal = (artifacts: RepoArtifact[]) =>
    sealRepoManifest(repoManifestDraft({ repositoryId, artifacts })).json;
  const base = Array.from({ length: 20 }, (_, i) => art(i));
  const good = [
    seal(base),
    seal([...base.slice(0, 19), art(40)]),
    seal([art(41, { chunks: [sha(Buffer.from('c'))] }), ...base]),
  ];
  const edit = (json: Buffer, f: (o: { artifacts: Record<string, unknown>[] }) => void) => {
    const o = JSON.parse(json.toString());
    f(o);
    return Buffer.from(JSON.stringify(o));
  };
  const bad = [
    // an artifact changed without the seals: the digest list no longer matches
    edit(good[0]!, (o) => {
      o.artifacts[3]!.sha256 = 'b'.repeat(64);
    }),
    // the same digests, another size: only the manifest seal catches it
    edit(good[1]!, (o) => {
      o.artifacts[5]!.size_bytes = 999;
    }),
    // sealed, but an artifact is malformed, or both chunks and chunk_lists, or git packs on a file
    seal([...base, art(42, { sha256: 'XYZ' })]),
    seal([...base, art(43, { chunks: [sha(Buffer.from('c'))], chunk_lists: [sha(Buffer.from('l'))] })]),
    seal([...base, art(44, { packs: [] })]),
    edit(good[0]!, (o) => {
      (o as unknown as { artifacts: string }).artifacts = 'none';
    }),
  ];
  const memo = new ArtifactMemo();
  for (const json of good) {
    const plain = parseRepoManifest(json, repositoryId, 'm');
    assert.deepEqual(parseRepoManifest(json, repositoryId, 'm', memo), plain);
  }
  assert.equal(memo.byJson.size, 22, 'each distinct artifact checked once');
  for (const json of bad) {
    let plain: unknown;
    assert.throws(
      () => parseRepoManifest(json, repositoryId, 'm'),
      (e: unknown) => {
        plain = e;
        return e instanceof BundleDamagedError;
      },
    );
    assert.throws(
      () => parseRepoManifest(json, repositoryId, 'm', memo),
      (e: Error) => e instanceof BundleDamagedError && e.message === (plain as Error).message,
    );
  }
});

test("find's manifest cache: the same answer from it; changed stored bytes are checked again", async (t) => {
  const root = tempDir(t, 'nexo-find-cache-');
  const p = buildSampleAgent(root, 'ana', {
    files: 3,
    commits: 1,
    memories: 20,
    embeddings: 5,
    concepts: 5,
    compactions: 3,
  });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  const needle = 'a walrus named Theodore';
  await s.snapshot({ agentId: 'ana' });
  writeFileSync(join(p.memdir, 'walrus.md'), `# ${needle}\n`);
  execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'walrus'], { cwd: p.memdir, env: gitEnv });
  const seen = await s.snapshot({ agentId: 'ana' });
  await s.snapshot({ agentId: 'ana' });

  const cold = await s.find({ agentId: 'ana', text: needle });
  assert.equal(cold.stats.manifests_cached, 0);
  assert.equal(cold.first_seen!.snapshot_id, seen.id);
  const warm = await s.find({ agentId: 'ana', text: needle });
  assert.equal(warm.stats.manifests_cached, 3);
  const { stats: _c, ...coldAnswer } = cold;
  const { stats: _w, ...warmAnswer } = warm;
  assert.deepEqual(warmAnswer, coldAnswer);

  // the stored manifest of the snapshot with the text damaged: not taken from the cache, refused
  const manifest = join(p.stateRoot, 'repository', 'snapshots', seen.id);
  const good = readFileSync(manifest);
  const bad = Buffer.from(good);
  bad[bad.length >> 1]! ^= 0x01;
  writeFileSync(manifest, bad);
  await assert.rejects(s.find({ agentId: 'ana', text: needle }), BundleDamagedError);
  writeFileSync(manifest, good);
  // the bytes that were checked are back: taken from the cache again
  assert.equal((await s.find({ agentId: 'ana', text: needle })).stats.manifests_cached, 3);

  // a find that checked nothing new leaves the file as it was (not rewritten)
  const dir = join(p.stateRoot, 'cache');
  const [file] = readdirSync(dir);
  const cachePath = join(dir, file!);
  const before = statSync(cachePath);
  assert.equal((await s.find({ agentId: 'ana', text: needle })).stats.manifests_cached, 3);
  assert.equal(statSync(cachePath).ino, before.ino);

  // an unusable cache is ignored (and replaced): another format, one byte of the body changed
  // (the manifest's size field, still valid JSON: only the checksum tells), or an older version whose
  // checksum is right (version 2 cached manifests checked by fewer rules than this version's: stop 64)
  const written = readFileSync(cachePath, 'utf8');
  for (const unusable of [
    '{"cache_version": 1, "snapshots": 7}',
    written.replace(/^nexo-memory find cache \d+ /, 'nexo-memory find cache 2 '),
    written.replace(/"size_bytes":(\d)/, (_m, d: string) => `"size_bytes":${(Number(d) + 1) % 10}`),
  ]) {
    assert.notEqual(unusable, written);
    writeFileSync(cachePath, unusable);
    const again = await s.find({ agentId: 'ana', text: needle });
    assert.equal(again.stats.manifests_cached, 0);
    assert.equal(again.first_seen!.snapshot_id, seen.id);
    assert.equal((await s.find({ agentId: 'ana', text: needle })).stats.manifests_cached, 3);
  }
});

test('scan: worker threads and the main thread give the same results and the same error', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const needle = 'the narwhal migration of 2031';
  const blobs = [
    Buffer.from(`SQLite format 3\0${'x'.repeat(5000)}`),
    Buffer.from(`${'y'.repeat(3000)} ${needle} ${'z'.repeat(3000)}`),
    randomBytes(2000),
    Buffer.from(`a note about ${needle}`),
  ];
  const w = repo.writer();
  for (const b of blobs) await w.add(KIND_DATA, sha(b), b);
  await w.finish();
  const ids = blobs.map(sha);
  const roleOf = (id: string) => ({ chunk: id !== ids[3], file: id === ids[3] || id === ids[2] });
  const read = { ahead: 2, window: 1024 * 1024, gap: 64 * 1024 };
  const scan = async (inlineBelow: number) => {
    const s = new ScanWorker({ text: needle }, 2, inlineBelow);
    const out: [string, number, BlobScan][] = [];
    try {
      await s.scan(repo, ids, roleOf, read, (id, raw, r) => {
        out.push([id, raw, r]);
      });
    } finally {
      await s.close();
    }
    return out.map(([id, raw, r]) => [
      id,
      raw,
      { ...r, ...(r.file ? { file: Buffer.from(r.file).toString() } : {}) },
    ]);
  };
  const inline = await scan(Number.MAX_SAFE_INTEGER);
  const threaded = await scan(0);
  assert.deepEqual(threaded, inline);
  assert.deepEqual(
    inline.map(([, , r]) => r),
    [
      { chunk: { hit: false, pageSize: 30840 } },
      { chunk: { hit: true, pages: (inline[1]![2] as BlobScan).chunk!.pages } },
      { chunk: { hit: false }, fileMiss: true },
      { file: `a note about ${needle}` },
    ],
  );
  // a stored blob damaged: the same typed error from the workers as from the main thread
  const loc = repo.index.get(ids[1]!)!;
  const pack = backend.store.objects.get('packs')!.get(loc.pack)!;
  pack[loc.offset + 3]! ^= 0xff;
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => assert.fail('the damaged blob was read'),
      (e: unknown) => e,
    );
  const onMain = await failure(scan(Number.MAX_SAFE_INTEGER));
  const onWorker = await failure(scan(0));
  assert.ok(onMain instanceof BundleDamagedError && onWorker instanceof BundleDamagedError);
  assert.equal((onWorker as Error).message, (onMain as Error).message);
  assert.match((onMain as Error).message, /^bundle damaged: blob [0-9a-f]{64} in packs\//);
});

test('find: a blob that is a database chunk in an early batch of manifests and a file in a later one is searched as both', async (t) => {
  const root = tempDir(t, 'nexo-find-again-');
  const p = buildSampleAgent(root, 'ana', {
    files: 2,
    commits: 1,
    memories: 5,
    embeddings: 2,
    concepts: 2,
    compactions: 2,
  });
  const needle = 'the narwhal migration of 2031';
  const db = new Database(join(p.sqliteDir, 'compactions.sqlite'));
  db.prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)').run(
    's',
    1,
    needle,
  );
  db.close();
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  // more snapshots than find reads in one batch of manifests (20)
  const first = await s.snapshot({ agentId: 'ana' });
  for (let i = 1; i < 21; i++) await s.snapshot({ agentId: 'ana' });
  // the database chunk holding the text, as a memory file of the next snapshot: the same blob
  const repo = await Repository.open(new LocalBackend(join(p.stateRoot, 'repository')));
  const { manifest } = await loadSnapshot(repo, first.id);
  const art = manifest.artifacts.find((a) => a.path_in_bundle === 'sqlite/compactions.sqlite')!;
  let chunk: Buffer | undefined;
  for (const id of await chunkIds(repo, art)) {
    const b = await repo.loadBlob(id);
    if (b.includes(needle)) chunk = b;
  }
  writeFileSync(join(p.memdir, 'copy.md'), chunk!);
  execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'copy'], { cwd: p.memdir, env: gitEnv });
  const last = await s.snapshot({ agentId: 'ana' });

  const r = await s.find({ agentId: 'ana', text: needle });
  assert.equal(r.snapshots.length, 22);
  assert.ok(r.snapshots.every((x) => x.found));
  const at = (id: string) => r.snapshots.find((x) => x.snapshot_id === id)!.locations;
  assert.deepEqual(
    at(last.id).map((l) => `${l.kind} ${l.path}`),
    ['file memdir/copy.md', 'row sqlite/compactions/compactions'],
  );
  assert.deepEqual(
    at(first.id).map((l) => `${l.kind} ${l.path}`),
    ['row sqlite/compactions/compactions'],
  );
});
