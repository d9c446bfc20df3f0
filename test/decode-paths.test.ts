// The two ways a bundle file is decoded give the same answer: on the main thread (zstdDecompress over
// ageDecryptPayload, what list and diff read) and on the worker thread (decompressFileOffThread, what
// verify and restore read). One set of files, valid and damaged, made with the real `zstd` and `age`
// CLIs: identical bytes and file hash when valid, the same error class, code and message when not, and
// the worker always ends by itself (exit code 0, never terminated).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  ageDecryptPayload,
  CHUNK,
  generateIdentity,
  openPayload,
  parseHeader,
  parseIdentity,
  readAgeHeader,
} from '../src/crypto/age.js';
import { type SizeLimit, zstdDecompress } from '../src/format/zstd.js';
import {
  decompressFileOffThread,
  OFF_THREAD_MIN_BYTES,
  prestartDecompressionFor,
} from '../src/format/zstd-worker.js';
import { verifyBundle } from '../src/verify/verify.js';
import { zstd, zstdWithZeros } from './helpers/bundles.js';
import { REPO, tempDir } from './helpers/env.js';
import { fromTemplate } from './helpers/template.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What one decode path made of a file. */
type Outcome =
  | { ok: true; sha256: string; bytes: number; produced: number; fileSha256?: string }
  | { ok: false; name: string; code: string; message: string };

interface Case {
  name: string;
  bytes: Buffer;
  encrypted?: boolean;
  /** The decompressed size the reader allows (default: unbounded). */
  maxBytes?: number;
  /** The plaintext for a valid file; the error code for a damaged one. */
  expect: { plain: Buffer } | { code: string; message: RegExp };
}

let dir: string;
let identity: ReturnType<typeof parseIdentity>;
let recipient: string;
const cases: Case[] = [];
const bySame = new Map<string, Case>();

/** The age CLI's encryption of `b` to the test's recipient. */
const age = (b: Buffer): Buffer => execFileSync('age', ['-r', recipient], { input: b, maxBuffer: 1 << 30 });

/** Where the STREAM payload starts in an age file (after the header and the 16-byte nonce). */
const payloadStart = (file: Buffer): number => parseHeader(file.subarray(0, 4096)).length + 16;

/** A zstd skippable frame of `total` bytes (8 of them its header). */
function skippable(total: number): Buffer {
  const b = Buffer.alloc(total);
  b.writeUInt32LE(0x184d2a50, 0);
  b.writeUInt32LE(total - 8, 4);
  return b;
}

function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ 0x5a;
  return c;
}

const add = (c: Case): void => {
  assert.ok(!bySame.has(c.name), c.name);
  bySame.set(c.name, c);
  cases.push(c);
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'nexo-decode-'));
  const id = generateIdentity();
  identity = parseIdentity(id.identity);
  recipient = id.recipient;

  // ~12 MiB that crosses both rings several times: incompressible parts (the compressed file is larger
  // than the input ring) and text (the output is larger than the output ring).
  const text = Buffer.from(
    Array.from({ length: 90_000 }, (_, i) => `memory ${i}: the agent noted ${(i * 7919) % 1000}\n`).join(''),
  );
  const plain = Buffer.concat([randomBytes(3 * MiB), text, randomBytes(2 * MiB), text.subarray(0, MiB)]);
  const z = zstd(plain);
  assert.ok(z.length > 5 * MiB && plain.length > 8 * MiB, `${z.length} ${plain.length}`);
  const parts = [
    plain.subarray(0, 4 * MiB),
    plain.subarray(4 * MiB, 4 * MiB + 17),
    plain.subarray(4 * MiB + 17),
  ];
  const multi = Buffer.concat(parts.map((p, i) => zstd(p, i + 1)));
  const empty = zstd(Buffer.alloc(0));
  const zeros = zstdWithZeros(Buffer.alloc(0), 64 * MiB);

  add({ name: 'plain', bytes: z, expect: { plain } });
  add({ name: 'multi-frame', bytes: multi, expect: { plain } });
  add({ name: 'one empty frame', bytes: empty, expect: { plain: Buffer.alloc(0) } });
  add({
    name: 'a frame, then a skippable frame',
    bytes: Buffer.concat([z, skippable(100)]),
    expect: { plain },
  });
  // 6 MiB of the file that decompress to nothing: the worker reads and hashes several reads' worth
  // without filling an output slot, and the main thread waits without a slot to take (stop 67)
  add({
    name: 'frames around a 6 MiB skippable frame',
    bytes: Buffer.concat([zstd(parts[0]!), skippable(6 * MiB), zstd(Buffer.concat(parts.slice(1)))]),
    expect: { plain },
  });
  add({ name: 'age', bytes: age(z), encrypted: true, expect: { plain } });
  add({ name: 'age, multi-frame', bytes: age(multi), encrypted: true, expect: { plain } });
  // A payload of whole STREAM chunks: the last chunk is full.
  const whole = Buffer.concat([z, skippable(CHUNK * Math.ceil((z.length + 8) / CHUNK) - z.length)]);
  assert.equal(whole.length % CHUNK, 0);
  add({ name: 'age, payload of whole chunks', bytes: age(whole), encrypted: true, expect: { plain } });

  const damaged = (code: string, message: RegExp) => ({ code, message });
  const corrupt = damaged('BUNDLE_DAMAGED', /^bundle damaged: corrupt zstd data \(/);
  const truncated = damaged(
    'BUNDLE_DAMAGED',
    /^bundle damaged: truncated zstd stream \(ends inside a frame\)$/,
  );
  const badMagic = damaged('NOT_A_BUNDLE', /^bundle damaged: not a zstd stream \(bad magic\)$/);
  const emptyFile = damaged('NOT_A_BUNDLE', /^bundle damaged: empty file$/);
  const failedAuth = damaged(
    'BUNDLE_DAMAGED',
    /^bundle damaged: age payload failed authentication \(tampered or truncated\)$/,
  );
  const bomb = damaged('UNSAFE_ENTRY', /^unsafe bundle: decompressed size exceeds the 8388608 bytes/);

  // In the text part the blocks are compressed (a flipped byte breaks the block); in the random part
  // they are stored raw (only the frame's checksum catches it).
  const textAt = z.length - 200_000;
  add({ name: 'corrupt zstd, compressed block', bytes: flip(z, textAt), expect: corrupt });
  add({ name: 'corrupt zstd, stored block', bytes: flip(z, MiB), expect: corrupt });
  add({ name: 'corrupt zstd, the frame checksum', bytes: flip(z, z.length - 2), expect: corrupt });
  add({
    name: 'garbage after a frame',
    bytes: Buffer.concat([z, Buffer.from('not zstd at all')]),
    expect: corrupt,
  });
  add({ name: 'truncated zstd', bytes: z.subarray(0, Math.floor(z.length * 0.7)), expect: truncated });
  add({ name: 'truncated zstd, 1 byte short', bytes: z.subarray(0, z.length - 1), expect: truncated });
  add({ name: 'truncated zstd, the magic only', bytes: z.subarray(0, 4), expect: truncated });
  add({
    name: 'bad magic',
    bytes: Buffer.from('hello, this is not a bundle\n'.repeat(1000)),
    expect: badMagic,
  });
  add({ name: 'shorter than the magic', bytes: z.subarray(0, 3), expect: badMagic });
  add({ name: 'a skippable frame first', bytes: Buffer.concat([skippable(16), z]), expect: badMagic });
  add({ name: 'empty file', bytes: Buffer.alloc(0), expect: emptyFile });
  add({ name: 'decompression bomb', bytes: zeros, maxBytes: 8 * MiB, expect: bomb });

  const a = age(z);
  const start = payloadStart(a);
  const chunk = CHUNK + 16;
  add({ name: 'age, empty payload', bytes: age(Buffer.alloc(0)), encrypted: true, expect: emptyFile });
  add({
    name: 'age, bad magic',
    bytes: age(Buffer.from('plain text, encrypted')),
    encrypted: true,
    expect: badMagic,
  });
  add({
    name: 'age, truncated zstd inside',
    bytes: age(z.subarray(0, 3 * MiB)),
    encrypted: true,
    expect: truncated,
  });
  add({ name: 'age, corrupt zstd inside', bytes: age(flip(z, textAt)), encrypted: true, expect: corrupt });
  add({
    name: 'age, decompression bomb',
    bytes: age(zeros),
    encrypted: true,
    maxBytes: 8 * MiB,
    expect: bomb,
  });
  add({
    name: 'age, a tampered chunk',
    bytes: flip(a, start + 3 * chunk + 100),
    encrypted: true,
    expect: failedAuth,
  });
  add({
    name: 'age, a tampered tag',
    bytes: flip(a, start + 2 * chunk - 1),
    encrypted: true,
    expect: failedAuth,
  });
  add({
    name: 'age, the last chunk tampered',
    bytes: flip(a, a.length - 20),
    encrypted: true,
    expect: failedAuth,
  });
  add({
    name: 'age, truncated inside a chunk',
    bytes: a.subarray(0, start + 40 * chunk + 1000),
    encrypted: true,
    expect: failedAuth,
  });
  add({
    name: 'age, truncated at a chunk boundary',
    bytes: a.subarray(0, start + 40 * chunk),
    encrypted: true,
    expect: failedAuth,
  });
  add({
    name: 'age, truncated to less than a tag',
    bytes: a.subarray(0, start + 40 * chunk + 10),
    encrypted: true,
    expect: damaged('BUNDLE_DAMAGED', /^bundle damaged: age payload truncated$/),
  });
  add({
    name: 'age, no payload after the nonce',
    bytes: a.subarray(0, start),
    encrypted: true,
    expect: damaged('BUNDLE_DAMAGED', /^bundle damaged: age payload truncated$/),
  });
});

after(() => rmSync(dir, { recursive: true, force: true }));

function pathOf(c: Case): string {
  const p = join(dir, `${c.name.replace(/[^a-z0-9]+/gi, '-')}.bin`);
  writeFileSync(p, c.bytes);
  return p;
}

const limitOf = (c: Case): SizeLimit => ({ maxBytes: c.maxBytes ?? Number.MAX_SAFE_INTEGER, produced: 0 });

async function decryptOf(c: Case, path: string): Promise<{ key: Buffer; offset: number } | undefined> {
  const h = await readAgeHeader(path);
  assert.equal(h !== undefined, c.encrypted === true, 'the age header is found exactly in the age files');
  return h ? openPayload(path, h, [identity]) : undefined;
}

const failure = (err: unknown): Outcome => {
  const e = err as Error & { code?: string };
  return { ok: false, name: e.constructor.name, code: String(e.code), message: e.message };
};

/** The main thread's path: a file stream → [age STREAM] → zstd. */
async function onMainThread(c: Case, path: string): Promise<Outcome> {
  const limit = limitOf(c);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const decrypt = await decryptOf(c, path);
    const file = createReadStream(path, { start: decrypt?.offset ?? 0, highWaterMark: MiB });
    const raw = decrypt ? ageDecryptPayload(file, decrypt.key) : file;
    for await (const out of zstdDecompress(raw, limit)) {
      hash.update(out);
      bytes += out.length;
    }
  } catch (err) {
    return failure(err);
  }
  return { ok: true, sha256: hash.digest('hex'), bytes, produced: limit.produced, fileSha256: sha(c.bytes) };
}

/** The worker's path; also checks that the worker ended by itself. */
async function offThread(c: Case, path: string): Promise<Outcome> {
  const limit = limitOf(c);
  const hash = createHash('sha256');
  let bytes = 0;
  const decrypt = await decryptOf(c, path);
  const off = decompressFileOffThread(path, limit, undefined, decrypt);
  let outcome: Outcome;
  try {
    for await (const out of off.chunks) {
      hash.update(out);
      bytes += out.length;
    }
    const file = off.file();
    assert.ok(file, 'the file hash is known once the chunks have ended');
    assert.equal(file.bytes, c.bytes.length);
    outcome = {
      ok: true,
      sha256: hash.digest('hex'),
      bytes,
      produced: limit.produced,
      fileSha256: file.sha256,
    };
  } catch (err) {
    outcome = failure(err);
  }
  assert.equal(await off.exited, 0, 'the worker ended by itself');
  return outcome;
}

for (const name of [
  'plain',
  'multi-frame',
  'one empty frame',
  'a frame, then a skippable frame',
  'frames around a 6 MiB skippable frame',
  'age',
  'age, multi-frame',
  'age, payload of whole chunks',
  'corrupt zstd, compressed block',
  'corrupt zstd, stored block',
  'corrupt zstd, the frame checksum',
  'garbage after a frame',
  'truncated zstd',
  'truncated zstd, 1 byte short',
  'truncated zstd, the magic only',
  'bad magic',
  'shorter than the magic',
  'a skippable frame first',
  'empty file',
  'decompression bomb',
  'age, empty payload',
  'age, bad magic',
  'age, truncated zstd inside',
  'age, corrupt zstd inside',
  'age, decompression bomb',
  'age, a tampered chunk',
  'age, a tampered tag',
  'age, the last chunk tampered',
  'age, truncated inside a chunk',
  'age, truncated at a chunk boundary',
  'age, truncated to less than a tag',
  'age, no payload after the nonce',
]) {
  test(`both decode paths agree: ${name}`, async () => {
    const c = bySame.get(name);
    assert.ok(c, `case ${name} is built`);
    const path = pathOf(c);
    const main = await onMainThread(c, path);
    const worker = await offThread(c, path);
    assert.deepEqual(worker, main, 'the worker and the main thread give the same outcome');
    if ('plain' in c.expect) {
      assert.deepEqual(main, {
        ok: true,
        sha256: sha(c.expect.plain),
        bytes: c.expect.plain.length,
        produced: c.expect.plain.length,
        fileSha256: sha(c.bytes),
      });
    } else {
      assert.equal(main.ok, false);
      if (!main.ok) {
        assert.equal(main.code, c.expect.code, main.message);
        assert.match(main.message, c.expect.message);
      }
    }
  });
}

test('every case built is checked', () => {
  assert.equal(cases.length, 32);
});

test('the worker ends by itself when the reader stops early, while it is still reading', async () => {
  // (in the second file, stopped while the worker reads what decompresses to nothing: stop 67)
  for (const name of ['plain', 'frames around a 6 MiB skippable frame']) {
    const c = bySame.get(name)!;
    const path = pathOf(c);
    for (const stopAfter of [0, 1, 5]) {
      const off = decompressFileOffThread(path, limitOf(c));
      let n = 0;
      for await (const _ of off.chunks) if (n++ >= stopAfter) break;
      assert.equal(await off.exited, 0, `${name}: stopped after ${stopAfter + 1} chunk(s)`);
      assert.equal(off.file(), undefined, 'no file hash for a file not read to its end');
    }
  }
});

test('a file that cannot be read fails both paths the same way', async () => {
  const c: Case = { name: 'missing', bytes: Buffer.alloc(0), expect: { code: 'ENOENT', message: /ENOENT/ } };
  const path = join(dir, 'no-such-file.tar.zst');
  const limit = limitOf(c);
  const main = await (async () => {
    try {
      for await (const _ of zstdDecompress(createReadStream(path), limit));
    } catch (err) {
      return failure(err);
    }
  })();
  const off = decompressFileOffThread(path, limit);
  const worker = await (async () => {
    try {
      for await (const _ of off.chunks);
    } catch (err) {
      return failure(err);
    }
  })();
  assert.equal(await off.exited, 0);
  assert.ok(main && !main.ok && worker && !worker.ok);
  assert.equal(worker.code, 'ENOENT');
  assert.equal(main.code, 'ENOENT');
});

/** A sample agent of `size` with one bundle snapshot (taken once for this file, copied per test: helpers/template.ts). */
async function bundled(t: TestContext, size: 'small' | 'large') {
  const { a, made } = await fromTemplate(
    t,
    `${size} bundle`,
    { agent: size === 'large' ? { memories: 2000, embeddings: 12_000 } : {}, snap: { store: 'bundles' } },
    (a) => a.snapshotter.snapshot({ agentId: 'ana' }),
  );
  return { a, meta: made };
}

test('verify decodes a bundle of at least OFF_THREAD_MIN_BYTES on a worker thread and a smaller one on this thread: the same checks, the file hash of either', async (t) => {
  const workers: unknown[] = [];
  const count = (w: unknown) => workers.push(w);
  process.on('worker', count);
  t.after(() => process.off('worker', count));
  // a default sample agent's bundle is ~0.4 MB; one with 12,000 embeddings of 384 floats is ~6 MB
  for (const size of ['small', 'large'] as const) {
    const { meta } = await bundled(t, size);
    const bytes = statSync(meta.bundle_path).size;
    assert.equal(bytes >= OFF_THREAD_MIN_BYTES, size === 'large', `${size}: ${bytes} bytes`);
    workers.length = 0;
    const v = await verifyBundle(meta.bundle_path);
    assert.equal(v.report.status, 'verified', JSON.stringify(v.report.problems));
    assert.equal(v.report.file_sha256, sha(readFileSync(meta.bundle_path)));
    assert.equal(workers.length, size === 'large' ? 1 : 0, `${size}: decompression workers started`);
    // damage in the middle of the file is found on either path
    const damaged = join(tempDir(t), 'damaged.tar.zst');
    const b = readFileSync(meta.bundle_path);
    b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
    writeFileSync(damaged, b);
    assert.equal((await verifyBundle(damaged)).report.status, 'damaged', size);
  }
});

test('a decompression worker started ahead of a read is the one the read takes (same checks, same file hash), at most one waits, and an unused one does not keep the process alive', async (t) => {
  const workers: unknown[] = [];
  const count = (w: unknown) => workers.push(w);
  process.on('worker', count);
  t.after(() => process.off('worker', count));
  const smallBundle = (await bundled(t, 'small')).meta.bundle_path;
  const bundle = (await bundled(t, 'large')).meta.bundle_path;
  workers.length = 0;
  prestartDecompressionFor(smallBundle); // read on this thread: nothing started
  prestartDecompressionFor(join(tempDir(t), 'missing.tar.zst')); // the read reports it
  await new Promise(setImmediate); // process emits 'worker' on the next tick
  assert.equal(workers.length, 0, 'no worker for a small or missing file');
  prestartDecompressionFor(bundle);
  prestartDecompressionFor(bundle);
  await new Promise(setImmediate);
  assert.equal(workers.length, 1, 'one worker waits');
  const v = await verifyBundle(bundle);
  assert.equal(v.report.status, 'verified', JSON.stringify(v.report.problems));
  assert.equal(v.report.file_sha256, sha(readFileSync(bundle)));
  assert.equal(workers.length, 1, 'the read took the waiting worker');
  // a damaged file read by a waiting worker: the same verdict as by a new one
  const damaged = join(tempDir(t), 'damaged.tar.zst');
  const b = readFileSync(bundle);
  b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
  writeFileSync(damaged, b);
  prestartDecompressionFor(damaged);
  assert.equal((await verifyBundle(damaged)).report.status, 'damaged');
  assert.equal(workers.length, 2);
  // a process that started one and never read ends by itself once its own work is done (here a timer),
  // with the worker still up and waiting
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      // (a CommonJS -e: an ES module one would make the worker's own eval boot one too)
      `let exited = false;
       process.on('worker', (w) => w.on('exit', () => { exited = true; }));
       import(${JSON.stringify(pathToFileURL(join(REPO, 'src', 'format', 'zstd-worker.ts')).href)}).then((m) => {
         m.prestartDecompressionFor(${JSON.stringify(bundle)});
         setTimeout(() => process.stdout.write(exited ? 'exited' : 'waiting'), 1500);
       });`,
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.signal, null, `the process did not end by itself: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'waiting', 'the worker was up, waiting for its input');
});

test('a worker started ahead with a plain file reads it at once; the read of that file takes it over (what it posted meanwhile too), the read of another file stops it', async (t) => {
  const workers: import('node:worker_threads').Worker[] = [];
  const count = (w: import('node:worker_threads').Worker) => workers.push(w);
  process.on('worker', count);
  t.after(() => process.off('worker', count));
  const { a, meta } = await bundled(t, 'large');
  const bundle = meta.bundle_path;
  const other = join(tempDir(t), 'other.tar.zst');
  writeFileSync(other, readFileSync(bundle));
  writeFileSync(`${other}.sha256`, readFileSync(`${bundle}.sha256`));
  const size = statSync(bundle).size;
  workers.length = 0;
  prestartDecompressionFor(bundle);
  // the worker reads and posts its progress before any read asks: those messages reach the read too
  await new Promise((resolveSoon) => setTimeout(resolveSoon, 1500));
  let read = 0;
  const v = await verifyBundle(bundle, {
    onProgress: (e) => {
      if (e.phase === 'verify') read = Math.max(read, e.bytes);
    },
  });
  assert.equal(v.report.status, 'verified', JSON.stringify(v.report.problems));
  assert.equal(v.report.file_sha256, sha(readFileSync(bundle)));
  assert.equal(read, size, 'the progress reached the whole file');
  assert.equal(workers.length, 1, 'the read took the worker that was reading it');
  // started for one file, the read of another: the first stops by itself, a new one reads the other
  prestartDecompressionFor(bundle);
  await new Promise(setImmediate);
  const stale = workers.at(-1)!;
  const exited = new Promise((resolveExit) => stale.once('exit', resolveExit));
  const w = await verifyBundle(other);
  assert.equal(w.report.status, 'verified', JSON.stringify(w.report.problems));
  assert.equal(w.report.file_sha256, sha(readFileSync(other)));
  assert.equal(workers.length, 3, 'a new worker for the other file');
  assert.equal(await exited, 0, 'the worker started for the first file ended');
  // started for a file that is then replaced at its path (a restore may wait a minute for its lock):
  // the read is of the file there now, by a new worker, and its hash is that file's
  const next = (await a.snapshotter.snapshot({ agentId: 'ana', label: 'another' })).bundle_path;
  const replaced = join(tempDir(t), 'replaced.tar.zst');
  writeFileSync(replaced, readFileSync(bundle));
  const before = workers.length;
  prestartDecompressionFor(replaced);
  await new Promise((resolveSoon) => setTimeout(resolveSoon, 500));
  writeFileSync(`${replaced}.new`, readFileSync(next));
  renameSync(`${replaced}.new`, replaced);
  writeFileSync(`${replaced}.sha256`, readFileSync(`${next}.sha256`));
  const r = await verifyBundle(replaced);
  assert.equal(r.report.status, 'verified', JSON.stringify(r.report.problems));
  assert.equal(r.report.file_sha256, sha(readFileSync(next)), 'the file at the path when it was read');
  assert.equal(workers.length, before + 2, 'a new worker for the replaced file');
});
