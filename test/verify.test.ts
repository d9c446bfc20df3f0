// Verify against real and hostile bundles: every hostile case the foundation and hardening issues list
// is built byte by byte here and must be reported as damaged (exit 2) with the right problem code; the
// hostile bundles verify refuses are refused by restore and import too, before the live agent changes
// (here for the format's rules; verify-hostile.test.ts for paths, git, state and the whole table).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { git } from '../scripts/sample-agent.js';
import { formatVerify } from '../src/cli/format.js';
import { readManifestOnly } from '../src/format/reader.js';
import { PackCheck } from '../src/git/pack-check.js';
import { verifyBundle, verifyBundleFile, verifyExitCode } from '../src/verify/verify.js';
import { runBuiltCli } from './helpers/built-cli.js';
import {
  type ArtifactSpec,
  bundleOf,
  type Entries,
  forgeBundle,
  manifestFor,
  paxEntry,
  readEntries,
  repack,
  reseal,
  tarOf,
  writeBundleFile,
  zstd,
  zstdWithZeros,
} from './helpers/bundles.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';
import { codes, liveDigest, mem, refusedEverywhere } from './helpers/hostile.js';
import { fromTemplate } from './helpers/template.js';

type T = Parameters<typeof tempDir>[0];

test('a fresh snapshot verifies fully, with --deep checking every database and the git history', async (t) => {
  const { meta } = await baseBundle(t);
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
  const { meta } = await baseBundle(t);
  const r = await verifyBundleFile(meta.bundle_path);
  assert.equal(r.status, 'verified');
  assert.equal(r.deep, undefined);
  assert.ok(r.not_checked.some((n) => n.check === 'deep'));
});

/** A small agent with one snapshot (taken once, copied per test), its entries and a directory. */
async function smallBundle(t: T, name: string, commits: number) {
  const agent = { files: 3, memories: 20, embeddings: 5, concepts: 5, compactions: 2, commits };
  const { a, made: meta } = await fromTemplate(t, name, { agent }, (a) =>
    a.snapshotter.snapshot({ agentId: 'ana' }),
  );
  const entries = await readEntries(meta.bundle_path);
  return { a, meta, entries, dir: tempDir(t, 'nexo-hostile-') };
}
const baseBundle = (t: T) => smallBundle(t, 'base', 2);
/** As helpers/hostile.ts's hostileBase (the same agent), from a template. */
const hostileBase = (t: T) => smallBundle(t, 'hostile', 3);

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

test('verify --agent --id: a bundle that holds another snapshot than its name says (a rollback) is damaged', async (t) => {
  const { a, meta } = await baseBundle(t);
  const newer = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.ok(newer.bundle_path.endsWith('.tar.zst'), 'the bundle store');
  // the older bundle, whole and intact, copied over the newer one with its sibling
  writeFileSync(newer.bundle_path, readFileSync(meta.bundle_path));
  writeFileSync(`${newer.bundle_path}.sha256`, readFileSync(`${meta.bundle_path}.sha256`));
  assert.equal((await verifyBundleFile(newer.bundle_path)).status, 'verified', 'intact as a file');
  const r = await runCli([
    'verify',
    '--agent',
    'ana',
    '--id',
    newer.id,
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(r.code, 2, r.stdout);
  const report = JSON.parse(r.stdout);
  assert.equal(report.status, 'damaged');
  assert.ok(
    report.problems.some(
      (p: { message: string }) => p.message === `holds snapshot ${meta.id}, not ${newer.id}`,
    ),
    r.stdout,
  );
});

test('a truncated bundle is damaged', async (t) => {
  const { meta, dir } = await baseBundle(t);
  const bytes = readFileSync(meta.bundle_path);
  for (const cut of [10, Math.floor(bytes.length / 2), bytes.length - 3]) {
    const p = writeBundleFile(join(dir, `cut-${cut}.tar.zst`), bytes.subarray(0, cut), 'none');
    const r = await verifyBundleFile(p);
    assert.equal(r.status, 'damaged', `cut at ${cut}`);
    // per_artifact_ok says the artifacts: true only when each was read and matched (stop 46)
    assert.equal(r.per_artifact_ok, r.artifacts_total > 0 && r.artifacts_checked === r.artifacts_total);
    assert.equal(r.layout_ok, false);
    assert.ok(
      codes(r).some((c) => c === 'BUNDLE_DAMAGED'),
      `cut at ${cut}: ${JSON.stringify(r.problems)}`,
    );
  }
});

test('a stream that fails claims no check it did not finish: midway, layout, size and artifacts are not checked; after the last entry, every artifact stands and the trailing bytes are the problem (stop 46)', async (t) => {
  const { meta, entries, dir } = await baseBundle(t);
  const bytes = readFileSync(meta.bundle_path);
  const flags = (r: Awaited<ReturnType<typeof verifyBundleFile>>) => ({
    layout_ok: r.layout_ok,
    size_ok: r.size_ok,
    per_artifact_ok: r.per_artifact_ok,
    not_checked: r.not_checked.map((n) => n.check).filter((c) => c !== 'deep'),
  });
  // a stream that stops halfway (a whole zstd stream of half the tar): the entries after were never read
  const tar = tarOf(entries.map((e) => ({ path: e.path, data: e.data })));
  const mid = await verifyBundleFile(
    writeBundleFile(join(dir, 'mid.tar.zst'), zstd(tar.subarray(0, tar.length >> 1))),
  );
  assert.equal(mid.status, 'damaged');
  assert.ok(
    mid.artifacts_checked > 0 && mid.artifacts_checked < mid.artifacts_total,
    `${mid.artifacts_checked}/${mid.artifacts_total}`,
  );
  assert.deepEqual(flags(mid), {
    layout_ok: false,
    size_ok: false,
    per_artifact_ok: false,
    not_checked: ['layout', 'size', 'artifacts'],
  });
  assert.match(formatVerify(mid), /layout_ok: +false \(not checked\)\nsize_ok: +false \(not checked\)/);
  // 5,000 zero bytes after the file's last zstd frame: every artifact was read and matched
  const tail = await verifyBundleFile(
    writeBundleFile(join(dir, 'tail.tar.zst'), Buffer.concat([bytes, Buffer.alloc(5000)])),
  );
  assert.equal(tail.status, 'damaged');
  assert.equal(verifyExitCode(tail), 2);
  assert.equal(tail.artifacts_checked, tail.artifacts_total);
  assert.deepEqual(flags(tail), { layout_ok: false, size_ok: true, per_artifact_ok: true, not_checked: [] });
  assert.deepEqual(codes(tail), ['BUNDLE_DAMAGED']);
  assert.match(
    tail.problems[0]!.message,
    /trailing bytes after the tar end-of-archive marker, after the file's last zstd frame: corrupt zstd/,
  );
  assert.match(formatVerify(tail), /per_artifact_ok: +true .*\nlayout_ok: +false\nsize_ok: +true/);
  // data inside the zstd stream after the end-of-archive marker: the same
  const after = await verifyBundleFile(
    writeBundleFile(join(dir, 'after.tar.zst'), zstd(Buffer.concat([tar, Buffer.from('extra')]))),
  );
  assert.deepEqual(flags(after), { layout_ok: false, size_ok: true, per_artifact_ok: true, not_checked: [] });
  assert.match(after.problems[0]!.message, /data after the tar end-of-archive marker/);
});

test('a bundle whose manifest cannot be read claims no entry check: layout, size and artifacts are not checked, and the text says so (stop 51)', async (t) => {
  const { meta, entries, dir } = await baseBundle(t);
  const bytes = readFileSync(meta.bundle_path);
  const tar = tarOf(entries.map((e) => ({ path: e.path, data: e.data })));
  for (const [name, data] of [
    ['cut.tar.zst', bytes.subarray(0, 10)], // the zstd stream ends in its frame header
    ['head.tar.zst', zstd(tar.subarray(0, 300))], // the stream ends inside the manifest's entry
  ] as const) {
    const r = await verifyBundleFile(writeBundleFile(join(dir, name), data));
    assert.equal(r.status, 'damaged', name);
    assert.equal(r.manifest_ok, false, name);
    assert.deepEqual(
      { layout_ok: r.layout_ok, size_ok: r.size_ok, per_artifact_ok: r.per_artifact_ok },
      { layout_ok: false, size_ok: false, per_artifact_ok: false },
      name,
    );
    assert.deepEqual(
      r.not_checked.map((n) => n.check).filter((c) => c !== 'deep' && c !== 'sibling'),
      ['layout', 'size', 'artifacts'],
      name,
    );
    for (const n of r.not_checked) assert.ok(n.reason.length > 0, `${name}: ${n.check} has a reason`);
    assert.match(
      formatVerify(r),
      /per_artifact_ok: +false \(not checked\)[\s\S]*layout_ok: +false \(not checked\)\nsize_ok: +false \(not checked\)/,
      name,
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

test("verify makes the manifest's own checks after the entries, yet reports what a verify with a sink (--deep) reports, in the same order (stop 67)", async (t) => {
  const { entries, dir } = await baseBundle(t);
  const edits: Array<[string, (m: Record<string, unknown>, rest: Entries) => void, 'cut'?]> = [
    // the seal no longer matches, and one entry's bytes are not the ones listed
    [
      'seal and entry',
      (m, rest) => {
        m.agent_id = 'bob';
        (m.artifacts as Array<{ sha256: string }>)[1]!.sha256 = 'a'.repeat(64);
        rest[0]!.data = Buffer.from('other');
      },
    ],
    // a listed artifact with an unsafe path (a layout problem naming it, so it is not also missing),
    // another one listed twice, and the stream cut before its end
    [
      'layout and cut',
      (m) => {
        const list = m.artifacts as Array<Record<string, unknown>>;
        list.push({ ...list[0]!, path_in_bundle: '../escape' }, { ...list[1]! });
      },
      'cut',
    ],
  ];
  for (const [name, edit, cut] of edits) {
    let bytes = forgeBundle(entries, (m, rest) => edit(m, rest), { reseal: false });
    if (cut) {
      const m = JSON.parse(entries[0]!.data.toString()) as Record<string, unknown>;
      edit(m, []);
      const tar = tarOf([
        { path: 'manifest.json', data: JSON.stringify(m) },
        ...entries.slice(1).map((e) => ({ path: e.path, data: e.data })),
      ]);
      bytes = zstd(tar.subarray(0, tar.length - 4096));
    }
    const p = writeBundleFile(join(dir, `${name.replace(/ /g, '-')}.tar.zst`), bytes);
    const plain = (await verifyBundle(p)).report;
    const deep = (await verifyBundle(p, { deep: true })).report;
    const shown = (r: typeof plain) => ({
      problems: r.problems,
      manifest_ok: r.manifest_ok,
      layout_ok: r.layout_ok,
      size_ok: r.size_ok,
      per_artifact_ok: r.per_artifact_ok,
      not_checked: r.not_checked.filter((n) => n.check !== 'deep'),
    });
    assert.deepEqual(shown(plain), shown(deep), name);
    assert.ok(plain.problems.length >= 2, `${name}: ${JSON.stringify(plain.problems)}`);
    assert.equal(plain.manifest_ok, false, name);
    assert.match(plain.problems[0]!.message, /^manifest/, `${name}: the manifest's problems first`);
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
    assert.ok(
      codes(r).every((c) => c === 'UNSAFE_ENTRY'),
      `nothing else is wrong: ${JSON.stringify(r.problems)}`,
    );
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
  // 1. an entry whose header declares far more than the manifest does: 64 MiB of zeros, then the end
  const declared = manifestFor(arts);
  const head1 = tarOf([
    { path: 'manifest.json', data: JSON.stringify(declared) },
    { path: 'memory_files/MEMORY.md', headerSize: 64 * 1024 * 1024 },
  ]);
  let r = await verifyBundleFile(
    writeBundleFile(join(dir, 'bomb1.tar.zst'), zstdWithZeros(head1, 64 * 1024 * 1024)),
  );
  assert.equal(r.status, 'damaged');
  // 2. hundreds of MB of zeros after the end-of-archive marker (compresses to almost nothing)
  const head2 = tarOf([
    { path: 'manifest.json', data: JSON.stringify(declared) },
    { path: 'memory_files/MEMORY.md', data: 'small' },
  ]);
  const compressed = zstdWithZeros(head2, 512 * 1024 * 1024);
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
    // 3 is a signed bundle (docs/signatures.md); 4 and 5 are repository manifests (below); 6 is the
    // first version this reader does not know
    ['manifest_version', { manifest_version: 6 }],
    ['schema', { schema_versions: { long_term: 9, vector: 1, concepts: 1, compactions: 1, manifest: 2 } }],
    ['format', { bundle_format: 'nexo-memory-snapshot-v9' }],
  ] as const) {
    const r = await verifyBundleFile(
      writeBundleFile(join(dir, `${name}.tar.zst`), bundleOf(manifestFor(arts, overrides), arts)),
    );
    assert.equal(r.status, 'damaged', name);
    assert.ok(codes(r).includes('SCHEMA_TOO_NEW'), `${name}: ${JSON.stringify(r.problems)}`);
  }
  // a repository manifest's version in a bundle: damage, not advice to upgrade
  for (const overrides of [{ manifest_version: 4 }, { bundle_format: 'nexo-memory-snapshot-v5' }]) {
    const r = await verifyBundleFile(
      writeBundleFile(join(dir, 'repo-version.tar.zst'), bundleOf(manifestFor(arts, overrides), arts)),
    );
    assert.deepEqual(codes(r), ['BUNDLE_DAMAGED'], JSON.stringify(r.problems));
    assert.match(r.problems[0]!.message, /is a repository manifest's, never a bundle's/);
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

// ---------------------------------------------------------------------------------------------------
// Hardening (issue 10, items 4, 5, 9 and 11): what verify refuses, restore and import refuse too.

const setVersion = (m: Record<string, unknown>, v: number, format = v, schema = v): void => {
  m.manifest_version = v;
  m.bundle_format = `nexo-memory-snapshot-v${format}`;
  (m.schema_versions as Record<string, number>).manifest = schema;
};

test('version downgrade: a v2 bundle relabelled as v1 (seal left stale) or with disagreeing version fields is damaged', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  // [name, edit, reseal]: the digest seal is always recomputed (anyone can); the manifest seal too
  // unless the case is about a seal left stale
  const cases: Array<[string, (m: Record<string, unknown>) => void, boolean]> = [
    // the attacker's aim: edit a field and escape the manifest seal, which v1 does not have
    [
      'v1 with a changed label, no new seal',
      (m) => {
        setVersion(m, 1);
        m.label = 'tampered';
      },
      false,
    ],
    ['only manifest_version 1', (m) => setVersion(m, 1, 2, 2), true],
    ['bundle_format v1 with manifest_version 2', (m) => setVersion(m, 2, 1, 2), true],
    ['schema_versions.manifest 1 with v2', (m) => setVersion(m, 2, 2, 1), true],
    ['manifest_version 3 without the rest of v3', (m) => setVersion(m, 3, 2, 2), true],
    ['manifest_version 0', (m) => setVersion(m, 0, 2, 2), true],
    ['manifest_version missing', (m) => delete m.manifest_version, true],
    ['manifest_version a string', (m) => setVersion(m, '2' as never, 2, 2), true],
    ['bundle_format of another tool', (m) => (m.bundle_format = 'something-else'), true],
  ];
  for (const [name, edit, reseal] of cases) {
    const p = writeBundleFile(
      join(dir, `${name.replaceAll(/[^a-z0-9]+/gi, '-')}.tar.zst`),
      forgeBundle(entries, (m) => edit(m), { reseal }),
    );
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
});

test('a v1 manifest that carries v2-only fields is damaged, even with nothing else wrong', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  // a genuine-looking v1 manifest: v2 fields removed one by one except the one under test
  const v1 = (keep: string) => (m: Record<string, unknown>) => {
    setVersion(m, 1);
    const g = m.git as Record<string, unknown>;
    for (const k of ['manifest_seal', 'memdir', 'databases']) if (k !== keep) delete m[k];
    for (const k of ['repository', 'head_ref', 'detached']) if (`git.${k}` !== keep) delete g[k];
  };
  for (const field of ['manifest_seal', 'memdir', 'databases', 'git.repository', 'git.head_ref']) {
    const p = writeBundleFile(
      join(dir, `${field}.tar.zst`),
      forgeBundle(entries, v1(field), { reseal: false }),
    );
    await t.test(field, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
  // without any of them the same bundle is a v1 bundle whose git/memdir.bundle is still v2-only
  const p = writeBundleFile(join(dir, 'none.tar.zst'), forgeBundle(entries, v1('-'), { reseal: false }));
  await refusedEverywhere(a, p, 'BUNDLE_DAMAGED');
  // a signature belongs to v3 only
  const signed = writeBundleFile(
    join(dir, 'sig.tar.zst'),
    forgeBundle(entries, (m) => {
      m.signature = { scheme: 'ed25519', key_id: '0'.repeat(16), public_key: 'x', value: 'AAAA' };
    }),
  );
  await refusedEverywhere(a, signed, 'BUNDLE_DAMAGED');
});

test('a manifest nested 5,000 deep, with duplicate names or non-integer numbers is BUNDLE_DAMAGED (exit 2) from verify, restore and import', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const deep = writeBundleFile(
    join(dir, 'deep.tar.zst'),
    forgeBundle(entries, () => {}, {
      text: (json) => json.replace('{', `{"x": ${'['.repeat(5000)}${']'.repeat(5000)},`),
    }),
  );
  const env = { env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' } };
  const runs: Array<[string, string[]]> = [
    ['verify', ['verify', deep, '--json']],
    ['restore', ['restore', '--agent', 'ana', '--from', deep, '--json', ...a.flags]],
    ['import', ['import', '--agent', 'clone', '--from', deep, '--json', ...a.flags]],
  ];
  const before = liveDigest(a);
  for (const [name, args] of runs) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${name}: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout + r.stderr, /BUNDLE_DAMAGED/, name);
    assert.match(r.stdout + r.stderr, /deeper than 64/, name);
  }
  assert.equal(liveDigest(a), before);

  // Each of these is sealed over the value JSON.parse returns, so only the strict reading refuses it.
  const sealedText = (name: string, rewrite: (json: string) => string) =>
    writeBundleFile(
      join(dir, `${name}.tar.zst`),
      forgeBundle(entries, () => {}, {
        text: (json) => {
          const edited = rewrite(json);
          const parsed = JSON.parse(edited.replace(/^\ufeff/, '')) as Record<string, unknown>;
          delete parsed.manifest_seal;
          return edited.replace(
            /"manifest_seal": "[0-9a-f]{64}"/,
            `"manifest_seal": "${manifestSealOf(parsed)}"`,
          );
        },
      }),
    );
  const cases: Array<[string, (json: string) => string]> = [
    // JSON.parse keeps the last: another reader may take the first
    [
      'duplicate agent_id',
      (json) => json.replace('"agent_id": "ana",', '"agent_id": "bob", "agent_id": "ana",'),
    ],
    ['duplicate unknown member', (json) => json.replace('{', '{"x": 1, "x": 1,')],
    ['a fraction', (json) => json.replace('{', '{"x": 1.5,')],
    ['an integer written as 2.0', (json) => json.replace('"manifest_version": 2', '"manifest_version": 2.0')],
    ['an exponent', (json) => json.replace('{', '{"x": 1e3,')],
    ['an unpaired surrogate', (json) => json.replace('{', '{"x": "\\ud800",')],
    ['a byte order mark', (json) => `\ufeff${json}`],
  ];
  for (const [name, rewrite] of cases) {
    const p = sealedText(name.replaceAll(' ', '-'), rewrite);
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
});

const manifestSealOf = (m: Record<string, unknown>): string =>
  createHash('sha256').update(canonical(m)).digest('hex');
/** Canonical JSON as docs/format.md §5 defines it, written from the doc (not the library's). */
function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

test('a state value nested deeper than a bundle may carry is refused when the snapshot is taken', async (t) => {
  const { a } = await hostileBase(t);
  const before = (await a.snapshotter.list('ana')).map((m) => m.id);
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), `${'['.repeat(65)}${']'.repeat(65)}`);
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'STATE');
    assert.match(err.message, /extract_cursor.*deeper than 64/);
    return true;
  });
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    before,
    'nothing was written',
  );
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), `${'['.repeat(64)}${']'.repeat(64)}`);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal((await verifyBundleFile(meta.bundle_path)).status, 'verified');
});

test('a state value nested thousands of levels deep is refused with STATE like a 65-deep one, by snapshot and by diff against live', async (t) => {
  const { a } = await hostileBase(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const before = (await a.snapshotter.list('ana')).map((m) => m.id);
  const deep = 8000;
  writeFileSync(
    join(a.sqliteDir, 'extract_cursor.json'),
    `{"cursor": ${'['.repeat(deep)}1${']'.repeat(deep)}}`,
  );
  const refused = (err: Error & { code?: string }) => {
    assert.equal(err.code, 'STATE', err.message);
    assert.match(err.message, /extract_cursor.*deeper than 64/);
    return true;
  };
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana' }), refused);
  await assert.rejects(a.snapshotter.diff({ agentId: 'ana', a: s1.id, b: 'live' }), refused);
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    before,
    'nothing was written',
  );
});

test('a label or created_by with a lone surrogate is refused when the snapshot is taken (a manifest cannot carry it)', async (t) => {
  const { a } = await hostileBase(t);
  for (const req of [{ label: 'x\ud800' }, { createdBy: '\udc00' }]) {
    await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana', ...req }), { code: 'INVALID_INPUT' });
  }
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', label: 'paired \u{1F600}' });
  assert.equal((await verifyBundleFile(meta.bundle_path)).status, 'verified');
});

test('order: tar entries out of manifest order and unsorted memory files are damaged in v2; v1 keeps its own order', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const memIdx = entries.map((e, i) => (e.path.startsWith('memory_files/') ? i : -1)).filter((i) => i >= 0);
  assert.ok(memIdx.length >= 2);
  const [i, j] = [memIdx[0]!, memIdx[1]!];
  const swapped = (list: Entries): Entries =>
    list.map((e, k) => (k === i ? list[j]! : k === j ? list[i]! : e));
  // the tar swaps two memory files; the manifest keeps its order
  const tarOrder = writeBundleFile(join(dir, 'tar-order.tar.zst'), repack(swapped(entries)));
  await refusedEverywhere(a, tarOrder, 'BUNDLE_DAMAGED');
  // the manifest lists them unsorted, and the tar follows the manifest (sealed)
  const unsorted = writeBundleFile(
    join(dir, 'unsorted.tar.zst'),
    forgeBundle(swapped(entries), (m) => {
      const arts = m.artifacts as unknown[];
      const [x, y] = [i - 1, j - 1];
      [arts[x], arts[y]] = [arts[y], arts[x]];
    }),
  );
  await refusedEverywhere(a, unsorted, 'BUNDLE_DAMAGED');
  // the git bundle after the memory files
  const late = writeBundleFile(
    join(dir, 'late.tar.zst'),
    forgeBundle(entries, (m, rest) => {
      const arts = m.artifacts as Array<{ path_in_bundle: string }>;
      const g = arts.findIndex((x) => x.path_in_bundle === 'git/memdir.bundle');
      arts.push(...arts.splice(g, 1));
      rest.push(
        ...rest.splice(
          rest.findIndex((e) => e.path === 'git/memdir.bundle'),
          1,
        ),
      );
    }),
  );
  await refusedEverywhere(a, late, 'BUNDLE_DAMAGED');

  // v1 (the original walked in readdir order): unsorted memory files verify, git files before them do not
  const v1 = (arts: ArtifactSpec[]) =>
    writeBundleFile(
      join(dir, `v1-${arts.map((x) => x.path.length).join('-')}.tar.zst`),
      bundleOf(manifestFor(arts, {}, 1), arts, [], { v1: true }),
    );
  const m = (p: string): ArtifactSpec => ({ path: p, kind: 'memory_file', data: p });
  const g = (p: string): ArtifactSpec => ({ path: p, kind: 'git_bundle', data: 'ref: refs/heads/main\n' });
  assert.equal(
    (await verifyBundleFile(v1([m('memory_files/zz.md'), m('memory_files/a.md'), g('git/HEAD')]))).status,
    'verified',
  );
  const r = await verifyBundleFile(v1([g('git/HEAD'), m('memory_files/a.md')]));
  assert.equal(r.status, 'damaged');
  assert.ok(codes(r).includes('BUNDLE_DAMAGED'), JSON.stringify(r.problems));
  // a v1 bundle cannot carry v2's git bundle path, nor a .git segment in memory files (any case)
  for (const arts of [[g('git/memdir.bundle')], [m('memory_files/sub/.GIT/config')]]) {
    const bad = await verifyBundleFile(v1(arts));
    assert.equal(bad.status, 'damaged', JSON.stringify(arts));
  }
});

test('tar: a PAX key given twice, an extended header without its entry, two of a kind, or a GNU long name and a PAX path for one entry are damaged', async (t) => {
  const { a, dir } = await hostileBase(t);
  const arts = [mem('memory_files/MEMORY.md', 'x')];
  const manifest = JSON.stringify(manifestFor(arts));
  const head = { path: 'manifest.json', data: manifest };
  const body = { path: 'placeholder', data: 'x' };
  const long = Buffer.from('memory_files/evil\0');
  const cases: Array<[string, Parameters<typeof tarOf>[0]]> = [
    [
      'path twice',
      [
        head,
        paxEntry([
          ['path', 'memory_files/evil'],
          ['path', 'memory_files/MEMORY.md'],
        ]),
        body,
      ],
    ],
    [
      'two PAX headers',
      [head, paxEntry([['path', 'memory_files/evil']]), paxEntry([['path', 'memory_files/MEMORY.md']]), body],
    ],
    [
      'two GNU long names',
      [
        head,
        { path: '././@LongLink', type: 'L', data: long },
        { path: '././@LongLink', type: 'L', data: Buffer.from('memory_files/MEMORY.md\0') },
        body,
      ],
    ],
    [
      'GNU long name and PAX path',
      [
        head,
        { path: '././@LongLink', type: 'L', data: long },
        paxEntry([['path', 'memory_files/MEMORY.md']]),
        body,
      ],
    ],
    [
      'PAX header before the end',
      [head, { path: 'memory_files/MEMORY.md', data: 'x' }, paxEntry([['comment', 'dangling']])],
    ],
  ];
  for (const [name, entries] of cases) {
    const p = writeBundleFile(join(dir, `${name.replaceAll(' ', '-')}.tar.zst`), zstd(tarOf(entries)));
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
  // one PAX header naming the entry, other records ignored: fine
  const ok = writeBundleFile(
    join(dir, 'ok.tar.zst'),
    zstd(
      tarOf([
        head,
        paxEntry([
          ['mtime', '1.5'],
          ['path', 'memory_files/MEMORY.md'],
        ]),
        body,
      ]),
    ),
  );
  assert.equal((await verifyBundleFile(ok)).status, 'verified');
});

test('sibling: ASCII whitespace and the sha256sum forms are accepted, other bytes around the digest are not', async (t) => {
  const { meta } = await hostileBase(t);
  const hex = meta.file_sha256!;
  for (const [text, ok] of [
    [`${hex}`, true],
    [`  ${hex.toUpperCase()}\r\n`, true],
    [`${hex}  ${meta.id}.tar.zst\n`, true],
    [`${hex} *${meta.id}.tar.zst\n`, true],
    [`\u00a0${hex}`, false],
    [`\ufeff${hex}\n`, false],
    [`${hex}x`, false],
  ] as const) {
    writeFileSync(`${meta.bundle_path}.sha256`, text);
    const r = await verifyBundleFile(meta.bundle_path);
    assert.equal(r.status, ok ? 'verified' : 'damaged', JSON.stringify(text));
    if (!ok) assert.equal(r.sibling, 'unreadable');
  }
});

test('a git pack is indexed beside the stream: after its last byte, git finishes while this thread stays busy', async (t) => {
  // The stream's reader hands on chunks without turning the event loop while the decompression thread
  // is ahead of it (writing memory files, say): git must need nothing more from this process once the
  // pack's last byte is written, or index-pack only finishes after the whole stream.
  const dir = tempDir(t);
  const src = join(dir, 'src');
  git(dir, ['init', '-q', '-b', 'main', src]);
  for (let i = 0; i < 3; i++) {
    writeFileSync(join(src, `f${i}.bin`), randomBytes(256 * 1024)); // incompressible: a pack of ~768 KiB
    git(src, ['add', '.']);
    git(src, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', `c${i}`]);
  }
  const pack = execFileSync('git', ['-C', src, 'pack-objects', '--revs', '--all', '--stdout'], {
    input: '',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.ok(pack.length > 512 * 1024, `a pack of ${pack.length} bytes, larger than a pipe's buffer`);
  const head = git(src, ['rev-parse', 'HEAD']).trim();
  const into = join(dir, 'staged');
  const check = await PackCheck.start('sha1', into, pack.length);
  for (let off = 0; off < pack.length; off += 64 * 1024)
    await check.write(pack.subarray(off, off + 64 * 1024));
  check.endInput();
  // busy without turning the event loop, as the stream is: the index appears all the same
  const packDir = join(into, '.git', 'objects', 'pack');
  const idle = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 60_000;
  let indexed = false;
  while (!indexed && Date.now() < deadline) {
    indexed = readdirSync(packDir).some((n) => n.endsWith('.idx'));
    if (!indexed) Atomics.wait(idle, 0, 0, 20);
  }
  assert.ok(indexed, 'git indexed the pack while this thread never returned to the event loop');
  assert.equal(await check.finish(new Map([['refs/heads/main', head]])), undefined);
  // the bytes were written to a file in the repository's git directory, which does not stay
  assert.deepEqual(
    readdirSync(join(into, '.git')).filter((n) => n.endsWith('.pack')),
    [],
  );
});

test('a manifest read before is taken instead of parsing the same bytes again, and only when the bytes are the same', async (t) => {
  const { a, meta } = await baseBundle(t);
  const known = await readManifestOnly(meta.bundle_path);
  const same = await verifyBundle(meta.bundle_path, { knownManifest: known });
  assert.equal(same.report.status, 'verified', JSON.stringify(same.report.problems));
  assert.equal(same.manifest, known.parsed, 'the same bytes: the parse read before');
  // another snapshot's manifest is never taken for this one's
  const other = await a.snapshotter.snapshot({ agentId: 'ana' });
  const v = await verifyBundle(other.bundle_path, { knownManifest: known });
  assert.equal(v.report.status, 'verified', JSON.stringify(v.report.problems));
  assert.notEqual(v.manifest, known.parsed);
  assert.equal(v.manifest?.manifest.snapshot_id, other.id);
});

test('git that cannot write a history it checks (a full disk) is the host I/O error (exit 1), not damage', {
  skip: process.getuid?.() !== 0 && 'mounting a small tmpfs needs root',
}, async (t) => {
  const a = sampleAgent(t, 'ana', {}, { store: 'bundles' });
  writeFileSync(join(a.memdir, 'blob.md'), randomBytes(3 * 1024 * 1024).toString('base64'));
  git(a.memdir, ['add', '.']);
  git(a.memdir, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'blob']);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  // room for the history written once, not for git's copy of it beside
  const small = mkdtempSync(join(tmpdir(), 'nexo-small-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
  t.after(() => {
    execFileSync('umount', [small]);
    rmSync(small, { recursive: true, force: true });
  });
  const full = await runBuiltCli(['verify', meta.bundle_path, '--json'], {
    env: { TMPDIR: small, NEXO_MEMORY_CONFIG: '' },
  });
  assert.equal(full.code, 1, `${full.stdout}\n${full.stderr}`);
  assert.match(full.stdout + full.stderr, /"code": ?"IO"/);
  assert.doesNotMatch(full.stdout + full.stderr, /BUNDLE_DAMAGED|damaged/);
  // with room, the same bundle verifies
  const ok = await runBuiltCli(['verify', meta.bundle_path, '--json'], { env: { NEXO_MEMORY_CONFIG: '' } });
  assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
});

test('a sink is told once the databases are written and checked, before the memory files (restore starts its database checks there), then once everything is', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 200, embeddings: 20, files: 12 }, { store: 'bundles' });
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const out = tempDir(t);
  let n = 0;
  const seen: { when: string; paths: string[] }[] = [];
  const v = await verifyBundle(meta.bundle_path, {
    sink: {
      target: () => join(out, String(n++)),
      onDatabasesStreamed: (w) => seen.push({ when: 'databases', paths: [...w.keys()] }),
      onStreamed: (w) => seen.push({ when: 'all', paths: [...w.keys()] }),
    },
  });
  assert.equal(v.report.status, 'verified', JSON.stringify(v.report.problems));
  const dbs = v.manifest!.manifest.artifacts.filter((x) => x.kind.startsWith('sqlite_'));
  assert.equal(dbs.length, 4);
  assert.deepEqual(
    seen.map((s) => s.when),
    ['databases', 'all'],
  );
  // at the first call: every database written, no memory file yet
  assert.deepEqual(
    seen[0]!.paths,
    dbs.map((d) => d.path_in_bundle),
  );
  assert.ok(seen[1]!.paths.some((p) => p.startsWith('memory_files/')));
});
