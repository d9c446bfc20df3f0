// What the command line does with input a script gets wrong (stop 47), through the CLI in the test
// process (`main(argv)`: what is tested is each command's refusal, exit status and output): an option
// given an empty value (an unset shell variable: `--tenant "$T"`) is refused naming the flag, never read
// as "not given" (gc swept every tenant; `--config ''` dropped the config and its `enabled: false`;
// `--memdir-root ''` read ./<agent>); a value that looks like the program's own flags (`--label -V`) is
// the value; no command at all is a usage error; an unknown option is named as unknown; and a snapshot
// whose memdir or database directory is missing says so, naming the path (both missing: UNKNOWN_AGENT).

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { InvalidInputError } from '../src/model/errors.js';
import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { json, ok } from './helpers/cli-json.js';
import { agentConfig, runCli, sampleAgent } from './helpers/env.js';

const SMALL = { files: 3, commits: 2, memories: 20, embeddings: 5, concepts: 5, compactions: 2 };
const EMPTY_HINT = /is empty: give it a value or leave the option out/;

test('an option given an empty value is refused naming the flag, on every command, before any work; --label and --note take an empty text', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const first = ok(await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']), 'snapshot');
  const second = ok(await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']), 'snapshot');
  const list = async () =>
    ok(await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json']), 'list').map(
      (m: { id: string }) => m.id,
    );
  const before = await list();
  assert.deepEqual(new Set(before), new Set([first.id, second.id]));

  const cases: Array<[string, string[]]> = [
    // the data loss: an empty --tenant swept and deleted in every tenant, exit 0
    ['--tenant', ['gc', '--all', '--keep-count', '1', ...a.flags]],
    ['--agent', ['gc', '--keep-count', '1', ...a.flags]],
    ['--tenant', ['snapshot', '--agent', 'ana', ...a.flags]],
    ['--agent', ['snapshot', ...a.flags]],
    ['--state-root', ['snapshot', '--agent', 'ana', '--memdir-root', a.memdirRoot]],
    ['--memdir-root', ['snapshot', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--sqlite-root', ['snapshot', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--config', ['snapshot', '--agent', 'ana', ...a.flags]],
    ['--metrics-file', ['list', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--repo', ['list', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--nats', ['list', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--sign', ['snapshot', '--agent', 'ana', ...a.flags]],
    ['--encrypt', ['snapshot', '--agent', 'ana', ...a.flags]],
    ['--id', ['verify', '--agent', 'ana', '--state-root', a.stateRoot]],
    ['--id', ['delete', '--agent', 'ana', '--yes', '--state-root', a.stateRoot]],
    ['--from', ['restore', '--agent', 'ana', '--dry-run', ...a.flags]],
    ['--to', ['export', '--agent', 'ana', '--id', 'latest', '--state-root', a.stateRoot]],
    ['--decrypt-identity', ['check', '--state-root', a.stateRoot]],
    ['--out', ['keygen']],
  ];
  for (const [flag, args] of cases) {
    const r = await runCli([...args, flag, '', '--json'], { env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' } });
    const what = `${args[0]} ${flag} ''`;
    assert.equal(r.code, 1, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    const e = json(r).error;
    assert.equal(e.code, 'INVALID_INPUT', `${what}: ${r.stdout}`);
    assert.match(e.message, new RegExp(`^${flag} `), what);
    assert.match(e.message, EMPTY_HINT, what);
    assert.match(r.stderr, new RegExp(`^error: ${flag} is empty`, 'm'), what);
  }
  // the `=` spelling is the same value
  const eq = await runCli(['gc', '--all', '--tenant=', ...a.flags, '--json']);
  assert.equal(json(eq).error.code, 'INVALID_INPUT');
  assert.deepEqual(await list(), before, 'nothing was deleted');

  const labelled = ok(
    await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--label', '', '--json']),
    'an empty label',
  );
  assert.equal(labelled.label, '');
  ok(
    await runCli([
      'pin',
      '--agent',
      'ana',
      '--id',
      labelled.id,
      '--note',
      '',
      '--state-root',
      a.stateRoot,
      '--json',
    ]),
    'an empty note',
  );
});

test("--config '' is refused, not read as no config: a config's enabled: false still stops gc --dry-run; an empty NEXO_MEMORY_CONFIG is no config, as documented", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  ok(await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']), 'snapshot');
  const cfg = agentConfig(a, ['    enabled: false']);
  const env = { NEXO_MEMORY_CONFIG: cfg };
  const gc = ['gc', '--all', '--dry-run', '--json'];
  assert.equal(json(await runCli(gc, { env })).error.code, 'CONFIG', 'the kill switch of the config file');
  const empty = await runCli([...gc, '--config', ''], { env });
  assert.equal(empty.code, 1, empty.stdout);
  assert.equal(json(empty).error.code, 'INVALID_INPUT');
  assert.match(json(empty).error.message, /^--config is empty/);
  ok(await runCli([...gc, ...a.flags], { env: { NEXO_MEMORY_CONFIG: '' } }), 'an empty variable: no config');
});

test('a value that looks like the program’s own flags is the value: --label -V, --version, -h, --help take the snapshot', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  for (const label of ['-V', '--version', '-h', '--help', '-x']) {
    const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--label', label, '--json']);
    const meta = ok(r, `--label ${label}`);
    assert.equal(meta.label, label);
    assert.match(meta.id, /^[0-9a-f-]{36}$/);
  }
  // the program's options come before the command; after it, -V is an option the command lacks
  const after = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '-V', '--json']);
  assert.equal(after.code, 1);
  assert.match(json(after).error.message, /unknown option '-V'/);
});

test('no command is a usage error (exit 1, the help on stderr); --help, help and --version are not', async () => {
  const none = await runCli([]);
  assert.equal(none.code, 1);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /Usage: nexo-memory/);
  assert.match(none.stderr, /^error: no command given/m);
  for (const args of [
    ['--help'],
    ['help'],
    ['help', 'snapshot'],
    ['-V'],
    ['--version'],
    ['snapshot', '--help'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.notEqual(r.stdout, '', args.join(' '));
  }
});

test('an unknown option is named as unknown before a missing mandatory one; an empty --id or bundle path is said to be empty', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const abbreviated = await runCli(['list', '--ag', 'ana', '--state-root', a.stateRoot, '--json']);
  assert.equal(abbreviated.code, 1);
  assert.match(json(abbreviated).error.message, /^unknown option '--ag'/);
  const missing = await runCli(['list', '--state-root', a.stateRoot, '--json']);
  assert.equal(missing.code, 1);
  assert.equal(json(missing).error.message, "required option '--agent <id>' not specified");
  const verify = await runCli(['verify', '--agent', 'ana', '--id', '', '--state-root', a.stateRoot]);
  assert.equal(verify.code, 1);
  assert.match(verify.stderr, /^error: --id is empty/m);
  const emptyBundle = await runCli(['verify', '', '--json']);
  assert.equal(emptyBundle.code, 1);
  assert.equal(json(emptyBundle).error.message, 'the bundle path is empty');
});

test('a snapshot names a missing memdir or database directory, and a database it does not hold, in its warnings (a mistyped root); both missing is UNKNOWN_AGENT', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const nowhere = join(a.root, 'no-such-root');
  const noMemdir = await runCli([
    'snapshot',
    '--agent',
    'ana',
    '--state-root',
    a.stateRoot,
    '--sqlite-root',
    a.sqliteRoot,
    '--memdir-root',
    nowhere,
    '--json',
  ]);
  const meta = ok(noMemdir, 'no memdir');
  assert.equal(meta.warnings.length, 1, JSON.stringify(meta.warnings));
  assert.match(meta.warnings[0], new RegExp(`^no memdir at ${join(nowhere, 'ana')}: `));
  assert.match(noMemdir.stderr, /^warning: no memdir at /m);

  const noDatabases = await runCli([
    'snapshot',
    '--agent',
    'ana',
    '--state-root',
    a.stateRoot,
    '--memdir-root',
    a.memdirRoot,
    '--sqlite-root',
    nowhere,
    '--json',
  ]);
  const dbMeta = ok(noDatabases, 'no database directory');
  assert.deepEqual(dbMeta.warnings.length, 1);
  assert.match(dbMeta.warnings[0], new RegExp(`^no database directory at ${join(nowhere, 'ana')}: `));

  const whole = ok(await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']), 'all there');
  assert.equal(whole.warnings, undefined, 'nothing to say');

  // a database beside the four is named: no snapshot holds it (stop 51)
  for (const n of ['extra.sqlite', 'old.db']) writeFileSync(join(a.sqliteDir, n), '');
  writeFileSync(join(a.sqliteDir, 'notes.txt'), 'not a database\n');
  mkdirSync(join(a.sqliteDir, 'leveldb.db')); // a directory: not a SQLite database
  const extra = ok(await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']), 'an extra database');
  assert.deepEqual(extra.warnings, [
    `the database directory ${a.sqliteDir} holds 2 databases no snapshot holds (extra.sqlite, old.db): a snapshot holds long_term.sqlite, vector.sqlite, concepts.sqlite, compactions.sqlite only`,
  ]);

  const neither = await runCli([
    'snapshot',
    '--agent',
    'ana',
    '--state-root',
    a.stateRoot,
    '--memdir-root',
    nowhere,
    '--sqlite-root',
    join(a.root, 'also-none'),
    '--json',
  ]);
  assert.equal(neither.code, 5);
  assert.equal(json(neither).error.code, 'UNKNOWN_AGENT');
  assert.match(json(neither).error.message, new RegExp(join(nowhere, 'ana')));

  // an agent directory that is there but empty (a mistyped id under the root): taken, and said (stop 58)
  mkdirSync(join(a.memdirRoot, 'anna'));
  mkdirSync(join(a.sqliteRoot, 'anna'));
  const empty = ok(await runCli(['snapshot', '--agent', 'anna', ...a.flags, '--json']), 'an empty agent');
  assert.deepEqual(empty.warnings, [
    `the agent's memdir ${join(a.memdirRoot, 'anna')} is empty, and so is ${join(a.sqliteRoot, 'anna')}: this snapshot holds no memory files and no databases (is the agent id right?)`,
  ]);
});

test('the library refuses an empty state, memdir or SQLite root (INVALID_INPUT), as the config file does', () => {
  assert.throws(() => new LocalSnapshotter({ stateRoot: '' }), InvalidInputError);
  assert.throws(
    () => new LocalSnapshotter({ stateRoot: '/tmp/x', memdirRoot: '' }),
    /memdirRoot must be a non-empty path/,
  );
  assert.throws(() => new LocalSnapshotter({ stateRoot: '/tmp/x', sqliteRoot: '' }), InvalidInputError);
});
