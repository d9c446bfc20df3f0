// Structural bounds behind the peak RSS of a repository's first snapshot (docs/operations.md, "Peak
// RSS"; issue 11: ≤ 150 MB, flat in size): what must not be held at once, asserted by structure, not by
// measuring memory. The index file is made and compressed part by part (no part holds more than
// INDEX_PART_ROWS rows); a writer's blobs become an empty index without a copy; a snapshot that plans
// nothing has closed its SQLite copy workers before it stores; a table reserved for n ids takes
// them without growing (a store in one pass sizes its writer's table from expectedChunks); a chunk id
// list kept in segments is cut into the same chunk lists as whole.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { MemoryBackend } from '../src/backend/memory.js';
import { zstdBinding } from '../src/format/zstd.js';
import { LocalSnapshotter } from '../src/index.js';
import { BlobTable } from '../src/repository/blob-table.js';
import { chunkFile, DEFAULT_CHUNKER, expectedChunks, listChunks } from '../src/repository/chunker.js';
import {
  encodeIndexOf,
  INDEX_PART_ROWS,
  type IndexPackSource,
  indexJsonParts,
} from '../src/repository/index-file.js';
import { dropSparePackBuffers, KIND_DATA } from '../src/repository/pack.js';
import { Repository, readObject } from '../src/repository/repository.js';
import { sampleAgent, tempDir } from './helpers/env.js';

const hex = (i: number) => createHash('sha256').update(`blob ${i}`).digest('hex');

function sources(counts: number[]): IndexPackSource[] {
  let n = 0;
  return counts.map((count, p) => {
    const first = n;
    n += count;
    return {
      id: hex(1_000_000 + p),
      count,
      row: (i: number) => [hex(first + i), KIND_DATA, 0, i * 100, 100, 200],
    };
  });
}

test('index file: its JSON comes in parts of at most INDEX_PART_ROWS rows, however many blobs a pack has', () => {
  const packs = sources([5000, 3, 0, 2049]);
  const parts = [...indexJsonParts(packs)];
  for (const part of parts) {
    const rows = part.toString().split('["').length - 1;
    assert.ok(rows <= INDEX_PART_ROWS, `a part of ${rows} rows`);
  }
  assert.ok(parts.length >= 5 + 1 + 3 + 2, 'the large packs are cut into several parts');
  // the parts joined are the file's JSON, unchanged
  const doc = JSON.parse(Buffer.concat(parts).toString()) as {
    index_version: number;
    packs: { id: string; blobs: unknown[][] }[];
  };
  assert.equal(doc.index_version, 1);
  assert.deepEqual(
    doc.packs.map((p) => p.blobs.length),
    [5000, 3, 0, 2049],
  );
  assert.deepEqual(doc.packs[3]!.blobs[2048], [hex(5000 + 3 + 2048), KIND_DATA, 0, 204800, 100, 200]);
  assert.ok(Buffer.concat(parts).equals(encodeIndexOf(packs)));
});

test('index file: saved as one zstd frame that records its content size; a fresh handle loads every blob', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const packs = sources([3000, 1500]);
  const name = await repo.saveIndex(packs);
  const stored = await readObject(backend, 'index', name);
  assert.equal(createHash('sha256').update(stored).digest('hex'), name);
  // the frame header records the JSON's size (what unzstdFrame, and older readers, require)
  assert.equal(zstdBinding().getFrameContentSize(stored), encodeIndexOf(packs).length);
  const fresh = await Repository.open(backend);
  await fresh.loadIndex();
  assert.equal(fresh.index.blobCount, 4500);
  assert.deepEqual(fresh.index.get(hex(3000 + 1499)), {
    pack: hex(1_000_001),
    kind: KIND_DATA,
    flags: 0,
    offset: 149900,
    stored: 100,
    raw: 200,
  });
});

test("a writer's blobs become an empty index as they are (no copy); into a non-empty index they are added", async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const w = repo.writer();
  const blobs = Array.from({ length: 2500 }, () => randomBytes(64));
  const id = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  for (const b of blobs) await w.add(KIND_DATA, id(b), b);
  const session = (w as unknown as { session: BlobTable }).session;
  await w.finish();
  assert.equal(repo.index.table, session, 'the index is the session table itself');
  assert.equal(repo.index.blobCount, 2500);
  assert.ok((await repo.loadBlob(id(blobs[1234]!))).equals(blobs[1234]!));
  await assert.rejects(w.add(KIND_DATA, id(blobs[0]!), blobs[0]!), /after finish/);

  // a second session into the (now non-empty) index: added to it, the first session's blobs kept
  const w2 = repo.writer();
  const more = Array.from({ length: 1200 }, () => randomBytes(64));
  for (const b of more) await w2.add(KIND_DATA, id(b), b);
  await w2.finish();
  assert.equal(repo.index.blobCount, 3700);
  assert.ok((await repo.loadBlob(id(blobs[7]!))).equals(blobs[7]!));
  assert.ok((await repo.loadBlob(id(more[1111]!))).equals(more[1111]!));
  const fresh = await Repository.open(backend);
  await fresh.loadIndex();
  assert.equal(fresh.index.blobCount, 3700);
  for (const b of [blobs[0]!, blobs[2499]!, more[0]!, more[1199]!])
    assert.deepEqual(fresh.index.get(id(b)), repo.index.get(id(b)));
});

test('a first repository snapshot has closed its SQLite copy workers before it stores anything', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 2000, embeddings: 300, files: 10, commits: 3 });
  const snapshotter = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  const threads = () => readdirSync('/proc/self/task').length;
  await stat(a.stateRoot); // libuv's thread pool is started
  const before = threads();
  const during: { phase: string; threads: number }[] = [];
  await snapshotter.snapshot({
    agentId: 'ana',
    onProgress: (e) => {
      if (e.phase === 'pack') during.push({ phase: e.phase, threads: threads() });
    },
  });
  assert.ok(during.length > 0, 'the store phase reported progress');
  for (const d of during)
    assert.ok(d.threads <= before, `${d.threads} threads while storing, ${before} before the snapshot`);
});

test('BlobTable.reserve: the table grows once, then takes that many ids without growing again', () => {
  const t = new BlobTable();
  t.add(hex(0), { pack: 0, kind: KIND_DATA, flags: 0, offset: 0, stored: 1, raw: 1 });
  t.reserve(50_001);
  const ids = t.idBytes(0).buffer; // the ids' storage: replaced whenever the table grows
  for (let i = 1; i <= 50_000; i++)
    t.add(hex(i), { pack: 0, kind: KIND_DATA, flags: 0, offset: i, stored: 1, raw: 1 });
  assert.equal(t.idBytes(0).buffer, ids, 'no growth while the reserved ids came');
  assert.equal(t.size, 50_001);
  assert.equal(t.offsetOf(t.find(hex(49_999))), 49_999);
  t.reserve(10);
  assert.equal(t.idBytes(0).buffer, ids, 'reserving what fits changes nothing');
});

test('expectedChunks: the estimate a one-pass store sizes its table by is near the chunks a database is cut into', async (t) => {
  const dir = tempDir(t);
  const path = `${dir}/est.sqlite`;
  const db = new Database(path);
  db.exec('CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB)');
  const ins = db.prepare('INSERT INTO m (body) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 6000; i++) ins.run(randomBytes(300 + (i % 700)));
  })();
  db.close();
  let chunks = 0;
  for await (const _ of chunkFile(path, DEFAULT_CHUNKER, true, { views: true })) chunks++;
  const estimate = expectedChunks((await stat(path)).size, DEFAULT_CHUNKER, 4096);
  assert.ok(chunks > 100, `${chunks} chunks`);
  assert.ok(estimate >= chunks / 2 && estimate <= chunks * 2, `estimate ${estimate} for ${chunks} chunks`);
  assert.equal(expectedChunks(0, DEFAULT_CHUNKER), 0);
  assert.equal(expectedChunks(1000, DEFAULT_CHUNKER), 1);
});

test('listChunks: a list given as segments is cut into the same chunks as the list whole', () => {
  const ids = Buffer.concat(Array.from({ length: 5000 }, (_, i) => Buffer.from(hex(i), 'hex')));
  const whole = listChunks(ids, 32, 31);
  const segments = [ids.subarray(0, 2048 * 32), ids.subarray(2048 * 32, 4096 * 32), ids.subarray(4096 * 32)];
  const cut = listChunks(segments, 32, 31);
  assert.ok(whole.length > 10, `${whole.length} chunks`);
  assert.deepEqual(
    cut.map((c) => c.id),
    whole.map((c) => c.id),
  );
  assert.ok(cut.every((c, i) => c.data.equals(whole[i]!.data)));
  assert.throws(() => listChunks([ids.subarray(0, 33)], 32, 31), /partial entry/);
});

test('a writer that saved its packs keeps no pack buffer for a next pack once it finishes', async () => {
  const repo = await Repository.init(new MemoryBackend());
  const w = repo.writer();
  // incompressible blobs past one pack's target: one pack saved while the next fills, two buffers used
  for (let i = 0; i < 20; i++) {
    const b = randomBytes(1024 * 1024);
    await w.add(KIND_DATA, createHash('sha256').update(b).digest('hex'), b);
  }
  const stats = await w.finish();
  assert.equal(stats.packs.length, 2);
  assert.equal(dropSparePackBuffers(), 0, 'no pack buffer kept after finish');
});
