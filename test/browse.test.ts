// Reading memory as of a snapshot (ls, cat, find) from both stores (repository and bundles): a file as it
// was after it changed live, a table's rows as they were, find's first-seen / first-gone over four
// snapshots (a secret not reported unless asked), hostile paths refused, and the HTTP routes, the MCP
// tools and the CLI returning what the library returns.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import Database from 'better-sqlite3';
import { buildSampleAgent, gitEnv, type SampleAgentPaths } from '../scripts/sample-agent.js';
import { InvalidInputError, LocalSnapshotter, NotFoundError, type SnapshotMeta } from '../src/index.js';
import { createAgentToolServer } from '../src/mcp/server.js';
import { createApiServer } from '../src/server/http.js';
import { apiRoutes } from '../src/server/routes.js';
import { OperationTracker } from '../src/server/tracker.js';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import { runCli, sampleAgent } from './helpers/env.js';

const STORES = ['repository', 'bundles'] as const;
type Store = (typeof STORES)[number];
const WHALE = 'blue whale sighted off the coast';
const SECRET = 'sk-abcdefghijklmnopqrstuvwx12345';
const HOSTILE = '<img src=x onerror=alert(1)> ..%2f..%2fetc.md';

interface Fixture extends SampleAgentPaths {
  s: LocalSnapshotter;
  flags: string[];
  snaps: SnapshotMeta[];
  memoryV1: string;
  memoryV2: string;
  rowsV1: Record<string, unknown>[];
  whaleRowId: number;
}

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const commit = (dir: string, msg: string) => {
  execFileSync('git', ['add', '-A'], { cwd: dir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', msg], { cwd: dir, env: gitEnv });
};

/** Four snapshots: s1 before, s2 and s3 with the whale (file, topic file, row) and a secret, s4 after it is gone. */
async function fixture(store: Store): Promise<Fixture> {
  const root = mkdtempSync(join(tmpdir(), 'nexo-browse-'));
  roots.push(root);
  const p = buildSampleAgent(root, 'ana', {
    files: 4,
    commits: 2,
    memories: 40,
    embeddings: 10,
    concepts: 5,
    compactions: 4,
  });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store,
  });
  const memory = join(p.memdir, 'MEMORY.md');
  const lt = join(p.sqliteDir, 'long_term.sqlite');
  const memoryV1 = readFileSync(memory, 'utf8');
  const db = new Database(lt);
  // `rowid` is an alias of `id` here: cat shows it first, under its own name
  const rowsV1 = (db.prepare('SELECT * FROM memories ORDER BY rowid').all() as Record<string, unknown>[]).map(
    (r) => ({ rowid: r.id, ...r }),
  );
  db.close();
  // a hostile name is data: listed and read by its name, never a path on disk
  writeFileSync(join(p.memdir, HOSTILE), '<script>alert(1)</script>\n');
  commit(p.memdir, 'memory: odd name');
  const snaps = [await s.snapshot({ agentId: 'ana', label: 's1' })];
  const memoryV2 = `${memoryV1}- ${WHALE}\n- api key ${SECRET}\n`;
  writeFileSync(memory, memoryV2);
  writeFileSync(join(p.memdir, 'whale.md'), `# Whales\n\nA ${WHALE}.\n`);
  commit(p.memdir, 'memory: whales');
  const db2 = new Database(lt);
  const whaleRowId = Number(
    db2
      .prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)')
      .run(5, 'fact', `Today: ${WHALE}.`, 0.9).lastInsertRowid,
  );
  db2.prepare('DELETE FROM memories WHERE id = 3').run();
  db2.close();
  snaps.push(await s.snapshot({ agentId: 'ana', label: 's2' }));
  const db3 = new Database(lt);
  db3.prepare("UPDATE memories SET content = 'changed' WHERE id = 5").run();
  db3.close();
  snaps.push(await s.snapshot({ agentId: 'ana', label: 's3' }));
  writeFileSync(memory, memoryV1);
  unlinkSync(join(p.memdir, 'whale.md'));
  commit(p.memdir, 'memory: no whales');
  const db4 = new Database(lt);
  db4.prepare('DELETE FROM memories WHERE id = ?').run(whaleRowId);
  db4.close();
  snaps.push(await s.snapshot({ agentId: 'ana', label: 's4' }));
  return {
    ...p,
    s,
    flags: ['--state-root', p.stateRoot, '--memdir-root', p.memdirRoot, '--sqlite-root', p.sqliteRoot],
    snaps,
    memoryV1,
    memoryV2,
    rowsV1,
    whaleRowId,
  };
}

const fixtures = new Map<Store, Fixture>();
before(async () => {
  for (const store of STORES) fixtures.set(store, await fixture(store));
});

for (const store of STORES) {
  test(`${store}: ls and cat show the memdir as it was in an older snapshot after it changed live`, async () => {
    const f = fixtures.get(store)!;
    const [s1, s2] = f.snaps as [SnapshotMeta, SnapshotMeta];
    // the snapshots are in the store this test is about
    assert.equal(f.snaps[0]!.bundle_path.includes('#'), store === 'repository');
    const root = await f.s.ls('ana', undefined, s1.id);
    assert.deepEqual(
      root.entries.map((e) => [e.path, e.type]),
      [
        ['memdir', 'dir'],
        ['sqlite', 'dir'],
        ['state', 'dir'],
      ],
    );
    assert.equal(root.snapshot_id, s1.id);
    const old = await f.s.ls('ana', undefined, s1.id.slice(0, 13), 'memdir/');
    const names = old.entries.map((e) => e.name);
    assert.ok(names.includes('MEMORY.md') && !names.includes('whale.md'), names.join(','));
    assert.equal(old.entries.find((e) => e.name === 'MEMORY.md')!.size_bytes, Buffer.byteLength(f.memoryV1));
    const now = await f.s.ls('ana', undefined, s2.id, 'memdir');
    assert.ok(now.entries.some((e) => e.name === 'whale.md' && e.type === 'file'));
    // the live file changed twice since s1; s1 still shows the first version, s2 the second (redacted)
    const c1 = await f.s.cat('ana', undefined, s1.id, 'memdir/MEMORY.md');
    assert.equal(c1.kind, 'file');
    assert.equal(c1.kind === 'file' && c1.content, f.memoryV1);
    const c2 = await f.s.cat('ana', undefined, s2.id, 'memdir/MEMORY.md');
    assert.ok(c2.kind === 'file' && c2.content!.includes(WHALE));
    assert.ok(c2.kind === 'file' && !c2.content!.includes(SECRET), 'secrets are redacted by default');
    assert.equal(c2.kind === 'file' && c2.output, 'redacted');
    const shown = await f.s.cat('ana', undefined, s2.id, 'memdir/MEMORY.md', { showSecrets: true });
    assert.equal(shown.kind === 'file' && shown.content, f.memoryV2);
    // paged by bytes
    const page = await f.s.cat('ana', undefined, s1.id, 'memdir/MEMORY.md', { offset: 2, limit: 5 });
    assert.equal(page.kind === 'file' && page.content, f.memoryV1.slice(2, 7));
    assert.equal(page.kind === 'file' && page.truncated, true);
    const state = await f.s.ls('ana', undefined, s1.id, 'state');
    assert.ok(state.entries.length > 0);
    for (const e of state.entries) {
      const v = await f.s.cat('ana', undefined, s1.id, e.path);
      assert.ok(v.kind === 'file' && JSON.parse(v.content!) !== undefined, e.path);
    }
    const odd = old.entries.find((e) => e.name === HOSTILE)!;
    assert.equal(odd.path, `memdir/${HOSTILE}`);
    const oddCat = await f.s.cat('ana', undefined, s1.id, odd.path);
    assert.equal(oddCat.kind === 'file' && oddCat.content, '<script>alert(1)</script>\n');
    // subdirectories
    const dirs = old.entries.filter((e) => e.type === 'dir');
    assert.ok(dirs.length > 0);
    const sub = await f.s.ls('ana', undefined, s1.id, dirs[0]!.path);
    assert.ok(sub.entries.length > 0 && sub.entries.every((e) => e.path.startsWith(`${dirs[0]!.path}/`)));
  });

  test(`${store}: ls lists databases and tables with row counts; cat returns a table's rows as they were`, async () => {
    const f = fixtures.get(store)!;
    const [s1, s2] = f.snaps as [SnapshotMeta, SnapshotMeta];
    const dbs = await f.s.ls('ana', undefined, s1.id, 'sqlite');
    // sorted by name, as every ls (a page is a stretch of that order)
    assert.deepEqual(
      dbs.entries.map((e) => e.name),
      ['compactions', 'concepts', 'long_term', 'vector'],
    );
    assert.equal(dbs.total, 4);
    assert.equal(dbs.truncated, false);
    const tables = await f.s.ls('ana', undefined, s1.id, 'sqlite/long_term');
    assert.equal(tables.entries.find((e) => e.name === 'memories')!.rows, 40);
    const tables2 = await f.s.ls('ana', undefined, s2.id, 'sqlite/long_term');
    assert.equal(tables2.entries.find((e) => e.name === 'memories')!.rows, 40); // +1 −1
    const rows = await f.s.cat('ana', undefined, s1.id, 'sqlite/long_term/memories', { offset: 2, limit: 5 });
    assert.equal(rows.kind, 'table');
    if (rows.kind !== 'table') return;
    assert.equal(rows.total_rows, 40);
    assert.equal(rows.truncated, true);
    assert.deepEqual(rows.columns, ['rowid', 'id', 'created_at', 'kind', 'content', 'importance']);
    assert.deepEqual(rows.rows, f.rowsV1.slice(2, 7)); // row 3 deleted live since; s1 still has it
    const vec = await f.s.cat('ana', undefined, s1.id, 'sqlite/vector/embeddings', { limit: 1 });
    assert.ok(vec.kind === 'table');
    const blob =
      vec.kind === 'table' ? (vec.rows[0]!.vec as { blob_base64: string; size_bytes: number }) : undefined;
    assert.equal(Buffer.from(blob!.blob_base64, 'base64').length, blob!.size_bytes);
    const whole = await f.s.cat('ana', undefined, s1.id, 'sqlite/long_term', { limit: 1 });
    assert.ok(
      whole.kind === 'database' && whole.tables.some((t) => t.table === 'memories' && t.rows.length === 1),
    );
  });

  test(`${store}: find reports where the text is, the first snapshot with it and the first without it`, async () => {
    const f = fixtures.get(store)!;
    const [s1, s2, s3, s4] = f.snaps as [SnapshotMeta, SnapshotMeta, SnapshotMeta, SnapshotMeta];
    const r = await f.s.find({ agentId: 'ana', text: 'blue whale' });
    assert.deepEqual(
      r.snapshots.map((x) => [x.snapshot_id, x.found]),
      [
        [s1.id, false],
        [s2.id, true],
        [s3.id, true],
        [s4.id, false],
      ],
    );
    assert.equal(r.first_seen!.snapshot_id, s2.id);
    assert.equal(r.first_gone!.snapshot_id, s4.id);
    assert.deepEqual(
      r.transitions.map((x) => [x.snapshot_id, x.change]),
      [
        [s2.id, 'appears'],
        [s4.id, 'gone'],
      ],
    );
    const where = r.snapshots[1]!.locations.map((l) =>
      l.kind === 'row' ? `${l.db}/${l.table}/${l.rowid}/${l.column}` : l.path,
    );
    assert.deepEqual(
      where.sort(),
      ['long_term/memories/41/content', 'memdir/MEMORY.md', 'memdir/whale.md'].sort(),
    );
    assert.equal(f.whaleRowId, 41);
    assert.equal(r.snapshots[1]!.count, 3);
    // each distinct unit is searched once: s3 shares the memdir files with s2
    const asStored = await f.s.find({ agentId: 'ana', text: 'blue whale', showSecrets: true });
    assert.ok(asStored.stats.units_reused! > 0);
    // what was read depends on the stored bytes, secrets included: redacted output does not say it
    assert.deepEqual(Object.keys(r.stats).sort(), ['manifests_cached', 'snapshots']);
    // since: only s3 and s4 → appears in s3, gone in s4
    const later = await f.s.find({ agentId: 'ana', text: 'blue whale', sinceMs: s3.created_at_ms });
    assert.deepEqual(
      later.snapshots.map((x) => x.snapshot_id),
      [s3.id, s4.id],
    );
    assert.equal(later.first_seen!.snapshot_id, s3.id);
    // a regex
    const re = await f.s.find({ agentId: 'ana', regex: 'blue\\s+wh[a-z]+e' });
    assert.deepEqual(
      re.snapshots.map((x) => x.found),
      [false, true, true, false],
    );
    // a secret is not reported unless asked for
    const hidden = await f.s.find({ agentId: 'ana', text: SECRET });
    assert.equal(hidden.first_seen, undefined);
    assert.ok(!JSON.stringify(hidden.snapshots).includes(SECRET));
    // nor whether it is there: a right and a wrong guess of it get the same answer (what was read, which
    // depends on the stored bytes, is not in redacted output)
    const wrong = await f.s.find({ agentId: 'ana', text: `${SECRET.slice(0, -5)}99999` });
    assert.deepEqual({ ...hidden, query: {} }, { ...wrong, query: {} });
    const shown = await f.s.find({ agentId: 'ana', text: SECRET, showSecrets: true });
    assert.equal(shown.first_seen!.snapshot_id, s2.id);
    assert.equal(shown.first_gone!.snapshot_id, s4.id);
  });

  test(`${store}: hostile and unknown paths are refused with typed errors`, async () => {
    const f = fixtures.get(store)!;
    const id = f.snaps[0]!.id;
    for (const bad of [
      '../x',
      '/etc/passwd',
      'memdir/../../../etc/passwd',
      'memdir//MEMORY.md',
      'memdir/./x',
      'sqlite/../state',
      'C:\\x',
      'a\0b',
      'elsewhere/x',
    ])
      await assert.rejects(f.s.cat('ana', undefined, id, bad), InvalidInputError, bad);
    await assert.rejects(f.s.ls('ana', undefined, id, 'memdir/..'), InvalidInputError);
    await assert.rejects(f.s.ls('ana', undefined, id, 'sqlite/nope'), InvalidInputError);
    // NOT_FOUND, and the message names what the snapshot lacks (not "snapshot … not found": it exists)
    await assert.rejects(f.s.cat('ana', undefined, id, 'memdir/nope.md'), (e: Error) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.message, `snapshot ${id} has no memdir/nope.md`);
      return true;
    });
    await assert.rejects(f.s.ls('ana', undefined, id, 'memdir/nope'), /has no memdir\/nope$/);
    await assert.rejects(f.s.cat('ana', undefined, id, 'sqlite/long_term/nope'), (e: Error) => {
      assert.ok(e instanceof NotFoundError);
      assert.match(e.message, /^snapshot \S+ has no table "nope" at /);
      return true;
    });
    await assert.rejects(f.s.cat('ana', undefined, id, 'memdir'), InvalidInputError);
    await assert.rejects(
      f.s.ls('ana', undefined, '00000000-0000-7000-8000-000000000000'),
      (e: NotFoundError) => e.exitCode === 5,
    );
    await assert.rejects(f.s.find({ agentId: 'ana', regex: '(' }), /the regex does not compile/);
    await assert.rejects(
      f.s.find({ agentId: 'ana', text: 'a', regex: 'b' }),
      /exactly one of a text and a regex/,
    );
    // a regex that only a backtracking engine runs (exponential time on some input) is refused
    for (const slow of ['(a+)+\\1$', '(?<n>a+)+\\k<n>$', '(?=a+)+b'])
      await assert.rejects(f.s.find({ agentId: 'ana', regex: slow }), /cannot run in linear time/, slow);
    // a counted repetition of one character above V8's 16 is split, not refused; of a group it is
    // refused naming that bound, not lookaround
    const counted = await f.s.find({ agentId: 'ana', regex: 'blue.{17,30}coast' });
    assert.deepEqual(
      counted.snapshots.map((x) => x.found),
      [false, true, true, false],
    );
    await assert.rejects(
      f.s.find({ agentId: 'ana', regex: '(?:ab){17}' }),
      /may count at most 16 \(nested counts multiply/,
    );
    // one that backtracks exponentially on the memories' text ("(\\w+\\s?)+$" against words that
    // end in a full stop) is run by V8's linear engine once it backtracks too much: the search ends
    const redos = await f.s.find({ agentId: 'ana', regex: '(\\w+\\s?)+$' });
    assert.equal(redos.snapshots.length, 4);
  });
}

test('HTTP routes and MCP tools return what the library returns; bad paths are 400 and tool errors', async (t) => {
  const f = fixtures.get('repository')!;
  const [s1, s2] = f.snaps as [SnapshotMeta, SnapshotMeta];
  const tracker = new OperationTracker();
  const server = createApiServer({
    routes: apiRoutes({ snapshotter: f.s, tracker, allowRestore: false, startedAt: Date.now() }),
    tracker,
    token: 'browse-test-token-0123456789',
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/agents/ana`;
  const get = async (path: string, token = 'browse-test-token-0123456789') => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const q = encodeURIComponent;
  assert.deepEqual(
    (await get(`/snapshots/${s1.id}/ls?path=memdir`)).body,
    await f.s.ls('ana', undefined, s1.id, 'memdir'),
  );
  assert.deepEqual(
    (await get(`/snapshots/${s2.id}/cat?path=${q('memdir/MEMORY.md')}`)).body,
    await f.s.cat('ana', undefined, s2.id, 'memdir/MEMORY.md'),
  );
  assert.deepEqual(
    (await get(`/snapshots/${s1.id}/cat?path=${q('sqlite/long_term/memories')}&offset=3&limit=4`)).body,
    await f.s.cat('ana', undefined, s1.id, 'sqlite/long_term/memories', { offset: 3, limit: 4 }),
  );
  const viaHttp = (await get(`/find?text=${q('blue whale')}`)).body;
  const direct = await f.s.find({ agentId: 'ana', text: 'blue whale' });
  assert.deepEqual(viaHttp.snapshots, direct.snapshots);
  assert.deepEqual(viaHttp.first_gone, direct.first_gone);
  const bad = await get(`/snapshots/${s1.id}/cat?path=${q('../../etc/passwd')}`);
  assert.equal(bad.status, 400);
  assert.equal((bad.body.error as { code: string }).code, 'INVALID_INPUT');
  assert.equal((await get(`/snapshots/${s1.id}/cat?path=${q('memdir/nope.md')}`)).status, 404);
  assert.equal((await get(`/snapshots/${s1.id}/ls`, 'wrong-token-0123456789abc')).status, 401);
  assert.equal((await get(`/snapshots/${s1.id}/cat?path=memdir/MEMORY.md&show_secrets=true`)).status, 400);
  // the agent's own tools
  const mcp = createAgentToolServer({
    snapshotter: f.s,
    agentId: 'ana',
    tenant: 'default',
    redactDefault: false,
    tracker,
  });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await mcp.connect(st);
  const client = new Client({ name: 'browse-test', version: '1.0.0' });
  await client.connect(ct);
  t.after(() => client.close());
  const call = async (name: string, args: Record<string, unknown>) =>
    (await client.callTool({ name, arguments: args })) as {
      isError?: boolean;
      structuredContent?: unknown;
      content: { text?: string }[];
    };
  assert.deepEqual(
    (await call('memory_ls', { snapshot_id: s1.id, path: 'sqlite/long_term' })).structuredContent,
    await f.s.ls('ana', undefined, s1.id, 'sqlite/long_term'),
  );
  assert.deepEqual(
    (await call('memory_cat', { snapshot_id: s1.id, path: 'memdir/MEMORY.md' })).structuredContent,
    await f.s.cat('ana', undefined, s1.id, 'memdir/MEMORY.md'),
  );
  const found = (await call('memory_find', { text: 'blue whale' })).structuredContent as typeof direct;
  assert.deepEqual(found.snapshots, direct.snapshots);
  const refused = await call('memory_cat', { snapshot_id: s1.id, path: '../x' });
  assert.equal(refused.isError, true);
  assert.match(refused.content[0]!.text!, /INVALID_INPUT/);
  // an agent searching with a counted repetition: one character's above 16 runs, a group's is refused
  // for that reason (not "backreferences and lookahead")
  const counted = (await call('memory_find', { regex: 'blue.{17,30}coast' }))
    .structuredContent as typeof direct;
  assert.deepEqual(
    counted.snapshots.map((x) => x.found),
    direct.snapshots.map((x) => x.found),
  );
  const group = await call('memory_find', { regex: '(?:ab){17}' });
  assert.equal(group.isError, true);
  assert.match(
    group.content[0]!.text!,
    /a counted repetition of a group, or nested ones, may count at most 16/,
  );
  assert.doesNotMatch(group.content[0]!.text!, /backreferences|lookahead/);
});

test('CLI: ls, cat (table rows as JSON lines), find --json; exit 5 for an unknown snapshot, 1 for a bad path', async () => {
  const f = fixtures.get('bundles')!;
  const [s1, s2, , s4] = f.snaps as [SnapshotMeta, SnapshotMeta, SnapshotMeta, SnapshotMeta];
  const cat = await runCli([
    'cat',
    '--agent',
    'ana',
    ...f.flags,
    s1.id,
    'sqlite/long_term/memories',
    '--limit',
    '3',
  ]);
  assert.equal(cat.code, 0, cat.stderr);
  assert.deepEqual(
    cat.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    f.rowsV1.slice(0, 3),
  );
  const file = await runCli(['cat', '--agent', 'ana', ...f.flags, s1.id, 'memdir/MEMORY.md']);
  assert.equal(file.stdout, f.memoryV1);
  const ls = await runCli(['ls', '--agent', 'ana', ...f.flags, s2.id, 'memdir', '--json']);
  assert.deepEqual(JSON.parse(ls.stdout), await f.s.ls('ana', undefined, s2.id, 'memdir'));
  // --limit pages; the text output names the next page's --cursor on stderr, --json gives next_cursor
  const root = await f.s.ls('ana', undefined, s2.id, '');
  assert.deepEqual(
    root.entries.map((e) => e.name),
    ['memdir', 'sqlite', 'state'],
  );
  const firstPage = await runCli(['ls', '--agent', 'ana', ...f.flags, s2.id, '--limit', '2']);
  assert.equal(firstPage.code, 0, firstPage.stderr);
  assert.equal(firstPage.stdout.trim().split('\n').length, 2);
  const cursor = /^\(2 of 3 entries shown; the next page: --cursor ([A-Za-z0-9_-]+)\)$/m.exec(
    firstPage.stderr,
  )?.[1];
  assert.ok(cursor, firstPage.stderr);
  const rest = await runCli(['ls', '--agent', 'ana', ...f.flags, s2.id, '--cursor', cursor, '--json']);
  assert.equal(rest.code, 0, rest.stderr);
  assert.deepEqual(JSON.parse(rest.stdout).entries, root.entries.slice(2));
  assert.equal(JSON.parse(rest.stdout).truncated, false);
  const over = await runCli(['ls', '--agent', 'ana', ...f.flags, s2.id, '--limit', '1001', '--json']);
  assert.equal(over.code, 1);
  assert.equal(JSON.parse(over.stdout).error.code, 'INVALID_INPUT');
  const find = await runCli(['find', '--agent', 'ana', ...f.flags, 'blue whale', '--json']);
  assert.equal(find.code, 0, find.stderr);
  assert.equal(JSON.parse(find.stdout).first_gone.snapshot_id, s4.id);
  const human = await runCli(['find', '--agent', 'ana', ...f.flags, 'blue whale']);
  assert.match(human.stdout, new RegExp(`first seen.*${s2.id}`));
  const unknown = await runCli(['ls', '--agent', 'ana', ...f.flags, '00000000-0000-7000-8000-000000000000']);
  assert.equal(unknown.code, 5, unknown.stderr);
  const bad = await runCli(['cat', '--agent', 'ana', ...f.flags, s1.id, '../../etc/passwd', '--json']);
  assert.equal(bad.code, 1);
  assert.equal(JSON.parse(bad.stdout).error.code, 'INVALID_INPUT');
});

/** A small agent of its own (a file, a few rows) and its snapshotter, for a test that changes it. */
function smallAgent(prefix: string) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  roots.push(root);
  const p = buildSampleAgent(root, 'ana', {
    files: 1,
    commits: 1,
    memories: 2,
    embeddings: 1,
    concepts: 1,
    compactions: 1,
  });
  return {
    p,
    s: new LocalSnapshotter({ stateRoot: p.stateRoot, memdirRoot: p.memdirRoot, sqliteRoot: p.sqliteRoot }),
  };
}

/** The CLI's store flags of a sample agent. */
const flagsOf = (p: SampleAgentPaths) => [
  '--state-root',
  p.stateRoot,
  '--memdir-root',
  p.memdirRoot,
  '--sqlite-root',
  p.sqliteRoot,
];

test('CLI: ls prints each odd name as a shell word that cat takes back (newline, tab, quote, space, escape)', async () => {
  const { p, s } = smallAgent('nexo-browse-names-');
  const names = [
    'line\nbreak.md',
    "it's here.md",
    'tab\there.md',
    'esc\u001b[31m.md',
    'back\\slash "q".md',
    'café.md',
  ];
  for (const [i, n] of names.entries()) writeFileSync(join(p.memdir, n), `body ${i}\n`);
  commit(p.memdir, 'odd names');
  const flags = flagsOf(p);
  const snap = await s.snapshot({ agentId: 'ana' });
  const ls = await runCli(['ls', '--agent', 'ana', ...flags, snap.id, 'memdir']);
  assert.equal(ls.code, 0, ls.stderr);
  const lines = ls.stdout.trimEnd().split('\n');
  assert.equal(
    lines.length,
    names.length + 2,
    `one line per entry (MEMORY.md, a topic file, the odd names):\n${ls.stdout}`,
  );
  assert.ok(!/[\u0000-\u0008\u000b-\u001f]/.test(ls.stdout), 'no control character reaches the terminal');
  assert.ok(
    lines.some((l) => l.endsWith('  memdir/café.md')),
    'a plain name is printed as it is',
  );
  // each word, pasted into a shell command, names the file again
  ensureBuilt();
  for (const [i, n] of names.entries()) {
    const line = lines.find((l) => l.includes(n.includes('\n') ? 'line' : n.slice(0, 3)));
    assert.ok(line, `a line for ${JSON.stringify(n)}`);
    const shown = line.slice(23); // type (8), a space, size (12), two spaces, then the word
    const out = execFileSync(
      'bash',
      [
        '-c',
        `"$0" "$1" cat --agent ana ${flags.map((f) => `'${f}'`).join(' ')} ${snap.id} ${shown}`,
        process.execPath,
        BIN,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(out, `body ${i}\n`, `${shown}: cat gives the file back`);
  }
});

test("cat, redacted: a full-text index's shadow tables show no token, a blob holding a secret shows its placeholder", async () => {
  const { p, s } = smallAgent('nexo-browse-fts-');
  // assembled at run time: this file holds no secret-shaped literal
  const aws = `AKIA${'QWERTYUIOPASDFGH'}`;
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  db.exec('CREATE VIRTUAL TABLE mem_fts USING fts5(content); CREATE TABLE attachments (data BLOB)');
  db.prepare('INSERT INTO mem_fts (content) VALUES (?)').run(`aws key ${aws} for prod`);
  db.prepare('INSERT INTO attachments (data) VALUES (?)').run(
    Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from(`key=${aws}`), Buffer.from([0])]),
  );
  db.close();
  // a memory file that is not UTF-8 (Latin-1)
  writeFileSync(
    join(p.memdir, 'latin.md'),
    Buffer.concat([Buffer.from('caf\xe9 ', 'latin1'), Buffer.from(aws)]),
  );
  const snap = await s.snapshot({ agentId: 'ana' });
  const latin = await s.cat('ana', undefined, snap.id, 'memdir/latin.md');
  assert.ok(latin.kind === 'file' && latin.binary, 'not UTF-8');
  assert.equal(
    Buffer.from(latin.content_base64!, 'base64').toString('latin1'),
    'caf\xe9 [REDACTED:aws-access-key-id]',
    'the secret is replaced, every other byte is as stored',
  );
  const tables = await s.ls('ana', undefined, snap.id, 'sqlite/long_term');
  const shadows = tables.entries.map((e) => e.name).filter((n) => n.startsWith('mem_fts_'));
  assert.ok(shadows.includes('mem_fts_data') && shadows.includes('mem_fts_idx'), shadows.join(', '));
  const decoded = (v: unknown) =>
    JSON.stringify(v) +
    [...JSON.stringify(v).matchAll(/"blob_base64":"([^"]*)"/g)]
      .map((m) => Buffer.from(m[1]!, 'base64').toString('latin1'))
      .join('');
  for (const t of [...shadows, 'attachments']) {
    const r = await s.cat('ana', undefined, snap.id, `sqlite/long_term/${t}`);
    assert.ok(!decoded(r).toLowerCase().includes(aws.toLowerCase()), `${t} shows no token of the key`);
  }
  const data = await s.cat('ana', undefined, snap.id, 'sqlite/long_term/mem_fts_data');
  assert.ok(data.kind === 'table' && data.rows.some((r) => r.block === '[REDACTED:index-data]'));
  const att = await s.cat('ana', undefined, snap.id, 'sqlite/long_term/attachments');
  assert.ok(
    att.kind === 'table' && att.rows[0]!.data === '[REDACTED:aws-access-key-id]',
    JSON.stringify(att),
  );
  // as stored when asked
  const shown = await s.cat('ana', undefined, snap.id, 'sqlite/long_term/mem_fts_data', {
    showSecrets: true,
  });
  assert.ok(decoded(shown).toLowerCase().includes(aws.toLowerCase()));
});

test('ls lists a virtual table (its module, its shadow tables) and cat explains why it does not read it; an unknown module too', async () => {
  const { p, s } = smallAgent('nexo-browse-vtab-');
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  db.exec('CREATE VIRTUAL TABLE notes_fts USING fts5(body)');
  db.prepare('INSERT INTO notes_fts (body) VALUES (?)').run('the whale');
  // a virtual table whose module this SQLite does not have (written into the schema directly)
  db.unsafeMode(true);
  db.exec('PRAGMA writable_schema = ON');
  db.prepare("INSERT INTO sqlite_schema VALUES ('table', 'ghost', 'ghost', 0, ?)").run(
    'CREATE VIRTUAL TABLE ghost USING nosuch(a)',
  );
  db.close();
  const snap = await s.snapshot({ agentId: 'ana' });
  const ls = await s.ls('ana', undefined, snap.id, 'sqlite/long_term');
  const fts = ls.entries.find((e) => e.name === 'notes_fts');
  assert.deepEqual(fts, {
    name: 'notes_fts',
    path: 'sqlite/long_term/notes_fts',
    type: 'virtual_table',
    module: 'fts5',
    shadow_tables: [
      'notes_fts_config',
      'notes_fts_content',
      'notes_fts_data',
      'notes_fts_docsize',
      'notes_fts_idx',
    ],
  });
  assert.deepEqual(
    ls.entries.find((e) => e.name === 'ghost'),
    {
      name: 'ghost',
      path: 'sqlite/long_term/ghost',
      type: 'virtual_table',
      module: 'nosuch',
      shadow_tables: [],
    },
  );
  const names = ls.entries.map((e) => e.name);
  assert.deepEqual(names, [...names].sort(), 'sorted by name, tables and virtual tables together');
  assert.ok(names.includes('notes_fts_content') && names.includes('memories'));
  const one = await s.ls('ana', undefined, snap.id, 'sqlite/long_term/notes_fts');
  assert.deepEqual(one.entries, [fts]);
  await assert.rejects(s.cat('ana', undefined, snap.id, 'sqlite/long_term/notes_fts'), (err: Error) => {
    assert.equal((err as { code?: string }).code, 'INVALID_INPUT');
    assert.match(err.message, /virtual table \(fts5\).*notes_fts_content/);
    return true;
  });
  await assert.rejects(
    s.cat('ana', undefined, snap.id, 'sqlite/long_term/ghost'),
    /virtual table \(nosuch\)/,
  );
  // the whole database's cat reads its ordinary tables, the shadow tables among them
  const all = await s.cat('ana', undefined, snap.id, 'sqlite/long_term');
  assert.ok(all.kind === 'database' && all.tables.some((t) => t.table === 'notes_fts_content'));
  assert.ok(
    all.kind === 'database' && !all.tables.some((t) => t.table === 'notes_fts' || t.table === 'ghost'),
  );
});

test('a table with a VIRTUAL generated column (computed by each read, by an expression the database chose) is read without it: cat and find stay bounded', async () => {
  const { p, s } = smallAgent('nexo-browse-generated-');
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  db.exec(
    'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT, kept TEXT GENERATED ALWAYS AS (upper(text)) STORED)',
  );
  db.prepare('INSERT INTO notes (text) VALUES (?)').run(WHALE);
  // added afterwards, so that no write computes it
  db.exec(
    "ALTER TABLE notes ADD COLUMN bomb TEXT GENERATED ALWAYS AS (printf('%.*c', 600000000, 'x')) VIRTUAL",
  );
  db.close();
  const snap = await s.snapshot({ agentId: 'ana' });
  const r = await s.cat('ana', undefined, snap.id, 'sqlite/long_term/notes');
  assert.ok(r.kind === 'table', JSON.stringify(r).slice(0, 200));
  assert.deepEqual(r.columns, ['rowid', 'id', 'text', 'kept']);
  assert.equal(r.rows[0]!.text, WHALE);
  assert.equal(r.rows[0]!.kept, WHALE.toUpperCase(), 'a STORED generated column is in the file: shown');
  const found = await s.find({ agentId: 'ana', text: 'blue whale' });
  const at = found.snapshots.find((x) => x.snapshot_id === snap.id)!;
  assert.ok(
    at.locations.some((l) => l.kind === 'row' && l.table === 'notes' && l.column === 'text'),
    JSON.stringify(at.locations),
  );
});

test('tables named with `/`, `.`, `..`, empty or `%` are listed with escaped paths that cat, find and the CLI read back (no rows hidden)', async () => {
  const root = mkdtempSync(join(tmpdir(), 'nexo-browse-names-'));
  roots.push(root);
  const p = buildSampleAgent(root, 'ana', {
    files: 1,
    commits: 1,
    memories: 3,
    embeddings: 1,
    concepts: 1,
    compactions: 1,
  });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    store: 'bundles',
  });
  // name -> the path segment docs/browse.md gives it
  const names: Record<string, string> = {
    'x/secret': 'x%2Fsecret',
    '..': '%2E%2E',
    '.': '%2E',
    '': '%',
    'a%2Fb': 'a%252Fb',
    'a/b': 'a%2Fb',
  };
  const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  for (const [i, name] of Object.keys(names).entries()) {
    db.exec(`CREATE TABLE "${name}" (v TEXT)`);
    db.prepare(`INSERT INTO "${name}" VALUES (?)`).run(`hidden row ${i} orca`);
  }
  db.close();
  const snap = await s.snapshot({ agentId: 'ana' });
  const ls = await s.ls('ana', undefined, snap.id, 'sqlite/long_term');
  for (const [i, [name, seg]] of Object.entries(names).entries()) {
    const entry = ls.entries.find((e) => e.name === name)!;
    assert.ok(entry, `listed: ${JSON.stringify(name)}`);
    assert.equal(entry.path, `sqlite/long_term/${seg}`);
    assert.equal(entry.rows, 1);
    const c = await s.cat('ana', undefined, snap.id, entry.path);
    assert.ok(c.kind === 'table');
    assert.equal(c.table, name);
    assert.equal(c.path, entry.path);
    assert.deepEqual(
      c.rows.map((r) => r.v),
      [`hidden row ${i} orca`],
    );
    assert.deepEqual((await s.ls('ana', undefined, snap.id, entry.path)).entries[0]!.path, entry.path);
  }
  // find names each row by a path cat reads
  const found = await s.find({ agentId: 'ana', text: 'orca' });
  const locations = found.snapshots.find((x) => x.snapshot_id === snap.id)!.locations;
  assert.equal(locations.length, Object.keys(names).length);
  for (const l of locations) {
    const c = await s.cat('ana', undefined, snap.id, l.path);
    assert.ok(c.kind === 'table' && c.table === (l as { table: string }).table, l.path);
  }
  // a % that starts no escape is refused, naming the rule
  await assert.rejects(s.cat('ana', undefined, snap.id, 'sqlite/long_term/a%zz'), /a % starts an escape/);
  // the CLI reads the same paths
  const flags = ['--state-root', p.stateRoot, '--memdir-root', p.memdirRoot, '--sqlite-root', p.sqliteRoot];
  const cli = await runCli(['cat', '--agent', 'ana', ...flags, snap.id, 'sqlite/long_term/x%2Fsecret']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(JSON.parse(cli.stdout.trim()), { rowid: 1, v: 'hidden row 0 orca' });
  const dots = await runCli(['cat', '--agent', 'ana', ...flags, snap.id, 'sqlite/long_term/%2E%2E']);
  assert.equal(dots.code, 0, dots.stderr);
  assert.deepEqual(JSON.parse(dots.stdout.trim()), { rowid: 1, v: 'hidden row 1 orca' });
});

test('cat pages by bytes on character boundaries: a limit smaller than a character still returns that character, so offset += length always moves on (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 2 });
  const text = 'a€b😀c\n'; // 1 + 3 + 1 + 4 + 1 + 1 bytes
  writeFileSync(join(a.memdir, 'unicode.md'), text);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const cat = (offset: number, limit: number) =>
    a.snapshotter.cat('ana', undefined, snap.id, 'memdir/unicode.md', { offset, limit });
  const inside = await cat(2, 1); // inside '€': moves to 'b'
  assert.deepEqual(inside.kind === 'file' && [inside.offset, inside.length, inside.content], [4, 1, 'b']);
  const small = await cat(5, 1); // the 4-byte '😀' with a limit of 1
  assert.deepEqual(small.kind === 'file' && [small.offset, small.length, small.content], [5, 4, '😀']);
  for (const limit of [1, 2, 3, 5]) {
    let offset = 0;
    let whole = '';
    for (let calls = 0; ; calls++) {
      assert.ok(calls < 20, `paging with limit ${limit} ends`);
      const page = await cat(offset, limit);
      assert.equal(page.kind, 'file');
      if (page.kind !== 'file') break;
      whole += page.content;
      offset = page.offset + page.length;
      if (!page.truncated) break;
    }
    assert.equal(whole, text, `limit ${limit}`);
  }
});

test('find in a binary memory file (a NUL in it) sees what cat shows: a redacted secret is not found, not even its prefix; other text is (stop 62 review)', async (t) => {
  const a = sampleAgent(t, 'ana', {
    files: 2,
    commits: 1,
    memories: 5,
    embeddings: 2,
    concepts: 2,
    compactions: 1,
  });
  writeFileSync(join(a.memdir, 'keys.md'), `\0binary header\nOPENAI_API_KEY=${SECRET}\nharmless-marker\n`);
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const found = async (text: string, showSecrets = false) =>
    (await a.snapshotter.find({ agentId: 'ana', text, showSecrets })).first_seen !== undefined;
  assert.equal(await found(SECRET), false, 'the secret');
  assert.equal(await found(SECRET.slice(0, 12)), false, 'a prefix of it: a guess a character at a time');
  assert.equal(await found('harmless-marker'), true, 'the file is still searched');
  assert.equal(await found(SECRET, true), true, 'with secrets shown');
  const shown = await a.snapshotter.cat('ana', undefined, 'latest', 'memdir/keys.md');
  assert.ok(shown.kind === 'file' && !JSON.stringify(shown).includes(SECRET.slice(0, 12)));
});
