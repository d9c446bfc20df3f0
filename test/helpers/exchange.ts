// Test helper for the exchange between bundles and the repository (repository-exchange.test.ts,
// repository-migrate-kill.test.ts): a small agent, a snapshotter over its roots, a planted secret, the
// content of a bundle, a v1 bundle of the original, a bundle store of two agents to migrate (and a copy
// of it per kill test), and the check that a migrate moved everything and lost nothing.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { buildSampleAgent, git } from '../../scripts/sample-agent.js';
import { secretKeyFileText } from '../../src/crypto/sign.js';
import { generateSigningKey, LocalSnapshotter, type LocalSnapshotterOptions } from '../../src/index.js';
import { bundleOf, manifestFor, rawGitFiles, readEntries, writeBundleFile } from './bundles.js';
import { type Agent, copiedAgent, sampleAgent, tempDir } from './env.js';

export const SMALL = { files: 8, commits: 4, memories: 200, embeddings: 40, concepts: 20, compactions: 6 };

/** A snapshotter over the agent's roots with these options (the repository store unless told). */
export function snapshotterOf(a: Agent, opts: Partial<LocalSnapshotterOptions> = {}): LocalSnapshotter {
  return new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
    ...opts,
  });
}

/** A synthetic GitHub token (assembled at run time) planted in a committed file and a database row. */
export function plantSecret(a: Agent): string {
  const token = `${'gh'}p_${randomBytes(27).toString('base64url').replace(/[-_]/g, 'x').slice(0, 36)}`;
  writeFileSync(join(a.memdir, 'topics', 'keys.md'), `# keys\nthe deploy token is ${token}\n`);
  git(a.memdir, ['add', '.']);
  git(a.memdir, ['commit', '-qm', 'keys']);
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (1, 'fact', ?, 0.5)").run(
    `the user pasted ${token}`,
  );
  db.close();
  return token;
}

/** The artifacts of a bundle's manifest but the git history: path → sha256. */
export async function contentOf(bundle: string): Promise<Map<string, string>> {
  const entries = await readEntries(bundle);
  const m = JSON.parse(entries[0]!.data.toString('utf8')) as {
    artifacts: Array<{ path_in_bundle: string; kind: string; sha256: string }>;
  };
  return new Map(m.artifacts.filter((x) => x.kind !== 'git_bundle').map((x) => [x.path_in_bundle, x.sha256]));
}

/** The agent as a v1 bundle of the original: raw `.git` files under `git/`, plus `extraGit` files. */
export function v1BundleOf(
  a: Agent,
  path: string,
  extraGit: Record<string, string> = {},
  meta: { label?: string; created_by?: string } = {},
): string {
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const arts: Array<{ path: string; kind: string; data: Buffer | string }> = [
    {
      path: 'sqlite/long_term.sqlite',
      kind: 'sqlite_long_term',
      data: readFileSync(join(a.sqliteDir, 'long_term.sqlite')),
    },
  ];
  const memory = git(a.memdir, ['ls-files', '-co', '--exclude-standard']).split('\n').filter(Boolean).sort();
  for (const rel of memory)
    arts.push({ path: `memory_files/${rel}`, kind: 'memory_file', data: readFileSync(join(a.memdir, rel)) });
  const raw: Map<string, Buffer | string> = rawGitFiles(join(a.memdir, '.git'));
  for (const [rel, data] of Object.entries(extraGit)) raw.set(rel, data);
  for (const [rel, data] of [...raw].sort()) arts.push({ path: `git/${rel}`, kind: 'git_bundle', data });
  const manifest = manifestFor(
    arts,
    {
      label: 'from the original',
      created_by: 'cli',
      ...meta,
      created_at_ms: 1_700_000_000_000,
      git: { head_oid: head, head_subject: 'the subject', head_author: 'a <b>', head_ts_ms: 1 },
    },
    1,
  );
  return writeBundleFile(path, bundleOf(manifest, arts, [], { v1: true }));
}

export const V1_ID = '0190c3a2-0000-7000-8000-000000000001';

export interface Expected {
  label?: string;
  created_by?: string;
  created_at_ms: number;
  pinned: boolean;
  content: Map<string, string>;
  git_oid?: string;
  /** path of the bundle, while it exists */
  path: string;
}

/**
 * A 0.2 state root holding bundles of two agents: ana's pinned one, a redacted one, one signed with
 * `signingKey`, a v1 bundle of the original; bob's one. Returns what each bundle holds, by id.
 */
export async function bundleStore(t: TestContext, signingKey: string) {
  const a = sampleAgent(t, 'ana', SMALL);
  buildSampleAgent(a.root, 'bob', SMALL);
  const b = snapshotterOf(a, { store: 'bundles' });
  const dir = b.layout.snapshotsDir('default', 'ana');
  mkdirSync(dir, { recursive: true });
  v1BundleOf(a, join(dir, `${V1_ID}.tar.zst`));
  const one = await b.snapshot({ agentId: 'ana', label: 'one', createdBy: 'cli' });
  await b.pin('ana', 'default', one.id, 'keep');
  plantSecret(a);
  await b.snapshot({ agentId: 'ana', label: 'two', redact: true });
  await b.snapshot({ agentId: 'ana', label: 'signed', sign: signingKey, createdBy: 'scheduled' });
  await b.snapshot({ agentId: 'bob', label: 'bob' });
  const expected = new Map<string, Expected>();
  for (const agent of ['ana', 'bob'])
    for (const m of await b.list(agent))
      expected.set(m.id, {
        ...(m.label !== undefined ? { label: m.label } : {}),
        ...(m.created_by !== undefined ? { created_by: m.created_by } : {}),
        created_at_ms: m.created_at_ms,
        pinned: m.pinned === true,
        content: await contentOf(m.bundle_path),
        ...(m.git_oid ? { git_oid: m.git_oid } : {}),
        path: m.bundle_path,
      });
  assert.equal(expected.size, 5);
  return { a, expected };
}

/** Bundle files, siblings, sidecars, pins and staging left in an agent's snapshot directory. */
export function bundleLeftovers(a: Agent, agent: string): string[] {
  const dir = snapshotterOf(a).layout.snapshotsDir('default', agent);
  return existsSync(dir) ? readdirSync(dir).filter((n) => /\.tar\.zst|^\.staging-/.test(n)) : [];
}

/**
 * Everything moved and nothing lost: no bundle left, every snapshot listed once with its id, label,
 * creator, time and pin, verified, its export holding exactly what its bundle held, check clean.
 */
export async function assertMigrated(
  t: TestContext,
  a: Agent,
  expected: Map<string, Expected>,
): Promise<void> {
  const s = snapshotterOf(a, { store: 'auto' });
  assert.equal(s.usesRepository(), true, 'auto picks the repository after migrate');
  for (const agent of ['ana', 'bob']) assert.deepEqual(bundleLeftovers(a, agent), [], agent);
  const listed = [...(await s.list('ana')), ...(await s.list('bob'))];
  assert.deepEqual(listed.map((m) => m.id).sort(), [...expected.keys()].sort());
  const out = tempDir(t, 'nexo-migrated-');
  for (const m of listed) {
    const e = expected.get(m.id)!;
    assert.ok(m.bundle_format?.startsWith('nexo-memory-snapshot-v'), m.bundle_format);
    assert.ok(m.bundle_path.includes('#'), 'a repository snapshot');
    assert.equal(m.label, e.label, m.id);
    assert.equal(m.created_by, e.created_by, m.id);
    assert.equal(m.created_at_ms, e.created_at_ms, m.id);
    assert.equal(m.pinned, e.pinned, m.id);
    // the bundle's pin note moved with it (exchangeStore pins with the note `keep`)
    if (e.pinned)
      assert.equal(
        (JSON.parse(readFileSync(join(a.stateRoot, 'repository', 'pins', m.id), 'utf8')) as { note?: string })
          .note,
        'keep',
        m.id,
      );
    if (e.git_oid) assert.equal(m.git_oid, e.git_oid, m.id);
    const v = await s.verifySnapshot(m.agent_id, 'default', m.id);
    assert.equal(v.status, 'verified', `${m.id}: ${JSON.stringify(v.problems)}`);
    const x = await s.export(m.agent_id, 'default', m.id, join(out, `${m.id}.tar.zst`), { redact: false });
    assert.deepEqual(await contentOf(x.path), e.content, m.id);
  }
  const check = await s.check({ readData: true });
  assert.equal(check.ok, true, JSON.stringify(check.problems));
}

export function signingKeyFile(t: TestContext): { path: string; keyId: string } {
  const key = generateSigningKey();
  const path = join(tempDir(t), 'sign.key');
  writeFileSync(path, secretKeyFileText(key), { mode: 0o600 });
  return { path, keyId: key.keyId };
}

/**
 * The bundle store every kill test starts from: built by the first, copied (an agent of its own, the
 * same bundles, pins and signature) for the others.
 */
let killTemplate: { dir: string; expected: Map<string, Expected> } | undefined;
export async function killStore(t: TestContext): Promise<{ a: Agent; expected: Map<string, Expected> }> {
  if (!killTemplate) {
    const { a, expected } = await bundleStore(t, signingKeyFile(t).path);
    const dir = mkdtempSync(join(tmpdir(), 'nexo-kill-store-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    cpSync(a.root, dir, { recursive: true, preserveTimestamps: true });
    killTemplate = { dir, expected };
    return { a, expected };
  }
  const a = copiedAgent(t, killTemplate.dir, 'ana');
  for (const agent of ['ana', 'bob']) git(join(a.memdirRoot, agent), ['update-index', '-q', '--refresh']);
  return { a, expected: killTemplate.expected };
}
