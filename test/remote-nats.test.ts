// The CLI on a real 3-node JetStream cluster (started once for this file, buckets with 3 replicas):
// snapshot on host A with --repo nats://n1,n2,n3/bucket, list/verify/restore on host B, prune and
// check --read-data; with the cluster's majority killed a snapshot fails with exit 8 STORE_UNREACHABLE,
// nothing of it is visible, and the same command succeeds once the nodes are back. Two hosts snapshot
// different agents while a third prunes: nothing lost; prune waits for (and never removes a pack of) a
// snapshot holding the repository lock on another host. A bundle exported from host A's local store is
// imported (--store-only) on host B into the JetStream repository, and lists, verifies and restores. A
// CLI snapshot whose stream leader is killed (SIGKILL) mid-upload completes and restores elsewhere.
// migrate into a NATS repository that does not exist yet creates it.
// Commands run in this process (runCli) but for those that overlap with others or with the test's own
// work, which are processes of the built CLI.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { openNatsBackend } from '../src/backend/nats.js';
import { lockRepository } from '../src/repository/locks.js';
import { hexName } from './helpers/backend-conformance.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { type Json, json, ok } from './helpers/cli-json.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';
import { armExitWatchdog } from './helpers/exit-watchdog.js';
import { closeClient, type NatsCluster, startNatsCluster } from './helpers/nats-cluster.js';
import { bundleImportedInto, restoreAna } from './helpers/remote-cli.js';

let cluster: NatsCluster;
before(async () => {
  cluster = await startNatsCluster();
});
after(async () => {
  await cluster?.stop();
  armExitWatchdog('remote-nats.test.ts');
});

const SMALL = { memories: 40, embeddings: 10, files: 3, commits: 2 };

const ids = (out: Json): string[] => (Array.isArray(out) ? out : out.snapshots).map((m: Json) => m.id);

/**
 * Waits until the repository's object store stream has a leader (after nodes came back): short requests
 * (a stream without a leader answers nothing), two minutes in all, then an error saying what the running
 * nodes knew of the stream.
 */
async function waitForStreamLeader(bucket: string): Promise<void> {
  await cluster.waitForMetaLeader();
  const deadline = Date.now() + 120_000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const nc = await connect({ servers: cluster.urls, timeout: 5_000, maxReconnectAttempts: 0 });
      try {
        const si = await (await jetstreamManager(nc, { timeout: 2_000 })).streams.info(`OBJ_${bucket}`);
        if (si.cluster?.leader) return;
      } finally {
        await closeClient(nc);
      }
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const known = await Promise.all(
    cluster.nodes.filter((n) => n.running).map(async (n) => [n.name, await n.streamCluster(`OBJ_${bucket}`)]),
  );
  throw new Error(
    `the stream of ${bucket} has no leader 2 minutes after its nodes came back: ${JSON.stringify(known)}`,
    {
      cause: last,
    },
  );
}

/** A step's time since the test began, as a diagnostic line of the test (where a slow run spent it). */
function stepClock(t: { diagnostic(message: string): void }): (step: string) => void {
  const t0 = Date.now();
  return (step) => t.diagnostic(`+${((Date.now() - t0) / 1000).toFixed(1)} s ${step}`);
}

/** Each test ends within this (a cluster that never recovers fails the test that waits on it, by name). */
const LIMIT = { timeout: 240_000 };

/** A config for the CLI runs: R3 buckets, one attempt per request (the nodes' loss is the point). */
function natsConfig(t: Parameters<typeof tempDir>[0], extra: string[] = []): string {
  const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
  writeFileSync(
    config,
    [
      'snapshot:',
      '  store:',
      '    nats:',
      '      replicas: 3',
      '    retry:',
      '      attempts: 1',
      '      base_delay_ms: 20',
      '      max_delay_ms: 100',
      ...extra,
      '',
    ].join('\n'),
  );
  return config;
}

const repoUrl = (bucket: string) =>
  `nats://${cluster.urls.map((u) => u.slice('nats://'.length)).join(',')}/${bucket}`;

/** The CLI in this process on `repo` with `config`, its output --json, restores allowed. */
const cliOn = (config: string, repo: string) => (args: string[]) =>
  runCli([...args, '--json', '--config', config, '--repo', repo], {
    env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' },
  });

test(
  'two hosts share a repository on a 3-node JetStream cluster; the majority down: exit 8, nothing half-visible, the same snapshot succeeds once back',
  LIMIT,
  async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 11 });
    const config = natsConfig(t);
    const bucket = 'fleet_e2e';
    const repo = repoUrl(bucket);
    const cli = cliOn(config, repo);

    const step = stepClock(t);
    const first = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
    assert.equal(first.bundle_path, `${repo}#${first.id}`);
    step('snapshot on A');
    const nc = await connect({ servers: cluster.urls });
    try {
      const si = await (await jetstreamManager(nc)).streams.info(`OBJ_${bucket}`);
      assert.equal(si.config.num_replicas, 3, 'the repository is replicated on 3 nodes');
    } finally {
      await closeClient(nc);
    }

    // Host B: its own state root, the same repository.
    assert.deepEqual(
      ids(ok(await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list on B')),
      [first.id],
    );
    const verified = ok(
      await cli(['verify', '--agent', 'ana', '--id', first.id, '--state-root', b.stateRoot]),
      'verify on B',
    );
    assert.equal(verified.status, 'verified');
    await restoreAna(cli, first.id, a, b, 'restore on B', "ana's memory arrived on B");
    ok(await cli(['prune', '--state-root', a.stateRoot]), 'prune on A');
    assert.deepEqual(
      ok(await cli(['check', '--read-data', '--state-root', b.stateRoot]), 'check on B').problems ?? [],
      [],
    );

    // The majority down: the snapshot of bob on B fails as unreachable, and leaves nothing visible.
    t.after(async () => {
      await Promise.all(cluster.nodes.map((n) => n.start()));
    });
    step('list, verify, restore on B; prune on A; check on B');
    await Promise.all([cluster.nodes[0]!.kill(), cluster.nodes[2]!.kill()]);
    const down = await cli(['snapshot', '--agent', 'bob', ...b.flags]);
    assert.equal(down.code, 8, down.stdout + down.stderr);
    assert.equal(json(down).error.code, 'STORE_UNREACHABLE');
    step('n1 and n3 killed: the snapshot refused');

    await Promise.all(cluster.nodes.map((n) => n.start()));
    step('n1 and n3 started again');
    await waitForStreamLeader(bucket);
    step('the stream has a leader');
    assert.deepEqual(ids(ok(await cli(['list', '--agent', 'bob', '--state-root', a.stateRoot]), 'list')), []);
    const again = ok(await cli(['snapshot', '--agent', 'bob', ...b.flags]), 'the same snapshot, nodes back');
    assert.deepEqual(ids(ok(await cli(['list', '--agent', 'bob', '--state-root', a.stateRoot]), 'list')), [
      again.id,
    ]);
    const check = ok(await cli(['check', '--read-data', '--state-root', a.stateRoot]), 'check on A');
    assert.deepEqual(check.problems ?? [], []);
    step('the same snapshot, listed and checked');
  },
);

test(
  'two hosts snapshot different agents into one JetStream repository while a third prunes: nothing lost',
  LIMIT,
  async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 13 });
    const c = sampleAgent(t, 'cyd', { ...SMALL, seed: 17 });
    const config = natsConfig(t);
    const repo = repoUrl('fleet_busy');
    const cli = cliOn(config, repo);
    // Garbage for prune: ana's first snapshot, deleted after a second one.
    const s1 = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'first snapshot of ana');
    appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- a line only the second snapshot has\n');
    const s2 = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'second snapshot of ana');
    ok(
      await cli(['delete', '--agent', 'ana', '--id', s1.id, '--yes', '--state-root', a.stateRoot]),
      'delete',
    );
    appendFileSync(join(a.memdir, 'MEMORY.md'), '\n- and a line only the third has\n');

    // The three hosts that overlap are processes of the built CLI (in-process runs are one at a time).
    const host = (args: string[]) =>
      runBuiltCli([...args, '--json', '--config', config, '--repo', repo], {
        env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' },
      });
    const step = stepClock(t);
    const [s3, sb, pruned] = await Promise.all([
      host(['snapshot', '--agent', 'ana', ...a.flags]),
      host(['snapshot', '--agent', 'bob', ...b.flags]),
      host(['prune', '--state-root', c.stateRoot]),
    ]);
    const third = ok(s3, 'snapshot of ana on A');
    const ofBob = ok(sb, 'snapshot of bob on B');
    ok(pruned, 'prune on C');
    step('two snapshots and a prune at once');

    const check = ok(await cli(['check', '--read-data', '--state-root', c.stateRoot]), 'check on C');
    assert.deepEqual(check.problems ?? [], []);
    assert.deepEqual(
      ids(ok(await cli(['list', '--agent', 'ana', '--state-root', c.stateRoot]), 'list ana')).sort(),
      [s2.id, third.id].sort(),
    );
    assert.deepEqual(
      ids(ok(await cli(['list', '--agent', 'bob', '--state-root', c.stateRoot]), 'list bob')),
      [ofBob.id],
    );
    for (const [agent, id] of [
      ['ana', s2.id],
      ['ana', third.id],
      ['bob', ofBob.id],
    ] as const) {
      const v = ok(
        await cli(['verify', '--agent', agent, '--id', id, '--state-root', c.stateRoot]),
        'verify',
      );
      assert.equal(v.status, 'verified', `${agent} ${id}`);
    }
    await restoreAna(cli, third.id, a, c, 'restore on C');
  },
);

test(
  'prune waits for a snapshot holding the shared lock on another host and leaves its uploaded pack alone',
  LIMIT,
  async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const c = sampleAgent(t, 'cyd', { ...SMALL, seed: 19 });
    const config = natsConfig(t, ['  lock_timeout_secs: 2']);
    const bucket = 'fleet_locked';
    const cli = cliOn(config, repoUrl(bucket));
    ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
    // "Host B" in the middle of a snapshot: its shared lock held, one pack uploaded, no index yet.
    const backend = await openNatsBackend({ servers: cluster.urls, bucket, timeoutMs: 3000 });
    t.after(() => backend.close());
    const held = await lockRepository(backend, false, 'snapshot', 0);
    const pack = { type: 'packs', name: hexName('a pack of a snapshot under way') } as const;
    await backend.save(pack, randomBytes(4096));

    const refused = await cli(['prune', '--state-root', c.stateRoot]);
    assert.equal(json(refused).error?.code, 'REPOSITORY_LOCKED', refused.stdout + refused.stderr);
    assert.equal((await backend.stat(pack)).size, 4096, 'the pack of the running snapshot is still there');

    // Once that snapshot is over (here: abandoned), prune takes its lock and removes the unindexed pack.
    await held.release();
    const pruned = ok(await cli(['prune', '--state-root', c.stateRoot]), 'prune after the release');
    assert.ok(pruned.packs_unindexed_removed >= 1, JSON.stringify(pruned));
    await assert.rejects(backend.stat(pack), /not found/);
    const check = ok(await cli(['check', '--read-data', '--state-root', c.stateRoot]), 'check');
    assert.deepEqual(check.problems ?? [], []);
  },
);

test(
  'a bundle exported from the local store of host A is imported on host B into the JetStream repository (--store-only): it lists, verifies and restores',
  LIMIT,
  async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 23 });
    const config = natsConfig(t);
    const repo = repoUrl('fleet_import');
    const cli = (args: string[]) =>
      runCli([...args, '--json', '--config', config], { env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' } });
    await bundleImportedInto(t, cli, repo, a, b);
  },
);

test(
  'a CLI snapshot with the stream leader killed (SIGKILL) mid-upload completes, and restores on another host',
  LIMIT,
  async (t) => {
    // ~24 MiB of embeddings that barely compress: the upload lasts long enough to lose a node in it.
    const a = sampleAgent(t, 'ana', {
      memories: 100,
      embeddings: 6000,
      embeddingDim: 1024,
      files: 2,
      commits: 2,
    });
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 29 });
    const bucket = 'fleet_node_loss';
    // The default retries (5 attempts of at least 10 s) carry the snapshot through a leader election of a
    // few seconds. In one CI run (three test files and a compiler at once) the stream answered nothing for
    // 53 s after the kill, longer than those wait out: this snapshot may wait out 8.
    const config = join(tempDir(t, 'nexo-cfg-'), 'memory.yaml');
    writeFileSync(
      config,
      ['snapshot:', '  store:', '    nats:', '      replicas: 3', '    retry:', '      attempts: 8', ''].join(
        '\n',
      ),
    );
    const cli = cliOn(config, repoUrl(bucket));
    t.after(async () => {
      await Promise.all(cluster.nodes.filter((n) => !n.running).map((n) => n.start()));
    });

    const step = stepClock(t);
    let finished = false;
    // The snapshot is a process of the built CLI: it runs while this process watches the stream.
    const snapshot = runBuiltCli(
      ['snapshot', '--agent', 'ana', ...a.flags, '--json', '--config', config, '--repo', repoUrl(bucket)],
      {
        env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' },
      },
    ).finally(() => {
      finished = true;
    });
    // Once a pack is on its way (a chunk subject with more than one chunk), its stream's leader dies.
    const nc = await connect({ servers: cluster.urls });
    let killed: string | undefined;
    try {
      // Short requests: one that stalls (the cluster busy creating the stream) is simply asked again.
      const jsm = await jetstreamManager(nc, { timeout: 500 });
      while (!finished && killed === undefined) {
        const si = await jsm.streams
          .info(`OBJ_${bucket}`, { subjects_filter: `$O.${bucket}.C.>` })
          .catch(() => undefined);
        const uploading = Object.values(si?.state.subjects ?? {}).some((n) => n > 1);
        const leader = cluster.nodes.find((n) => n.name === si?.cluster?.leader);
        if (uploading && leader) {
          await leader.kill();
          killed = leader.name;
        } else await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await closeClient(nc);
    }
    const r = await snapshot;
    assert.ok(killed, `no node was killed while the snapshot was uploading (exit ${r.code}): ${r.stderr}`);
    // a failure says what the surviving nodes knew of the stream's leader and replicas then
    const state =
      r.code === 0
        ? ''
        : `\n${JSON.stringify(
            await Promise.all(
              cluster.nodes
                .filter((n) => n.running)
                .map(async (n) => [n.name, await n.streamCluster(`OBJ_${bucket}`)]),
            ),
          )}`;
    const snap = ok({ ...r, stderr: `${r.stderr}${state}` }, `snapshot with ${killed} killed`);
    step(`the snapshot, ${killed} killed in it`);

    await Promise.all(cluster.nodes.filter((n) => !n.running).map((n) => n.start()));
    await waitForStreamLeader(bucket);
    step(`${killed} back, the stream has a leader`);
    assert.deepEqual(
      ids(ok(await cli(['list', '--agent', 'ana', '--state-root', b.stateRoot]), 'list on B')),
      [snap.id],
    );
    await restoreAna(cli, snap.id, a, b, 'restore on B');
  },
);

test(
  'migrate --repo nats://… into a repository that does not exist yet creates it, as on S3 and locally',
  LIMIT,
  async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const config = natsConfig(t);
    const bundle = ok(
      await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], {
        env: { NEXO_MEMORY_STORE_FORMAT: 'bundles' },
      }),
      'a bundle snapshot (0.2 store)',
    );
    assert.ok(!bundle.bundle_path.includes('#'), bundle.bundle_path);
    const repo = repoUrl('migrepo');
    const cli = (args: string[]) =>
      runCli([...args, '--json', '--config', config, '--repo', repo, '--state-root', a.stateRoot], {
        env: { NEXO_MEMORY_STORE_FORMAT: 'auto' },
      });
    const r = ok(await cli(['migrate']), 'migrate into a new NATS repository');
    assert.equal(r.created_repository, true);
    assert.deepEqual([r.bundles, r.migrated, r.failed], [1, 1, 0], JSON.stringify(r));
    assert.deepEqual(ids(ok(await cli(['list', '--agent', 'ana']), 'list')), [bundle.id]);
    ok(await cli(['verify', '--agent', 'ana', '--id', bundle.id]), 'verify');
    const again = ok(await cli(['migrate']), 'a second migrate');
    assert.deepEqual([again.bundles, again.created_repository], [0, false]);
  },
);
