// Tests of a repository's own objects read as hostile input (every byte from a repository is an
// attacker's, in a shared S3 or NATS repository too): index rows beyond the blob limit, chunk lists
// that name more chunks than their content has bytes, chunking settings in the config, listing entries
// with times and sizes no reader can use. Each is refused as damage (BUNDLE_DAMAGED, exit 2) or, for a
// listing entry (a cache, never trusted), skipped with a warning; on the in-memory backend.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { MemoryBackend } from '../src/backend/memory.js';
import { BundleDamagedError } from '../src/model/errors.js';
import { newSnapshotId } from '../src/model/ids.js';
import {
  CHUNK_ID_BATCH,
  chunkIdBatches,
  chunkIds,
  loadContent,
  readContent,
} from '../src/repository/content.js';
import {
  packChainDigest,
  type RepoArtifact,
  type RepoManifest,
  sealRepoManifest,
} from '../src/repository/manifest.js';
import {
  ENTRY_SIZE,
  KIND_DATA,
  KIND_TREE,
  MAX_BLOB,
  openStoredBlob,
  parseHeader,
} from '../src/repository/pack.js';
import { ReferenceSet } from '../src/repository/references.js';
import { Repository } from '../src/repository/repository.js';
import { listSnapshots, loadSnapshot, saveListing, saveSnapshot } from '../src/repository/snapshots.js';
import { repoManifestDraft } from './helpers/repo-manifest.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The error is damage: BUNDLE_DAMAGED, exit 2, its message matching `message`. */
const damaged =
  (message: RegExp) =>
  (err: Error & { code?: string; exitCode?: number }): boolean => {
    assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
    assert.equal(err.exitCode, 2);
    assert.match(err.message, message);
    return true;
  };

test('index rows: a raw length above the 16 MiB blob limit (or a stored one beyond its bound) is damage, before anything is allocated for it', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  // a writer of this package never stores such a blob; a hostile one can (zeros: a small pack)
  const big = Buffer.alloc(MAX_BLOB + 1);
  const w = repo.writer();
  await w.add(KIND_DATA, sha(big), big);
  await w.finish();
  const reader = await Repository.open(backend);
  await assert.rejects(reader.loadIndex(), damaged(/exceeds the limit/));
  await assert.rejects(reader.loadBlob(sha(big)), damaged(/exceeds the limit/));

  // an index file naming a blob of 0xFFFFFFFF bytes (the tester's 4.25 GB allocation), and one whose
  // stored length is 4 GB
  for (const [stored, raw] of [
    [100, 0xffffffff],
    [0xffffffff, 100],
  ]) {
    const other = new MemoryBackend();
    const r = await Repository.init(other);
    const json = JSON.stringify({
      index_version: 1,
      packs: [{ id: 'a'.repeat(64), blobs: [['b'.repeat(64), 1, 0, 0, stored, raw]] }],
    });
    const file = r.encodeFile(Buffer.from(json));
    await other.save({ type: 'index', name: sha(file) }, file);
    await assert.rejects((await Repository.open(other)).loadIndex(), damaged(/exceeds the limit/));
  }

  // a blob's location handed over from elsewhere (a worker thread) is checked too: damage, no RangeError
  assert.throws(
    () =>
      openStoredBlob(
        Buffer.alloc(10),
        { id: 'b'.repeat(64), flags: 0, raw: 0xffffffff, offset: 0 },
        undefined,
        'x',
      ),
    damaged(/exceeds the limit/),
  );
});

/** A repository holding a 1-byte chunk and a 100-byte one, and tree blobs naming them many times. */
async function repeatedLists() {
  const repo = await Repository.init(new MemoryBackend());
  const w = repo.writer();
  const one = Buffer.from('x');
  const hundred = Buffer.alloc(100, 'y');
  await w.add(KIND_DATA, sha(one), one);
  await w.add(KIND_DATA, sha(hundred), hundred);
  const ones = Buffer.concat(Array.from({ length: 5000 }, () => Buffer.from(sha(one), 'hex')));
  const hundreds = Buffer.concat(Array.from({ length: 20 }, () => Buffer.from(sha(hundred), 'hex')));
  await w.add(KIND_TREE, sha(ones), ones);
  await w.add(KIND_TREE, sha(hundreds), hundreds);
  await w.finish();
  return { repo, ones: sha(ones), hundreds: sha(hundreds), oneContent: Buffer.alloc(5000, 'x') };
}

/** Counts the loads of packs through `repo`'s backend from now on (`count`, which a test may reset). */
function countPackLoads(repo: Repository): { count: number } {
  const loads = { count: 0 };
  const load = repo.backend.load.bind(repo.backend);
  repo.backend.load = (h, range) => {
    if (h.type === 'packs') loads.count++;
    return load(h, range);
  };
  return loads;
}

test('chunk lists: naming more chunks (or more bytes of chunks) than the content has bytes is damage as the lists are read', async () => {
  const { repo, ones, hundreds, oneContent } = await repeatedLists();
  // what a writer would record reads back
  const good = { size_bytes: 5000, sha256: sha(oneContent), chunk_lists: [ones] };
  assert.equal((await chunkIds(repo, good)).length, 5000);
  assert.ok((await loadContent(repo, good, 'good')).equals(oneContent));
  // one tree blob of 5,000 ids named three times for 1,000 bytes: refused at the first list
  await assert.rejects(
    chunkIds(repo, { size_bytes: 1000, sha256: '0'.repeat(64), chunk_lists: [ones, ones, ones] }),
    damaged(/chunk lists name more chunks than the 1000 bytes/),
  );
  // 20 chunks for 1,000 bytes, but the index says each is 100 bytes long
  await assert.rejects(
    chunkIds(repo, { size_bytes: 1000, sha256: '0'.repeat(64), chunk_lists: [hundreds] }),
    damaged(/more chunks than the 1000 bytes/),
  );
  // the tester's case: 200 lists for an 18-byte file, refused before any is read
  await assert.rejects(
    chunkIds(repo, { size_bytes: 18, sha256: '0'.repeat(64), chunk_lists: Array(200).fill(ones) }),
    damaged(/more chunks than the 18 bytes/),
  );
  await assert.rejects(
    loadContent(repo, { size_bytes: 18, sha256: '0'.repeat(64), chunk_lists: Array(200).fill(ones) }, 'x'),
    damaged(/more chunks than the 18 bytes/),
  );
});

test('chunk lists: what snapshots reference (check, prune) reads a list once however often one artifact names it (stop 62 review)', async () => {
  const { repo, ones } = await repeatedLists();
  const loads = countPackLoads(repo);
  const refs = new ReferenceSet(repo);
  // 2,000 names of one list in one artifact (a 1.8 KB manifest made check and prune read it 2,000 times)
  const art = { size_bytes: 5000 * 2000, sha256: '0'.repeat(64), chunk_lists: Array(2000).fill(ones) };
  await refs.addManifest({ artifacts: [art] } as unknown as RepoManifest);
  assert.equal(loads.count, 1, 'the list was read once');
  assert.equal(refs.blobs.size, 2, 'the list and its one chunk');
});

test('chunk lists: the ids of a content that claims many bytes are read a batch at a time, as the reader asks', async () => {
  const { repo, ones } = await repeatedLists();
  // 1,000 lists of 5,000 ids (5,000,000 one-byte chunks) for a claimed terabyte: within every bound,
  // so the ids are only ever held a batch at a time, and a reader that stops reads no further lists
  const loads = countPackLoads(repo);
  const ref = { size_bytes: 1e12, sha256: '0'.repeat(64), chunk_lists: Array(1000).fill(ones) };
  // a reader of the content gets its first bytes after a batch of lists, not after all 1,000
  for await (const b of readContent(repo, ref, 'x')) {
    assert.equal(b.toString(), 'x');
    break;
  }
  assert.ok(loads.count < 40, `${loads.count} pack reads before the first chunk`);
  loads.count = 0;
  let batches = 0;
  for await (const ids of chunkIdBatches(repo, ref)) {
    assert.ok(ids.length >= CHUNK_ID_BATCH && ids.length < CHUNK_ID_BATCH + 5000, `${ids.length} ids`);
    if (++batches === 2) break;
  }
  assert.ok(loads.count < 60, `${loads.count} pack reads for 2 batches of ${CHUNK_ID_BATCH} ids`);
});

test('chunk lists: a sealed manifest naming more chunk lists or chunks than an artifact has bytes, both, or empty content without "chunks":[] is refused', async () => {
  const { repo, ones } = await repeatedLists();
  const pack = { size_bytes: 5, sha256: '1'.repeat(64), chunks: [ones], chunk_lists: [ones] };
  const cases: Array<[Partial<RepoArtifact>, RegExp]> = [
    [{ size_bytes: 18, chunk_lists: Array(200).fill(ones) }, /chunks or chunk lists for \d+ bytes/],
    [{ size_bytes: 2, chunks: [ones, ones, ones] }, /chunks or chunk lists for \d+ bytes/],
    // one spelling (stop 64: an independent reader refused what this one took)
    [{ size_bytes: 0 }, /a\.md: empty content without "chunks":\[\]/],
    [{ size_bytes: 3, chunks: [ones], chunk_lists: [ones] }, /a\.md: both chunks and chunk_lists/],
    [
      {
        path_in_bundle: 'git/history',
        kind: 'git_history',
        size_bytes: 5,
        sha256: packChainDigest([pack]),
        packs: [pack],
      },
      /git\/history pack 0: both chunks and chunk_lists/,
    ],
  ];
  for (const [where, message] of cases) {
    const id = newSnapshotId();
    const { manifest, json } = sealRepoManifest(
      repoManifestDraft({
        repositoryId: repo.id,
        id,
        createdAtMs: 1000,
        artifacts: [
          {
            path_in_bundle: 'memory_files/a.md',
            kind: 'memory_file',
            size_bytes: 0,
            sha256: '0'.repeat(64),
            ...where,
          } as RepoArtifact,
        ],
      }),
    );
    await saveSnapshot(repo, manifest, json, listing(id, 1000));
    await assert.rejects(loadSnapshot(repo, id), damaged(message));
  }
});

test('config: chunking settings other than the documented ones (zeros, missing, not an object, other list bits) are damage', async () => {
  const edits: Array<[string, (c: Record<string, unknown>) => void, RegExp]> = [
    [
      'zeros',
      (c) => {
        c.chunker = { ...(c.chunker as object), file_min: 0, file_max: 0, single_max: 0 };
      },
      /chunker\.file_min is 0, version 1 has 262144/,
    ],
    [
      'missing',
      (c) => {
        delete c.chunker;
      },
      /chunker is not an object/,
    ],
    [
      'a string',
      (c) => {
        c.chunker = 'x';
      },
      /chunker is not an object/,
    ],
    [
      'a setting left out',
      (c) => {
        delete (c.chunker as Record<string, unknown>).page_max;
      },
      /chunker\.page_max is missing/,
    ],
    [
      'an unknown setting',
      (c) => {
        (c.chunker as Record<string, unknown>).extra = 1;
      },
      /unknown setting "extra"/,
    ],
    [
      'a string number',
      (c) => {
        (c.chunker as Record<string, unknown>).file_avg_bits = '20';
      },
      /chunker\.file_avg_bits is "20"/,
    ],
    [
      'list bits',
      (c) => {
        c.list_avg_bits = 0;
      },
      /list_avg_bits is 0, version 1 has 6/,
    ],
    [
      'list bits missing',
      (c) => {
        delete c.list_avg_bits;
      },
      /list_avg_bits is missing/,
    ],
  ];
  for (const [name, edit, message] of edits) {
    const backend = new MemoryBackend();
    await Repository.init(backend);
    await Repository.open(backend); // as written: fine
    const configs = backend.store.objects.get('config')!;
    const c = JSON.parse(configs.get('config')!.toString('utf8')) as Record<string, unknown>;
    edit(c);
    configs.set('config', Buffer.from(JSON.stringify(c)));
    await assert.rejects(Repository.open(backend), damaged(message), name);
    await assert.rejects(Repository.openOrInit(backend, []), damaged(message), name);
  }
});

/** A listing entry as a snapshot writes it. */
function listing(id: string, createdAt: number) {
  return {
    id,
    agent_id: 'ana',
    tenant: 'default',
    created_at_ms: createdAt,
    bundle_path: '',
    bundle_size_bytes: 10,
    bundle_sha256: '0'.repeat(64),
    schema_versions: { long_term: 1, vector: 1, concepts: 1, compactions: 1, manifest: 4 },
    encrypted: false,
    redactions_applied: false,
    added_bytes: 10,
  };
}

test('listing: an entry whose time or sizes are not sane numbers (1e400 is Infinity) is skipped with a warning', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const real = newSnapshotId();
  await saveListing(repo, listing(real, 2_000_000));
  const older = newSnapshotId();
  await saveListing(repo, listing(older, 1_000_000));
  const forged: string[] = [];
  const raw = (fields: string) => {
    const id = newSnapshotId();
    forged.push(id);
    const text = `{"listing_version":1,"meta":{"id":"${id}","agent_id":"ana","tenant":"default",${fields}}}\n`;
    backend.store.objects.get('listing')!.set(id, Buffer.from(text));
  };
  raw('"created_at_ms":1e400'); // JSON.parse: Infinity
  raw('"created_at_ms":-1e400');
  raw('"created_at_ms":9007199254740991'); // a safe integer, but no Date holds it
  raw('"created_at_ms":1.5');
  raw('"created_at_ms":-5');
  raw('"created_at_ms":"3000000"');
  raw('"created_at_ms":3000000,"bundle_size_bytes":1e400');
  raw('"created_at_ms":3000000,"bundle_size_bytes":-1');
  raw('"created_at_ms":3000000,"added_bytes":0.5');
  const warnings: string[] = [];
  const listed = await listSnapshots(repo, { agentId: 'ana' }, (m) => warnings.push(m));
  assert.deepEqual(
    listed.map((m) => m.id),
    [real, older],
    'the real newest stays the newest',
  );
  assert.deepEqual(warnings.sort(), forged.map((id) => `listing/${id} is unreadable; skipped`).sort());
  // an entry with only what a reader needs (no sizes) is still listed
  raw('"created_at_ms":3000000');
  const minimal = forged.at(-1)!;
  assert.equal((await listSnapshots(repo, { agentId: 'ana' }))[0]!.id, minimal);
  assert.ok(Number.isFinite(new Date((await listSnapshots(repo))[0]!.created_at_ms).getTime()));
});

test('packs: a header whose blobs do not fill the bytes before it exactly (a gap, or blobs reaching into the header) is damage', () => {
  const entry = Buffer.alloc(ENTRY_SIZE);
  entry[0] = KIND_DATA;
  entry.writeUInt32LE(10, 2); // raw
  entry.writeUInt32LE(7, 6); // stored
  const header = Buffer.concat([entry, entry]);
  assert.deepEqual(
    parseHeader(header, undefined, 'packs/p', 14).entries.map((e) => [e.offset, e.stored]),
    [
      [0, 7],
      [7, 7],
    ],
  );
  for (const before of [15, 13, 0])
    assert.throws(
      () => parseHeader(header, undefined, 'packs/p', before),
      (e: unknown) =>
        e instanceof BundleDamagedError &&
        e.message ===
          `bundle damaged: packs/p: its header's blobs take 14 bytes, but ${before} come before the header`,
    );
});
