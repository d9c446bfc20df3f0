// Owns the backend conformance suite: backendConformance(name, fixture, limit) registers the node:test tests
// (each with the options `limit`, e.g. a per-test timeout) that every storage backend (src/backend/) must
// pass — round trips, streaming, ranges, stat, list, remove, listNames, atomicity, ifAbsent races, name
// checks before I/O, type isolation, a second client's view. A backend joins by giving a factory of fresh
// empty stores, a way to open a second client, and an optional teardown.

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { describe, type TestContext, test } from 'node:test';
import {
  type Backend,
  type Handle,
  listNames,
  OBJECT_TYPES,
  type ObjectType,
  readAll,
} from '../../src/backend/backend.js';
import { ExitCode, SnapshotError } from '../../src/model/errors.js';

export interface BackendFixture {
  /** A client of a new, empty store. */
  make(t: TestContext): Promise<Backend>;
  /** Another client of the store behind `b`, as another process would open it. */
  reopen(b: Backend, t: TestContext): Promise<Backend>;
  /** Called after the test's clients are closed: drop what `make` created. */
  teardown?(b: Backend): Promise<void>;
}

export const hexName = (seed: string): string => createHash('sha256').update(seed).digest('hex');

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

export async function listAll(b: Backend, type: ObjectType): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const { name, size } of b.list(type)) {
    assert.ok(!out.has(name), `${type}/${name} listed twice`);
    out.set(name, size);
  }
  return out;
}

/** listNames (the backend's own, or the fallback through list) names exactly what list does. */
export async function assertListNames(b: Backend, type: ObjectType): Promise<void> {
  const listed = [...(await listAll(b, type)).keys()].sort();
  assert.deepEqual((await listNames(b, type)).sort(), listed, `listNames of ${type}`);
}

/** An assert.rejects/throws validator: a SnapshotError with this code (and exit status, when given). */
export function code(expected: string, exitCode?: number) {
  return (err: unknown): true => {
    assert.ok(err instanceof SnapshotError, `expected ${expected}, got ${String(err)}`);
    assert.equal(err.code, expected, err.message);
    if (exitCode !== undefined) assert.equal(err.exitCode, exitCode);
    return true;
  };
}

export async function* chunksOf(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

/** A promise with its resolver outside. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const MiB = 1 << 20;

/** `count` 1 MiB chunks, each the same random block stamped with its index: nothing holds them all. */
function bigSource(block: Buffer, count: number): () => AsyncGenerator<Uint8Array> {
  return async function* () {
    for (let i = 0; i < count; i++) {
      const c = Buffer.from(block);
      c.writeUInt32BE(i, 0);
      yield c;
    }
  };
}

export function backendConformance(
  name: string,
  fixture: BackendFixture,
  limit: { timeout?: number } = {},
): void {
  async function open(t: TestContext): Promise<Backend> {
    const b = await fixture.make(t);
    t.after(async () => {
      await b.close();
      await fixture.teardown?.(b);
    });
    return b;
  }

  async function second(t: TestContext, b: Backend): Promise<Backend> {
    const c = await fixture.reopen(b, t);
    t.after(() => c.close());
    return c;
  }

  const load = (b: Backend, h: Handle, range?: { offset: number; length?: number }) =>
    collect(b.load(h, range));

  describe(`backend conformance: ${name}`, () => {
    test(
      'round trips: empty, small and chunked sources, config; saved and loaded bytes are copies',
      limit,
      async (t) => {
        const b = await open(t);
        const empty = { type: 'index', name: hexName('empty') } as const;
        const emptyIter = { type: 'index', name: hexName('empty-iter') } as const;
        const small = { type: 'snapshots', name: randomUUID() } as const;
        const parts = { type: 'packs', name: hexName('parts') } as const;
        const config = { type: 'config', name: 'config' } as const;
        await b.save(empty, new Uint8Array(0));
        await b.save(emptyIter, chunksOf());
        await b.save(small, Buffer.from('hello'));
        const [p1, p2] = [randomBytes(70_000), randomBytes(3)];
        await b.save(parts, chunksOf(p1, new Uint8Array(0), p2, Buffer.from('!')));
        await b.save(config, Buffer.from('{"repository_version":1}'));
        assert.deepEqual(await load(b, empty), Buffer.alloc(0));
        assert.deepEqual(await load(b, emptyIter), Buffer.alloc(0));
        assert.equal((await load(b, small)).toString(), 'hello');
        assert.deepEqual(await load(b, parts), Buffer.concat([p1, p2, Buffer.from('!')]));
        assert.equal((await load(b, config)).toString(), '{"repository_version":1}');
        assert.deepEqual(await b.stat(empty), { name: empty.name, size: 0 });
        assert.deepEqual(await b.stat(parts), { name: parts.name, size: 70_004 });

        // A producer that reuses one buffer for every chunk, and a caller that reuses its buffer after save.
        const reused = { type: 'packs', name: hexName('reused') } as const;
        async function* refill(): AsyncGenerator<Uint8Array> {
          const buf = Buffer.alloc(65_536);
          for (const ch of 'xyz') yield buf.fill(ch);
        }
        await b.save(reused, refill());
        assert.deepEqual(
          await load(b, reused),
          Buffer.from('x'.repeat(65_536) + 'y'.repeat(65_536) + 'z'.repeat(65_536)),
        );
        const mine = randomBytes(1000);
        const kept = Buffer.from(mine);
        const copied = { type: 'keys', name: hexName('copied') } as const;
        await b.save(copied, mine);
        mine.fill(0);
        assert.deepEqual(await load(b, copied), kept);
        // Loaded chunks belong to the caller: changing them changes nothing stored.
        for await (const c of b.load(copied)) {
          assert.ok(c instanceof Uint8Array);
          c.fill(1);
        }
        assert.deepEqual(await load(b, copied), kept);
      },
    );

    test('20 MiB saved from a stream and loaded as a stream of bounded chunks', limit, async (t) => {
      const b = await open(t);
      const h = { type: 'packs', name: hexName('big') } as const;
      const block = randomBytes(MiB);
      const source = bigSource(block, 20);
      const want = createHash('sha256');
      for await (const c of source()) want.update(c);
      await b.save(h, source());
      assert.deepEqual(await b.stat(h), { name: h.name, size: 20 * MiB });
      const got = createHash('sha256');
      let total = 0;
      let chunks = 0;
      let largest = 0;
      for await (const c of b.load(h)) {
        got.update(c);
        total += c.length;
        chunks++;
        largest = Math.max(largest, c.length);
      }
      assert.equal(total, 20 * MiB);
      assert.equal(got.digest('hex'), want.digest('hex'));
      assert.ok(
        chunks >= 5 && largest <= 4 * MiB,
        `streamed in ${chunks} chunks of at most ${largest} bytes`,
      );
      // A range across chunk boundaries deep inside the object.
      const offset = 7 * MiB - 5;
      const expected = Buffer.concat([Buffer.from(block), Buffer.from(block), Buffer.from(block)]);
      for (let i = 0; i < 3; i++) expected.writeUInt32BE(6 + i, i * MiB);
      assert.deepEqual(
        await load(b, h, { offset, length: MiB + 10 }),
        expected.subarray(MiB - 5, 2 * MiB + 5),
      );
    });

    test(
      'ranged loads at the edges; a range past the end is SHORT_READ, never a short stream',
      limit,
      async (t) => {
        const b = await open(t);
        const data = randomBytes(3 * MiB + 5);
        const n = data.length;
        const h = { type: 'packs', name: hexName('ranged') } as const;
        await b.save(h, data);
        const ok: Array<[number, number | undefined]> = [
          [0, undefined],
          [0, 0],
          [0, 1],
          [0, n],
          [1, n - 1],
          [1, undefined],
          [n - 1, 1],
          [n - 1, undefined],
          [n, undefined],
          [n, 0],
          [MiB - 1, 2],
          [MiB - 3, 2 * MiB + 6],
          [2 * MiB, MiB + 5],
        ];
        for (const [offset, length] of ok) {
          const range = length === undefined ? { offset } : { offset, length };
          const expected = data.subarray(offset, length === undefined ? n : offset + length);
          assert.deepEqual(await load(b, h, range), expected, JSON.stringify(range));
        }
        for (const range of [
          { offset: n + 1 },
          { offset: n + 1, length: 0 },
          { offset: n - 1, length: 2 },
          { offset: 0, length: n + 1 },
        ])
          await assert.rejects(
            load(b, h, range),
            code('SHORT_READ', ExitCode.damaged),
            JSON.stringify(range),
          );
        const empty = { type: 'index', name: hexName('ranged-empty') } as const;
        await b.save(empty, Buffer.alloc(0));
        assert.deepEqual(await load(b, empty, { offset: 0 }), Buffer.alloc(0));
        assert.deepEqual(await load(b, empty, { offset: 0, length: 0 }), Buffer.alloc(0));
        await assert.rejects(load(b, empty, { offset: 0, length: 1 }), code('SHORT_READ'));
        await assert.rejects(load(b, empty, { offset: 1 }), code('SHORT_READ'));
        for (const range of [
          { offset: -1 },
          { offset: 0.5 },
          { offset: Number.NaN },
          { offset: Number.POSITIVE_INFINITY },
          { offset: 0, length: -1 },
          { offset: 0, length: 1.5 },
          { offset: '0' as unknown as number },
          null as unknown as { offset: number },
        ])
          await assert.rejects(load(b, h, range), code('INVALID_INPUT'), JSON.stringify(range));
      },
    );

    test(
      'stat; a missing object is OBJECT_NOT_FOUND (exit 5) for load, ranged load, stat and readAll',
      limit,
      async (t) => {
        const b = await open(t);
        const h = { type: 'snapshots', name: randomUUID() } as const;
        await b.save(h, Buffer.from('x'.repeat(123)));
        assert.deepEqual(await b.stat(h), { name: h.name, size: 123 });
        for (const missing of [
          { type: 'snapshots', name: randomUUID() },
          { type: 'packs', name: hexName('missing') },
          { type: 'config', name: 'config' },
          { type: 'listing', name: h.name },
        ] as const) {
          await assert.rejects(b.stat(missing), code('OBJECT_NOT_FOUND', ExitCode.notFound));
          await assert.rejects(load(b, missing), code('OBJECT_NOT_FOUND', ExitCode.notFound));
          await assert.rejects(load(b, missing, { offset: 10, length: 1 }), code('OBJECT_NOT_FOUND'));
          await assert.rejects(readAll(b, missing, { maxBytes: 100 }), code('OBJECT_NOT_FOUND'));
        }
        const err = await b.stat({ type: 'pins', name: h.name }).catch((e: unknown) => e);
        assert.ok(err instanceof SnapshotError);
        assert.equal(err.outcome, 'not_found');
        assert.deepEqual(err.details, { type: 'pins', name: h.name });
      },
    );

    test('list: empty store, many objects, packs across prefixes, exact sizes', limit, async (t) => {
      const b = await open(t);
      for (const type of OBJECT_TYPES) assert.equal((await listAll(b, type)).size, 0, type);
      // Saved 20 at a time: concurrent saves into one directory (and one new prefix) must not collide.
      const packs = new Map<string, number>();
      for (let i = 0; i < 200; i += 20) {
        const batch = Array.from({ length: 20 }, (_, k) => [hexName(`pack ${i + k}`), i + k] as const);
        await Promise.all(batch.map(([name, size]) => b.save({ type: 'packs', name }, randomBytes(size))));
        for (const [name, size] of batch) packs.set(name, size);
      }
      const snapshots = new Map<string, number>();
      for (let i = 0; i < 30; i++) {
        const name = randomUUID();
        await b.save({ type: 'snapshots', name }, randomBytes(i + 1));
        snapshots.set(name, i + 1);
      }
      assert.ok(new Set([...packs.keys()].map((n) => n.slice(0, 2))).size > 100);
      assert.deepEqual(await listAll(b, 'packs'), packs);
      assert.deepEqual(await listAll(b, 'snapshots'), snapshots);
      for (const type of OBJECT_TYPES)
        if (type !== 'packs' && type !== 'snapshots') assert.equal((await listAll(b, type)).size, 0, type);
      for (const type of OBJECT_TYPES) await assertListNames(b, type);
    });

    test('types are isolated: one name in several types is several objects', limit, async (t) => {
      const b = await open(t);
      const hex = hexName('shared');
      const id = randomUUID();
      const hexTypes = ['keys', 'packs', 'index', 'locks'] as const;
      const idTypes = ['snapshots', 'listing', 'pins'] as const;
      for (const type of hexTypes) await b.save({ type, name: hex }, Buffer.from(`${type} content`));
      for (const type of idTypes) await b.save({ type, name: id }, Buffer.from(`${type}!`));
      for (const type of hexTypes) {
        assert.equal((await load(b, { type, name: hex })).toString(), `${type} content`);
        assert.deepEqual(await listAll(b, type), new Map([[hex, `${type} content`.length]]));
      }
      for (const type of idTypes) assert.equal((await load(b, { type, name: id })).toString(), `${type}!`);
      await b.remove({ type: 'index', name: hex });
      await b.remove({ type: 'listing', name: id });
      for (const type of OBJECT_TYPES) await assertListNames(b, type);
      await assert.rejects(b.stat({ type: 'index', name: hex }), code('OBJECT_NOT_FOUND'));
      for (const type of ['keys', 'packs', 'locks'] as const)
        assert.equal((await load(b, { type, name: hex })).toString(), `${type} content`);
      assert.equal((await load(b, { type: 'snapshots', name: id })).toString(), 'snapshots!');
      assert.equal((await load(b, { type: 'pins', name: id })).toString(), 'pins!');
    });

    test(
      'remove: the object is gone from load, stat and list; removing a missing object is not an error',
      limit,
      async (t) => {
        const b = await open(t);
        const h = { type: 'packs', name: hexName('doomed') } as const;
        const other = { type: 'packs', name: hexName('kept') } as const;
        await b.save(h, Buffer.from('a'));
        await b.save(other, Buffer.from('b'));
        await b.remove(h);
        await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
        await assert.rejects(load(b, h), code('OBJECT_NOT_FOUND'));
        assert.deepEqual(await listAll(b, 'packs'), new Map([[other.name, 1]]));
        await b.remove(h);
        await b.remove({ type: 'locks', name: hexName('never') });
        await b.remove({ type: 'config', name: 'config' });
        // A removed name can be saved again, also with ifAbsent.
        await b.save(h, Buffer.from('again'), { ifAbsent: true });
        assert.equal((await load(b, h)).toString(), 'again');
      },
    );

    test(
      'atomicity: a source that fails half way leaves nothing, and an existing object intact',
      limit,
      async (t) => {
        const b = await open(t);
        const boom = new Error('source failed');
        async function* failing(): AsyncGenerator<Uint8Array> {
          yield randomBytes(MiB);
          yield randomBytes(1000);
          throw boom;
        }
        const fresh = { type: 'packs', name: hexName('fresh') } as const;
        await assert.rejects(b.save(fresh, failing()), (e) => e === boom);
        await assert.rejects(b.save(fresh, failing(), { ifAbsent: true }), (e) => e === boom);
        await assert.rejects(b.stat(fresh), code('OBJECT_NOT_FOUND'));
        await assert.rejects(load(b, fresh), code('OBJECT_NOT_FOUND'));
        assert.equal((await listAll(b, 'packs')).size, 0);

        const existing = { type: 'locks', name: hexName('existing') } as const;
        await b.save(existing, Buffer.from('old'));
        await assert.rejects(b.save(existing, failing()), (e) => e === boom);
        assert.equal((await load(b, existing)).toString(), 'old');
        assert.deepEqual(await listAll(b, 'locks'), new Map([[existing.name, 3]]));

        // A source that yields something other than bytes is refused the same way.
        const wrong = (async function* () {
          yield Buffer.from('ok');
          yield 'text' as unknown as Uint8Array;
        })();
        await assert.rejects(b.save(fresh, wrong), code('INVALID_INPUT'));
        await assert.rejects(b.save(fresh, 'text' as unknown as Uint8Array), code('INVALID_INPUT'));
        assert.equal((await listAll(b, 'packs')).size, 0);
      },
    );

    test('an object being saved is invisible until complete; a replacement is atomic', limit, async (t) => {
      const b = await open(t);
      const other = await second(t, b);
      const h = { type: 'listing', name: randomUUID() } as const;
      const consumed = deferred();
      const go = deferred();
      const part1 = randomBytes(300_000);
      const part2 = randomBytes(5);
      async function* paused(): AsyncGenerator<Uint8Array> {
        yield part1;
        consumed.resolve();
        await go.promise;
        yield part2;
      }
      const saving = b.save(h, paused());
      await consumed.promise;
      for (const c of [b, other]) {
        assert.equal((await listAll(c, 'listing')).size, 0);
        await assert.rejects(c.stat(h), code('OBJECT_NOT_FOUND'));
        await assert.rejects(load(c, h), code('OBJECT_NOT_FOUND'));
      }
      go.resolve();
      await saving;
      assert.deepEqual(await load(other, h), Buffer.concat([part1, part2]));

      // Replacing: while the new content streams in, readers get the old object, whole.
      const replaced = deferred();
      const finish = deferred();
      const next = randomBytes(200_000);
      async function* replacement(): AsyncGenerator<Uint8Array> {
        yield next.subarray(0, 100_000);
        replaced.resolve();
        await finish.promise;
        yield next.subarray(100_000);
      }
      const replacing = b.save(h, replacement());
      await replaced.promise;
      assert.deepEqual(await load(other, h), Buffer.concat([part1, part2]));
      assert.deepEqual(await listAll(other, 'listing'), new Map([[h.name, 300_005]]));
      finish.resolve();
      await replacing;
      assert.deepEqual(await load(other, h), next);
      assert.deepEqual(await listAll(b, 'listing'), new Map([[h.name, 200_000]]));
    });

    test('ifAbsent: an existing object is OBJECT_EXISTS (exit 6) and stays unchanged', limit, async (t) => {
      const b = await open(t);
      const h = { type: 'packs', name: hexName('once') } as const;
      await b.save(h, Buffer.from('first'), { ifAbsent: true });
      await assert.rejects(
        b.save(h, Buffer.from('second'), { ifAbsent: true }),
        code('OBJECT_EXISTS', ExitCode.refused),
      );
      await assert.rejects(
        b.save(h, chunksOf(Buffer.from('third')), { ifAbsent: true }),
        code('OBJECT_EXISTS'),
      );
      assert.equal((await load(b, h)).toString(), 'first');
      assert.deepEqual(await listAll(b, 'packs'), new Map([[h.name, 5]]));
      // Without ifAbsent, the object is replaced.
      await b.save(h, Buffer.from('replaced'));
      assert.equal((await load(b, h)).toString(), 'replaced');
      assert.deepEqual(await listAll(b, 'packs'), new Map([[h.name, 8]]));
    });

    test(
      'ifAbsent: of two concurrent saves of one name exactly one wins (one client, two clients)',
      limit,
      async (t) => {
        const a = await open(t);
        const c = await second(t, a);
        for (let round = 0; round < 6; round++) {
          const [x, y] = round % 2 === 0 ? [a, a] : [a, c];
          const h = { type: 'locks', name: hexName(`race ${round}`) } as const;
          // Both saves are under way (each has handed over its first chunk) before either may finish.
          let arrived = 0;
          const both = deferred();
          const racer = async function* (content: Buffer): AsyncGenerator<Uint8Array> {
            yield content.subarray(0, 1000);
            if (++arrived === 2) both.resolve();
            await both.promise;
            yield content.subarray(1000);
          };
          const contents = [randomBytes(50_000 + round), randomBytes(60_000 + round)];
          const results = await Promise.allSettled([
            x.save(h, racer(contents[0]!), { ifAbsent: true }),
            y.save(h, racer(contents[1]!), { ifAbsent: true }),
          ]);
          const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
          assert.equal(winners.length, 1, `round ${round}: ${results.map((r) => r.status).join(', ')}`);
          const loser = results[1 - winners[0]!] as PromiseRejectedResult;
          code('OBJECT_EXISTS')(loser.reason);
          assert.deepEqual(await load(a, h), contents[winners[0]!]);
          assert.deepEqual(await listAll(c, 'locks'), new Map([[h.name, contents[winners[0]!]!.length]]));
          await a.remove(h);
        }
      },
    );

    test('invalid names and types are INVALID_INPUT before any I/O', limit, async (t) => {
      const b = await open(t);
      const hex = hexName('valid');
      const id = randomUUID();
      const real = { type: 'packs', name: hexName('real') } as const;
      await b.save(real, Buffer.from('real'));
      const bad: Array<[unknown, unknown]> = [
        ['packs', '../x'],
        ['packs', 'a/b'],
        ['packs', `../${hex.slice(3)}`],
        ['index', `/${hex.slice(1)}`],
        ['packs', `${hex.slice(0, 2)}/${hex.slice(3)}`],
        ['packs', hex.toUpperCase()],
        ['packs', `${hex.slice(0, 63)}A`],
        ['packs', ''],
        ['packs', `${hex.slice(0, 63)}\0`],
        ['packs', `${hex}\0`],
        ['packs', id],
        ['packs', hex.slice(1)],
        ['packs', `${hex}a`],
        ['packs', `${hex}\n`],
        ['packs', ` ${hex}`],
        ['keys', `${hex.slice(0, 63)}g`],
        ['locks', 'config'],
        ['snapshots', hex],
        ['snapshots', id.toUpperCase()],
        ['snapshots', id.replaceAll('-', '')],
        ['snapshots', `{${id}}`],
        ['listing', '.'],
        ['pins', '..'],
        ['pins', `${id}/..`],
        ['config', hex],
        ['config', 'Config'],
        ['config', 'config/'],
        ['config', ''],
        ['keys', 42],
        ['keys', undefined],
        ['keys', null],
        ['keys', { toString: () => hex }],
        ['Packs', hex],
        ['data', hex],
        ['../packs', hex],
        ['packs/..', hex],
        ['', hex],
        [undefined, hex],
        ['constructor', hex],
        ['__proto__', hex],
      ];
      const invalid = code('INVALID_INPUT', ExitCode.error);
      for (const [type, name] of bad) {
        const h = { type, name } as unknown as Handle;
        const what = JSON.stringify({ type, name: typeof name === 'string' ? name : typeof name });
        await assert.rejects(b.save(h, Buffer.from('x')), invalid, what);
        await assert.rejects(b.save(h, chunksOf(Buffer.from('x')), { ifAbsent: true }), invalid, what);
        await assert.rejects(load(b, h), invalid, what);
        await assert.rejects(load(b, h, { offset: 0, length: 1 }), invalid, what);
        await assert.rejects(b.stat(h), invalid, what);
        await assert.rejects(b.remove(h), invalid, what);
        await assert.rejects(readAll(b, h, { maxBytes: 10 }), invalid, what);
      }
      for (const h of [null, undefined, 'packs/x', 42]) {
        await assert.rejects(b.save(h as unknown as Handle, Buffer.from('x')), invalid);
        await assert.rejects(b.stat(h as unknown as Handle), invalid);
      }
      for (const type of ['Packs', 'data', '../packs', '', undefined, 'constructor'])
        await assert.rejects(listAll(b, type as ObjectType), invalid, String(type));
      // Nothing was written, nothing was removed.
      assert.deepEqual(await listAll(b, 'packs'), new Map([[real.name, 4]]));
      for (const type of OBJECT_TYPES)
        if (type !== 'packs') assert.equal((await listAll(b, type)).size, 0, type);
    });

    test(
      'readAll: whole or ranged into one Buffer, OBJECT_TOO_LARGE over the cap (before I/O for a range)',
      limit,
      async (t) => {
        const b = await open(t);
        const data = randomBytes(200_000);
        const h = { type: 'index', name: hexName('read-all') } as const;
        await b.save(h, data);
        const whole = await readAll(b, h, { maxBytes: data.length });
        assert.ok(Buffer.isBuffer(whole));
        assert.deepEqual(whole, data);
        assert.deepEqual(
          await readAll(b, h, { maxBytes: 50, range: { offset: 100, length: 50 } }),
          data.subarray(100, 150),
        );
        assert.deepEqual(
          await readAll(b, h, { maxBytes: 10, range: { offset: data.length - 10 } }),
          data.subarray(-10),
        );
        await assert.rejects(
          readAll(b, h, { maxBytes: data.length - 1 }),
          code('OBJECT_TOO_LARGE', ExitCode.damaged),
        );
        await assert.rejects(
          readAll(b, h, { maxBytes: 9, range: { offset: data.length - 10 } }),
          code('OBJECT_TOO_LARGE'),
        );
        const missing = { type: 'index', name: hexName('absent') } as const;
        await assert.rejects(
          readAll(b, missing, { maxBytes: 50, range: { offset: 0, length: 51 } }),
          code('OBJECT_TOO_LARGE'),
        );
        await assert.rejects(
          readAll(b, h, { maxBytes: 100, range: { offset: data.length, length: 1 } }),
          code('SHORT_READ'),
        );
        await assert.rejects(readAll(b, h, { maxBytes: -1 }), code('INVALID_INPUT'));
      },
    );

    test(
      'a second client sees saves and removals; a load abandoned half way leaves the store usable',
      limit,
      async (t) => {
        const a = await open(t);
        const c = await second(t, a);
        const h = { type: 'packs', name: hexName('shared view') } as const;
        const data = randomBytes(3 * MiB);
        await a.save(h, data);
        assert.deepEqual(await c.stat(h), { name: h.name, size: data.length });
        assert.deepEqual(await listAll(c, 'packs'), new Map([[h.name, data.length]]));
        for await (const chunk of c.load(h)) {
          assert.ok(chunk.length > 0);
          break;
        }
        assert.deepEqual(await load(c, h), data);
        await c.remove(h);
        await assert.rejects(a.stat(h), code('OBJECT_NOT_FOUND'));
        assert.equal((await listAll(a, 'packs')).size, 0);
        assert.equal(typeof a.location, 'string');
        assert.ok(a.location.length > 0);
      },
    );
  });
}
