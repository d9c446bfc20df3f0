// find over a repository reads every distinct blob once, many blobs per request: the reads that join
// blobs of one pack across a gap return exactly each blob's bytes (plain and encrypted), with fewer
// requests; and a blob in a pack whose bytes are not those of its id (damaged, or swapped for bytes
// that hold the text) stops find with BundleDamagedError (exit 2) instead of a false hit or a miss.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSampleAgent, gitEnv } from '../scripts/sample-agent.js';
import { LocalBackend } from '../src/backend/local.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { generateIdentity } from '../src/crypto/age.js';
import { BundleDamagedError, LocalSnapshotter } from '../src/index.js';
import { FLAG_RAW, KIND_DATA } from '../src/repository/pack.js';
import { Repository } from '../src/repository/repository.js';
import { tempDir } from './helpers/env.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('streamBlobs: blobs of a pack a gap apart share one request and come back exactly', async () => {
  for (const recipients of [[], [generateIdentity().recipient]]) {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, recipients);
    const blobs = [randomBytes(3000), Buffer.alloc(5000, 1), randomBytes(700), Buffer.alloc(9000, 2)];
    const w = repo.writer();
    for (const b of blobs) await w.add(KIND_DATA, sha(b), b);
    await w.finish();
    let loads = 0;
    const load = backend.load.bind(backend);
    backend.load = (...args) => {
      loads++;
      return load(...args);
    };
    const wanted = [blobs[0]!, blobs[2]!, blobs[3]!];
    const read = async (gap: number) => {
      loads = 0;
      const out: Buffer[] = [];
      for await (const b of repo.streamBlobs(wanted.map(sha), 4, 1024 * 1024, false, gap)) out.push(b);
      return out;
    };
    const apart = await read(0);
    assert.equal(loads, 2, 'without a gap, blob 1 splits the run');
    const joined = await read(64 * 1024);
    assert.equal(loads, 1, 'with a gap, one request');
    for (const out of [apart, joined]) {
      assert.equal(out.length, 3);
      assert.deepEqual(out.map(sha), wanted.map(sha));
    }
  }
});

test('find: a blob whose stored bytes are not its id stops find with BundleDamagedError', async (t) => {
  const root = tempDir(t, 'nexo-find-scan-');
  const p = buildSampleAgent(root, 'ana', {
    files: 3,
    commits: 1,
    memories: 30,
    embeddings: 5,
    concepts: 5,
    compactions: 3,
  });
  // incompressible, so the pack stores the file's bytes as they are (raw): easy to swap for others
  const note = Buffer.from(randomBytes(48).toString('base64'));
  writeFileSync(join(p.memdir, 'note.md'), note);
  execFileSync('git', ['add', '-A'], { cwd: p.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'note'], { cwd: p.memdir, env: gitEnv });
  const s = new LocalSnapshotter({
    stateRoot: p.stateRoot,
    memdirRoot: p.memdirRoot,
    sqliteRoot: p.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  await s.snapshot({ agentId: 'ana' });
  const needle = 'the narwhal migration';
  assert.equal((await s.find({ agentId: 'ana', text: needle })).first_seen, undefined);

  const repoDir = join(p.stateRoot, 'repository');
  const repo = await Repository.open(new LocalBackend(repoDir));
  await repo.loadIndex();
  const patch = (id: string, edit: (stored: Buffer) => void) => {
    const loc = repo.index.get(id)!;
    const file = join(repoDir, 'packs', loc.pack.slice(0, 2), loc.pack);
    const fd = openSync(file, 'r+');
    try {
      const stored = Buffer.alloc(loc.stored);
      readSync(fd, stored, 0, loc.stored, loc.offset);
      edit(stored);
      writeSync(fd, stored, 0, loc.stored, loc.offset);
    } finally {
      closeSync(fd);
    }
    return loc;
  };

  // the note's bytes swapped for bytes of the same length that hold the text: no hit, an error
  const loc = patch(sha(note), (stored) => {
    stored.fill('.');
    stored.write(needle);
  });
  assert.equal(loc.flags & FLAG_RAW, FLAG_RAW, 'the note is stored raw');
  await assert.rejects(
    s.find({ agentId: 'ana', text: needle }),
    (e: BundleDamagedError) => e instanceof BundleDamagedError && e.exitCode === 2,
  );
  patch(sha(note), (stored) => note.copy(stored));
  assert.equal((await s.find({ agentId: 'ana', text: needle })).first_seen, undefined, 'repaired');

  // a byte of a database chunk flipped: an error as well, whatever the text
  const dbChunk = [...repo.index.entries()].find(([, l]) => l.raw >= 4096 && l.kind === KIND_DATA)![0];
  patch(dbChunk, (stored) => {
    stored[stored.length >> 1]! ^= 0xff;
  });
  await assert.rejects(s.find({ agentId: 'ana', text: 'anything at all' }), BundleDamagedError);
});
