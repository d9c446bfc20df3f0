// A local repository's bytes written by someone else (stop 44, a hunter's findings): packs far larger
// than any pack may be, listing entries too large to read, key files planted beside the real one, labels
// with control characters. Each through the real CLI on a real repository: reported as damage or
// skipped with a warning, never an INTERNAL error, never memory the size of the hostile object, never
// another master key.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CachedBackend } from '../src/backend/cache.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { newKeyFile } from '../src/repository/crypto.js';
import { MAX_PACK } from '../src/repository/pack.js';
import { listSnapshots } from '../src/repository/snapshots.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { sampleAgent, tempDir } from './helpers/env.js';

const SMALL = { files: 2, commits: 2, memories: 10, embeddings: 4, concepts: 4, compactions: 2 };
const REPOSITORY = { NEXO_MEMORY_STORE_FORMAT: 'repository' };

interface Problem {
  code: string;
  object: string;
  message: string;
}

test('check --read-data: a pack larger than any pack may be (a 5 GB sparse file) is damage, exit 2, never read or allocated for', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const env = { env: REPOSITORY };
  let r = await runBuiltCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const name = `ab${'0'.repeat(62)}`;
  const dir = join(a.stateRoot, 'repository', 'packs', 'ab');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, '');
  truncateSync(file, 5 * 1024 ** 3); // sparse: costs nothing on disk
  r = await runBuiltCli(['check', '--read-data', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr); // was INTERNAL (exit 1): "The value of size is out of range"
  const report = JSON.parse(r.stdout) as { problems: Problem[]; bytes_read: number; packs_read: number };
  assert.deepEqual(
    report.problems.map((p) => [p.code, p.object]),
    [['BUNDLE_DAMAGED', `packs/${name}`]],
  );
  assert.match(report.problems[0]!.message, new RegExp(`more than any pack may be \\(${MAX_PACK}\\)`));
  assert.ok(report.bytes_read < MAX_PACK, `${report.bytes_read} bytes read`);
  // without --read-data the structure pass says the same
  r = await runBuiltCli(['check', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  // the real packs still check
  truncateSync(file, 0);
  r = await runBuiltCli(['check', '--read-data', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, 'an empty pack file is damage too');
  assert.match(r.stdout, /does not hash to its name/);
});

test('an oversized listing entry (2 MB of spaces) is skipped with a warning by list and gc, reported by check; gc escapes a listing label as list does', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const env = { env: REPOSITORY };
  let r = await runBuiltCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  const listing = join(a.stateRoot, 'repository', 'listing');
  const planted = randomUUID();
  writeFileSync(join(listing, planted), ' '.repeat(2 * 1024 * 1024));
  // the real entry's label, as a writer of the repository may set it (plaintext): a newline in it
  const own = join(listing, id);
  const entry = JSON.parse(readFileSync(own, 'utf8')) as { meta: { label?: string } };
  entry.meta.label = 'evil\nDELETED everything';
  writeFileSync(own, `${JSON.stringify(entry)}\n`);

  r = await runBuiltCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr); // was OBJECT_TOO_LARGE, exit 2
  assert.deepEqual(
    (JSON.parse(r.stdout) as Array<{ id: string }>).map((m) => m.id),
    [id],
  );
  assert.match(r.stderr, new RegExp(`listing/${planted} is larger than 1048576 bytes; skipped`));
  r = await runBuiltCli(['gc', '--agent', 'ana', '--keep-count', '5', ...a.flags], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`listing/${planted} is larger than`));
  assert.match(r.stdout, new RegExp(`keep +${id} .* evil\\\\nDELETED everything `));
  assert.doesNotMatch(r.stdout, /^DELETED/m, 'the label stays on its line');
  r = await runBuiltCli(['gc', '--all', ...a.flags, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);

  r = await runBuiltCli(['check', '--state-root', a.stateRoot, '--json'], env);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  const problems = (JSON.parse(r.stdout) as { problems: Problem[] }).problems;
  assert.ok(
    problems.some(
      (p) =>
        p.object === `listing/${planted}` &&
        /more than any may be \(1048576\); list and gc skip it/.test(p.message),
    ),
    JSON.stringify(problems),
  );
});

test("a key file planted in an encrypted repository (to the victim's recipient) never makes a writer use its master key: refused beside the real one, and pinned on first use when it replaces it", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const id = join(a.root, 'id.txt');
  let r = await runBuiltCli(['keygen', '--age', '--out', id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const recipient = execFileSync('age-keygen', ['-y', id], { encoding: 'utf8' }).trim();
  const config = join(a.root, 'nexo.yaml');
  writeFileSync(
    config,
    `memory:\n  snapshot:\n    store:\n      format: repository\n    encryption:\n      recipients: ["${recipient}"]\n      identity_path: ${id}\n`,
  );
  const env = { env: REPOSITORY };
  const snapshot = () =>
    runBuiltCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', config, '--json'], env);
  r = await snapshot();
  assert.equal(r.code, 0, r.stderr);
  const repo = join(a.stateRoot, 'repository');
  const repoId = (JSON.parse(readFileSync(join(repo, 'config', 'config'), 'utf8')) as { id: string }).id;
  const pin = join(a.stateRoot, 'repository-keys', repoId);
  assert.match(readFileSync(pin, 'utf8'), /^[0-9a-f]{64}\n$/, 'the first snapshot pinned the master key');
  const keys = join(repo, 'keys');
  const [real] = readdirSync(keys);
  const snapshots = () => readdirSync(join(repo, 'listing')).length;
  const before = snapshots();

  // the attacker's key file: its own master key, sealed to the victim's public recipient
  const planted = (await newKeyFile([recipient])).bytes;
  const plantedName = createHash('sha256').update(planted).digest('hex');
  writeFileSync(join(keys, plantedName), planted);
  r = await snapshot();
  assert.equal(r.code, 7, r.stdout + r.stderr);
  assert.match(r.stdout, /"code": "ENCRYPTION"/);
  assert.match(r.stderr, /key files of this repository hold different master keys/);
  r = await runBuiltCli(
    ['list', '--agent', 'ana', '--state-root', a.stateRoot, '--config', config, '--json'],
    env,
  );
  assert.equal(r.code, 0, 'list needs no key');

  // the real key file gone: only the planted one opens; the pin refuses it
  renameSync(join(keys, real!), join(a.root, 'real-key'));
  r = await snapshot();
  assert.equal(r.code, 7, r.stdout + r.stderr);
  assert.match(r.stderr, /not the one this state root pinned for it on first use/);
  assert.equal(snapshots(), before, 'nothing was stored under the planted key');

  // the repository's own key back: snapshots go on
  rmSync(join(keys, plantedName));
  renameSync(join(a.root, 'real-key'), join(keys, real!));
  r = await snapshot();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(snapshots(), before + 1);
});

test("an oversized listing entry behind the remote stores' cache (its listing file, loadMany) is skipped with a warning too", async (t) => {
  const inner = new MemoryBackend();
  const good = randomUUID();
  const meta = { id: good, agent_id: 'ana', tenant: 'default', created_at_ms: 1_700_000_000_000 };
  await inner.save(
    { type: 'listing', name: good },
    Buffer.from(`${JSON.stringify({ listing_version: 1, meta })}\n`),
  );
  const big = randomUUID();
  await inner.save({ type: 'listing', name: big }, Buffer.alloc(2 * 1024 * 1024, ' '));
  const cached = new CachedBackend(inner, tempDir(t));
  for (const round of [1, 2]) {
    const warnings: string[] = [];
    const listed = await listSnapshots({ backend: cached }, {}, (m) => warnings.push(m));
    assert.deepEqual(
      listed.map((m) => m.id),
      [good],
      `round ${round}`,
    );
    assert.deepEqual(warnings, [`listing/${big} is larger than 1048576 bytes; skipped`], `round ${round}`);
  }
});
