// Compressing a writer's blobs beside a worker thread (repository/compress-thread.ts): the packs are the
// same bytes as without the thread, whatever mix of blobs (tiny, incompressible, larger than a slot,
// added twice while still staged, from a buffer the caller reuses); an encrypted repository reads
// every blob back; a thread that dies is an error, not a hang or a lost blob; and a first snapshot
// that takes the thread, or has its database copies packed ahead on the copy threads
// (repository/chunk-plan.ts), stores what one without either stores.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { generateIdentity, parseIdentity } from '../src/crypto/age.js';
import { LocalSnapshotter } from '../src/index.js';
import { GEN, SLOT_INPUT, STOP } from '../src/repository/compress-ring.js';
import { KIND_DATA, TRAILER } from '../src/repository/pack.js';
import { type BlobWriter, Repository } from '../src/repository/repository.js';
import { loadSnapshot } from '../src/repository/snapshots.js';
import { COMPRESS_THREAD_MIN_BYTES } from '../src/repository/store-capture.js';
import { packAheadFits } from '../src/snapshotter/repository.js';
import { sampleAgent } from './helpers/env.js';

/** Packs of 1 MiB, two saved at once: many pack boundaries while batches come back from the thread. */
class SmallPacks extends MemoryBackend {
  readonly packing = { target: 1024 * 1024, saving: 2 };
}

const idOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Text that compresses, `n` bytes, different for every seed. */
function text(n: number, seed: number): Buffer {
  const words = ['memory', 'agent', 'snapshot', 'vector', 'concept', `w${seed}`, 'the', 'of'];
  let s = '';
  for (let i = 0; s.length < n; i++) s += `${words[(i * 7 + seed) % words.length]} ${i % 97} `;
  return Buffer.from(s.slice(0, n));
}

/** A mix: database-sized chunks, incompressible ones, thousands of tiny ones, some larger than a slot. */
function mix(): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 700; i++) out.push(i % 5 === 0 ? randomBytes(20_000) : text(16_384 + (i % 9) * 512, i));
  for (let i = 0; i < 3000; i++) out.push(text(40 + (i % 160), 10_000 + i));
  out.push(text(SLOT_INPUT + 1, 1), randomBytes(700 * 1024), text(3 * 1024 * 1024, 2));
  for (let i = 0; i < 200; i++) out.push(text(30_000, 20_000 + i));
  return out;
}

/**
 * Adds every blob from one reused buffer (the writer must copy it before add's first await), each
 * tenth blob twice in a row (the second is known while the first may still be staged).
 */
async function addAll(w: BlobWriter, blobs: readonly Buffer[]): Promise<boolean[]> {
  const scratch = Buffer.alloc(4 * 1024 * 1024);
  const answers: boolean[] = [];
  for (let i = 0; i < blobs.length; i++) {
    const b = blobs[i]!;
    b.copy(scratch);
    const view = scratch.subarray(0, b.length);
    const added = w.add(KIND_DATA, idOf(b), view);
    scratch.fill(0xee, 0, b.length); // what the caller does with its buffer next
    answers.push(await added);
    if (i % 10 === 0) {
      b.copy(scratch);
      answers.push(await w.add(KIND_DATA, idOf(b), scratch.subarray(0, b.length)));
    }
  }
  return answers;
}

test('a writer compressing on a thread stores the same packs, byte for byte, as one that does not', async () => {
  const blobs = mix();
  const plain = await Repository.init(new SmallPacks());
  const wPlain = plain.writer();
  const answersPlain = await addAll(wPlain, blobs);
  const statsPlain = await wPlain.finish();

  const backend = new SmallPacks();
  const threaded = await Repository.init(backend);
  const w = threaded.writer();
  w.compressOnThread();
  const answers = await addAll(w, blobs);
  const stats = await w.finish();

  assert.deepEqual(answers, answersPlain);
  assert.ok(answers.filter((a) => !a).length >= Math.ceil(blobs.length / 10), 'every repeat was known');
  assert.deepEqual(stats, statsPlain);
  assert.ok(stats.packs.length >= 3, `${stats.packs.length} packs`);
  const fresh = await Repository.open(backend);
  await fresh.loadIndex();
  for (const b of blobs) assert.ok((await fresh.loadBlob(idOf(b))).equals(b));
});

test('an encrypted repository written through the thread reads every blob back', async () => {
  const { identity, recipient } = generateIdentity();
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, [recipient]);
  const w = repo.writer();
  w.compressOnThread();
  const blobs = mix().slice(0, 1500);
  await addAll(w, blobs);
  await w.finish();
  const fresh = await Repository.open(backend, { identities: [parseIdentity(identity)] });
  await fresh.loadIndex();
  for (const b of blobs) assert.ok((await fresh.loadBlob(idOf(b))).equals(b));
});

test('a compression thread that ends unasked fails the writer with an error; close() ends a thread that holds batches', async () => {
  const repo = await Repository.init(new MemoryBackend());
  const w = repo.writer();
  w.compressOnThread();
  const blobs = mix().slice(0, 300);
  await addAll(w, blobs.slice(0, 100));
  // the thread ends as if it had died: told to stop through the ring, which the writer did not ask
  // for (terminate() inside a zstd call would abort the process on Node 22 and 24)
  const thread = (w as unknown as { thread: { worker: Worker; v: { ctrl: Int32Array } } }).thread;
  const exited = new Promise((resolve) => thread.worker.once('exit', resolve));
  Atomics.store(thread.v.ctrl, STOP, 1);
  Atomics.notify(thread.v.ctrl, GEN);
  await exited;
  await assert.rejects(addAll(w, blobs.slice(100)), /compression thread exited/);

  const w2 = (await Repository.init(new MemoryBackend())).writer();
  w2.compressOnThread();
  await addAll(w2, blobs.slice(0, 200)); // batches staged, some still at the thread
  await w2.close(); // resolves once the thread has ended by itself
  assert.equal((w2 as unknown as { thread?: unknown }).thread, undefined);
});

/** A first snapshot of `a` into a repository under `stateRoot`, verified, with `env` set meanwhile. */
async function firstSnapshot(
  a: ReturnType<typeof sampleAgent>,
  stateRoot: string,
  env: Record<string, string | undefined>,
) {
  const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (vars: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(env);
  try {
    const s = new LocalSnapshotter({
      stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      lockTimeoutMs: 5_000,
      store: 'repository',
    });
    const meta = await s.snapshot({ agentId: 'ana' });
    const report = await s.verifySnapshot('ana', 'default', meta.id);
    assert.equal(report.status, 'verified', JSON.stringify(report.problems));
    const repo = await Repository.open(new LocalBackend(join(stateRoot, 'repository')));
    await repo.loadIndex();
    return {
      meta: meta as { added_bytes?: number },
      artifacts: (await loadSnapshot(repo, meta.id)).manifest.artifacts,
      packs: (readdirSync(join(stateRoot, 'repository', 'packs'), { recursive: true }) as string[]).filter(
        (n) => /^[0-9a-f]{2}\/[0-9a-f]{64}$/.test(n),
      ).length,
      blobs: repo.index.blobCount,
      // what the snapshot left under the state root that is staging or packed chunks
      leftovers: (readdirSync(stateRoot, { recursive: true }) as string[]).filter((n) =>
        /\.staging-|\.packed/.test(n),
      ),
    };
  } finally {
    set(before);
  }
}

/**
 * A first snapshot of a small agent with `env` set stores the same artifacts and bytes as one without
 * it, and leaves no staging (nor packed chunks) behind.
 */
async function storesAsWithout(t: TestContext, env: Record<string, string>): Promise<void> {
  const a = sampleAgent(t, 'ana', { memories: 2000, embeddings: 300, files: 20, commits: 4 });
  const without = Object.fromEntries(Object.keys(env).map((k) => [k, undefined]));
  const changed = await firstSnapshot(a, join(a.root, 'state-changed'), env);
  const plain = await firstSnapshot(a, join(a.root, 'state-plain'), without);
  assert.deepEqual(changed.artifacts, plain.artifacts);
  assert.equal(changed.blobs, plain.blobs, 'the same blobs');
  // the same stored blobs, in packs cut elsewhere (packed ahead: each copy thread closes its own): the
  // bytes differ by the trailers of the packs one has more of
  assert.equal(
    changed.meta.added_bytes! - plain.meta.added_bytes!,
    TRAILER * (changed.packs - plain.packs),
    `${changed.packs} packs against ${plain.packs}`,
  );
  assert.deepEqual(changed.leftovers, [], 'no staging (and no packed chunks) left behind');
}

test('a first snapshot packed ahead, or compressed on the thread, closes its packs at 4 MiB (stop 59)', async (t) => {
  // ~6 MB of embeddings (they compress little): more than one pack's worth either way. Each pack buffer
  // such a writer keeps is written up to the target; 8 MiB packs had the first snapshot peak 10-15 MB
  // higher (docs/operations.md, "stop 59").
  const target = 4 * 1024 * 1024; // repository.ts THREAD_PACK_TARGET
  const a = sampleAgent(t, 'ana', { memories: 500, embeddings: 4000, files: 5, commits: 2 });
  const ways: Record<string, string>[] = [
    { NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES: '0' }, // packed ahead on the copy threads
    { NEXO_MEMORY_COMPRESS_THREAD_MIN_BYTES: '0' }, // one pass, compressed on the thread
  ];
  for (const [i, env] of ways.entries()) {
    const state = join(a.root, `state-${i}`);
    await firstSnapshot(a, state, env);
    const packs = join(state, 'repository', 'packs');
    const sizes = (readdirSync(packs, { recursive: true }) as string[])
      .map((n) => statSync(join(packs, n)))
      .filter((st) => st.isFile())
      .map((st) => st.size);
    const stored = sizes.reduce((x, y) => x + y, 0);
    assert.ok(stored > target * 1.25, `${JSON.stringify(env)}: only ${stored} bytes stored`);
    // a pack passes the target by its last blob (a database chunk: 128 KiB at most here) and its header
    const over = sizes.filter((n) => n > target + 256 * 1024);
    assert.deepEqual(over, [], `${JSON.stringify(env)}: packs ${sizes.join(', ')}`);
  }
});

test('packing ahead needs three times the databases free on the staging disk, else one pass (stop 54)', () => {
  // the copies still to make, the packed chunks beside them and the packs: each at most the databases
  assert.equal(packAheadFits(300 * 1024 * 1024, 100 * 1024 * 1024), true);
  assert.equal(packAheadFits(300 * 1024 * 1024 - 1, 100 * 1024 * 1024), false);
  assert.equal(packAheadFits(0, 0), true);
});

test('a first snapshot whose database copies are packed ahead on the copy threads stores what one without threads stores', (t) =>
  // the copies on two threads (small agents copy on the calling thread unless told): packed ahead there
  storesAsWithout(t, { NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES: '0' }));

test('a first snapshot that compresses on the thread stores the same chunks as one that does not', async (t) => {
  assert.ok(COMPRESS_THREAD_MIN_BYTES > 1024 * 1024, 'small agents take the thread only when told to');
  await storesAsWithout(t, { NEXO_MEMORY_COMPRESS_THREAD_MIN_BYTES: '0' });
});
