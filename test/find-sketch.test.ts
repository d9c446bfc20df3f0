// find's cache of blob sketches (src/browse/sketch.ts, sketch-cache.ts) only ever skips blobs that
// cannot hold the text: the same answers with and without it — a text in a memory file, in a state
// value, in a database row where it is cut by a page boundary (its bytes not contiguous in the
// database), a text found nowhere — after new snapshots were added (sketches of some blobs only), and
// with a damaged or foreign cache (ignored). A regex and a text shorter than a gram read every blob; an
// encrypted repository keeps no sketches.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { buildSampleAgent, gitEnv } from '../scripts/sample-agent.js';
import { matcherOf } from '../src/browse/match.js';
import { gramsOf, mayHold, sketchOf } from '../src/browse/sketch.js';
import type { FindResult } from '../src/browse/types.js';
import { generateIdentity } from '../src/crypto/age.js';
import { LocalSnapshotter } from '../src/index.js';
import { sampleAgent, tempDir } from './helpers/env.js';

const IN_FILE = 'a walrus named Theodore keeps the ledger';
const IN_STATE = 'the dream of the seventeen lanterns';
const CUT = 'the narwhal migration of twenty thirty-one';
const NOWHERE = 'a phrase that no snapshot has ever held';

test('sketch: a blob holding a piece has all its grams; one without a gram is told apart', () => {
  const blob = Buffer.from(`${'lorem ipsum '.repeat(500)}${IN_FILE}${'dolor sit '.repeat(300)}`);
  const s = sketchOf(blob);
  assert.equal(mayHold(s, gramsOf(Buffer.from(IN_FILE))!), true);
  assert.equal(mayHold(s, gramsOf(Buffer.from('lorem ipsum dolor'))!), false); // "m do" is not in it
  assert.equal(gramsOf(Buffer.from('abc')), undefined);
  assert.equal(mayHold(sketchOf(Buffer.alloc(0)), gramsOf(Buffer.from('abcd'))!), false);
  // no false negative: any piece of any blob (sizes around the power-of-two steps of the bitmap)
  for (let i = 0; i < 300; i++) {
    const size = [4, 63, 64, 65, 127, 128, 4095, 4096, 4097, 70_000][i % 10]!;
    const b = randomBytes(size);
    const sk = sketchOf(b);
    const at = (i * 7919) % (size - 3);
    const piece = b.subarray(at, Math.min(size, at + 4 + (i % 60)));
    assert.equal(mayHold(sk, gramsOf(piece)!), true, `${size} bytes, piece at ${at}`);
  }
});

test('find with sketches: the same answers as without, after new snapshots, with a damaged cache', async (t) => {
  const root = tempDir(t, 'nexo-find-sketch-');
  const p = buildSampleAgent(root, 'ana', {
    files: 4,
    commits: 1,
    memories: 300,
    embeddings: 20,
    concepts: 20,
    compactions: 5,
  });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  const commit = (msg: string) => {
    execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
    execFileSync('git', ['commit', '-qm', msg], { cwd: p.memdir, env: gitEnv });
  };
  await s.snapshot({ agentId: 'ana' });

  // a row whose text is cut by a page boundary: an overflow page starts inside it (no contiguous copy);
  // where the pages of a row cut its payload depends only on the payload and the page size, so the
  // place is found in a scratch database of the same page size
  const dbPath = join(p.sqliteDir, 'long_term.sqlite');
  const db = new Database(dbPath);
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const body = (k: number) => `${'x'.repeat(k)}${CUT}${'y'.repeat(9000 - k)}`;
  let cut = -1;
  for (let k = 0; k < 8000 && cut < 0; k += 7) {
    const scratch = new Database(':memory:');
    scratch.pragma(`page_size = ${pageSize}`);
    scratch.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
    scratch.prepare('INSERT INTO notes (body) VALUES (?)').run(body(k));
    if (!scratch.serialize().includes(CUT)) cut = k;
    scratch.close();
  }
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
  db.prepare('INSERT INTO notes (body) VALUES (?)').run(body(cut));
  db.close();
  const copy = join(root, 'copy.sqlite');
  execFileSync('sqlite3', [dbPath, `VACUUM INTO '${copy}'`]);
  assert.ok(!readFileSync(copy).includes(CUT), 'no contiguous copy of the text');
  assert.ok(readFileSync(copy).includes(Buffer.from(CUT.slice(0, 21))));
  writeFileSync(join(p.memdir, 'walrus.md'), `# Walrus\n\n${IN_FILE}.\n`);
  commit('walrus');
  const dream = join(p.sqliteDir, 'dream_run.json');
  const dreamBefore = readFileSync(dream, 'utf8');
  writeFileSync(dream, `${JSON.stringify({ ...JSON.parse(dreamBefore), status: IN_STATE })}\n`);
  const seen = await s.snapshot({ agentId: 'ana' });
  await s.snapshot({ agentId: 'ana' });

  const cacheDir = join(p.stateRoot, 'cache');
  const sketchDir = () => join(cacheDir, readdirSync(cacheDir).find((n) => n.startsWith('sketch-'))!);
  const noCache = () => rmSync(cacheDir, { recursive: true, force: true });
  const answer = ({ stats: _, ...rest }: FindResult) => rest;
  const where = (r: FindResult) => r.snapshots.map((h) => h.locations.map((l) => `${l.kind}:${l.path}`));
  const compare = async (expectSkips: boolean) => {
    for (const text of [IN_FILE, IN_STATE, CUT, NOWHERE]) {
      const warm = await s.find({ agentId: 'ana', showSecrets: true, text });
      if (expectSkips) assert.ok(warm.stats.units_skipped! > 0, `${text}: blobs skipped`);
      else assert.equal(warm.stats.units_skipped, 0, `${text}: nothing skipped`);
      const saved = join(root, 'saved-cache');
      rmSync(saved, { recursive: true, force: true });
      execFileSync('cp', ['-a', cacheDir, saved]);
      noCache();
      const full = await s.find({ agentId: 'ana', showSecrets: true, text });
      assert.equal(full.stats.units_skipped, 0);
      assert.deepEqual(answer(warm), answer(full), text);
      noCache();
      execFileSync('cp', ['-a', saved, cacheDir]);
    }
  };

  // cold: every blob read (and sketched)
  noCache();
  const cold = await s.find({ agentId: 'ana', showSecrets: true, text: CUT });
  assert.equal(cold.stats.units_skipped, 0);
  assert.equal(cold.first_seen?.snapshot_id, seen.id);
  assert.deepEqual(where(cold)[1], ['row:sqlite/long_term/notes']);
  const file = await s.find({ agentId: 'ana', showSecrets: true, text: IN_FILE });
  assert.deepEqual(where(file)[1], ['file:memdir/walrus.md']);
  const state = await s.find({ agentId: 'ana', showSecrets: true, text: IN_STATE });
  assert.deepEqual(where(state)[2], ['state:state/dream_run']);
  assert.equal((await s.find({ agentId: 'ana', showSecrets: true, text: NOWHERE })).transitions.length, 0);
  // warm: the same answers, blobs skipped
  await compare(true);

  // new snapshots: the texts gone from the newest, new blobs without sketches yet
  const db2 = new Database(dbPath);
  db2.exec('DROP TABLE notes');
  db2.close();
  rmSync(join(p.memdir, 'walrus.md'));
  commit('no walrus');
  writeFileSync(dream, dreamBefore);
  const gone = await s.snapshot({ agentId: 'ana' });
  const later = await s.find({ agentId: 'ana', showSecrets: true, text: CUT });
  assert.ok(later.stats.units_skipped! > 0);
  assert.equal(later.first_gone?.snapshot_id, gone.id);
  await compare(true);

  // a damaged segment is ignored: every blob read again, the same answers
  for (const n of readdirSync(sketchDir())) {
    const f = join(sketchDir(), n);
    const b = readFileSync(f);
    b[b.length >> 1]! ^= 0x20;
    writeFileSync(f, b);
  }
  const damaged = await s.find({ agentId: 'ana', showSecrets: true, text: CUT });
  assert.equal(damaged.stats.units_skipped, 0);
  assert.equal(damaged.first_gone?.snapshot_id, gone.id);
  assert.equal(
    (await s.find({ agentId: 'ana', showSecrets: true, text: CUT })).stats.units_skipped! > 0,
    true,
  );
  // a segment of another repository (its id in the header, checksum right) is ignored
  for (const n of readdirSync(sketchDir())) {
    const f = join(sketchDir(), n);
    const b = readFileSync(f);
    b.fill(0x11, 16, 48);
    createHash('sha256')
      .update(b.subarray(0, b.length - 32))
      .digest()
      .copy(b, b.length - 32);
    writeFileSync(f, b);
  }
  assert.equal((await s.find({ agentId: 'ana', showSecrets: true, text: CUT })).stats.units_skipped, 0);

  // a regex and a text shorter than a gram read every blob, cache or not
  await s.find({ agentId: 'ana', showSecrets: true, text: IN_FILE });
  const re = await s.find({ agentId: 'ana', showSecrets: true, regex: 'walrus named \\w+' });
  assert.equal(re.stats.units_skipped, 0);
  assert.equal(re.first_seen?.snapshot_id, seen.id);
  assert.equal((await s.find({ agentId: 'ana', showSecrets: true, text: 'wal' })).stats.units_skipped, 0);
  await compare(true);

  // 8 segments (and a temporary file left by a killed find) are merged into one by the next find
  const [seg] = readdirSync(sketchDir()).filter((n) => n.startsWith('seg-'));
  for (let i = 0; i < 7; i++)
    execFileSync('cp', [join(sketchDir(), seg!), join(sketchDir(), `seg-copy-${i}.bin`)]);
  writeFileSync(join(sketchDir(), `.${seg}.tmp-0123456789ab`), 'cut short');
  const merged = await s.find({ agentId: 'ana', showSecrets: true, text: CUT });
  assert.ok(merged.stats.units_skipped! > 0);
  assert.equal(readdirSync(sketchDir()).length, 1);
  const after = await s.find({ agentId: 'ana', showSecrets: true, text: CUT });
  assert.equal(after.stats.units_skipped, merged.stats.units_skipped);
  assert.deepEqual(answer(after), answer(merged));
});

test('find in an encrypted repository keeps no sketches, no checked manifests, and reads every blob', async (t) => {
  const root = tempDir(t, 'nexo-find-sketch-enc-');
  const p = buildSampleAgent(root, 'ana', {
    files: 3,
    commits: 1,
    memories: 20,
    embeddings: 5,
    concepts: 5,
    compactions: 3,
  });
  const id = generateIdentity();
  const key = join(root, 'k.txt');
  writeFileSync(key, `# public key: ${id.recipient}\n${id.identity}\n`);
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
    recipients: [id.recipient],
  });
  writeFileSync(join(p.memdir, 'walrus.md'), `# ${IN_FILE}\n`);
  execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'walrus'], { cwd: p.memdir, env: gitEnv });
  const snap = await s.snapshot({ agentId: 'ana' });
  for (let i = 0; i < 2; i++) {
    const r = await s.find({ agentId: 'ana', showSecrets: true, text: NOWHERE, decryptIdentity: key });
    assert.equal(r.stats.units_skipped, 0);
    assert.ok(r.stats.units_searched! > 0);
  }
  const cache = join(p.stateRoot, 'cache');
  const hit = await s.find({ agentId: 'ana', showSecrets: true, text: IN_FILE, decryptIdentity: key });
  assert.equal(hit.first_seen?.snapshot_id, snap.id);
  // file paths, sizes and content hashes stay in the sealed manifests only: no find-*.json (stop 52)
  assert.equal(hit.stats.manifests_cached, 0, 'every manifest checked again');
  assert.deepEqual(
    (existsSync(cache) ? readdirSync(cache) : []).filter(
      (n) => n.startsWith('sketch-') || n.startsWith('find-'),
    ),
    [],
  );
});

test('find reads a UTF-16 database whole: its text is found by text and regex, with and without sketches, and where it is gone', async (t) => {
  const p = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 20 }, { store: 'repository' });
  const s = p.snapshotter;
  // concepts.sqlite made anew with UTF-16 text (the encoding is set before anything is written)
  const path = join(p.sqliteDir, 'concepts.sqlite');
  for (const ext of ['', '-wal', '-shm']) rmSync(`${path}${ext}`, { force: true });
  const db = new Database(path);
  db.pragma("encoding = 'UTF-16le'");
  db.exec('CREATE TABLE c (t TEXT)');
  db.prepare('INSERT INTO c VALUES (?)').run('an orca pod spotted off the point');
  db.close();
  const held = await s.snapshot({ agentId: 'ana' });
  const again = new Database(path);
  assert.equal(again.pragma('encoding', { simple: true }), 'UTF-16le');
  again.exec('DELETE FROM c');
  again.prepare('INSERT INTO c VALUES (?)').run('only gulls today');
  again.close();
  const gone = await s.snapshot({ agentId: 'ana' });
  const cacheDir = join(p.stateRoot, 'cache');
  for (const query of [{ text: 'orca pod spotted' }, { regex: 'orca p.d' }]) {
    rmSync(cacheDir, { recursive: true, force: true });
    // cold (every blob read and sketched), then warm (the sketches kept by the first)
    for (const pass of ['cold', 'with sketches']) {
      const r = await s.find({ agentId: 'ana', showSecrets: true, ...query });
      const what = `${pass} ${JSON.stringify(query)}`;
      assert.equal(r.first_seen?.snapshot_id, held.id, what);
      assert.equal(r.first_gone?.snapshot_id, gone.id, what);
      assert.deepEqual(
        r.snapshots.find((h) => h.snapshot_id === held.id)?.locations.map((l) => `${l.kind}:${l.path}`),
        ['row:sqlite/concepts/c'],
        what,
      );
    }
  }
});

for (const store of ['repository', 'bundles'] as const) {
  test(`${store}: find in a binary memory file counts the whole text, not a half of it (stop 50)`, async (t) => {
    const p = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 5 }, { store });
    writeFileSync(
      join(p.memdir, 'bin.dat'),
      Buffer.from('\u0000\u0001\u0002binary-needle-QQ\u00ff\u00fe', 'latin1'),
    );
    writeFileSync(join(p.memdir, 'nul.md'), 'ascii only\u0000 with a nul byte here\n');
    const snap = await p.snapshotter.snapshot({ agentId: 'ana' });
    const at = async (query: { text?: string; regex?: string }) =>
      (await p.snapshotter.find({ agentId: 'ana', showSecrets: true, ...query })).snapshots
        .find((h) => h.snapshot_id === snap.id)
        ?.locations.map((l) => `${l.path}×${l.kind === 'file' ? l.matches : '?'}`) ?? [];
    // each of these holds one half of the text (longer than 8 bytes) and not the whole
    assert.deepEqual(await at({ text: 'binary-ZZZZZZZ' }), []);
    assert.deepEqual(await at({ text: 'ZZZZZZZ-needle-QQ' }), []);
    assert.deepEqual(await at({ text: 'ZZZZZZZZZ with a nul byte' }), []);
    assert.deepEqual(await at({ text: 'binary-needle-QQ' }), ['memdir/bin.dat×1']);
    assert.deepEqual(await at({ text: 'with a nul byte' }), ['memdir/nul.md×1']);
    assert.deepEqual(await at({ regex: 'needle-Q+' }), ['memdir/bin.dat×1']);
  });

  test(`${store}: a regex with ^, $ or \\b finds a database row's value (the page bytes around it are not its start or end) (stop 50)`, async (t) => {
    const p = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 5 }, { store });
    const db = new Database(join(p.sqliteDir, 'long_term.sqlite'));
    db.exec('CREATE TABLE notes (v TEXT)');
    db.prepare('INSERT INTO notes VALUES (?)').run('Blue whale seen at dawn');
    db.prepare('INSERT INTO notes VALUES (?)').run('untyped-needle-AAA');
    db.close();
    const snap = await p.snapshotter.snapshot({ agentId: 'ana' });
    const rows = async (regex: string) =>
      (await p.snapshotter.find({ agentId: 'ana', showSecrets: true, regex })).snapshots
        .find((h) => h.snapshot_id === snap.id)
        ?.locations.filter((l) => l.kind === 'row')
        .map((l) => `${l.path}#${l.kind === 'row' ? l.rowid : '?'}`) ?? [];
    for (const regex of ['^Blue whale', '\\bBlue whale\\b', '^untyped-needle-AAA$', 'dawn$', 'Blue whale'])
      assert.deepEqual(
        await rows(regex),
        [`sqlite/long_term/notes#${regex.includes('untyped') ? 2 : 1}`],
        regex,
      );
    // an assertion between two pieces of an escape keeps them apart in the prefilter (`\x4\B1` is the
    // text `x41`, not the letter `A`)
    assert.equal(matcherOf({ regex: '\\x4\\B1' }).maybe(Buffer.from('code x41 here')), true);
    assert.equal(matcherOf({ regex: '\\u00\\B41' }).maybe(Buffer.from('code u0041 here')), true);
    // the assertions still hold on the value itself
    for (const regex of ['^whale', 'Blue$', '\\bwhal\\b', '^needle'])
      assert.deepEqual(await rows(regex), [], regex);
  });
}
