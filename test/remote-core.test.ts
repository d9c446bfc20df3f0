// What lies between the user and a remote repository: locations (hostile ones refused without echoing
// a secret), flag > env > config, two state roots ("hosts") sharing one repository through --repo, the
// cache of immutable objects (deleted: nothing lost; corrupt: fetched again), and retries of transient
// failures (resumed loads; spent → exit 8, STORE_UNREACHABLE; store.nats.timeout_ms bounding each
// attempt against a dead port). The "remote" store of the CLI runs is a directory behind FaultyBackend
// (helpers/faulty-remote.ts, the CLI run in this process), wrapped exactly as nats:// and s3:// are.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { suite, test } from 'node:test';
import { readAll, TransientStoreError } from '../src/backend/backend.js';
import { CachedBackend, LISTING_FILE } from '../src/backend/cache.js';
import { FaultyBackend } from '../src/backend/faulty.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { cacheDirOf, parseRepoLocation, remoteFactories } from '../src/backend/open.js';
import { RetryingBackend } from '../src/backend/retry.js';
import { loadConfig } from '../src/config/config.js';
import { backendSettingsFromConfig, snapshotterOptionsFromConfig } from '../src/config/runtime.js';
import { ConfigError, ObjectExistsError, StoreUnavailableError } from '../src/model/errors.js';
import { isStale, lockRepository, ownHostId, REFRESH_MS, TRUST_MS } from '../src/repository/locks.js';
import { BIN, runBuiltCli } from './helpers/built-cli.js';
import { outsideEnv } from './helpers/cli.js';
import { type Json, json, ok } from './helpers/cli-json.js';
import { type RunResult, runCli, sampleAgent, startFixture, tempDir } from './helpers/env.js';
import { faultyS3 } from './helpers/faulty-remote.js';

const SMALL = { memories: 40, embeddings: 10, files: 3, commits: 2 };
const allow = { NEXO_MEMORY_RESTORE_ALLOW: 'yes' };

const snapshotsOf = (out: Json): Json[] => (Array.isArray(out) ? out : out.snapshots);

// The CLI runs mostly wait (fsync, child start-up): the tests run side by side.
suite('remote core', { concurrency: 4 }, () => {
  test('parseRepoLocation: paths, nats://, s3:// and hostile input', () => {
    assert.deepEqual(parseRepoLocation('repo', '/base'), {
      kind: 'local',
      path: '/base/repo',
      display: '/base/repo',
    });
    assert.equal(parseRepoLocation('/abs/../x').kind, 'local');
    const n = parseRepoLocation('nats://a.example:4222,10.0.0.2:4223/memory_repo');
    assert.deepEqual(n, {
      kind: 'nats',
      servers: ['nats://a.example:4222', 'nats://10.0.0.2:4223'],
      bucket: 'memory_repo',
      display: 'nats://a.example:4222,10.0.0.2:4223/memory_repo',
    });
    assert.deepEqual(parseRepoLocation('s3://my-bucket/fleet/agents/'), {
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'fleet/agents',
      display: 's3://my-bucket/fleet/agents',
    });
    assert.deepEqual(parseRepoLocation('s3://my-bucket'), {
      kind: 's3',
      bucket: 'my-bucket',
      prefix: '',
      display: 's3://my-bucket',
    });
    const refused: Array<[string, RegExp]> = [
      ['', /empty/],
      ['nats://host:4222/', /bucket is empty/],
      ['nats://host:4222', /bucket is missing/],
      ['nats://host:0/b', /1\.\.65535/],
      ['nats://host:99999/b', /1\.\.65535/],
      ['nats://host:abc/b', /1\.\.65535/],
      ['nats://host/b', /host:port/],
      ['nats://h:1/a.b', /bucket/],
      ['s3:///prefix', /bucket is empty/],
      ['s3://Bad_Bucket/x', /S3 bucket/],
      ['s3://bucket/a/../b', /\.\./],
      ['s3://bucket/a//b', /empty segment/],
      ['s3://bucket/x?y=1', /query/],
      ['http://example.com/x', /unknown scheme/],
      ['file:///tmp/x', /as a path/],
      ['/tmp/x\u0000y', /control/],
      // a mistyped separator is not a directory name that would hold the URL (stop 52)
      ['s3:/AKIAX:hunter2-secret@bucket/p', /two slashes/],
      ['nats:host:4222/b', /two slashes/],
      ['S3:bucket', /two slashes/],
    ];
    for (const [text, why] of refused)
      assert.throws(
        () => parseRepoLocation(text),
        (e: unknown) => e instanceof ConfigError && why.test(e.message),
        text,
      );
    // credentials in the URL: refused, and never repeated
    for (const text of [
      'nats://alice:hunter2-secret@host:4222/b',
      's3://AKIAEXAMPLE:hunter2-secret@bucket/p',
      'nats://hunter2-secret@host:4222/b',
    ])
      assert.throws(
        () => parseRepoLocation(text),
        (e: unknown) =>
          e instanceof ConfigError && /credentials/.test(e.message) && !e.message.includes('hunter2-secret'),
      );
    assert.throws(
      () => parseRepoLocation('s3:/AKIAEXAMPLE:hunter2-secret@bucket/p'),
      (e: unknown) => e instanceof ConfigError && !e.message.includes('hunter2-secret'),
    );
    assert.deepEqual(parseRepoLocation('./s3:odd', '/base'), {
      kind: 'local',
      path: '/base/s3:odd',
      display: '/base/s3:odd',
    });
  });

  test('repository location: --repo beats NEXO_MEMORY_REPO beats store: in the config; secrets pass only as set', (t) => {
    const cfg = {
      store: {
        backend: 's3' as const,
        s3: { bucket: 'cfg-bucket', prefix: 'p', access_key_id: 'AK', secret_access_key: 'SK' },
      },
    };
    const saved = process.env.NEXO_MEMORY_REPO;
    t.after(() => {
      if (saved === undefined) delete process.env.NEXO_MEMORY_REPO;
      else process.env.NEXO_MEMORY_REPO = saved;
    });
    delete process.env.NEXO_MEMORY_REPO;
    assert.equal(snapshotterOptionsFromConfig(cfg, {}).repo, 's3://cfg-bucket/p');
    process.env.NEXO_MEMORY_REPO = 'nats://h:4222/env';
    assert.equal(snapshotterOptionsFromConfig(cfg, {}).repo, 'nats://h:4222/env');
    assert.equal(snapshotterOptionsFromConfig(cfg, { repo: '/flag/repo' }).repo, '/flag/repo');
    delete process.env.NEXO_MEMORY_REPO;
    assert.equal(snapshotterOptionsFromConfig({}, {}).repo, undefined, 'no store: → the state root');
    assert.throws(
      () => snapshotterOptionsFromConfig({ store: { backend: 'nats' } }, {}),
      /store\.nats\.servers and .*bucket are required/,
    );
    // the config file: secrets in the wrong place are refused without being repeated
    const dir = tempDir(t, 'nexo-cfg-');
    const file = join(dir, 'memory.yaml');
    for (const [yaml, why] of [
      [
        'snapshot:\n  store:\n    s3:\n      endpoint: http://AKIA:hunter2-secret@minio:9000\n',
        /store\.s3\.endpoint/,
      ],
      [
        'snapshot:\n  store:\n    nats:\n      servers: [nats://u:hunter2-secret@h:4222]\n',
        /store\.nats\.servers/,
      ],
      ['snapshot:\n  store:\n    backend: ftp\n', /store\.backend/],
      ['snapshot:\n  store:\n    s3:\n      secret: hunter2-secret\n', /store\.s3\.secret: unknown key/],
    ] as const) {
      writeFileSync(file, yaml);
      assert.throws(
        () => loadConfig(file),
        (e: unknown) =>
          e instanceof ConfigError && why.test(e.message) && !e.message.includes('hunter2-secret'),
        yaml,
      );
    }
    writeFileSync(file, 'snapshot:\n  store:\n    nats:\n      creds_file: keys/fleet.creds\n');
    assert.equal(loadConfig(file).snapshot.store?.nats?.creds_file, join(dir, 'keys', 'fleet.creds'));
    // nothing configured → nothing passed: the SDK's own chain (AWS_REGION, AWS_ENDPOINT_URL_S3) applies
    assert.deepEqual(backendSettingsFromConfig({ store: { backend: 's3', s3: { bucket: 'b' } } }), {});
    assert.deepEqual(backendSettingsFromConfig(cfg).s3, {
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
    });
  });

  /**
   * The tests of this suite run side by side; the CLI runs in this process (helpers/cli.ts) one run at
   * a time: its runs take turns.
   */
  let turn: Promise<unknown> = Promise.resolve();
  function inTurn(body: () => Promise<RunResult>): Promise<RunResult> {
    const run = turn.then(body);
    turn = run.catch(() => {});
    return run;
  }
  const cliInTurn = (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) =>
    inTurn(() => runCli(args, opts));

  test('two hosts share one repository through --repo: snapshot on A, list/verify/restore on B, B snapshots another agent, prune on A', async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 7 });
    const shared = join(tempDir(t), 'shared-repo');
    const onA = (args: string[], env = {}) => cliInTurn([...args, '--json', '--repo', shared], { env });
    const rootsA = a.flags;
    const rootsB = b.flags;

    const snapA = ok(await onA(['snapshot', '--agent', 'ana', ...rootsA]), 'snapshot on A');
    assert.equal(snapA.bundle_path, `${shared}#${snapA.id}`);
    assert.ok(existsSync(join(shared, 'config', 'config')), 'the repository is where --repo says');
    assert.ok(!existsSync(join(a.stateRoot, 'repository')), "not in A's state root");

    // B: NEXO_MEMORY_REPO instead of the flag
    const viaEnv = { NEXO_MEMORY_REPO: shared };
    const listB = snapshotsOf(
      ok(
        await cliInTurn(['list', '--agent', 'ana', '--json', '--state-root', b.stateRoot], { env: viaEnv }),
        'list on B',
      ),
    );
    assert.deepEqual(
      listB.map((m) => m.id),
      [snapA.id],
    );
    const verified = ok(
      await cliInTurn(['verify', '--agent', 'ana', '--id', snapA.id, '--json', '--state-root', b.stateRoot], {
        env: viaEnv,
      }),
      'verify on B',
    );
    assert.equal(verified.status, 'verified');
    ok(
      await cliInTurn(['restore', '--agent', 'ana', '--from', snapA.id, '--json', ...rootsB], {
        env: { ...allow, ...viaEnv },
      }),
      'restore on B',
    );
    assert.equal(
      readFileSync(join(b.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
      readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'),
      "ana's memory arrived on B",
    );

    const snapB = ok(
      await cliInTurn(['snapshot', '--agent', 'bob', '--json', ...rootsB], { env: viaEnv }),
      'snapshot of bob on B',
    );
    const pruned = ok(await onA(['prune', '--state-root', a.stateRoot]), 'prune on A');
    assert.ok(pruned, 'prune reports');
    const check = ok(await onA(['check', '--read-data', '--state-root', a.stateRoot]), 'check on A');
    assert.deepEqual(check.problems ?? [], []);
    for (const [agent, id, roots] of [
      ['ana', snapA.id, rootsA],
      ['bob', snapB.id, rootsB],
    ] as const) {
      const v = ok(
        await onA(['verify', '--agent', agent, '--id', id, '--state-root', roots[1]!]),
        `verify ${agent} after prune`,
      );
      assert.equal(v.status, 'verified');
    }
    // the local state of each host stayed local: staging, locks, journals under its own state root
    assert.ok(!existsSync(join(shared, 'tenants')));
  });

  /**
   * Runs the CLI in this process (helpers/cli.ts) with its s3:// store `remoteDir` behind FaultyBackend
   * (helpers/faulty-remote.ts) and a fast retry config, in its turn (inTurn).
   */
  async function remoteCli(
    t: Parameters<typeof tempDir>[0],
    remoteDir: string,
    args: string[],
    opts: { faults?: unknown[]; env?: NodeJS.ProcessEnv } = {},
  ): Promise<RunResult> {
    const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
    writeFileSync(
      config,
      'snapshot:\n  store:\n    retry:\n      attempts: 10\n      base_delay_ms: 1\n      max_delay_ms: 5\n',
    );
    return inTurn(async () => {
      const real = remoteFactories.s3;
      remoteFactories.s3 = faultyS3(remoteDir, opts.faults ?? []);
      try {
        return await runCli([...args, '--config', config], { env: opts.env ?? {} });
      } finally {
        remoteFactories.s3 = real;
      }
    });
  }

  function metricValue(text: string, name: string, labels: Record<string, string>): number {
    let total = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
        total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  }

  test('a remote repository: the cache serves what was seen, deleting it loses nothing, a corrupt entry is fetched again', async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const remote = tempDir(t, 'nexo-remote-');
    const repo = 's3://fleet-bucket/agents';
    const metrics = join(tempDir(t), 'm.prom');
    const run = (args: string[]) =>
      remoteCli(t, remote, [...args, '--json', '--repo', repo, '--metrics-file', metrics]);

    const s1 = ok(await run(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot 1');
    const s2 = ok(await run(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot 2');
    assert.ok(
      existsSync(join(remote, 'fleet-bucket', 'agents', 'config', 'config')),
      'objects went to the store',
    );
    assert.ok(!existsSync(join(a.stateRoot, 'repository')), 'nothing of the repository in the state root');
    const up = metricValue(readFileSync(metrics, 'utf8'), 'nexo_memory_snapshot_store_bytes_total', {
      backend: 's3',
      direction: 'up',
    });
    assert.ok(up > 0, 'uploads are metered');

    const list = async () =>
      snapshotsOf(ok(await run(['list', '--agent', 'ana', '--state-root', a.stateRoot]), 'list'))
        .map((m: { id: string }) => m.id)
        .sort();
    const want = [s1.id, s2.id].sort();
    assert.deepEqual(await list(), want, 'cold');
    const cacheDir = await cacheDirOf(join(a.stateRoot, 'cache'), parseRepoLocation(repo));
    const listingFile = join(cacheDir, LISTING_FILE);
    assert.ok(existsSync(listingFile), 'the listing entries are cached, in one file');
    assert.ok(!existsSync(join(cacheDir, 'listing')), 'not one file per entry');
    assert.deepEqual(await list(), want, 'warm');
    const loads = metricValue(readFileSync(metrics, 'utf8'), 'nexo_memory_snapshot_store_requests_total', {
      op: 'load',
    });
    assert.equal(loads, 0, 'a warm list loads nothing from the store');
    const requests = (op: string) =>
      metricValue(readFileSync(metrics, 'utf8'), 'nexo_memory_snapshot_store_requests_total', { op });

    // a corrupt listing file: detected, and what it held fetched again — never shown
    const good = readFileSync(listingFile);
    const bad = Buffer.from(good);
    bad[bad.length - 5]! ^= 0x20;
    writeFileSync(listingFile, bad);
    const listed = snapshotsOf(
      ok(await run(['list', '--agent', 'ana', '--state-root', a.stateRoot]), 'list'),
    );
    assert.deepEqual(listed.map((m: { id: string }) => m.id).sort(), want);
    assert.equal(listed.find((m: { id: string }) => m.id === s1.id).agent_id, 'ana');
    assert.ok(
      metricValue(readFileSync(metrics, 'utf8'), 'nexo_memory_snapshot_store_requests_total', {
        op: 'load',
      }) >= 1,
      'the corrupt entry was fetched again',
    );
    assert.deepEqual(readFileSync(listingFile), good, 'and the cache holds the right bytes again');

    // a snapshot another host forgot (its listing entry removed first) is gone, and leaves the cache
    rmSync(join(remote, 'fleet-bucket', 'agents', 'listing', s2.id));
    assert.deepEqual(await list(), [s1.id]);
    assert.ok(readFileSync(listingFile).includes(s1.id), 'the listing file keeps the listed entry');
    assert.ok(!readFileSync(listingFile).includes(s2.id), 'and drops the forgotten one');
    // deleting the cache loses nothing
    rmSync(join(a.stateRoot, 'cache'), { recursive: true, force: true });
    assert.deepEqual(await list(), [s1.id], 'after the cache was deleted');
    assert.deepEqual(await list(), [s1.id], 'warm again');
    assert.deepEqual(
      ['stat', 'load', 'list', 'save', 'remove'].map(requests),
      [0, 0, 2, 0, 0],
      'a warm list asks the store only for the names of the listing entries and of the pins',
    );
    const restored = await remoteCli(
      t,
      remote,
      ['restore', '--agent', 'ana', '--from', s1.id, '--json', '--repo', repo, ...a.flags],
      {
        env: allow,
      },
    );
    ok(restored, 'restore from the remote repository');
  });

  test('transient failures are retried; once the attempts are spent: exit 8, STORE_UNREACHABLE', async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const remote = tempDir(t, 'nexo-remote-');
    const repo = 's3://fleet-bucket';
    const metrics = join(tempDir(t), 'm.prom');
    // every third save, load, list and stat fails (the 1st, 4th, 7th, …) and succeeds when tried again
    const flaky = (['save', 'load', 'list', 'stat'] as const).flatMap((op) =>
      Array.from({ length: 100 }, (_, i) => ({ op, when: { nth: 3 * i + 1 }, fault: { kind: 'error' } })),
    );
    const snap = ok(
      await remoteCli(
        t,
        remote,
        ['snapshot', '--agent', 'ana', '--json', '--repo', repo, '--metrics-file', metrics, ...a.flags],
        {
          faults: flaky,
        },
      ),
      'snapshot through transient faults',
    );
    const text = readFileSync(metrics, 'utf8');
    assert.ok(
      metricValue(text, 'nexo_memory_snapshot_store_retries_total', { backend: 's3' }) > 0,
      'retries happened',
    );
    assert.ok(metricValue(text, 'nexo_memory_snapshot_store_requests_total', { outcome: 'error' }) > 0);
    const v = ok(
      await remoteCli(
        t,
        remote,
        ['verify', '--agent', 'ana', '--id', snap.id, '--json', '--repo', repo, '--state-root', a.stateRoot],
        {
          faults: [
            ...flaky,
            ...Array.from({ length: 50 }, (_, i) => ({
              op: 'load',
              when: { nth: 6 * i + 2 },
              fault: { kind: 'short-read' },
            })),
          ],
        },
      ),
      'verify through transient faults and short reads',
    );
    assert.equal(v.status, 'verified');

    const down = await remoteCli(
      t,
      remote,
      ['list', '--agent', 'ana', '--json', '--repo', repo, '--state-root', a.stateRoot],
      {
        faults: [
          { op: 'list', fault: { kind: 'error' } },
          { op: 'stat', fault: { kind: 'error' } },
        ],
      },
    );
    assert.equal(down.code, 8, down.stderr);
    const err = json(down).error;
    assert.equal(err.code, 'STORE_UNREACHABLE');
    assert.equal(err.outcome, 'store_unavailable');
    assert.equal(err.details.location, repo);
    assert.match(down.stderr, /unreachable/);
  });

  test('a repository lock that cannot be removed never replaces the outcome: the snapshot is reported (with a warning), a failed check its own error', async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const remote = tempDir(t, 'nexo-remote-');
    const repo = 's3://lock-bucket';
    const noUnlock = [{ op: 'remove', types: ['locks'], fault: { kind: 'error' } }];
    const snap = await remoteCli(
      t,
      remote,
      ['snapshot', '--agent', 'ana', '--json', '--repo', repo, ...a.flags],
      {
        faults: noUnlock,
      },
    );
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stderr, /repository lock of this snapshot was not removed .*ignored once stale/);
    const listed = ok(
      await remoteCli(t, remote, [
        'list',
        '--agent',
        'ana',
        '--json',
        '--repo',
        repo,
        '--state-root',
        a.stateRoot,
      ]),
      'list',
    );
    assert.equal(listed.length, 1, 'the snapshot is there');
    // every pack read fails and the lock stays: the error is the read's, not the lock's
    const v = await remoteCli(
      t,
      remote,
      [
        'verify',
        '--agent',
        'ana',
        '--id',
        listed[0]!.id,
        '--json',
        '--repo',
        repo,
        '--state-root',
        a.stateRoot,
      ],
      { faults: [...noUnlock, { op: 'load', types: ['packs'], fault: { kind: 'error' } }] },
    );
    assert.equal(v.code, 8, v.stdout + v.stderr);
    assert.match(json(v).error.message, /injected/);
    assert.doesNotMatch(json(v).error.message, /locks\//, json(v).error.message);
  });

  test('store.nats.timeout_ms bounds each attempt against an unreachable cluster; the store.s3 library options come from the config', async (t) => {
    const dir = tempDir(t, 'nexo-cfg-');
    const file = join(dir, 'memory.yaml');
    writeFileSync(
      file,
      [
        'snapshot:',
        '  store:',
        '    nats:',
        '      timeout_ms: 300',
        '    s3:',
        '      timeout_ms: 4000',
        '      multipart_threshold: 8388608',
        '      parallel_reads: 2',
        '    retry:',
        '      attempts: 2',
        '      base_delay_ms: 10',
        '      max_delay_ms: 20',
        '',
      ].join('\n'),
    );
    const settings = backendSettingsFromConfig(loadConfig(file).snapshot);
    assert.equal(settings.nats?.timeoutMs, 300);
    assert.deepEqual(settings.s3, { timeoutMs: 4000, multipartThreshold: 8388608, parallelReads: 2 });
    // A port nothing listens on: two attempts of 300 ms each, then exit 8 (not 2 × 10 s).
    const port = await new Promise<number>((done) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => done(p));
      });
    });
    const a = sampleAgent(t, 'ana', { memories: 2, embeddings: 1, files: 1, commits: 1 });
    const down = await runBuiltCli([
      'list',
      '--agent',
      'ana',
      '--json',
      '--config',
      file,
      '--repo',
      `nats://127.0.0.1:${port}/gone`,
      '--state-root',
      a.stateRoot,
    ]);
    assert.equal(down.code, 8, down.stdout + down.stderr);
    assert.equal(json(down).error.code, 'STORE_UNREACHABLE');
    assert.match(json(down).error.message, /2 attempt/);
    // while it retries, stderr says so (stop 58: 50 s of silence with the default retries), once for
    // its first failure within 5 s, however many requests retry side by side
    const warned = down.stderr
      .split('\n')
      .filter((l) => l.startsWith('warning: a request to the nats repository'));
    assert.equal(warned.length, 1, down.stderr);
    assert.match(
      warned[0]!,
      /^warning: a request to the nats repository failed \(\w+: .+\); retrying \(1 failed try so far\)$/,
    );
    // A server that accepts the connection and never answers (a stopped process, a wrong port): the
    // same error, and the process ends with it (the client's timed-out attempts kept their sockets
    // open, and the command ran on after its error until killed).
    const silent = createServer((socket) => socket.on('error', () => {}));
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done));
    t.after(() => silent.close());
    const silentPort = (silent.address() as AddressInfo).port;
    const r = spawnSync(
      process.execPath,
      [
        BIN,
        'list',
        '--agent',
        'ana',
        '--json',
        '--config',
        file,
        '--repo',
        `nats://127.0.0.1:${silentPort}/x`,
        '--state-root',
        a.stateRoot,
      ],
      { encoding: 'utf8', timeout: 60_000, env: { ...outsideEnv(), NEXO_MEMORY_CONFIG: '' } },
    );
    assert.equal(r.signal, null, `the command ended by itself: ${r.stderr}`);
    assert.equal(r.status, 8, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'STORE_UNREACHABLE');
    // Out of range: refused by name.
    writeFileSync(file, 'snapshot:\n  store:\n    s3:\n      multipart_threshold: 1024\n');
    assert.throws(() => loadConfig(file), /store\.s3\.multipart_threshold/);
  });

  test('RetryingBackend: a load cut short or failing mid-stream resumes from the byte it reached; a streamed save is replayed', async () => {
    const inner = new MemoryBackend();
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const h = { type: 'packs' as const, name: 'a'.repeat(64) };
    await inner.save(h, data);
    const transient = () => new TransientStoreError('reset', { backend: 'test', location: inner.location });
    const faulty = new FaultyBackend(inner, {
      rules: [
        { op: 'load', when: { nth: 1 }, fault: { kind: 'error', afterBytes: 100_000, error: transient } },
        { op: 'load', when: { nth: 2 }, fault: { kind: 'short-read', keep: 50_000 } },
        { op: 'save', when: { nth: 1 }, fault: { kind: 'error', afterBytes: 10, error: transient } },
        { op: 'save', when: { nth: 2 }, fault: { kind: 'error', afterCommit: true, error: transient } },
      ],
    });
    const delays: number[] = [];
    const r = new RetryingBackend(faulty, {
      backend: 'test',
      attempts: 5,
      baseDelayMs: 100,
      maxDelayMs: 1000,
      random: () => 0.999,
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    const got = await readAll(r, h, { maxBytes: 1e6, range: { offset: 1000, length: 250_000 } });
    assert.ok(got.equals(data.subarray(1000, 251_000)), 'every byte once, in order');
    assert.deepEqual(
      faulty.fired.map((f) => f.kind),
      ['error', 'short-read'],
    );
    assert.deepEqual(delays, [99, 199], 'full jitter under a doubling cap');

    // a streamed save: the first attempt's stream fails, the second's answer is lost after the commit
    const h2 = { type: 'packs' as const, name: 'b'.repeat(64) };
    async function* parts() {
      const reused = Buffer.alloc(1000);
      for (let i = 0; i < 5; i++) {
        reused.fill(i); // the caller reuses its buffer: the replay must not see the change
        yield reused;
      }
    }
    await r.save(h2, parts(), { ifAbsent: true });
    const stored = await readAll(inner, h2, { maxBytes: 1e6 });
    assert.deepEqual([...new Set(stored)], [0, 1, 2, 3, 4]);
    assert.equal(stored.length, 5000);

    // parts past the room the replay copy was sized with (small first, then larger than it): replayed whole
    const h3 = { type: 'packs' as const, name: 'c'.repeat(64) };
    const sizes = [10, 300_000, 700_000, 1];
    async function* growing() {
      const reused = Buffer.alloc(700_000);
      for (const [i, n] of sizes.entries()) {
        reused.fill(i + 1);
        yield reused.subarray(0, n);
      }
    }
    const once = new FaultyBackend(inner, {
      rules: [
        { op: 'save', when: { nth: 1 }, fault: { kind: 'error', afterBytes: 500_000, error: transient } },
      ],
    });
    await new RetryingBackend(once, { backend: 'test', sleep: async () => {} }).save(h3, growing());
    assert.equal(once.fired.length, 1, 'the first attempt failed');
    const want = Buffer.concat(sizes.map((n, i) => Buffer.alloc(n, i + 1)));
    assert.ok((await readAll(inner, h3, { maxBytes: 2e6 })).equals(want));

    // spent: STORE_UNREACHABLE naming the store
    const dead = new RetryingBackend(
      new FaultyBackend(inner, { rules: [{ op: 'stat', fault: { kind: 'error', error: transient } }] }),
      { backend: 'test', attempts: 3, sleep: async () => {} },
    );
    await assert.rejects(
      dead.stat(h),
      (e: unknown) =>
        e instanceof StoreUnavailableError &&
        e.code === 'STORE_UNREACHABLE' &&
        e.exitCode === 8 &&
        /3 times/.test(e.message),
    );
    // not transient: no retry
    let calls = 0;
    const plain = new RetryingBackend(
      new FaultyBackend(inner, {
        rules: [
          {
            op: 'stat',
            fault: {
              kind: 'error',
              error: () => {
                calls++;
                return new Error('permanent');
              },
            },
          },
        ],
      }),
      { backend: 'test', sleep: async () => {} },
    );
    await assert.rejects(plain.stat(h), /permanent/);
    assert.equal(calls, 1);
  });

  test('CachedBackend: a damaged cache entry of a hash-named object is never trusted', async (t) => {
    const inner = new MemoryBackend();
    const dir = tempDir(t);
    const bytes = Buffer.from('index bytes');
    const { createHash } = await import('node:crypto');
    const h = { type: 'index' as const, name: createHash('sha256').update(bytes).digest('hex') };
    await inner.save(h, bytes);
    const c = new CachedBackend(inner, dir);
    assert.ok((await readAll(c, h, { maxBytes: 1000 })).equals(bytes));
    const entry = join(dir, 'index', h.name);
    assert.ok(existsSync(entry));
    // an entry whose checksum matches its content but not its name (a swapped file)
    const other = Buffer.from('other bytes');
    writeFileSync(entry, Buffer.concat([createHash('sha256').update(other).digest(), other]));
    assert.ok((await readAll(c, h, { maxBytes: 1000 })).equals(bytes));
    assert.equal(c.refetched, 1);
    // not cached: pins and locks (they change), and packs
    await inner.save({ type: 'pins', name: '01a2322e-8ca4-772c-8993-6dd27eec3a37' }, Buffer.alloc(0));
    await readAll(c, { type: 'pins', name: '01a2322e-8ca4-772c-8993-6dd27eec3a37' }, { maxBytes: 10 });
    assert.ok(!existsSync(join(dir, 'pins')));
  });

  test('CachedBackend.evict: a listing entry a reader found damaged is forgotten, the next read goes to the store; a manifest is never served from the cache (stop 51)', async (t) => {
    const inner = new MemoryBackend();
    const dir = tempDir(t);
    const c = new CachedBackend(inner, dir);
    const ids = ['01a2322e-8ca4-772c-8993-6dd27eec3a37', '01a2322e-8ca4-772c-8993-6dd27eec3a38'];
    const listing = (n: string) => ({ type: 'listing' as const, name: n });
    const manifest = { type: 'snapshots' as const, name: ids[0]! };
    // what the cache took in: one entry and the manifest damaged (in transit), the other entry whole
    await inner.save(listing(ids[0]!), Buffer.from('damaged'));
    await inner.save(listing(ids[1]!), Buffer.from('entry 2'));
    await inner.save(manifest, Buffer.from('damaged manifest'));
    await c.loadMany('listing', ids, 1000);
    await readAll(c, manifest, { maxBytes: 1000 });
    // the store holds the right bytes; the cache still answers its copy of the entry, never of the
    // manifest (an id can come back with other content: deleted, then imported again)
    await inner.save(listing(ids[0]!), Buffer.from('entry 1'));
    await inner.save(manifest, Buffer.from('manifest'));
    assert.equal(String((await c.loadMany('listing', ids, 1000))[0]), 'damaged');
    assert.equal(String(await readAll(c, manifest, { maxBytes: 1000 })), 'manifest');
    assert.ok(!existsSync(join(dir, 'snapshots')), 'no manifest kept');
    await c.evict(listing(ids[0]!));
    await c.evict(manifest);
    assert.deepEqual((await c.loadMany('listing', ids, 1000)).map(String), ['entry 1', 'entry 2']);
    assert.equal(String(await readAll(c, manifest, { maxBytes: 1000 })), 'manifest');
    // evicting what the cache does not hold does nothing
    await c.evict(listing('01a2322e-8ca4-772c-8993-6dd27eec3a39'));
    assert.deepEqual((await c.loadMany('listing', ids, 1000)).map(String), ['entry 1', 'entry 2']);
  });

  test('RetryingBackend: a whole load asks for the size (a stat) unless the backend says its loads are complete', async () => {
    const inner = new MemoryBackend();
    const h = { type: 'snapshots' as const, name: '0190c3a2-0000-7000-8000-000000000001' };
    await inner.save(h, Buffer.from('manifest'));
    let stats = 0;
    const stat = inner.stat.bind(inner);
    inner.stat = (x) => {
      stats++;
      return stat(x);
    };
    const r = new RetryingBackend(inner, { backend: 'test', sleep: async () => {} });
    assert.equal((await readAll(r, h, { maxBytes: 100 })).toString(), 'manifest');
    assert.equal(stats, 1, 'a stream cut short must be told from the whole object');
    Object.assign(inner, { completeLoads: true });
    assert.equal((await readAll(r, h, { maxBytes: 100 })).toString(), 'manifest');
    assert.equal(stats, 1, 'no stat when the backend never ends a load short without an error');
  });

  /** A memory store with `n` listing entries, counting the loads that reach it. */
  async function listingStore(
    n: number,
  ): Promise<{ inner: MemoryBackend; names: string[]; loads: () => number }> {
    const inner = new MemoryBackend();
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = `0190c3a2-0000-7000-8000-${String(i).padStart(12, '0')}`;
      names.push(name);
      await inner.save(
        { type: 'listing', name },
        Buffer.from(`{"entry":${i},"pad":"${'x'.repeat(i * 7)}"}\n`),
      );
    }
    let loads = 0;
    const load = inner.load.bind(inner);
    inner.load = (h, range) => {
      loads++;
      return load(h, range);
    };
    return { inner, names, loads: () => loads };
  }

  const truth = (inner: MemoryBackend, names: string[]) =>
    Promise.all(names.map((name) => readAll(inner, { type: 'listing', name }, { maxBytes: 1 << 20 })));

  test('CachedBackend.loadMany: the listing entries in one file; a warm read loads nothing; forgotten names leave it', async (t) => {
    const { inner, names, loads } = await listingStore(5);
    const dir = tempDir(t);
    const c = new CachedBackend(inner, dir);
    const want = await truth(inner, names);
    const before = loads();
    assert.deepEqual(await c.loadMany('listing', names, 1 << 20), want, 'cold');
    assert.equal(loads() - before, 5, 'each entry loaded once');
    assert.deepEqual(readdirSync(dir), [LISTING_FILE], 'one file, no file per entry');
    const file = readFileSync(join(dir, LISTING_FILE));
    assert.deepEqual(await c.loadMany('listing', names, 1 << 20), want, 'warm');
    assert.equal(loads() - before, 5, 'a warm read loads nothing');
    assert.deepEqual(readFileSync(join(dir, LISTING_FILE)), file, 'and does not rewrite the file');
    // a name the store no longer lists leaves the file; one listed but not there (forgotten meanwhile) is undefined
    await inner.remove({ type: 'listing', name: names[1]! });
    assert.deepEqual(await c.loadMany('listing', [names[0]!, names[2]!], 1 << 20), [want[0], want[2]]);
    assert.equal(loads() - before, 5, 'from the file');
    const rest = [names[0]!, names[1]!, names[2]!];
    assert.deepEqual(await c.loadMany('listing', rest, 1 << 20), [want[0], undefined, want[2]]);
    assert.equal(loads() - before, 6, 'only the entry not in the file was asked for');
    const fresh = new CachedBackend(new MemoryBackend(), dir); // a store without them: only the file answers
    assert.deepEqual(await fresh.loadMany('listing', names, 1 << 20), [
      want[0],
      undefined,
      want[2],
      undefined,
      undefined,
    ]);
    // an entry over the cap is not taken from the file
    await assert.rejects(c.loadMany('listing', [names[4]!], 4), { code: 'OBJECT_TOO_LARGE' });
    // deleting the cache loses nothing
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(await c.loadMany('listing', names, 1 << 20), [
      want[0],
      undefined,
      want[2],
      want[3],
      want[4],
    ]);
  });

  test('CachedBackend.loadMany: a listing file with any byte flipped, or cut short, is never trusted', async (t) => {
    const { inner, names } = await listingStore(3);
    const dir = tempDir(t);
    const want = await truth(inner, names);
    await new CachedBackend(inner, dir).loadMany('listing', names, 1 << 20);
    const path = join(dir, LISTING_FILE);
    const good = readFileSync(path);
    const damaged: Buffer[] = [];
    for (let i = 0; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad[i]! ^= 1 << (i % 8);
      damaged.push(bad);
    }
    for (const cut of [1, 20, good.length - 1]) damaged.push(good.subarray(0, cut));
    damaged.push(Buffer.concat([good, Buffer.from('trailing')]));
    for (const [k, bad] of damaged.entries()) {
      writeFileSync(path, bad);
      const c = new CachedBackend(inner, dir);
      assert.deepEqual(await c.loadMany('listing', names, 1 << 20), want, `damage ${k}`);
      assert.equal(c.refetched, 1, `damage ${k} is noticed`);
      assert.deepEqual(readFileSync(path), good, `damage ${k} is repaired`);
    }
  });

  test('CachedBackend.loadMany: a cache of one file per listing entry (before the listing file) is used and replaced', async (t) => {
    const { inner, names, loads } = await listingStore(3);
    const dir = tempDir(t);
    const want = await truth(inner, names);
    const { createHash } = await import('node:crypto');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'listing'));
    for (const [i, name] of names.entries()) {
      const content = i === 1 ? Buffer.from('damaged') : want[i]!;
      const sum = createHash('sha256')
        .update(i === 1 ? want[i]! : content)
        .digest();
      writeFileSync(join(dir, 'listing', name), Buffer.concat([sum, content]));
    }
    const before = loads();
    const c = new CachedBackend(inner, dir);
    assert.deepEqual(await c.loadMany('listing', names, 1 << 20), want);
    assert.equal(loads() - before, 1, 'only the damaged old entry came from the store');
    assert.deepEqual(readdirSync(dir), [LISTING_FILE], 'the old layout is gone');
  });

  /** A backend whose lock saves move `clock` forward by `slowMs` each (a save that takes that long). */
  function slowLockSaves(inner: MemoryBackend, clock: { t: number }, slowMs: () => number): MemoryBackend {
    const save = inner.save.bind(inner);
    inner.save = async (h, data, opts) => {
      await save(h, data, opts);
      if (h.type === 'locks') clock.t += slowMs();
    };
    return inner;
  }

  test('repository locks across hosts: same host name elsewhere, a slow lock write, a late refresh', async () => {
    const backend = new MemoryBackend();
    const t0 = Date.now();
    // Another machine (or container) with the same host name: its pid means nothing here.
    const elsewhere = {
      exclusive: false,
      operation: 'snapshot',
      host: hostname(),
      host_id: 'another-boot/pid:[1]',
      pid: 2 ** 22 + 12345, // no such process on this host
      created_at_ms: t0,
      refreshed_at_ms: t0,
    };
    assert.equal(isStale(elsewhere, t0), false, 'a live lock of another machine is not judged by pid');
    assert.equal(
      isStale({ ...elsewhere, host_id: ownHostId() }, t0),
      true,
      'a dead pid of this very host is',
    );
    await backend.save({ type: 'locks', name: 'e'.repeat(64) }, Buffer.from(JSON.stringify(elsewhere)));
    await assert.rejects(lockRepository(backend, true, 'prune', 0), /locked: shared lock of snapshot/);
    await backend.remove({ type: 'locks', name: 'e'.repeat(64) });

    // New locks carry this host's identity.
    const l = await lockRepository(backend, false, 'snapshot', 0);
    const info = JSON.parse(
      (await readAll(backend, { type: 'locks', name: l.name }, { maxBytes: 4096 })).toString(),
    );
    assert.equal(info.host_id, ownHostId());
    await l.release();

    // A lock whose save took longer than the trust window is withdrawn, never counted on.
    const clock = { t: t0 };
    let slow = TRUST_MS + 1000;
    const slowB = slowLockSaves(new MemoryBackend(), clock, () => slow);
    await assert.rejects(
      lockRepository(slowB, true, 'prune', 0, { now: () => clock.t, monotonic: () => clock.t }),
      /not trusted/,
    );
    assert.deepEqual(await names(slowB), [], 'the slow lock was withdrawn');

    // A holder whose refresh comes after the trust window (suspended, or a slow store) has lost its lock:
    // it does not write it again, and check() stops the operation.
    slow = 0;
    const held = await lockRepository(slowB, false, 'snapshot', 0, {
      now: () => clock.t,
      monotonic: () => clock.t,
    });
    const before = (await readAll(slowB, { type: 'locks', name: held.name }, { maxBytes: 4096 })).toString();
    clock.t += TRUST_MS + 1;
    await held.refresh();
    const after = (await readAll(slowB, { type: 'locks', name: held.name }, { maxBytes: 4096 })).toString();
    assert.equal(after, before, 'not rewritten');
    await assert.rejects(
      held.check(),
      /lost: its last write started \d+ s ago, more than the 25 min it is counted on/,
    );
    await held.release();

    // A store that took the lock, lost its answer and, retrying, reports the name as taken: it is ours.
    const lossy = new MemoryBackend();
    const store = lossy.save.bind(lossy);
    lossy.save = async (h, data, opts) => {
      await store(h, data, opts);
      if (h.type === 'locks' && opts?.ifAbsent) throw new ObjectExistsError(h.type, h.name, lossy.location);
    };
    const mine = await lockRepository(lossy, true, 'prune', 0);
    await mine.check();
    assert.deepEqual(await names(lossy), [mine.name]);
    await mine.release();
    // A refresh whose write itself outlasts the trust window is not counted on either.
    const held2 = await lockRepository(slowB, false, 'snapshot', 0, {
      now: () => clock.t,
      monotonic: () => clock.t,
    });
    clock.t += REFRESH_MS;
    slow = TRUST_MS;
    await held2.refresh();
    await assert.rejects(held2.check(), /lost/);
    await held2.release();
  });

  test('a repository lock waits on the monotonic clock: the wall clock stepped back or forward during the wait neither stretches nor ends it; staleness stays on the wall clock (stop 47)', async () => {
    // A live exclusive lock of another host blocks; each look at the locks moves the monotonic clock
    // 300 ms and the wall clock as the case says. No real time is waited beyond the backoff's first
    // steps, and nothing is timed: the clocks are the test's.
    const blocker = 'b'.repeat(64);
    const setUp = async (onLook: (look: number, b: MemoryBackend) => Promise<void>) => {
      const b = new MemoryBackend();
      const t = Date.now();
      const info = { exclusive: true, operation: 'prune', host: 'elsewhere', host_id: 'other/boot', pid: 7 };
      await b.save(
        { type: 'locks', name: blocker },
        Buffer.from(JSON.stringify({ ...info, created_at_ms: t, refreshed_at_ms: t })),
      );
      const clocks = { wall: t, mono: 0, looks: 0 };
      const list = b.list.bind(b);
      b.list = async function* (type) {
        if (type === 'locks') {
          clocks.looks++;
          clocks.mono += 300;
          // a wait that never ends on the old code is cut here, not by the test's timeout
          if (clocks.looks > 8) throw new Error(`still waiting after ${clocks.looks - 1} looks`);
          await onLook(clocks.looks, b);
        }
        yield* list(type);
      };
      const opts = { now: () => clocks.wall, monotonic: () => clocks.mono };
      return { b, clocks, opts };
    };

    // The wall clock stepped back an hour at every look: the 0.6 s wait ends after its 0.6 s of
    // monotonic time (2 looks), naming the blocker.
    {
      const { b, clocks, opts } = await setUp(async () => {
        clocks.wall -= 3_600_000;
      });
      await assert.rejects(lockRepository(b, true, 'prune', 600, opts), /locked: exclusive lock of "?prune/);
      assert.equal(clocks.looks, 2);
    }
    // The wall clock stepped 20 min forward at the second look (not enough to make the blocker stale,
    // 30 min): the 5 s wait goes on, and takes the lock once the blocker is gone (the third look).
    {
      const { b, clocks, opts } = await setUp(async (look, store) => {
        if (look === 2) clocks.wall += 20 * 60_000;
        if (look === 3) await store.remove({ type: 'locks', name: blocker });
      });
      const l = await lockRepository(b, true, 'prune', 5000, opts);
      const info = JSON.parse(
        (await readAll(b, { type: 'locks', name: l.name }, { maxBytes: 4096 })).toString(),
      );
      assert.equal(info.created_at_ms, clocks.wall, 'the lock records the wall clock');
      await l.check();
      // Held past the trust window by the monotonic clock while the wall clock went back an hour: others
      // may judge it stale by now, so it is lost (by the wall clock it would look fresh).
      clocks.wall -= 3_600_000;
      clocks.mono += TRUST_MS + 1;
      await assert.rejects(l.check(), /lost/);
      await l.release();
    }
    // Staleness is the wall clock's: 31 min later by it, the blocker is stale and removed, however
    // little monotonic time passed.
    {
      const { b, clocks, opts } = await setUp(async () => {});
      clocks.wall += 31 * 60_000;
      const l = await lockRepository(b, true, 'prune', 0, opts);
      assert.deepEqual(await names(b), [l.name], 'the stale blocker was removed');
      await l.release();
    }
  });

  async function names(b: MemoryBackend): Promise<string[]> {
    const out: string[] = [];
    for await (const o of b.list('locks')) out.push(o.name);
    return out;
  }

  test('an S3 endpoint that does not speak S3 (a NATS port) is named as such, not "the S3 store answered Error"', async (t) => {
    const nats = createServer((socket) => {
      socket.on('error', () => {});
      socket.end('INFO {"server_id":"x"}\r\n');
    });
    await new Promise<void>((done) => nats.listen(0, '127.0.0.1', done));
    t.after(() => nats.close());
    const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
    writeFileSync(
      config,
      [
        'snapshot:',
        '  store:',
        '    s3:',
        `      endpoint: http://127.0.0.1:${(nats.address() as AddressInfo).port}`,
        '      region: us-east-1',
        '      force_path_style: true',
        '      access_key_id: k',
        '      secret_access_key: s',
        '    retry:',
        '      attempts: 1',
        '',
      ].join('\n'),
    );
    const a = sampleAgent(t, 'ana', SMALL);
    const r = await runBuiltCli([
      'list',
      '--agent',
      'ana',
      '--json',
      '--config',
      config,
      '--repo',
      's3://bucket/x',
      '--state-root',
      a.stateRoot,
    ]);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stderr, /answered Error\b/, r.stderr);
    assert.match(
      r.stderr,
      /the endpoint did not answer as an S3 store \(.*\); check store\.s3\.endpoint/,
      r.stderr,
    );
  });

  test('the CLI on S3-compatible storage (s3rver): config with ${VAR} secrets, snapshot on A, list and restore on B', async (t) => {
    const s3 = startFixture(t, 's3rver.ts', ['fleet'], { NODE_OPTIONS: '--openssl-legacy-provider' });
    await s3.ready;
    const [, endpoint, dir] = s3.output().trim().split(' ') as [string, string, string];
    const server = { endpoint, dir };
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 3 });
    const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
    writeFileSync(
      config,
      [
        'snapshot:',
        '  store:',
        '    backend: s3',
        '    s3:',
        '      bucket: fleet',
        '      prefix: agents/prod',
        `      endpoint: ${server.endpoint}`,
        '      region: us-east-1',
        '      force_path_style: true',
        '      access_key_id: ${TEST_S3_KEY}',
        '      secret_access_key: ${TEST_S3_SECRET}',
        '',
      ].join('\n'),
    );
    const secret = 'S3RVER-does-not-check-this-secret';
    const env = { TEST_S3_KEY: 'S3RVER', TEST_S3_SECRET: secret, ...allow };
    const cli = (args: string[]) => cliInTurn([...args, '--json', '--config', config], { env });
    const snap = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
    assert.equal(snap.bundle_path, `s3://fleet/agents/prod#${snap.id}`);
    assert.ok(existsSync(join(server.dir, 'fleet')), 'the objects are in the bucket');
    const listed = snapshotsOf(
      ok(await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list on B'),
    );
    assert.deepEqual(
      listed.map((m: { id: string }) => m.id),
      [snap.id],
    );
    ok(await cli(['restore', '--agent', 'ana', '--from', snap.id, ...b.flags]), 'restore on B');
    assert.equal(
      readFileSync(join(b.memdirRoot, 'ana', 'MEMORY.md'), 'utf8'),
      readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'),
    );
    // --repo overrides the config's bucket; the settings (endpoint, credentials) still apply
    const other = await cli([
      'list',
      '--agent',
      'ana',
      '--state-root',
      b.stateRoot,
      '--repo',
      's3://missing-bucket',
    ]);
    assert.equal(other.code, 8, other.stdout + other.stderr);
    assert.equal(json(other).error.code, 'STORE_MISSING');
    for (const r of [other])
      assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'the secret is never printed');
  });

  test('the CLI on NATS JetStream: --repo nats://…, credentials from the config through ${VAR}; wrong ones: STORE_AUTH, never printed', async (t) => {
    const { startAuthServer } = await import('./helpers/nats-cluster.js');
    const password = 'nats-pass-never-printed';
    const server = await startAuthServer('fleet-user', password);
    t.after(() => server.stop());
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 5 });
    const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
    writeFileSync(
      config,
      'snapshot:\n  store:\n    nats:\n      user: fleet-user\n      password: ${TEST_NATS_PASSWORD}\n',
    );
    const repo = `${server.url}/fleet_repo`;
    const cli = (args: string[], pass = password) =>
      cliInTurn([...args, '--json', '--config', config], {
        env: { TEST_NATS_PASSWORD: pass, NEXO_MEMORY_REPO: repo, ...allow },
      });
    // before the first snapshot the buckets do not exist: list says so, retention has nothing to do
    const early = await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]);
    assert.equal(early.code, 8, early.stdout + early.stderr);
    assert.equal(json(early).error.code, 'STORE_MISSING');
    ok(await cli(['gc', '--all', '--state-root', b.stateRoot]), 'gc before the first snapshot');
    const snap = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
    assert.equal(snap.bundle_path, `${repo}#${snap.id}`);
    const listed = snapshotsOf(
      ok(await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list on B'),
    );
    assert.deepEqual(
      listed.map((m: { id: string }) => m.id),
      [snap.id],
    );
    const v = ok(
      await cli(['verify', '--agent', 'ana', '--id', snap.id, '--state-root', b.stateRoot]),
      'verify on B',
    );
    assert.equal(v.status, 'verified');
    const wrong = await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot], 'wrong-password-xyz');
    assert.equal(wrong.code, 8, wrong.stdout + wrong.stderr);
    assert.equal(json(wrong).error.code, 'STORE_AUTH');
    for (const r of [wrong]) {
      assert.ok(!`${r.stdout}${r.stderr}`.includes('wrong-password-xyz'));
      assert.ok(!`${r.stdout}${r.stderr}`.includes(password));
    }
  });
});
