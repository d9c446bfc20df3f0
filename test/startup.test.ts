// What the quick commands load (issue 13, start-up): `--version` and `list` run as the installed CLI in a
// process of its own, with a resolve hook recording every module it loads (test/fixtures/record-modules.mjs).
// They must not load the heavy dependencies the work of other commands needs: zod (the manifest
// schemas, ~100 modules), SQLite, zstd, the NATS and S3 clients, the MCP SDK, prom-client, the YAML parser.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { runBuiltCli } from './helpers/built-cli.js';
import { REPO, sampleAgent, tempDir } from './helpers/env.js';

const HEAVY = [
  'zod',
  'better-sqlite3',
  'zstd-napi',
  '@nats-io',
  '@aws-sdk',
  '@modelcontextprotocol',
  'prom-client',
  'yaml',
];

async function loadedBy(t: import('node:test').TestContext, args: string[], env: NodeJS.ProcessEnv = {}) {
  const record = join(tempDir(t, 'nexo-modules-'), 'loaded.txt');
  const hook = pathToFileURL(join(REPO, 'test', 'fixtures', 'record-modules.mjs')).href;
  const r = await runBuiltCli(args, {
    env: { ...env, NODE_OPTIONS: `--import ${hook}`, NEXO_RECORD_MODULES: record },
  });
  assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  const urls = readFileSync(record, 'utf8').split('\n').filter(Boolean);
  assert.ok(
    urls.some((u) => u.includes('/dist/src/cli/')),
    'the hook saw the CLI load',
  );
  const heavy = urls.filter((u) => HEAVY.some((h) => u.includes(`/node_modules/${h}`)));
  assert.deepEqual(heavy, [], `${args.join(' ')} loads none of ${HEAVY.join(', ')}`);
  return r;
}

test('--version and list of a repository and of bundles load none of the heavy dependencies', async (t) => {
  await loadedBy(t, ['--version']);
  for (const store of ['repository', 'bundles'] as const) {
    const a = sampleAgent(t, 'ana', { memories: 5, embeddings: 2, files: 1, commits: 1 }, { store });
    await a.snapshotter.snapshot({ agentId: 'ana' });
    await a.snapshotter.snapshot({ agentId: 'ana' });
    const r = await loadedBy(t, ['list', '--agent', 'ana', '--json', '--state-root', a.stateRoot], {
      NEXO_MEMORY_STORE_FORMAT: store,
    });
    const listed = JSON.parse(r.stdout);
    assert.equal((Array.isArray(listed) ? listed : listed.snapshots).length, 2, store);
  }
});
