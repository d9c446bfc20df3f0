// The compact in-memory index (src/repository/blob-table.ts, index-file.ts): lookups by hex and by
// bytes, duplicates, growth past the first capacity, and the round trip through the on-disk index file
// (docs/format.md) — the JSON it writes is the format's, and a repository opened afresh finds every
// blob the writer stored where the writer put it.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MemoryBackend } from '../src/backend/memory.js';
import { BundleDamagedError } from '../src/model/errors.js';
import { BlobTable, IdTable } from '../src/repository/blob-table.js';
import {
  decodeIndex,
  encodeIndex,
  loadIndexInto,
  loadPlainIndex,
  MasterIndex,
} from '../src/repository/index-file.js';
import { KIND_DATA, KIND_TREE, MAX_BLOB, MAX_STORED } from '../src/repository/pack.js';
import { Repository } from '../src/repository/repository.js';

const hex = (i: number) => createHash('sha256').update(`blob ${i}`).digest('hex');

test('IdTable: finds what was added by hex and by bytes, not what was not; duplicates keep their number', () => {
  const t = new IdTable();
  assert.equal(t.find(hex(1)), -1);
  assert.deepEqual(t.insert(hex(1)), { index: 0, added: true });
  assert.deepEqual(t.insert(Buffer.from(hex(2), 'hex')), { index: 1, added: true });
  assert.deepEqual(t.insert(hex(1)), { index: 0, added: false });
  assert.deepEqual(t.insert(Buffer.from(hex(2), 'hex')), { index: 1, added: false });
  assert.equal(t.size, 2);
  assert.equal(t.find(Buffer.from(hex(1), 'hex')), 0);
  assert.equal(t.find(hex(2)), 1);
  assert.equal(t.idHex(1), hex(2));
  assert.ok(t.idBytes(0).equals(Buffer.from(hex(1), 'hex')));
  // not ids: never found, never added
  assert.equal(t.find(hex(1).toUpperCase()), -1);
  assert.equal(t.find(hex(1).slice(0, 62)), -1);
  assert.equal(t.find(`${hex(1).slice(0, 62)}zz`), -1);
  assert.equal(t.find(Buffer.alloc(31)), -1);
  assert.throws(() => t.insert('abc'), TypeError);
  assert.throws(() => t.insert(Buffer.alloc(33)), TypeError);
  assert.equal(t.size, 2);
});

test('IdTable: ids sharing their first bytes are told apart (the probe compares whole ids)', () => {
  const t = new IdTable();
  const base = randomBytes(32);
  const ids = Array.from({ length: 300 }, (_, i) => {
    const b = Buffer.from(base);
    b.writeUInt16BE(i, 30); // only the last two bytes differ
    return b;
  });
  for (const b of ids) assert.equal(t.insert(b).added, true);
  for (const [i, b] of ids.entries()) assert.equal(t.find(b), i);
  const other = Buffer.from(base);
  other.writeUInt16BE(300, 30);
  assert.equal(t.find(other), -1);
});

test('IdTable: crafted ids sharing any part of their bytes cannot build a long probe chain (every byte is hashed, keyed)', () => {
  // a flood the hunter made: 40,000 index rows whose ids share their first 16 bytes took verify 110 s
  // when only those were hashed; here each family of ids differs in one place only, and the slots looked
  // at past the first stay a small multiple of the ids (a shared chain would make them n²/2 ≈ 8 million)
  const n = 4096;
  const base = randomBytes(32);
  const families: Array<[string, (b: Buffer, i: number) => void]> = [
    ['first 16 bytes shared, the rest random', (b) => randomBytes(16).copy(b, 16)],
    ['last 16 bytes shared, the rest random', (b) => randomBytes(16).copy(b, 0)],
  ];
  for (let word = 0; word < 8; word++) {
    families.push([`only the low bits of word ${word}`, (b, i) => b.writeUInt16LE(i, word * 4)]);
    families.push([`only the high bits of word ${word}`, (b, i) => b.writeUInt16LE(i << 4, word * 4 + 2)]); // bits 20-31
  }
  for (const [name, vary] of families) {
    const t = new IdTable();
    const ids = Array.from({ length: n }, (_, i) => {
      const b = Buffer.from(base);
      vary(b, i);
      return b;
    });
    for (const b of ids) t.insert(b);
    assert.equal(t.size, n, name);
    for (const [i, b] of ids.entries()) assert.equal(t.find(b), i, name);
    assert.ok(t.probes < 4 * 2 * n, `${name}: ${t.probes} probes for ${n} inserts and ${n} finds`);
  }
});

test('BlobTable: grows past its first capacity keeping every id and location; the first location wins', () => {
  const t = new BlobTable(16);
  const n = 20_000; // grows 1024 -> 32768
  for (let i = 0; i < n; i++)
    t.add(hex(i), {
      pack: i % 7,
      kind: i % 2 ? KIND_TREE : KIND_DATA,
      flags: i % 3 === 0 ? 1 : 0,
      offset: i * 1000 + 2 ** 33, // beyond 32 bits: offsets are kept as doubles
      stored: i,
      raw: 0xffffffff - i,
    });
  assert.equal(t.size, n);
  const again = t.add(hex(123), { pack: 99, kind: KIND_DATA, flags: 0, offset: 1, stored: 1, raw: 1 });
  assert.deepEqual(again, { index: 123, added: false });
  for (let i = 0; i < n; i += 997) {
    const at = t.find(hex(i));
    assert.equal(at, i);
    assert.deepEqual(t.location(at), {
      pack: i % 7,
      kind: i % 2 ? KIND_TREE : KIND_DATA,
      flags: i % 3 === 0 ? 1 : 0,
      offset: i * 1000 + 2 ** 33,
      stored: i,
      raw: 0xffffffff - i,
    });
  }
  assert.equal(t.find(hex(n)), -1);
});

test('BlobTable.reserve: room made at once (a larger table, ids rehashed), every id and location kept', () => {
  const t = new BlobTable(16);
  const loc = (i: number) => ({ pack: i % 5, kind: KIND_DATA, flags: 0, offset: i, stored: i, raw: i });
  for (let i = 0; i < 1500; i++) t.add(hex(i), loc(i)); // grown to 2048 on the way
  t.reserve(40_000); // 65536 at once
  t.reserve(10); // never smaller
  for (let i = 1500; i < 40_000; i++) t.add(hex(i), loc(i));
  assert.equal(t.size, 40_000);
  for (let i = 0; i < 40_000; i += 331) assert.deepEqual(t.location(t.find(hex(i))), loc(i));
  assert.equal(t.find(hex(40_000)), -1);
});

test('index file: the JSON is the format of docs/format.md, and decodes back to the same records', () => {
  const records = [
    {
      id: hex(1000),
      salt: 'ab'.repeat(16),
      entries: [
        { id: hex(1), kind: KIND_DATA, flags: 0, offset: 0, stored: 10, raw: 20 },
        { id: hex(2), kind: KIND_TREE, flags: 1, offset: 10, stored: 64, raw: 64 },
      ],
    },
    { id: hex(1001), entries: [{ id: hex(3), kind: KIND_DATA, flags: 0, offset: 0, stored: 5, raw: 9 }] },
  ];
  const json = encodeIndex(records);
  // the same bytes as JSON.stringify of the documented shape
  assert.equal(
    json.toString(),
    JSON.stringify({
      index_version: 1,
      packs: records.map((p) => ({
        id: p.id,
        ...(p.salt ? { salt: p.salt } : {}),
        blobs: p.entries.map((e) => [e.id, e.kind, e.flags, e.offset, e.stored, e.raw]),
      })),
    }),
  );
  assert.deepEqual(decodeIndex(json, 'index/x'), records);
  const index = new MasterIndex();
  loadIndexInto(index, json, 'index/x');
  assert.equal(index.blobCount, 3);
  assert.deepEqual(index.get(hex(2)), {
    pack: hex(1000),
    kind: KIND_TREE,
    flags: 1,
    offset: 10,
    stored: 64,
    raw: 64,
  });
  assert.deepEqual(index.packs.get(hex(1000)), { salt: 'ab'.repeat(16), blobs: 2, bytes: 74 });
  assert.deepEqual(index.packs.get(hex(1001)), { blobs: 1, bytes: 5 });
  assert.deepEqual(
    [...index.entries()].map(([id, l]) => [id, l.pack]),
    [
      [hex(1), hex(1000)],
      [hex(2), hex(1000)],
      [hex(3), hex(1001)],
    ],
  );
  // damage is still refused, field by field
  const bad = Buffer.from(json.toString().replace('"blobs":[["', '"blobs":[["zz'));
  assert.throws(() => loadIndexInto(new MasterIndex(), bad, 'index/x'), BundleDamagedError);
});

test('a writer session: its index file, read by a fresh handle, places every blob where it was stored', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend);
  const w = repo.writer();
  const blobs = Array.from({ length: 3000 }, (_, i) => randomBytes(100 + (i % 50)));
  for (const b of blobs) await w.add(KIND_DATA, createHash('sha256').update(b).digest('hex'), b);
  // a duplicate inside the session is known, not stored twice
  assert.equal(
    await w.add(KIND_DATA, createHash('sha256').update(blobs[7]!).digest('hex'), blobs[7]!),
    false,
  );
  const stats = await w.finish();
  assert.equal(stats.blobsNew, 3000);
  assert.equal(stats.blobsKnown, 1);
  assert.equal(repo.index.blobCount, 3000);

  const fresh = await Repository.open(backend);
  await fresh.loadIndex();
  assert.equal(fresh.index.blobCount, 3000);
  for (let i = 0; i < blobs.length; i += 211) {
    const id = createHash('sha256').update(blobs[i]!).digest('hex');
    assert.deepEqual(fresh.index.get(id), repo.index.get(id));
    assert.ok((await fresh.loadBlob(id)).equals(blobs[i]!));
  }
  // a second session dedups against the loaded index
  const w2 = fresh.writer();
  assert.equal(
    await w2.add(KIND_DATA, createHash('sha256').update(blobs[5]!).digest('hex'), blobs[5]!),
    false,
  );
  assert.equal((await w2.finish()).packs.length, 0);
});

test('index file: our layout is parsed pack by pack, any other spelling whole, to the same records; damage either way is refused', () => {
  const records = Array.from({ length: 5 }, (_, p) => ({
    id: hex(2000 + p),
    ...(p % 2 ? { salt: 'cd'.repeat(16) } : {}),
    entries: Array.from({ length: 3 }, (_, i) => ({
      id: hex(p * 10 + i),
      kind: KIND_DATA,
      flags: 0,
      offset: i * 7,
      stored: 7,
      raw: 9,
    })),
  }));
  const ours = encodeIndex(records);
  const spaced = Buffer.from(JSON.stringify(JSON.parse(ours.toString()), null, 2));
  const reordered = Buffer.from(
    JSON.stringify({ packs: JSON.parse(ours.toString()).packs, index_version: 1 }),
  );
  for (const json of [ours, spaced, reordered]) assert.deepEqual(decodeIndex(json, 'index/x'), records);
  assert.deepEqual(decodeIndex(Buffer.from('{"index_version":1,"packs":[]}'), 'index/x'), []);
  // a pack member that is not JSON, a trailing comma, a truncated file, an unknown member, a non-object
  const text = ours.toString();
  for (const damaged of [
    text.replace('"blobs":[["', '"blobs":[[x"'),
    text.replace(/\]\}$/, ',]}'),
    text.slice(0, text.length - 5),
    text.replace(`"id":"${hex(2001)}"`, `"id":"${hex(2001)}}"`),
    '{"index_version":1,"packs":[1]}',
    '{"index_version":1,"packs":[{"id":"{[\\"}"}]}',
  ])
    assert.throws(
      () => decodeIndex(Buffer.from(damaged), 'index/x'),
      BundleDamagedError,
      damaged.slice(0, 80),
    );
});

/** Everything an index holds, in the table's order: blobs with locations, packs with their records. */
function indexState(index: MasterIndex): unknown {
  return {
    blobs: [...index.entries()],
    packNames: [...index.packNames],
    packs: [...index.packs],
  };
}

/** What loading `json` into a fresh index gives: its state, or the error's class and message. */
function loaded(json: Buffer, load: (index: MasterIndex) => void): unknown {
  const index = new MasterIndex();
  try {
    load(index);
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message };
  }
  return indexState(index);
}

test('index file: the plain reader takes the layout this package writes, and any other file is read as JSON with the same result', () => {
  const row = (i: number, pack: number) => ({
    id: hex(i),
    kind: i % 3 === 0 ? KIND_TREE : KIND_DATA,
    flags: i % 5 === 0 ? 1 : 0,
    offset: pack * 1_000_000 + i * 97,
    stored: 97 + (i % 13),
    raw: 200 + i,
  });
  const records = [
    { id: hex(9000), salt: 'cd'.repeat(16), entries: Array.from({ length: 300 }, (_, i) => row(i, 0)) },
    { id: hex(9001), entries: [] },
    // a blob of the first pack again (its first location stays), and bounds: the largest offset a
    // row may have, lengths at their limits
    {
      id: hex(9002),
      entries: [
        row(5, 2),
        { id: hex(777), kind: KIND_DATA, flags: 0, offset: Number.MAX_SAFE_INTEGER, stored: 0, raw: 0 },
        { id: hex(778), kind: KIND_DATA, flags: 0, offset: 0, stored: MAX_STORED, raw: MAX_BLOB },
      ],
    },
  ];
  const ours = encodeIndex(records);
  // the general reader (decodeIndex's), pack by pack into an index: what loading must give
  const general = (json: Buffer) =>
    loaded(json, (index) => {
      for (const p of decodeIndex(json, 'index/x')) index.addPack(p);
    });
  const viaLoad = (json: Buffer) => loaded(json, (index) => loadIndexInto(index, json, 'index/x'));
  const plainTakes = (json: Buffer) => loadPlainIndex(new MasterIndex(), json);

  // the writer's layout (and an empty index, and one of an empty pack) is read by the plain reader
  const empty = Buffer.from('{"index_version":1,"packs":[]}');
  for (const json of [ours, empty, encodeIndex([records[1]!])]) {
    assert.equal(plainTakes(json), true);
    assert.deepEqual(viaLoad(json), general(json));
  }
  const state = viaLoad(ours) as { blobs: [string, { pack: string; offset: number }][] };
  assert.equal(state.blobs.length, 302);
  assert.equal(state.blobs.find(([id]) => id === hex(5))?.[1].pack, hex(9000));

  // other spellings of valid JSON, values the plain reader leaves to JSON, and damage: the plain reader
  // declines each, and loading gives what the general reader gives (the same index, or the same error)
  const text = ours.toString();
  const firstRow = `["${hex(0)}",2,1,0,97,200]`;
  assert.ok(text.includes(firstRow));
  const variants: Record<string, string> = {
    'spaces between members': JSON.stringify(JSON.parse(text), null, 1),
    'salt before id': text.replace(
      `{"id":"${hex(9000)}","salt":"${'cd'.repeat(16)}",`,
      `{"salt":"${'cd'.repeat(16)}","id":"${hex(9000)}",`,
    ),
    'an unknown pack member': text.replace(`{"id":"${hex(9001)}",`, `{"id":"${hex(9001)}","x":1,`),
    'an offset in exponent form': text.replace(firstRow, `["${hex(0)}",2,1,0e3,97,200]`),
    'a row with a seventh element': text.replace(firstRow, `["${hex(0)}",2,1,0,97,200,7]`),
    'a length with a fraction': text.replace(firstRow, `["${hex(0)}",2,1,0,97.0,200]`),
    'an escaped id': text.replace(firstRow, `["\\u0030${hex(0).slice(1)}",2,1,0,97,200]`),
    'an upper-case id': text.replace(firstRow, `["${hex(0).toUpperCase()}",2,1,0,97,200]`),
    'a kind of 3': text.replace(firstRow, `["${hex(0)}",3,1,0,97,200]`),
    'a flag of 2': text.replace(firstRow, `["${hex(0)}",2,2,0,97,200]`),
    'a negative offset': text.replace(firstRow, `["${hex(0)}",2,1,-1,97,200]`),
    'an offset past the safe integers': text.replace(firstRow, `["${hex(0)}",2,1,9007199254740993,97,200]`),
    'a stored length past 32 bits': text.replace(firstRow, `["${hex(0)}",2,1,0,4294967296,200]`),
    'a raw length past the largest blob': text.replace(firstRow, `["${hex(0)}",2,1,0,97,${MAX_BLOB + 1}]`),
    'a leading zero': text.replace(firstRow, `["${hex(0)}",2,1,00,97,200]`),
    'a short id': text.replace(firstRow, `["${hex(0).slice(2)}",2,1,0,97,200]`),
    'an upper-case salt': text.replace('cd'.repeat(16), 'CD'.repeat(16)),
    'a pack name that is not hex': text.replace(`"id":"${hex(9001)}"`, `"id":"${'z'.repeat(64)}"`),
    'a space after the rows': text.replace(`]]},{"id":"${hex(9001)}"`, `] ]},{"id":"${hex(9001)}"`),
    'a stray character after the rows': text.replace(`]]},{"id":"${hex(9001)}"`, `]x]},{"id":"${hex(9001)}"`),
    'a bracket pair inside the last pack': text.replace(/\]\]\}\]\}$/, ']]},{"id":"]}"}]}'),
    'a truncated file': text.slice(0, text.length - 3),
    'a trailing comma': text.replace(/\]\}$/, ',]}'),
    'bytes after the end': `${text} `,
    'a non-ASCII character': text.replace(firstRow, `["${hex(0).slice(1)}é",2,1,0,97,200]`),
    'a newer index version': text.replace('"index_version":1', '"index_version":2'),
  };
  for (const [what, variant] of Object.entries(variants)) {
    const json = Buffer.from(variant);
    assert.notEqual(variant, text, what);
    assert.equal(plainTakes(json), false, what);
    assert.deepEqual(viaLoad(json), general(json), what);
  }
  // some of them are valid and read to the same blobs as the writer's layout
  for (const what of ['spaces between members', 'salt before id', 'an unknown pack member'])
    assert.deepEqual(viaLoad(Buffer.from(variants[what]!)), viaLoad(ours), what);
  for (const what of [
    'an upper-case id',
    'a kind of 3',
    'a raw length past the largest blob',
    'a truncated file',
  ])
    assert.ok('error' in (viaLoad(Buffer.from(variants[what]!)) as object), what);
});
