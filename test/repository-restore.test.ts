// Reading repository snapshots back: restore (library, CLI by id or prefix, HTTP route) byte for byte
// with refs, HEAD, log, uncommitted edits and state; damage in the repository (a flipped pack byte, a
// missing pack, a truncated index file, a manifest naming a chunk that does not exist) refused with
// exit 2, the live agent unchanged and no anchor; signatures and trust, identity, hostile manifests;
// the dry run and placeholders of a redacted snapshot; undo; verify --deep; diff against bundles.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { git, gitEnv } from '../scripts/sample-agent.js';
import { LocalBackend } from '../src/backend/local.js';
import { walkMemdir } from '../src/capture/memdir.js';
import { generateIdentity } from '../src/crypto/age.js';
import { digestSeal, manifestSeal } from '../src/format/manifest.js';
import {
  canonicalJson,
  generateSigningKey,
  LocalSnapshotter,
  type LocalSnapshotterOptions,
  parseSigningKey,
  type SnapshotDiff,
} from '../src/index.js';
import { verifyExitCode } from '../src/model/types.js';
import { storeContent } from '../src/repository/content.js';
import { packChainDigest, type RepoManifest } from '../src/repository/manifest.js';
import { Repository } from '../src/repository/repository.js';
import { SqliteWorker } from '../src/sqlite/worker.js';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import {
  type Agent,
  agentConfig,
  gitAsync,
  REPO,
  runCli,
  sampleAgent,
  startFixture,
  tempDir,
} from './helpers/env.js';
import { fromTemplate } from './helpers/template.js';

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const DBS = ['long_term', 'vector', 'concepts', 'compactions'];
const SMALL = { files: 8, commits: 4, memories: 300, embeddings: 60, concepts: 20, compactions: 10 };
const allow = { NEXO_MEMORY_RESTORE_ALLOW: 'yes' };

function repoAgent(t: Parameters<typeof sampleAgent>[0], snap: Partial<LocalSnapshotterOptions> = {}): Agent {
  return sampleAgent(t, 'ana', SMALL, { store: 'repository', ...snap });
}

/**
 * A repository agent with one snapshot of it (taken once for this file and copied per test:
 * helpers/template.ts), as `repoAgent` and a snapshot would leave it.
 */
async function snapshotted(t: Parameters<typeof sampleAgent>[0]) {
  const { a, made } = await fromTemplate(
    t,
    'one snapshot',
    { agent: SMALL, snap: { store: 'repository' } },
    (a) => a.snapshotter.snapshot({ agentId: 'ana' }),
  );
  return { a, snap: made };
}

/** What an observer of the live agent sees, databases by bytes; refs without the pre-restore tags. */
async function fingerprint(a: Agent): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const db of DBS) {
    const p = join(a.sqliteDir, `${db}.sqlite`);
    out[`db:${db}`] = existsSync(p) ? sha(readFileSync(p)) : 'absent';
  }
  for (const key of ['extract_cursor', 'dream_run']) {
    const p = join(a.sqliteDir, `${key}.json`);
    out[`state:${key}`] = existsSync(p) ? canonicalJson(JSON.parse(readFileSync(p, 'utf8'))) : 'absent';
  }
  for (const rel of (await walkMemdir(a.memdir)).files)
    out[`file:${rel}`] = sha(readFileSync(join(a.memdir, rel)));
  const [head, headRef, refs, log, status] = await Promise.all([
    gitAsync(a.memdir, ['rev-parse', 'HEAD']),
    gitAsync(a.memdir, ['symbolic-ref', '-q', 'HEAD']).catch(() => '(detached)'),
    gitAsync(a.memdir, ['for-each-ref', '--format=%(objectname) %(objecttype) %(refname)']),
    gitAsync(a.memdir, ['log', '--format=%H %T %P %s', '--exclude=refs/tags/pre-restore-*', '--all']),
    gitAsync(a.memdir, ['status', '--porcelain', '--untracked-files=all']),
  ]);
  out.head = head.trim();
  out.head_ref = headRef.trim();
  out.refs = refs
    .split('\n')
    .filter((l) => !l.includes('refs/tags/pre-restore-'))
    .join('\n');
  out.log = log;
  out.status = status;
  return out;
}

const withoutDbBytes = (f: Record<string, string>) =>
  Object.fromEntries(Object.entries(f).filter(([k]) => !k.startsWith('db:')));

/** Rows of every table, for comparing databases whose bytes differ (a live file and its copy). */
function dbContent(a: Agent): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of DBS) {
    const db = new Database(join(a.sqliteDir, `${name}.sqlite`), { readonly: true });
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
      .pluck()
      .all() as string[];
    for (const t of tables)
      out[`${name}.${t}`] = sha(
        JSON.stringify(db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().all(), (_k, v) =>
          Buffer.isBuffer(v) ? v.toString('hex') : v,
        ),
      );
    db.close();
  }
  return out;
}

/** The fingerprint after restoring a snapshot whose live agent had `live`: databases from its manifest. */
async function expectedOf(
  a: Agent,
  id: string,
  live: Record<string, string>,
): Promise<Record<string, string>> {
  const { manifest } = await a.snapshotter.repository.parsed(id);
  const out = { ...live };
  for (const db of DBS)
    out[`db:${db}`] =
      manifest.artifacts.find((x) => x.path_in_bundle === `sqlite/${db}.sqlite`)?.sha256 ?? 'absent';
  return out;
}

/** Changes every component: rows, a commit, a branch, an uncommitted edit, a new and a deleted file, state. */
function mutate(a: Agent, tag: string): void {
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (1, ?, ?, 1)').run(
    'fact',
    tag,
  );
  db.prepare('DELETE FROM memories WHERE id <= 3').run();
  db.close();
  writeFileSync(join(a.memdir, 'MEMORY.md'), `# replaced (${tag})\n`);
  git(a.memdir, ['commit', '-qam', `mutate ${tag}`]);
  git(a.memdir, ['branch', '-f', `b-${tag}`]);
  writeFileSync(join(a.memdir, `new-${tag}.md`), 'untracked\n');
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), JSON.stringify({ last_message_id: 9999, tag }));
}

/** Snapshot ids of the agent's pre-restore anchors. */
async function anchors(a: Agent): Promise<string[]> {
  return (await a.snapshotter.list('ana'))
    .filter((m) => m.created_by === 'auto-pre-restore')
    .map((m) => m.id);
}

/** Names of restore staging and backup directories next to the live paths. */
function restoreDirs(a: Agent): string[] {
  return [
    ...readdirSync(a.sqliteDir).filter((n) => n.startsWith('.restore-')),
    ...readdirSync(dirname(a.memdir)).filter((n) => n.includes('.restore-')),
  ];
}

const repoDir = (a: Agent) => join(a.stateRoot, 'repository');

function packFiles(a: Agent): string[] {
  const dir = join(repoDir(a), 'packs');
  return readdirSync(dir)
    .flatMap((d) => readdirSync(join(dir, d)).map((f) => join(dir, d, f)))
    .sort();
}

/**
 * Rewrites a snapshot's manifest in place (as a hostile writer with the repository's files could), with
 * fresh seals so only the rules (or the data) can refuse it.
 */
async function rewriteManifest(a: Agent, id: string, edit: (m: RepoManifest) => void): Promise<void> {
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  const file = join(repoDir(a), 'snapshots', id);
  const m = JSON.parse(repo.decodeFile(readFileSync(file), id).toString('utf8')) as RepoManifest;
  edit(m);
  m.bundle_sha256 = digestSeal(m.artifacts);
  m.manifest_seal = manifestSeal(m as unknown as Record<string, unknown>);
  writeFileSync(file, repo.encodeFile(Buffer.from(JSON.stringify(m))));
}

test('a repository snapshot restores byte for byte: databases, memory files, refs, HEAD, log, state, uncommitted edits', async (t) => {
  const a = repoAgent(t);
  git(a.memdir, ['tag', '-a', 'v1', '-m', 'first release']);
  git(a.memdir, ['branch', 'side']);
  writeFileSync(join(a.memdir, 'draft.md'), 'untracked at snapshot time\n');
  writeFileSync(join(a.memdir, 'topics', 'people', 'topic-0000.md'), 'uncommitted edit\n');
  const first = await a.snapshotter.snapshot({ agentId: 'ana', label: 'one' });
  const liveOne = await fingerprint(a);
  // a second snapshot on top: its history is the first one's pack plus a thin pack
  mutate(a, 'two');
  const second = await a.snapshotter.snapshot({ agentId: 'ana', label: 'two' });
  const liveTwo = await fingerprint(a);
  const { manifest } = await a.snapshotter.repository.parsed(second.id);
  assert.equal(manifest.artifacts.find((x) => x.kind === 'git_history')?.packs?.length, 2, 'a chain of two');
  // and a detached HEAD
  mutate(a, 'three');
  git(a.memdir, ['checkout', '-q', '--detach', 'HEAD~1']);
  const third = await a.snapshotter.snapshot({ agentId: 'ana', label: 'three' });
  const liveThree = await fingerprint(a);
  mutate(a, 'four');
  git(a.memdir, ['checkout', '-q', 'main']);
  git(a.memdir, ['tag', '-d', 'v1']);

  for (const [snap, live] of [
    [first, liveOne],
    [second, liveTwo],
    [third, liveThree],
  ] as const) {
    const want = await expectedOf(a, snap.id, live);
    const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
    assert.deepEqual(await fingerprint(a), want, `restore of ${snap.label}`);
    assert.equal(r.from, snap.id);
    assert.equal(r.bundle, `${repoDir(a)}#${snap.id}`);
    assert.equal(r.git_reset_oid, live.head);
    assert.deepEqual(r.sqlite_restored_dbs, DBS);
    assert.ok(r.pre_restore_tag && r.pre_snapshot);
    assert.deepEqual(restoreDirs(a), [], 'no staging left');
    const anchor = (await a.snapshotter.list('ana')).find((m) => m.id === r.pre_snapshot)!;
    assert.equal(anchor.bundle_format, 'nexo-memory-snapshot-v4', 'the anchor went into the repository');
    assert.equal(anchor.created_by, 'auto-pre-restore');
  }
  assert.equal(git(a.memdir, ['rev-parse', '--abbrev-ref', 'HEAD']).trim(), 'HEAD', 'detached as it was');
});

test('damage in the repository (flipped pack byte, missing pack, truncated index, unknown chunk) is refused with exit 2: nothing changes, no anchor', async (t) => {
  const { a, snap } = await snapshotted(t);
  mutate(a, 'after');
  const before = await fingerprint(a);
  const restore = () =>
    runCli(['restore', '--agent', 'ana', '--from', snap.id, '--json', ...a.flags], { env: allow });
  const refusedCleanly = async (what: string, pattern: RegExp) => {
    const r = await restore();
    assert.equal(r.code, 2, `${what}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, pattern, what);
    assert.deepEqual(await fingerprint(a), before, `${what}: the live agent is unchanged`);
    assert.deepEqual(await anchors(a), [], `${what}: no anchor`);
    assert.deepEqual(restoreDirs(a), [], `${what}: no staging left`);
  };

  const pack = packFiles(a)[0]!;
  const bytes = readFileSync(pack);
  const flipped = Buffer.from(bytes);
  flipped[200] = flipped[200]! ^ 0x10;
  writeFileSync(pack, flipped);
  await refusedCleanly('a flipped byte in a pack', /BUNDLE_DAMAGED|CHECKSUM|damaged|does not match|corrupt/i);
  // verify: the damaged artifact could not be read whole, so its size was not checked, and says so
  // (size_ok is the sizes, not the hashes: stop 46)
  const v = await a.snapshotter.verifySnapshot('ana', 'default', snap.id);
  assert.equal(v.status, 'damaged');
  assert.equal(v.size_ok, false);
  assert.match(v.not_checked.find((n) => n.check === 'size')?.reason ?? '', /could not be read whole/);
  writeFileSync(pack, bytes);

  renameSync(pack, `${pack}.away`);
  await refusedCleanly('a missing pack', /missing|not found|BUNDLE_DAMAGED/i);
  renameSync(`${pack}.away`, pack);

  const indexDir = join(repoDir(a), 'index');
  const index = join(indexDir, readdirSync(indexDir)[0]!);
  const indexBytes = readFileSync(index);
  truncateSync(index, Math.floor(indexBytes.length / 2));
  await refusedCleanly('a truncated index file', /index/i);
  writeFileSync(index, indexBytes);

  const manifestFile = join(repoDir(a), 'snapshots', snap.id);
  const manifestBytes = readFileSync(manifestFile);
  await rewriteManifest(a, snap.id, (m) => {
    const db = m.artifacts.find((x) => x.path_in_bundle === 'sqlite/long_term.sqlite')!;
    const unknown = randomBytes(32).toString('hex');
    if (db.chunks) db.chunks[0] = unknown;
    else db.chunk_lists![0] = unknown;
  });
  await refusedCleanly(
    'a manifest naming a chunk that does not exist',
    /not in the repository index|missing/i,
  );
  writeFileSync(manifestFile, manifestBytes);

  // repaired: the same restore now works
  const r = await restore();
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await anchors(a)).length, 1);
});

/**
 * Until the test ends, every database counts as large, so a restore writes them on the SQLite threads
 * (content.ts writeContentOn, write-lane.ts); returns the names of the functions called there.
 */
function databasesOnThreads(t: { after(fn: () => void): void }): string[] {
  const prev = process.env.NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES;
  process.env.NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES = '0';
  const moved: string[] = [];
  const call = SqliteWorker.prototype.call;
  SqliteWorker.prototype.call = function (this: SqliteWorker, ...args: Parameters<typeof call>) {
    moved.push(args[1]);
    return call.apply(this, args);
  } as typeof call;
  t.after(() => {
    SqliteWorker.prototype.call = call;
    if (prev === undefined) delete process.env.NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES;
    else process.env.NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES = prev;
  });
  return moved;
}

test('large databases are written on the SQLite threads: byte for byte; a damaged database chunk there is refused (exit 2), nothing changes', async (t) => {
  const moved = databasesOnThreads(t);
  const { a, snap } = await snapshotted(t);
  const want = await expectedOf(a, snap.id, await fingerprint(a));
  mutate(a, 'after');
  const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
  assert.deepEqual(await fingerprint(a), want, 'restored byte for byte');
  assert.deepEqual(r.sqlite_restored_dbs, DBS);
  assert.ok(moved.includes('writeRun'), 'the databases were written on the threads');
  assert.ok(moved.includes('writeFiles'), 'the memory files were written on a thread');

  // one byte of a database's chunk flipped inside its pack: refused, the live agent as it was
  const { manifest } = await a.snapshotter.repository.parsed(snap.id);
  const chunk = manifest.artifacts.find((x) => x.path_in_bundle === 'sqlite/vector.sqlite')!.chunks![0]!;
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  await repo.ensureIndex();
  const at = repo.index.get(chunk)!;
  const pack = packFiles(a).find((f) => f.endsWith(at.pack))!;
  const bytes = readFileSync(pack);
  bytes[at.offset + Math.floor(at.stored / 2)]! ^= 0x10;
  writeFileSync(pack, bytes);
  mutate(a, 'again');
  const before = await fingerprint(a);
  const anchorsBefore = await anchors(a);
  moved.length = 0;
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id }), (err: Error) => {
    assert.equal((err as { code?: string }).code, 'BUNDLE_DAMAGED', err.message);
    assert.match(err.message, new RegExp(`blob ${chunk} in packs/${at.pack}`));
    return true;
  });
  assert.ok(moved.includes('writeRun'), 'the damaged database was read on a thread');
  assert.deepEqual(await fingerprint(a), before, 'the live agent is unchanged');
  assert.deepEqual(await anchors(a), anchorsBefore, 'no anchor');
  assert.deepEqual(restoreDirs(a), [], 'no staging left');

  // the database's pack mended, one byte of a memory file flipped instead (the memory files go to a
  // thread in batches, each checked before): refused, the live agent as it was
  bytes[at.offset + Math.floor(at.stored / 2)]! ^= 0x10;
  writeFileSync(pack, bytes);
  const file = manifest.artifacts.filter((x) => x.kind === 'memory_file').at(-1)!;
  const fileAt = repo.index.get(file.sha256)!;
  const filePack = packFiles(a).find((f) => f.endsWith(fileAt.pack))!;
  const fileBytes = readFileSync(filePack);
  fileBytes[fileAt.offset + Math.floor(fileAt.stored / 2)]! ^= 0x10;
  writeFileSync(filePack, fileBytes);
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id }), (err: Error) => {
    assert.equal((err as { code?: string }).code, 'BUNDLE_DAMAGED', err.message);
    assert.match(err.message, new RegExp(`blob ${file.sha256} in packs/${fileAt.pack}`));
    return true;
  });
  assert.deepEqual(await fingerprint(a), before, 'the live agent is unchanged');
  assert.deepEqual(await anchors(a), anchorsBefore, 'no anchor');
  assert.deepEqual(restoreDirs(a), [], 'no staging left');
});

test("a database chunk larger than a thread's slot (64 KiB pages, incompressible rows) is handed over as a copy and restores byte for byte", async (t) => {
  const moved = databasesOnThreads(t);
  const a = repoAgent(t);
  const file = join(a.sqliteDir, 'vector.sqlite');
  const db = new Database(file);
  db.pragma('journal_mode = DELETE');
  db.pragma('page_size = 65536');
  db.exec('VACUUM');
  const insert = db.prepare('INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (1, ?, 1, ?)');
  for (let i = 0; i < 3; i++) insert.run('noise', randomBytes(400 * 1024));
  db.pragma('journal_mode = WAL');
  db.close();
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const want = await expectedOf(a, snap.id, await fingerprint(a));
  // a chunk whose stored bytes exceed a slot (content.ts LANE_SLOT, 128 KiB) goes as a copy of its own
  const { manifest } = await a.snapshotter.repository.parsed(snap.id);
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  await repo.ensureIndex();
  const vector = manifest.artifacts.find((x) => x.path_in_bundle === 'sqlite/vector.sqlite')!;
  const stored = (vector.chunks ?? []).map((id) => repo.index.get(id)!.stored);
  assert.ok(
    stored.some((n) => n > 128 * 1024),
    `a chunk larger than a slot: ${stored.join(', ')}`,
  );
  mutate(a, 'after');
  await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
  assert.ok(moved.includes('writeRun'), 'the databases were written on the threads');
  assert.deepEqual(await fingerprint(a), want, 'restored byte for byte');
});

test('signatures and trust, identity and hostile manifests are checked before the lock: nothing changes', async (t) => {
  const key = generateSigningKey();
  const other = generateSigningKey();
  const a = repoAgent(t, { signingKey: parseSigningKey(key.secretKey) });
  const signed = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal(signed.bundle_format, 'nexo-memory-snapshot-v5');
  const unsigned = await a.snapshotter.snapshot({ agentId: 'ana', sign: false });
  mutate(a, 'after');
  const before = await fingerprint(a);
  const unchanged = async (what: string) => {
    assert.deepEqual(await fingerprint(a), before, what);
    assert.deepEqual(await anchors(a), [], what);
  };
  const refuse = async (what: string, req: Parameters<LocalSnapshotter['restore']>[0], code: string) => {
    await assert.rejects(a.snapshotter.restore(req), (e: { code?: string }) => e.code === code, what);
    await unchanged(what);
  };
  await refuse(
    'signed by an untrusted key',
    { agentId: 'ana', snapshot: signed.id, trust: [other.publicKey] },
    'SIGNATURE_UNTRUSTED',
  );
  await refuse(
    'unsigned, a signature required',
    { agentId: 'ana', snapshot: unsigned.id, trust: [key.publicKey] },
    'SIGNATURE_MISSING',
  );
  const dry = await a.snapshotter.restore({
    agentId: 'ana',
    snapshot: signed.id,
    trust: [key.publicKey],
    dryRun: true,
  });
  assert.equal(dry.signature?.status, 'trusted');
  // verify says who signed was not checked, as for a bundle: no trusted keys, or a signer not among the
  // configured ones (not required)
  const configured = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
    trustedKeys: [other.publicKey],
  });
  for (const [s, reason] of [
    [a.snapshotter, /no trusted keys given/],
    [configured, /not among the trusted keys/],
  ] as const) {
    const v = await s.verifySnapshot('ana', 'default', signed.id);
    assert.equal(v.status, 'verified', JSON.stringify(v.problems));
    assert.match(v.not_checked.find((n) => n.check === 'signature_trust')?.reason ?? '', reason);
  }
  const trusted = await a.snapshotter.verifySnapshot('ana', 'default', signed.id, { trust: [key.publicKey] });
  assert.equal(
    trusted.not_checked.find((n) => n.check === 'signature_trust'),
    undefined,
  );

  // a signature that does not verify is refused always
  const manifestFile = join(repoDir(a), 'snapshots', signed.id);
  const original = readFileSync(manifestFile);
  await rewriteManifest(a, signed.id, (m) => {
    const v = Buffer.from(m.signature!.value, 'base64');
    v[0] = v[0]! ^ 1;
    m.signature!.value = v.toString('base64');
  });
  await refuse('a broken signature', { agentId: 'ana', snapshot: signed.id }, 'SIGNATURE_INVALID');
  writeFileSync(manifestFile, original);

  // a hostile ref name, sealed again: refused (exit 2) by restore and by verify
  await rewriteManifest(a, unsigned.id, (m) => {
    m.git_refs = [...(m.git_refs ?? []), { name: 'refs/heads/../../x', oid: m.git.head_oid }];
  });
  await refuse('a hostile ref name', { agentId: 'ana', snapshot: unsigned.id }, 'BUNDLE_DAMAGED');
  const v = await a.snapshotter.verifySnapshot('ana', 'default', unsigned.id);
  assert.equal(v.status, 'damaged');
  assert.ok(v.problems.some((p) => p.message.includes('refs/heads/../../x')));

  // the listing is a cache: a snapshot listed as ana's whose manifest is another agent's is refused
  const b = sampleAgent(t, 'bob', SMALL, { store: 'repository' });
  const bobs = await new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: b.memdirRoot,
    sqliteRoot: b.sqliteRoot,
    store: 'repository',
  }).snapshot({ agentId: 'bob' });
  const listing = join(repoDir(a), 'listing', bobs.id);
  const entry = JSON.parse(readFileSync(listing, 'utf8'));
  entry.meta.agent_id = 'ana';
  writeFileSync(listing, JSON.stringify(entry));
  // (damage, as every command given its id answers: findSnapshot, stop 45; a bundle given by path that
  // is another agent's stays RESTORE_REFUSED)
  await refuse("another agent's snapshot", { agentId: 'ana', snapshot: bobs.id }, 'BUNDLE_DAMAGED');
});

/** Secrets in a memory file, a row (memories.id 5) and state, assembled at run time. */
function plantSecrets(a: Agent): string {
  const token = `${'gh'}p_${'Kx8'.repeat(12)}`;
  writeFileSync(join(a.memdir, 'keys.md'), `# Keys\n\nDeploy with ${token} please.\n`);
  git(a.memdir, ['add', 'keys.md']);
  git(a.memdir, ['commit', '-qm', 'keys']);
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare('UPDATE memories SET content = ? WHERE id = 5').run(`The user pasted ${token} into the chat.`);
  db.close();
  writeFileSync(
    join(a.sqliteDir, 'extract_cursor.json'),
    `${JSON.stringify({ last_message_id: 12, note: `saw ${token}` }, null, 2)}\n`,
  );
  return token;
}

test('dry run of a repository snapshot; a redacted one needs allowRedacted, lists its placeholders, and undo brings the secrets back', async (t) => {
  const a = repoAgent(t);
  const token = plantSecrets(a);
  const redacted = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  mutate(a, 'later');
  const before = await fingerprint(a);

  const dry = await a.snapshotter.restore({ agentId: 'ana', snapshot: redacted.id, dryRun: true });
  assert.equal(dry.dry_run, true);
  assert.deepEqual(await fingerprint(a), before, 'a dry run changes nothing');
  assert.equal(dry.redacted, true);
  const memdir = dry.components.find((c) => c.component === 'memdir')!;
  assert.ok(memdir.files?.removed.includes('new-later.md'));
  const branch = git(a.memdir, ['symbolic-ref', 'HEAD']).trim();
  assert.deepEqual(memdir.refs, { added: [], removed: ['refs/heads/b-later'], changed: [branch] });
  const rows = dry.components.find((c) => c.component === 'sqlite:long_term')!.rows!;
  assert.equal(rows.memories!.new, rows.memories!.old + 2, 'the rows it would bring back');
  const where = (dry.placeholders ?? []).map((p) => p.artifact);
  assert.ok(where.includes('sqlite/long_term.sqlite'), JSON.stringify(dry.placeholders));
  assert.ok(where.includes('memory_files/keys.md'));
  assert.ok(where.includes('state/extract_cursor.json'));
  assert.deepEqual(await anchors(a), []);

  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', snapshot: redacted.id }),
    (e: { code?: string }) => e.code === 'REDACTED_BUNDLE',
  );
  assert.deepEqual(await fingerprint(a), before);
  const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: redacted.id, allowRedacted: true });
  assert.match(readFileSync(join(a.memdir, 'keys.md'), 'utf8'), /\[REDACTED:github-token\]/);
  assert.ok(!readFileSync(join(a.memdir, 'keys.md'), 'utf8').includes(token));

  // undo (CLI): the newest anchor is a repository snapshot, exact
  const u = await runCli(['restore', '--agent', 'ana', '--undo', '--json', ...a.flags], { env: allow });
  assert.equal(u.code, 0, u.stderr);
  assert.equal(JSON.parse(u.stdout).from, r.pre_snapshot);
  assert.deepEqual(withoutDbBytes(await fingerprint(a)), withoutDbBytes(before));
});

test('CLI: --from takes an id or prefix of a repository snapshot (a file stays a bundle); undo returns to before', async (t) => {
  const { a, snap } = await snapshotted(t);
  mutate(a, 'cli');
  const before = await fingerprint(a);
  const beforeRows = dbContent(a);
  const want = await expectedOf(a, snap.id, before);
  let r = await runCli(
    ['restore', '--agent', 'ana', '--from', snap.id.slice(0, 8), '--dry-run', ...a.flags],
    {
      env: allow,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /dry run: nothing was changed/);
  r = await runCli(['restore', '--agent', 'ana', '--from', snap.id.slice(0, 8), '--json', ...a.flags], {
    env: allow,
  });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.from, snap.id);
  assert.equal(report.git_reset_oid, git(a.memdir, ['rev-parse', 'HEAD']).trim());
  const after = await fingerprint(a);
  for (const db of DBS) assert.equal(after[`db:${db}`], want[`db:${db}`]);
  r = await runCli(['restore', '--agent', 'ana', '--undo', ...a.flags], { env: allow });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(withoutDbBytes(await fingerprint(a)), withoutDbBytes(before));
  assert.deepEqual(dbContent(a), beforeRows);
  r = await runCli(['restore', '--agent', 'ana', '--from', 'ffffffff', ...a.flags], { env: allow });
  assert.equal(r.code, 5, 'an id that matches nothing is NOT_FOUND');
  r = await runCli(['restore', '--agent', 'ana', '--from', join(a.root, 'missing.tar.zst'), ...a.flags], {
    env: allow,
  });
  assert.equal(r.code, 1, 'a path that does not exist is still a bundle path');
  assert.match(r.stderr, /bundle not found/);
});

test('verify --deep of a repository snapshot: integrity_check of every database and the history fsck-ed', async (t) => {
  const { a, snap: good } = await snapshotted(t);
  const deep = await a.snapshotter.verifySnapshot('ana', 'default', good.id, { deep: true });
  assert.equal(deep.status, 'verified', JSON.stringify(deep.problems));
  assert.deepEqual(deep.deep, {
    sqlite_integrity: { long_term: 'ok', vector: 'ok', concepts: 'ok', compactions: 'ok' },
    git: 'ok',
  });
  assert.deepEqual(deep.not_checked, []);
  const plain = await a.snapshotter.verifySnapshot('ana', 'default', good.id);
  assert.deepEqual(
    plain.not_checked.map((n) => n.check),
    ['deep'],
  );

  // A snapshot whose every hash is right, written by a hostile (or buggy) writer: a database that is not
  // one, and a history whose only pack lacks everything but HEAD's commit.
  const bad = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  await repo.ensureIndex();
  const writer = repo.writer();
  const page = Buffer.alloc(8192);
  readFileSync(join(a.sqliteDir, 'concepts.sqlite')).copy(page, 0, 0, 100); // a header, garbage pages
  page.fill(0x5a, 100);
  const garbage = await storeContent(writer, repo.config.chunker, { data: page });
  const work = tempDir(t);
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  execFileSync('sh', ['-c', `echo ${head} | git pack-objects --stdout -q > ${join(work, 'one.pack')}`], {
    cwd: a.memdir,
    env: gitEnv,
  });
  const thin = await storeContent(writer, repo.config.chunker, {
    path: join(work, 'one.pack'),
    sqlite: false,
  });
  await writer.finish();
  let goodHistory: object = {};
  await rewriteManifest(a, bad.id, (m) => {
    goodHistory = structuredClone(m.artifacts.find((x) => x.kind === 'git_history')!);
    const db = m.artifacts.find((x) => x.path_in_bundle === 'sqlite/concepts.sqlite')!;
    Object.assign(db, garbage);
    if (!garbage.chunks) delete db.chunks;
    delete db.chunk_lists;
    const h = m.artifacts.find((x) => x.kind === 'git_history')!;
    h.packs = [thin];
    h.size_bytes = thin.size_bytes;
    h.sha256 = packChainDigest(h.packs);
  });
  // every verify rebuilds the history as restore does (so "verified" means restore will not refuse it);
  // a database that is not one is found by --deep, as for a bundle
  const plainBad = await a.snapshotter.verifySnapshot('ana', 'default', bad.id);
  assert.equal(plainBad.status, 'damaged');
  assert.deepEqual(
    plainBad.problems.map((p) => p.path),
    ['git/history'],
    JSON.stringify(plainBad.problems),
  );
  assert.match(plainBad.problems[0]!.message, /fsck|missing|broken|did not receive expected object/i);
  // git refused content whose every chunk hashed right: its size was checked (stop 46)
  assert.deepEqual([plainBad.size_ok, plainBad.per_artifact_ok], [true, false]);
  const deepBad = await a.snapshotter.verifySnapshot('ana', 'default', bad.id, { deep: true });
  assert.equal(deepBad.status, 'damaged');
  assert.deepEqual(deepBad.not_checked, [
    { check: 'deep', reason: 'skipped because the snapshot is damaged' },
  ]);
  // restore runs the same check
  const before = await fingerprint(a);
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', snapshot: bad.id }),
    (e: { exitCode?: number }) => e.exitCode === 2,
  );
  assert.deepEqual(await fingerprint(a), before);
  assert.deepEqual(await anchors(a), []);
  // the history put right, the database alone: only --deep (and restore) see it
  await rewriteManifest(a, bad.id, (m) => {
    Object.assign(m.artifacts.find((x) => x.kind === 'git_history')!, goodHistory);
  });
  assert.equal((await a.snapshotter.verifySnapshot('ana', 'default', bad.id)).status, 'verified');
  const deepDb = await a.snapshotter.verifySnapshot('ana', 'default', bad.id, { deep: true });
  assert.equal(deepDb.status, 'damaged');
  assert.notEqual(deepDb.deep?.sqlite_integrity.concepts, 'ok');
  assert.equal(deepDb.deep?.git, 'ok');
  let r = await runCli([
    'verify',
    '--agent',
    'ana',
    '--id',
    bad.id,
    '--deep',
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(r.code, 2, r.stdout);
  r = await runCli([
    'verify',
    '--agent',
    'ana',
    '--id',
    good.id,
    '--deep',
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(r.code, 0, r.stdout);
  // restore runs integrity_check on the staged databases
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', snapshot: bad.id }),
    (e: { exitCode?: number; message?: string }) =>
      e.exitCode === 2 && /integrity_check/.test(e.message ?? ''),
  );
  assert.deepEqual(await fingerprint(a), before);
  assert.deepEqual(await anchors(a), []);
});

/** A diff without the labels and ids that name the sides. */
const numbers = (d: SnapshotDiff) => {
  const { a: _a, b: _b, ...rest } = d;
  return rest;
};

test('diff reads repository snapshots: the same numbers as the same diff on bundles, live included', async (t) => {
  const a = repoAgent(t);
  const bundles = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'bundles',
  });
  const r1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const b1 = await bundles.snapshot({ agentId: 'ana' });
  mutate(a, 'diff');
  const db = new Database(join(a.sqliteDir, 'vector.sqlite'));
  db.prepare('DELETE FROM embeddings WHERE rowid IN (SELECT rowid FROM embeddings LIMIT 5)').run();
  db.close();
  const r2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const b2 = await bundles.snapshot({ agentId: 'ana' });
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# live edit\n');

  const diff = (x: string, y: string, detail = true) =>
    a.snapshotter.diff({ agentId: 'ana', a: x, b: y, detail });
  const onBundles = await diff(b1.id, b2.id);
  assert.ok(onBundles.git_summary.commits_between > 0 && onBundles.sqlite_summary.long_term_rows_removed > 0);
  assert.ok(onBundles.sqlite_summary.vector_rows_removed === 5);
  assert.deepEqual(numbers(await diff(r1.id, r2.id)), numbers(onBundles));
  assert.deepEqual(
    numbers(await diff(r1.id, b2.id)),
    numbers(onBundles),
    'a repository snapshot against a bundle',
  );
  assert.deepEqual(numbers(await diff(r2.id, r1.id)), numbers(await diff(b2.id, b1.id)));
  assert.deepEqual(numbers(await diff(r1.id, 'live')), numbers(await diff(b1.id, 'live')));
  assert.deepEqual(numbers(await diff('live', r2.id, false)), numbers(await diff('live', b2.id, false)));
  const same = await diff(r2.id, r2.id);
  assert.equal(same.files.length, 0);
  assert.equal(same.git_summary.commits_between, 0);
});

test('HTTP: the restore route reaches repository snapshots by id', async (t) => {
  ensureBuilt();
  const { a, snap } = await snapshotted(t);
  const token = 'test-token-0123456789abcdef';
  const file = join(a.memdir, 'MEMORY.md');
  const good = readFileSync(file, 'utf8');
  writeFileSync(file, 'a bad dream rewrote this\n');
  const cfg = agentConfig(a, ['    server:', '      allow_restore: true']);
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', '--config', cfg], {
    cwd: REPO,
    env: {
      ...process.env,
      NEXO_MEMORY_TOKEN: token,
      NEXO_MEMORY_RESTORE_ALLOW: 'true',
      NEXO_MEMORY_STORE_FORMAT: 'repository',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
  });
  const post = async (body: string) => {
    const res = await fetch(`${url}/v1/agents/ana/snapshots/${snap.id.slice(0, 13)}/restore`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const dry = await post('{"dry_run": true}');
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  assert.equal(readFileSync(file, 'utf8'), 'a bad dream rewrote this\n');
  const done = await post('{}');
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.from, snap.id);
  assert.equal(readFileSync(file, 'utf8'), good, 'the memory is back');
  const missing = await fetch(`${url}/v1/agents/ana/snapshots/ffffffff/restore`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(missing.status, 404);
  child.kill('SIGTERM');
});

test('an encrypted repository: restore and diff need the identity; the anchor goes in encrypted', async (t) => {
  const dir = tempDir(t);
  const id = generateIdentity();
  const identityPath = join(dir, 'id.txt');
  writeFileSync(identityPath, `${id.identity}\n`);
  const a = repoAgent(t, { recipients: [id.recipient], identityPath });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  mutate(a, 'enc');
  const before = await fingerprint(a);
  const want = await expectedOf(a, snap.id, before);
  const blind = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  });
  await assert.rejects(
    blind.restore({ agentId: 'ana', snapshot: snap.id }),
    (e: { code?: string }) => e.code === 'ENCRYPTION',
  );
  assert.deepEqual(await fingerprint(a), before);
  // verify without any identity: not fully verified (exit 3), as an encrypted bundle; a wrong one: 7
  const v = await blind.verifySnapshot('ana', undefined, snap.id);
  assert.equal(v.status, 'incomplete');
  assert.equal(verifyExitCode(v), 3);
  assert.ok(v.not_checked.some((n) => n.check === 'contents' && /no identity/.test(n.reason)));
  assert.equal((await blind.verify(snap.bundle_path)).status, 'incomplete');
  const other = join(dir, 'other.txt');
  writeFileSync(other, `${generateIdentity().identity}\n`);
  await assert.rejects(blind.verifySnapshot('ana', undefined, snap.id, { decryptIdentity: other }), {
    code: 'ENCRYPTION',
  });
  const withIdentity = await blind.diff({
    agentId: 'ana',
    a: snap.id,
    b: 'live',
    decryptIdentity: identityPath,
  });
  assert.equal(withIdentity.git_summary.commits_between, 1);
  // the databases decrypted and written on the SQLite threads
  const moved = databasesOnThreads(t);
  const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
  assert.ok(moved.includes('writeRun'), 'written on the threads');
  const after = await fingerprint(a);
  for (const db of DBS) assert.equal(after[`db:${db}`], want[`db:${db}`]);
  const anchor = (await a.snapshotter.list('ana')).find((m) => m.id === r.pre_snapshot)!;
  assert.equal(anchor.encrypted, true);
});

test('a repository manifest with a field nested 5,000 deep is damage (exit 2) for restore and verify, not a crash', async (t) => {
  const { a, snap } = await snapshotted(t);
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  const file = join(repoDir(a), 'snapshots', snap.id);
  const text = repo.decodeFile(readFileSync(file), snap.id).toString('utf8');
  const deep = `${text.slice(0, -1)},"x_unknown":${'['.repeat(5000)}${']'.repeat(5000)}}`;
  writeFileSync(file, repo.encodeFile(Buffer.from(deep)));
  const before = await fingerprint(a);
  let r = await runCli(['restore', '--agent', 'ana', '--from', snap.id, '--json', ...a.flags], {
    env: allow,
  });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /bundle damaged: .*nesting deeper/);
  assert.deepEqual(await fingerprint(a), before);
  r = await runCli(['verify', '--agent', 'ana', '--id', snap.id, '--json', '--state-root', a.stateRoot]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
});

for (const [point, outcome] of [
  ['restore.journal.prepared', 'old'],
  ['restore.swap.memdir.in', 'old'],
  ['restore.commit', 'old'],
  ['restore.journal.committed', 'new'],
] as const) {
  test(`a restore of a repository snapshot killed at ${point}: after recovery the live agent is the ${outcome} state`, async (t) => {
    const { a, snap } = await snapshotted(t);
    const atSnapshot = await fingerprint(a);
    mutate(a, 'kill');
    const old = await fingerprint(a);
    const child = startFixture(
      t,
      'restore-once.ts',
      [a.stateRoot, a.memdirRoot, a.sqliteRoot, 'ana', snap.id],
      {
        NEXO_MEMORY_FAULTS: `${point}=kill`,
      },
    );
    assert.equal(await child.exited, -1, `killed at ${point}: ${child.errors()}`);
    const r = await a.snapshotter.recover('ana');
    assert.equal(r?.outcome, outcome === 'old' ? 'rolled_back' : 'completed');
    assert.deepEqual(
      await fingerprint(a),
      outcome === 'old' ? old : await expectedOf(a, snap.id, atSnapshot),
    );
    assert.deepEqual(restoreDirs(a), []);
    const again = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
    assert.equal(again.from, snap.id, 'the next restore works');
  });
}

test('hostile repository objects through the CLI: a blob over the limit, zero chunker settings and a listing time of 1e400 are refused or skipped, never an internal error', async (t) => {
  const { a, snap } = await snapshotted(t);
  const cli = (args: string[]) => runCli([...args, '--state-root', a.stateRoot]);
  const agentCli = (args: string[]) =>
    runCli([...args, ...a.flags], { env: { ...allow, NEXO_MEMORY_STORE_FORMAT: 'repository' } });
  // a listing entry whose time is Infinity once parsed: list and gc show the real snapshots, with a warning
  const forged = '00000000-0000-4000-8000-000000000000';
  writeFileSync(
    join(repoDir(a), 'listing', forged),
    `{"listing_version":1,"meta":{"id":"${forged}","agent_id":"ana","tenant":"default","created_at_ms":1e400}}\n`,
  );
  let r = await cli(['list', '--agent', 'ana']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(snap.id));
  assert.doesNotMatch(r.stdout, new RegExp(forged));
  assert.match(r.stderr, new RegExp(`listing/${forged} is unreadable; skipped`));
  r = await cli(['gc', '--agent', 'ana', '--keep-count', '1', '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, new RegExp(forged));

  // zero chunker settings in the config: a snapshot is refused as damage, nothing written
  const configFile = join(repoDir(a), 'config', 'config');
  const config = readFileSync(configFile);
  const c = JSON.parse(config.toString('utf8'));
  c.chunker = { ...c.chunker, file_min: 0, file_max: 0, single_max: 0 };
  writeFileSync(configFile, JSON.stringify(c));
  const packs = packFiles(a);
  r = await agentCli(['snapshot', '--agent', 'ana', '--json']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /BUNDLE_DAMAGED[\s\S]*chunker\.file_min is 0/);
  assert.deepEqual(packFiles(a), packs);
  writeFileSync(configFile, config);

  // a blob of 16 MiB + 1 (a small pack of zeros) named by a resealed manifest: verify and restore say damaged
  const big = Buffer.alloc(16 * 1024 * 1024 + 1);
  const id = createHash('sha256').update(big).digest('hex');
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  await repo.loadIndex();
  const w = repo.writer();
  await w.add(1, id, big);
  await w.finish();
  await rewriteManifest(a, snap.id, (m) => {
    const f = m.artifacts.find((x) => x.kind === 'memory_file')!;
    f.size_bytes = big.length;
    f.sha256 = id;
    delete f.chunks;
    delete f.chunk_lists;
  });
  r = await cli(['verify', '--agent', 'ana', '--id', snap.id, '--json']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /exceeds the limit/);
  const before = await fingerprint(a);
  r = await agentCli(['restore', '--agent', 'ana', '--from', snap.id, '--json']);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /BUNDLE_DAMAGED/);
  assert.deepEqual(await fingerprint(a), before);
});

test('a repository snapshot whose state value is not JSON (its hash right) is damage to diff, restore and a redacted export, not a SyntaxError', async (t) => {
  const { a, snap } = await snapshotted(t);
  const repo = await Repository.open(new LocalBackend(repoDir(a)));
  await repo.ensureIndex();
  const writer = repo.writer();
  // not JSON, and with a secret in it: a redacted export reads it as JSON (redaction/redact.ts)
  const token = `ghp_${'a1B2'.repeat(9)}`;
  const notJson = await storeContent(writer, repo.config.chunker, {
    data: Buffer.from(`{"token": "${token}",`),
  });
  await writer.finish();
  await rewriteManifest(a, snap.id, (m) => {
    const state = m.artifacts.find((x) => x.path_in_bundle === 'state/extract_cursor.json');
    assert.ok(state, 'the snapshot holds the state value');
    Object.assign(state, notJson);
  });
  const damage = (e: { code?: string; exitCode?: number; message: string }) => {
    assert.equal(e.code, 'BUNDLE_DAMAGED', e.message);
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /state\/extract_cursor\.json is not valid JSON/);
    return true;
  };
  // verify parses it as a bundle's verify does: "verified" means restore will not refuse it
  const v = await a.snapshotter.verifySnapshot('ana', 'default', snap.id);
  assert.equal(v.status, 'damaged');
  assert.deepEqual(
    v.problems.map((p) => [p.code, p.path]),
    [['BUNDLE_DAMAGED', 'state/extract_cursor.json']],
    JSON.stringify(v.problems),
  );
  assert.match(v.problems[0]!.message, /is not valid JSON/);
  // size_ok is the sizes: this value was read whole, its size right (stop 46)
  assert.deepEqual(
    {
      size_ok: v.size_ok,
      per_artifact_ok: v.per_artifact_ok,
      not_checked: v.not_checked.map((n) => n.check),
    },
    { size_ok: true, per_artifact_ok: false, not_checked: ['deep'] },
  );
  const cli = await runCli(['verify', '--agent', 'ana', '--id', snap.id, '--state-root', a.stateRoot]);
  assert.equal(cli.code, 2, cli.stderr);
  await assert.rejects(a.snapshotter.diff({ agentId: 'ana', a: snap.id, b: 'live' }), damage);
  await assert.rejects(a.snapshotter.diff({ agentId: 'ana', a: 'live', b: snap.id }), damage);
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, dryRun: true }), damage);
  const r = await runCli(['diff', '--agent', 'ana', snap.id, 'live', ...a.flags, '--json']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'BUNDLE_DAMAGED');
  const out = tempDir(t);
  await assert.rejects(a.snapshotter.export('ana', 'default', snap.id, `${out}/`), damage);
  assert.deepEqual(readdirSync(out), [], 'nothing exported');
});
