// The NATS JetStream backend against a real 3-node nats-server cluster (started once for this file,
// buckets with 3 replicas): the backend conformance suite; a node killed during a large save; the
// majority killed (STORE_UNREACHABLE, nothing half-visible, success once the nodes are back); an
// interrupted save; prune sweeping the chunks of a save killed long enough ago (never of one under way);
// wrong credentials (STORE_AUTH); a missing bucket (STORE_MISSING); the state token and the cache's names
// answered from it; a full JetStream (a single server with max_file_store) is STORE_FULL, never retried.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, type TestContext, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Backend } from '../src/backend/backend.js';
import { CachedBackend } from '../src/backend/cache.js';
import { NATS_CHUNK_SIZE, NATS_PACKING, type NatsBackend, openNatsBackend } from '../src/backend/nats.js';
import { openBackend, parseRepoLocation } from '../src/backend/open.js';
import type { NatsBackendOptions } from '../src/backend/remote.js';
import { lockRepository } from '../src/repository/locks.js';
import { pruneRepository } from '../src/repository/prune.js';
import { Repository } from '../src/repository/repository.js';
import { natsClient } from '../src/util/nats-client.js';
import { backendConformance, code, collect, hexName, listAll } from './helpers/backend-conformance.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { sampleAgent } from './helpers/env.js';
import { armExitWatchdog } from './helpers/exit-watchdog.js';
import { type NatsServer, startNats } from './helpers/nats.js';
import { closeClient, type NatsCluster, startAuthServer, startNatsCluster } from './helpers/nats-cluster.js';
import { REPO } from './helpers/repo.js';

let cluster: NatsCluster;
before(async () => {
  cluster = await startNatsCluster();
});
after(async () => {
  await cluster?.stop();
  armExitWatchdog('backend-nats.test.ts');
});

const FAST = { attempts: 4, baseDelayMs: 50, maxDelayMs: 400 } as const;
/** Every test's limit: a hang fails that test by name, long before the file's limit. */
const LIMIT = { timeout: 240_000 };

function options(bucket: string, extra: Partial<NatsBackendOptions> = {}): NatsBackendOptions {
  return { servers: cluster.urls, bucket, replicas: 3, create: true, timeoutMs: 3000, retry: FAST, ...extra };
}

const bucketOf = new WeakMap<Backend, string>();

async function open(bucket: string, extra: Partial<NatsBackendOptions> = {}): Promise<Backend> {
  const b = await openNatsBackend(options(bucket, extra));
  bucketOf.set(b, bucket);
  return b;
}

/** Deletes a repository's streams (the object store and the lock KV). */
async function dropBucket(bucket: string): Promise<void> {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of [`OBJ_${bucket}`, `KV_${bucket}-locks`]) await jsm.streams.delete(s).catch(() => {});
  } finally {
    await closeClient(nc);
  }
}

const fresh = () => `t-${randomUUID().slice(0, 8)}`;

/** A fresh bucket, dropped after the test, and a client that creates it (`extra`: its options), closed after the test. */
async function freshBucket(
  t: TestContext,
  extra: Partial<NatsBackendOptions> = {},
): Promise<{ bucket: string; b: Backend }> {
  const bucket = fresh();
  t.after(() => dropBucket(bucket));
  const b = await open(bucket, extra);
  t.after(() => b.close());
  return { bucket, b };
}

/** Another client of `bucket` (which it does not create), closed after the test. */
async function anotherClient(t: TestContext, bucket: string): Promise<Backend> {
  const c = await open(bucket, { create: false });
  t.after(() => c.close());
  return c;
}

backendConformance(
  'nats (3-node cluster, R3)',
  {
    make: async () => open(fresh()),
    reopen: async (b) => open(bucketOf.get(b)!, { create: false }),
    teardown: async (b) => dropBucket(bucketOf.get(b)!),
  },
  LIMIT,
);

const MiB = 1 << 20;

/** `count` 1 MiB chunks of one random block stamped with their index; `during(i)` runs before chunk i. */
function bigSource(count: number, during?: (i: number) => Promise<void>) {
  const block = randomBytes(MiB);
  const want = createHash('sha256');
  for (let i = 0; i < count; i++) {
    const c = Buffer.from(block);
    c.writeUInt32BE(i, 0);
    want.update(c);
  }
  return {
    sha256: want.digest('hex'),
    async *chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < count; i++) {
        await during?.(i);
        const c = Buffer.from(block);
        c.writeUInt32BE(i, 0);
        yield c;
      }
    },
  };
}

async function sha256Of(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const c of chunks) h.update(c);
  return h.digest('hex');
}

/** Admin view of a bucket's stream: its leader and the chunk subjects it holds. */
async function streamState(bucket: string): Promise<{ leader?: string; chunkSubjects: number }> {
  const nc = await connect({ servers: cluster.urls.filter((_, i) => cluster.nodes[i]!.running) });
  try {
    const jsm = await jetstreamManager(nc);
    const si = await jsm.streams.info(`OBJ_${bucket}`, { subjects_filter: `$O.${bucket}.C.>` });
    return { leader: si.cluster?.leader, chunkSubjects: Object.keys(si.state.subjects ?? {}).length };
  } finally {
    await closeClient(nc);
  }
}

/** Waits until the bucket's stream has a leader again (after nodes came back). */
async function waitForStreamLeader(bucket: string): Promise<void> {
  await cluster.waitForMetaLeader(90_000);
  let last: unknown;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await streamState(bucket)).leader) return;
      last = undefined;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the stream of ${bucket} has no leader after its nodes came back`, { cause: last });
}

/**
 * A single nats-server of this test's own (stopped after it) with JetStream stored in a directory removed
 * after the test; `limits`: more settings of its jetstream block.
 */
async function singleServer(t: TestContext, prefix: string, limits = ''): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'server.conf');
  writeFileSync(conf, `jetstream { store_dir: "${join(dir, 'js')}"${limits} }\n`);
  return startNats(t, 0, ['-c', conf]);
}

async function restartAll(): Promise<void> {
  await Promise.all(cluster.nodes.map((n) => n.start()));
  // (a bound on a wait, not a timing assert: the CI machine, its native builds beside the suite, has
  // taken more than 30 s to elect one after the majority came back)
  await cluster.waitForMetaLeader(90_000);
}

test(
  'a node killed (SIGKILL) while a 33 MiB object is being saved: the save completes, byte-identical',
  LIMIT,
  async (t) => {
    let retries = 0;
    const { bucket, b } = await freshBucket(t, {
      observer: { request: () => {}, retry: () => void retries++ },
      // Long enough for a meta and stream leader election on a busy machine: CI runs saw the
      // cluster answer "jetstream is not enabled" for the whole of 6 attempts 0.1-1 s apart, and
      // (stop 50) of 8 attempts over ~12 s. 16 attempts wait up to ~40 s in all.
      retry: { attempts: 16, baseDelayMs: 200, maxDelayMs: 3000 },
      timeoutMs: 2000,
    });
    t.after(restartAll);
    const { leader } = await streamState(bucket);
    const victim = cluster.nodes.find((n) => n.url && leader === n.name) ?? cluster.nodes[0]!;
    const src = bigSource(33, async (i) => {
      if (i === 10) await victim.kill();
    });
    const h = { type: 'packs', name: hexName('survives a node') } as const;
    await b.save(h, src.chunks());
    assert.ok(!victim.running, 'the node was killed during the save');
    assert.ok(retries > 0, 'the kill interrupted some requests, which were retried');
    assert.deepEqual(await b.stat(h), { name: h.name, size: 33 * MiB });
    assert.equal(await sha256Of(b.load(h)), src.sha256);
    await victim.start();
    await cluster.waitForMetaLeader(90_000);
    // Read again with the node back (any replica may serve a chunk now).
    assert.equal(await sha256Of(b.load(h)), src.sha256);
  },
);

test(
  'the majority killed: STORE_UNREACHABLE, nothing half-visible; the same save succeeds once the nodes are back',
  LIMIT,
  async (t) => {
    const bucket = fresh();
    t.after(() => dropBucket(bucket));
    t.after(restartAll);
    // What was saved before the outage, by a client with the usual timeouts (the bucket is new: a loaded
    // cluster can take longer than the short ones below to answer its first writes); the outage is met
    // by a client with short ones.
    const before = await open(bucket);
    t.after(() => before.close());
    const kept = { type: 'snapshots', name: randomUUID() } as const;
    await before.save(kept, Buffer.from('before the outage'));
    const b = await open(bucket, {
      create: false,
      timeoutMs: 500,
      retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
    });
    t.after(() => b.close());
    const h = { type: 'packs', name: hexName('during the outage') } as const;
    const src = bigSource(4, async (i) => {
      if (i === 2) await Promise.all([cluster.nodes[0]!.kill(), cluster.nodes[1]!.kill()]);
    });
    await assert.rejects(b.save(h, src.chunks()), code('STORE_UNREACHABLE', 8));
    // A read while the majority is down either fails the same way or is answered whole by the surviving
    // replica (direct gets need no quorum): never a wrong answer, never the half-saved pack.
    await b.stat(kept).then(
      (info) => assert.equal(info.size, 'before the outage'.length),
      (err: unknown) => code('STORE_UNREACHABLE')(err),
    );
    await listAll(b, 'packs').then(
      (packs) => assert.deepEqual(packs, new Map()),
      (err: unknown) => code('STORE_UNREACHABLE')(err),
    );

    await restartAll();
    await waitForStreamLeader(bucket);
    // The same save, as the command run again would do it (a new client, the usual timeouts).
    const c = await anotherClient(t, bucket);
    assert.deepEqual(await listAll(c, 'packs'), new Map());
    await assert.rejects(c.stat(h), code('OBJECT_NOT_FOUND'));
    assert.deepEqual(await listAll(c, 'snapshots'), new Map([[kept.name, 17]]));
    const again = bigSource(4);
    await c.save(h, again.chunks());
    assert.equal(await sha256Of(c.load(h)), again.sha256);
    assert.deepEqual(await listAll(b, 'packs'), new Map([[h.name, 4 * MiB]]));
  },
);

test(
  'an interrupted save (the source throws) is never listed or loadable, and its chunks are purged',
  LIMIT,
  async (t) => {
    const { bucket, b } = await freshBucket(t);
    const boom = new Error('source died');
    const h = { type: 'packs', name: hexName('interrupted') } as const;
    const src = bigSource(3, async (i) => {
      if (i === 2) throw boom;
    });
    await assert.rejects(b.save(h, src.chunks()), (e) => e === boom);
    assert.deepEqual(await listAll(b, 'packs'), new Map());
    await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
    await assert.rejects(collect(b.load(h)), code('OBJECT_NOT_FOUND'));
    assert.equal((await streamState(bucket)).chunkSubjects, 0, 'no chunk left behind');
  },
);

test(
  'a process killed mid-save leaves nothing listed or loadable; sweepOrphans purges its chunks',
  LIMIT,
  async (t) => {
    const { bucket, b: client } = await freshBucket(t);
    const b = client as NatsBackend;
    const kept = { type: 'packs', name: hexName('complete') } as const;
    const keptData = randomBytes(NATS_CHUNK_SIZE * 2 + 1);
    await b.save(kept, keptData);
    const h = { type: 'packs', name: hexName('killed mid-save') } as const;
    const saver = await savingForever(t, bucket, h.name);
    await saver.kill();

    assert.deepEqual(await listAll(b, 'packs'), new Map([[kept.name, keptData.length]]));
    await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
    await assert.rejects(collect(b.load(h)), code('OBJECT_NOT_FOUND'));
    assert.equal((await streamState(bucket)).chunkSubjects, 2, 'the killed save left its chunks behind');
    // Younger than the minimum age: kept (it could be a save under way).
    assert.deepEqual(await b.sweepOrphans(60_000), { saves: 0, chunks: 0, bytes: 0 });
    const swept = await b.sweepOrphans(0);
    assert.equal(swept.saves, 1);
    // The fixture had handed 8 pieces to the save, but with a publish window of 8 only the first is sure
    // to be in the stream before the kill (as in the prune test below).
    assert.ok(swept.chunks >= 1, `${swept.chunks} chunks purged`);
    assert.equal((await streamState(bucket)).chunkSubjects, 1);
    assert.deepEqual(await collect(b.load(kept)), keptData);
  },
);

/** A fixture process, and its end: `kill()` SIGKILLs it (unless it already ended) and waits for its exit. */
interface Saver {
  child: ChildProcess;
  kill(): Promise<void>;
}

/**
 * A process saving a pack into `bucket` from an endless source, once it has handed 2 MiB to the save
 * (not all of it need be in the stream yet). A process that ends before saying so (its save failed)
 * fails the test with its stderr, never waits for a line that cannot come.
 */
async function savingForever(t: TestContext, bucket: string, name: string): Promise<Saver> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO, 'test', 'fixtures', 'nats-save-forever.ts'),
      cluster.urls.join(','),
      bucket,
      name,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  // Taken now: an 'exit' already emitted is never emitted again (the process may end on its own).
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.after(kill);
  // readline emits 'close', never 'line', when the process ends without printing its line (and the
  // child's 'close', after all its output was read, settles it in any case)
  const lines = createInterface({ input: child.stdout! });
  const line = await new Promise<string | undefined>((resolve) => {
    lines.once('line', resolve);
    lines.once('close', () => resolve(undefined));
    void closed.then(() => resolve(undefined));
  });
  if (line === undefined) {
    await closed; // all of its stderr read
    throw new Error(
      `nats-save-forever exited (${child.exitCode ?? child.signalCode}) before saving:\n${stderr}`,
    );
  }
  assert.equal(line, 'saving');
  return { child, kill };
}

/** The chunk subjects of the bucket's stream, with their message counts. */
async function chunkSubjects(bucket: string): Promise<Record<string, number>> {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    const si = await jsm.streams.info(`OBJ_${bucket}`, { subjects_filter: `$O.${bucket}.C.>` });
    return si.state.subjects ?? {};
  } finally {
    await closeClient(nc);
  }
}

/** When the stream stored the last message of `subject` (the server's clock, as the sweep reads it). */
async function storedAt(bucket: string, subject: string): Promise<number> {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    const m = await jsm.streams.getMessage(`OBJ_${bucket}`, { last_by_subj: subject });
    assert.ok(m, `a message on ${subject}`);
    return m.time.getTime();
  } finally {
    await closeClient(nc);
  }
}

test(
  'prune (through the metered, retrying, cached backend) sweeps the chunks of a save killed long enough ago, never those of a save under way',
  LIMIT,
  async (t) => {
    const bucket = fresh();
    t.after(() => dropBucket(bucket));
    const requests: string[] = [];
    const cacheRoot = mkdtempSync(join(tmpdir(), 'nexo-cache-'));
    t.after(() => rmSync(cacheRoot, { recursive: true, force: true }));
    const hosts = cluster.urls.map((u) => u.slice('nats://'.length)).join(',');
    const b = await openBackend(parseRepoLocation(`nats://${hosts}/${bucket}`), {
      nats: { replicas: 3, timeoutMs: 3000 },
      retry: FAST,
      create: true,
      cacheRoot,
      observer: { request: (op) => requests.push(op) },
    });
    t.after(() => b.close());
    const repo = await Repository.init(b);
    // The wrappers pass on how NATS wants its packs: small ones, several saved at once.
    assert.deepEqual(repo.writer().packing, NATS_PACKING);
    const committed = Object.keys(await chunkSubjects(bucket)); // the repository's config
    // A save killed mid-way: its chunks stay, named by no object.
    const killed = await savingForever(t, bucket, hexName('killed mid-save'));
    await killed.kill();
    const orphaned = Object.keys(await chunkSubjects(bucket)).filter((s) => !committed.includes(s));
    assert.equal(orphaned.length, 1, 'the killed save left its chunks');
    // A save under way (another host's snapshot): its chunks are younger than any age prune uses.
    const running = await savingForever(t, bucket, hexName('a save under way'));
    const AGE = 2000;
    // Until the killed save's last chunk is older than AGE by the stream's clock: a chunk the killed
    // process had sent may be stored after the kill, later still on a loaded machine (CI, stop 56).
    for (;;) {
      const wait = (await storedAt(bucket, orphaned[0]!)) + AGE + 300 - Date.now();
      if (wait <= 0) break;
      await new Promise((r) => setTimeout(r, wait));
    }
    // How many of its 256 KiB pieces reached the stream before the kill varies with the cluster's pace.
    const orphanedChunks = (await chunkSubjects(bucket))[orphaned[0]!] ?? 0;
    assert.ok(orphanedChunks >= 1);

    const lock = await lockRepository(b, true, 'prune', 0);
    const report = await pruneRepository(repo, { lock, leftoverAgeMs: AGE });
    await lock.release();
    assert.equal(report.leftovers_removed, 1, JSON.stringify(report));
    // every piece the fixture saves is one full chunk
    assert.equal(
      report.leftover_bytes_freed,
      orphanedChunks * NATS_CHUNK_SIZE,
      "the killed save's bytes swept",
    );
    const left = Object.keys(await chunkSubjects(bucket)).filter((s) => !committed.includes(s));
    assert.equal(left.length, 1, 'the save under way keeps its chunks');
    assert.ok(!left.includes(orphaned[0]!), 'the killed save lost its chunks');
    await running.kill();
    // The default age (far past the lock staleness) leaves the second one alone as well.
    const again = await pruneRepository(repo);
    assert.equal(again.leftovers_removed, 0);
    assert.equal(Object.keys(await chunkSubjects(bucket)).length, committed.length + 1);
    assert.ok(requests.includes('remove'), 'the sweep went through the metering wrapper');
  },
);

test(
  'ifAbsent on the object store: of concurrent saves of one pack by two clients exactly one wins',
  LIMIT,
  async (t) => {
    const { bucket, b: a } = await freshBucket(t);
    const c = await anotherClient(t, bucket);
    for (let round = 0; round < 4; round++) {
      const h = { type: 'packs', name: hexName(`pack race ${round}`) } as const;
      let arrived = 0;
      let release!: () => void;
      const both = new Promise<void>((r) => {
        release = r;
      });
      // Both saves have their chunks uploaded before either commits: the commit decides.
      async function* racer(content: Buffer): AsyncGenerator<Uint8Array> {
        yield content.subarray(0, 1000);
        if (++arrived === 2) release();
        await both;
        yield content.subarray(1000);
      }
      const contents = [randomBytes(300_000), randomBytes(310_000)];
      const results = await Promise.allSettled([
        a.save(h, racer(contents[0]!), { ifAbsent: true }),
        c.save(h, racer(contents[1]!), { ifAbsent: true }),
      ]);
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, results.map((r) => r.status).join(', '));
      code('OBJECT_EXISTS', 6)((results[1 - winners[0]!] as PromiseRejectedResult).reason);
      assert.deepEqual(await collect(c.load(h)), contents[winners[0]!]);
    }
    assert.equal((await streamState(bucket)).chunkSubjects, 4, "the losers' chunks are purged");
  },
);

test(
  'a save whose meta the stream took but whose every answer was lost is saved (its chunks stay); one whose meta did not land is purged (stop 55)',
  LIMIT,
  async (t) => {
    // two attempts of a second each (a lost answer uses up a whole attempt's time): ~2 s per failed save
    const { b } = await freshBucket(t, {
      timeoutMs: 1000,
      retry: { attempts: 2, baseDelayMs: 20, maxDelayMs: 50 },
    });
    // Each publish of a meta reaches the stream, then its answer is lost (every attempt): before stop
    // 55 the save purged its chunks and failed, leaving the object listed but unreadable.
    const js = (b as unknown as { js: { publish: (...a: unknown[]) => Promise<unknown> } }).js;
    const publish = js.publish.bind(js);
    let lose: 'after' | 'before' | undefined = 'after';
    js.publish = async (subject: unknown, ...rest: unknown[]) => {
      const meta = String(subject).includes('.M.');
      if (meta && lose === 'before') throw new (natsClient().TimeoutError)();
      const ack = await publish(subject, ...rest);
      if (meta && lose === 'after') throw new (natsClient().TimeoutError)();
      return ack;
    };
    for (const ifAbsent of [false, true]) {
      const h = { type: 'packs', name: hexName(`lost meta answer ${ifAbsent}`) } as const;
      const data = randomBytes(2 * NATS_CHUNK_SIZE + 10);
      await b.save(h, data, { ifAbsent });
      assert.deepEqual(await collect(b.load(h)), data, 'listed and whole');
    }
    // A meta that never reached the stream: the save fails, and nothing of it is listed.
    lose = 'before';
    const gone = { type: 'packs', name: hexName('meta never landed') } as const;
    await assert.rejects(b.save(gone, randomBytes(100)), code('STORE_UNREACHABLE'));
    lose = undefined;
    assert.equal((await listAll(b, 'packs')).has(gone.name), false);
    await assert.rejects(collect(b.load(gone)), code('OBJECT_NOT_FOUND'));
  },
);

test(
  'meta messages and names the backend did not write are never used: a forged chunk count allocates nothing, a name not valid for its type is never listed (stop 62 review)',
  LIMIT,
  async (t) => {
    const { bucket, b } = await freshBucket(t);
    const data = randomBytes(100);
    const h = { type: 'index', name: hexName('a real index') } as const;
    await b.save(h, data);
    const billion = { type: 'index', name: hexName('a billion chunks') } as const;
    const bare = { type: 'index', name: hexName('runs that are not pairs') } as const;
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      const js = jsm.jetstream();
      const m = await jsm.streams.getMessage(`OBJ_${bucket}`, {
        last_by_subj: `$O.${bucket}.M.index.${h.name}`,
      });
      const real = m!.json() as Record<string, unknown>;
      const forge = (subject: string, fields: Record<string, unknown>) =>
        js.publish(`$O.${bucket}.M.${subject}`, JSON.stringify({ ...real, ...fields }));
      // a meta of one byte whose run names a billion chunks (it crashed every client: V8's invalid size)
      await forge(`index.${billion.name}`, { name: billion.name, seqs: [[1, 1_000_000_000]] });
      await forge(`index.${bare.name}`, { name: bare.name, seqs: [5] });
      await forge('index.evil', { name: 'evil' });
      await forge('packs.evil', { name: 'evil' });
      await js.publish(`$KV.${bucket}-locks.evil`, '{}');
    } finally {
      await closeClient(nc);
    }
    assert.deepEqual([...(await listAll(b, 'index')).keys()], [h.name]);
    assert.deepEqual([...(await listAll(b, 'packs')).keys()], []);
    assert.deepEqual([...(await listAll(b, 'locks')).keys()], []);
    const names = await (b as NatsBackend).listNames('index');
    assert.ok(!names.includes('evil') && names.includes(h.name), names.join());
    assert.deepEqual(await (b as NatsBackend).listNames('packs'), []);
    for (const forged of [billion, bare]) {
      await assert.rejects(collect(b.load(forged)), code('OBJECT_NOT_FOUND'));
      assert.equal(await b.stat(forged).catch((e: Error & { code?: string }) => e.code), 'OBJECT_NOT_FOUND');
    }
    assert.deepEqual(await collect(b.load(h)), data);
  },
);

test('a ranged load reads only the chunks of its range', LIMIT, async (t) => {
  const { bucket, b } = await freshBucket(t);
  const data = randomBytes(4 * NATS_CHUNK_SIZE + 100);
  const h = { type: 'packs', name: hexName('ranged chunks') } as const;
  await b.save(h, data);
  // Erase the first chunk's message behind the backend's back: ranges past it still load.
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    const m = await jsm.streams.getMessage(`OBJ_${bucket}`, {
      last_by_subj: `$O.${bucket}.M.packs.${h.name}`,
    });
    const first = (m!.json() as { seqs: Array<[number, number]> }).seqs[0]![0];
    assert.ok(await jsm.streams.deleteMessage(`OBJ_${bucket}`, first));
  } finally {
    await closeClient(nc);
  }
  const offset = NATS_CHUNK_SIZE + 7;
  assert.deepEqual(
    await collect(b.load(h, { offset, length: 2 * NATS_CHUNK_SIZE })),
    data.subarray(offset, offset + 2 * NATS_CHUNK_SIZE),
  );
  assert.deepEqual(await collect(b.load(h, { offset: data.length - 50 })), data.subarray(-50));
  await assert.rejects(collect(b.load(h)), code('OBJECT_NOT_FOUND'));
});

test(
  "ranged loads of a pack: neighbouring ranges share a chunk, each buffer is the caller's; a pack removed or saved again by another client is read anew",
  LIMIT,
  async (t) => {
    const { bucket, b } = await freshBucket(t);
    const other = await anotherClient(t, bucket);
    const data = randomBytes(4 * NATS_CHUNK_SIZE + 10);
    const h = { type: 'packs', name: hexName('ranges of a pack') } as const;
    await b.save(h, data);
    const cut = NATS_CHUNK_SIZE + 1000; // inside the second chunk
    const [left, right] = await Promise.all([
      collect(b.load(h, { offset: 10, length: cut - 10 })),
      collect(b.load(h, { offset: cut, length: 2 * NATS_CHUNK_SIZE })),
    ]);
    assert.deepEqual(left, data.subarray(10, cut));
    assert.deepEqual(right, data.subarray(cut, cut + 2 * NATS_CHUNK_SIZE));
    // The caller may write into what it was given: the next load of the shared chunk is unchanged.
    for await (const c of b.load(h, { offset: cut - 500, length: 1000 })) c.fill(0);
    assert.deepEqual(
      await collect(b.load(h, { offset: cut - 500, length: 1000 })),
      data.subarray(cut - 500, cut + 500),
    );

    // Removed by another client: not found (not the bytes this client read before).
    await other.remove(h);
    await assert.rejects(collect(b.load(h, { offset: cut - 500, length: 1000 })), code('OBJECT_NOT_FOUND'));
    // Saved again by the other client (new chunks): read from the new meta.
    await other.save(h, data);
    assert.deepEqual(
      await collect(b.load(h, { offset: 5, length: 2 * NATS_CHUNK_SIZE })),
      data.subarray(5, 5 + 2 * NATS_CHUNK_SIZE),
    );
    // Removed by this client: not found at once.
    await b.remove(h);
    await assert.rejects(collect(b.load(h, { offset: 5, length: 10 })), code('OBJECT_NOT_FOUND'));
  },
);

test(
  'a save given the SHA-256 of its bytes records it as the digest instead of hashing them again',
  LIMIT,
  async (t) => {
    const { b } = await freshBucket(t);
    const data = randomBytes(2 * NATS_CHUNK_SIZE + 33);
    const right = { type: 'packs', name: hexName('given digest, right') } as const;
    await b.save(right, data, { sha256: createHash('sha256').update(data).digest('hex') });
    assert.deepEqual(await collect(b.load(right)), data);
    // A wrong one is what the meta records (the bytes were not hashed): a whole load fails its check,
    // ranges (which the digest does not cover) still load.
    const wrong = { type: 'packs', name: hexName('given digest, wrong') } as const;
    await b.save(wrong, data, { sha256: hexName('not these bytes') });
    await assert.rejects(collect(b.load(wrong)), code('CHECKSUM_MISMATCH', 2));
    assert.deepEqual(await collect(b.load(wrong, { offset: 5, length: 100 })), data.subarray(5, 105));
    await assert.rejects(b.save(wrong, data, { sha256: 'ABC' }), code('INVALID_INPUT'));
  },
);

test(
  'wrong credentials are STORE_AUTH; no permission is STORE_DENIED; a missing bucket is STORE_MISSING; a dead server is STORE_UNREACHABLE',
  LIMIT,
  async (t) => {
    const server = await startAuthServer('nexo', 'right-secret');
    t.after(() => server.stop());
    const base = { servers: [server.url], bucket: 'auth-test', timeoutMs: 2000, retry: FAST };
    await assert.rejects(
      openNatsBackend({ ...base, user: 'nexo', password: 'wrong-secret', create: true }),
      code('STORE_AUTH', 8),
    );
    await assert.rejects(openNatsBackend({ ...base, create: true }), code('STORE_AUTH'));
    await assert.rejects(
      openNatsBackend({ ...base, user: 'nexo', password: 'right-secret' }),
      code('STORE_MISSING', 8),
    );
    const b = await openNatsBackend({ ...base, user: 'nexo', password: 'right-secret', create: true });
    await b.save({ type: 'config', name: 'config' }, Buffer.from('{}'));
    await b.close();
    // A user the server does not allow to publish into the bucket: STORE_DENIED, nothing saved.
    const reader = await openNatsBackend({ ...base, user: 'reader', password: 'reader' });
    const pack = { type: 'packs', name: hexName('denied') } as const;
    await assert.rejects(reader.save(pack, Buffer.from('x')), code('STORE_DENIED', 8));
    assert.deepEqual(await listAll(reader, 'packs'), new Map());
    assert.equal((await collect(reader.load({ type: 'config', name: 'config' }))).toString(), '{}');
    await reader.close();
    const err = await openNatsBackend({ ...base, user: 'nexo', password: 'wrong-secret' }).catch((e) => e);
    code('STORE_AUTH')(err);
    assert.ok(!String(err.message).includes('secret'), 'the message shows no credential');
    await server.stop();
    await assert.rejects(
      openNatsBackend({ ...base, user: 'nexo', password: 'right-secret', timeoutMs: 300 }),
      code('STORE_UNREACHABLE', 8),
    );
  },
);

test('the observer sees each request with its outcome and the bytes moved', LIMIT, async (t) => {
  const seen: string[] = [];
  const { b } = await freshBucket(t, {
    observer: { request: (op, outcome, bytes) => void seen.push(`${op} ${outcome} ${bytes}`) },
  });
  const h = { type: 'index', name: hexName('observed') } as const;
  const data = randomBytes(NATS_CHUNK_SIZE + 10);
  await b.save(h, data);
  await collect(b.load(h, { offset: 5, length: 100 }));
  await b.stat(h);
  await listAll(b, 'index');
  await b.remove(h);
  await assert.rejects(b.stat(h), code('OBJECT_NOT_FOUND'));
  const lock = { type: 'locks', name: hexName('observed lock') } as const;
  await b.save(lock, Buffer.from('held'), { ifAbsent: true });
  await assert.rejects(b.save(lock, Buffer.from('held'), { ifAbsent: true }), code('OBJECT_EXISTS'));
  assert.deepEqual(seen, [
    `save ok ${data.length}`,
    'load ok 100',
    'stat ok 0',
    'list ok 0',
    'remove ok 0',
    'stat error 0',
    'save ok 4',
    'save error 0',
  ]);
});

test(
  'the state token changes with every save and remove by any client; the cache lists names from it only while nothing changed',
  LIMIT,
  async (t) => {
    let lists = 0;
    const { bucket, b } = await freshBucket(t, {
      observer: { request: (op) => void (op === 'list' && lists++) },
    });
    const other = await anotherClient(t, bucket);
    const entry = (name: string) => ({ type: 'listing', name }) as const;
    const [x, y] = [randomUUID(), randomUUID()];
    const t0 = await b.stateToken!();
    assert.equal(await b.stateToken!(), t0, 'nothing changed, the same token');
    await other.save(entry(x), Buffer.from('{}'));
    const t1 = await b.stateToken!();
    assert.notEqual(t1, t0, "another client's save");
    await other.remove(entry(x));
    const t2 = await b.stateToken!();
    assert.ok(t2 !== t1 && t2 !== t0, "another client's remove: a new token, never an earlier one");

    const dir = mkdtempSync(join(tmpdir(), 'nexo-names-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cached = new CachedBackend(b, dir);
    await other.save(entry(x), Buffer.from('{}'));
    assert.deepEqual(await cached.listNames('listing'), [x]);
    assert.equal(lists, 1, 'cold: the store listed the names');
    assert.deepEqual(await cached.listNames('listing'), [x]);
    assert.equal(lists, 1, 'warm and unchanged: from the cache');
    await other.save(entry(y), Buffer.from('{}'));
    assert.deepEqual(
      (await cached.listNames('listing')).sort(),
      [x, y].sort(),
      "another client's save is seen",
    );
    assert.equal(lists, 2);
    await other.remove(entry(x));
    assert.deepEqual(await cached.listNames('listing'), [y], "another client's remove is seen");
    assert.equal(lists, 3);
    // a save of another type changes the token too: listed again, the same names
    await other.save({ type: 'index', name: hexName('any') }, Buffer.from('i'));
    assert.deepEqual(await cached.listNames('listing'), [y]);
    assert.equal(lists, 4);
    // a damaged names file is never trusted: listed again
    const file = join(dir, 'names.listing');
    const raw = readFileSync(file);
    raw[raw.length - 3] = raw[raw.length - 3]! ^ 0x20;
    writeFileSync(file, raw);
    assert.deepEqual(await cached.listNames('listing'), [y]);
    assert.equal(lists, 5, 'the damaged file was not used');
    assert.equal(cached.refetched, 1);
    assert.deepEqual(await cached.listNames('listing'), [y]);
    assert.equal(lists, 5, 'rewritten whole, it serves again');
  },
);

test(
  'a full JetStream (max_file_store reached) is STORE_FULL, never retried; what prune can do there',
  LIMIT,
  async (t) => {
    const server = await singleServer(t, 'nexo-nats-full-', ', max_file_store: 12MB');
    const retries: string[] = [];
    const b = await openNatsBackend({
      servers: [server.url],
      bucket: 'full',
      create: true,
      timeoutMs: 3000,
      retry: { attempts: 3, baseDelayMs: 200, maxDelayMs: 1000 },
      observer: { request: () => {}, retry: (op, _n, _d, reason) => retries.push(`${op}: ${reason}`) },
    });
    t.after(() => b.close());
    let saved = 0;
    let err: unknown;
    for (let i = 0; i < 40 && err === undefined; i++) {
      try {
        await b.save({ type: 'packs', name: hexName(`full-${i}`) }, randomBytes(1 << 20));
        saved++;
      } catch (e) {
        err = e;
      }
    }
    assert.ok(saved >= 5 && err !== undefined, `saves until full: ${saved}, then ${String(err)}`);
    code('STORE_FULL', 8)(err);
    const msg = (err as Error).message;
    assert.match(msg, /is full/);
    assert.match(msg, /max_file_store/);
    assert.deepEqual(retries, [], 'never retried');
    // What is there is still readable; the failed save left nothing listed.
    assert.equal((await listAll(b, 'packs')).size, saved);
    // Prune needs its lock first: on a full JetStream the lock cannot be written either (the message says so).
    await assert.rejects(
      b.save({ type: 'locks', name: hexName('prune-lock') }, Buffer.from('{}'), { ifAbsent: true }),
      code('STORE_FULL', 8),
    );
    assert.match(msg, /prune cannot/);
  },
);

test(
  'a creds_file that is not a NATS credentials file is CONFIG, naming the file and quoting none of it; a missing one is IO',
  LIMIT,
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexo-creds-'));
    try {
      const bad = join(dir, 'bad.creds');
      writeFileSync(
        bad,
        '-----BEGIN NATS USER JWT-----\nnot-a-jwt-SECRETISH\n------END NATS USER JWT------\n',
      );
      await assert.rejects(
        openNatsBackend({ servers: ['nats://127.0.0.1:1'], bucket: 'b', credsFile: bad }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'CONFIG', err.message);
          assert.match(err.message, /bad\.creds is not a NATS credentials file/);
          assert.doesNotMatch(err.message, /SECRETISH/);
          return true;
        },
      );
      await assert.rejects(
        openNatsBackend({
          servers: ['nats://127.0.0.1:1'],
          bucket: 'b',
          credsFile: join(dir, 'missing.creds'),
        }),
        { code: 'IO' },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'a repository stream whose settings can drop data is refused at open (STORE_UNSAFE, exit 8) naming the setting, before anything is written',
  LIMIT,
  async (t) => {
    const server = await singleServer(t, 'nexo-nats-unsafe-');
    const bucket = 'unsafe';
    const opts = { servers: [server.url], bucket, timeoutMs: 3000, retry: FAST };
    const first = await openNatsBackend({ ...opts, create: true });
    await first.save({ type: 'packs', name: hexName('kept') }, randomBytes(600 * 1024));
    await first.close();
    const nc = await connect({ servers: [server.url] });
    t.after(() => closeClient(nc));
    const jsm = await jetstreamManager(nc);
    const obj = `OBJ_${bucket}`;
    const kv = `KV_${bucket}-locks`;
    const messages = async () => (await jsm.streams.info(obj)).state.messages;
    const stored = await messages();
    const cases: Array<{
      stream: string;
      set: Record<string, unknown>;
      unset: Record<string, unknown>;
      names: RegExp;
    }> = [
      {
        stream: obj,
        set: { discard: 'old', max_bytes: 64 * MiB },
        unset: { discard: 'new', max_bytes: -1 },
        names: /discard is old with max_bytes/,
      },
      {
        stream: obj,
        set: { discard: 'old', max_msgs: 10_000 },
        unset: { discard: 'new', max_msgs: -1 },
        names: /discard is old with max_msgs/,
      },
      {
        stream: obj,
        set: { max_msgs_per_subject: 1 },
        unset: { max_msgs_per_subject: -1 },
        names: /max_msgs_per_subject is 1/,
      },
      { stream: obj, set: { max_age: 3600 * 1e9 }, unset: { max_age: 0 }, names: /max_age is 3600 s/ },
      {
        stream: obj,
        set: { subjects: [`$O.${bucket}.C.>`] },
        unset: { subjects: [`$O.${bucket}.C.>`, `$O.${bucket}.M.>`] },
        names: /without \$O\.unsafe\.M\.>/,
      },
      {
        stream: kv,
        set: { max_age: 600 * 1e9 },
        unset: { max_age: 0 },
        names: /KV_unsafe-locks .*max_age is 600 s/,
      },
    ];
    for (const c of cases) {
      await jsm.streams.update(c.stream, c.set);
      for (const create of [false, true])
        await assert.rejects(
          openNatsBackend({ ...opts, create }),
          (err: Error & { code?: string; exitCode?: number }) => {
            assert.equal(err.code, 'STORE_UNSAFE', `${JSON.stringify(c.set)}: ${err.message}`);
            assert.equal(err.exitCode, 8);
            assert.match(err.message, c.names);
            assert.match(err.message, /can drop repository data/);
            return true;
          },
        );
      await jsm.streams.update(c.stream, c.unset);
    }
    // discard new with a byte limit drops nothing (a full stream refuses the write: STORE_FULL)
    await jsm.streams.update(obj, { max_bytes: 64 * MiB });
    const b = await openNatsBackend(opts);
    await b.close();
    // the CLI: a snapshot into the unsafe stream fails before writing anything
    await jsm.streams.update(obj, { discard: 'old' });
    const a = sampleAgent(t, 'ana', { memories: 20, embeddings: 5, files: 2, commits: 1 });
    const repo = `nats://127.0.0.1:${server.port}/${bucket}`;
    const r = await runBuiltCli(['snapshot', '--agent', 'ana', '--json', '--repo', repo, ...a.flags]);
    assert.equal(r.code, 8, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'STORE_UNSAFE');
    assert.equal(await messages(), stored, 'nothing was written');
  },
);

test(
  'a NATS server without JetStream is STORE_MISSING, never retried as if unreachable, saying JetStream is not enabled',
  LIMIT,
  async (t) => {
    const server = await startNats(t); // no -js
    const retries: string[] = [];
    await assert.rejects(
      openNatsBackend({
        servers: [server.url],
        bucket: 'nojs',
        create: true,
        timeoutMs: 3000,
        retry: { attempts: 4, baseDelayMs: 500, maxDelayMs: 2000 },
        observer: { request: () => {}, retry: (op, _n, _d, reason) => retries.push(`${op}: ${reason}`) },
      }),
      (err: Error & { code?: string; exitCode?: number }) => {
        assert.equal(err.code, 'STORE_MISSING', err.message);
        assert.equal(err.exitCode, 8);
        assert.match(err.message, /JetStream is not enabled/);
        return true;
      },
    );
    assert.deepEqual(retries, [], 'never retried');
  },
);

test(
  "sweepOrphans never purges the chunks of another client's object in the same object store; a meta it cannot read stops the sweep (stop 63)",
  LIMIT,
  async (t) => {
    const { bucket, b: client } = await freshBucket(t);
    const b = client as NatsBackend;
    await b.save({ type: 'packs', name: hexName('ours') }, randomBytes(NATS_CHUNK_SIZE + 1));
    // another application's file, put with the object store's own client (as `nats object put` would)
    const { Objm } = await import('@nats-io/obj');
    const nc = await connect({ servers: cluster.urls });
    t.after(() => closeClient(nc));
    const os = await new Objm(nc).open(bucket);
    const theirs = randomBytes(300_000);
    await os.putBlob({ name: 'design-doc.pdf' }, theirs);
    assert.deepEqual(await b.sweepOrphans(0), { saves: 0, chunks: 0, bytes: 0 }, 'nothing is an orphan');
    assert.deepEqual(Buffer.from((await os.getBlob('design-doc.pdf'))!), theirs, 'their file is whole');
    // a save killed before its meta: its chunks are orphans, swept; unless a meta names nothing readable
    const saver = await savingForever(t, bucket, hexName('killed'));
    await saver.kill();
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    await js.publish(`$O.${bucket}.M.bm90LWpzb24`, Buffer.from('not json'));
    assert.deepEqual(
      await b.sweepOrphans(0),
      { saves: 0, chunks: 0, bytes: 0 },
      'an unreadable meta: no sweep',
    );
    await jetstreamManager(nc).then((m) =>
      m.streams.purge(`OBJ_${bucket}`, { filter: `$O.${bucket}.M.bm90LWpzb24` }),
    );
    assert.equal((await b.sweepOrphans(0)).saves, 1, 'then the killed save is swept, theirs kept');
    assert.deepEqual(Buffer.from((await os.getBlob('design-doc.pdf'))!), theirs);
  },
);
