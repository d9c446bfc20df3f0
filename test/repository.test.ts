// Tests of the repository core on the in-memory backend and real files: chunkers (boundaries follow
// content), packs and the index, encryption, content round trips with deduplication, sealed manifests,
// the git pack chain (real git), check (structure and data), prune, and repository locks.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { gitEnv } from '../scripts/sample-agent.js';
import { type Handle, listNames, type SaveOptions, type SaveSource } from '../src/backend/backend.js';
import { FaultyBackend } from '../src/backend/faulty.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend, MemoryStore } from '../src/backend/memory.js';
import { generateIdentity, parseIdentity } from '../src/crypto/age.js';
import { recordRefs } from '../src/git/history.js';
import {
  BundleDamagedError,
  EncryptionError,
  GitError,
  IoError,
  ObjectExistsError,
  type SnapshotError,
} from '../src/model/errors.js';
import { newSnapshotId } from '../src/model/ids.js';
import { checkRepository } from '../src/repository/check.js';
import { isPacked, planChunks } from '../src/repository/chunk-plan.js';
import { chunkFile, DEFAULT_CHUNKER, gearChunks, listChunks } from '../src/repository/chunker.js';
import {
  loadContent,
  storeContent,
  storePacked,
  storePlanned,
  writeContent,
} from '../src/repository/content.js';
import { newKeyFile, sealFile } from '../src/repository/crypto.js';
import { applyRefs, restoreHistory, storeLiveHistory } from '../src/repository/git-history.js';
import { lockRepository } from '../src/repository/locks.js';
import { sealRepoManifest } from '../src/repository/manifest.js';
import { pruneRepository } from '../src/repository/prune.js';
import { Repository } from '../src/repository/repository.js';
import { forgetSnapshot, listSnapshots, loadSnapshot, saveSnapshot } from '../src/repository/snapshots.js';
import { tempDir } from './helpers/env.js';
import { repoManifestDraft } from './helpers/repo-manifest.js';

const git = (cwd: string, args: string[]) =>
  execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8' });

function sqliteFile(path: string, rows: number, seed = 1): void {
  const db = new Database(path);
  db.exec('CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT, emb BLOB)');
  const ins = db.prepare('INSERT INTO m (id, body, emb) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++)
      ins.run(i * 10 + seed, `memory ${i} ${'x'.repeat(200 + (i % 50))}`, randomBytes(64));
  })();
  db.close();
}

async function ids(path: string, sqlite: boolean): Promise<string[]> {
  const out: string[] = [];
  for await (const c of chunkFile(path, DEFAULT_CHUNKER, sqlite)) out.push(c.id);
  return out;
}

/** `n` pseudo-random bytes, the same for the same seed (an AES-CTR key stream). */
function seededBytes(n: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

test('chunkers: SQLite chunks end at page boundaries and survive edits elsewhere; gear chunks resynchronise', async (t) => {
  const dir = tempDir(t);
  const a = join(dir, 'a.sqlite');
  sqliteFile(a, 20_000);
  const bytes = readFileSync(a);
  const parts: Buffer[] = [];
  for await (const c of chunkFile(a, DEFAULT_CHUNKER, true)) {
    assert.equal(c.data.length % 4096, 0, 'whole pages');
    assert.ok(c.data.length <= 32 * 4096);
    parts.push(c.data);
  }
  assert.ok(Buffer.concat(parts).equals(bytes), 'chunks concatenate to the file');
  assert.ok(parts.length > bytes.length / (64 * 1024), `about 16 KiB on average (${parts.length} chunks)`);
  const before = new Set(await ids(a, true));
  const db = new Database(a);
  db.prepare('UPDATE m SET body = ? WHERE id = ?').run('changed', 10_001);
  db.close();
  const after = await ids(a, true);
  const fresh = after.filter((id) => !before.has(id)).length;
  assert.ok(fresh <= 4, `one changed row changes few chunks (${fresh} of ${after.length})`);

  // Fixed pseudo-random bytes: with fresh random ones the number of chunks varies from run to run (the
  // average chunk is 1 MiB past a 256 KiB minimum), and a run that drew only two failed.
  const big = seededBytes(6 * 1024 * 1024, 1);
  const g = async (b: Buffer) => {
    const out: string[] = [];
    for await (const c of gearChunks(
      (async function* () {
        yield b;
      })(),
      DEFAULT_CHUNKER,
    ))
      out.push(c.id);
    return out;
  };
  const g1 = await g(big);
  const g2 = await g(Buffer.concat([big.subarray(0, 100), Buffer.from('inserted'), big.subarray(100)]));
  const shared = g2.filter((id) => g1.includes(id)).length;
  assert.ok(
    g1.length >= 3 && shared >= g1.length - 2,
    `insertion at the start changes only the first chunks (${shared}/${g1.length})`,
  );

  const list = randomBytes(32 * 5000);
  const l1 = listChunks(list, 32, 31).map((c) => c.id);
  const l2 = listChunks(
    Buffer.concat([list.subarray(0, 32 * 2500), randomBytes(32), list.subarray(32 * 2500)]),
    32,
    31,
  ).map((c) => c.id);
  assert.ok(
    l2.filter((id) => l1.includes(id)).length >= l1.length - 1,
    'a list entry inserted changes one list chunk',
  );
});

test('repository: content round trips verified, deduplicated; encrypted repository needs its identity', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'db.sqlite');
  sqliteFile(file, 5_000);
  const { identity, recipient } = generateIdentity();
  for (const recipients of [[], [recipient]]) {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, recipients);
    const w = repo.writer();
    const ref = await storeContent(w, repo.config.chunker, { path: file, sqlite: true });
    const small = await storeContent(w, repo.config.chunker, { data: Buffer.from('hello') });
    const empty = await storeContent(w, repo.config.chunker, { data: Buffer.alloc(0) });
    const first = await w.finish();
    assert.ok(first.blobsNew > 3 && first.packs.length >= 1);
    const w2 = repo.writer();
    await storeContent(w2, repo.config.chunker, { path: file, sqlite: true });
    const second = await w2.finish();
    assert.equal(second.blobsNew, 0, 'the same content stores nothing new');
    assert.equal(second.packs.length, 0);

    const reopened = recipients.length
      ? await Repository.open(backend, { identities: [parseIdentity(identity)] })
      : await Repository.open(backend);
    const out = join(dir, `out-${recipients.length}.sqlite`);
    await writeContent(reopened, ref, out, 'db');
    assert.ok(readFileSync(out).equals(readFileSync(file)));
    assert.equal((await loadContent(reopened, small, 'small')).toString(), 'hello');
    assert.equal((await loadContent(reopened, empty, 'empty')).length, 0);
    if (recipients.length) {
      await assert.rejects(Repository.open(backend), EncryptionError);
      await assert.rejects(
        Repository.open(backend, { identities: [parseIdentity(generateIdentity().identity)] }),
        EncryptionError,
      );
      // Nothing of the content is readable in the stored bytes.
      for (const [, obj] of backend.store.objects.get('packs')!)
        assert.equal(obj.includes(Buffer.from('memory 17 xxxx')), false, 'pack bytes are ciphertext');
    }
  }
});

test('an encrypted repository whose creation failed, was killed or lost a race opens afterwards: its config names its key file, and a creation that lost the race removes its own (stop 55)', async () => {
  const { identity, recipient } = generateIdentity();
  const identities = [parseIdentity(identity)];
  const keyNames = async (b: MemoryBackend) => (await listNames(b, 'keys')).sort();
  const opens = async (b: MemoryBackend) => {
    const repo = await Repository.open(b, { identities });
    const w = repo.writer();
    await storeContent(w, repo.config.chunker, { data: Buffer.from('after') });
    await w.finish();
    return repo;
  };

  // The config's save fails: its key file stays (that save may still land), and the next creation's
  // repository opens, its config naming its own key file. Before stop 55 every open then found two
  // master keys (ENCRYPTION).
  {
    const inner = new MemoryBackend();
    const faulty = new FaultyBackend(inner, {
      rules: [{ op: 'save', types: ['config'], when: 'once', fault: { kind: 'error' } }],
    });
    await assert.rejects(Repository.init(faulty, [recipient]), IoError);
    assert.equal((await keyNames(inner)).length, 1, 'the failed creation left its key file');
    const repo = await Repository.openOrInit(faulty, [recipient], { identities });
    assert.equal((await keyNames(inner)).length, 2);
    assert.ok((await opens(inner)).key!.master.equals(repo.key!.master), "the config's key is the one used");
  }
  // Killed between its key file and its config: the orphan key file stays, and is never used.
  {
    const b = new MemoryBackend();
    const orphan = (await newKeyFile([recipient])).bytes;
    await b.save({ type: 'keys', name: createHash('sha256').update(orphan).digest('hex') }, orphan);
    const repo = await Repository.openOrInit(b, [recipient], { identities });
    assert.equal((await keyNames(b)).length, 2);
    assert.ok((await opens(b)).key!.master.equals(repo.key!.master), "the config's key is the one used");
  }
  // The config landed but its answer was lost: the key file stays, the repository opens.
  {
    const inner = new MemoryBackend();
    const faulty = new FaultyBackend(inner, {
      rules: [{ op: 'save', types: ['config'], when: 'once', fault: { kind: 'error', afterCommit: true } }],
    });
    await assert.rejects(Repository.init(faulty, [recipient]), IoError);
    assert.equal((await keyNames(inner)).length, 1);
    await opens(inner);
  }
  // Two first writers at once: the one whose config lost removes its key file; the winner's opens.
  {
    const b = new MemoryBackend();
    const winner = await Repository.init(b, [recipient]);
    await assert.rejects(Repository.init(b, [recipient]), ObjectExistsError);
    assert.deepEqual(await keyNames(b), [winner.config.encryption?.key_file]);
    await opens(b);
  }
  // A repository created before stop 55 (its config names no key file) that such a failure or race left
  // with a second key file is still refused: an index file proves nothing (a review of this stop planted
  // one beside a key file, and the key "of the data" was the attacker's). The refusal names the key file
  // that opens every index file, for the operator who knows why there are two.
  {
    const b = new MemoryBackend();
    const repo = await Repository.init(b, [recipient]);
    const real = repo.config.encryption!.key_file!;
    const { key_file: _named, ...older } = repo.config.encryption!;
    await b.save(
      { type: 'config', name: 'config' },
      Buffer.from(JSON.stringify({ ...repo.config, encryption: older })),
    );
    const other = await newKeyFile([recipient]);
    await b.save({ type: 'keys', name: createHash('sha256').update(other.bytes).digest('hex') }, other.bytes);
    const refused = (hint: boolean) => (err: Error) => {
      assert.ok(err instanceof EncryptionError, err.message);
      assert.match(err.message, /hold different master keys/);
      assert.equal(
        err.message.includes(`keys/${real} is the one that opens every index file`),
        hint,
        err.message,
      );
      return true;
    };
    await assert.rejects(Repository.open(b, { identities }), refused(false));
    const w = repo.writer();
    await storeContent(w, repo.config.chunker, { data: Buffer.from('before') });
    await w.finish();
    await assert.rejects(Repository.open(b, { identities }), refused(true));
    const planted = sealFile(other.key, Buffer.from('{}'));
    await b.save({ type: 'index', name: createHash('sha256').update(planted).digest('hex') }, planted);
    await assert.rejects(Repository.open(b, { identities }), refused(false));
  }
  // A config naming a key file that is not there, or something that is no key file's name: damage.
  for (const keyFile of ['0'.repeat(64), '../keys/x']) {
    const b = new MemoryBackend();
    const repo = await Repository.init(b, [recipient]);
    const config = { ...repo.config, encryption: { ...repo.config.encryption!, key_file: keyFile } };
    await b.save({ type: 'config', name: 'config' }, Buffer.from(JSON.stringify(config)));
    await assert.rejects(
      Repository.open(b, { identities }),
      (err: Error) =>
        err instanceof BundleDamagedError &&
        /key file keys\/0{64}, which its config names, is missing|encryption\.key_file is not the name of a key file/.test(
          err.message,
        ),
    );
  }
});

test("content checks: 'chunks' leaves out only the whole-content SHA-256; a chunk not its id fails either way", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'db.sqlite');
  sqliteFile(file, 2_000);
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const w = repo.writer();
  const ref = await storeContent(w, repo.config.chunker, { path: file, sqlite: true });
  await w.finish();
  // a reference whose recorded SHA-256 is not its chunks' bytes
  const wrong = { ...ref, sha256: createHash('sha256').update('other').digest('hex') };
  await assert.rejects(writeContent(repo, wrong, join(dir, 'a'), 'db'), /SHA-256 does not match/);
  await writeContent(repo, wrong, join(dir, 'b'), 'db', false, 'chunks');
  assert.ok(readFileSync(join(dir, 'b')).equals(readFileSync(file)), 'the chunks are the bytes');
  // a wrong size is refused by both
  await assert.rejects(
    writeContent(repo, { ...ref, size_bytes: ref.size_bytes + 1 }, join(dir, 'c'), 'db', false, 'chunks'),
    /bytes, the manifest says/,
  );
  // a stored chunk flipped: refused by both (each chunk is checked against its id)
  const [, pack] = [...backend.store.objects.get('packs')!][0]!;
  pack[pack.length >> 1]! ^= 0xff;
  const fresh = await Repository.open(backend);
  for (const check of ['whole', 'chunks'] as const)
    await assert.rejects(
      writeContent(fresh, ref, join(dir, `d-${check}`), 'db', false, check),
      BundleDamagedError,
    );
});

test('planned content: the same reference as storeContent, only new chunks read; a file changed after its plan is refused', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'db.sqlite');
  sqliteFile(file, 5_000);
  const repo = await Repository.init(new MemoryBackend(), []);
  const params = repo.config.chunker;
  const w = repo.writer();
  await storeContent(w, params, { path: file, sqlite: true });
  await w.finish();
  const db = new Database(file);
  db.prepare('UPDATE m SET body = ? WHERE id = ?').run('changed', 20_001);
  db.close();
  const plan = await planChunks({ path: file, params, sqlite: true });
  const direct = await storeContent(repo.writer(), params, { path: file, sqlite: true });
  const w2 = repo.writer();
  const planned = await storePlanned(w2, file, plan);
  const stats = await w2.finish();
  assert.deepEqual(planned, direct, 'the reference storeContent gives for the same bytes');
  // One row changed: the header page's chunk, the changed page's (two when its page-CRC cut point moved:
  // the rows' random bytes make that vary) and the chunk lists' blobs; a few in all, never most of them.
  assert.ok(
    stats.blobsNew >= 1 && stats.blobsNew <= 8 && stats.blobsNew * 4 < plan.lengths.length,
    `only the changed chunks are new (${stats.blobsNew} of ${plan.lengths.length})`,
  );
  assert.ok(stats.blobsKnown >= plan.lengths.length - stats.blobsNew, 'the other chunks are known');
  const out = join(dir, 'out.sqlite');
  await writeContent(repo, planned, out, 'db');
  assert.ok(readFileSync(out).equals(readFileSync(file)), 'restores the file byte for byte');

  // A plan that no longer describes the file (same size, a byte of a new chunk changed since): storing
  // fails and stores nothing under the planned id. Known chunks are not read again: the reference then
  // describes the bytes the plan read, hashed in one pass with the whole file's SHA-256.
  const edit = new Database(file);
  edit.prepare('UPDATE m SET body = ? WHERE id = ?').run('changed again', 30_001);
  edit.close();
  const stale = await planChunks({ path: file, params, sqlite: true });
  const w3 = repo.writer();
  const staleId = (i: number) => Buffer.from(stale.ids.subarray(i * 32, i * 32 + 32));
  const fresh = Array.from(stale.lengths, (_, i) => i).findIndex((i) => !w3.has(staleId(i)));
  assert.ok(fresh >= 0, 'the edit made a new chunk');
  const at = stale.lengths.slice(0, fresh).reduce((a, b) => a + b, 0) + 100;
  const bytes = readFileSync(file);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(file, bytes);
  await assert.rejects(
    storePlanned(w3, file, stale),
    (err: Error) => err instanceof IoError && /changed after its chunks were planned/.test(err.message),
  );
  assert.equal(w3.has(staleId(fresh)), false, 'nothing stored under an id its bytes do not hash to');
  // a file that grew after its plan
  const grown = await planChunks({ path: file, params, sqlite: true });
  writeFileSync(file, Buffer.concat([bytes, Buffer.alloc(4096)]));
  await assert.rejects(storePlanned(repo.writer(), file, grown), IoError);
});

test('planned content into an empty repository: runs of new chunks read at once (over 1 MiB, repeats inside), the same reference and bytes', async (t) => {
  const dir = tempDir(t);
  const db = join(dir, 'header.sqlite');
  sqliteFile(db, 10);
  // a database file's first page (its header names 4 KiB pages), then 3 MiB of random pages with one
  // 128 KiB run of pages repeated inside: page chunks whose ids repeat within a run of new chunks
  const first = Buffer.alloc(4096);
  readFileSync(db).copy(first, 0, 0, 100);
  const block = randomBytes(128 * 1024);
  const file = join(dir, 'mixed.sqlite');
  writeFileSync(
    file,
    Buffer.concat([first, randomBytes(1024 * 1024), block, block, randomBytes(1536 * 1024)]),
  );
  const repo = await Repository.init(new MemoryBackend(), []);
  const params = repo.config.chunker;
  const plan = await planChunks({ path: file, params, sqlite: true });
  const w = repo.writer();
  const planned = await storePlanned(w, file, plan);
  const stats = await w.finish();
  const ids = new Set(
    Array.from(plan.lengths, (_, i) => Buffer.from(plan.ids.subarray(i * 32, i * 32 + 32)).toString('hex')),
  );
  assert.ok(ids.size < plan.lengths.length, 'some chunk repeats');
  assert.ok(plan.lengths.length > 100, `many chunks (${plan.lengths.length}): several 1 MiB runs`);
  // the chunk list is stored in content-defined pieces too: a run of repeated ids can make a piece
  // repeat (about 1 run in 300 of this random layout), which is stored once as well
  const pieces = listChunks([Buffer.from(plan.ids.buffer, plan.ids.byteOffset, plan.ids.byteLength)], 32, 31);
  const repeats = plan.lengths.length - ids.size + pieces.length - new Set(pieces.map((l) => l.id)).size;
  assert.equal(stats.blobsKnown, repeats, 'a repeat is stored once');
  const direct = await storeContent(repo.writer(), params, { path: file, sqlite: true });
  assert.deepEqual(planned, direct);
  const out = join(dir, 'out.sqlite');
  await writeContent(repo, planned, out, 'file');
  assert.ok(readFileSync(out).equals(readFileSync(file)), 'restores the file byte for byte');
});

test('packed content: pack files written ahead are saved as they are and removed, the reference and packs storeContent gives (plain and encrypted), known chunks skipped', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'db.sqlite');
  sqliteFile(file, 3_000);
  // random pages (incompressible: stored raw) and a repeated run (a chunk met twice is packed once)
  const block = randomBytes(64 * 1024);
  writeFileSync(file, Buffer.concat([readFileSync(file), randomBytes(256 * 1024), block, block]));
  const target = 128 * 1024; // several packs
  const packedOf = async (repo: Repository, name: string) => {
    const plan = await planChunks({
      path: file,
      params: repo.config.chunker,
      sqlite: true,
      pack: {
        level: repo.zstdLevel,
        prefix: join(dir, name),
        target,
        ...(repo.key ? { master: repo.key.master } : {}),
      },
    });
    assert.ok(isPacked(plan), 'a plan asked to pack is packed');
    assert.ok(plan.packs.length >= 3, `${plan.packs.length} packs`);
    for (const p of plan.packs) {
      assert.equal(statSync(p.path).mode & 0o777, 0o600, 'a pack file is private');
      const bytes = readFileSync(p.path);
      assert.equal(bytes.length, p.size);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), p.id, 'named by its bytes');
    }
    return plan;
  };

  // a local repository: each file saved byte for byte under its name, then removed
  const root = join(dir, 'repo');
  const repo = await Repository.init(new LocalBackend(root), []);
  const plan = await packedOf(repo, 'a.packed');
  assert.ok(
    plan.packs.some((p) => p.flags.includes(1)),
    'a chunk stored raw',
  );
  assert.ok(
    plan.packs.some((p) => p.flags.includes(0)),
    'a compressed chunk',
  );
  const w = repo.writer();
  const packed = await storePacked(w, plan);
  const stats = await w.finish();
  for (const p of plan.packs) {
    assert.ok(!existsSync(p.path), 'the file is removed once saved');
    assert.ok(stats.packs.includes(p.id));
    assert.equal(
      createHash('sha256')
        .update(readFileSync(join(root, 'packs', p.id.slice(0, 2), p.id)))
        .digest('hex'),
      p.id,
    );
  }
  // the same reference, and the same data packs, as a writer given the bytes (packs closed at the same size)
  const other = await Repository.init(new MemoryBackend(), []);
  const w2 = other.writer();
  w2.packing = { target, saving: 1 };
  const direct = await storeContent(w2, other.config.chunker, { path: file, sqlite: true });
  const directStats = await w2.finish();
  assert.deepEqual(packed, direct, 'the reference storeContent gives for the same bytes');
  const ahead = plan.packs.map((p) => p.id).slice(0, -1); // (the last one: the chunk lists go elsewhere)
  assert.deepEqual(directStats.packs.slice(0, ahead.length), ahead, 'the same data packs, byte for byte');
  assert.equal(stats.blobsNew, directStats.blobsNew, 'a repeat is stored once');
  const out = join(dir, 'out.sqlite');
  await writeContent(repo, packed, out, 'db');
  assert.ok(readFileSync(out).equals(readFileSync(file)), 'restores the file byte for byte');
  const reopened = await Repository.open(new LocalBackend(root));
  const checked = await checkRepository(reopened, { readData: true });
  assert.deepEqual(checked.problems, []);

  // a store that asks for its packs' size (a remote one) is given each pack whole, from a reused buffer
  const asking = Object.assign(new MemoryBackend(), { packing: { target, saving: 2 } });
  const remote = await Repository.init(asking, []);
  const remotePlan = await packedOf(remote, 'r.packed');
  const wr = remote.writer();
  assert.deepEqual(await storePacked(wr, remotePlan), packed);
  const rStats = await wr.finish();
  for (const p of remotePlan.packs) assert.ok(rStats.packs.includes(p.id), 'saved under its name');
  assert.deepEqual(
    remotePlan.packs.map((p) => p.id),
    plan.packs.map((p) => p.id),
    'the same packs as for the local store',
  );
  for (const p of remotePlan.packs) assert.ok(!existsSync(p.path), 'the file is removed once saved');
  const rOut = join(dir, 'remote.sqlite');
  await writeContent(remote, packed, rOut, 'db');
  assert.ok(readFileSync(rOut).equals(readFileSync(file)));
  assert.deepEqual((await checkRepository(remote, { readData: true })).problems, []);

  // packed again into the same repository: nothing new, nothing saved, every chunk counted as known
  const again = await packedOf(repo, 'b.packed');
  const w3 = repo.writer();
  assert.deepEqual(await storePacked(w3, again), packed);
  const s3 = await w3.finish();
  assert.equal(s3.blobsNew, 0);
  assert.deepEqual(s3.packs, []);
  for (const p of again.packs) assert.ok(!existsSync(p.path), 'a pack file with nothing new is removed');
  assert.ok(s3.blobsKnown >= again.packs.reduce((n, p) => n + p.stored.length, 0), 'every chunk known');

  // packed into a repository that holds some of its chunks already (another writer stored them since
  // packing ahead was decided): a pack with a known blob is not saved as it is, its new blobs are
  // packed again, and no pack holds a blob the index does not place there
  for (const recipients of [[], [generateIdentity().recipient]]) {
    const partly = await Repository.init(new MemoryBackend(), recipients);
    const pre = partly.writer();
    let k = 0;
    for await (const c of chunkFile(file, partly.config.chunker, true))
      if (k++ % 5 === 0) await pre.add(1, c.id, Buffer.from(c.data));
    await pre.finish();
    const partPlan = await packedOf(partly, `p${recipients.length}.packed`);
    const wp = partly.writer();
    assert.deepEqual(await storePacked(wp, partPlan), packed);
    const ps = await wp.finish();
    assert.ok(ps.blobsKnown >= Math.floor(k / 5), `${ps.blobsKnown} known`);
    for (const p of partPlan.packs) assert.ok(!existsSync(p.path), 'the file is removed');
    for (const name of await listNames(partly.backend, 'packs')) {
      const header = await partly.readPackHeader(name);
      for (const e of header.entries)
        assert.equal(partly.index.get(e.id)?.pack, name, `blob ${e.id} of ${name} is placed there`);
    }
    const pOut = join(dir, `partly${recipients.length}.sqlite`);
    await writeContent(partly, packed, pOut, 'db');
    assert.ok(readFileSync(pOut).equals(readFileSync(file)));
  }

  // an encrypted repository: the copy thread seals its packs; read back byte for byte
  const id = generateIdentity();
  const enc = await Repository.init(new MemoryBackend(), [id.recipient]);
  const encPlan = await packedOf(enc, 'c.packed');
  const we = enc.writer();
  const encRef = await storePacked(we, encPlan);
  await we.finish();
  const encOpened = await Repository.open(enc.backend, { identities: [parseIdentity(id.identity)] });
  const encOut = join(dir, 'enc.sqlite');
  await writeContent(encOpened, encRef, encOut, 'db');
  assert.ok(readFileSync(encOut).equals(readFileSync(file)));
  assert.deepEqual((await checkRepository(encOpened, { readData: true })).problems, []);

  // the pack files are made new: an existing one is never written into
  writeFileSync(join(dir, 'd.packed-0'), 'x');
  await assert.rejects(packedOf(repo, 'd.packed'), /EEXIST/);
  assert.equal(readFileSync(join(dir, 'd.packed-0'), 'utf8'), 'x', 'and is left as it was');
  // a snapshot that failed meanwhile stops its packing at the next chunk
  const stop = new Int32Array(new SharedArrayBuffer(4));
  Atomics.store(stop, 0, 1);
  await assert.rejects(
    planChunks({
      path: file,
      params: repo.config.chunker,
      sqlite: true,
      pack: { level: 3, prefix: join(dir, 'e.packed'), target, stop },
    }),
    /packing stopped/,
  );
});

test('packs: a blob larger than a pack buffer holds, content over several packs (buffers reused), round trip and check', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'big.bin');
  // incompressible and compressible parts: raw and zstd blobs, chunked across many 4 MiB reads
  writeFileSync(file, Buffer.concat([randomBytes(40 * 1024 * 1024), Buffer.alloc(12 * 1024 * 1024, 7)]));
  const { identity, recipient } = generateIdentity();
  for (const recipients of [[], [recipient]]) {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, recipients);
    const w = repo.writer();
    const blobs = [randomBytes(6 * 1024 * 1024), randomBytes(15 * 1024 * 1024)]; // 21 MiB: one pack, grown
    for (const b of blobs) await w.add(1, createHash('sha256').update(b).digest('hex'), b);
    const ref = await storeContent(w, repo.config.chunker, { path: file, sqlite: false });
    const stats = await w.finish();
    assert.ok(stats.packs.length >= 4, `${stats.packs.length} packs`);
    const reopened = recipients.length
      ? await Repository.open(backend, { identities: [parseIdentity(identity)] })
      : await Repository.open(backend);
    const out = join(dir, `out-${recipients.length}.bin`);
    await writeContent(reopened, ref, out, 'big');
    assert.ok(readFileSync(out).equals(readFileSync(file)));
    for (const b of blobs)
      assert.ok((await reopened.loadBlob(createHash('sha256').update(b).digest('hex'))).equals(b));
    const report = await checkRepository(reopened, { readData: true });
    assert.deepEqual(report.problems, []);
    assert.equal(report.packs_read, stats.packs.length);
  }
});

/**
 * A memory store that asks for small packs, two saved at once (Backend.packing), and counts the pack
 * saves under way: each takes a few turns of the event loop, so the writer fills the next packs meanwhile.
 */
class PackingBackend extends MemoryBackend {
  readonly packing = { target: 1024 * 1024, saving: 2 };
  underWay = 0;
  most = 0;
  readonly sizes: number[] = [];
  failOn: number | undefined;
  private saves = 0;

  override async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    if (h.type !== 'packs') return super.save(h, data, opts);
    const n = ++this.saves;
    this.underWay++;
    this.most = Math.max(this.most, this.underWay);
    try {
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      if (n === this.failOn) throw new IoError('pack store', new Error('disk full'));
      this.sizes.push((data as Uint8Array).length);
      return await super.save(h, data, opts);
    } finally {
      this.underWay--;
    }
  }
}

test("packs: the backend's packing — its pack size, at most its number of saves under way; a failed save is thrown once none is", async () => {
  const blob = () => randomBytes(300 * 1024); // incompressible: stored raw, 300 KiB each
  const backend = new PackingBackend();
  const repo = await Repository.init(backend);
  const w = repo.writer();
  assert.deepEqual(w.packing, { target: 1024 * 1024, saving: 2 });
  const blobs = Array.from({ length: 30 }, blob);
  for (const b of blobs) await w.add(1, createHash('sha256').update(b).digest('hex'), b);
  const stats = await w.finish();
  // The memory bound: never more than two packs being saved (and one filling), each closed at the
  // backend's target (1 MiB: four 300 KiB blobs, plus the header), not at 16 MiB.
  assert.equal(backend.most, 2);
  assert.equal(backend.underWay, 0);
  assert.equal(stats.packs.length, 8);
  for (const size of backend.sizes)
    assert.ok(size <= 1024 * 1024 + 300 * 1024 + 4096, `a pack of ${size} bytes`);
  const reopened = await Repository.open(backend);
  for (const b of blobs)
    assert.ok((await reopened.loadBlob(createHash('sha256').update(b).digest('hex'))).equals(b));

  // The third save fails while others are under way: the writer throws it once none is, and names every
  // pack that was stored (the caller removes them).
  const failing = new PackingBackend();
  failing.failOn = 3;
  const repo2 = await Repository.init(failing);
  const w2 = repo2.writer();
  await assert.rejects(async () => {
    for (const b of blobs) await w2.add(1, createHash('sha256').update(b).digest('hex'), b);
    await w2.finish();
  }, /disk full/);
  assert.equal(failing.underWay, 0);
  const stored: string[] = [];
  for await (const o of failing.list('packs')) stored.push(o.name);
  assert.ok(stored.length >= 2);
  assert.deepEqual([...w2.packsWritten].sort(), stored.sort());
});

async function snapshotOf(repo: Repository, agent: string, data: string, createdAt = Date.now()) {
  const w = repo.writer();
  const ref = await storeContent(w, repo.config.chunker, { data: Buffer.from(data) });
  const stats = await w.finish();
  const id = newSnapshotId();
  const { manifest, json } = sealRepoManifest(
    repoManifestDraft({
      repositoryId: repo.id,
      id,
      agentId: agent,
      createdAtMs: createdAt,
      artifacts: [{ path_in_bundle: 'memory_files/a.md', kind: 'memory_file', ...ref }],
    }),
  );
  await saveSnapshot(repo, manifest, json, {
    id,
    agent_id: agent,
    tenant: 'default',
    created_at_ms: createdAt,
    bundle_path: '',
    bundle_size_bytes: ref.size_bytes,
    bundle_sha256: manifest.bundle_sha256,
    schema_versions: manifest.schema_versions,
    encrypted: false,
    redactions_applied: false,
    added_bytes: stats.storedNew,
  });
  return id;
}

test('a listing entry whose save failed after it landed keeps its manifest: the snapshot is listed and whole; one that did not land takes the manifest with it (stop 55)', async () => {
  // Before stop 55 the manifest went in both cases: a listed snapshot with no manifest (check: damaged).
  const inner = new MemoryBackend();
  const faulty = new FaultyBackend(inner, {
    rules: [{ op: 'save', types: ['listing'], when: 'once', fault: { kind: 'error', afterCommit: true } }],
  });
  const repo = await Repository.init(faulty);
  const id = await snapshotOf(repo, 'ana', 'listed though its answer was lost');
  assert.deepEqual(
    (await listSnapshots(repo)).map((m) => m.id),
    [id],
  );
  assert.equal((await loadSnapshot(repo, id)).manifest.snapshot_id, id);
  assert.equal((await checkRepository(repo, { readData: true })).ok, true);
  const failing = new FaultyBackend(inner, {
    rules: [{ op: 'save', types: ['listing'], when: 'once', fault: { kind: 'error' } }],
  });
  const again = await Repository.open(failing);
  await assert.rejects(snapshotOf(again, 'ana', 'never listed'), IoError);
  assert.deepEqual(await listNames(inner, 'snapshots'), [id], 'the unlisted manifest went with it');
});

test('snapshots: sealed manifests listed newest first; tampering and foreign repositories are refused', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const a = await snapshotOf(repo, 'ana', 'one', 1000);
  const b = await snapshotOf(repo, 'ana', 'two', 2000);
  await snapshotOf(repo, 'bob', 'three', 3000);
  assert.deepEqual(
    (await listSnapshots(repo, { agentId: 'ana' })).map((m) => m.id),
    [b, a],
  );
  assert.equal((await loadSnapshot(repo, a)).manifest.artifacts.length, 1);
  // A manifest edited in storage (label added, seal kept) is refused.
  const stored = repo.decodeFile(backend.store.objects.get('snapshots')!.get(a)!, 'x');
  const edited = JSON.parse(stored.toString());
  edited.label = 'changed';
  backend.store.objects.get('snapshots')!.set(a, repo.encodeFile(Buffer.from(JSON.stringify(edited))));
  await assert.rejects(loadSnapshot(repo, a), /manifest_seal does not match/);
  // The same manifest in another repository is refused.
  const other = await Repository.init(new MemoryBackend());
  await other.backend.save(
    { type: 'snapshots', name: b },
    other.encodeFile(repo.decodeFile(backend.store.objects.get('snapshots')!.get(b)!, 'x')),
  );
  await assert.rejects(loadSnapshot(other, b), /another repository/);
  // Bytes that are not zstd at all are damage too (exit 2), not an internal error.
  backend.store.objects.get('snapshots')!.set(a, Buffer.from('this is not a zstd frame'));
  await assert.rejects(loadSnapshot(repo, a), (err: Error & { code?: string; exitCode?: number }) => {
    assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
    assert.equal(err.exitCode, 2);
    return true;
  });
});

test('git history: a thin pack per snapshot on top of the previous chain; the chain rebuilds the refs', async (t) => {
  const dir = tempDir(t);
  const live = join(dir, 'live');
  mkdirSync(live);
  git(live, ['init', '-q', '-b', 'main']);
  for (let i = 0; i < 5; i++) {
    writeFileSync(join(live, `f${i}.md`), `file ${i}\n`.repeat(100));
    git(live, ['add', '.']);
    git(live, ['commit', '-qm', `c${i}`]);
  }
  git(live, ['tag', 'v1']);
  const repo = await Repository.init(new MemoryBackend());
  const store = async (previous?: Parameters<typeof storeLiveHistory>[4]) => {
    const w = repo.writer();
    const work = tempDir(t);
    const refs = await recordRefs(live);
    const art = await storeLiveHistory(w, repo.config.chunker, live, refs, previous, work);
    const stats = await w.finish();
    return { art: art!, refs, stats };
  };
  const first = await store();
  assert.equal(first.art.packs!.length, 1);
  const same = await store({ packs: first.art.packs!, refs: first.refs });
  assert.deepEqual(same.art.packs, first.art.packs, 'nothing new: the same chain');
  assert.equal(same.stats.blobsNew, 0);
  writeFileSync(join(live, 'f1.md'), 'edited\n');
  git(live, ['commit', '-qam', 'edit']);
  const second = await store({ packs: first.art.packs!, refs: first.refs });
  assert.equal(second.art.packs!.length, 2, 'one thin pack added');
  assert.ok(second.art.packs![1]!.size_bytes < first.art.packs![0]!.size_bytes / 2);

  const target = join(dir, 'restored');
  mkdirSync(target);
  git(target, ['init', '-q', '--bare']);
  await restoreHistory(repo, second.art, target);
  for (const r of second.refs) git(target, ['update-ref', r.name, r.oid]);
  git(target, ['fsck', '--connectivity-only', '--no-dangling']);
  assert.equal(git(target, ['log', '--format=%s', 'refs/heads/main']).trim().split('\n')[0], 'edit');
});

const names = async (b: MemoryBackend, type: 'packs' | 'snapshots') => (await listNames(b, type)).sort();

/** A store whose listings leave out the names in `hidden` (a short page, a page lost), as a store can. */
class ShortListings extends MemoryBackend {
  readonly hidden = new Map<string, Set<string>>();
  override async *list(type: Parameters<MemoryBackend['list']>[0]) {
    for await (const o of super.list(type)) if (!this.hidden.get(type)?.has(o.name)) yield o;
  }
}

test('prune stops before removing anything when a listing leaves out a snapshot: its manifest, or its listing entry (stop 51)', async () => {
  const backend = new ShortListings(new MemoryStore());
  const repo = await Repository.init(backend);
  const a = await snapshotOf(repo, 'ana', 'a'.repeat(10_000) + randomBytes(1000).toString('hex'));
  const b = await snapshotOf(repo, 'ana', 'b'.repeat(10_000) + randomBytes(1000).toString('hex'));
  const before = {
    packs: (await names(backend, 'packs')).length,
    snapshots: await names(backend, 'snapshots'),
  };
  for (const [type, what] of [
    ['snapshots', /the listing of snapshots\/ left out/],
    ['listing', /the listing of listing\/ left out/],
  ] as const) {
    backend.hidden.set(type, new Set([b]));
    await assert.rejects(pruneRepository(await Repository.open(backend)), (e: SnapshotError) => {
      assert.equal(e.code, 'BUNDLE_DAMAGED');
      assert.match(e.message, /prune stopped before removing anything: /);
      assert.match(e.message, what);
      return true;
    });
    backend.hidden.clear();
    assert.equal((await names(backend, 'packs')).length, before.packs, `${type}: no pack removed`);
    assert.deepEqual(await names(backend, 'snapshots'), before.snapshots, `${type}: no manifest removed`);
    // a dry run only reads: it says what it would do
    backend.hidden.set(type, new Set([b]));
    await pruneRepository(await Repository.open(backend), { dryRun: true });
    backend.hidden.clear();
  }
  const after = await Repository.open(backend);
  assert.equal((await checkRepository(after, { readData: true })).ok, true);
  assert.deepEqual((await listSnapshots(after)).map((m) => m.id).sort(), [a, b].sort());
  // a manifest with no listing entry (a writer killed before listing it) still goes, and so does a
  // listing entry whose manifest is gone (forget removes the entry first)
  await backend.remove({ type: 'listing', name: a });
  const pruned = await pruneRepository(await Repository.open(backend));
  assert.equal(pruned.unlisted_removed, 1);
  assert.deepEqual(await names(backend, 'snapshots'), [b]);
});

test('check finds a flipped byte, a missing pack and a damaged index; prune keeps what is referenced', async () => {
  const store = new MemoryStore();
  const backend = new MemoryBackend(store);
  const repo = await Repository.init(backend);
  const a = await snapshotOf(repo, 'ana', 'a'.repeat(10_000) + randomBytes(1000).toString('hex'));
  const aPacks = new Set(store.objects.get('packs')!.keys());
  const b = await snapshotOf(repo, 'ana', 'b'.repeat(10_000) + randomBytes(1000).toString('hex'));
  const clean = await checkRepository(await Repository.open(backend), { readData: true });
  assert.equal(clean.ok, true, JSON.stringify(clean.problems));
  assert.equal(clean.packs_read, 2);

  // A flipped byte in the pack only b references: b is damaged, a is not.
  const [bPack, bBytes] = [...store.objects.get('packs')!].find(([name]) => !aPacks.has(name))!;
  const onlyB = Buffer.from(bBytes);
  onlyB[5] = onlyB[5]! ^ 0x01;
  store.objects.get('packs')!.set(bPack, onlyB);
  const bBad = await checkRepository(await Repository.open(backend), { readData: true });
  assert.deepEqual(bBad.damaged_snapshots, [b], JSON.stringify(bBad.problems));
  const allPackBytes = [...store.objects.get('packs')!.values()].reduce((n, p) => n + p.length, 0);
  assert.equal(bBad.bytes_read, allPackBytes, 'the damaged pack was read too');
  store.objects.get('packs')!.set(bPack, bBytes);

  // prune after forgetting a: its pack goes, b still loads and checks clean.
  await forgetSnapshot(repo, a);
  const pruned = await pruneRepository(await Repository.open(backend));
  assert.equal(pruned.packs_removed, 1);
  const after = await Repository.open(backend);
  assert.equal((await checkRepository(after, { readData: true })).ok, true);
  assert.equal((await listSnapshots(after)).length, 1);

  // One flipped byte in b's pack: structure passes, read-data names the pack and the snapshot.
  const packs = store.objects.get('packs')!;
  const [packName, packBytes] = [...packs][0]!;
  const flipped = Buffer.from(packBytes);
  flipped[5] = flipped[5]! ^ 0x01;
  packs.set(packName, flipped);
  assert.equal(
    (await checkRepository(await Repository.open(backend))).ok,
    true,
    'structure alone cannot see it',
  );
  const bad = await checkRepository(await Repository.open(backend), { readData: true });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.damaged_snapshots, [b]);
  // Missing pack: the structure check sees it.
  packs.delete(packName);
  const missing = await checkRepository(await Repository.open(backend));
  assert.ok(missing.problems.some((p) => p.code === 'MISSING_ARTIFACT' && p.object === `packs/${packName}`));
  assert.deepEqual(missing.damaged_snapshots, [b], 'the snapshot whose pack is gone is named');
  // A truncated index file.
  const idx = store.objects.get('index')!;
  const [idxName, idxBytes] = [...idx][0]!;
  idx.set(idxName, idxBytes.subarray(0, 10));
  const trunc = await checkRepository(await Repository.open(backend));
  assert.ok(trunc.problems.some((p) => p.object === 'index'));
});

test('locks: shared locks coexist; exclusive waits for them and times out naming the holder; stale locks are ignored', async () => {
  const backend = new MemoryBackend();
  const s1 = await lockRepository(backend, false, 'snapshot', 1000);
  const s2 = await lockRepository(backend, false, 'snapshot', 1000);
  await assert.rejects(lockRepository(backend, true, 'prune', 200), /locked: shared lock of snapshot/);
  await s1.release();
  await s2.release();
  const ex = await lockRepository(backend, true, 'prune', 1000);
  await assert.rejects(lockRepository(backend, false, 'snapshot', 200), /exclusive lock of prune/);
  await ex.release();
  // A lock last refreshed long ago (a crashed host) does not block.
  const old = Date.now() - 60 * 60 * 1000;
  await backend.save(
    { type: 'locks', name: 'a'.repeat(64) },
    Buffer.from(
      JSON.stringify({
        exclusive: true,
        operation: 'prune',
        host: 'gone',
        pid: 1,
        created_at_ms: old,
        refreshed_at_ms: old,
      }),
    ),
  );
  const s3 = await lockRepository(backend, false, 'snapshot', 200);
  await s3.release();
  // Faults while saving a pack leave no snapshot: the writer fails, nothing references the data.
  const faulty = new FaultyBackend(new MemoryBackend(), {
    rules: [{ op: 'save', types: ['packs'], fault: { kind: 'error' } }],
  });
  const repo = await Repository.init(faulty);
  await assert.rejects(snapshotOf(repo, 'ana', 'x'));
  assert.equal((await listSnapshots(repo)).length, 0);
});

test('a repository lock whose save failed after it landed is withdrawn: it blocks no one, this process included (stop 55)', async () => {
  const inner = new MemoryBackend();
  const faulty = new FaultyBackend(inner, {
    rules: [{ op: 'save', types: ['locks'], when: 'once', fault: { kind: 'error', afterCommit: true } }],
  });
  await assert.rejects(lockRepository(faulty, false, 'snapshot', 0), IoError);
  assert.deepEqual(await listNames(inner, 'locks'), [], 'withdrawn');
  // before stop 55 it stayed, and an exclusive lock of the same process waited for it to turn stale
  const l = await lockRepository(faulty, true, 'prune', 0);
  await l.release();
});

test('locks: REPOSITORY_LOCKED names the blocking lock object and what it claims; a lock dated in the future says until when it stays', async () => {
  const backend = new MemoryBackend();
  const name = 'f'.repeat(64);
  const future = Date.now() + 365 * 24 * 3600 * 1000;
  await backend.save(
    { type: 'locks', name },
    Buffer.from(
      JSON.stringify({
        exclusive: false,
        operation: 'snapshot',
        host: 'elsewhere\nforged line',
        pid: 4242,
        created_at_ms: future,
        refreshed_at_ms: future,
      }),
    ),
  );
  // before stop 45: "the repository is locked: shared lock of snapshot (pid 4242 on elsewhere…)", no object
  const err = await lockRepository(backend, true, 'prune', 0).then(
    () => assert.fail('prune took the lock'),
    (e: SnapshotError) => e,
  );
  assert.equal(err.code, 'REPOSITORY_LOCKED');
  assert.match(
    err.message,
    /locked: shared lock of snapshot \(pid 4242 on elsewhere\\nforged line, written /,
  );
  assert.ok(err.message.includes(`object locks/${name} in ${backend.location}`), err.message);
  assert.ok(err.message.includes(`refreshed ${new Date(future).toISOString()}`), err.message);
  assert.match(err.message, /dated 52\d{4} min in the future and stays until \S+ unless removed/);
  assert.ok(!err.message.includes('\n'), "the lock's host cannot add a line");
  assert.deepEqual(
    { ...err.details, holder: undefined },
    {
      holder: undefined,
      lock: `locks/${name}`,
      location: backend.location,
      host: 'elsewhere\nforged line',
      pid: 4242,
      created_at_ms: future,
      refreshed_at_ms: future,
      stale_after_ms: future + 30 * 60 * 1000,
    },
  );
  // given a timeout, it says how long it waited (an operation that does not wait says nothing of it)
  assert.doesNotMatch(err.message, /waited/);
  const waited = await lockRepository(backend, true, 'prune', 200).then(
    () => assert.fail('prune took the lock'),
    (e: SnapshotError) => e,
  );
  assert.equal(waited.code, 'REPOSITORY_LOCKED');
  assert.match(waited.message, /is not running\); waited \d+\.\d s for it$/);
  assert.ok(Number(waited.details?.waited_ms) >= 200, JSON.stringify(waited.details));
});

test('a pack or index file already stored under its name with other bytes (torn, same-size damage) is replaced by the writer that produces it, never trusted', async () => {
  const blobs = Array.from({ length: 40 }, (_, i) => seededBytes(20_000 + i * 997, i + 1));
  const idOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  async function write(backend: MemoryBackend, damage?: () => void) {
    const repo = await Repository.init(backend);
    const w = repo.writer();
    await w.add(1, idOf(blobs[0]!), blobs[0]!); // the (empty) index is loaded
    damage?.();
    for (const b of blobs.slice(1)) await w.add(1, idOf(b), b);
    return w.finish();
  }
  // A writer elsewhere names the objects these blobs make (unencrypted packs and index files are
  // deterministic); here they are already there, damaged, when the same writer produces them.
  const scratch = new MemoryBackend();
  await write(scratch);
  const packs = [...scratch.store.objects.get('packs')!];
  const indexes = [...scratch.store.objects.get('index')!];
  assert.ok(packs.length >= 1 && indexes.length === 1);
  const backend = new MemoryBackend();
  await write(backend, () => {
    for (const [i, [name, bytes]] of [...packs, ...indexes].entries()) {
      const type = i < packs.length ? 'packs' : 'index';
      const bad = i % 2 === 0 ? bytes.subarray(0, bytes.length >> 1) : Buffer.from(bytes);
      if (i % 2 === 1) bad[bad.length >> 1]! ^= 0xff;
      backend.store.objects.get(type)!.set(name, Buffer.from(bad));
    }
  });
  for (const [type, objects] of [
    ['packs', packs],
    ['index', indexes],
  ] as const)
    for (const [name] of objects)
      assert.equal(
        idOf(backend.store.objects.get(type)!.get(name)!),
        name,
        `${type}/${name} holds its bytes`,
      );
  const report = await checkRepository(await Repository.open(backend), { readData: true });
  assert.deepEqual(report.problems, []);
});

test('a git that cannot run (not on PATH) while refs are set is GIT, never BUNDLE_DAMAGED: the host failed, not the snapshot (stop 47)', async (t) => {
  const dir = tempDir(t);
  const path = process.env.PATH;
  process.env.PATH = join(dir, 'no-git-here'); // read by every git started from now on (git.ts gitEnv)
  let err: unknown;
  try {
    await applyRefs(dir, {
      git: { repository: 'absent' },
      git_refs: [{ name: 'refs/heads/main', oid: 'a'.repeat(40) }],
    } as unknown as Parameters<typeof applyRefs>[1]);
  } catch (e) {
    err = e;
  } finally {
    process.env.PATH = path;
  }
  assert.ok(err instanceof GitError, `a GitError, not ${String(err)}`);
  assert.equal(err.notRun, true);
  assert.match(err.message, /^git: cannot run git: .*ENOENT/);
});
