// Damage a remote store shows the CLI, on real servers (s3rver in a process of its own, the fault proxy
// between it and the CLI): content-addressed objects already there with other bytes (a torn upload, bit
// rot) are replaced by the next snapshot that writes them, never referenced as they are; a listing entry
// or a manifest damaged in one download is not kept by the cache (the next command reads the store).
// The CLI runs in the test process (`main(argv)`, taking turns: the suite's tests run side by side):
// what is checked is each command's exit status and output, and what it left in the store and the
// cache. The one test about what a command may write after it ends (a replaced repository's cache)
// runs the built CLI, whose exit is the end of everything the command started.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, suite, test } from 'node:test';
import { type Backend, readAll } from '../src/backend/backend.js';
import { openS3Backend } from '../src/backend/s3.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { type Json, json, ok } from './helpers/cli-json.js';
import { type RunResult, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { type S3Server, startS3ServerProcess } from './helpers/s3-server.js';

const BUCKET = 'damage';
const SMALL = { memories: 40, embeddings: 10, files: 3, commits: 2 };
const allow = { NEXO_MEMORY_RESTORE_ALLOW: 'yes' };

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

/** The in-process CLI is one run at a time (helpers/cli.ts), and the suite's tests run side by side. */
let turn: Promise<unknown> = Promise.resolve();
function inTurn(args: string[], opts: { env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  const run = turn.then(() => runCli(args, opts));
  turn = run.catch(() => {});
  return run;
}

/**
 * A config pointing the CLI at `prefix` of the bucket through the proxy; the CLI bound to it, in this
 * process unless `built` (a child process of the built CLI).
 */
function s3Cli(dir: string, prefix: string, built = false) {
  const config = join(dir, 'memory.yaml');
  writeFileSync(
    config,
    [
      'snapshot:',
      '  store:',
      '    backend: s3',
      '    s3:',
      `      bucket: ${BUCKET}`,
      `      prefix: ${prefix}`,
      `      endpoint: ${proxy.endpoint}`,
      '      region: us-east-1',
      '      force_path_style: true',
      '      access_key_id: S3RVER',
      '      secret_access_key: S3RVER',
      '',
    ].join('\n'),
  );
  return (args: string[]) =>
    (built ? runBuiltCli : inTurn)([...args, '--json', '--config', config], { env: allow });
}

async function names(b: Backend, type: 'packs' | 'index' | 'snapshots' | 'listing'): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(type)) out.push(o.name);
  return out.sort();
}

const snapshotsOf = (out: Json): Json[] => (Array.isArray(out) ? out : out.snapshots);

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

suite('remote damage', { concurrency: 2 }, () => {
  test('a snapshot whose packs are already in the store with other bytes (torn, bit rot) replaces them: check --read-data is clean, restore works', async (t) => {
    const prefix = 'torn';
    const a = sampleAgent(t, 'ana', SMALL);
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix);
    const direct = await openS3Backend(server.options(BUCKET, prefix));
    t.after(() => direct.close());
    ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'first snapshot');
    const packs = await names(direct, 'packs');
    assert.ok(packs.length >= 1, 'the snapshot wrote packs');
    // The first snapshot "never happened" (killed before its index and manifest were written), and what
    // it left of its packs is damaged: the first one torn (half of it), the others with a byte flipped.
    for (const type of ['listing', 'snapshots', 'index'] as const)
      for (const n of await names(direct, type)) await direct.remove({ type, name: n });
    for (const [i, name] of packs.entries()) {
      const h = { type: 'packs' as const, name };
      const bytes = await readAll(direct, h, { maxBytes: 1 << 30 });
      const bad = i === 0 ? bytes.subarray(0, bytes.length >> 1) : Buffer.from(bytes);
      if (i > 0) bad[bad.length >> 1]! ^= 0xff;
      await direct.save(h, bad);
    }
    const snap = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'the same snapshot again');
    assert.deepEqual(await names(direct, 'packs'), packs, 'it wrote the same packs');
    for (const name of packs) {
      const stored = await readAll(direct, { type: 'packs', name }, { maxBytes: 1 << 30 });
      assert.equal(sha256(stored), name, `packs/${name} holds its bytes again`);
    }
    ok(await cli(['check', '--read-data', '--state-root', a.stateRoot]), 'check --read-data');
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 3 });
    ok(await cli(['restore', '--agent', 'ana', '--from', snap.id, ...b.flags]), 'restore');
  });

  test('a listing entry or a manifest damaged in one download is never kept by the cache: the next command reads the store', async (t) => {
    const prefix = 'flipped';
    const a = sampleAgent(t, 'ana', SMALL);
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix);
    const snap = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot on A');
    const listed = (stateRoot: string) =>
      cli(['list', '--agent', 'ana', '--state-root', stateRoot]).then((r) =>
        snapshotsOf(ok(r, 'list')).map((m: { id: string }) => m.id),
      );
    // Host B's first list gets the entry with a byte flipped (one GET); every later list is honest.
    const b = tempDir(t, 'nexo-host-b-');
    proxy.inject({ method: 'GET', path: new RegExp(`/${prefix}/listing/`), fault: { kind: 'flip' } });
    await listed(b);
    assert.equal(proxy.fired('flip'), 1, 'the listing entry was flipped once');
    assert.deepEqual(await listed(b), [snap.id], 'the next list shows the snapshot');
    assert.deepEqual(await listed(b), [snap.id], 'and the one after');
    // Host C's first verify gets the manifest with a byte flipped; later commands read it whole.
    const c = tempDir(t, 'nexo-host-c-');
    proxy.inject({ method: 'GET', path: new RegExp(`/${prefix}/snapshots/`), fault: { kind: 'flip' } });
    await cli(['verify', '--agent', 'ana', '--id', snap.id, '--state-root', c]);
    assert.equal(proxy.fired('flip'), 2, 'the manifest was flipped once');
    ok(await cli(['verify', '--agent', 'ana', '--id', snap.id, '--state-root', c]), 'verify on C');
    ok(await cli(['check', '--state-root', c]), 'check on C');
    const restored = sampleAgent(t, 'bob', { ...SMALL, seed: 3 });
    const roots = ['--memdir-root', restored.memdirRoot, '--sqlite-root', restored.sqliteRoot];
    ok(
      await cli(['restore', '--agent', 'ana', '--from', snap.id, ...roots, '--state-root', c]),
      'restore on C',
    );
  });

  test('a repository whose config is missing beside its data is damage (exit 2), on S3 and locally: never "no snapshots", never created again over it', async (t) => {
    const a = sampleAgent(t, 'ana', SMALL);
    const damaged = (r: RunResult, what: string) => {
      assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      const err = json(r).error;
      assert.equal(err.code, 'BUNDLE_DAMAGED', what);
      assert.match(err.message, /no config object/, what);
      assert.match(err.message, /put its config back/i, what);
    };
    // S3, read from hosts whose cache never saw the config
    const prefix = 'noconfig';
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix);
    const direct = await openS3Backend(server.options(BUCKET, prefix));
    t.after(() => direct.close());
    ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot');
    await direct.remove({ type: 'config', name: 'config' });
    const host = () => ['--state-root', tempDir(t, 'nexo-host-')];
    damaged(await cli(['list', '--agent', 'ana', ...host()]), 'list (S3)');
    damaged(await cli(['check', ...host()]), 'check (S3)');
    const roots = ['--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
    damaged(await cli(['snapshot', '--agent', 'ana', ...roots, ...host()]), 'snapshot (S3)');
    await assert.rejects(
      readAll(direct, { type: 'config', name: 'config' }, { maxBytes: 1 << 20 }),
      { code: 'OBJECT_NOT_FOUND' },
      'no config was written over the data',
    );
    // the local repository of a state root
    const b = sampleAgent(t, 'bob', { ...SMALL, seed: 5 });
    const local = (args: string[]) =>
      inTurn([...args, '--json', '--state-root', b.stateRoot], {
        env: { NEXO_MEMORY_STORE_FORMAT: 'repository' },
      });
    const bobRoots = ['--memdir-root', b.memdirRoot, '--sqlite-root', b.sqliteRoot];
    ok(await local(['snapshot', '--agent', 'bob', ...bobRoots]), 'local snapshot');
    const config = join(b.stateRoot, 'repository', 'config', 'config');
    rmSync(config);
    damaged(await local(['list', '--agent', 'bob']), 'list (local)');
    damaged(await local(['check']), 'check (local)');
    damaged(await local(['snapshot', '--agent', 'bob', ...bobRoots]), 'snapshot (local)');
    assert.equal(existsSync(config), false, 'no local config was written over the data');
  });

  test('a repository replaced behind a warm cache: the next write is refused (exit 8, STORE_REPLACED, nothing written) and the cache forgets the old one', async (t) => {
    const prefix = 'replaced';
    const a = sampleAgent(t, 'ana', SMALL);
    // built: the cache is looked at once the command's process is gone
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix, true);
    const direct = await openS3Backend(server.options(BUCKET, prefix));
    t.after(() => direct.close());
    const hostX = a.flags; // its state root's cache is warm after its snapshot
    const roots = ['--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
    const hostY = ['--state-root', tempDir(t, 'nexo-host-y-'), ...roots];
    ok(await cli(['snapshot', '--agent', 'ana', ...hostX]), 'snapshot on X');
    ok(await cli(['snapshot', '--agent', 'ana', ...hostX]), 'second snapshot on X (config from the cache)');
    // the repository is deleted, and another host creates a new one in its place
    for (const type of ['config', 'keys', 'packs', 'index', 'snapshots', 'listing', 'pins', 'locks'] as const)
      for await (const o of direct.list(type)) await direct.remove({ type, name: o.name });
    ok(await cli(['snapshot', '--agent', 'ana', ...hostY]), 'snapshot on Y (a new repository)');
    const before = await names(direct, 'listing');
    assert.equal(before.length, 1);
    const refused = await cli(['snapshot', '--agent', 'ana', ...hostX]);
    assert.equal(
      refused.code,
      8,
      `snapshot on X: exit ${refused.code}\n${refused.stdout}\n${refused.stderr}`,
    );
    const err = json(refused).error;
    assert.equal(err.code, 'STORE_REPLACED');
    assert.match(err.message, /not the one this host's cache knows/);
    assert.deepEqual(await names(direct, 'listing'), before, 'nothing of it was listed');
    // (a read still under way when the cache was dropped must not write it again: once a CI run found
    // the directory there after the exit)
    const cacheLeft = existsSync(join(a.stateRoot, 'cache'))
      ? readdirSync(join(a.stateRoot, 'cache'), { recursive: true })
      : [];
    assert.deepEqual(cacheLeft, [], "the old repository's cache is gone");
    const again = ok(await cli(['snapshot', '--agent', 'ana', ...hostX]), 'the same snapshot on X again');
    const yRoot = ['--state-root', hostY[1]!];
    ok(await cli(['check', ...yRoot]), 'check on Y');
    const v = ok(await cli(['verify', '--agent', 'ana', '--id', again.id, ...yRoot]), 'verify on Y');
    assert.equal(v.status, 'verified');
  });

  test('a store failure during the pre-restore snapshot keeps its code and exit 8 (STORE_DENIED), and the restore is refused with the live agent unchanged', async (t) => {
    const prefix = 'prerestore';
    const a = sampleAgent(t, 'ana', SMALL);
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix);
    const snap = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot');
    // the live agent changes after the snapshot: the restore would replace this file
    const changed = join(a.memdir, 'after-the-snapshot.md');
    writeFileSync(changed, 'written after the snapshot\n');
    const live = () => readdirSync(a.memdir).sort();
    const before = live();
    // every write of data to the store is refused from now on (reads and locks pass): the anchor
    // cannot be stored
    proxy.inject({
      method: 'PUT',
      path: new RegExp(`/${prefix}/(packs|index|snapshots|listing)/`),
      fault: { kind: 'error', status: 403, code: 'AccessDenied' },
      times: 1000,
    });
    t.after(() => proxy.reset());
    const r = await cli(['restore', '--agent', 'ana', '--from', snap.id, ...a.flags]);
    assert.equal(r.code, 8, `restore: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    const err = json(r).error;
    assert.equal(err.code, 'STORE_DENIED');
    assert.equal(err.outcome, 'store_unavailable');
    assert.match(err.message, /restore refused/);
    assert.match(err.message, /pre-snapshot failed/);
    assert.ok(proxy.fired('error') >= 1, 'a write was refused');
    assert.deepEqual(live(), before, 'the live memdir is unchanged');
    assert.equal(readFileSync(changed, 'utf8'), 'written after the snapshot\n');
  });

  test("a listing entry overwritten with another snapshot's hides nothing: check reports it, verify and list say damaged (not NOT_FOUND)", async (t) => {
    const prefix = 'overwritten';
    const a = sampleAgent(t, 'ana', SMALL);
    const cli = s3Cli(tempDir(t, 'nexo-cfg-'), prefix);
    const direct = await openS3Backend(server.options(BUCKET, prefix));
    t.after(() => direct.close());
    const first = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot A');
    writeFileSync(join(a.memdir, 'second.md'), 'a second snapshot\n');
    const second = ok(await cli(['snapshot', '--agent', 'ana', ...a.flags]), 'snapshot B');
    const entryA = await readAll(direct, { type: 'listing', name: first.id }, { maxBytes: 1 << 20 });
    await direct.save({ type: 'listing', name: second.id }, entryA);
    const host = tempDir(t, 'nexo-host-');
    const c = await cli(['check', '--read-data', '--state-root', host]);
    assert.equal(c.code, 2, `check: exit ${c.code}\n${c.stdout}\n${c.stderr}`);
    const report = json(c);
    const found = report.problems.find((p: Json) => p.object === `listing/${second.id}`);
    assert.ok(found, JSON.stringify(report.problems));
    assert.equal(found.code, 'BUNDLE_DAMAGED');
    assert.match(found.message, new RegExp(`describes snapshot ${first.id}, not ${second.id}`));
    assert.deepEqual(report.damaged_snapshots, [second.id]);
    const v = await cli(['verify', '--agent', 'ana', '--id', second.id, '--state-root', host]);
    assert.equal(v.code, 2, `verify: exit ${v.code}\n${v.stdout}\n${v.stderr}`);
    assert.equal(json(v).error.code, 'BUNDLE_DAMAGED');
    assert.match(json(v).error.message, new RegExp(`listing/${second.id} does not describe snapshot`));
    const l = await cli(['list', '--agent', 'ana', '--state-root', host]);
    assert.match(
      l.stderr,
      new RegExp(`listing/${second.id} is unreadable \\(the entry describes snapshot ${first.id}`),
    );
  });
});
