// A local repository's bytes written by someone else (stop 44, a hunter's findings): packs far larger
// than any pack may be, listing entries too large to read, key files planted beside the real one, labels
// with control characters. Each through the real CLI on a real repository: reported as damage or
// skipped with a warning, never an INTERNAL error, never memory the size of the hostile object, never
// another master key.

import assert from 'node:assert/strict';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MAX_PACK } from '../src/repository/pack.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { sampleAgent } from './helpers/env.js';

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
