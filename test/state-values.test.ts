// State values exactly as the agent's files hold them: a number JSON.parse would round (a cursor beyond
// 2^53, a decimal with more digits than a double keeps, -0, 1e400) comes back from a snapshot, a restore,
// a diff and a restore journal as its text (format/json-number.ts); a state value no reader would take
// back (more than 64 MiB of JSON text) is refused by the snapshot instead of written.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { keepingNumbers, parseStrictJson } from '../src/format/json.js';
import { jsonText, keepsItsValue } from '../src/format/json-number.js';
import { JsonFileStateProvider, JsonNumber, LocalSnapshotter } from '../src/index.js';
import { sampleAgent } from './helpers/env.js';

const SMALL = { files: 2, commits: 1, memories: 5, embeddings: 2, concepts: 2, compactions: 1 };

/** The numbers that matter, as an agent's extractor might write them. */
const EXACT = `{
  "cursor": 1234567890123456789,
  "nanos": -9007199254740993,
  "big": 1e400,
  "precise": 0.1000000000000000055511151231257827,
  "zero": -0,
  "plain": [1, 1.5, 100, 2.5e-3],
  "nested": { "id": 18446744073709551615 }
}
`;

/** The number tokens of a JSON text, in order (strings left out). */
const numbersIn = (text: string): string[] =>
  [...text.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)].map(
    (m) => m[0],
  );

test('keepsItsValue: which JSON numbers JSON.parse and JSON.stringify give back as the same value', () => {
  for (const kept of [
    '0',
    '1',
    '-1',
    '1.0',
    '1e2',
    '1.5',
    '0.1',
    '123456789012345',
    '9007199254740991',
    '2.5e-3',
    '1E+2',
  ])
    assert.equal(keepsItsValue(kept), true, kept);
  for (const changed of [
    '9007199254740993',
    '1234567890123456789',
    '12345678901234567890123',
    '0.1000000000000000055511151231257827',
    '-0',
    '-0.0',
    '1e400',
    '-1e400',
    '1.00000000000000000001',
    // a long run of zeros before a digit (checked in linear time: a regex there backtracked quadratically)
    `1.${'0'.repeat(100_000)}1`,
  ])
    assert.equal(keepsItsValue(changed), false, changed);
});

test('a state text with such numbers parses to JsonNumbers and is written back with the same numbers; without them, JSON.parse as before', () => {
  const value = parseStrictJson(Buffer.from(EXACT), { exactNumbers: true }) as Record<string, unknown>;
  assert.ok(value.cursor instanceof JsonNumber);
  assert.equal((value.cursor as JsonNumber).text, '1234567890123456789');
  assert.equal(((value.nested as Record<string, unknown>).id as JsonNumber).text, '18446744073709551615');
  assert.deepEqual(value.plain, [1, 1.5, 100, 2.5e-3]);
  assert.deepEqual(
    numbersIn(jsonText(value, 2)),
    numbersIn(EXACT).map((n) => (n === '2.5e-3' ? '0.0025' : n)),
  );
  // shown to a client (JSON.stringify): the number's text as a string
  assert.equal(JSON.stringify({ c: value.cursor }), '{"c":"1234567890123456789"}');
  // a string that looks like the markers is a string
  const tricky = '{"a": "nexo-number-0:0", "b": 9007199254740993}';
  assert.deepEqual(JSON.parse(jsonText(keepingNumbers(tricky, JSON.parse(tricky)))), {
    a: 'nexo-number-0:0',
    b: 9007199254740992,
  });
  assert.equal(
    jsonText(keepingNumbers(tricky, JSON.parse(tricky))),
    '{"a":"nexo-number-0:0","b":9007199254740993}',
  );
  const plain = '{"a": [1, 2.5], "b": "x"}';
  const parsed = JSON.parse(plain);
  assert.equal(keepingNumbers(plain, parsed), parsed, 'no number to keep: the same value');
});

for (const store of ['repository', 'bundles'] as const) {
  test(`${store}: a state value's numbers survive snapshot, diff and restore exactly`, async (t) => {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    const file = new JsonFileStateProvider(a.snapshotter.resolver).path('extract_cursor', 'ana', 'default');
    writeFileSync(file, EXACT);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana', label: 'exact' });
    // the cursor moves by one: a change, though both are the same double
    writeFileSync(file, EXACT.replace('1234567890123456789', '1234567890123456788'));
    const d = await a.snapshotter.diff({ agentId: 'ana', a: snap.id, b: 'live', showSecrets: true });
    assert.equal(d.state_summary.extract_cursor_changed, true);
    writeFileSync(file, '{"cursor": 5}\n');
    const r = await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false });
    assert.ok(r.components.some((c) => c.component === 'state:extract_cursor'));
    const restored = readFileSync(file, 'utf8');
    assert.deepEqual(
      numbersIn(restored),
      numbersIn(EXACT).map((n) => (n === '2.5e-3' ? '0.0025' : n)),
      restored,
    );
    const again = await a.snapshotter.diff({ agentId: 'ana', a: snap.id, b: 'live' });
    assert.equal(again.state_summary.extract_cursor_changed, false);
  });
}

test('a state value whose JSON text would exceed 64 MiB is refused (STATE) by the snapshot, which writes nothing', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const file = new JsonFileStateProvider(a.snapshotter.resolver).path('extract_cursor', 'ana', 'default');
  // 4.4 MB of file, ~77 MB once written with the format's two-space indent: 2,200,000 numbers, each on a
  // line of its own 15 levels deep (32 spaces before it; a flat array of 30 MB took ~5 s more to parse)
  const depth = 15;
  writeFileSync(file, `${'{"a":'.repeat(depth)}[${'1,'.repeat(2_199_999)}1]${'}'.repeat(depth)}`);
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'STATE');
    assert.match(
      err.message,
      /state value extract_cursor cannot be stored in a bundle: its JSON text is \d+ bytes/,
    );
    return true;
  });
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  assert.deepEqual(existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.tar.zst')) : [], []);
  assert.ok(a.snapshotter instanceof LocalSnapshotter);
});

test('a live state file that is not JSON refuses the restore, the agent unchanged, and says how to go on; moved aside, the restore runs (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const file = new JsonFileStateProvider(a.snapshotter.resolver).path('extract_cursor', 'ana', 'default');
  writeFileSync(file, '{"cursor": 7}\n');
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(file, '{"cursor": 12'); // truncated by a crash
  for (const autoPreSnapshot of [true, false]) {
    await assert.rejects(
      a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot }),
      (err: Error & { code?: string }) => {
        assert.ok(['STATE', 'RESTORE_REFUSED'].includes(err.code!), err.message);
        assert.match(err.message, /extract_cursor\.json is not valid JSON/);
        assert.match(err.message, /move the file aside, keeping it, and restore again/);
        return true;
      },
    );
    assert.equal(readFileSync(file, 'utf8'), '{"cursor": 12', 'the live file is unchanged');
  }
  renameSync(file, `${file}.broken`);
  await a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id });
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { cursor: 7 });
});

test('a redacted snapshot whose state value grows past 64 MiB with its placeholders is refused (REDACTION), nothing written; unredacted it is taken (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const file = new JsonFileStateProvider(a.snapshotter.resolver).path('extract_cursor', 'ana', 'default');
  // 100,000 URL credentials (each password a 1-character secret, replaced by a 26-character placeholder)
  // in a value just under the limit
  const creds = 'a://u:p@ '.repeat(100_000);
  writeFileSync(file, JSON.stringify({ s: 'x'.repeat(67_108_864 - creds.length - 100) + creds }));
  await assert.rejects(
    a.snapshotter.snapshot({ agentId: 'ana', redact: true }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'REDACTION', err.message);
      assert.match(err.message, /grows to \d+ bytes once its secrets are replaced by placeholders/);
      return true;
    },
  );
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  assert.deepEqual(existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.tar.zst')) : [], []);
  const plain = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal((await a.snapshotter.verify(plain.bundle_path)).status, 'verified');
});

test('a live state value nested deeper than a state value may be refuses the restore as STATE with the way out, not an untyped stack overflow (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'bundles' });
  const file = new JsonFileStateProvider(a.snapshotter.resolver).path('dream_run', 'ana', 'default');
  writeFileSync(file, '{"at": 1}');
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const deep = `${'['.repeat(20_000)}1e400${']'.repeat(20_000)}`;
  writeFileSync(file, deep);
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', snapshot: snap.id, autoPreSnapshot: false }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STATE', err.message);
      assert.match(err.message, /cannot be read back: nesting deeper than 64 levels/);
      assert.match(err.message, /move the file aside, keeping it, and restore again/);
      return true;
    },
  );
  assert.equal(readFileSync(file, 'utf8'), deep, 'unchanged');
  // a snapshot refuses it as it always did (not "not valid JSON")
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), /nest(ed|ing) deeper than 64/);
});
