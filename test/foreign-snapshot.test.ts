// Another agent's snapshot reached through this agent's routes (a hostile review, stop 45): a listing
// entry relabelled to ana, or bob's bundle copied into ana's directory, must be refused by every
// command given its id (BUNDLE_DAMAGED naming the entry, exit 2, nothing of bob's shown, bob and his
// tenant never named), skipped by find, and the same through the daemon and over MCP. Real CLI
// processes, a real daemon, the real MCP server; both stores.

import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { git } from '../scripts/sample-agent.js';
import { generateIdentity } from '../src/crypto/age.js';
import { LocalSnapshotter } from '../src/index.js';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import { type Agent, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { serveBuilt } from './helpers/serve.js';

const SMALL = { files: 2, commits: 1, memories: 10, embeddings: 4, concepts: 4, compactions: 2 };
const SECRET = 'private-line-otter-4711'; // no word of bob's or his tenant's in it (the query is echoed)

type Store = 'repository' | 'bundles';

/**
 * ana with one snapshot of her own, and bob (tenant acme) with one snapshot holding SECRET, in the
 * same state root; then bob's snapshot made to look like ana's: its listing entry relabelled
 * (repository) or its bundle and sidecar copied into ana's directory (bundles).
 */
async function forged(t: TestContext, store: Store): Promise<{ a: Agent; own: string; foreign: string }> {
  const a = sampleAgent(t, 'ana', SMALL, { store });
  const own = (await a.snapshotter.snapshot({ agentId: 'ana' })).id;
  const b = sampleAgent(t, 'bob', SMALL);
  writeFileSync(join(b.memdir, 'private.md'), `# Private\n\n${SECRET}\n`);
  git(b.memdir, ['add', 'private.md']);
  git(b.memdir, ['commit', '-qm', 'private']);
  const bobs = await new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: b.memdirRoot,
    sqliteRoot: b.sqliteRoot,
    store,
  }).snapshot({ agentId: 'bob', tenant: 'acme', label: 'label-b7' });
  if (store === 'repository') {
    const listing = join(a.stateRoot, 'repository', 'listing', bobs.id);
    const before = readFileSync(listing, 'utf8');
    const after = before.replace('"agent_id":"bob","tenant":"acme"', '"agent_id":"ana","tenant":"default"');
    assert.notEqual(after, before, 'the entry was relabelled');
    writeFileSync(listing, after);
  } else {
    const from = join(a.stateRoot, 'tenants', 'acme', 'snapshots', 'bob');
    const to = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
    for (const n of readdirSync(from)) if (n.startsWith(bobs.id)) cpSync(join(from, n), join(to, n));
  }
  return { a, own, foreign: bobs.id };
}

/**
 * The CLI (in this process: helpers/cli.ts; exit status, stdout and stderr are what is checked, not the
 * process) over ana's store; the commands that read live memory (diff, restore) get her roots too.
 */
const cli = (a: Agent, args: readonly string[]) =>
  runCli([...args, ...(['diff', 'restore'].includes(args[0]!) ? a.flags : a.flags.slice(0, 2))], {
    env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' }, // restore runs with --dry-run
  });

/** What a refusal must say: damage naming the entry, nothing of bob's. */
function refusedAsDamage(r: { code: number; stdout: string; stderr: string }, entry: string, what: string) {
  assert.equal(r.code, 2, `${what}: exit 2\n${r.stdout}${r.stderr}`);
  const out = r.stdout + r.stderr;
  assert.match(out, /BUNDLE_DAMAGED|bundle damaged/, what);
  assert.ok(out.includes(entry), `${what} names ${entry}: ${out}`);
  assert.match(out, /its manifest names another agent or tenant/, what);
  for (const leak of ['bob', 'acme', SECRET]) assert.ok(!out.includes(leak), `${what} tells ${leak}: ${out}`);
}

for (const store of ['repository', 'bundles'] as const) {
  test(`${store}: another agent's snapshot under ana's name is refused by every command given its id, skipped by find`, async (t) => {
    ensureBuilt();
    const { a, own, foreign } = await forged(t, store);
    const entry = store === 'repository' ? `listing/${foreign}` : `${foreign}.tar.zst`;
    const out = tempDir(t, 'nexo-foreign-out-');

    // verify: a damaged report naming the entry, nothing of bob's snapshot in it (its agent_id was)
    let r = await cli(a, ['verify', '--agent', 'ana', '--id', foreign, '--deep', '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.status, 'damaged');
    assert.equal(report.agent_id, undefined);
    assert.deepEqual(
      report.problems.map((p: { code: string; path: string }) => [p.code, p.path]),
      [['BUNDLE_DAMAGED', entry]],
    );
    for (const leak of ['bob', 'acme', 'label-b7'])
      assert.ok(!r.stdout.includes(leak), `verify tells ${leak}`);

    for (const [what, args] of [
      ['export', ['export', '--agent', 'ana', '--id', foreign, '--to', `${out}/`, '--no-redact']],
      ['diff', ['diff', '--agent', 'ana', foreign, 'live', '--detail']],
      ['diff (b side)', ['diff', '--agent', 'ana', own, foreign, '--detail', '--json']],
      ['cat', ['cat', '--agent', 'ana', foreign, 'memdir/private.md']],
      ['pin', ['pin', '--agent', 'ana', '--id', foreign]],
      ['unpin', ['unpin', '--agent', 'ana', '--id', foreign]],
      ['restore', ['restore', '--agent', 'ana', '--from', foreign, '--dry-run']],
      ['delete', ['delete', '--agent', 'ana', '--id', foreign, '--yes']],
    ] as const) {
      r = await cli(a, args);
      refusedAsDamage(r, entry, what);
    }
    assert.deepEqual(readdirSync(out), [], 'nothing was exported');
    // a prefix and `latest` (bob's snapshot is the newest listed) reach it the same way
    refusedAsDamage(
      await cli(a, ['pin', '--agent', 'ana', '--id', foreign.slice(0, 13)]),
      entry,
      'pin by prefix',
    );
    if (store === 'repository')
      refusedAsDamage(
        await cli(a, ['export', '--agent', 'ana', '--id', 'latest', '--to', `${out}/`]),
        entry,
        'latest',
      );
    assert.ok(
      !existsSync(join(a.stateRoot, 'repository', 'pins', foreign)) &&
        !readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).some((n) =>
          n.endsWith('.pin'),
        ),
      'nothing was pinned',
    );

    // find: bob's text is not found, his snapshot skipped (warned, counted), ana's searched
    r = await cli(a, ['find', '--agent', 'ana', SECRET, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const found = JSON.parse(r.stdout);
    assert.deepEqual(
      found.snapshots.map((s: { snapshot_id: string; found: boolean }) => [s.snapshot_id, s.found]),
      [[own, false]],
    );
    assert.equal(found.first_seen, undefined);
    assert.ok(!r.stdout.includes('snippet'), 'no snippet of it');
    if (store === 'repository') {
      // the bundle store's list already skips the copied bundle (warned), so find never sees it
      assert.equal(found.stats.snapshots_skipped, 1);
      assert.match(
        r.stderr,
        new RegExp(`skipping snapshot ${foreign}: its manifest names another agent or tenant`),
      );
    }
    for (const leak of ['bob', 'acme'])
      assert.ok(!(r.stdout + r.stderr).includes(leak), `find tells ${leak}`);

    // ana's own snapshot is untouched by all this
    r = await cli(a, ['verify', '--agent', 'ana', '--id', own, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    r = await cli(a, ['pin', '--agent', 'ana', '--id', own]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
}

test("the daemon and the MCP tools refuse another agent's snapshot under ana's name as the CLI does", async (t) => {
  ensureBuilt();
  const { a, own, foreign } = await forged(t, 'repository');
  const entry = `listing/${foreign}`;
  const token = 'foreign-test-token-0123456789abcdef';
  const served = await serveBuilt(t, a.flags, { NEXO_MEMORY_TOKEN: token });
  const get = async (path: string) => {
    const res = await fetch(`${served.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, text: await res.text() };
  };
  const noLeak = (text: string, what: string) => {
    for (const leak of ['bob', 'acme', 'label-b7', ...(what.includes('find') ? [] : [SECRET])])
      assert.ok(!text.includes(leak), `${what} tells ${leak}: ${text}`);
  };
  const snap = `/v1/agents/ana/snapshots/${foreign}`;
  for (const [what, path] of [
    ['meta', snap],
    ['export', `${snap}/export?redact=false`],
    ['diff', `/v1/agents/ana/diff?a=${foreign}&b=live&detail=true`],
    ['cat', `${snap}/cat?path=memdir/private.md`],
  ] as const) {
    const r = await get(path);
    assert.equal(r.status, 422, `${what}: ${r.status} ${r.text}`);
    const body = JSON.parse(r.text);
    assert.equal(body.error?.code ?? body.code, 'BUNDLE_DAMAGED', `${what}: ${r.text}`);
    assert.ok(r.text.includes(entry), `${what} names the entry: ${r.text}`);
    noLeak(r.text, what);
  }
  let r = await get(`${snap}/verify?deep=true`);
  const report = JSON.parse(r.text);
  assert.equal(report.status, 'damaged', r.text);
  assert.equal(report.problems[0].path, entry);
  noLeak(r.text, 'verify');
  r = await get(`/v1/agents/ana/find?text=${SECRET}`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(
    JSON.parse(r.text).snapshots.map((s: { snapshot_id: string }) => s.snapshot_id),
    [own],
  );
  assert.equal(JSON.parse(r.text).stats.snapshots_skipped, 1);
  noLeak(r.text, 'find');
  await served.stop();

  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--agent', 'ana', ...a.flags],
    env: { ...(process.env as Record<string, string>) },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'nexo-memory-test', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  type ToolResult = { isError?: boolean; content: Array<{ text?: string }> };
  const call = async (name: string, args: Record<string, unknown>) => {
    const res = (await client.callTool({ name, arguments: args })) as ToolResult;
    return { isError: res.isError === true, text: res.content.map((c) => c.text ?? '').join('\n') };
  };
  const v = await call('memory_verify', { snapshot_id: foreign, deep: true });
  assert.match(v.text, /"status": ?"damaged"/);
  noLeak(v.text, 'memory_verify');
  for (const [name, args] of [
    ['memory_diff', { a: foreign, b: 'live', detail: true }],
    ['memory_cat', { snapshot_id: foreign, path: 'memdir/private.md' }],
  ] as const) {
    const res = await call(name, args);
    assert.ok(res.isError, `${name}: ${res.text}`);
    assert.match(res.text, /BUNDLE_DAMAGED/, name);
    assert.ok(res.text.includes(entry), `${name} names the entry: ${res.text}`);
    noLeak(res.text, name);
  }
  const f = await call('memory_find', { text: SECRET });
  assert.ok(!f.isError, f.text);
  assert.match(f.text, /"snapshots_skipped": ?1/);
  noLeak(f.text, 'memory_find');
});

test("an encrypted bundle of another agent under ana's name: judged by its sidecar without the identity, by its manifest with it", async (t) => {
  ensureBuilt();
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const b = sampleAgent(t, 'bob', SMALL);
  const key = generateIdentity();
  const identity = join(tempDir(t, 'nexo-foreign-key-'), 'identity.txt');
  writeFileSync(identity, `${key.identity}\n`, { mode: 0o600 });
  const bobs = await new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: b.memdirRoot,
    sqliteRoot: b.sqliteRoot,
    store: 'bundles',
  }).snapshot({ agentId: 'bob', tenant: 'acme', encrypt: [key.recipient] });
  const from = join(a.stateRoot, 'tenants', 'acme', 'snapshots', 'bob');
  const to = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  for (const n of readdirSync(from)) if (n.startsWith(bobs.id)) cpSync(join(from, n), join(to, n));
  const entry = `${bobs.id}.tar.zst.age`;
  const out = tempDir(t, 'nexo-foreign-out-');
  // the sidecar (list's cache) says whose: refused without opening the bundle
  refusedAsDamage(await cli(a, ['pin', '--agent', 'ana', '--id', bobs.id]), entry, 'pin by the sidecar');
  refusedAsDamage(
    await cli(a, ['export', '--agent', 'ana', '--id', bobs.id, '--to', `${out}/`]),
    entry,
    'export by the sidecar',
  );
  // no sidecar: the manifest, decrypted with the identity, says whose
  rmSync(join(to, `${entry}.meta.json`));
  for (const [what, args] of [
    [
      'export',
      ['export', '--agent', 'ana', '--id', bobs.id, '--to', `${out}/`, '--decrypt-identity', identity],
    ],
    ['cat', ['cat', '--agent', 'ana', bobs.id, 'memdir', '--decrypt-identity', identity]],
  ] as const)
    refusedAsDamage(await cli(a, args), entry, `${what} with the identity`);
  assert.deepEqual(readdirSync(out), [], 'nothing was exported');
});
