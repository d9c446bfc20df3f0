// List, export and delete: ordering, leftovers that never show, sidecar cache validation, v1 bundles,
// verified no-clobber export, the last-snapshot floor, id prefixes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { humanBytes } from '../src/cli/format.js';
import { LocalSnapshotter, type SnapshotMeta } from '../src/index.js';
import { pinNoteOf } from '../src/store/pins.js';
import { readSibling } from '../src/store/sibling.js';
import { bundleOf, manifestFor, writeBundleFile } from './helpers/bundles.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';

const snapDir = (stateRoot: string, agent = 'ana', tenant = 'default') =>
  join(stateRoot, 'tenants', tenant, 'snapshots', agent);

test('list: newest first, SnapshotMeta shape, the same bundle_sha256 as snapshot() returned', async (t) => {
  const a = sampleAgent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana', label: 'one' });
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const s3 = await a.snapshotter.snapshot({ agentId: 'ana', label: 'three' });
  const list = await a.snapshotter.list('ana');
  assert.deepEqual(
    list.map((m) => m.id),
    [s3.id, s2.id, s1.id],
  );
  assert.deepEqual(list[2], s1);
  assert.equal(list[1]!.label, undefined);
  assert.ok(!('label' in list[1]!), 'absent optionals are omitted, not null');
  assert.deepEqual(await a.snapshotter.list('ana', 'other-tenant'), []);
  assert.deepEqual(await a.snapshotter.list('nobody'), []);
});

test('list never shows leftovers: .partial files, staging dirs, orphan siblings and sidecars, stray files', async (t) => {
  const a = sampleAgent(t);
  const real = await a.snapshotter.snapshot({ agentId: 'ana' });
  const dir = snapDir(a.stateRoot);
  const ghost = '0190c3a2-aaaa-7000-8000-000000000000';
  writeFileSync(join(dir, `${ghost}.tar.zst.partial`), 'half');
  mkdirSync(join(dir, `.staging-${ghost}`));
  writeFileSync(join(dir, `${ghost}.tar.zst.sha256`), 'f'.repeat(64));
  writeFileSync(join(dir, `${ghost}.tar.zst.meta.json`), readFileSync(`${real.bundle_path}.meta.json`));
  writeFileSync(join(dir, 'notes.txt'), 'x');
  writeFileSync(join(dir, 'not-a-uuid.tar.zst'), 'x');
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    [real.id],
  );
});

test('list trusts a sidecar only when it matches the file, and falls back to the bundle head', async (t) => {
  const a = sampleAgent(t);
  const real = await a.snapshotter.snapshot({ agentId: 'ana', label: 'truth' });
  const sidecar = `${real.bundle_path}.meta.json`;
  const forged = JSON.parse(readFileSync(sidecar, 'utf8'));
  forged.meta.label = 'forged';
  forged.meta.bundle_size_bytes += 1; // no longer describes the file
  writeFileSync(sidecar, JSON.stringify(forged));
  assert.equal((await a.snapshotter.list('ana'))[0]!.label, 'truth');
  writeFileSync(sidecar, '{not json');
  assert.equal((await a.snapshotter.list('ana'))[0]!.label, 'truth');
});

test('list reads v1 bundles of the original and warns about unreadable or misplaced ones', async (t) => {
  const a = sampleAgent(t);
  const real = await a.snapshotter.snapshot({ agentId: 'ana' });
  const dir = snapDir(a.stateRoot);
  const arts = [{ path: 'memory_files/MEMORY.md', kind: 'memory_file', data: '# v1\n' }];
  const v1id = '0190c3a2-0000-7000-8000-000000000001';
  writeBundleFile(
    join(dir, `${v1id}.tar.zst`),
    bundleOf(manifestFor(arts, { label: 'from rust', created_at_ms: 1 }, 1), arts, [], { v1: true }),
  );
  writeFileSync(join(dir, '0190c3a2-0000-7000-8000-000000000002.tar.zst'), 'garbage');
  const other = '0190c3a2-0000-7000-8000-000000000003';
  writeBundleFile(
    join(dir, `${other}.tar.zst`),
    bundleOf(manifestFor(arts, { snapshot_id: other, agent_id: 'bob' }), arts),
  );
  const warnings: string[] = [];
  const s = new (a.snapshotter.constructor as typeof import('../src/index.js').LocalSnapshotter)({
    stateRoot: a.stateRoot,
    onWarning: (w) => warnings.push(w),
  });
  const list = await s.list('ana');
  assert.deepEqual(
    list.map((m) => m.id),
    [real.id, v1id],
  );
  assert.equal(list[1]!.bundle_format, 'nexo-memory-snapshot-v1');
  assert.equal(list[1]!.label, 'from rust');
  assert.equal(warnings.length, 2, warnings.join('\n'));
  assert.ok(warnings.some((w) => /unreadable/.test(w)));
  assert.ok(warnings.some((w) => /its manifest names another agent or tenant/.test(w)));
  assert.ok(!warnings.some((w) => /bob/.test(w)), 'whose is not told');
});

test('export copies bundle and sibling, verifies the copy, and never overwrites without --force', async (t) => {
  const a = sampleAgent(t);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const out = tempDir(t);
  // an exact copy (by default what leaves the host is redacted: test/redaction.test.ts)
  const r = await a.snapshotter.export('ana', 'default', meta.id, out, { redact: false });
  assert.equal(r.path, join(out, `${meta.id}.tar.zst`));
  assert.ok(readFileSync(r.path).equals(readFileSync(meta.bundle_path)));
  assert.equal(readFileSync(r.sibling_path, 'utf8'), meta.file_sha256);
  assert.equal(r.verify.status, 'verified');
  assert.deepEqual(readdirSync(out).sort(), [`${meta.id}.tar.zst`, `${meta.id}.tar.zst.sha256`]);
  await assert.rejects(a.snapshotter.export('ana', 'default', meta.id, out), {
    code: 'ALREADY_EXISTS',
    exitCode: 6,
  });
  const named = join(out, 'sub', 'ana.tar.zst');
  await assert.rejects(a.snapshotter.export('ana', 'default', meta.id, named), {
    code: 'INVALID_INPUT',
    message: /directory .*sub does not exist/,
  });
  assert.ok(!existsSync(join(out, 'sub')), 'export never creates directories');
  mkdirSync(join(out, 'sub'));
  writeFileSync(join(out, 'keep.tar.zst'), 'precious');
  await assert.rejects(a.snapshotter.export('ana', 'default', meta.id, join(out, 'keep.tar.zst')), {
    code: 'ALREADY_EXISTS',
  });
  assert.equal(readFileSync(join(out, 'keep.tar.zst'), 'utf8'), 'precious');
  const forced = await a.snapshotter.export(
    'ana',
    'default',
    meta.id.slice(0, 8),
    join(out, 'keep.tar.zst'),
    { force: true, redact: false },
  );
  assert.ok(readFileSync(forced.path).equals(readFileSync(meta.bundle_path)));
  assert.equal((await a.snapshotter.export('ana', 'default', meta.id, named)).path, named);
});

test('export --to: a trailing slash or a directory means into it under the bundle name; a missing directory is an error', async (t) => {
  const a = sampleAgent(t);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const out = tempDir(t);
  const exp = (to: string, ...more: string[]) =>
    runCli(['export', '--agent', 'ana', '--id', meta.id, '--to', to, '--state-root', a.stateRoot, ...more]);
  // the case: a directory that does not exist, named with a trailing slash
  let r = await exp(`${join(out, 'missing', 'dir')}/`, '--json');
  assert.equal(r.code, 1, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'INVALID_INPUT');
  assert.match(r.stderr, /export directory .*missing\/dir does not exist/);
  // a file name in a directory that does not exist
  r = await exp(join(out, 'missing', 'ana.tar.zst'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /directory .*missing does not exist/);
  // a "directory" that is a file
  writeFileSync(join(out, 'plain'), 'x');
  r = await exp(join(out, 'plain', 'ana.tar.zst'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /plain is not a directory/);
  r = await exp(`${join(out, 'plain')}/`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /plain is not a directory/);
  assert.deepEqual(readdirSync(out), ['plain'], 'nothing was created');
  // an existing directory, with or without the slash: the bundle's own name inside it
  mkdirSync(join(out, 'dir'));
  r = await exp(`${join(out, 'dir')}/`, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).path, join(out, 'dir', `${meta.id}.tar.zst`));
  mkdirSync(join(out, 'dir2'));
  r = await exp(join(out, 'dir2'), '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).path, join(out, 'dir2', `${meta.id}.tar.zst`));
  assert.deepEqual(readdirSync(join(out, 'dir')).sort(), [`${meta.id}.tar.zst`, `${meta.id}.tar.zst.sha256`]);
});

test('export refuses a damaged bundle and leaves nothing at the target', async (t) => {
  const a = sampleAgent(t);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
  const bytes = readFileSync(meta.bundle_path);
  const mid = Math.floor(bytes.length / 2);
  bytes[mid] = bytes[mid]! ^ 0xff;
  writeFileSync(meta.bundle_path, bytes);
  writeFileSync(`${meta.bundle_path}.sha256`, createHash('sha256').update(bytes).digest('hex'));
  const out = tempDir(t);
  await assert.rejects(a.snapshotter.export('ana', 'default', meta.id, out), { exitCode: 2 });
  assert.deepEqual(readdirSync(out), []);
});

test('delete removes bundle, sibling and sidecar, refuses the last snapshot, accepts prefixes', async (t) => {
  const a = sampleAgent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana' });
  const s2 = await a.snapshotter.snapshot({ agentId: 'ana' });
  await assert.rejects(a.snapshotter.delete('ana', 'default', '0190c3a2-ffff-7000-8000-000000000000'), {
    code: 'NOT_FOUND',
    exitCode: 5,
  });
  await assert.rejects(a.snapshotter.delete('ana', 'default', 'zz'), { code: 'INVALID_INPUT' });
  const r = await a.snapshotter.delete('ana', 'default', s1.id.toUpperCase());
  assert.equal(r.id, s1.id);
  assert.ok(
    !existsSync(s1.bundle_path) &&
      !existsSync(`${s1.bundle_path}.sha256`) &&
      !existsSync(`${s1.bundle_path}.meta.json`),
  );
  await assert.rejects(a.snapshotter.delete('ana', 'default', s2.id), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'RETENTION');
    assert.match(err.message, /last snapshot/);
    return true;
  });
  assert.ok(existsSync(s2.bundle_path));
});

test('delete can remove a damaged bundle that list cannot read', async (t) => {
  const a = sampleAgent(t);
  const good = await a.snapshotter.snapshot({ agentId: 'ana' });
  const bad = await a.snapshotter.snapshot({ agentId: 'ana' });
  writeFileSync(bad.bundle_path, 'garbage');
  await a.snapshotter.delete('ana', 'default', bad.id);
  assert.ok(!existsSync(bad.bundle_path));
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    [good.id],
  );
});

test('CLI: list, export and delete with JSON output and exit codes', async (t) => {
  const a = sampleAgent(t);
  const s1 = await a.snapshotter.snapshot({ agentId: 'ana', label: 'one' });
  let r = await runCli(['snapshot', '--agent', 'ana', '--json', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  const s2 = JSON.parse(r.stdout) as SnapshotMeta;
  // a bundle is self-contained: what it added to the store is its file (not its small sidecars)
  assert.equal(s2.added_bytes, statSync(s2.bundle_path).size);
  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as SnapshotMeta[];
  assert.deepEqual(
    list.map((m: { id: string }) => m.id),
    [s2.id, s1.id],
  );
  // every entry carries added_bytes, as a repository's do: here the bundle file's size
  for (const m of list) {
    assert.equal(m.added_bytes, statSync(m.bundle_path).size, m.id);
    assert.equal(m.added_bytes, m.bundle_size_bytes, m.id);
  }
  assert.equal(list[0]!.added_bytes, s2.added_bytes, 'snapshot says what list says');
  // argument errors answer --json like every other error
  for (const args of [
    ['list', '--json'],
    ['list', '--agent', 'ana', '--bogus', '--json'],
    ['nope', '--json'],
  ]) {
    r = await runCli([...args, '--state-root', a.stateRoot]);
    assert.equal(r.code, 1, args.join(' '));
    const { error } = JSON.parse(r.stdout);
    assert.equal(error.code, 'INVALID_INPUT', args.join(' '));
    assert.equal(error.exit_code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^error: ${error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'),
    );
  }
  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot]);
  assert.match(r.stdout, /ID\s+CREATED\s+SIZE\s+ADDED/);
  // a bundle is a whole copy: what it added is its file
  const size = humanBytes(s1.bundle_size_bytes);
  assert.match(r.stdout, new RegExp(`^${s1.id}\\s+\\S+\\s+${size}\\s+${size}\\s`, 'm'));
  assert.match(r.stdout, new RegExp(`${s1.id}.*one`));
  const out = tempDir(t);
  r = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    s1.id,
    '--to',
    out,
    '--state-root',
    a.stateRoot,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).verify.status, 'verified');
  r = await runCli(['export', '--agent', 'ana', '--id', s1.id, '--to', out, '--state-root', a.stateRoot]);
  assert.equal(r.code, 6);
  assert.match(r.stderr, /already exists/);
  r = await runCli(['delete', '--agent', 'ana', '--id', s1.id, '--state-root', a.stateRoot]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--yes/);
  r = await runCli([
    'delete',
    '--agent',
    'ana',
    '--id',
    s1.id,
    '--yes',
    '--state-root',
    a.stateRoot,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).id, s1.id);
  r = await runCli(['delete', '--agent', 'ana', '--id', s2.id, '--yes', '--state-root', a.stateRoot]);
  assert.equal(r.code, 6);
  assert.match(r.stderr, /last snapshot/);
  // the human snapshot output names bundle_sha256 for what it is: the digest seal
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--no-progress']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sha256: +[0-9a-f]{64} \(digest seal\)$/m);
  assert.doesNotMatch(r.stdout, /manifest seal/);
});

test('latest names the newest snapshot in either store, for every verb that takes one; none yet is NOT_FOUND', async (t) => {
  const a = sampleAgent(t);
  const s = a.snapshotter;
  await assert.rejects(s.ls('ana', undefined, 'latest'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NOT_FOUND');
    assert.match(err.message, /agent ana \(tenant default\) has no snapshot/);
    return true;
  });
  const older = await s.snapshot({ agentId: 'ana', label: 'bundle' });
  assert.equal((await s.ls('ana', undefined, 'latest')).snapshot_id, older.id);
  // a newer one in the repository of the same state root (a root that was migrated part way)
  const repo = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 5_000,
    store: 'repository',
  });
  t.after(() => repo.close());
  const newest = await repo.snapshot({ agentId: 'ana', label: 'repository' });
  assert.ok(!existsSync(newest.bundle_path), 'in the repository, not a bundle');
  for (const ref of ['latest', 'LATEST', ' latest ']) {
    assert.equal((await s.ls('ana', undefined, ref)).snapshot_id, newest.id, ref);
    assert.equal((await s.findSnapshot('ana', undefined, ref)).repository?.id, newest.id, ref);
  }
  assert.equal((await s.verifySnapshot('ana', undefined, 'latest')).status, 'verified');
  // a repository snapshot by its id in any UUID spelling, as a bundle's (braced, urn:uuid:, bare hex)
  for (const ref of [
    `{${newest.id}}`,
    `urn:uuid:${newest.id.toUpperCase()}`,
    newest.id.replaceAll('-', ''),
  ]) {
    assert.equal((await s.ls('ana', undefined, ref)).snapshot_id, newest.id, ref);
    assert.equal((await s.verifySnapshot('ana', undefined, ref)).snapshot_id, newest.id, ref);
  }
  const cat = await s.cat('ana', undefined, 'latest', 'state/extract_cursor');
  assert.equal(cat.snapshot_id, newest.id);
  assert.equal((await s.pin('ana', undefined, 'latest')).id, newest.id);
  assert.equal(await s.unpin('ana', undefined, 'latest'), true);
  const d = await s.diff({ agentId: 'ana', a: older.id, b: 'latest' });
  assert.equal(d.b, newest.id);
  // the CLI: `restore --from latest` is the snapshot even beside a file named `latest`
  const cwd = tempDir(t);
  writeFileSync(join(cwd, 'latest'), 'not a bundle');
  const r = await runCli(
    ['restore', '--agent', 'ana', '--from', 'latest', '--dry-run', '--json', ...a.flags],
    {
      env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' },
      cwd,
    },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match((JSON.parse(r.stdout) as { bundle: string }).bundle, new RegExp(`#${newest.id}$`));
  // deleting `latest` deletes the newest; then the bundle is the newest
  assert.equal((await s.delete('ana', undefined, 'latest')).id, newest.id);
  assert.equal((await s.ls('ana', undefined, 'latest')).snapshot_id, older.id);
  const v = await runCli([
    'verify',
    '--agent',
    'ana',
    '--id',
    'latest',
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.equal((JSON.parse(v.stdout) as { snapshot_id: string }).snapshot_id, older.id);
});

test('a hostile sidecar (huge, deeply nested, wrong types, a FIFO, a lie about encryption or time) is ignored with a warning: list, verify and gc read the bundle head', async (t) => {
  const a = sampleAgent(t);
  const older = await a.snapshotter.snapshot({ agentId: 'ana', label: 'older' });
  const newer = await a.snapshotter.snapshot({ agentId: 'ana', label: 'newer' });
  const warnings: string[] = [];
  const s = new LocalSnapshotter({ stateRoot: a.stateRoot, onWarning: (w) => warnings.push(w) });
  const sidecar = `${older.bundle_path}.meta.json`;
  const good = readFileSync(sidecar, 'utf8');
  // the listing as the bundle heads give it: the same with the sound sidecar, and no warning
  rmSync(sidecar);
  const truth = await s.list('ana');
  writeFileSync(sidecar, good);
  assert.deepEqual(await s.list('ana'), truth, 'a sound sidecar lists exactly what the head says');
  assert.deepEqual(warnings, []);
  const meta = () => JSON.parse(good) as { sidecar_version: number; meta: Record<string, unknown> };
  const edited = (edit: (m: Record<string, unknown>) => void) => {
    const o = meta();
    edit(o.meta);
    return JSON.stringify(o);
  };
  const deep = 200_000;
  const hostile: Array<[string, () => void]> = [
    [
      'huge',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.pad = 'x'.repeat(8 << 20))),
        ),
    ],
    [
      'deeply nested',
      () =>
        writeFileSync(
          sidecar,
          good.replace('"label":"older"', `"label":${'['.repeat(deep)}${']'.repeat(deep)}`),
        ),
    ],
    [
      'label of the wrong type',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.label = { text: 'x' })),
        ),
    ],
    [
      'schema_versions of the wrong type',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.schema_versions = 'x')),
        ),
    ],
    [
      'encrypted of the wrong type',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.encrypted = 'no')),
        ),
    ],
    [
      'a lie about encryption',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.encrypted = true)),
        ),
    ],
    [
      'a time no date holds',
      () => writeFileSync(sidecar, good.replace(/"created_at_ms":\d+/, '"created_at_ms":1e400')),
    ],
    [
      'an agent id that is no id',
      () =>
        writeFileSync(
          sidecar,
          edited((m) => (m.agent_id = 'ana\n')),
        ),
    ],
    ['a meta that is an array', () => writeFileSync(sidecar, '{"sidecar_version":1,"meta":[]}')],
    [
      'a FIFO',
      () => {
        rmSync(sidecar);
        execFileSync('mkfifo', [sidecar]);
      },
    ],
  ];
  for (const [name, plant] of hostile) {
    plant();
    warnings.length = 0;
    assert.deepEqual(await s.list('ana'), truth, `${name}: the listing is the heads'`);
    assert.equal(warnings.length, 1, `${name}: ${warnings.join('\n')}`);
    assert.match(
      warnings[0]!,
      new RegExp(
        `ignoring the sidecar ${older.id}\\.tar\\.zst\\.meta\\.json \\(.+\\): listed from the bundle's head`,
      ),
    );
    const listed = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--json']);
    assert.equal(listed.code, 0, `${name}: ${listed.stderr}`);
    assert.deepEqual(JSON.parse(listed.stdout), JSON.parse(JSON.stringify(truth)), name);
    assert.match(listed.stderr, /warning: ignoring the sidecar/, name);
    const v = await s.verifySnapshot('ana', undefined, older.id);
    assert.equal(v.status, 'verified', name);
    // retention by the heads' times: the newest is kept, whatever the older one's sidecar says
    const gc = await s.gc({ agentId: 'ana', policy: { keepCount: 1, maxAgeDays: 0 }, dryRun: true });
    const decisions = gc.agents[0]!.decisions.map((d) => [d.id, d.action]);
    assert.deepEqual(
      decisions,
      [
        [newer.id, 'keep'],
        [older.id, 'delete'],
      ],
      name,
    );
    rmSync(sidecar, { force: true });
    writeFileSync(sidecar, good);
  }
});

test('an id prefix matches by one rule in the bundle store and the repository: hex digits, hyphens where the id has them or left out', async (t) => {
  const a = sampleAgent(t, 'ana', {}, { store: 'bundles' });
  const inBundle = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  });
  const inRepository = await repo.snapshot({ agentId: 'ana' });
  assert.ok(!existsSync(inRepository.bundle_path), 'the second one is a repository snapshot');
  const found = async (ref: string) => {
    const f = await repo.findSnapshot('ana', undefined, ref);
    return f.repository ? `repository ${f.repository.id}` : `bundle ${f.bundle.id}`;
  };
  for (const [where, id] of [
    ['bundle', inBundle.id],
    ['repository', inRepository.id],
  ] as const) {
    const digits = id.replaceAll('-', '');
    // (12 digits: the whole time of a UUID v7, which tells these two apart)
    for (const ref of [
      id.slice(0, 13),
      digits.slice(0, 12),
      `${digits.slice(0, 4)}-${digits.slice(4, 12)}`,
      ` ${id.slice(0, 13).toUpperCase()} `,
    ])
      assert.equal(await found(ref), `${where} ${id}`, `${where}: ${JSON.stringify(ref)}`);
    // pin goes through each store's own resolver
    await repo.pin('ana', undefined, digits.slice(0, 12));
    assert.equal((await repo.list('ana')).find((m) => m.id === id)!.pinned, true, where);
  }
  // not a prefix, in either store: fewer than 4 digits (hyphens do not count), other characters
  for (const ref of ['----', 'a---', '01-9', '0190a1b2-c3d4-zz'])
    await assert.rejects(repo.findSnapshot('ana', undefined, ref), { code: 'INVALID_INPUT' }, ref);
});

test('a .sha256 sibling or .pin marker that is a FIFO, a device or too large is unreadable, never waited on nor read whole (stop 48)', async (t) => {
  const dir = tempDir(t);
  const bundle = join(dir, 'b.tar.zst');
  // a FIFO nobody writes: opening it to read waited forever (list, verify)
  execFileSync('mkfifo', [`${bundle}.sha256`, `${bundle}.pin`]);
  assert.deepEqual(await readSibling(bundle), { status: 'unreadable', reason: 'not a regular file' });
  assert.equal(pinNoteOf(bundle), undefined);
  // /dev/zero behind a symlink: read until memory ran out (611 MB before verify gave up)
  rmSync(`${bundle}.sha256`);
  symlinkSync('/dev/zero', `${bundle}.sha256`);
  assert.deepEqual(await readSibling(bundle), { status: 'unreadable', reason: 'not a regular file' });
  rmSync(`${bundle}.sha256`);
  writeFileSync(`${bundle}.sha256`, `${'a'.repeat(64)}  ${'x'.repeat(70 * 1024)}\n`);
  assert.match((await readSibling(bundle)).status, /^unreadable$/);
  writeFileSync(`${bundle}.sha256`, `${'A'.repeat(64)}  b.tar.zst\n`);
  assert.deepEqual(await readSibling(bundle), { status: 'ok', sha256: 'a'.repeat(64) });
  rmSync(`${bundle}.pin`);
  writeFileSync(`${bundle}.pin`, '{"pinned_at_ms":1,"note":"kept"}\n');
  assert.equal(pinNoteOf(bundle), 'kept');
});
