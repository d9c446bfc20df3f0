// What `list` says about pins and about what each snapshot cost its store (stop 44), through the CLI
// (`main(argv)` in the test process: what a command prints and its exit status are what is tested) and
// the real daemon. A pin's note (`pin --note`) is shown by the text list (a PIN NOTE column, cut to 40
// characters, control characters escaped) and carried whole by `list --json` (`pin_note`), in either
// store; a note with control characters is refused. A repository snapshot whose listing entry was
// rebuilt from its manifest (import and migrate re-list a stored snapshot whose entry a kill lost) has
// no `added_bytes`: it is reported as not known — `null` in JSON, `?` in the table, left out of the
// fleet's `bytes_stored` and counted in `added_unknown` — never as the snapshot's whole size.

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatSnapshot } from '../src/cli/format.js';
import type { SnapshotMeta } from '../src/index.js';
import { overviewOf } from '../src/snapshotter/fleet.js';
import { REPO, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { serveBuilt } from './helpers/serve.js';

const SMALL = { files: 2, commits: 2, memories: 10, embeddings: 4, concepts: 4, compactions: 2 };
// the suite's default store is bundles (test/helpers/env.ts)
const REPOSITORY = { NEXO_MEMORY_STORE_FORMAT: 'repository' };

interface Listed {
  id: string;
  pinned: boolean;
  pin_note?: string;
  added_bytes?: number | null;
  bundle_size_bytes: number;
}

/** `list` as text and as JSON. */
async function list(flags: string[], env: NodeJS.ProcessEnv) {
  const text = await runCli(['list', '--agent', 'ana', ...flags], { env });
  assert.equal(text.code, 0, text.stderr);
  const json = await runCli(['list', '--agent', 'ana', ...flags, '--json'], { env });
  assert.equal(json.code, 0, json.stderr);
  return { text: text.stdout, metas: JSON.parse(json.stdout) as Listed[] };
}

/** The text table's row of snapshot `id`, split into its columns (two spaces or more apart). */
function row(text: string, id: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(id));
  assert.ok(line, `a row for ${id} in:\n${text}`);
  return line.split(/ {2,}/);
}

for (const store of ['repository', 'bundles'] as const) {
  test(`list shows a pin's note (${store}): cut to 40 characters in the table, whole in --json; one with control characters is refused, and one stored with them is shown escaped`, async (t) => {
    const env = { NEXO_MEMORY_STORE_FORMAT: store };
    const a = sampleAgent(t, 'ana', SMALL);
    const ids: string[] = [];
    for (const label of ['one', 'two', 'three']) {
      const s = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--label', label, '--json'], {
        env,
      });
      assert.equal(s.code, 0, s.stderr);
      ids.push((JSON.parse(s.stdout) as { id: string; bundle_path: string }).id);
    }
    const [one, two, three] = ids as [string, string, string];
    const root = ['--state-root', a.stateRoot];
    const long = 'before the migration of the fleet to the new cluster (ticket 4711)';
    const pin = (id: string, note?: string) =>
      runCli(
        [
          'pin',
          '--agent',
          'ana',
          '--id',
          id,
          ...(note !== undefined ? ['--note', note] : []),
          ...root,
          '--json',
        ],
        {
          env,
        },
      );

    const pinned = await pin(one, long);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal((JSON.parse(pinned.stdout) as Listed).pin_note, long, "pin's answer carries the note");
    // a note is shown as a label is: control characters are refused, as in a label
    const evil = await pin(two, 'ok\u001b[2Jgone');
    assert.equal(evil.code, 1);
    assert.match(evil.stderr, /invalid note: must not contain control characters \(U\+001B;/);
    const plain = await pin(two);
    assert.equal(plain.code, 0, plain.stderr);

    let { text, metas } = await list(root, env);
    const byId = (id: string) => metas.find((m) => m.id === id)!;
    assert.deepEqual(
      [
        byId(one).pin_note,
        byId(two).pinned,
        'pin_note' in byId(two),
        byId(three).pinned,
        'pin_note' in byId(three),
      ],
      [long, true, false, false, false],
      '--json: the note whole, only where there is one',
    );
    assert.match(text.split('\n')[0]!, /LABEL +PIN NOTE$/);
    const cut = `${long.slice(0, 39)}…`;
    assert.deepEqual(row(text, one).slice(4), ['pinned', 'cli', 'one', cut]);
    assert.deepEqual(row(text, two).slice(-2), ['two', '-'], 'pinned without a note');
    assert.deepEqual(row(text, three).slice(-2), ['three', '-']);

    // a note written before notes were checked (or by another program) holds an escape sequence: the
    // table shows it escaped, never raw; --json has it as stored
    const stored = { pinned_at_ms: Date.now(), note: 'old\u001b[31mred\u202eX\nnext\tline' };
    const pinFile =
      store === 'repository'
        ? join(a.stateRoot, 'repository', 'pins', two)
        : join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana', `${two}.tar.zst.pin`);
    readFileSync(pinFile); // it is there: the pin of `two`
    writeFileSync(pinFile, `${JSON.stringify(stored)}\n`);
    ({ text, metas } = await list(root, env));
    assert.equal(byId(two).pin_note, stored.note);
    assert.ok(!/[\u001b\u202e\t]/.test(text), 'no control character printed raw');
    assert.equal(text.split('\n').length, 5, 'the note kept on its row: a header, three rows, the end');
    assert.equal(row(text, two).at(-1), 'old\\x1b[31mred\\u202eX\\nnext\\tline');

    // without notes the table keeps its columns
    for (const id of [one, two]) {
      const u = await runCli(['unpin', '--agent', 'ana', '--id', id, ...root], { env });
      assert.equal(u.code, 0, u.stderr);
    }
    ({ text } = await list(root, env));
    assert.match(text.split('\n')[0]!, / LABEL$/);
  });
}

test('a repository snapshot whose listing entry was rebuilt: added_bytes null in list --json and the HTTP list, ? in the table, left out of the fleet bytes (not its whole size)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const first = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json'], { env: REPOSITORY });
  assert.equal(first.code, 0, first.stderr);
  const snap = JSON.parse(first.stdout) as Listed;
  const bundle = join(a.root, 'ana.tar.zst');
  const exported = await runCli(
    ['export', '--agent', 'ana', '--id', snap.id, '--to', bundle, '--no-redact', '--state-root', a.stateRoot],
    { env: REPOSITORY },
  );
  assert.equal(exported.code, 0, exported.stderr);

  // another state root stores the bundle (with its id), then takes a snapshot of its own
  const state = join(tempDir(t), 'state');
  const flags = ['--state-root', state, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];
  const importArgs = ['import', '--from', bundle, '--agent', 'ana', '--store-only', ...flags, '--json'];
  const stored = await runCli(importArgs, { env: REPOSITORY });
  assert.equal(stored.code, 0, stored.stderr);
  const storedMeta = (JSON.parse(stored.stdout) as { snapshot: Listed; stored: string }).snapshot;
  assert.equal(storedMeta.id, snap.id);
  assert.ok(typeof storedMeta.added_bytes === 'number' && storedMeta.added_bytes > 0);
  const second = await runCli(['snapshot', '--agent', 'ana', ...flags, '--json'], { env: REPOSITORY });
  assert.equal(second.code, 0, second.stderr);
  const newest = JSON.parse(second.stdout) as Listed;
  assert.equal(typeof newest.added_bytes, 'number');

  // a kill lost the stored snapshot's listing entry; importing the bundle again lists it from its manifest
  rmSync(join(state, 'repository', 'listing', snap.id));
  const again = await runCli(importArgs, { env: REPOSITORY });
  assert.equal(again.code, 0, again.stderr);
  const relisted = JSON.parse(again.stdout) as { snapshot: Listed; stored: string };
  assert.equal(relisted.stored, 'already_present');
  assert.equal(relisted.snapshot.added_bytes, null, "import's answer: not known");
  const entry = readFileSync(join(state, 'repository', 'listing', snap.id), 'utf8');
  assert.ok(!entry.includes('added_bytes'), 'the entry holds no number it does not know (nor a null)');

  const { text, metas } = await list(['--state-root', state], REPOSITORY);
  const rebuilt = metas.find((m) => m.id === snap.id)!;
  assert.equal(rebuilt.added_bytes, null, '--json: null, not absent and not the size');
  assert.equal(metas.find((m) => m.id === newest.id)!.added_bytes, newest.added_bytes);
  assert.equal(row(text, snap.id)[3], '?', 'ADDED is ? in the table');

  const d = await serveBuilt(t, flags, REPOSITORY);
  const listed = (await (await fetch(`${d.url}/v1/agents/ana/snapshots`)).json()) as Listed[];
  assert.equal(listed.find((m) => m.id === snap.id)!.added_bytes, null);
  const fleet = (await (await fetch(`${d.url}/v1/fleet`)).json()) as {
    agents: Array<{
      agent_id: string;
      bytes_stored: number;
      added_unknown: number;
      bytes_added_last: number | null;
    }>;
  };
  const ana = fleet.agents.find((x) => x.agent_id === 'ana')!;
  assert.equal(ana.bytes_stored, newest.added_bytes, 'only what is known: not the rebuilt snapshot size');
  assert.equal(ana.added_unknown, 1);
  assert.equal(ana.bytes_added_last, newest.added_bytes);
  d.child.kill('SIGTERM');
});

test("the fleet's fields are those docs/daemon.md names: counts always (added_unknown 0 included), the newest snapshot's only when there is one", () => {
  const doc = readFileSync(join(REPO, 'docs', 'daemon.md'), 'utf8');
  const row = doc.split('\n').find((l) => l.startsWith('| `GET /v1/fleet'))!;
  const inner = /agents: \[\{(.*?), alerts: \[/.exec(row)![1]!.split(', ');
  const required = inner.filter((f) => !f.endsWith('?'));
  const optional = inner.filter((f) => f.endsWith('?')).map((f) => f.slice(0, -1));
  const sorted = (xs: Iterable<string>) => [...xs].sort();
  // an agent of the schedule with no snapshot yet: every count, 0; nothing about a newest snapshot
  const none = overviewOf('ana', 'default', []);
  assert.deepEqual(sorted(Object.keys(none)), sorted(required));
  assert.equal(none.added_unknown, 0);
  const meta: SnapshotMeta = {
    id: '0190c3a2-0000-7000-8000-000000000001',
    agent_id: 'ana',
    tenant: 'default',
    created_at_ms: 1_760_000_000_000,
    bundle_path: '/x',
    bundle_size_bytes: 10,
    bundle_sha256: '0'.repeat(64),
    schema_versions: { long_term: 1, vector: 1, concepts: 1, compactions: 1, manifest: 2 },
    encrypted: false,
    redactions_applied: false,
    added_bytes: 10,
  };
  const one = overviewOf('ana', 'default', [meta]);
  const extra = Object.keys(one).filter((k) => !required.includes(k));
  assert.deepEqual(sorted(extra), ['bytes_added_last', 'last_snapshot_at_ms', 'last_snapshot_id']);
  for (const k of extra) assert.ok(optional.includes(k), `docs/daemon.md marks ${k} optional`);
  assert.equal(one.added_unknown, 0, 'present when 0, like every count');
});

test('the human snapshot output prints added_bytes as list gives them, in either store; ? when not known (stop 46)', async (t) => {
  for (const store of ['bundles', 'repository'] as const) {
    const a = sampleAgent(t, 'ana', SMALL, { store });
    const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
    const listed = (await a.snapshotter.list('ana'))[0]!;
    assert.equal(typeof listed.added_bytes, 'number', store);
    assert.equal(meta.added_bytes, listed.added_bytes, `${store}: the snapshot's own added_bytes is list's`);
    assert.match(
      formatSnapshot(meta),
      new RegExp(`^added_bytes: +${listed.added_bytes} \\(`, 'm'),
      `${store}: ${formatSnapshot(meta)}`,
    );
  }
  const unknown = { ...(await sampleAgent(t, 'bob', SMALL).snapshotter.snapshot({ agentId: 'bob' })) };
  unknown.added_bytes = null;
  assert.match(formatSnapshot(unknown), /^added_bytes: +\?$/m);
});
