// A snapshot id in any case names one snapshot everywhere (stop 44): the `<repository>#<id>` a list
// prints, with the id in uppercase, is that snapshot for `verify` and `restore --from` of the CLI
// (`main(argv)` in the test process; it was read as a file name: "bundle not found"), and a verify over
// HTTP (the real daemon) with an uppercase id is
// kept under the id the snapshot is listed by, so the fleet alerts a damaged snapshot however the
// request spelled it.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, sampleAgent } from './helpers/env.js';
import { serveBuilt } from './helpers/serve.js';

const SMALL = { files: 2, commits: 2, memories: 10, embeddings: 4, concepts: 4, compactions: 2 };
const TOKEN = 'test-token-0123456789abcdef';
// the repository store (the suite's default is bundles: test/helpers/env.ts)
const REPOSITORY = { NEXO_MEMORY_STORE_FORMAT: 'repository' };
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { env: { ...REPOSITORY, ...env } });

test('CLI: verify and restore --from take <repository>#<ID> with the id in uppercase (or braced), as the snapshot', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = await cli(['snapshot', '--agent', 'ana', ...a.flags, '--json']);
  assert.equal(snap.code, 0, snap.stderr);
  const meta = JSON.parse(snap.stdout) as { id: string; bundle_path: string };
  const repo = join(a.stateRoot, 'repository');
  assert.equal(meta.bundle_path, `${repo}#${meta.id}`);
  const upper = `${repo}#${meta.id.toUpperCase()}`;

  for (const ref of [upper, `${repo}#{${meta.id.toUpperCase()}}`]) {
    const v = await cli(['verify', ref, '--state-root', a.stateRoot, '--json']);
    assert.equal(v.code, 0, v.stderr);
    const report = JSON.parse(v.stdout) as { status: string; bundle: string; snapshot_id: string };
    assert.equal(report.status, 'verified');
    assert.equal(report.bundle, meta.bundle_path, 'named in the canonical lowercase form');
    assert.equal(report.snapshot_id, meta.id);
  }

  const r = await cli(['restore', '--agent', 'ana', ...a.flags, '--from', upper, '--dry-run', '--json'], {
    NEXO_MEMORY_RESTORE_ALLOW: 'true',
  });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { bundle: string; dry_run: boolean };
  assert.equal(report.dry_run, true);
  assert.equal(report.bundle, meta.bundle_path);

  // diff's `live` is a word in any case, as `latest`; the id in uppercase is the snapshot
  const diff = await cli(['diff', meta.id.toUpperCase(), 'LIVE', '--agent', 'ana', ...a.flags, '--json']);
  assert.equal(diff.code, 0, diff.stderr);
  const d = JSON.parse(diff.stdout) as { a: string; b: string };
  assert.deepEqual([d.a, d.b], [meta.id, 'live']);

  // another repository's reference is still a file name, with the hint, whatever the id's case
  const other = await cli([
    'verify',
    `${join(a.root, 'elsewhere')}#${meta.id.toUpperCase()}`,
    '--state-root',
    a.stateRoot,
    '--json',
  ]);
  assert.equal(other.code, 1);
  assert.match(other.stdout, /"code": "IO"/);
  assert.match(other.stdout, /a repository snapshot: give its state root or --repo/);

  // one to three hex digits are no prefix: the file they name is not there, and the message says what
  // a prefix needs (stop 58: a new operator's `--from 01a` got only "bundle not found")
  const short = await cli([
    'restore',
    '--agent',
    'ana',
    ...a.flags,
    '--from',
    meta.id.slice(0, 3),
    '--dry-run',
  ]);
  assert.equal(short.code, 1, short.stderr);
  assert.match(
    short.stderr,
    /bundle not found: .*\(no such file; as a snapshot id it needs at least 4 hex digits/,
  );
  // and an ambiguous prefix says to give more of it
  await cli(['snapshot', '--agent', 'ana', ...a.flags]);
  const ids = (
    JSON.parse((await cli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json'])).stdout) as {
      id: string;
    }[]
  ).map((m) => m.id);
  let common = 0;
  while (ids.every((id) => id[common] === ids[0]![common])) common++;
  if (common >= 4) {
    const amb = await cli([
      'verify',
      '--agent',
      'ana',
      '--id',
      ids[0]!.slice(0, common),
      '--state-root',
      a.stateRoot,
    ]);
    assert.equal(amb.code, 1, amb.stderr);
    assert.match(amb.stderr, /is ambiguous .*give more of its digits/);
  }
});

test('HTTP: a verify by an uppercase id is recorded under the listed id: the fleet alerts the damaged snapshot', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const s = await cli(['snapshot', '--agent', 'ana', ...a.flags, '--json']);
    assert.equal(s.code, 0, s.stderr);
    ids.push((JSON.parse(s.stdout) as { id: string }).id);
  }
  const damaged = ids[0]!;
  // its manifest no longer reads: the report has no snapshot_id to take the id from
  const file = join(a.stateRoot, 'repository', 'snapshots', damaged);
  const bytes = readFileSync(file);
  const i = bytes.length >> 1;
  bytes[i] = bytes[i]! ^ 0xff;
  writeFileSync(file, bytes);

  const d = await serveBuilt(t, a.flags, { ...REPOSITORY, NEXO_MEMORY_TOKEN: TOKEN });
  const headers = { authorization: `Bearer ${TOKEN}` };
  const got = await fetch(`${d.url}/v1/agents/ana/snapshots/${damaged.toUpperCase()}`, { headers });
  assert.equal(got.status, 200);
  assert.equal(((await got.json()) as { id: string }).id, damaged, 'GET answers with the canonical id');

  const v = await fetch(`${d.url}/v1/agents/ana/snapshots/${damaged.toUpperCase()}/verify`, { headers });
  assert.equal(v.status, 200);
  const report = (await v.json()) as { status: string; snapshot_id?: string };
  assert.equal(report.status, 'damaged');
  assert.equal(report.snapshot_id, undefined, 'the manifest was not read');

  const fleet = (await (await fetch(`${d.url}/v1/fleet`, { headers })).json()) as {
    agents: Array<{
      agent_id: string;
      last_verify?: { snapshot_id: string };
      alerts: Array<{ code: string; message: string }>;
    }>;
  };
  const ana = fleet.agents.find((x) => x.agent_id === 'ana')!;
  assert.equal(ana.last_verify?.snapshot_id, damaged, 'recorded under the listed (lowercase) id');
  assert.deepEqual(
    ana.alerts.map((x) => x.code),
    ['damaged'],
  );
  assert.equal(ana.alerts[0]!.message, `snapshot ${damaged} verified damaged`);
  d.child.kill('SIGTERM');
});
