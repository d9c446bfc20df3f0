// Moving snapshots between the repository and bundles: export (library, CLI, HTTP download) of a
// repository snapshot as a v2/v3 bundle that GNU tar, zstd, age and `git clone` read, redacted by
// default, encrypted to the recipients for an encrypted repository; import of a bundle (v1 included)
// into the repository, alone (--store-only) or with the restore as another agent; and migrate of a
// bundle store into the repository (ids, labels, pins kept; each checked before its bundle goes),
// idempotent; its resumption after kill -9 is in repository-migrate-kill.test.ts (helpers/exchange.ts
// holds what both use).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { git } from '../scripts/sample-agent.js';
import { LocalBackend } from '../src/backend/local.js';
import { secretKeyFileText } from '../src/crypto/sign.js';
import { trustPolicy } from '../src/format/signature.js';
import { generateSigningKey } from '../src/index.js';
import { lockRepository } from '../src/repository/locks.js';
import { sealRepoManifest } from '../src/repository/manifest.js';
import { Repository } from '../src/repository/repository.js';
import { loadSnapshot, saveSnapshot } from '../src/repository/snapshots.js';
import { createApiServer } from '../src/server/http.js';
import { apiRoutes } from '../src/server/routes.js';
import { OperationTracker } from '../src/server/tracker.js';
import type { MigrateReport } from '../src/snapshotter/migrate.js';
import { verifyBundleFile } from '../src/verify/verify.js';
import { forgeBundle, readEntries } from './helpers/bundles.js';
import { type Agent, agentConfig, gnuExtract, gnuList, runCli, sampleAgent, tempDir } from './helpers/env.js';
import {
  assertMigrated,
  bundleStore,
  contentOf,
  plantSecret,
  SMALL,
  signingKeyFile,
  snapshotterOf,
  V1_ID,
  v1BundleOf,
} from './helpers/exchange.js';
import { fromTemplate } from './helpers/template.js';

const repoEnv = { NEXO_MEMORY_STORE_FORMAT: 'repository' };
/** Every file under `dir` (recursively), as one string, to search for a secret. */
function allBytes(dir: string): string {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(readFileSync(p, 'latin1'));
    }
  };
  walk(dir);
  return out.join('\n');
}

/** `git clone` of the git bundle inside an exported bundle (GNU tar extracts it); returns the clone. */
function cloneHistory(t: TestContext, bundle: string): string {
  const dir = gnuExtract(t, bundle);
  const clone = join(tempDir(t, 'nexo-clone-'), 'clone');
  execFileSync('git', ['clone', '-q', join(dir, 'git', 'memdir.bundle'), clone], {
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: '/dev/null' },
  });
  return clone;
}

test('export of a repository snapshot: a v3 bundle (signed with the host key) that GNU tar, zstd and git clone read; exact with --no-redact, redacted by default', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const token = plantSecret(a);
  const keyFile = join(tempDir(t), 'sign.key');
  const key = generateSigningKey();
  writeFileSync(keyFile, secretKeyFileText(key), { mode: 0o600 });
  const s = snapshotterOf(a, { signingKey: keyFile });
  const snap = await s.snapshot({ agentId: 'ana', label: 'before dream' });
  assert.equal(snap.bundle_format, 'nexo-memory-snapshot-v5');
  const out = tempDir(t, 'nexo-export-');

  const exact = await s.export('ana', 'default', snap.id.slice(0, 8), `${out}/`, { redact: false });
  assert.equal(exact.path, join(out, `${snap.id}.tar.zst`));
  assert.equal(exact.copy, 'exact');
  assert.equal(exact.repacked, true, 'written from the repository: signed by this host, not copied');
  assert.equal(exact.redacted, false);
  assert.equal(exact.verify.status, 'verified', JSON.stringify(exact.verify.problems));
  assert.equal(readFileSync(exact.sibling_path, 'utf8').trim(), exact.file_sha256);
  const report = await verifyBundleFile(exact.path, {
    deep: true,
    trust: trustPolicy([key.publicKey], true),
  });
  assert.equal(report.status, 'verified', JSON.stringify(report.problems));
  assert.equal(report.bundle_format, 'nexo-memory-snapshot-v3');
  assert.equal(report.signature?.status, 'trusted');
  assert.equal(report.snapshot_id, snap.id);
  // zstd and GNU tar read it; the manifest is the first entry; the content is the live agent's
  execFileSync('zstd', ['-t', '-q', exact.path]);
  const names = gnuList(exact.path);
  assert.equal(names[0], 'manifest.json');
  assert.ok(names.includes('git/memdir.bundle'));
  assert.ok(names.includes('memory_files/topics/keys.md'));
  const files = gnuExtract(t, exact.path);
  assert.equal(
    readFileSync(join(files, 'memory_files', 'topics', 'keys.md'), 'utf8'),
    readFileSync(join(a.memdir, 'topics', 'keys.md'), 'utf8'),
  );
  const manifest = JSON.parse(readFileSync(join(files, 'manifest.json'), 'utf8'));
  assert.equal(manifest.label, 'before dream');
  assert.equal(manifest.created_at_ms, snap.created_at_ms);
  const db = new Database(join(files, 'sqlite', 'long_term.sqlite'), { readonly: true });
  assert.equal(
    (db.prepare('SELECT count(*) AS n FROM memories WHERE content LIKE ?').get(`%${token}%`) as { n: number })
      .n,
    1,
  );
  db.close();
  // git clone reads its history: every commit, HEAD on the same branch and commit as the live memdir
  const clone = cloneHistory(t, exact.path);
  assert.equal(git(clone, ['rev-parse', 'HEAD']).trim(), git(a.memdir, ['rev-parse', 'HEAD']).trim());
  assert.equal(
    git(clone, ['rev-list', '--count', 'HEAD']).trim(),
    git(a.memdir, ['rev-list', '--count', 'HEAD']).trim(),
  );

  // the default: what leaves the host is redacted, history included
  const redacted = await s.export('ana', 'default', snap.id, join(out, 'shared.tar.zst'));
  assert.equal(redacted.copy, 'redacted');
  assert.equal(redacted.redacted, true);
  assert.ok((redacted.redaction?.matches_redacted ?? 0) >= 2, JSON.stringify(redacted.redaction));
  assert.equal(redacted.redaction?.git_history, 'rewritten');
  assert.equal(redacted.verify.status, 'verified', JSON.stringify(redacted.verify.problems));
  const shared = gnuExtract(t, redacted.path);
  assert.equal(allBytes(shared).includes(token), false, 'no byte of the secret in the redacted export');
  const sharedClone = cloneHistory(t, redacted.path);
  assert.equal(git(sharedClone, ['log', '-p', '--all']).includes(token), false);
  assert.match(readFileSync(join(shared, 'memory_files', 'topics', 'keys.md'), 'utf8'), /\[REDACTED:/);

  // never replaced without --force; a missing directory is not created
  await assert.rejects(s.export('ana', 'default', snap.id, `${out}/`, { redact: false }), {
    code: 'ALREADY_EXISTS',
  });
  await assert.rejects(s.export('ana', 'default', snap.id, join(out, 'missing', 'x.tar.zst')), {
    code: 'INVALID_INPUT',
  });
});

/**
 * The agent with a planted secret and a repository snapshot of it, made once and copied per test
 * (helpers/template.ts).
 */
async function secretSnapshot(t: TestContext) {
  const { a, made } = await fromTemplate(t, 'secret snapshot', { agent: SMALL }, async (a) => {
    const token = plantSecret(a);
    return { token, snap: await snapshotterOf(a).snapshot({ agentId: 'ana' }) };
  });
  return { a, ...made };
}

test("the exact export of a repository snapshot restores as today's bundles do", async (t) => {
  const { a, snap } = await secretSnapshot(t);
  const s = snapshotterOf(a);
  const exported = await s.export('ana', 'default', snap.id, `${tempDir(t)}/`, { redact: false });
  const bundles = snapshotterOf(a, { store: 'bundles' });
  const r = await bundles.restore({ agentId: 'copy', bundle: exported.path, import: {} });
  assert.equal(r.from, snap.id);
  assert.equal(git(join(a.memdirRoot, 'copy'), ['rev-parse', 'HEAD']).trim(), snap.git_oid);
  for (const rel of ['MEMORY.md', 'topics/people/topic-0004.md'])
    assert.equal(
      readFileSync(join(a.memdirRoot, 'copy', rel), 'utf8'),
      readFileSync(join(a.memdir, rel), 'utf8'),
    );
  const rows = (dir: string) => {
    const db = new Database(join(dir, 'long_term.sqlite'), { readonly: true });
    const n = (db.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n;
    db.close();
    return n;
  };
  assert.equal(rows(join(a.sqliteRoot, 'copy')), rows(a.sqliteDir));
});

function ageIdentity(t: TestContext): { path: string; recipient: string } {
  const path = join(tempDir(t), 'age.txt');
  execFileSync('age-keygen', ['-o', path], { stdio: 'ignore' });
  return { path, recipient: execFileSync('age-keygen', ['-y', path]).toString().trim() };
}

test('export of an encrypted repository snapshot: encrypted to the configured recipients (age reads it), or a redacted plaintext copy with --decrypt; the identity is needed', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const token = plantSecret(a);
  const id = ageIdentity(t);
  const s = snapshotterOf(a, { recipients: [id.recipient], identityPath: id.path });
  const snap = await s.snapshot({ agentId: 'ana' });
  assert.equal(snap.encrypted, true);
  const out = tempDir(t, 'nexo-export-');

  const enc = await s.export('ana', 'default', snap.id, `${out}/`, { decryptIdentity: id.path });
  assert.equal(enc.path, join(out, `${snap.id}.tar.zst.age`));
  assert.equal(enc.copy, 'encrypted');
  assert.equal(enc.encrypted, true);
  assert.equal(enc.verify.status, 'verified', JSON.stringify(enc.verify.problems));
  assert.equal(enc.verify.bundle_format, 'nexo-memory-snapshot-v2');
  // the age CLI decrypts it; GNU tar reads what it decrypts, secrets included (it is protected)
  const plain = join(out, 'decrypted.tar.zst');
  execFileSync('age', ['-d', '-i', id.path, '-o', plain, enc.path]);
  assert.ok(gnuList(plain).includes('memory_files/topics/keys.md'));
  assert.ok(allBytes(gnuExtract(t, plain)).includes(token));

  const dec = await s.export('ana', 'default', snap.id, join(out, 'plain.tar.zst'), { decrypt: true });
  assert.equal(dec.copy, 'redacted');
  assert.equal(dec.encrypted, false);
  assert.equal(allBytes(gnuExtract(t, dec.path)).includes(token), false);

  // no recipients configured: no silent plaintext copy of an encrypted snapshot
  const noRecipients = snapshotterOf(a, { identityPath: id.path });
  await assert.rejects(noRecipients.export('ana', 'default', snap.id, join(out, 'x.tar.zst')), {
    code: 'INVALID_INPUT',
  });
  // no identity: the repository cannot be read (exit 7)
  const noIdentity = snapshotterOf(a, { recipients: [id.recipient] });
  await assert.rejects(noIdentity.export('ana', 'default', snap.id, join(out, 'y.tar.zst')), {
    code: 'ENCRYPTION',
    exitCode: 7,
  });
  assert.deepEqual(readdirSync(out).sort(), [
    `${snap.id}.tar.zst.age`,
    `${snap.id}.tar.zst.age.sha256`,
    'decrypted.tar.zst',
    'plain.tar.zst',
    'plain.tar.zst.sha256',
  ]);
});

test('export of a repository snapshot through the CLI and the HTTP download route', async (t) => {
  const { a, token, snap } = await secretSnapshot(t);
  const s = snapshotterOf(a);
  const out = tempDir(t, 'nexo-export-');
  const root = ['--state-root', a.stateRoot];
  const r = await runCli(
    ['export', '--agent', 'ana', '--id', snap.id, '--to', `${out}/`, '--json', ...root],
    {
      env: repoEnv,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { path: string; copy: string; verify: { status: string } };
  assert.equal(res.copy, 'redacted');
  assert.equal(res.verify.status, 'verified');
  assert.equal(allBytes(gnuExtract(t, res.path)).includes(token), false);

  const tracker = new OperationTracker();
  const server = createApiServer({
    routes: apiRoutes({ snapshotter: s, tracker, allowRestore: false, startedAt: Date.now() }),
    token: 'test-token-0123456789abcdef',
    tracker,
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  for (const [query, copy] of [
    ['', 'redacted'],
    ['?redact=false', 'exact'],
  ] as const) {
    const got = await fetch(`http://127.0.0.1:${port}/v1/agents/ana/snapshots/${snap.id}/export${query}`, {
      headers: { authorization: 'Bearer test-token-0123456789abcdef' },
    });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('x-nexo-copy'), copy);
    assert.equal(got.headers.get('x-nexo-snapshot-id'), snap.id);
    const path = join(out, `download${query ? '-exact' : ''}.tar.zst`);
    writeFileSync(path, Buffer.from(await got.arrayBuffer()));
    writeFileSync(`${path}.sha256`, got.headers.get('x-nexo-file-sha256')!);
    const v = await verifyBundleFile(path);
    assert.equal(v.status, 'verified', JSON.stringify(v.problems));
    assert.equal(allBytes(gnuExtract(t, path)).includes(token), copy === 'exact');
  }
});

/** A snapshot of the agent in the bundle store (0.2 state roots, and bundles received from elsewhere). */
async function bundleSnapshot(a: Agent, label?: string) {
  return snapshotterOf(a, { store: 'bundles' }).snapshot({ agentId: 'ana', ...(label ? { label } : {}) });
}

/** The agent with a bundle of it labelled 'from host A', made once and copied per test (helpers/template.ts). */
async function bundled(t: TestContext) {
  const { a, made } = await fromTemplate(t, 'bundle', { agent: SMALL }, (a) =>
    bundleSnapshot(a, 'from host A'),
  );
  return { a, bundle: made };
}

/** Memory files and database rows of an agent, to compare two agents (or one, before and after). */
function liveContent(a: Agent, agent: string): string {
  const memdir = join(a.memdirRoot, agent);
  const files = git(memdir, ['ls-files', '-co', '--exclude-standard'])
    .split('\n')
    .filter(Boolean)
    .sort()
    .map((f) => `${f}:${readFileSync(join(memdir, f), 'utf8')}`);
  const db = new Database(join(a.sqliteRoot, agent, 'long_term.sqlite'), { readonly: true });
  const rows = JSON.stringify(db.prepare('SELECT * FROM memories ORDER BY rowid').all());
  db.close();
  return `${git(memdir, ['rev-parse', 'HEAD'])}${files.join('\n')}${rows}`;
}

test('import --store-only of a stored snapshot whose listing entry was lost waits for a prune that holds the repository: it stores the bundle again instead of listing a manifest the prune removes (stop 55)', async (t) => {
  const { a, bundle } = await bundled(t);
  const s = snapshotterOf(a);
  assert.equal((await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' })).stored, 'new');
  // its listing entry lost (a kill between manifest and listing): prune removes such a manifest
  const backend = new LocalBackend(join(a.stateRoot, 'repository'));
  await backend.remove({ type: 'listing', name: bundle.id });
  // a prune of another process holds the exclusive lock, and removes the unlisted manifest
  const prune = await lockRepository(backend, true, 'prune', 0);
  const importing = snapshotterOf(a).storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  // the import may list the manifest only under its own lock, so not while the prune holds its own:
  // up to 2 s for it to do so anyway (the old code did, as soon as it had staged the bundle)
  const listed = () =>
    backend.stat({ type: 'listing', name: bundle.id }).then(
      () => true,
      () => false,
    );
  for (let i = 0; i < 40 && !(await listed()); i++) await new Promise((r) => setTimeout(r, 50));
  await backend.remove({ type: 'snapshots', name: bundle.id });
  await prune.release();
  // before stop 55 the import said `already_present` at once and listed the manifest the prune removed
  const stored = await importing;
  assert.equal(stored.stored, 'new');
  assert.deepEqual(
    (await s.list('ana')).map((m) => m.id),
    [bundle.id],
  );
  const v = await s.verifySnapshot('ana', 'default', bundle.id);
  assert.equal(v.status, 'verified', JSON.stringify(v.problems));
});

test('import into a repository store: restored as the new agent and kept as its snapshot; --store-only changes nothing live; the same agent keeps the id, stored once', async (t) => {
  const { a, bundle } = await bundled(t);
  const s = snapshotterOf(a);

  const r = await s.restore({ agentId: 'clone', bundle: bundle.bundle_path, import: {} });
  assert.deepEqual(r.imported_from, { agent_id: 'ana', tenant: 'default' });
  assert.ok(r.stored_snapshot);
  assert.equal(liveContent(a, 'clone'), liveContent(a, 'ana'), 'the clone is the bundle');
  const [cloned] = await s.list('clone');
  assert.equal(cloned?.id, r.stored_snapshot);
  assert.notEqual(cloned?.id, bundle.id, 'a clone is a new snapshot');
  assert.equal(cloned?.created_by, 'import');
  assert.equal(cloned?.label, 'from host A');
  assert.equal(cloned?.bundle_format, 'nexo-memory-snapshot-v4');
  const v = await s.verifySnapshot('clone', 'default', cloned!.id);
  assert.equal(v.status, 'verified', JSON.stringify(v.problems));

  // an agent with memory is refused without --force, and nothing is stored
  await assert.rejects(s.restore({ agentId: 'clone', bundle: bundle.bundle_path, import: {} }), {
    code: 'RESTORE_REFUSED',
  });
  assert.equal((await s.list('clone')).length, 1);

  // --store-only as the bundle's own agent: its id, label, time and creator; nothing live changes
  const before = liveContent(a, 'ana');
  const stored = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.id, bundle.id);
  assert.equal(stored.snapshot.created_at_ms, bundle.created_at_ms);
  assert.equal(stored.snapshot.created_by, bundle.created_by);
  assert.equal(stored.snapshot.label, 'from host A');
  assert.equal(liveContent(a, 'ana'), before);
  const again = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(again.stored, 'already_present');
  assert.equal(again.snapshot.id, bundle.id);
  // listed once, although the bundle is still in the bundle store beside it
  assert.deepEqual(
    (await s.list('ana')).map((m) => [m.id, m.bundle_format]),
    [[bundle.id, 'nexo-memory-snapshot-v4']],
  );
  // its export is the same content as the bundle
  const exported = await s.export('ana', 'default', bundle.id, `${tempDir(t)}/`, { redact: false });
  assert.deepEqual(await contentOf(exported.path), await contentOf(bundle.bundle_path));

  // the bundle store has no place for it
  await assert.rejects(
    snapshotterOf(a, { store: 'bundles' }).storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' }),
    { code: 'INVALID_INPUT' },
  );
});

test('import --store-only of a bundle whose id a planted manifest holds, with an origin copied from the bundle: not already_present; the bundle is stored under a new id (stop 62 review)', async (t) => {
  const { a, bundle } = await bundled(t);
  const s = snapshotterOf(a);
  // another snapshot of the agent (other memory), then planted under the bundle's id with an origin
  // naming the bundle: its id and seals are in the bundle's plaintext head, for anyone to copy
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# planted by whoever writes the repository\n');
  const other = await s.snapshot({ agentId: 'ana' });
  const repo = await Repository.open(new LocalBackend(join(a.stateRoot, 'repository')));
  const { manifest } = await loadSnapshot(repo, other.id);
  const head = JSON.parse((await readEntries(bundle.bundle_path))[0]!.data.toString('utf8')) as Record<
    string,
    unknown
  >;
  const {
    manifest_seal: _s,
    signature: _g,
    bundle_sha256: _b,
    manifest_version: _v,
    bundle_format: _f,
    ...draft
  } = manifest as unknown as Record<string, unknown>;
  Object.assign(draft, {
    snapshot_id: bundle.id,
    created_at_ms: bundle.created_at_ms,
    origin: {
      via: 'import',
      bundle_format: head.bundle_format,
      snapshot_id: head.snapshot_id,
      agent_id: head.agent_id,
      tenant: head.tenant,
      created_at_ms: head.created_at_ms,
      bundle_sha256: head.bundle_sha256,
      manifest_seal: head.manifest_seal,
    },
  });
  const planted = sealRepoManifest(draft as Parameters<typeof sealRepoManifest>[0]);
  const { id: _id, ...meta } = (await s.list('ana')).find((m) => m.id === other.id)!;
  await saveSnapshot(repo, planted.manifest, planted.json, {
    ...meta,
    id: bundle.id,
    created_at_ms: bundle.created_at_ms,
  });

  const stored = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(stored.stored, 'new', 'the planted manifest records other content: not the bundle');
  assert.notEqual(stored.snapshot.id, bundle.id);
  const exported = await s.export('ana', 'default', stored.snapshot.id, `${tempDir(t)}/`, { redact: false });
  assert.deepEqual(
    await contentOf(exported.path),
    await contentOf(bundle.bundle_path),
    'what was stored is the bundle',
  );
});

test('import through the CLI: --store-only needs no restore gate; a full import reports the stored snapshot', async (t) => {
  const { a, bundle } = await bundled(t);
  let r = await runCli(
    ['import', '--from', bundle.bundle_path, '--agent', 'bob', '--store-only', '--json', ...a.flags],
    { env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: '' } },
  );
  assert.equal(r.code, 0, r.stderr);
  const stored = JSON.parse(r.stdout) as { stored: string; snapshot: { id: string; agent_id: string } };
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.agent_id, 'bob');
  assert.equal(existsSync(join(a.memdirRoot, 'bob')), false, 'nothing live was created');
  r = await runCli(['import', '--from', bundle.bundle_path, '--agent', 'carl', '--json', ...a.flags], {
    env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: '' },
  });
  assert.equal(r.code, 6, 'a full import needs the restore gate');
  r = await runCli(['import', '--from', bundle.bundle_path, '--agent', 'carl', '--json', ...a.flags], {
    env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: 'true' },
  });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { stored_snapshot: string };
  r = await runCli(['list', '--agent', 'carl', '--json', '--state-root', a.stateRoot], { env: repoEnv });
  assert.deepEqual(
    (JSON.parse(r.stdout) as { id: string }[]).map((m) => m.id),
    [report.stored_snapshot],
  );
});

test("import refuses a repository snapshot's <repository>#<id>, saying to export it first (stop 51): full or --store-only, nothing stored", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = await runCli(['snapshot', '--agent', 'ana', '--json', ...a.flags], { env: repoEnv });
  assert.equal(snap.code, 0, snap.stderr);
  const meta = JSON.parse(snap.stdout) as { id: string; bundle_path: string };
  assert.equal(meta.bundle_path, `${join(a.stateRoot, 'repository')}#${meta.id}`);
  for (const extra of [[], ['--store-only']]) {
    const r = await runCli(['import', '--from', meta.bundle_path, '--agent', 'eve', ...extra, ...a.flags], {
      env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: 'true' },
    });
    assert.equal(r.code, 1, `${extra}: ${r.stderr}`);
    assert.match(
      r.stderr,
      /bundle not found: .*import takes a bundle file; export it first \(nexo-memory export /,
    );
    assert.doesNotMatch(r.stderr, /give its state root/, 'not the hint of verify and restore');
  }
  const list = await runCli(['list', '--agent', 'eve', '--json', '--state-root', a.stateRoot], {
    env: repoEnv,
  });
  assert.deepEqual(JSON.parse(list.stdout), []);
  assert.equal(existsSync(join(a.memdirRoot, 'eve')), false, 'nothing live was created');
});

test('a v1 bundle of the original is stored in the repository (raw history quarantined, nothing of it run) and exports as a v2 bundle git clone reads', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const marker = join(tempDir(t), 'ran');
  const v1 = v1BundleOf(a, join(tempDir(t), 'v1.tar.zst'), {
    config: `[core]\n\tfsmonitor = "touch ${marker}"\n\thooksPath = hooks\n`,
    'hooks/post-checkout': `#!/bin/sh\ntouch ${marker}\n`,
    'hooks/reference-transaction': `#!/bin/sh\ntouch ${marker}\n`,
  });
  const s = snapshotterOf(a);
  const stored = await s.storeBundle({ bundle: v1, agentId: 'ana' });
  const id = stored.snapshot.id;
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.label, 'from the original');
  assert.equal(stored.snapshot.created_at_ms, 1_700_000_000_000);
  assert.equal(stored.snapshot.git_oid, git(a.memdir, ['rev-parse', 'HEAD']).trim());
  assert.equal((await s.verifySnapshot('ana', 'default', id)).status, 'verified');
  const exported = await s.export('ana', 'default', id, `${tempDir(t)}/`, { redact: false });
  assert.equal(exported.verify.status, 'verified', JSON.stringify(exported.verify.problems));
  const clone = cloneHistory(t, exported.path);
  assert.equal(git(clone, ['rev-parse', 'HEAD']).trim(), git(a.memdir, ['rev-parse', 'HEAD']).trim());
  assert.equal(
    git(clone, ['log', '-1', '--format=%s']).trim(),
    git(a.memdir, ['log', '-1', '--format=%s']).trim(),
  );
  const exportedContent = await contentOf(exported.path);
  for (const [path, sha] of await contentOf(v1)) assert.equal(exportedContent.get(path), sha, path);
  assert.equal(existsSync(marker), false, 'nothing from the bundle ran');
});

test("import and migrate refuse a bundle whose label or created_by no snapshot may have (INVALID_INPUT), nothing stored; verify still reads it, the original's v1 free text included", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = snapshotterOf(a);
  const dir = tempDir(t);
  // the original wrote free text: a v1 bundle with a label of two lines is genuine, and readable
  const v1 = v1BundleOf(a, join(dir, 'v1.tar.zst'), {}, { label: 'from the original\nsecond line' });
  assert.equal((await verifyBundleFile(v1)).status, 'verified');
  await assert.rejects(s.storeBundle({ bundle: v1, agentId: 'ana' }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'INVALID_INPUT');
    assert.match(e.message, /the label of bundle .*v1\.tar\.zst is not one a snapshot may have \(.*U\+000A/);
    return true;
  });
  // a real bundle resealed with a label that shows as something else, or a creator with a terminal escape
  const real = await snapshotterOf(a, { store: 'bundles' }).snapshot({ agentId: 'ana', label: 'fine' });
  const entries = await readEntries(real.bundle_path);
  const forged = (name: string, edit: (m: Record<string, unknown>) => void) => {
    const path = join(dir, name);
    writeFileSync(path, forgeBundle(entries, edit));
    return path;
  };
  const bidi = forged('bidi.tar.zst', (m) => {
    m.label = `safe \u202Eexe.txt\u202C label ${'x'.repeat(30)}`;
  });
  const esc = forged('escape.tar.zst', (m) => {
    m.created_by = 'cli\u001b[31m';
  });
  const long = forged('long.tar.zst', (m) => {
    m.label = 'x'.repeat(201);
  });
  for (const [bundle, field, rule] of [
    [bidi, 'label', /U\+202E/],
    [esc, 'created_by', /U\+001B/],
    [long, 'label', /at most 200 characters/],
  ] as const) {
    const v = await verifyBundleFile(bundle);
    // sealed again: intact as far as verify can tell without its .sha256 sibling
    assert.deepEqual([v.manifest_ok, v.problems], [true, []], JSON.stringify(v));
    for (const storeOnly of [['--store-only'], []]) {
      const r = await runCli(
        ['import', '--from', bundle, '--agent', 'eve', ...storeOnly, '--json', ...a.flags],
        { env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: 'true' } },
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const e = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message, new RegExp(`the ${field} of bundle `));
      assert.match(e.message, rule);
    }
  }
  assert.deepEqual(await s.list('eve'), [], 'nothing was stored');
  assert.equal(existsSync(join(a.memdirRoot, 'eve')), false, 'nothing live was made');

  // migrate: such a bundle is skipped and kept, the others move
  const b = snapshotterOf(a, { store: 'bundles' });
  const storeDir = b.layout.snapshotsDir('default', 'ana');
  const kept = v1BundleOf(a, join(storeDir, `${V1_ID}.tar.zst`), {}, { created_by: 'the original\u2028cli' });
  const report = await snapshotterOf(a, { store: 'auto' }).migrate();
  const of = (id: string) => report.results.find((x) => x.id === id);
  assert.equal(of(V1_ID)?.outcome, 'skipped', JSON.stringify(report));
  assert.equal(of(V1_ID)?.error?.code, 'INVALID_INPUT');
  assert.match(String(of(V1_ID)?.error?.message), /the created_by of bundle .*U\+2028/);
  assert.ok(existsSync(kept), 'the bundle is kept');
  assert.equal(of(real.id)?.outcome, 'migrated');
});

test('a snapshot in both stores (a pinned bundle, then import --store-only of it) is one snapshot: listed pinned with its note, delete refused until unpinned, then both copies go', async (t) => {
  const { a, bundle } = await bundled(t);
  await bundleSnapshot(a, 'second'); // so the pinned one is not the agent's last
  const bundlesEnv = { NEXO_MEMORY_STORE_FORMAT: 'bundles' };
  const root = ['--state-root', a.stateRoot];
  const id = bundle.id;
  let r = await runCli(['pin', '--agent', 'ana', '--id', id, '--note', 'keep this one', ...root], {
    env: bundlesEnv,
  });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(
    ['import', '--from', bundle.bundle_path, '--agent', 'ana', '--store-only', '--json', ...root],
    {
      env: repoEnv,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { snapshot: { id: string } }).snapshot.id, id, 'same agent: same id');
  const listed = async () => {
    const l = await runCli(['list', '--agent', 'ana', '--json', ...root], { env: repoEnv });
    assert.equal(l.code, 0, l.stderr);
    return (
      JSON.parse(l.stdout) as { id: string; pinned: boolean; pin_note?: string; bundle_path: string }[]
    ).filter((m) => m.id === id);
  };
  let entries = await listed();
  assert.equal(entries.length, 1, 'listed once');
  assert.ok(entries[0]!.bundle_path.includes('#'), "the repository's entry");
  assert.equal(entries[0]!.pinned, true, "the bundle's pin counts");
  assert.equal(entries[0]!.pin_note, 'keep this one');
  r = await runCli(['delete', '--agent', 'ana', '--id', id, '--yes', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 6, `a pinned copy refuses the delete: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /pinned/);
  assert.equal(existsSync(bundle.bundle_path), true, 'the bundle is kept');
  assert.equal((await listed()).length, 1, 'the repository copy is kept');
  r = await runCli(['unpin', '--agent', 'ana', '--id', id, ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stderr);
  entries = await listed();
  assert.equal(entries[0]!.pinned, false, 'unpin removes the pin of both copies');
  assert.equal(entries[0]!.pin_note, undefined);
  r = await runCli(['delete', '--agent', 'ana', '--id', id, '--yes', '--json', ...root], { env: repoEnv });
  assert.equal(r.code, 0, r.stderr);
  const deleted = JSON.parse(r.stdout) as { id: string; removed: string[] };
  assert.equal(deleted.id, id);
  assert.equal(deleted.removed.length, 2, JSON.stringify(deleted));
  assert.ok(deleted.removed[0]!.endsWith(`#${id}`), 'the repository snapshot');
  assert.equal(deleted.removed[1], bundle.bundle_path, 'and the bundle');
  assert.equal(existsSync(bundle.bundle_path), false);
  assert.deepEqual(
    readdirSync(join(bundle.bundle_path, '..')).filter((n) => n.startsWith(id)),
    [],
    'nor its sibling, sidecar or pin',
  );
  assert.deepEqual(await listed(), [], 'gone from both stores');
  r = await runCli(['list', '--agent', 'ana', '--json', ...root], { env: bundlesEnv });
  assert.equal(
    (JSON.parse(r.stdout) as { id: string }[]).some((m) => m.id === id),
    false,
  );
});

test('migrate moves every bundle into the repository with its id, label, creator, time and pin; signed again with the host key, the bundle signature recorded; auto picks the repository; a second run has nothing to do', async (t) => {
  const original = signingKeyFile(t);
  const host = signingKeyFile(t);
  const { a, expected } = await bundleStore(t, original.path);
  const s = snapshotterOf(a, { store: 'auto', signingKey: host.path });
  assert.equal(s.usesRepository(), false);
  const r = await s.migrate();
  assert.equal(r.created_repository, true);
  assert.deepEqual([r.bundles, r.migrated, r.skipped, r.failed], [5, 5, 0, 0], JSON.stringify(r));
  assert.ok(r.added_bytes > 0);
  assert.equal(s.usesRepository(), true);
  for (const b of r.results) {
    assert.equal(b.outcome, 'migrated');
    assert.equal(b.signed_by, host.keyId, 'signed with the host key');
    assert.equal(b.bundle_path, expected.get(b.id)!.path);
    assert.equal(existsSync(b.bundle_path), false);
  }
  const signed = r.results.find((b) => b.signature);
  assert.deepEqual(signed?.signature, { key_id: original.keyId, status: 'valid' });
  assert.equal(r.results.find((b) => b.id === V1_ID)?.outcome, 'migrated', 'the v1 bundle too');
  // the ana bundles went oldest first: the v1 bundle of the original, then in time order
  assert.deepEqual(
    r.results.filter((b) => b.agent_id === 'ana').map((b) => b.id),
    [...expected]
      .filter(([, e]) => e.path.includes('/ana/'))
      .sort((x, y) => x[1].created_at_ms - y[1].created_at_ms)
      .map(([id]) => id),
  );
  await assertMigrated(t, a, expected);
  const again = await s.migrate();
  assert.deepEqual([again.bundles, again.created_repository], [0, false]);
  // new snapshots of this state root go into the repository
  const next = await snapshotterOf(a, { store: 'auto' }).snapshot({ agentId: 'ana' });
  assert.ok(next.bundle_path.includes('#'), next.bundle_path);
});

test('migrate of a bundle already stored unsigned by import --store-only stores it again signed with signing.key_path (the copy forgotten, its pin and note kept), as a fresh migrate would', async (t) => {
  const { a, bundle } = await bundled(t);
  const root = ['--state-root', a.stateRoot];
  const id = bundle.id;
  let r = await runCli(
    ['import', '--from', bundle.bundle_path, '--agent', 'ana', '--store-only', '--json', ...root],
    {
      env: repoEnv,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['pin', '--agent', 'ana', '--id', id, '--note', 'pinned after import', ...root], {
    env: repoEnv,
  });
  assert.equal(r.code, 0, r.stderr);
  const key = signingKeyFile(t);
  const cfg = agentConfig(a, ['    signing:', `      key_path: ${JSON.stringify(key.path)}`]);
  r = await runCli(['migrate', '--json', '--config', cfg], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as MigrateReport;
  const one = report.results.find((b) => b.id === id);
  assert.equal(one?.outcome, 'migrated', JSON.stringify(report));
  assert.equal(one?.stored_again, true, 'the unsigned copy was not taken as it was');
  assert.equal(one?.resumed, undefined);
  assert.equal(one?.signed_by, key.keyId, 'signed with the configured key');
  assert.equal(one?.pinned, true, "the copy's pin");
  assert.equal(existsSync(bundle.bundle_path), false, 'the bundle went once its signed copy was checked');
  r = await runCli(['verify', '--agent', 'ana', '--id', id, '--json', '--config', cfg], { env: repoEnv });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((JSON.parse(r.stdout) as { signature?: { key_id?: string } }).signature?.key_id, key.keyId);
  r = await runCli(['list', '--agent', 'ana', '--json', '--config', cfg], { env: repoEnv });
  const listed = (JSON.parse(r.stdout) as { id: string; pinned: boolean; pin_note?: string }[]).filter(
    (m) => m.id === id,
  );
  assert.deepEqual(
    listed.map((m) => [m.pinned, m.pin_note]),
    [[true, 'pinned after import']],
  );
});

test('migrate leaves what cannot move, with a clear line: a damaged bundle fails (exit 2), an encrypted one into a plaintext repository is skipped; into an encrypted repository with the identity it moves', async (t) => {
  const id = ageIdentity(t);
  const a = sampleAgent(t, 'ana', SMALL);
  const b = snapshotterOf(a, { store: 'bundles' });
  const good = await b.snapshot({ agentId: 'ana', label: 'good' });
  const enc = await b.snapshot({ agentId: 'ana', label: 'secret', encrypt: [id.recipient] });
  const bad = await b.snapshot({ agentId: 'ana', label: 'bad' });
  const bytes = readFileSync(bad.bundle_path);
  bytes[Math.floor(bytes.length / 2)]! ^= 0x10;
  writeFileSync(bad.bundle_path, bytes);
  writeFileSync(`${bad.bundle_path}.sha256`, createHash('sha256').update(bytes).digest('hex'));

  const r = await runCli(['migrate', '--json', '--state-root', a.stateRoot], {
    env: { NEXO_MEMORY_STORE_FORMAT: 'auto' },
  });
  const report = JSON.parse(r.stdout) as MigrateReport;
  const outcome = (x: string) => report.results.find((b) => b.id === x);
  assert.equal(outcome(good.id)?.outcome, 'migrated');
  assert.equal(outcome(enc.id)?.outcome, 'skipped');
  assert.equal(outcome(enc.id)?.error?.code, 'ENCRYPTION');
  assert.match(String(outcome(enc.id)?.error?.message), /encrypted repository/);
  assert.equal(outcome(bad.id)?.outcome, 'failed');
  assert.equal(outcome(bad.id)?.error?.exit_code, 2);
  assert.equal(r.code, 7, 'the status of the first bundle that did not move');
  assert.ok(existsSync(enc.bundle_path) && existsSync(bad.bundle_path), 'both are kept');
  assert.equal(existsSync(good.bundle_path), false);
  const human = await runCli(['migrate', '--state-root', a.stateRoot], {
    env: { NEXO_MEMORY_STORE_FORMAT: 'auto' },
  });
  assert.match(human.stdout, new RegExp(`skipped ${enc.id} .*ENCRYPTION`));
  assert.match(human.stdout, new RegExp(`failed ${bad.id} .*BUNDLE_DAMAGED|failed ${bad.id} .*CHECKSUM`));
  assert.match(human.stdout, /0 of 2 bundle\(s\) migrated, 1 skipped, 1 failed/);

  // a state root holding only an encrypted bundle, no recipients configured: nothing moves and no
  // repository is made (auto would use it from then on, and refuse the encrypted snapshots)
  const d = sampleAgent(t, 'ana', SMALL);
  await snapshotterOf(d, { store: 'bundles' }).snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  const none = await snapshotterOf(d, { store: 'auto' }).migrate();
  assert.deepEqual([none.migrated, none.skipped, none.created_repository], [0, 1, false]);
  assert.equal(existsSync(join(d.stateRoot, 'repository')), false, 'no repository made');
  const next = await snapshotterOf(d, { store: 'auto' }).snapshot({
    agentId: 'ana',
    encrypt: [id.recipient],
  });
  assert.equal(next.encrypted, true);
  assert.ok(!next.bundle_path.includes('#'), `still a bundle: ${next.bundle_path}`);

  // a state root whose repository is encrypted (recipients configured): encrypted bundles move, with
  // the identity
  const c = sampleAgent(t, 'ana', SMALL);
  const cb = snapshotterOf(c, { store: 'bundles' });
  const e1 = await cb.snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  const p1 = await cb.snapshot({ agentId: 'ana' });
  const noIdentity = await snapshotterOf(c, { store: 'auto', recipients: [id.recipient] }).migrate();
  assert.equal(noIdentity.results.find((x) => x.id === e1.id)?.outcome, 'skipped');
  const withIdentity = snapshotterOf(c, { store: 'auto', recipients: [id.recipient], identityPath: id.path });
  const moved = await withIdentity.migrate();
  assert.deepEqual(
    moved.results.map((x) => [x.id, x.outcome]),
    [[e1.id, 'migrated']],
  );
  const listed = await withIdentity.list('ana');
  assert.deepEqual(
    listed.map((m) => [m.id, m.encrypted]).sort(),
    [
      [e1.id, true],
      [p1.id, true],
    ].sort(),
  );
  assert.equal((await withIdentity.verifySnapshot('ana', 'default', e1.id)).status, 'verified');
});

test('migrate refuses what would make the snapshots useless: the bundles store, or required signatures without a signing key', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  await bundleSnapshot(a);
  await assert.rejects(snapshotterOf(a, { store: 'bundles' }).migrate(), { code: 'INVALID_INPUT' });
  const key = generateSigningKey();
  await assert.rejects(
    snapshotterOf(a, { store: 'auto', trustedKeys: [key.publicKey], requireSignature: true }).migrate(),
    { code: 'INVALID_INPUT' },
  );
  assert.equal(existsSync(join(a.stateRoot, 'repository')), false);
});

test('pin of a snapshot in both stores pins both copies with its note (in process, stop 46): its own pin marker, a new note replaces the old one in both', async (t) => {
  const { a, bundle } = await bundled(t);
  const id = bundle.id;
  const bundles = snapshotterOf(a, { store: 'bundles' });
  const marker = `${bundle.bundle_path}.pin`;
  const bundleNote = () =>
    existsSync(marker)
      ? ((JSON.parse(readFileSync(marker, 'utf8')) as { note?: string }).note ?? '')
      : undefined;
  await bundles.pin('ana', undefined, id, 'old note'); // a pin the bundle had before it was stored
  const repo = snapshotterOf(a);
  const stored = await repo.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(stored.snapshot.id, id, 'same agent: same id, so one snapshot in both stores');
  await repo.unpin('ana', undefined, id);
  assert.equal(bundleNote(), undefined);

  const pinned = await repo.pin('ana', undefined, id, 'keep: stop 46');
  assert.equal(pinned.pinned, true);
  assert.equal(pinned.pin_note, 'keep: stop 46');
  // the bundle copy is pinned too, with the same note (its own pin marker: what is left of the pin
  // when the repository copy goes, and what a store without the repository reads)
  assert.equal(bundleNote(), 'keep: stop 46', 'the bundle copy is pinned');
  const listed = (await repo.list('ana')).filter((m) => m.id === id);
  assert.equal(listed.length, 1);
  assert.equal(listed[0]!.pin_note, 'keep: stop 46');

  // a pin again with another note: both copies carry the new one
  await repo.pin('ana', undefined, id, 'newer');
  assert.equal(bundleNote(), 'newer');
  assert.equal((await repo.list('ana')).find((m) => m.id === id)!.pin_note, 'newer');

  // unpin still removes both
  assert.equal(await repo.unpin('ana', undefined, id), true);
  assert.equal(bundleNote(), undefined);
  assert.equal((await repo.list('ana')).find((m) => m.id === id)!.pinned, false);
});

test('export of an agent with more memory files than the open-file limit: read a few at a time, not all at once (EMFILE, stop 63)', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { mkdirSync } = await import('node:fs');
  const { BIN, ensureBuilt } = await import('./helpers/built-cli.js');
  ensureBuilt();
  for (const store of ['repository', 'bundles'] as const) {
    const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 3 }, { store });
    mkdirSync(join(a.memdir, 'many'));
    for (let i = 0; i < 400; i++) writeFileSync(join(a.memdir, 'many', `note-${i}.md`), `note ${i}\n`);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
    const out = join(tempDir(t), `export-${store}.tar.zst`);
    // the CLI as a whole process under a limit of 128 open files (the default export redacts: the
    // bundle store's copies its files too)
    const r = spawnSync(
      'sh',
      [
        '-c',
        'ulimit -n 128 && exec "$0" "$@"',
        process.execPath,
        BIN,
        'export',
        '--agent',
        'ana',
        '--id',
        snap.id,
        '--to',
        out,
        '--json',
        '--state-root',
        a.stateRoot,
      ],
      { encoding: 'utf8', env: { ...process.env, NEXO_MEMORY_STORE_FORMAT: store } },
    );
    assert.equal(r.status, 0, `${store}: ${r.stdout}${r.stderr}`);
    assert.ok(gnuList(out).includes('memory_files/many/note-399.md'), store);
  }
});
