// Redaction of git refs that name a blob or a tree (directly, or through annotated tags, a tag of a tag
// included): `git fast-export` leaves them out, so before this fix a redacted copy shipped their content
// unscanned ("unchanged") when no commit needed rewriting, and dropped them when one did. Each is now
// scanned like a file and kept: a redacted snapshot (both stores), a redacted export (CLI, re-packed) and
// the HTTP download hold no planted secret in any object of their history, keep every such ref, and
// report how many.
// Every secret is assembled at run time, so this file holds no literal secret-shaped string.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { git } from '../scripts/sample-agent.js';
import { Daemon } from '../src/server/daemon.js';
import { type Agent, gnuExtract, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { snapshotterOf } from './helpers/exchange.js';

const body = (n: number) =>
  randomBytes(n * 2)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, '')
    .slice(0, n);

/** Synthetic secrets (assembled at run time), each with the random body that must never ship. */
function secrets() {
  const s = (rule: string, prefix: string, needle: string) => ({ rule, secret: prefix + needle, needle });
  return {
    blob: s('anthropic-api-key', `${'sk'}-ant-api03-`, `${body(86)}AA`),
    tree: s('github-token', `${'gh'}p_`, body(36)),
    tagtag: s('github-token', `${'gh'}s_`, body(36)),
    tagMessage: s('gitlab-token', `${'gl'}pat-`, body(20)),
    commit: s('github-token', `${'gh'}u_`, body(36)),
  };
}
type Secrets = ReturnType<typeof secrets>;

/** What these tests read of a shipped manifest. */
interface Shipped {
  redactions: { git_history: string; matches_redacted: number; git: { object_refs?: number } };
}

const gitIn = (dir: string, args: string[], input?: string): string =>
  execFileSync('git', args, {
    cwd: dir,
    input,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'x',
      GIT_AUTHOR_EMAIL: 'a@x',
      GIT_COMMITTER_NAME: 'x',
      GIT_COMMITTER_EMAIL: 'c@x',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
    .toString()
    .trim();

/**
 * Plants, in the agent's memdir: a ref to a blob, an annotated tag of a tree (secret in a file and in
 * the tag's message), a tag of a tag of a blob (the inner tag has no ref), and a clean ref to a tree.
 * With `commit`, a committed file with a secret too (so commits need rewriting).
 */
function plant(a: Agent, s: Secrets, commit: boolean): void {
  const m = a.memdir;
  const blob = gitIn(m, ['hash-object', '-w', '--stdin'], `blobref ${s.blob.secret}\n`);
  gitIn(m, ['update-ref', 'refs/keep/blob', blob]);
  const inTree = gitIn(m, ['hash-object', '-w', '--stdin'], `treetag ${s.tree.secret}\n`);
  const clean = gitIn(m, ['hash-object', '-w', '--stdin'], 'nothing to hide\n');
  const sub = gitIn(m, ['mktree'], `100644 blob ${clean}\tclean.md\n`);
  const tree = gitIn(m, ['mktree'], `100644 blob ${inTree}\tt.md\n040000 tree ${sub}\tdeep\n`);
  gitIn(m, ['tag', '-a', 'treetag', tree, '-m', `tag of a tree ${s.tagMessage.secret}`]);
  gitIn(m, ['update-ref', 'refs/keep/clean-tree', sub]);
  const inner = gitIn(m, ['hash-object', '-w', '--stdin'], `tagtag ${s.tagtag.secret}\n`);
  gitIn(m, ['-c', 'advice.nestedTag=false', 'tag', '-a', 'inner', inner, '-m', 'inner']);
  gitIn(m, ['-c', 'advice.nestedTag=false', 'tag', '-a', 'outer', 'inner', '-m', 'outer']);
  gitIn(m, ['tag', '-d', 'inner']);
  if (commit) {
    writeFileSync(join(m, 'keys.md'), `key ${s.commit.secret}\n`);
    gitIn(m, ['add', 'keys.md']);
    gitIn(m, ['commit', '-q', '-m', 'a key']);
  }
}

/** Every ref of the git bundle inside `bundle` (a `.tar.zst`), fetched into a bare repository. */
function historyOf(t: TestContext, bundle: string): { repo: string; manifest: Shipped } {
  const x = gnuExtract(t, bundle);
  const repo = join(tempDir(t, 'nexo-clone-'), 'c.git');
  gitIn(tempDir(t), ['init', '-q', '--bare', repo]);
  gitIn(repo, ['fetch', '-q', join(x, 'git', 'memdir.bundle'), 'refs/*:refs/*']);
  return { repo, manifest: JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8')) };
}

/** The shipped history holds no planted secret in any object; every planted ref is there, redacted. */
function checkHistory(
  t: TestContext,
  bundle: string,
  s: Secrets,
  how: { commit: boolean; headOid: string },
): Shipped {
  const { repo, manifest } = historyOf(t, bundle);
  const objects = execFileSync('git', ['cat-file', '--batch-all-objects', '--batch'], {
    cwd: repo,
    maxBuffer: 256 * 1024 * 1024,
  });
  const leaked = Object.entries(s).filter(([, v]) => objects.includes(v.needle));
  assert.deepEqual(
    leaked.map(([k]) => k),
    [],
    'no planted secret in any object of the history',
  );
  assert.equal(gitIn(repo, ['cat-file', '-p', 'refs/keep/blob']), 'blobref [REDACTED:anthropic-api-key]');
  assert.equal(gitIn(repo, ['cat-file', '-t', 'refs/tags/treetag']), 'tag');
  assert.equal(gitIn(repo, ['cat-file', '-t', 'refs/tags/treetag^{}']), 'tree');
  assert.equal(
    gitIn(repo, ['cat-file', '-p', 'refs/tags/treetag^{}:t.md']),
    'treetag [REDACTED:github-token]',
  );
  assert.equal(gitIn(repo, ['cat-file', '-p', 'refs/tags/treetag^{}:deep/clean.md']), 'nothing to hide');
  assert.match(
    gitIn(repo, ['cat-file', '-p', 'refs/tags/treetag']),
    /tag of a tree \[REDACTED:gitlab-token\]/,
  );
  assert.equal(
    gitIn(repo, ['cat-file', '-t', 'refs/tags/outer^{tag}^{object}']),
    'tag',
    'a tag of a tag still',
  );
  assert.equal(gitIn(repo, ['cat-file', '-p', 'refs/tags/outer^{}']), 'tagtag [REDACTED:github-token]');
  assert.equal(gitIn(repo, ['cat-file', '-t', 'refs/keep/clean-tree']), 'tree');
  const red = manifest.redactions;
  assert.equal(red.git_history, 'rewritten');
  assert.equal(red.git.object_refs, 4, 'the report counts the refs to blobs and trees it scanned and kept');
  assert.ok(red.matches_redacted >= (how.commit ? 5 : 4));
  // Only what held a secret is new: without a secret in a commit, every commit keeps its id.
  const head = gitIn(repo, ['rev-parse', 'refs/heads/main']);
  if (how.commit) assert.notEqual(head, how.headOid);
  else assert.equal(head, how.headOid);
  return manifest;
}

for (const store of ['bundles', 'repository'] as const)
  for (const commit of [false, true])
    test(`${store}: refs to blobs and trees are scanned and kept in a redacted snapshot and a redacted export${commit ? ' (a commit needs rewriting too)' : ' (no commit needs rewriting)'}`, async (t) => {
      const a = sampleAgent(t, 'ana', { files: 2, commits: 2 });
      const s = secrets();
      plant(a, s, commit);
      const headOid = gitIn(a.memdir, ['rev-parse', 'HEAD']);
      const snapshotter = snapshotterOf(a, { store });
      const env = { NEXO_MEMORY_STORE_FORMAT: store };

      // a redacted snapshot (a repository snapshot is exported as it is: it is already redacted)
      const red = await snapshotter.snapshot({ agentId: 'ana', redact: true });
      const out = tempDir(t);
      const bundle =
        store === 'bundles'
          ? red.bundle_path
          : (await snapshotter.export('ana', undefined, red.id, join(out, 'red.tar.zst'))).path;
      checkHistory(t, bundle, s, { commit, headOid });

      // an exact snapshot exported by the CLI: re-packed, redacted, and the refs named in its report
      const exact = await snapshotter.snapshot({ agentId: 'ana' });
      const to = join(out, 'exp.tar.zst');
      const r = await runCli(
        ['export', '--agent', 'ana', '--id', exact.id, '--to', to, '--state-root', a.stateRoot],
        { env },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /redacted: yes, re-packed .*; 4 git ref\(s\) to a blob or tree scanned like files and kept\)/,
      );
      checkHistory(t, to, s, { commit, headOid });
      // the HTTP download of the exact snapshot: the same re-pack
      const token = 't'.repeat(32);
      const d = new Daemon({ snapshotter, listen: '127.0.0.1:0', token });
      const { url } = await d.start();
      t.after(() => d.stop());
      const res = await fetch(`${url}/v1/agents/ana/snapshots/${exact.id}/export`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-nexo-copy'), 'redacted');
      const download = join(out, 'download.tar.zst');
      writeFileSync(download, Buffer.from(await res.arrayBuffer()));
      checkHistory(t, download, s, { commit, headOid });
      // the exact snapshot itself keeps them byte for byte (it stays on the host)
      const j = await runCli(
        [
          'export',
          '--agent',
          'ana',
          '--id',
          exact.id,
          '--to',
          join(out, 'exact.tar.zst'),
          '--no-redact',
          '--json',
          '--state-root',
          a.stateRoot,
        ],
        { env },
      );
      assert.equal(j.code, 0, j.stderr);
      const { repo } = historyOf(t, join(out, 'exact.tar.zst'));
      assert.equal(gitIn(repo, ['cat-file', '-p', 'refs/keep/blob']), `blobref ${s.blob.secret}`);
    });

test('refs to clean blobs and trees: scanned, nothing found, the history shipped as captured (unchanged)', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 2 });
  const m = a.memdir;
  const blob = gitIn(m, ['hash-object', '-w', '--stdin'], 'nothing here\n');
  gitIn(m, ['update-ref', 'refs/keep/blob', blob]);
  gitIn(m, ['tag', '-a', 'treetag', 'HEAD^{tree}', '-m', 'a clean tree']);
  const meta = await snapshotterOf(a, { store: 'bundles' }).snapshot({ agentId: 'ana', redact: true });
  const { repo, manifest } = historyOf(t, meta.bundle_path);
  assert.equal(manifest.redactions.git_history, 'unchanged');
  assert.equal(manifest.redactions.git.object_refs, 2);
  assert.equal(gitIn(repo, ['rev-parse', 'refs/keep/blob']), blob);
  assert.equal(
    gitIn(repo, ['rev-parse', 'refs/tags/treetag']),
    git(m, ['rev-parse', 'refs/tags/treetag']).trim(),
  );
});
