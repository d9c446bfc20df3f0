// The storage seam: the conformance suite for the local, memory and (rule-free) faulty backends; the local
// backend's layout on disk, junk and symlink handling; every fault of the fault-injecting wrapper happens
// and is caught by a caller that checks hashes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type Backend, type Handle, readAll } from '../src/backend/backend.js';
import { CachedBackend } from '../src/backend/cache.js';
import { type FaultRule, FaultyBackend } from '../src/backend/faulty.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import {
  ChecksumMismatchError,
  ERROR_TABLE,
  ObjectExistsError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  ShortReadError,
  type SnapshotError,
  UnsafeObjectError,
} from '../src/model/errors.js';
import { PackReaders } from '../src/repository/pack-readers.js';
import {
  backendConformance,
  chunksOf,
  code,
  collect,
  hexName,
  listAll,
} from './helpers/backend-conformance.js';
import { tempDir } from './helpers/env.js';

backendConformance('local', {
  make: async (t) => new LocalBackend(join(tempDir(t, 'nexo-backend-'), 'repo')),
  reopen: async (b) => new LocalBackend(b.location),
});

backendConformance('memory', {
  make: async () => new MemoryBackend(),
  reopen: async (b) => new MemoryBackend((b as MemoryBackend).store),
});

backendConformance('faulty (no rules) over memory', {
  make: async () => new FaultyBackend(new MemoryBackend()),
  reopen: async (b) =>
    new FaultyBackend(new MemoryBackend(((b as FaultyBackend).inner as MemoryBackend).store)),
});

test('the storage error classes match their rows of the error table', () => {
  const errors: SnapshotError[] = [
    new ObjectNotFoundError('packs', 'x', 'here'),
    new ObjectExistsError('packs', 'x', 'here'),
    new ShortReadError('x'),
    new ObjectTooLargeError('packs', 'x', 1),
    new UnsafeObjectError('x'),
  ];
  for (const e of errors) {
    const row = ERROR_TABLE.find((r) => r.code === e.code);
    assert.ok(row, e.code);
    assert.equal(row.exitCode, e.exitCode, e.code);
    assert.equal(row.outcome, e.outcome, e.code);
  }
});

// ---- local backend ---------------------------------------------------------------------------------

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => !lstatSync(join(dir, p)).isDirectory())
    .sort();
}

function localRepo(t: TestContext): { base: string; root: string; b: LocalBackend } {
  const base = tempDir(t, 'nexo-backend-');
  const root = join(base, 'repo');
  return { base, root, b: new LocalBackend(root) };
}

test('local: <root>/<type>/<name>, packs under a two-hex prefix, mode 0600; the layout is made on first save', async (t) => {
  const { root, b } = localRepo(t);
  assert.equal(b.location, root);
  assert.equal((await listAll(b, 'packs')).size, 0);
  await assert.rejects(b.stat({ type: 'config', name: 'config' }), code('OBJECT_NOT_FOUND'));
  await b.remove({ type: 'index', name: hexName('x') });
  assert.ok(!existsSync(root), 'reads and removes create nothing');
  const pack = hexName('a pack');
  const id = randomUUID();
  await b.save({ type: 'packs', name: pack }, Buffer.from('pack bytes'));
  await b.save({ type: 'snapshots', name: id }, Buffer.from('manifest'), { ifAbsent: true });
  await b.save({ type: 'config', name: 'config' }, Buffer.from('{}'));
  assert.deepEqual(
    filesUnder(root),
    [`config/config`, `packs/${pack.slice(0, 2)}/${pack}`, `snapshots/${id}`].sort(),
  );
  assert.equal(readFileSync(join(root, 'packs', pack.slice(0, 2), pack), 'utf8'), 'pack bytes');
  for (const f of filesUnder(root)) assert.equal(statSync(join(root, f)).mode & 0o777, 0o600, f);
  assert.equal(statSync(join(root, 'packs')).mode & 0o777, 0o700);
});

test("local: readInto fills the caller's buffer from an offset, says how much there was, refuses as load does", async (t) => {
  const { b } = localRepo(t);
  const pack = hexName('read into');
  const bytes = randomBytes(3 * 1024 * 1024 + 17); // more than one read of the file
  await b.save({ type: 'packs', name: pack }, bytes);
  const into = Buffer.alloc(bytes.length + 10, 0xaa);
  assert.equal(await b.readInto({ type: 'packs', name: pack }, 0, into), bytes.length);
  assert.ok(into.subarray(0, bytes.length).equals(bytes));
  assert.ok(into.subarray(bytes.length).equals(Buffer.alloc(10, 0xaa)), 'nothing written past the object');
  const part = Buffer.alloc(100);
  assert.equal(await b.readInto({ type: 'packs', name: pack }, 5000, part), 100);
  assert.ok(part.equals(bytes.subarray(5000, 5100)));
  assert.equal(await b.readInto({ type: 'packs', name: pack }, bytes.length, part), 0);
  await assert.rejects(
    b.readInto({ type: 'packs', name: hexName('absent') }, 0, part),
    code('OBJECT_NOT_FOUND'),
  );
  await assert.rejects(b.readInto({ type: 'packs', name: '../x' }, 0, part), code('INVALID_INPUT'));
  await assert.rejects(b.readInto({ type: 'packs', name: pack }, -1, part), code('INVALID_INPUT'));
});

test('local: openReader reads ranges of the object as it was opened, refuses as load does, and holds nothing after close', async (t) => {
  const { b } = localRepo(t);
  const pack = hexName('reader');
  const h = { type: 'packs', name: pack } as const;
  const bytes = randomBytes(3 * 1024 * 1024 + 17);
  await b.save(h, bytes);
  const r = await b.openReader(h);
  assert.equal(r.size, bytes.length);
  for (const [offset, length] of [
    [0, bytes.length],
    [5000, 100],
    [bytes.length - 1, 1],
    [bytes.length, 0],
  ] as const)
    assert.ok(
      (await r.read(offset, length)).equals(bytes.subarray(offset, offset + length)),
      `${offset}+${length}`,
    );
  // the object replaced meanwhile: the reader still reads the file it opened, as one load would
  await b.save(h, Buffer.from('replaced'));
  assert.ok((await r.read(10, 20)).equals(bytes.subarray(10, 30)));
  await assert.rejects(r.read(bytes.length - 5, 10), code('SHORT_READ'));
  await assert.rejects(r.read(-1, 10), code('INVALID_INPUT'));
  await r.close();
  await assert.rejects(r.read(0, 1), 'a closed reader reads nothing');
  await r.close(); // twice: nothing thrown
  await assert.rejects(b.openReader({ type: 'packs', name: hexName('absent') }), code('OBJECT_NOT_FOUND'));
  await assert.rejects(b.openReader({ type: 'packs', name: '../x' }), code('INVALID_INPUT'));
  await assert.rejects(b.openReader(h, 5), code('OBJECT_TOO_LARGE', 2), 'larger than objectMax');
  const small = await b.openReader(h, 8);
  assert.equal(small.size, 8);
  await small.close();
});

test("a read's packs stay open across its runs (PackReaders): 16 at most, none closed under a read, every range right", async (t) => {
  const { root, b } = localRepo(t);
  const packs = Array.from({ length: 40 }, (_, i) => ({
    name: hexName(`pack ${i}`),
    bytes: randomBytes(4096 + i),
  }));
  for (const p of packs) await b.save({ type: 'packs', name: p.name }, p.bytes);
  const openPacks = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(join(root, 'packs'));
      } catch {
        return false;
      }
    }).length;
  const readers = PackReaders.of(b)!;
  let most = 0;
  // rounds of reads at once over the packs in turn: more packs than stay open, several reads of each
  for (let round = 0; round < 3; round++)
    await Promise.all(
      packs.map(async (p, i) => {
        const at = (i * 7 + round) % 4000;
        const got = await readers.read(p.name, at, 64);
        assert.ok(got.equals(p.bytes.subarray(at, at + 64)), `${p.name} at ${at}`);
        most = Math.max(most, openPacks());
      }),
    );
  assert.ok(openPacks() <= 16, `${openPacks()} packs open after the reads`);
  assert.ok(most >= 16, `the packs were kept open (${most} at most)`);
  await assert.rejects(readers.read(hexName('absent'), 0, 1), code('OBJECT_NOT_FOUND'));
  await readers.close();
  assert.equal(openPacks(), 0, 'close closes every pack');
  assert.equal(PackReaders.of(new MemoryBackend()), undefined, 'a backend without openReader: loads');
});

test('local: temp files, junk and misplaced packs are never listed; a symlink, directory or FIFO under a valid name is refused by a list of any type, never skipped', async (t) => {
  const { base, root, b } = localRepo(t);
  const real = hexName('real');
  const id = randomUUID();
  await b.save({ type: 'packs', name: real }, Buffer.from('real'));
  await b.save({ type: 'index', name: real }, Buffer.from('index'));
  await b.save({ type: 'snapshots', name: id }, Buffer.from('snap'));
  const outside = join(base, 'outside');
  writeFileSync(outside, 'secret');
  const misplaced = hexName('misplaced');
  const wrongPrefix = misplaced.startsWith('00') ? '01' : '00';
  const dirName = hexName('a directory');
  const linkName = hexName('a link');
  mkdirSync(join(root, 'packs', wrongPrefix));
  writeFileSync(join(root, 'packs', wrongPrefix, misplaced), 'misplaced');
  writeFileSync(join(root, 'packs', real.slice(0, 2), '.tmp-0123456789abcdef'), 'half a pack');
  mkdirSync(join(root, 'packs', 'zz'));
  writeFileSync(join(root, 'packs', 'zz', `zz${real.slice(2)}`), 'bad prefix');
  writeFileSync(join(root, 'index', '.tmp-feedfacefeedface'), 'half an index');
  writeFileSync(join(root, 'index', 'README'), 'junk');
  writeFileSync(join(root, 'index', real.toUpperCase()), 'upper');
  writeFileSync(join(root, 'snapshots', `${id}.partial`), 'partial');
  assert.deepEqual(await listAll(b, 'packs'), new Map([[real, 4]]));
  assert.deepEqual(await listAll(b, 'index'), new Map([[real, 5]]));
  assert.deepEqual(await listAll(b, 'snapshots'), new Map([[id, 4]]));
  await assert.rejects(b.stat({ type: 'packs', name: misplaced }), code('OBJECT_NOT_FOUND'));
  // A symlink, a directory or a FIFO under an object's name is refused, not followed (a FIFO does not
  // block a load), and a list of its type refuses it too (stop 45): skipped, it hid an index file (its
  // packs unindexed), a listing entry or a manifest (a snapshot), a pin, a key, a lock.
  const fifo = hexName('a fifo');
  const plant: Array<[string, (p: string) => void]> = [
    ['symlink', (p) => symlinkSync(outside, p)],
    ['directory', (p) => mkdirSync(p)],
    ['non-regular file', (p) => execFileSync('mkfifo', [p])],
  ];
  for (const [kind, make] of plant) {
    const name = kind === 'symlink' ? linkName : kind === 'directory' ? dirName : fifo;
    make(join(root, 'index', name));
    await assert.rejects(b.stat({ type: 'index', name }), code('UNSAFE_OBJECT', 2));
    await assert.rejects(collect(b.load({ type: 'index', name })), code('UNSAFE_OBJECT', 2));
    await assert.rejects(
      listAll(b, 'index'),
      (err: SnapshotError) =>
        err.code === 'UNSAFE_OBJECT' && err.message.includes(`index/${name} is a ${kind} in ${root}`),
    );
    rmSync(join(root, 'index', name), { recursive: true });
  }
  assert.deepEqual(await listAll(b, 'index'), new Map([[real, 5]]));
  for (const type of ['listing', 'snapshots', 'pins', 'keys', 'locks'] as const) {
    const name = type === 'keys' || type === 'locks' ? hexName(type) : randomUUID();
    await b.save(
      { type, name: type === 'keys' || type === 'locks' ? hexName('real') : id },
      Buffer.from('x'),
    );
    symlinkSync(outside, join(root, type, name));
    await assert.rejects(listAll(b, type), code('UNSAFE_OBJECT', 2), type);
    rmSync(join(root, type, name));
    assert.equal((await listAll(b, type)).size, 1, type);
  }
});

test('local: a failed save leaves no temp file behind; a refused ifAbsent neither', async (t) => {
  const { root, b } = localRepo(t);
  const h = { type: 'packs', name: hexName('torn') } as const;
  const boom = new Error('source died');
  await assert.rejects(
    b.save(
      h,
      (async function* () {
        yield randomBytes(100_000);
        throw boom;
      })(),
    ),
    (e) => e === boom,
  );
  assert.deepEqual(filesUnder(root), []);
  const kept = { type: 'locks', name: hexName('lock') } as const;
  await b.save(kept, Buffer.from('one'));
  await assert.rejects(b.save(kept, Buffer.from('two'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  assert.deepEqual(filesUnder(root), [`locks/${kept.name}`]);
});

test("local: a killed save's temporary files are swept once older than the age; a recent one, and a symlink of such a name, stay (stop 55)", async (t) => {
  const root = join(tempDir(t), 'repo');
  const b = new LocalBackend(root);
  const pack = { type: 'packs', name: 'ab'.padEnd(64, '0') } as const;
  await b.save(pack, Buffer.from('pack'));
  await b.save({ type: 'index', name: 'cd'.padEnd(64, '0') }, Buffer.from('index'));
  const old = Date.now() / 1000 - 7 * 3600;
  const stale = [
    join(root, 'packs', 'ab', '.tmp-0123456789abcdef'),
    join(root, 'index', '.tmp-fedcba9876543210'),
  ];
  for (const f of stale) {
    writeFileSync(f, Buffer.alloc(1000));
    utimesSync(f, old, old);
  }
  const recent = join(root, 'packs', 'ab', '.tmp-00000000000000aa');
  writeFileSync(recent, 'a save under way');
  const link = join(root, 'index', '.tmp-00000000000000bb');
  symlinkSync(stale[0]!, link);
  const swept = await b.sweepLeftovers(6 * 3600 * 1000);
  assert.deepEqual(swept, { removed: 2, bytes: 2000 });
  assert.ok(stale.every((f) => !existsSync(f)));
  assert.ok(existsSync(recent) && lstatSync(link).isSymbolicLink(), 'the recent one and the symlink stay');
  assert.deepEqual(await readAll(b, pack, { maxBytes: 100 }), Buffer.from('pack'), 'objects stay');
});

test('local: a symlink planted inside the root is never followed by a save', async (t) => {
  const { base, root, b } = localRepo(t);
  const outsideDir = join(base, 'elsewhere');
  mkdirSync(outsideDir);
  mkdirSync(root);
  // A type directory that is a symlink.
  symlinkSync(outsideDir, join(root, 'snapshots'));
  const snap = { type: 'snapshots', name: randomUUID() } as const;
  await assert.rejects(b.save(snap, Buffer.from('x')), code('UNSAFE_OBJECT'));
  await assert.rejects(b.stat(snap), code('UNSAFE_OBJECT'));
  await assert.rejects(listAll(b, 'snapshots'), code('UNSAFE_OBJECT'));
  await assert.rejects(b.remove(snap), code('UNSAFE_OBJECT'));
  // A pack prefix directory that is a symlink.
  const pack = { type: 'packs', name: hexName('prefixed') } as const;
  mkdirSync(join(root, 'packs'));
  symlinkSync(outsideDir, join(root, 'packs', pack.name.slice(0, 2)));
  await assert.rejects(b.save(pack, Buffer.from('x')), code('UNSAFE_OBJECT'));
  await assert.rejects(collect(b.load(pack)), code('UNSAFE_OBJECT'));
  // …and refused by a listing too (a prune that skipped it took its packs for gone; stop 44)
  await assert.rejects(listAll(b, 'packs'), code('UNSAFE_OBJECT'));
  assert.deepEqual(readdirSync(outsideDir), []);
  // An object name that is a symlink to a file outside: replaced (the link itself), never written through.
  const target = join(base, 'target');
  writeFileSync(target, 'precious');
  const idx = { type: 'index', name: hexName('linked') } as const;
  mkdirSync(join(root, 'index'));
  symlinkSync(target, join(root, 'index', idx.name));
  await assert.rejects(b.save(idx, Buffer.from('new'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  await b.save(idx, Buffer.from('new'));
  assert.equal(readFileSync(target, 'utf8'), 'precious');
  assert.ok(lstatSync(join(root, 'index', idx.name)).isFile());
  assert.equal((await collect(b.load(idx))).toString(), 'new');
  symlinkSync(target, join(root, 'index', hexName('linked 2')));
  await b.remove({ type: 'index', name: hexName('linked 2') });
  assert.equal(readFileSync(target, 'utf8'), 'precious');
});

test('local: a directory of the root swapped for a symlink after a first use is refused by the same backend on every later operation; nothing is written, read or removed where it points', async (t) => {
  // One LocalBackend across the swap, as the daemon or a library user's LocalSnapshotter holds one: it
  // once remembered each directory it had checked, and followed the symlink from then on.
  const { base, root, b } = localRepo(t);
  const pack = { type: 'packs', name: hexName('a pack') } as const;
  const cases: Array<{ dir: string; h: Handle; other: Handle }> = [
    {
      dir: 'listing',
      h: { type: 'listing', name: randomUUID() },
      other: { type: 'listing', name: randomUUID() },
    },
    {
      dir: 'snapshots',
      h: { type: 'snapshots', name: randomUUID() },
      other: { type: 'snapshots', name: randomUUID() },
    },
    {
      dir: 'index',
      h: { type: 'index', name: hexName('an index') },
      other: { type: 'index', name: hexName('other') },
    },
    { dir: 'packs', h: pack, other: { type: 'packs', name: hexName('other pack') } },
    // the prefix directory of a pack
    {
      dir: join('packs', pack.name.slice(0, 2)),
      h: pack,
      other: { type: 'packs', name: `${pack.name.slice(0, 2)}${'e'.repeat(62)}` },
    },
  ];
  for (const { dir, h, other } of cases) {
    await b.save(h, Buffer.from('first'));
    // every operation once, so that each directory has been checked by this backend
    assert.equal((await collect(b.load(h))).toString(), 'first');
    assert.equal((await b.stat(h)).size, 5);
    assert.ok((await listAll(b, h.type)).has(h.name));
    await b.sweepLeftovers(0);
    await b.remove(other);
    // the real directory moved outside the root (with the object in it, so a removal would show),
    // a symlink to it in its place
    const outside = join(base, `${dir.replaceAll('/', '-')}-outside`);
    const tmpOld = join(root, dir, '.tmp-0123456789abcdef');
    writeFileSync(tmpOld, 'a leftover');
    utimesSync(tmpOld, 0, 0);
    rmSync(outside, { recursive: true, force: true });
    renameSync(join(root, dir), outside);
    symlinkSync(outside, join(root, dir));
    const before = filesUnder(outside);
    const unsafe = (err: unknown) =>
      code('UNSAFE_OBJECT', 2)(err) && (err as Error).message.includes(`${join(root, dir)} is a symlink`);
    await assert.rejects(b.save(other, Buffer.from('second')), unsafe, `${dir}: save`);
    await assert.rejects(
      b.save(other, Buffer.from('second'), { ifAbsent: true }),
      unsafe,
      `${dir}: save ifAbsent`,
    );
    await assert.rejects(b.save(h, Buffer.from('replaced')), unsafe, `${dir}: save over`);
    await assert.rejects(collect(b.load(h)), unsafe, `${dir}: load`);
    await assert.rejects(b.readInto(h, 0, Buffer.alloc(5)), unsafe, `${dir}: readInto`);
    await assert.rejects(b.openReader(h), unsafe, `${dir}: openReader`);
    await assert.rejects(b.stat(h), unsafe, `${dir}: stat`);
    await assert.rejects(listAll(b, h.type), unsafe, `${dir}: list`);
    await assert.rejects(b.remove(h), unsafe, `${dir}: remove`);
    // a sweep refuses a symlinked type directory, and passes a symlinked prefix by (as it always did)
    if (dir.includes('/')) assert.deepEqual(await b.sweepLeftovers(0), { removed: 0, bytes: 0 });
    else await assert.rejects(b.sweepLeftovers(0), unsafe, `${dir}: sweep`);
    assert.deepEqual(filesUnder(outside), before, `${dir}: nothing written or removed outside`);
    const moved = join(outside, dir === 'packs' ? join(pack.name.slice(0, 2), h.name) : h.name);
    assert.equal(readFileSync(moved, 'utf8'), 'first', `${dir}: the object where the link points is intact`);
    // put back: the same backend works again
    rmSync(join(root, dir));
    renameSync(outside, join(root, dir));
    assert.equal((await collect(b.load(h))).toString(), 'first', dir);
    await b.remove(h);
  }
});

test('the cache of a remote store: a type directory of it swapped for a symlink is neither written through nor emptied by a list', async (t) => {
  const base = tempDir(t, 'nexo-backend-');
  const cacheDir = join(base, 'cache');
  const inner = new MemoryBackend();
  const cached = new CachedBackend(inner, cacheDir);
  const index = async (text: string): Promise<Handle> => {
    const bytes = Buffer.from(text);
    const h = { type: 'index', name: createHash('sha256').update(bytes).digest('hex') } as const;
    await inner.save(h, bytes);
    return h;
  };
  const one = await index('one');
  assert.equal((await readAll(cached, one, { maxBytes: 100 })).toString(), 'one');
  assert.ok(existsSync(join(cacheDir, 'index', one.name)), 'kept in the cache');
  // the cache's index directory moved away, a symlink to another directory (with files of its own,
  // one of them of an index object's name the store does not have) in its place
  const outside = join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'precious'), 'precious');
  writeFileSync(join(outside, hexName('not in the store')), 'also precious');
  rmSync(join(cacheDir, 'index'), { recursive: true });
  symlinkSync(outside, join(cacheDir, 'index'));
  const before = filesUnder(outside);
  const two = await index('two');
  assert.equal((await readAll(cached, two, { maxBytes: 100 })).toString(), 'two');
  assert.deepEqual([...(await listAll(cached, 'index')).keys()].sort(), [one.name, two.name].sort());
  assert.deepEqual(filesUnder(outside), before, 'nothing written into it, nothing removed from it');
  // a real directory again: emptied of what the store no longer has, as before (only object names)
  rmSync(join(cacheDir, 'index'));
  mkdirSync(join(cacheDir, 'index'));
  writeFileSync(join(cacheDir, 'index', hexName('gone')), 'x');
  await listAll(cached, 'index');
  assert.deepEqual(readdirSync(join(cacheDir, 'index')), []);
});

test('a range with objectMax: an object larger is ObjectTooLargeError (with its size) as the load starts, nothing yielded; local and memory', async (t) => {
  const local = new LocalBackend(join(tempDir(t, 'nexo-backend-'), 'repo'));
  for (const b of [local, new MemoryBackend()] as Backend[]) {
    const h: Handle = { type: 'packs', name: hexName('big') };
    await b.save(h, Buffer.alloc(1000, 7));
    assert.equal(
      (await readAll(b, h, { maxBytes: 10, range: { offset: 5, length: 10, objectMax: 1000 } })).length,
      10,
    );
    let yielded = 0;
    await assert.rejects(
      (async () => {
        for await (const c of b.load(h, { offset: 0, length: 10, objectMax: 999 })) yielded += c.length;
      })(),
      (err: ObjectTooLargeError) =>
        err instanceof ObjectTooLargeError &&
        err.size === 1000 &&
        /is 1000 bytes, larger than 999/.test(err.message),
    );
    assert.equal(yielded, 0);
    await assert.rejects(collect(b.load(h, { offset: 0, objectMax: -1 })), code('INVALID_INPUT'));
  }
});

test('local: refused names create nothing anywhere, not even the root', async (t) => {
  const { base, root, b } = localRepo(t);
  for (const name of ['../escape', '../../escape', `../${hexName('x').slice(3)}`, '/tmp/escape', 'a/b'])
    for (const type of ['packs', 'snapshots', 'config'])
      await assert.rejects(
        b.save({ type, name } as unknown as Handle, Buffer.from('x')),
        code('INVALID_INPUT'),
      );
  assert.ok(!existsSync(root));
  assert.deepEqual(readdirSync(base), []);
});

// ---- the fault-injecting wrapper ------------------------------------------------------------------

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A caller that names packs by their hash and checks it on every load, as the repository does. */
async function storeChecked(b: Backend, data: Buffer): Promise<Handle> {
  const h = { type: 'packs', name: sha(data) } as const;
  await b.save(h, chunksOf(data.subarray(0, 1000), data.subarray(1000)));
  return h;
}

async function loadChecked(b: Backend, h: Handle): Promise<Buffer> {
  const data = await readAll(b, h, { maxBytes: 1 << 24 });
  if (sha(data) !== h.name) throw new ChecksumMismatchError(`${h.type}/${h.name} hashes to ${sha(data)}`);
  return data;
}

function faulty(...rules: FaultRule[]): { mem: MemoryBackend; f: FaultyBackend } {
  const mem = new MemoryBackend();
  return { mem, f: new FaultyBackend(mem, { seed: 7, rules }) };
}

/** The indexes of the bits in which a and b differ. */
function differingBits(a: Buffer, b: Buffer): number[] {
  assert.equal(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++)
    for (let k = 0; k < 8; k++) if (((a[i]! ^ b[i]!) >> k) & 1) out.push(i * 8 + k);
  return out;
}

test('faulty: the nth save fails with IoError (EIO) and stores nothing; once and every; types and names filter', async () => {
  const { mem, f } = faulty({ op: 'save', when: { nth: 3 }, fault: { kind: 'error' } });
  const data = [0, 1, 2, 3, 4].map(() => randomBytes(5000));
  const results = await Promise.allSettled(data.map((d) => storeChecked(f, d)));
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
  );
  const err = (results[2] as PromiseRejectedResult).reason;
  code('IO', 1)(err);
  assert.equal(err.errno, 'EIO');
  await assert.rejects(mem.stat({ type: 'packs', name: sha(data[2]!) }), code('OBJECT_NOT_FOUND'));
  assert.deepEqual(
    f.fired.map((x) => [x.op, x.kind, x.call, x.name]),
    [['save', 'error', 3, sha(data[2]!)]],
  );

  const idx = { type: 'index', name: hexName('i') } as const;
  await mem.save(idx, Buffer.from('index'));
  f.clear();
  f.inject({ op: 'load', types: ['index'], when: 'once', fault: { kind: 'error' } });
  f.inject({ op: 'stat', names: [idx.name], fault: { kind: 'error' } });
  await loadChecked(f, { type: 'packs', name: sha(data[0]!) });
  await assert.rejects(collect(f.load(idx)), code('IO'));
  assert.equal((await collect(f.load(idx))).toString(), 'index');
  for (let i = 0; i < 3; i++) await assert.rejects(f.stat(idx), code('IO'));
  assert.deepEqual(await f.stat({ type: 'packs', name: sha(data[1]!) }), { name: sha(data[1]!), size: 5000 });
  assert.equal(f.fired.filter((x) => x.op === 'stat').length, 3);
});

test('faulty: a given error, on list and remove; afterCommit reports a failure for what was done', async () => {
  const mine = new ObjectNotFoundError('packs', 'x', 'somewhere');
  const { mem, f } = faulty(
    { op: 'list', when: { nth: 2 }, fault: { kind: 'error', error: mine } },
    { op: 'remove', when: 'once', fault: { kind: 'error', afterCommit: true } },
    { op: 'save', types: ['snapshots'], fault: { kind: 'error', afterCommit: true } },
  );
  const h = await storeChecked(f, randomBytes(3000));
  assert.equal((await listAll(f, 'packs')).size, 1);
  await assert.rejects(listAll(f, 'packs'), (e) => e === mine);
  assert.equal((await listAll(f, 'packs')).size, 1);
  await assert.rejects(f.remove(h), code('IO'));
  await assert.rejects(mem.stat(h), code('OBJECT_NOT_FOUND'), 'the remove happened');
  const snap = { type: 'snapshots', name: randomUUID() } as const;
  await assert.rejects(f.save(snap, Buffer.from('manifest')), code('IO'));
  assert.equal((await collect(mem.load(snap))).toString(), 'manifest', 'the save happened');
  assert.deepEqual(
    f.fired.map((x) => [x.op, x.detail]),
    [
      ['list', undefined],
      ['remove', { after_commit: true }],
      ['save', { after_commit: true }],
    ],
  );
});

test('faulty: a short read ends the stream early without an error; the hash check catches it', async () => {
  const { f } = faulty({ op: 'load', when: 'once', fault: { kind: 'short-read' } });
  const data = randomBytes(300_000);
  const h = await storeChecked(f, data);
  const raw = await collect(f.load(h));
  assert.deepEqual(raw, data.subarray(0, 150_000));
  assert.deepEqual(await loadChecked(f, h), data, 'only once');
  f.inject({ op: 'load', fault: { kind: 'short-read', keep: 65_537 } });
  await assert.rejects(loadChecked(f, h), ChecksumMismatchError);
  assert.deepEqual(await collect(f.load(h, { offset: 10, length: 100_000 })), data.subarray(10, 10 + 65_537));
  // A short read asked for fewer bytes than there are changes nothing, and is not recorded.
  assert.deepEqual(await collect(f.load(h, { offset: 0, length: 100 })), data.subarray(0, 100));
  assert.deepEqual(
    f.fired.map((x) => x.detail),
    [{ kept: 150_000 }, { kept: 65_537 }, { kept: 65_537 }],
  );
});

test('faulty: a bit flip changes exactly the given bit, or a seeded random one; the hash check catches it', async () => {
  const data = randomBytes(200_000);
  const { f } = faulty({ op: 'load', when: 'once', fault: { kind: 'bit-flip', bit: 8 * 70_000 + 3 } });
  const h = await storeChecked(f, data);
  const flipped = await collect(f.load(h));
  assert.deepEqual(differingBits(data, flipped), [8 * 70_000 + 3]);
  assert.deepEqual(await loadChecked(f, h), data);
  f.inject({ op: 'load', fault: { kind: 'bit-flip', bit: 5 } });
  await assert.rejects(loadChecked(f, h), ChecksumMismatchError);
  // Counted from the start of the range.
  assert.deepEqual(
    differingBits(data.subarray(1000, 2000), await collect(f.load(h, { offset: 1000, length: 1000 }))),
    [5],
  );

  const randomFlips = async (seed: number) => {
    const mem = new MemoryBackend();
    const g = new FaultyBackend(mem, { seed, rules: [{ op: 'load', fault: { kind: 'bit-flip' } }] });
    await mem.save(h, data);
    const bits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const diff = differingBits(data, await collect(g.load(h)));
      assert.equal(diff.length, 1);
      bits.push(diff[0]!);
      assert.deepEqual(g.fired[i]!.detail, { bit: diff[0] });
    }
    await assert.rejects(loadChecked(g, h), ChecksumMismatchError);
    return bits;
  };
  const [a, again, other] = [await randomFlips(1), await randomFlips(1), await randomFlips(2)];
  assert.deepEqual(a, again, 'the same seed flips the same bits');
  assert.notDeepEqual(a, other);
  assert.equal(new Set(a).size, 3);
});

test('faulty: a truncated save reports success and stores a prefix; the hash check catches it', async () => {
  const { mem, f } = faulty({ op: 'save', when: { nth: 1 }, fault: { kind: 'truncate' } });
  const data = randomBytes(10_001);
  const h = await storeChecked(f, data);
  assert.deepEqual(await mem.stat(h), { name: h.name, size: 5000 });
  assert.deepEqual(await collect(mem.load(h)), data.subarray(0, 5000));
  await assert.rejects(loadChecked(f, h), ChecksumMismatchError);
  f.inject({ op: 'save', fault: { kind: 'truncate', keep: 1500 } });
  const other = await storeChecked(f, randomBytes(4000));
  assert.equal((await mem.stat(other)).size, 1500);
  await assert.rejects(loadChecked(f, other), ChecksumMismatchError);
  assert.deepEqual(
    f.fired.map((x) => x.detail),
    [
      { kept: 5000, of: 10_001 },
      { kept: 1500, of: 4000 },
    ],
  );
});

test('faulty: errors after some bytes, mid-load and mid-save (the save leaves nothing)', async () => {
  const { mem, f } = faulty({ op: 'load', when: 'once', fault: { kind: 'error', afterBytes: 70_000 } });
  const data = randomBytes(200_000);
  const h = await storeChecked(f, data);
  const got: Uint8Array[] = [];
  await assert.rejects(
    (async () => {
      for await (const c of f.load(h)) got.push(c);
    })(),
    code('IO'),
  );
  assert.deepEqual(Buffer.concat(got), data.subarray(0, 70_000));
  f.inject({ op: 'save', when: 'once', fault: { kind: 'error', afterBytes: 1500 } });
  const lost = randomBytes(5000);
  await assert.rejects(storeChecked(f, lost), code('IO'));
  await assert.rejects(mem.stat({ type: 'packs', name: sha(lost) }), code('OBJECT_NOT_FOUND'));
  assert.deepEqual(await listAll(mem, 'packs'), new Map([[h.name, 200_000]]));
  assert.deepEqual(
    f.fired.map((x) => [x.op, x.detail]),
    [
      ['load', { after_bytes: 70_000 }],
      ['save', { after_bytes: 1500 }],
    ],
  );
});

test('faulty: latency delays the call until the time has passed (mock timers)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { f } = faulty({ op: 'stat', fault: { kind: 'latency', ms: 500 } });
  const h = await storeChecked(f, randomBytes(10));
  let done = false;
  const stat = f.stat(h).then((info) => {
    done = true;
    return info;
  });
  const settle = () => new Promise((r) => setImmediate(r));
  await settle();
  t.mock.timers.tick(499);
  await settle();
  assert.equal(done, false);
  t.mock.timers.tick(1);
  assert.deepEqual(await stat, { name: h.name, size: 10 });
  assert.deepEqual(
    f.fired.map((x) => [x.kind, x.detail]),
    [['latency', { ms: 500 }]],
  );
});

test('faulty: failures with a probability follow the seed', async () => {
  const pattern = async (seed: number) => {
    const mem = new MemoryBackend();
    const f = new FaultyBackend(mem, {
      seed,
      rules: [{ op: 'stat', when: { probability: 0.3 }, fault: { kind: 'error' } }],
    });
    const h = { type: 'index', name: hexName('p') } as const;
    await mem.save(h, Buffer.from('p'));
    const out: boolean[] = [];
    for (let i = 0; i < 60; i++)
      out.push(
        await f.stat(h).then(
          () => true,
          () => false,
        ),
      );
    return out.map((ok) => (ok ? '.' : 'x')).join('');
  };
  const a = await pattern(11);
  assert.equal(a, await pattern(11));
  assert.notEqual(a, await pattern(12));
  const failures = [...a].filter((c) => c === 'x').length;
  assert.ok(failures > 5 && failures < 40, a);
});

test('faulty: rules that cannot apply are refused', () => {
  const f = new FaultyBackend(new MemoryBackend());
  const bad: unknown[] = [
    { op: 'stat', fault: { kind: 'truncate' } },
    { op: 'save', fault: { kind: 'bit-flip' } },
    { op: 'list', fault: { kind: 'short-read' } },
    { op: 'stat', fault: { kind: 'error', afterBytes: 1 } },
    { op: 'load', fault: { kind: 'error', afterCommit: true } },
    { op: 'save', fault: { kind: 'error', afterBytes: 1, afterCommit: true } },
    { op: 'load', when: { nth: 0 }, fault: { kind: 'error' } },
    { op: 'load', when: { probability: 2 }, fault: { kind: 'error' } },
    { op: 'load', types: ['data'], fault: { kind: 'error' } },
    { op: 'load', fault: { kind: 'latency', ms: -1 } },
    { op: 'copy', fault: { kind: 'error' } },
  ];
  for (const rule of bad)
    assert.throws(() => f.inject(rule as FaultRule), code('INVALID_INPUT'), JSON.stringify(rule));
});
