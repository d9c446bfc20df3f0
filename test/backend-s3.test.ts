// The S3-compatible backend against a real S3-compatible server (s3rver in a process of its own, started
// once for the file): the backend conformance suite, then a fault-injecting HTTP proxy between client and
// server (connection resets, 500 and 503 SlowDown, stalled and slow answers, truncated bodies), the
// classification of a missing bucket and refused credentials, multipart uploads, their abort and a killed
// writer, list paging, ifAbsent with and without conditional writes, the SDK's environment, a store out
// of room (STORE_FULL); and, with NEXO_TEST_S3_BUCKET, the conformance suite against an operator's bucket.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { after, before, type TestContext, test } from 'node:test';
import { inspect } from 'node:util';
import { type Backend, OBJECT_TYPES, readAll } from '../src/backend/backend.js';
import type { BackendObserver, S3BackendOptions } from '../src/backend/remote.js';
import { openS3Backend, S3Backend } from '../src/backend/s3.js';
import { ExitCode, type SnapshotError, type StoreUnavailableError } from '../src/model/errors.js';
import { backendConformance, code, collect, hexName, listAll } from './helpers/backend-conformance.js';
import { REPO, tempDir } from './helpers/env.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { type S3Server, startS3ServerProcess } from './helpers/s3-server.js';

const BUCKET = 'nexo-test';
let server: S3Server;

let proxy: FaultProxy;

before(async () => {
  server = await startS3ServerProcess([BUCKET]);
  proxy = await startFaultProxy(server.endpoint);
});
after(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** The prefix each conformance store lives under (a fresh one per test). */
const prefixOf = new WeakMap<Backend, string>();

backendConformance('s3 (s3rver)', {
  make: async () => {
    const prefix = `conformance/${randomUUID()}`;
    const b = await openS3Backend(server.options(BUCKET, prefix));
    prefixOf.set(b, prefix);
    return b;
  },
  reopen: async (b) => openS3Backend(server.options(BUCKET, prefixOf.get(b)!)),
});

// ---- faults between client and server ------------------------------------------------------------------

const MiB = 1 << 20;
const SECRET = 'wJalrXUtnFEMI-the-secret-never-shown';

/** Byte-identical (compared by hash: a failing deepEqual of megabytes would print them all). */
function same(got: Uint8Array, want: Uint8Array): void {
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  assert.equal(got.length, want.length, 'length');
  assert.equal(sha(got), sha(want), 'content');
}

interface Observed {
  requests: Array<{ op: string; outcome: string; bytes: number }>;
  retries: Array<{ op: string; attempt: number; reason: string }>;
  observer: BackendObserver;
}

function observed(): Observed {
  const o: Observed = {
    requests: [],
    retries: [],
    observer: {
      request: (op, outcome, bytes) => o.requests.push({ op, outcome, bytes }),
      retry: (op, attempt, _delay, reason) => o.retries.push({ op, attempt, reason }),
    },
  };
  return o;
}

/**
 * A backend that talks to s3rver through the fault proxy, with quick retries. Its timeout is 10 s: the
 * test process itself runs the proxy and builds the faults' answers, and on a loaded machine 1.5 s of
 * silence on a socket while 16 MiB went through it was a timeout, not the fault under test (stop 64: a
 * run of the suite on Node 22 beside another suite). The stall test sets a short one of its own.
 */
async function viaProxy(
  t: TestContext,
  extra: Partial<S3BackendOptions> = {},
): Promise<{ b: Backend; prefix: string; obs: Observed }> {
  proxy.reset();
  const prefix = `faults/${randomUUID()}`;
  const obs = observed();
  const b = await openS3Backend({
    ...server.options(BUCKET, prefix, proxy.endpoint),
    retry: { attempts: 5, baseDelayMs: 5, maxDelayMs: 20 },
    timeoutMs: 10_000,
    observer: obs.observer,
    ...extra,
  });
  t.after(() => b.close());
  return { b, prefix, obs };
}

const OBJECT = /\/nexo-test\/faults\/[^?]+\/packs\//;

test('s3: resets, 500, 503 SlowDown and a stalled answer are retried; the data loaded back is identical', async (t) => {
  // (the stall ends only by the client's timeout)
  const { b, obs } = await viaProxy(t, { timeoutMs: 1500 });
  const h = { type: 'packs', name: hexName('retried') } as const;
  const data = randomBytes(9 * MiB + 77);
  for (const fault of [
    { kind: 'reset' },
    { kind: 'error', status: 503, code: 'SlowDown' },
    { kind: 'error', status: 500, code: 'InternalError' },
  ] as const)
    proxy.inject({ method: 'PUT', path: OBJECT, fault });
  await b.save(h, data);
  assert.equal(proxy.fired('reset') + proxy.fired('error'), 3);
  for (const fault of [
    { kind: 'reset' },
    { kind: 'error', status: 503, code: 'SlowDown' },
    { kind: 'stall' },
    { kind: 'error', status: 500, code: 'InternalError' },
  ] as const)
    proxy.inject({ method: 'GET', path: OBJECT, fault });
  same(await collect(b.load(h)), data);
  assert.equal(proxy.fired('stall'), 1);
  assert.deepEqual(
    await collect(b.load(h, { offset: 5 * MiB - 3, length: MiB })),
    data.subarray(5 * MiB - 3, 6 * MiB - 3),
  );
  proxy.inject({ method: 'HEAD', fault: { kind: 'error', status: 503, code: 'SlowDown' } });
  assert.deepEqual(await b.stat(h), { name: h.name, size: data.length });
  proxy.inject({ method: 'GET', path: /list-type=2/, fault: { kind: 'reset' } });
  assert.deepEqual(await listAll(b, 'packs'), new Map([[h.name, data.length]]));
  proxy.inject({ method: 'DELETE', fault: { kind: 'error', status: 500, code: 'InternalError' } });
  await b.remove(h);
  await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
  // Every retry was told, with a reason and no secret; every failed attempt counted as an error.
  assert.equal(obs.retries.length, 10);
  assert.ok(obs.retries.some((r) => r.reason.includes('SlowDown')));
  assert.ok(obs.retries.some((r) => r.reason === 'TimeoutError' || r.reason.includes('data')));
  assert.equal(obs.requests.filter((r) => r.outcome === 'error').length, 10);
  const up = obs.requests.filter((r) => r.op === 'save' && r.outcome === 'ok');
  assert.equal(
    up.reduce((n, r) => n + r.bytes, 0),
    data.length,
  );
});

test('s3: a slow answer that keeps coming is taken whole, without a retry', async (t) => {
  const { b, obs } = await viaProxy(t);
  const h = { type: 'index', name: hexName('slow') } as const;
  const data = randomBytes(200_000);
  await b.save(h, data);
  proxy.inject({ method: 'GET', path: /\/index\//, fault: { kind: 'slow', piece: 16_384, delayMs: 20 } });
  same(await collect(b.load(h)), data);
  assert.equal(proxy.fired('slow'), 1);
  assert.equal(obs.retries.length, 0);
});

test('s3: a truncated body is never accepted: retried, and a lasting one is SHORT_READ or STORE_UNREACHABLE', async (t) => {
  const { b, obs } = await viaProxy(t);
  const h = { type: 'packs', name: hexName('truncated') } as const;
  const data = randomBytes(10 * MiB + 5);
  await b.save(h, data);
  // Cut once each way: the load retries and gets every byte.
  proxy.inject({ method: 'GET', path: OBJECT, fault: { kind: 'truncate', keep: 1000 } });
  proxy.inject({ method: 'GET', path: OBJECT, fault: { kind: 'lie', keep: 1000 } });
  same(await collect(b.load(h)), data);
  assert.equal(proxy.fired('truncate') + proxy.fired('lie'), 2);
  assert.equal(obs.retries.length, 2);
  proxy.inject({ method: 'GET', path: OBJECT, fault: { kind: 'lie', keep: 10 } });
  same(await collect(b.load(h, { offset: 100, length: 5000 })), data.subarray(100, 5100));

  // A body that keeps ending early (its Content-Length says so) is SHORT_READ; what was yielded before
  // is exactly the object's start, nothing of the short body.
  proxy.reset();
  proxy.inject({ method: 'GET', path: OBJECT, times: 1000, fault: { kind: 'lie', keep: 3 * MiB } });
  const yielded: Uint8Array[] = [];
  await assert.rejects(
    (async () => {
      for await (const c of b.load(h)) yielded.push(c);
    })(),
    code('SHORT_READ', ExitCode.damaged),
  );
  assert.equal(Buffer.concat(yielded).length, 0);
  // A connection that keeps dropping mid-body is an unreachable store, and nothing of it is returned.
  proxy.reset();
  proxy.inject({ method: 'GET', path: OBJECT, times: 1000, fault: { kind: 'truncate', keep: 100 } });
  await assert.rejects(collect(b.load(h)), code('STORE_UNREACHABLE', ExitCode.storeUnavailable));
  // The second block keeps coming short: the first block, whole, is all that was yielded.
  proxy.reset();
  proxy.inject({
    method: 'GET',
    path: OBJECT,
    range: new RegExp(`^bytes=${4 * MiB}-`),
    times: 1000,
    fault: { kind: 'lie', keep: 1 },
  });
  yielded.length = 0;
  await assert.rejects(
    (async () => {
      for await (const c of b.load(h)) yielded.push(c);
    })(),
    code('SHORT_READ'),
  );
  same(Buffer.concat(yielded), data.subarray(0, 4 * MiB));
  proxy.reset();
  same(await collect(b.load(h)), data);
});

// ---- classification: missing bucket, credentials, permissions, unreachable ----------------------------

/** Nothing of the secret in the error's message, details, cause chain or inspected form. */
function assertNoSecret(err: unknown): void {
  const shown = [String(err), inspect(err, { depth: 10 }), JSON.stringify(err)].join('\n');
  assert.ok(!shown.includes(SECRET), 'the secret shows in the error');
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
}

test('s3: a missing bucket is STORE_MISSING, at open and on every operation', async (t) => {
  const opts = { ...server.options('no-such-bucket', 'x'), retry: { attempts: 2, baseDelayMs: 1 } };
  const err = await failure(openS3Backend(opts));
  code('STORE_MISSING', ExitCode.storeUnavailable)(err);
  assert.equal((err as StoreUnavailableError).outcome, 'store_unavailable');
  assert.deepEqual((err as StoreUnavailableError).details, {
    backend: 's3',
    location: `s3://no-such-bucket/x at ${server.endpoint}`,
  });
  // A bucket removed after open: the operations that get an answer with a body say so too.
  const b = new S3Backend(opts);
  t.after(() => b.close());
  const h = { type: 'packs', name: hexName('nowhere') } as const;
  await assert.rejects(b.save(h, Buffer.from('x')), code('STORE_MISSING'));
  await assert.rejects(listAll(b, 'packs'), code('STORE_MISSING'));
  await assert.rejects(collect(b.load(h)), code('STORE_MISSING'));
  await assert.rejects(b.remove(h), code('STORE_MISSING'));
});

test('s3: refused credentials are STORE_AUTH, a refused permission STORE_DENIED; no secret in any error', async (t) => {
  // s3rver checks the access key id (InvalidAccessKeyId), not the signature.
  const wrongKey = {
    ...server.options(BUCKET, 'auth'),
    credentials: { accessKeyId: 'NOT-A-KEY', secretAccessKey: SECRET },
    retry: { attempts: 1 },
  };
  const err = await failure(openS3Backend(wrongKey));
  code('STORE_AUTH', ExitCode.storeUnavailable)(err);
  assertNoSecret(err);
  // A wrong secret: s3rver does not verify SigV4 signatures, so the proxy answers as S3 does.
  const { b } = await viaProxy(t, {
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: SECRET, sessionToken: `${SECRET}-token` },
  });
  const h = { type: 'snapshots', name: randomUUID() } as const;
  for (const [status, s3code, expected] of [
    [403, 'SignatureDoesNotMatch', 'STORE_AUTH'],
    [400, 'ExpiredToken', 'STORE_AUTH'],
    [403, 'AccessDenied', 'STORE_DENIED'],
  ] as const) {
    proxy.inject({ method: 'PUT', fault: { kind: 'error', status, code: s3code } });
    const e = await failure(b.save(h, Buffer.from('manifest')));
    code(expected, ExitCode.storeUnavailable)(e);
    assert.match((e as Error).message, new RegExp(s3code));
    assertNoSecret(e);
    proxy.inject({ method: 'GET', path: /list-type=2/, fault: { kind: 'error', status, code: s3code } });
    await assert.rejects(listAll(b, 'snapshots'), code(expected));
  }
  assert.equal(proxy.fired('error'), 6, 'not retried');
  assert.equal((await listAll(b, 'snapshots')).size, 0);
});

test('s3: a store that does not answer is STORE_UNREACHABLE after the retries (exit 8)', async (t) => {
  // A port nothing listens on: the proxy's, once it is stopped.
  const gone = await startFaultProxy(server.endpoint);
  await gone.stop();
  const obs = observed();
  const err = await failure(
    openS3Backend({
      ...server.options(BUCKET, 'down', gone.endpoint),
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
      observer: obs.observer,
    }),
  );
  code('STORE_UNREACHABLE', ExitCode.storeUnavailable)(err);
  assert.match((err as Error).message, /3 attempts.*ECONNREFUSED/);
  assert.deepEqual(
    obs.retries.map((r) => r.attempt),
    [1, 2],
  );
  // 503 SlowDown on every attempt of a save: unreachable, and nothing visible.
  const { b } = await viaProxy(t);
  const h = { type: 'packs', name: hexName('never') } as const;
  proxy.inject({ method: 'PUT', times: 5, fault: { kind: 'error', status: 503, code: 'SlowDown' } });
  await assert.rejects(b.save(h, randomBytes(1000)), code('STORE_UNREACHABLE'));
  assert.equal(proxy.fired('error'), 5);
  await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
});

// ---- multipart uploads ------------------------------------------------------------------------------

function stamped(count: number, fail?: Error): () => AsyncGenerator<Uint8Array> {
  const block = randomBytes(MiB);
  return async function* () {
    for (let i = 0; i < count; i++) {
      if (fail && i === count - 1) throw fail;
      block.writeUInt32BE(i, 0);
      yield block; // one buffer, refilled: the backend must copy what it keeps
    }
  };
}

async function digest(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const c of chunks) h.update(c);
  return h.digest('hex');
}

test('s3: a 41 MiB object goes up in 8 MiB parts and comes back identical; the parts are not objects', async (t) => {
  const obs = observed();
  const prefix = `multipart/${randomUUID()}`;
  const b = await openS3Backend({
    ...server.options(BUCKET, prefix),
    observer: obs.observer,
  });
  t.after(() => b.close());
  const h = { type: 'packs', name: hexName('big multipart') } as const;
  const source = stamped(41);
  await b.save(h, source());
  assert.deepEqual(await b.stat(h), { name: h.name, size: 41 * MiB });
  assert.equal(await digest(b.load(h)), await digest(source()));
  // create + 6 parts (5 × 8 MiB + 1 MiB) + complete; the bytes up are the object's.
  const saves = obs.requests.filter((r) => r.op === 'save');
  assert.deepEqual(
    saves
      .map((r) => r.bytes)
      .filter((n) => n > 0)
      .sort((x, y) => y - x),
    [8, 8, 8, 8, 8, 1].map((n) => n * MiB),
  );
  assert.equal(saves.length, 8);
  const loads = obs.requests.filter((r) => r.op === 'load');
  assert.equal(loads.length, Math.ceil(41 / 4));
  assert.equal(
    loads.reduce((n, r) => n + r.bytes, 0),
    41 * MiB,
  );
  assert.deepEqual(await listAll(b, 'packs'), new Map([[h.name, 41 * MiB]]));
  assert.deepEqual(bucketKeys(prefix), [`${prefix}/packs/${h.name}`]);
});

test('s3: a store out of room (507, a bucket quota) is STORE_FULL at once, never retried', async (t) => {
  const { b, obs } = await viaProxy(t);
  for (const [status, name] of [
    [507, 'XMinioStorageFull'],
    [400, 'XMinioAdminBucketQuotaExceeded'],
  ] as const) {
    proxy.reset();
    obs.retries.length = 0;
    const h = { type: 'packs', name: hexName(`full-${name}`) } as const;
    proxy.inject({ method: 'PUT', times: 5, fault: { kind: 'error', status, code: name } });
    const err = await failure(b.save(h, randomBytes(1000)));
    code('STORE_FULL', ExitCode.storeUnavailable)(err);
    assert.match((err as Error).message, /no room/);
    assert.equal(proxy.fired('error'), 1, `${name}: one request, no retry`);
    assert.deepEqual(obs.retries, []);
  }
});

test('s3: a multipart upload whose source throws, or whose part keeps failing, is aborted and leaves nothing', async (t) => {
  const { b, prefix } = await viaProxy(t, { multipartThreshold: 8 * MiB });
  const h = { type: 'packs', name: hexName('aborted') } as const;
  const boom = new Error('the source broke');
  await assert.rejects(b.save(h, stamped(20, boom)()), (e) => e === boom);
  // (a part's request may be repeated by the client's retry on a loaded machine: parts are counted by number)
  const parts = new Set(
    proxy.seen
      .filter((r) => r.method === 'PUT' && /partNumber=/.test(r.url))
      .map((r) => /partNumber=(\d+)/.exec(r.url)![1]),
  );
  assert.deepEqual([...parts].sort(), ['1', '2'], 'two parts went up before the source broke');
  assert.ok(proxy.seen.some((r) => r.method === 'POST' && /uploads/.test(r.url)));
  assert.ok(!proxy.seen.some((r) => r.method === 'POST' && /uploadId=/.test(r.url)), 'never completed');
  assert.ok(
    proxy.seen.some((r) => r.method === 'DELETE' && /uploadId=/.test(r.url)),
    'aborted',
  );
  await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
  assert.equal((await listAll(b, 'packs')).size, 0);
  assert.deepEqual(bucketKeys(prefix), []);

  proxy.reset();
  proxy.inject({
    method: 'PUT',
    path: /partNumber=2/,
    times: 5,
    fault: { kind: 'error', status: 500, code: 'InternalError' },
  });
  await assert.rejects(b.save(h, stamped(20)()), code('STORE_UNREACHABLE'));
  assert.ok(
    proxy.seen.some((r) => r.method === 'DELETE' && /uploadId=/.test(r.url)),
    'aborted',
  );
  assert.ok(!proxy.seen.some((r) => r.method === 'POST' && /uploadId=/.test(r.url)), 'never completed');
  await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
  assert.equal((await listAll(b, 'packs')).size, 0);
  // The same name saves fine afterwards.
  proxy.reset();
  await b.save(h, stamped(17)());
  assert.equal((await b.stat(h)).size, 17 * MiB);
});

/** The object keys s3rver holds under `prefix` (its files `<key>._S3rver_object`). */
function bucketKeys(prefix: string): string[] {
  const root = join(server.dir, BUCKET);
  const out: string[] = [];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('._S3rver_object'))
        out.push(relative(root, p).slice(0, -'._S3rver_object'.length));
    }
  };
  walk(join(root, prefix));
  return out.sort();
}

// ---- ifAbsent: conditional writes, or claims where the endpoint ignores them ---------------------------

test('s3: list pages through more than 1000 objects', async (t) => {
  const prefix = `paged/${randomUUID()}`;
  const obs = observed();
  const b = await openS3Backend({ ...server.options(BUCKET, prefix), observer: obs.observer });
  t.after(() => b.close());
  const names = Array.from({ length: 1203 }, (_, i) => hexName(`paged ${i}`));
  // Seeded straight into s3rver's directory (<key>._S3rver_object and its .md5): 1203 PUTs take long.
  const dir = join(server.dir, BUCKET, prefix, 'index');
  mkdirSync(dir, { recursive: true });
  for (const [i, name] of names.entries()) {
    const body = Buffer.alloc(i % 7);
    writeFileSync(join(dir, `${name}._S3rver_object`), body);
    writeFileSync(join(dir, `${name}._S3rver_object.md5`), createHash('md5').update(body).digest('hex'));
  }
  await b.save({ type: 'index', name: names[0]! }, Buffer.alloc(0)); // and one through the backend
  obs.requests.length = 0;
  const listed = await listAll(b, 'index');
  assert.equal(listed.size, names.length);
  for (const [i, name] of names.entries()) assert.equal(listed.get(name), i % 7, name);
  assert.equal(obs.requests.filter((r) => r.op === 'list').length, 2, 'two pages');
});

test('s3: a listing that cannot be whole is STORE_UNSAFE (a truncated page without a token, a token twice), a key listed twice comes once, a listing that is not S3 is IO; a PUT acknowledged but not stored is STORE_UNSAFE (stop 51)', async (t) => {
  const { b, prefix } = await viaProxy(t, { retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
  const [k1, k2] = [hexName('listed 1'), hexName('listed 2')];
  const page = (truncated: boolean, token: string | undefined, ...names: string[]) =>
    '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Name>${BUCKET}</Name><Prefix>${prefix}/packs/</Prefix><KeyCount>${names.length}</KeyCount>` +
    `<MaxKeys>1000</MaxKeys><IsTruncated>${truncated}</IsTruncated>` +
    (token ? `<NextContinuationToken>${token}</NextContinuationToken>` : '') +
    names
      .map(
        (n) =>
          `<Contents><Key>${prefix}/packs/${n}</Key><Size>3</Size><LastModified>2026-12-06T00:00:00.000Z</LastModified></Contents>`,
      )
      .join('') +
    '</ListBucketResult>';
  const listing = (body: string) => ({
    method: 'GET',
    path: /[?&]list-type=2.*prefix=[^&]*packs/,
    fault: { kind: 'answer', status: 200, body } as const,
  });
  const unsafe = (why: RegExp) => (e: SnapshotError) => {
    assert.equal(e.code, 'STORE_UNSAFE', e.message);
    assert.equal(e.exitCode, 8);
    assert.match(e.message, why);
    return true;
  };
  // a truncated page that gives no token: the rest of the listing is out of reach
  proxy.inject(listing(page(true, undefined, k1)));
  await assert.rejects(listAll(b, 'packs'), unsafe(/truncated gave no continuation token/));
  // the same token twice: a listing that would never end
  proxy.inject({ ...listing(page(true, 'again', k1)), times: 2 });
  await assert.rejects(listAll(b, 'packs'), unsafe(/a continuation token came twice/));
  // a page repeated under a new token: each key once (retention must not count a snapshot twice)
  proxy.inject(listing(page(true, 'next', k1, k2)));
  proxy.inject(listing(page(false, undefined, k1, k2)));
  assert.deepEqual([...(await listAll(b, 'packs')).keys()].sort(), [k1, k2].sort());
  // an answer that is no S3 listing (a web page behind the endpoint) is not "no objects"
  proxy.inject(listing('<html><body>Welcome</body></html>'));
  await assert.rejects(listAll(b, 'packs'), (e: SnapshotError) => {
    assert.equal(e.code, 'IO');
    assert.match(e.message, /did not answer as an S3 store/);
    return true;
  });
  // a web page for an object (a portal, a login page): not S3, never damage (exit 2) nor data
  const page200 = {
    kind: 'answer',
    status: 200,
    body: '<html>Sign in</html>',
    contentType: 'text/html',
  } as const;
  await b.save({ type: 'packs', name: k1 }, Buffer.from('abc'));
  proxy.inject({ method: 'GET', path: new RegExp(`/packs/${k1}`), fault: page200 });
  await assert.rejects(readAll(b, { type: 'packs', name: k1 }, { maxBytes: 1 << 20 }), (e: SnapshotError) => {
    assert.equal(e.code, 'IO');
    assert.match(e.message, /did not answer as an S3 store \(an HTML page for an object\)/);
    return true;
  });
  // a PUT answered 200 that stored nothing: refused, never taken as saved
  const h = { type: 'packs' as const, name: hexName('dropped') };
  proxy.inject({ method: 'PUT', path: /\/packs\//, fault: { kind: 'answer', status: 200, body: '' } });
  await assert.rejects(
    b.save(h, Buffer.from('never stored')),
    unsafe(/acknowledged the write but does not have the object/),
  );
  await assert.rejects(b.stat(h), (e: SnapshotError) => e.code === 'OBJECT_NOT_FOUND');
  // answered 200 with an ETag that is no MD5 (as a KMS store answers) while an object of the same size
  // is already there: the HEAD's ETag is not the one answered, so not taken as saved (stop 62 review)
  const other = { type: 'packs' as const, name: hexName('there before') };
  await b.save(other, Buffer.from('AAAA'));
  proxy.inject({
    method: 'PUT',
    path: new RegExp(`/packs/${other.name}`),
    fault: { kind: 'answer', status: 200, body: '', headers: { etag: '"kms-0123456789"' } },
  });
  await assert.rejects(b.save(other, Buffer.from('BBBB')), unsafe(/holds an object of another ETag/));
  // the same save through a store that keeps it: one PUT whose ETag is the body's MD5, no HEAD after it
  proxy.reset();
  await b.save(h, Buffer.from('stored'));
  assert.deepEqual(
    proxy.seen.map((r) => r.method),
    ['PUT'],
  );
});

test('s3: ifAbsent on s3rver (no conditional writes) goes through claims and leaves none behind', async (t) => {
  const prefix = `claims/${randomUUID()}`;
  const b = await openS3Backend(server.options(BUCKET, prefix));
  t.after(() => b.close());
  const h = { type: 'locks', name: hexName('claimed') } as const;
  await b.save(h, Buffer.from('first'), { ifAbsent: true });
  await assert.rejects(b.save(h, Buffer.from('second'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  assert.equal((await collect(b.load(h))).toString(), 'first');
  // The probe found If-None-Match ignored; its object and every claim are gone.
  assert.deepEqual(bucketKeys(prefix), [`${prefix}/locks/${h.name}`]);
});

test('s3: where the endpoint honours If-None-Match, ifAbsent is one conditional write; a lost answer is no false refusal', async (t) => {
  const { b, prefix } = await viaProxy(t);
  // The proxy plays an endpoint with conditional writes: the probe's second write is refused with 412.
  proxy.inject({
    method: 'PUT',
    path: /\/\.probe\//,
    skip: 1,
    fault: { kind: 'error', status: 412, code: 'PreconditionFailed' },
  });
  const h = { type: 'packs', name: hexName('conditional') } as const;
  await b.save(h, Buffer.from('first'), { ifAbsent: true });
  const writes = proxy.seen.filter((r) => r.method === 'PUT' && r.url.includes(h.name));
  assert.deepEqual(
    writes.map((r) => r.ifNoneMatch),
    ['*'],
  );
  assert.ok(!proxy.seen.some((r) => r.url.includes('.claims')), 'no claims');
  // The endpoint refuses the write: OBJECT_EXISTS, the object unchanged.
  proxy.inject({
    method: 'PUT',
    path: new RegExp(h.name),
    fault: { kind: 'error', status: 412, code: 'PreconditionFailed' },
  });
  await assert.rejects(b.save(h, Buffer.from('second'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  assert.equal((await collect(b.load(h))).toString(), 'first');
  // The first attempt is stored but its answer lost; the retry is refused (412) because the object is
  // there — with this save's own bytes, so the save succeeded.
  const lost = { type: 'packs', name: hexName('lost answer') } as const;
  proxy.inject({ method: 'PUT', path: new RegExp(lost.name), fault: { kind: 'reset-after' } });
  proxy.inject({
    method: 'PUT',
    path: new RegExp(lost.name),
    fault: { kind: 'error', status: 412, code: 'PreconditionFailed' },
  });
  await b.save(lost, Buffer.from('mine'), { ifAbsent: true });
  assert.equal(proxy.fired('reset-after'), 1);
  assert.equal((await collect(b.load(lost))).toString(), 'mine');
  // Someone else's object under that name is still a refusal.
  const taken = { type: 'packs', name: hexName('taken') } as const;
  await b.save(taken, Buffer.from('theirs'));
  proxy.inject({ method: 'PUT', path: new RegExp(taken.name), fault: { kind: 'reset' } });
  proxy.inject({
    method: 'PUT',
    path: new RegExp(taken.name),
    fault: { kind: 'error', status: 412, code: 'PreconditionFailed' },
  });
  await assert.rejects(b.save(taken, Buffer.from('mine'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  assert.deepEqual(
    bucketKeys(prefix),
    [`${prefix}/packs/${h.name}`, `${prefix}/packs/${lost.name}`, `${prefix}/packs/${taken.name}`].sort(),
  );
});

// ---- the SDK's standard configuration, a killed writer ---------------------------------------------------

test('s3: with no endpoint or credentials in the options, AWS_ENDPOINT_URL_S3 and the credential chain are used', async (t) => {
  const keys = ['AWS_ENDPOINT_URL_S3', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION'] as const;
  const saved = keys.map((k) => [k, process.env[k]] as const);
  t.after(() => {
    for (const [k, v] of saved)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  });
  process.env.AWS_ENDPOINT_URL_S3 = server.endpoint;
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  delete process.env.AWS_REGION;
  const b = await openS3Backend({ bucket: BUCKET, prefix: 'from-env', forcePathStyle: true });
  t.after(() => b.close());
  assert.equal(b.location, `s3://${BUCKET}/from-env`);
  const h = { type: 'snapshots', name: randomUUID() } as const;
  await b.save(h, Buffer.from('via the environment'));
  assert.deepEqual(bucketKeys('from-env'), [`from-env/snapshots/${h.name}`]);
  // And the chain's refusal is STORE_AUTH.
  process.env.AWS_ACCESS_KEY_ID = 'UNKNOWN';
  await assert.rejects(
    openS3Backend({ bucket: BUCKET, prefix: 'from-env', forcePathStyle: true, retry: { attempts: 1 } }),
    code('STORE_AUTH'),
  );
});

test('s3: no credentials anywhere is STORE_AUTH saying none were found, not that the store refused them (stop 51)', async (t) => {
  const dir = tempDir(t);
  const unset = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE'] as const;
  const set = {
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
    AWS_CONFIG_FILE: join(dir, 'no-config'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const saved = [...unset, ...Object.keys(set)].map((k) => [k, process.env[k]] as const);
  t.after(() => {
    for (const [k, v] of saved)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  });
  for (const k of unset) delete process.env[k];
  Object.assign(process.env, set);
  const err = await failure(
    openS3Backend({ bucket: BUCKET, prefix: 'no-credentials', forcePathStyle: true, retry: { attempts: 1 } }),
  );
  code('STORE_AUTH', ExitCode.storeUnavailable)(err);
  assert.match((err as Error).message, /no S3 credentials were found .*\(CredentialsProviderError\)$/);
  assert.doesNotMatch((err as Error).message, /refused/);
});

test('s3: a writer killed during a multipart upload leaves an incomplete upload, never an object', async (t) => {
  const dir = tempDir(t, 'nexo-s3-kill-');
  const prefix = `killed/${randomUUID()}`;
  const name = hexName('killed');
  const script = join(dir, 'writer.mts');
  writeFileSync(
    script,
    `import { openS3Backend } from ${JSON.stringify(join(REPO, 'src', 'backend', 's3.ts'))};
let parts = 0;
const b = await openS3Backend({
  ...${JSON.stringify(server.options(BUCKET, prefix))},
  multipartThreshold: ${8 * MiB},
  observer: { request(op, outcome, bytes) { if (op === 'save' && outcome === 'ok' && bytes > 0 && ++parts === 2) console.log('two parts up'); } },
});
async function* forever() {
  for (;;) { yield Buffer.alloc(${MiB}, 7); if (parts >= 2) await new Promise(() => {}); }
}
await b.save({ type: 'packs', name: ${JSON.stringify(name)} }, forever());
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  for await (const c of child.stdout) {
    out += String(c);
    if (out.includes('two parts up')) break;
  }
  assert.match(out, /two parts up/);
  child.kill('SIGKILL');
  await once(child, 'exit');
  const b = await openS3Backend(server.options(BUCKET, prefix));
  t.after(() => b.close());
  await assert.rejects(b.stat({ type: 'packs', name }), code('OBJECT_NOT_FOUND'));
  assert.equal((await listAll(b, 'packs')).size, 0);
  assert.deepEqual(bucketKeys(prefix), []);
  // The parts are in s3rver's upload area (a lifecycle rule or abort clears them on a real store).
  const uploads = join(server.dir, BUCKET, '._S3rver_uploads');
  assert.ok(readdirSync(uploads).some((id) => readdirSync(join(uploads, id)).includes('2')));
  // Prune's sweep: a claim left by a dead writer goes once old enough (a young one stays); s3rver has no
  // ListMultipartUploads, which the report says instead of failing.
  const claim = (n: string) =>
    `${prefix}/.claims/locks/${hexName('claimed')}/${randomUUID().slice(0, -n.length)}${n}`;
  // Seeded as s3rver stores objects (<key>._S3rver_object and its .md5), as the dead writer left it.
  const file = join(server.dir, BUCKET, `${claim('dead')}._S3rver_object`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, '');
  writeFileSync(`${file}.md5`, createHash('md5').update('').digest('hex'));
  assert.equal((await b.sweepLeftovers!(60_000)).removed, 0, 'a young claim stays');
  const swept = await b.sweepLeftovers!(0);
  assert.equal(swept.removed, 1);
  assert.deepEqual(bucketKeys(prefix), []);
  assert.match(swept.notes?.join('\n') ?? '', /ListMultipartUploads/);
});

test("s3: a listing of claims naming other objects never has them deleted: not by an ifAbsent save, not by prune's sweep; a list of uploads whose markers come back ends (stop 62 review)", async (t) => {
  const { b, prefix } = await viaProxy(t);
  const victim = { type: 'packs', name: hexName('a pack the listing names as a claim') } as const;
  await b.save(victim, randomBytes(100));
  const planted = `<Contents><Key>${prefix}/packs/${victim.name}</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified><ETag>"00"</ETag><Size>100</Size><StorageClass>STANDARD</StorageClass></Contents>`;
  const plant = (body: string) => body.replace('</ListBucketResult>', `${planted}</ListBucketResult>`);
  // every listing of claims (an ifAbsent save's, the sweep's) names the pack, long dead
  proxy.inject({
    method: 'GET',
    path: /list-type=2.*prefix=[^&]*\.claims|prefix=[^&]*\.claims.*list-type=2/,
    times: 1000,
    fault: { kind: 'rewrite', rewrite: plant },
  });
  await b.save({ type: 'locks', name: hexName('a lock') }, Buffer.from('{}'), { ifAbsent: true });
  assert.ok(
    proxy.seen.some((r) => r.method === 'PUT' && r.url.includes('/.claims/locks/')),
    's3rver writes no conditional PUT: the save went through claims',
  );
  const swept = await b.sweepLeftovers!(0);
  assert.equal(swept.removed, 0, JSON.stringify(swept));
  assert.equal((await b.stat(victim)).size, 100, 'the pack is still there');
  assert.ok(
    proxy.seen.some((r) => r.fault === 'rewrite'),
    'the listings were rewritten',
  );
  assert.ok(!proxy.seen.some((r) => r.method === 'DELETE' && r.url.includes(`/packs/${victim.name}`)));
  // a list of uploads whose next markers name one another: two pages, then the sweep ends with a note
  proxy.reset();
  let page = 0;
  const uploads = () =>
    `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${BUCKET}</Bucket><IsTruncated>true</IsTruncated><NextKeyMarker>k${++page % 2}</NextKeyMarker><NextUploadIdMarker>u${page % 2}</NextUploadIdMarker></ListMultipartUploadsResult>`;
  proxy.inject({
    method: 'GET',
    path: /[?&]uploads/,
    times: 1000,
    fault: { kind: 'rewrite', status: 200, rewrite: uploads },
  });
  const looped = await b.sweepLeftovers!(0);
  assert.ok(page <= 3, `${page} pages`);
  assert.match(looped.notes?.join('\n') ?? '', /did not end/);
});

test('s3: an answer read whole (a listing) of more than 16 MiB is cut off as an IO error, the process never holding it (stop 62 review)', async (t) => {
  const { b } = await viaProxy(t, { retry: { attempts: 1 } });
  const key = `<Contents><Key>${'k'.repeat(1000)}</Key><Size>1</Size></Contents>`;
  // 20 MiB of listing (a page that never ended grew the process by ~400 MiB a second)
  const huge = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>${key.repeat(20 * 1024)}<IsTruncated>false</IsTruncated></ListBucketResult>`;
  proxy.inject({ method: 'GET', path: /list-type=2/, fault: { kind: 'answer', status: 200, body: huge } });
  await assert.rejects(
    listAll(b, 'packs'),
    (err: SnapshotError) =>
      err.code === 'IO' &&
      /answer went past 16777216 bytes, more than any answer read whole may be; cut off/.test(err.message),
  );
  assert.equal((await listAll(b, 'packs')).size, 0, 'the next listing is answered');
});

test('s3: a HEAD answered without Content-Length is an IO error, never an object of 0 bytes (stop 62 review)', async (t) => {
  const { b } = await viaProxy(t, { retry: { attempts: 1 } });
  const h = { type: 'packs', name: hexName('sized') } as const;
  await b.save(h, randomBytes(100));
  proxy.inject({
    method: 'HEAD',
    fault: { kind: 'rewrite', rewrite: (body) => body, drop: ['content-length'] },
  });
  await assert.rejects(
    b.stat(h),
    (err: SnapshotError) => err.code === 'IO' && /without the object's size/.test(err.message),
  );
  assert.equal((await b.stat(h)).size, 100);
});

test("s3: prune's sweep aborts the repository's multipart uploads older than the age, no others (an endpoint with ListMultipartUploads, played by the proxy)", async (t) => {
  const { b, prefix } = await viaProxy(t);
  const upload = (key: string, id: string, initiated: string) =>
    `<Upload><Key>${key}</Key><UploadId>${id}</UploadId><Initiated>${initiated}</Initiated></Upload>`;
  const old = '2020-01-01T00:00:00.000Z';
  const pack = `${prefix}/packs/${hexName('a killed upload')}`;
  proxy.inject({
    method: 'GET',
    path: /[?&]uploads/,
    fault: {
      kind: 'answer',
      status: 200,
      body: `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${BUCKET}</Bucket><IsTruncated>false</IsTruncated>${upload(pack, 'old-ours', old)}${upload(`${prefix}/packs/${hexName('under way')}`, 'young-ours', new Date().toISOString())}${upload(`${prefix}/other/file.bin`, 'old-foreign', old)}</ListMultipartUploadsResult>`,
    },
  });
  proxy.inject({
    method: 'DELETE',
    path: /uploadId=/,
    times: 3,
    fault: { kind: 'answer', status: 204, body: '' },
  });
  const swept = await b.sweepLeftovers!(60 * 60 * 1000);
  assert.deepEqual(swept, { removed: 1, bytes: 0 });
  const aborted = proxy.seen
    .filter((r) => r.method === 'DELETE')
    .map((r) => /uploadId=([^&]*)/.exec(r.url)?.[1]);
  assert.deepEqual(aborted, ['old-ours']);
});

test("s3: a multipart save whose Complete was done but its answer lost, retried and told NoSuchUpload, is stored (the object has the upload's ETag); a Complete the store never did is an IO error (stop 62 review)", async (t) => {
  const { b } = await viaProxy(t, { multipartThreshold: 5 * MiB });
  const h = { type: 'packs', name: hexName('completed, answer lost') } as const;
  const data = randomBytes(6 * MiB);
  // the first Complete reaches the store, its answer does not; the retry finds the upload gone (MinIO)
  proxy.inject({ method: 'POST', path: /uploadId=/, fault: { kind: 'reset-after' } });
  proxy.inject({
    method: 'POST',
    path: /uploadId=/,
    fault: { kind: 'error', status: 404, code: 'NoSuchUpload' },
  });
  await b.save(h, data);
  same(await readAll(b, h, { maxBytes: 8 * MiB }), data);
  // an upload the store lost before any Complete: no object, so the save fails, typed
  const lost = { type: 'packs', name: hexName('upload lost') } as const;
  proxy.inject({
    method: 'POST',
    path: /uploadId=/,
    fault: { kind: 'error', status: 404, code: 'NoSuchUpload' },
  });
  await assert.rejects(b.save(lost, randomBytes(6 * MiB)), (err: SnapshotError) => {
    assert.equal(err.code, 'IO');
    assert.match(err.message, /no longer knows the upload \(NoSuchUpload\)/);
    return true;
  });
  await assert.rejects(b.stat(lost), code('OBJECT_NOT_FOUND'));
});

// ---- an operator's own endpoint ------------------------------------------------------------------------

// NEXO_TEST_S3_BUCKET (with the SDK's AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID, … and
// optionally NEXO_TEST_S3_PATH_STYLE=1) runs the conformance suite once more against that bucket, under
// a fresh prefix per test that is emptied afterwards: for MinIO, Ceph RGW, R2 or AWS S3.
const operatorBucket = process.env.NEXO_TEST_S3_BUCKET;
if (operatorBucket) {
  const operatorOptions = (prefix: string): S3BackendOptions => ({
    bucket: operatorBucket,
    prefix,
    ...(process.env.NEXO_TEST_S3_PATH_STYLE === '1' ? { forcePathStyle: true } : {}),
  });
  backendConformance(`s3 (${operatorBucket}, from NEXO_TEST_S3_BUCKET)`, {
    make: async () => {
      const prefix = `nexo-conformance/${randomUUID()}`;
      const b = await openS3Backend(operatorOptions(prefix));
      prefixOf.set(b, prefix);
      return b;
    },
    reopen: async (b) => openS3Backend(operatorOptions(prefixOf.get(b)!)),
    teardown: async (b) => {
      const c = await openS3Backend(operatorOptions(prefixOf.get(b)!));
      for (const type of OBJECT_TYPES)
        for await (const o of c.list(type)) await c.remove({ type, name: o.name });
      await c.close();
    },
  });
}
