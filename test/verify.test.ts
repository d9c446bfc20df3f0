// Verify against real and hostile bundles: every hostile case the foundation issue lists is built
// byte by byte here and must be reported as damaged (exit 2) with the right problem code.

import assert from 'node:assert/strict';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { verifyBundleFile, verifyExitCode } from '../src/verify/verify.js';
import {
  type ArtifactSpec,
  bundleOf,
  manifestFor,
  readEntries,
  repack,
  reseal,
  tarOf,
  writeBundleFile,
  zstd,
} from './helpers/bundles.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';

const codes = (r: { problems: Array<{ code: string }> }): string[] => r.problems.map((p) => p.code);

test('a fresh snapshot verifies fully, with --deep checking every database and the git history', async (t) => {
  const a = sampleAgent(t);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const r = await verifyBundleFile(meta.bundle_path, { deep: true });
  assert.equal(r.status, 'verified');
  assert.equal(verifyExitCode(r), 0);
  assert.deepEqual(r.problems, []);
  assert.ok(
    r.manifest_ok && r.bundle_sha256_ok && r.per_artifact_ok && r.layout_ok && r.size_ok && r.schema_ok,
  );
  assert.equal(r.artifacts_checked, r.artifacts_total);
  assert.deepEqual(r.deep?.sqlite_integrity, {
    long_term: 'ok',
    vector: 'ok',
    concepts: 'ok',
    compactions: 'ok',
  });
  assert.equal(r.deep?.git, 'ok');
  assert.equal(r.file_sha256, meta.file_sha256);
});

test('without --deep the report says the deep checks were not run', async (t) => {
  const a = sampleAgent(t);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const r = await verifyBundleFile(meta.bundle_path);
  assert.equal(r.status, 'verified');
  assert.equal(r.deep, undefined);
  assert.ok(r.not_checked.some((n) => n.check === 'deep'));
});

async function baseBundle(t: Parameters<typeof sampleAgent>[0]) {
  const a = sampleAgent(t, 'ana', {
    files: 3,
    memories: 20,
    embeddings: 5,
    concepts: 5,
    compactions: 2,
    commits: 2,
  });
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const entries = await readEntries(meta.bundle_path);
  return { a, meta, entries, dir: tempDir(t, 'nexo-hostile-') };
}

test('a missing sibling is reported as not fully verified (exit 3), a wrong one as damaged (exit 2)', async (t) => {
  const { meta } = await baseBundle(t);
  rmSync(`${meta.bundle_path}.sha256`);
  let r = await verifyBundleFile(meta.bundle_path);
  assert.equal(r.sibling, 'missing');
  assert.equal(r.bundle_sha256_ok, false);
  assert.equal(r.per_artifact_ok, true);
  assert.equal(r.status, 'incomplete');
  assert.equal(verifyExitCode(r), 3);
  writeFileSync(`${meta.bundle_path}.sha256`, 'f'.repeat(64));
  r = await verifyBundleFile(meta.bundle_path);
  assert.equal(r.sibling, 'mismatch');
  assert.equal(verifyExitCode(r), 2);
  assert.ok(codes(r).includes('CHECKSUM_MISMATCH'));
  // sha256sum format ("<hex>  <name>") and uppercase are accepted
  writeFileSync(`${meta.bundle_path}.sha256`, `${meta.file_sha256!.toUpperCase()}  x.tar.zst\n`);
  r = await verifyBundleFile(meta.bundle_path);
  assert.equal(r.status, 'verified');
});

test('a truncated bundle is damaged', async (t) => {
  const { meta, dir } = await baseBundle(t);
  const bytes = readFileSync(meta.bundle_path);
  for (const cut of [10, Math.floor(bytes.length / 2), bytes.length - 3]) {
    const p = writeBundleFile(join(dir, `cut-${cut}.tar.zst`), bytes.subarray(0, cut), 'none');
    const r = await verifyBundleFile(p);
    assert.equal(r.status, 'damaged', `cut at ${cut}`);
    assert.equal(r.per_artifact_ok, false);
    assert.ok(
      codes(r).some((c) => c === 'BUNDLE_DAMAGED'),
      `cut at ${cut}: ${JSON.stringify(r.problems)}`,
    );
  }
});

test('one flipped byte anywhere is detected', async (t) => {
  const { meta, dir } = await baseBundle(t);
  const bytes = readFileSync(meta.bundle_path);
  for (const at of [20, Math.floor(bytes.length / 3), bytes.length - 10]) {
    const copy = Buffer.from(bytes);
    copy[at] = copy[at]! ^ 0x01;
    const p = join(dir, `flip-${at}.tar.zst`);
    writeFileSync(p, copy);
    writeFileSync(`${p}.sha256`, readFileSync(`${meta.bundle_path}.sha256`));
    const r = await verifyBundleFile(p);
    assert.equal(r.status, 'damaged', `flip at ${at}`);
    assert.equal(verifyExitCode(r), 2);
  }
});

test('a tampered manifest is caught by the seals, even when the digest seal is recomputed', async (t) => {
  const { entries, dir } = await baseBundle(t);
  const manifest = JSON.parse(entries[0]!.data.toString());
  // 1. edit a field restore acts on, keep both seals: manifest_seal mismatch
  manifest.agent_id = 'bob';
  let p = writeBundleFile(
    join(dir, 'm1.tar.zst'),
    repack([{ path: 'manifest.json', data: Buffer.from(JSON.stringify(manifest)) }, ...entries.slice(1)]),
  );
  let r = await verifyBundleFile(p);
  assert.equal(r.manifest_ok, false);
  assert.ok(r.problems.some((x) => /manifest_seal/.test(x.message)));
  // 2. edit an artifact digest and recompute only bundle_sha256 (what the original's seal allows)
  const m2 = JSON.parse(entries[0]!.data.toString());
  m2.artifacts[0].sha256 = 'a'.repeat(64);
  m2.bundle_sha256 = reseal({ ...m2, manifest_version: 1 }).bundle_sha256;
  p = writeBundleFile(
    join(dir, 'm2.tar.zst'),
    repack([{ path: 'manifest.json', data: Buffer.from(JSON.stringify(m2)) }, ...entries.slice(1)]),
  );
  r = await verifyBundleFile(p);
  assert.equal(r.manifest_ok, false);
  assert.equal(r.per_artifact_ok, false);
  assert.equal(r.status, 'damaged');
  // 3. a manifest seal dropped from a v2 manifest
  const m3 = JSON.parse(entries[0]!.data.toString());
  delete m3.manifest_seal;
  p = writeBundleFile(
    join(dir, 'm3.tar.zst'),
    repack([{ path: 'manifest.json', data: Buffer.from(JSON.stringify(m3)) }, ...entries.slice(1)]),
  );
  r = await verifyBundleFile(p);
  assert.equal(r.manifest_ok, false);
});

test('a replaced artifact with an unchanged manifest fails per_artifact_ok', async (t) => {
  const { entries, dir } = await baseBundle(t);
  const i = entries.findIndex((e) => e.path.startsWith('memory_files/'));
  const edited = entries.map((e, j) => (j === i ? { ...e, data: Buffer.alloc(e.data.length, 0x41) } : e));
  const r = await verifyBundleFile(writeBundleFile(join(dir, 'art.tar.zst'), repack(edited)));
  assert.equal(r.per_artifact_ok, false);
  assert.ok(r.problems.some((p) => p.code === 'CHECKSUM_MISMATCH' && p.path === entries[i]!.path));
});

const mem = (path: string, data = 'x'): ArtifactSpec => ({ path, kind: 'memory_file', data });

for (const [name, path] of [
  ['../x', '../x'],
  ['memory_files//etc/x', 'memory_files//etc/x'],
  ['/abs', '/abs/x'],
  ['memory_files/../../x', 'memory_files/../../x'],
  ['memory_files/.git/config', 'memory_files/.git/config'],
] as const) {
  test(`an entry ${name} is refused as unsafe, in the tar and in the manifest`, async (t) => {
    const dir = tempDir(t);
    const arts = [mem('memory_files/MEMORY.md'), mem(path, 'evil')];
    const p = writeBundleFile(join(dir, 'b.tar.zst'), bundleOf(manifestFor(arts), arts));
    const r = await verifyBundleFile(p);
    assert.equal(r.status, 'damaged');
    assert.equal(r.layout_ok, false);
    assert.ok(codes(r).includes('UNSAFE_ENTRY'), JSON.stringify(r.problems));
  });
}

for (const [name, type] of [
  ['symlink', '2'],
  ['hardlink', '1'],
  ['directory', '5'],
  ['fifo', '6'],
] as const) {
  test(`a ${name} entry is refused`, async (t) => {
    const dir = tempDir(t);
    const arts = [mem('memory_files/MEMORY.md')];
    const extra = [{ path: 'memory_files/evil', type, linkpath: '/etc/passwd' }];
    const r = await verifyBundleFile(
      writeBundleFile(join(dir, 'b.tar.zst'), bundleOf(manifestFor(arts), arts, extra)),
    );
    assert.equal(r.status, 'damaged');
    assert.equal(r.layout_ok, false);
    assert.ok(
      r.problems.some((p) => p.code === 'UNSAFE_ENTRY' && p.path === 'memory_files/evil'),
      JSON.stringify(r.problems),
    );
  });
}

test('a duplicate entry is refused even when both copies hash correctly', async (t) => {
  const dir = tempDir(t);
  const arts = [mem('memory_files/MEMORY.md', 'same')];
  const r = await verifyBundleFile(
    writeBundleFile(
      join(dir, 'b.tar.zst'),
      bundleOf(manifestFor(arts), arts, [{ path: 'memory_files/MEMORY.md', data: 'same' }]),
    ),
  );
  assert.equal(r.status, 'damaged');
  assert.ok(r.problems.some((p) => /duplicate/.test(p.message)));
});

test('an entry not declared in the manifest is refused', async (t) => {
  const dir = tempDir(t);
  const arts = [mem('memory_files/MEMORY.md')];
  const r = await verifyBundleFile(
    writeBundleFile(
      join(dir, 'b.tar.zst'),
      bundleOf(manifestFor(arts), arts, [{ path: 'memory_files/extra.md', data: 'x' }]),
    ),
  );
  assert.equal(r.status, 'damaged');
  assert.ok(r.problems.some((p) => /not declared/.test(p.message)));
});

test('a manifest naming a missing artifact is reported as MISSING_ARTIFACT', async (t) => {
  const dir = tempDir(t);
  const arts = [mem('memory_files/MEMORY.md'), mem('memory_files/gone.md', 'gone')];
  const r = await verifyBundleFile(
    writeBundleFile(join(dir, 'b.tar.zst'), bundleOf(manifestFor(arts), arts.slice(0, 1))),
  );
  assert.equal(r.status, 'damaged');
  assert.ok(r.problems.some((p) => p.code === 'MISSING_ARTIFACT' && p.path === 'memory_files/gone.md'));
  assert.equal(r.per_artifact_ok, false);
});

test('a decompression bomb is stopped at the bound the manifest implies', async (t) => {
  const dir = tempDir(t);
  const arts = [mem('memory_files/MEMORY.md', 'small')];
  // 1. an entry whose header declares far more than the manifest does
  const big = Buffer.alloc(64 * 1024 * 1024);
  const declared = manifestFor(arts);
  const tar1 = tarOf([
    { path: 'manifest.json', data: JSON.stringify(declared) },
    { path: 'memory_files/MEMORY.md', data: big },
  ]);
  let r = await verifyBundleFile(writeBundleFile(join(dir, 'bomb1.tar.zst'), zstd(tar1, 19)));
  assert.equal(r.status, 'damaged');
  // 2. gigabytes of zeros after the end-of-archive marker (compresses to almost nothing)
  const tar2 = Buffer.concat([
    tarOf([
      { path: 'manifest.json', data: JSON.stringify(declared) },
      { path: 'memory_files/MEMORY.md', data: 'small' },
    ]),
    Buffer.alloc(512 * 1024 * 1024),
  ]);
  const compressed = zstd(tar2, 19);
  assert.ok(compressed.length < 1024 * 1024, 'the bomb is small on disk');
  const before = process.memoryUsage().rss;
  r = await verifyBundleFile(writeBundleFile(join(dir, 'bomb2.tar.zst'), compressed));
  assert.equal(r.status, 'damaged');
  assert.equal(r.size_ok, false);
  assert.ok(
    r.problems.some((p) => p.code === 'UNSAFE_ENTRY' && /decompress/.test(p.message)),
    JSON.stringify(r.problems),
  );
  assert.ok(process.memoryUsage().rss - before < 200 * 1024 * 1024, 'memory stays bounded');
});

test('a schema or format from a newer writer is refused with SCHEMA_TOO_NEW', async (t) => {
  const dir = tempDir(t);
  const arts = [mem('memory_files/MEMORY.md')];
  for (const [name, overrides] of [
    // 3 is a signed bundle (docs/signatures.md); 4 is the first version this reader does not know
    ['manifest_version', { manifest_version: 4 }],
    ['schema', { schema_versions: { long_term: 9, vector: 1, concepts: 1, compactions: 1, manifest: 2 } }],
    ['format', { bundle_format: 'nexo-memory-snapshot-v9' }],
  ] as const) {
    const r = await verifyBundleFile(
      writeBundleFile(join(dir, `${name}.tar.zst`), bundleOf(manifestFor(arts, overrides), arts)),
    );
    assert.equal(r.status, 'damaged', name);
    assert.ok(codes(r).includes('SCHEMA_TOO_NEW'), `${name}: ${JSON.stringify(r.problems)}`);
  }
});

test('files that are not bundles are refused as NOT_A_BUNDLE', async (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('hello world, not a bundle')],
    [
      'tar-without-manifest-first',
      zstd(
        tarOf([
          { path: 'memory_files/a.md', data: 'x' },
          { path: 'manifest.json', data: '{}' },
        ]),
      ),
    ],
  ];
  for (const [name, bytes] of cases) {
    const r = await verifyBundleFile(writeBundleFile(join(dir, `${name}.tar.zst`), bytes));
    assert.equal(r.status, 'damaged', name);
    assert.ok(codes(r).includes('NOT_A_BUNDLE'), `${name}: ${JSON.stringify(r.problems)}`);
  }
});

test("bundles in the original's v1 layout (raw .git files, GNU headers) verify", async (t) => {
  const dir = tempDir(t);
  const arts: ArtifactSpec[] = [
    { path: 'sqlite/long_term.sqlite', kind: 'sqlite_long_term', data: 'not checked without --deep' },
    { path: 'memory_files/MEMORY.md', kind: 'memory_file', data: '# memory\n' },
    { path: `memory_files/${'deep/'.repeat(30)}long-name.md`, kind: 'memory_file', data: 'long' },
    { path: 'git/HEAD', kind: 'git_bundle', data: 'ref: refs/heads/main\n' },
  ];
  const manifest = manifestFor(arts, {}, 1);
  const p = writeBundleFile(join(dir, 'v1.tar.zst'), bundleOf(manifest, arts, [], { v1: true }));
  const r = await verifyBundleFile(p);
  assert.equal(r.status, 'verified', JSON.stringify(r.problems));
  assert.equal(r.bundle_format, 'nexo-memory-snapshot-v1');
  assert.ok(r.not_checked.some((n) => n.check === 'manifest_seal'));
});

test('a missing bundle path is an I/O error (exit 1), not a report', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(verifyBundleFile(join(dir, 'nope.tar.zst')), { code: 'IO', exitCode: 1 });
});

test('CLI verify: exit statuses 0, 2, 3 and 1 with JSON reports', async (t) => {
  const { meta, dir } = await baseBundle(t);
  let r = await runCli(['verify', meta.bundle_path, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  for (const k of [
    'bundle',
    'manifest_ok',
    'bundle_sha256_ok',
    'per_artifact_ok',
    'schema_versions',
    'age_protected',
  ]) {
    assert.ok(k in report, k);
  }
  const copy = join(dir, 'copy.tar.zst');
  writeFileSync(copy, readFileSync(meta.bundle_path));
  r = await runCli(['verify', copy]);
  assert.equal(r.code, 3);
  assert.match(r.stdout, /not checked: sibling/);
  const bad = Buffer.from(readFileSync(meta.bundle_path));
  bad[bad.length - 5] = bad[bad.length - 5]! ^ 0xff;
  renameSync(copy, `${copy}.old`);
  writeBundleFile(copy, bad);
  r = await runCli(['verify', '--bundle', copy]);
  assert.equal(r.code, 2);
  r = await runCli(['verify', join(dir, 'missing.tar.zst')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bundle not found/);
});
