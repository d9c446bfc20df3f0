// A repository, or an object of it, written by a newer version (stop 47): every command refuses a
// repository whose config has a newer `repository_version` (SCHEMA_TOO_NEW, exit 2) and changes
// nothing in it — the listing and pin commands included, which read it without opening it; a newer
// index file or pack is SCHEMA_TOO_NEW, never damage; a newer snapshot is said to be one in check's and
// verify's text. And a remote repository replaced behind a warm cache: a read that meets a manifest of
// the new repository is STORE_REPLACED (the cache dropped), never BUNDLE_DAMAGED, and the next command
// works. All in this process, on local directories (the s3:// store is a directory behind the cache).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { remoteFactories } from '../src/backend/open.js';
import { generateSigningKey, secretKeyFileText } from '../src/crypto/sign.js';
import { manifestSeal } from '../src/format/manifest.js';
import { zstdBinding } from '../src/format/zstd.js';
import { readEntries, repack, writeBundleFile } from './helpers/bundles.js';
import { type Agent, agentConfig, type RunResult, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { faultyS3 } from './helpers/faulty-remote.js';

const SMALL = { memories: 40, embeddings: 10, files: 3, commits: 2 };
const allow = { NEXO_MEMORY_RESTORE_ALLOW: 'yes', NEXO_MEMORY_STORE_FORMAT: 'repository' };

function repoAgent(t: Parameters<typeof sampleAgent>[0]): Agent {
  return sampleAgent(t, 'ana', SMALL, { store: 'repository' });
}

/** Every file under `dir` with its bytes' hash: what a command must leave as it was. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (f.isFile()) {
      const p = join(f.parentPath, f.name);
      out[p.slice(dir.length + 1)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  return out;
}

function refusedTooNew(r: RunResult, what: string, pattern: RegExp): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const err = JSON.parse(r.stdout).error;
  assert.ok(err, `${what}: no error: ${r.stdout}`);
  assert.equal(err.code, 'SCHEMA_TOO_NEW', `${what}: ${r.stdout}`);
  assert.match(err.message, pattern, what);
  assert.match(err.message, /written by a newer nexo-memory-snapshot/, what);
  assert.doesNotMatch(err.message, /[^_]version \d+ > supported|bundle schema/, what);
}

test('a repository of a newer repository_version: every command refuses it (SCHEMA_TOO_NEW, exit 2), list, pin and unpin included, and nothing in it changes', async (t) => {
  const a = repoAgent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  await a.snapshotter.pin('ana', 'default', s1.id, 'kept');
  const repo = join(a.stateRoot, 'repository');
  const configPath = join(repo, 'config', 'config');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  writeFileSync(configPath, `${JSON.stringify({ ...config, repository_version: 2 }, null, 2)}\n`);
  const before = tree(repo);
  const cfg = agentConfig(a);
  const run = (args: string[]) => runCli([...args, '--json', '--config', cfg], { env: allow });
  const agent = ['--agent', 'ana'];
  const commands: Array<[string, string[]]> = [
    ['list', ['list', ...agent]],
    ['pin --note', ['pin', ...agent, '--id', s2.id, '--note', 'why']],
    ['unpin', ['unpin', ...agent, '--id', s1.id]],
    ['delete', ['delete', ...agent, '--id', s2.id, '--yes']],
    ['verify', ['verify', ...agent, '--id', s2.id]],
    ['check', ['check']],
    ['prune', ['prune']],
    ['gc', ['gc', ...agent]],
    ['ls', ['ls', ...agent, s2.id]],
    ['restore --dry-run', ['restore', ...agent, '--from', s2.id, '--dry-run']],
    ['snapshot', ['snapshot', ...agent]],
  ];
  for (const [what, args] of commands)
    refusedTooNew(await run(args), what, /repository_version 2 > supported 1/);
  assert.deepEqual(tree(repo), before, 'nothing in the repository changed');
  // the library's listing and pins as well (one gate for every path: RepositoryStore.backendFor)
  await assert.rejects(a.snapshotter.list('ana'), { code: 'SCHEMA_TOO_NEW' });
  await assert.rejects(a.snapshotter.unpin('ana', 'default', s1.id), { code: 'SCHEMA_TOO_NEW' });
  assert.deepEqual(tree(repo), before, 'nothing in the repository changed (library)');
});

/** `json` as the writer stores an index file: one zstd frame (content size, checksum). */
function zstdFrame(json: Buffer): Buffer {
  const z = zstdBinding();
  const c = new z.CCtx();
  c.setParameter(z.CParameter.checksumFlag, 1);
  const out = Buffer.allocUnsafe(z.compressBound(json.length));
  return Buffer.from(out.subarray(0, c.compress2(out, json)));
}

function unzstd(data: Buffer): Buffer {
  const z = zstdBinding();
  const size = z.getFrameContentSize(data)!;
  const out = Buffer.allocUnsafe(size);
  new z.DCtx().decompress(out, data);
  return out;
}

test('an index file or a pack of a newer version is SCHEMA_TOO_NEW, never damage; a newer snapshot is said to be one in check and verify', async (t) => {
  const a = repoAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = join(a.stateRoot, 'repository');
  const cfg = agentConfig(a);
  const run = (args: string[], json = true) =>
    runCli([...args, ...(json ? ['--json'] : []), '--config', cfg], { env: allow });
  const agent = ['--agent', 'ana'];
  const indexDir = join(repo, 'index');
  const [name] = readdirSync(indexDir);
  const original = readFileSync(join(indexDir, name!));
  // index_version 2, re-named by its sha256 as a writer names it
  const text = unzstd(original).toString('utf8').replace('"index_version":1', '"index_version":2');
  assert.match(text, /"index_version":2/);
  const newer = zstdFrame(Buffer.from(text));
  const newerName = createHash('sha256').update(newer).digest('hex');
  rmSync(join(indexDir, name!));
  writeFileSync(join(indexDir, newerName), newer);
  for (const [what, args] of [
    ['check', ['check']],
    ['verify', ['verify', ...agent, '--id', snap.id]],
    ['prune', ['prune']],
    ['restore --dry-run', ['restore', ...agent, '--from', snap.id, '--dry-run']],
  ] as const)
    refusedTooNew(
      await run([...args]),
      `${what} (newer index)`,
      new RegExp(`index/${newerName}: index_version 2 > supported 1`),
    );
  rmSync(join(indexDir, newerName));
  writeFileSync(join(indexDir, name!), original);

  // a pack whose magic is a newer version's: check reports it as SCHEMA_TOO_NEW, not BUNDLE_DAMAGED
  const packsDir = join(repo, 'packs');
  const packPaths = readdirSync(packsDir, { recursive: true, withFileTypes: true })
    .filter((f) => f.isFile())
    .map((f) => join(f.parentPath, f.name));
  const pack = packPaths[0]!;
  const bytes = readFileSync(pack);
  const magicAt = bytes.length - 8;
  assert.equal(bytes.toString('latin1', magicAt, magicAt + 5), 'NXPK1');
  const bumped = Buffer.from(bytes);
  bumped.write('2', magicAt + 4, 'latin1');
  // a newer writer's pack is named by its hash, and indexed under that name
  const packName = pack.slice(pack.lastIndexOf('/') + 1);
  const bumpedName = createHash('sha256').update(bumped).digest('hex');
  const bumpedPath = join(packsDir, bumpedName.slice(0, 2), bumpedName);
  rmSync(pack);
  mkdirSync(join(packsDir, bumpedName.slice(0, 2)), { recursive: true });
  writeFileSync(bumpedPath, bumped);
  const reindexed = zstdFrame(
    Buffer.from(unzstd(original).toString('utf8').replaceAll(packName, bumpedName)),
  );
  const reindexedName = createHash('sha256').update(reindexed).digest('hex');
  rmSync(join(indexDir, name!));
  writeFileSync(join(indexDir, reindexedName), reindexed);
  const checked = await run(['check', '--read-data']);
  assert.equal(checked.code, 2, checked.stdout);
  const problems = JSON.parse(checked.stdout).problems as Array<{
    code: string;
    object: string;
    message: string;
  }>;
  const own = problems.filter((p) => p.object === `packs/${bumpedName}`);
  assert.ok(own.length > 0, checked.stdout);
  for (const p of own) {
    assert.equal(p.code, 'SCHEMA_TOO_NEW', JSON.stringify(p));
    assert.match(p.message, /pack format version 2 > supported 1: written by a newer nexo-memory-snapshot/);
  }
  rmSync(bumpedPath);
  writeFileSync(pack, bytes);
  rmSync(join(indexDir, reindexedName));
  writeFileSync(join(indexDir, name!), original);

  // a snapshot manifest of a newer manifest_version (a plaintext repository's manifest is a zstd frame)
  const manifestPath = join(repo, 'snapshots', snap.id);
  const manifest = readFileSync(manifestPath);
  const mtext = unzstd(manifest).toString('utf8').replace('"manifest_version":4', '"manifest_version":6');
  assert.match(mtext, /"manifest_version":6/);
  writeFileSync(manifestPath, zstdFrame(Buffer.from(mtext)));
  const checkText = await run(['check'], false);
  assert.equal(checkText.code, 2, checkText.stdout);
  assert.match(checkText.stdout, /manifest_version 6 > supported 5: written by a newer nexo-memory-snapshot/);
  assert.match(
    checkText.stdout,
    new RegExp(`snapshots written by a newer nexo-memory-snapshot \\(upgrade to read them\\): ${snap.id}`),
  );
  assert.doesNotMatch(checkText.stdout, /damaged snapshots:/);
  const checkJson = JSON.parse((await run(['check'])).stdout);
  assert.deepEqual(checkJson.damaged_snapshots, [snap.id], 'the JSON keeps it among damaged_snapshots');
  const verifyText = await run(['verify', ...agent, '--id', snap.id], false);
  assert.equal(verifyText.code, 2, verifyText.stdout);
  assert.match(
    verifyText.stdout,
    /status: +damaged \(written by a newer nexo-memory-snapshot: upgrade to read it\)/,
  );
  const verifyJson = JSON.parse((await run(['verify', ...agent, '--id', snap.id])).stdout);
  assert.equal(verifyJson.status, 'damaged', 'the JSON status is unchanged');
});

test('a remote repository replaced behind a warm cache: a read meeting the new repository is STORE_REPLACED (cache dropped), never damage, and the next command works', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const remote = tempDir(t, 'nexo-remote-');
  const repoFlag = ['--repo', 's3://fleet-bucket/agents'];
  const config = agentConfig(a, [
    '    store:',
    '      retry:',
    '        attempts: 3',
    '        base_delay_ms: 1',
    '        max_delay_ms: 5',
  ]);
  const hostD = tempDir(t, 'nexo-host-d-');
  const cli = async (args: string[], stateRoot = a.stateRoot) => {
    const real = remoteFactories.s3;
    remoteFactories.s3 = faultyS3(remote, []);
    try {
      return await runCli([...args, '--json', ...repoFlag, '--config', config, '--state-root', stateRoot], {
        env: allow,
      });
    } finally {
      remoteFactories.s3 = real;
    }
  };
  const ok = (r: RunResult, what: string) => {
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  // host E (a.stateRoot) snapshots and lists: its cache is warm
  ok(await cli(['snapshot', '--agent', 'ana']), 'snapshot on E');
  ok(await cli(['list', '--agent', 'ana']), 'list on E');
  const cacheRoot = join(a.stateRoot, 'cache');
  assert.ok(existsSync(cacheRoot) && readdirSync(cacheRoot).length > 0, 'the cache is warm');
  // the repository is deleted and created again by host D (a new repository id)
  const store = join(remote, 'fleet-bucket', 'agents');
  renameSync(store, `${store}.old`);
  const fresh = ok(await cli(['snapshot', '--agent', 'ana'], hostD), 'snapshot on D');
  const listed = ok(await cli(['list', '--agent', 'ana']), 'list on E after the replacement');
  const ids = (Array.isArray(listed) ? listed : listed.snapshots).map((m: { id: string }) => m.id);
  assert.deepEqual(ids, [fresh.id], 'E lists the new repository');
  const replaced = await cli(['ls', '--agent', 'ana', 'latest']);
  assert.equal(replaced.code, 8, `ls on E: exit ${replaced.code}\n${replaced.stdout}\n${replaced.stderr}`);
  const err = JSON.parse(replaced.stdout).error;
  assert.equal(err.code, 'STORE_REPLACED', replaced.stdout);
  assert.match(err.message, /not the one this host's cache knows/);
  assert.doesNotMatch(replaced.stdout, /belongs to another repository/);
  const left = existsSync(cacheRoot) ? readdirSync(cacheRoot, { recursive: true }) : [];
  assert.deepEqual(left, [], "the old repository's cache is dropped");
  // the next commands read the new repository
  ok(await cli(['ls', '--agent', 'ana', 'latest']), 'ls on E again');
  ok(await cli(['restore', '--agent', 'ana', '--from', fresh.id, '--dry-run']), 'restore --dry-run on E');
  const v = ok(await cli(['verify', '--agent', 'ana', '--id', fresh.id]), 'verify on E');
  assert.equal(v.status, 'verified');
});

test("a snapshot deleted and imported again under its id (redacted) on another host: a warm host restores, checks and prunes the store's snapshot, never its old copy (stop 51)", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const remote = tempDir(t, 'nexo-remote-');
  const config = agentConfig(a, []);
  const cli = async (args: string[], stateRoot = a.stateRoot) => {
    const real = remoteFactories.s3;
    remoteFactories.s3 = faultyS3(remote, []);
    try {
      return await runCli(
        [
          ...args,
          '--json',
          '--repo',
          's3://fleet-bucket/agents',
          '--config',
          config,
          '--state-root',
          stateRoot,
        ],
        { env: allow },
      );
    } finally {
      remoteFactories.s3 = real;
    }
  };
  const ok = (r: RunResult, what: string) => {
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const secret = 'AKIAABCDEFGHIJKLMNOP';
  writeFileSync(join(a.memdir, 'MEMORY.md'), `# memory\nthe deploy key is ${secret}\n`);
  // host A takes s1 (with the secret) and s2, and reads s1 (its old cache kept s1's manifest)
  const s1 = ok(await cli(['snapshot', '--agent', 'ana']), 'snapshot s1 on A');
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# memory\nno secret here\n');
  ok(await cli(['snapshot', '--agent', 'ana']), 'snapshot s2 on A');
  ok(await cli(['ls', '--agent', 'ana', s1.id]), 'ls s1 on A');
  const bundle = join(tempDir(t), 's1.tar.zst');
  ok(await cli(['export', '--agent', 'ana', '--id', s1.id, '--to', bundle]), 'export s1 (redacted) on A');
  // host B deletes s1, prunes its data, and imports the redacted copy: stored under s1's id again
  const hostB = tempDir(t, 'nexo-host-b-');
  ok(await cli(['delete', '--agent', 'ana', '--id', s1.id, '--yes'], hostB), 'delete s1 on B');
  ok(await cli(['prune'], hostB), 'prune on B');
  const imported = ok(
    await cli(['import', '--from', bundle, '--agent', 'ana', '--store-only'], hostB),
    'import the redacted s1 on B',
  );
  assert.equal(imported.snapshot.id, s1.id, 'stored under its id');
  assert.equal(imported.stored, 'new');
  // host A restores s1: the store's s1 is redacted (refused without --allow-redacted), never the old one
  const restore = await cli(['restore', '--agent', 'ana', '--from', s1.id]);
  assert.equal(restore.code, 6, `restore on A: ${restore.stdout}`);
  assert.equal(JSON.parse(restore.stdout).error.code, 'REDACTED_BUNDLE');
  assert.doesNotMatch(readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'), new RegExp(secret));
  // host A prunes: nothing the store's s1 references goes; a fresh host checks every byte and restores it
  ok(await cli(['prune']), 'prune on A');
  const hostC = tempDir(t, 'nexo-host-c-');
  ok(await cli(['check', '--read-data'], hostC), 'check --read-data on C');
  ok(await cli(['restore', '--agent', 'ana', '--from', s1.id, '--allow-redacted'], hostC), 'restore s1 on C');
  assert.match(readFileSync(join(a.memdir, 'MEMORY.md'), 'utf8'), /the deploy key is \[REDACTED:/);
  // and importing it again on A says it is there (the store's manifest), not a new copy
  const again = ok(
    await cli(['import', '--from', bundle, '--agent', 'ana', '--store-only']),
    'import again on A',
  );
  assert.equal(again.stored, 'already_present');
});

test('a redacted bundle that names no rule is refused without empty parentheses', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const entries = await readEntries(snap.bundle_path);
  const m = JSON.parse(entries[0]!.data.toString()) as Record<string, unknown>;
  m.redactions = { policy: 'default', rules_applied: [], matches_redacted: 2, artifacts_touched: [] };
  m.manifest_seal = manifestSeal(m);
  const data = Buffer.from(JSON.stringify(m, null, 2));
  const forged = writeBundleFile(
    join(tempDir(t), 'redacted.tar.zst'),
    repack([{ path: 'manifest.json', data }, ...entries.slice(1)]),
  );
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', bundle: forged }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'REDACTED_BUNDLE', err.message);
      assert.match(err.message, /2 secret\(s\) were replaced by placeholders, and restoring/);
      assert.doesNotMatch(err.message, /\(\)/);
      return true;
    },
  );
});

test('migrate without a signing key says once that the signed bundles become unsigned snapshots, and how to keep signing', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const key = generateSigningKey();
  const keyPath = join(tempDir(t), 'sign.key');
  writeFileSync(keyPath, secretKeyFileText(key), { mode: 0o600 });
  await a.snapshotter.snapshot({ agentId: 'ana', sign: keyPath });
  await a.snapshotter.snapshot({ agentId: 'ana', sign: keyPath });
  const cfg = agentConfig(a);
  const r = await runCli(['migrate', '--config', cfg], { env: allow });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const warnings = r.stdout.split('\n').filter((l) => l.startsWith('warning: '));
  assert.equal(warnings.length, 1, r.stdout);
  assert.match(warnings[0]!, /2 signed bundle\(s\) became unsigned repository snapshots/);
  assert.match(warnings[0]!, /signing\.key_path/);
  await a.snapshotter.snapshot({ agentId: 'ana', sign: keyPath });
  const j = await runCli(['migrate', '--json', '--config', cfg], { env: allow });
  assert.equal(j.code, 0, `${j.stdout}\n${j.stderr}`);
  const report = JSON.parse(j.stdout);
  assert.equal(report.migrated, 1);
  assert.equal(report.warnings.length, 1, j.stdout);
  assert.match(report.warnings[0], /^1 signed bundle\(s\) became unsigned/);
  const none = JSON.parse((await runCli(['migrate', '--json', '--config', cfg], { env: allow })).stdout);
  assert.equal(none.warnings, undefined, 'nothing migrated: no warning');
});
