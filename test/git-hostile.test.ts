// Hostile git content never runs and is never installed. A v1 bundle whose git/config sets
// core.fsmonitor, core.sshCommand (reached through url.insteadOf), a pager, an editor, an askpass, a
// filter and diff drivers, that ships hooks, info/attributes and a .gitattributes among its memory files;
// a v1 bundle whose objects/info/alternates borrows another agent's objects; and a caller whose global git
// config (HOME and XDG_CONFIG_HOME) defines hooks, an fsmonitor, filters and diff drivers. verify --deep,
// restore, import and diff run against each of them, and no marker is ever written; the restored
// repository keeps the live config and has no hook, attribute or alternate from the bundle. Nor does a
// restore apply the live repository's own filters to the bundle's files.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { git } from '../scripts/sample-agent.js';
import { walkMemdir } from '../src/capture/memdir.js';
import { type ArtifactSpec, bundleOf, manifestFor, rawGitFiles, writeBundleFile } from './helpers/bundles.js';
import { deltaBomb, plantBomb } from './helpers/delta-bomb.js';
import { type Agent, runCli, sampleAgent, tempDir } from './helpers/env.js';

const SNAPSHOT_ID = '0190c3a2-0000-7000-8000-000000000001'; // manifestFor's default
const ATTRIBUTES = '* filter=x diff=x\n';

function agent(t: Parameters<typeof sampleAgent>[0], id = 'ana'): Agent {
  return sampleAgent(t, id, {
    files: 6,
    commits: 3,
    memories: 20,
    embeddings: 5,
    concepts: 5,
    compactions: 2,
  });
}

/** A shell command that appends `what` to the marker file. */
const run = (marker: string, what: string): string => `echo ${what} >> ${marker}`;

const ran = (marker: string): string => (existsSync(marker) ? readFileSync(marker, 'utf8') : '');

/** A git config that runs a command wherever git lets config run one. */
function hostileConfig(marker: string, driver: string): string {
  return `${[
    '[core]',
    '\trepositoryformatversion = 0',
    '\tfilemode = true',
    '\tbare = false',
    `\tfsmonitor = "${run(marker, 'fsmonitor')}; false"`,
    `\tsshCommand = "${run(marker, 'ssh')}; false"`,
    `\tpager = "${run(marker, 'pager')}; cat"`,
    `\teditor = "${run(marker, 'editor')}"`,
    `\taskPass = "${run(marker, 'askpass')}"`,
    `\talternateRefsCommand = "${run(marker, 'alternate-refs')}"`,
    '[url "ssh://attacker.invalid/"]',
    '\tinsteadOf = /',
    `[filter "${driver}"]`,
    `\tclean = "${run(marker, 'clean')}; cat"`,
    `\tsmudge = "${run(marker, 'smudge')}; cat"`,
    `[diff "${driver}"]`,
    `\ttextconv = "${run(marker, 'textconv')}; cat"`,
    `\tcommand = "${run(marker, 'diff-driver')}"`,
    '[diff]',
    `\texternal = "${run(marker, 'external-diff')}"`,
    '[log]',
    '\tshowSignature = true',
    '[gpg]',
    `\tprogram = "${run(marker, 'gpg')}"`,
  ].join('\n')}\n`;
}

const HOOKS = ['post-checkout', 'reference-transaction', 'post-index-change', 'pre-auto-gc'];
const hook = (marker: string, name: string): string => `#!/bin/sh\n${run(marker, `hook-${name}`)}\n`;

/** The agent's memdir as a v1 bundle of the original: raw `.git` files under `git/`, `git` overriding. */
async function v1Bundle(
  a: Agent,
  path: string,
  opts: { git?: Record<string, string>; files?: Record<string, string> } = {},
): Promise<{ path: string; head: string }> {
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const memory = new Map<string, Buffer | string>();
  for (const rel of (await walkMemdir(a.memdir)).files) memory.set(rel, readFileSync(join(a.memdir, rel)));
  for (const [rel, data] of Object.entries(opts.files ?? {})) memory.set(rel, data);
  const raw: Map<string, Buffer | string> = rawGitFiles(join(a.memdir, '.git'));
  for (const [rel, data] of Object.entries(opts.git ?? {})) raw.set(rel, data);
  const byPath = (x: [string, unknown], y: [string, unknown]) =>
    Buffer.compare(Buffer.from(x[0]), Buffer.from(y[0]));
  const arts: ArtifactSpec[] = [
    {
      path: 'sqlite/long_term.sqlite',
      kind: 'sqlite_long_term',
      data: readFileSync(join(a.sqliteDir, 'long_term.sqlite')),
    },
    ...[...memory]
      .sort(byPath)
      .map(([rel, data]) => ({ path: `memory_files/${rel}`, kind: 'memory_file', data })),
    ...[...raw].sort(byPath).map(([rel, data]) => ({ path: `git/${rel}`, kind: 'git_bundle', data })),
  ];
  const manifest = manifestFor(
    arts,
    { git: { head_oid: head, head_subject: 's', head_author: 'a <b>', head_ts_ms: 0 } },
    1,
  );
  return { path: writeBundleFile(path, bundleOf(manifest, arts, [], { v1: true })), head };
}

/** Every way a v1 bundle's `.git` files could make git run something. */
function hostileGitFiles(marker: string): Record<string, string> {
  return {
    config: hostileConfig(marker, 'x'),
    'info/attributes': ATTRIBUTES,
    ...Object.fromEntries(HOOKS.map((h) => [`hooks/${h}`, hook(marker, h)])),
  };
}

/** A git status as the agent would run it afterwards: its own repository, no global config. */
function agentStatus(memdir: string): void {
  git(memdir, ['status', '--porcelain']);
}

function hasObject(repo: string, oid: string): boolean {
  try {
    git(repo, ['cat-file', '-e', oid]);
    return true;
  } catch {
    return false;
  }
}

function assertNoTrace(memdir: string, liveConfigBefore: string | undefined): void {
  const config = readFileSync(join(memdir, '.git', 'config'), 'utf8');
  if (liveConfigBefore !== undefined)
    assert.equal(config, liveConfigBefore, 'the live config is kept as it was');
  for (const word of ['fsmonitor', 'sshCommand', 'attacker', 'filter', 'textconv', 'external', 'pager'])
    assert.ok(!config.includes(word), `${word} in the restored .git/config:\n${config}`);
  const hooks = join(memdir, '.git', 'hooks');
  const installed = existsSync(hooks) ? readdirSync(hooks) : [];
  for (const h of HOOKS) assert.ok(!installed.includes(h), `hook ${h} installed from the bundle`);
  assert.ok(!existsSync(join(memdir, '.git', 'info', 'attributes')), 'info/attributes installed');
  assert.ok(!existsSync(join(memdir, '.git', 'objects', 'info', 'alternates')), 'alternates installed');
}

test('verify --deep of a hostile v1 bundle runs nothing from it', async (t) => {
  const a = agent(t);
  const dir = tempDir(t);
  const marker = join(dir, 'ran');
  const b = await v1Bundle(a, join(dir, 'v1.tar.zst'), {
    git: hostileGitFiles(marker),
    files: { '.gitattributes': ATTRIBUTES },
  });
  const report = await a.snapshotter.verify(b.path, { deep: true });
  assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  assert.equal(report.deep?.git, 'ok');
  assert.equal(ran(marker), '', 'verify --deep ran a command from the bundle');
});

test('restore and import of a hostile v1 bundle run nothing and install none of its config, hooks or attributes', async (t) => {
  const a = agent(t);
  const dir = tempDir(t);
  const marker = join(dir, 'ran');
  const b = await v1Bundle(a, join(dir, 'v1.tar.zst'), {
    git: hostileGitFiles(marker),
    files: { '.gitattributes': ATTRIBUTES },
  });
  // The live repository has settings of its own that must survive the restore.
  git(a.memdir, ['config', 'user.name', 'Agent Ana']);
  git(a.memdir, ['commit', '-q', '--allow-empty', '-m', 'after the snapshot']);
  const liveConfig = readFileSync(join(a.memdir, '.git', 'config'), 'utf8');

  const r = await a.snapshotter.restore({ agentId: 'ana', bundle: b.path });
  assert.equal(ran(marker), '', 'restore ran a command from the bundle');
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), b.head);
  assert.equal(r.git_reset_oid, b.head);
  assert.equal(readFileSync(join(a.memdir, '.gitattributes'), 'utf8'), ATTRIBUTES, 'memory files restored');
  assertNoTrace(a.memdir, liveConfig);
  git(a.memdir, ['fsck', '--no-dangling']);
  agentStatus(a.memdir);
  assert.equal(ran(marker), '', 'a later git status in the restored memdir ran a command');

  const imported = await a.snapshotter.restore({ agentId: 'bob', bundle: b.path, import: {} });
  assert.equal(imported.git_reset_oid, b.head);
  const bob = join(a.memdirRoot, 'bob');
  assert.equal(git(bob, ['rev-parse', 'HEAD']).trim(), b.head);
  assertNoTrace(bob, undefined);
  agentStatus(bob);
  assert.equal(ran(marker), '', 'import ran a command from the bundle');
});

test('diff of a hostile v1 bundle runs nothing from it', async (t) => {
  const a = agent(t);
  const marker = join(tempDir(t), 'ran');
  const snapshots = a.snapshotter.layout.snapshotsDir('default', 'ana');
  mkdirSync(snapshots, { recursive: true });
  const b = await v1Bundle(a, join(snapshots, `${SNAPSHOT_ID}.tar.zst`), {
    git: hostileGitFiles(marker),
    files: { '.gitattributes': ATTRIBUTES },
  });
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# changed\n');
  git(a.memdir, ['commit', '-qam', 'after the snapshot']);
  const d = await a.snapshotter.diff({ agentId: 'ana', a: SNAPSHOT_ID, b: 'live', detail: true });
  assert.equal(d.git_summary.head_a, b.head);
  assert.equal(d.git_summary.commits_between, 1);
  assert.ok(d.files.some((f) => f.path === 'MEMORY.md' && f.status === 'modified'));
  assert.equal(ran(marker), '', 'diff ran a command from the bundle');
});

test("a v1 bundle's alternates never lend it another repository's objects", async (t) => {
  const a = agent(t);
  const other = agent(t, 'eve');
  git(other.memdir, ['commit', '-q', '--allow-empty', '-m', 'eve only: a secret']);
  const stolen = git(other.memdir, ['rev-parse', 'HEAD']).trim();
  const snapshots = a.snapshotter.layout.snapshotsDir('default', 'ana');
  mkdirSync(snapshots, { recursive: true });
  const b = await v1Bundle(a, join(snapshots, `${SNAPSHOT_ID}.tar.zst`), {
    git: {
      'objects/info/alternates': `${join(other.memdir, '.git', 'objects')}\n`,
      'refs/heads/stolen': `${stolen}\n`,
    },
  });
  const report = await a.snapshotter.verify(b.path, { deep: true });
  assert.notEqual(report.deep?.git, 'ok', 'the history is incomplete without the alternate');
  assert.equal(report.status, 'damaged');

  await assert.rejects(a.snapshotter.diff({ agentId: 'ana', a: SNAPSHOT_ID, b: 'live' }), {
    code: 'BUNDLE_DAMAGED',
  });
  const headBefore = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', bundle: b.path }), { code: 'BUNDLE_DAMAGED' });
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), headBefore, 'nothing changed');
  assert.equal(hasObject(a.memdir, stolen), false, "eve's commit reached ana's repository");
});

test("a v1 bundle's HEAD must name a branch or a commit", async (t) => {
  const a = agent(t);
  const dir = tempDir(t);
  for (const bad of ['ref: refs/tags/v1\n', 'ref: refs/heads/../../x\n', 'not a ref\n']) {
    const b = await v1Bundle(a, join(dir, 'v1.tar.zst'), { git: { HEAD: bad } });
    await assert.rejects(
      a.snapshotter.restore({ agentId: 'ana', bundle: b.path }),
      { code: 'BUNDLE_DAMAGED' },
      bad,
    );
  }
});

test("the caller's global git config (HOME, XDG_CONFIG_HOME) is ignored by verify, restore, import and diff", async (t) => {
  const a = agent(t);
  const dir = tempDir(t);
  const marker = join(dir, 'ran');
  const home = join(dir, 'home');
  const xdg = join(dir, 'xdg');
  const hooks = join(dir, 'hooks');
  for (const d of [home, join(xdg, 'git'), hooks]) mkdirSync(d, { recursive: true });
  for (const h of HOOKS) {
    writeFileSync(join(hooks, h), hook(marker, h));
    chmodSync(join(hooks, h), 0o755);
  }
  const global = `${hostileConfig(marker, 'x')}[core]\n\thooksPath = ${hooks}\n\tattributesFile = ${join(xdg, 'git', 'attributes')}\n`;
  writeFileSync(join(home, '.gitconfig'), global);
  writeFileSync(join(xdg, 'git', 'config'), global);
  writeFileSync(join(xdg, 'git', 'attributes'), ATTRIBUTES);
  // A v2 snapshot that ships a .gitattributes naming the filter and diff driver the global config defines.
  writeFileSync(join(a.memdir, '.gitattributes'), ATTRIBUTES);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# changed\n');
  git(a.memdir, ['commit', '-qam', 'after the snapshot']);
  assert.equal(ran(marker), '');

  const env = { HOME: home, XDG_CONFIG_HOME: xdg, NEXO_MEMORY_RESTORE_ALLOW: 'yes' };
  const cli = async (args: string[]) => {
    const r = await runCli(args[0] === 'verify' ? args : [...args, ...a.flags], { env });
    assert.equal(r.code, 0, `${args[0]}: ${r.stderr}`);
    assert.equal(ran(marker), '', `${args[0]} ran a command from the caller's global git config`);
  };
  await cli(['verify', snap.bundle_path, '--deep']);
  await cli(['diff', '--agent', 'ana', snap.id, 'live', '--detail']);
  await cli(['restore', '--agent', 'ana', '--from', snap.bundle_path]);
  await cli(['import', '--agent', 'bob', '--from', snap.bundle_path]);
  assert.equal(readFileSync(join(a.memdir, '.gitattributes'), 'utf8'), ATTRIBUTES);
});

test("restore applies none of the live repository's own filters to the bundle's files", async (t) => {
  const a = agent(t);
  const marker = join(tempDir(t), 'ran');
  // A bundle whose memory files name filter and diff driver `x`, which the agent's own config defines.
  writeFileSync(join(a.memdir, '.gitattributes'), ATTRIBUTES);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const config = join(a.memdir, '.git', 'config');
  writeFileSync(
    config,
    `${readFileSync(config, 'utf8')}${hostileConfig(marker, 'x').replace(/^\[core\][^[]*/, '')}`,
  );
  const liveConfig = readFileSync(config, 'utf8');
  const r = await a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path });
  assert.equal(ran(marker), '', 'the restore ran a filter of the live config on the restored files');
  assert.equal(r.git_reset_oid, snap.git_oid);
  assert.equal(readFileSync(config, 'utf8'), liveConfig, 'the live config is carried over');
});

for (const store of ['bundles', 'repository'] as const)
  test(`a history whose tree git will not check out (an entry named '..'): verify finds it and restore and import refuse it (exit 2), never a GIT failure; the agent is unchanged (${store})`, async (t) => {
    const a = sampleAgent(t, 'ana', { files: 2, commits: 2, memories: 5 }, { store });
    const blob = git(a.memdir, ['hash-object', '-w', '--stdin'], 'pwn\n').trim();
    const tree = git(
      a.memdir,
      ['hash-object', '-t', 'tree', '-w', '--literally', '--stdin'],
      Buffer.concat([Buffer.from('100644 ..\0'), Buffer.from(blob, 'hex')]),
    ).trim();
    const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
    const evil = git(a.memdir, ['commit-tree', tree, '-p', head, '-m', 'evil']).trim();
    const good = await a.snapshotter.snapshot({ agentId: 'ana' });
    git(a.memdir, ['update-ref', 'refs/heads/main', evil]);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
    git(a.memdir, ['update-ref', 'refs/heads/main', head]);
    const before = git(a.memdir, ['rev-parse', 'HEAD']).trim();
    const report = await a.snapshotter.verify(snap.bundle_path);
    assert.equal(report.status, 'damaged', JSON.stringify(report.problems));
    assert.ok(
      report.problems.some((p) => /hasDotdot/.test(p.message)),
      `verify names the entry: ${JSON.stringify(report.problems)}`,
    );
    assert.equal((await a.snapshotter.verify(good.bundle_path)).status, 'verified');
    const where = store === 'bundles' ? { bundle: snap.bundle_path } : { snapshot: snap.id };
    for (const req of [
      { agentId: 'ana', ...where, autoPreSnapshot: false },
      ...(store === 'bundles' ? [{ agentId: 'clone', bundle: snap.bundle_path, import: {} }] : []),
    ])
      await assert.rejects(
        a.snapshotter.restore(req),
        (err: Error & { code?: string; exitCode?: number }) => {
          assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
          assert.equal(err.exitCode, 2);
          assert.match(err.message, /hasDotdot/);
          return true;
        },
      );
    assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), before, 'the live agent is unchanged');
    assert.ok(!existsSync(join(a.memdirRoot, 'clone')), 'no clone was made');
    const where2 = store === 'bundles' ? { bundle: good.bundle_path } : { snapshot: good.id };
    await a.snapshotter.restore({ agentId: 'ana', ...where2, autoPreSnapshot: false });
  });

test("a history with old git's quirks (a zero-padded mode, a bad time zone, no space before the e-mail) verifies and restores", async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 2, memories: 5 });
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const blob = git(a.memdir, ['hash-object', '-w', '--stdin'], 'quirk\n').trim();
  const sub = git(
    a.memdir,
    ['hash-object', '-t', 'tree', '-w', '--literally', '--stdin'],
    Buffer.concat([Buffer.from('100644 q.md\0'), Buffer.from(blob, 'hex')]),
  ).trim();
  // a file and a subtree written with a zero-padded mode, as old git wrote them
  const tree = git(
    a.memdir,
    ['hash-object', '-t', 'tree', '-w', '--literally', '--stdin'],
    Buffer.concat([
      Buffer.from('100644 MEMORY.md\0'),
      Buffer.from(blob, 'hex'),
      Buffer.from('040000 zz\0'),
      Buffer.from(sub, 'hex'),
    ]),
  ).trim();
  const commit = git(
    a.memdir,
    ['hash-object', '-t', 'commit', '-w', '--literally', '--stdin'],
    `tree ${tree}\nparent ${head}\nauthor Old Tool<old@example.com> 1000000000 +99999\ncommitter Old Tool <old@example.com> 1000000000 +0000\n\nold\n`,
  ).trim();
  git(a.memdir, ['update-ref', 'refs/heads/main', commit]);
  git(a.memdir, ['reset', '-q', '--hard']);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const report = await a.snapshotter.verify(snap.bundle_path);
  assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  git(a.memdir, ['update-ref', 'refs/heads/main', head]);
  git(a.memdir, ['reset', '-q', '--hard']);
  const r = await a.snapshotter.restore({ agentId: 'ana', bundle: snap.bundle_path, autoPreSnapshot: false });
  assert.equal(r.git_reset_oid, commit);
  assert.equal(readFileSync(join(a.memdir, 'zz', 'q.md'), 'utf8'), 'quirk\n');
});

test("a delta bomb in a v1 bundle's raw .git: verify --deep (git fsck), restore and import (git fetch) and diff stop at the object limit, naming it", async (t) => {
  const a = agent(t);
  plantBomb(a.memdir, deltaBomb(1, 32 * 1024 * 1024));
  const snapshots = a.snapshotter.layout.snapshotsDir('default', 'ana');
  mkdirSync(snapshots, { recursive: true });
  const b = await v1Bundle(a, join(snapshots, `${SNAPSHOT_ID}.tar.zst`));
  const before = process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES;
  process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES = String(8 * 1024 * 1024);
  t.after(() => {
    if (before === undefined) delete process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES;
    else process.env.NEXO_MEMORY_GIT_MAX_OBJECT_BYTES = before;
  });
  const limit = /over the limit of 8388608 bytes on one git object .*raise NEXO_MEMORY_GIT_MAX_OBJECT_BYTES/;
  const report = await a.snapshotter.verify(b.path, { deep: true });
  assert.equal(report.status, 'damaged', JSON.stringify(report));
  assert.match(JSON.stringify(report.problems), limit);
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', bundle: b.path, autoPreSnapshot: false }),
    (err: Error & { code?: string; exitCode?: number }) => {
      assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, limit);
      return true;
    },
  );
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), head, 'the live agent is unchanged');
  // diff fetches the bundle's history (every ref: the bomb's branch too) under the same fuse
  await assert.rejects(
    a.snapshotter.diff({ agentId: 'ana', a: SNAPSHOT_ID, b: 'live' }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
      assert.match(err.message, limit);
      return true;
    },
  );
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'clone', bundle: b.path, import: {} }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'BUNDLE_DAMAGED', err.message);
      assert.match(err.message, limit);
      return true;
    },
  );
});
