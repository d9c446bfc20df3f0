// What export, import and migrate must never do to the store, run through the CLI (`main(argv)` in the
// test process: what is tested is each command's refusal, exit status and output, not a process of its
// own; docs/decisions.md, "The CLI runs in the test process"): export never
// writes into the store (the bundle itself through a symbolic link, a hard link or a symlinked file;
// another bundle; a repository object; a directory swapped for a link while the copy is written, in
// process), nor through a link at the target's name, import never takes an id another snapshot of the agent holds
// (a bundle not migrated yet, or a repository snapshot: a new id, `created_by: import`), migrate's
// refusal of such an id says what to do (no `--force` it does not have), an encrypted bundle goes into
// a plaintext repository neither by import nor by migrate (one rule, one message), and migrate keeps a
// pin's note.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { generateIdentity } from '../src/crypto/age.js';
import { AlreadyExistsError, InvalidInputError } from '../src/model/errors.js';
import { publishExport } from '../src/snapshotter/export.js';
import { copyFileHashed } from '../src/util/hash.js';
import { json, ok } from './helpers/cli-json.js';
import { type Agent, REPO, runCli, sampleAgent, tempDir } from './helpers/env.js';
import { SMALL, snapshotterOf } from './helpers/exchange.js';

const REPO_FORMAT = { NEXO_MEMORY_STORE_FORMAT: 'repository' };
const BUNDLES = { NEXO_MEMORY_STORE_FORMAT: 'bundles' };
const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Commands that take the memory roots (the others take only the state root). */
const LIVE = new Set(['snapshot', 'import']);

/** `nexo-memory ARGS --json` with the agent's roots, in a bundle store unless `env` says otherwise. */
const cli = (a: Agent, args: string[], env: NodeJS.ProcessEnv = BUNDLES) =>
  runCli([...args, ...(LIVE.has(args[0]!) ? a.flags : ['--state-root', a.stateRoot]), '--json'], {
    env,
  });

function snapshotDir(a: Agent): string {
  return join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
}

test('export --force never writes into the store: not through a symlinked directory, a symlinked or hard-linked file, nor over another bundle or a repository object', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const one = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'snapshot one');
  const two = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'snapshot two');
  const dir = snapshotDir(a);
  const files = [one, two].flatMap((s) => [s.bundle_path as string, `${s.bundle_path}.sha256`]);
  const before = files.map(sha);
  const out = tempDir(t, 'nexo-out-');
  const refused = async (to: string, id: string, want: RegExp, env = BUNDLES) => {
    const r = await cli(a, ['export', '--agent', 'ana', '--id', id, '--to', to, '--force'], env);
    assert.equal(r.code, 1, `${to}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.equal(json(r).error.code, 'INVALID_INPUT', to);
    assert.match(json(r).error.message, want, to);
  };

  // the review's case: a symbolic link to the agent's snapshot directory, and `..` through it
  symlinkSync(dir, join(out, 'alias'));
  await refused(`${join(out, 'alias')}/`, one.id, /is the bundle itself/);
  await refused(`${dir}/../ana/`, one.id, /is the bundle itself/);
  // a file that is a symbolic link to the bundle, and a hard link of it
  symlinkSync(one.bundle_path, join(out, 'sym.tar.zst'));
  await refused(join(out, 'sym.tar.zst'), one.id, /is the bundle itself/);
  linkSync(one.bundle_path, join(out, 'hard.tar.zst'));
  await refused(join(out, 'hard.tar.zst'), one.id, /is the bundle itself/);
  // another bundle of the store, through the link: the store is never written into
  await refused(join(out, 'alias', `${two.id}.tar.zst`), one.id, /inside the snapshot store/);
  assert.deepEqual(files.map(sha), before, 'no bundle or sibling of the store changed');

  // a repository object: the state root's repository, through a symbolic link to its snapshots
  const r = ok(await cli(a, ['snapshot', '--agent', 'ana'], REPO_FORMAT), 'repository snapshot');
  symlinkSync(join(a.stateRoot, 'repository'), join(out, 'repo'));
  await refused(join(out, 'repo', 'config', 'config'), r.id, /inside the snapshot store/, REPO_FORMAT);
  ok(await cli(a, ['check'], REPO_FORMAT), 'the repository is intact');

  // an ordinary target outside the store is written, --force over an existing file included
  writeFileSync(join(out, 'plain.tar.zst'), 'old');
  const x = ok(
    await cli(a, ['export', '--agent', 'ana', '--id', one.id, '--to', join(out, 'plain.tar.zst'), '--force']),
    'export outside the store',
  );
  assert.equal(x.copy, 'redacted');
  assert.deepEqual(files.map(sha), before);
});

test('export --force over an earlier export, stopped between the bundle and its sibling, leaves a copy verify calls not fully verified, never damaged (stop 55)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const one = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'first snapshot');
  writeFileSync(join(a.memdir, 'MEMORY.md'), '# changed\n');
  const two = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'second snapshot');
  const to = join(tempDir(t), 'out.tar.zst');
  ok(await cli(a, ['export', '--agent', 'ana', '--id', one.id, '--to', to, '--no-redact']), 'first export');
  const r = await runCli(
    [
      'export',
      '--agent',
      'ana',
      '--id',
      two.id,
      '--to',
      to,
      '--no-redact',
      '--force',
      '--state-root',
      a.stateRoot,
      '--json',
    ],
    { env: { ...BUNDLES, NEXO_MEMORY_FAULTS: 'export.sibling=EIO' } },
  );
  assert.equal(r.code, 1, r.stdout + r.stderr);
  // before stop 55: the new bundle beside the old one's checksum, CHECKSUM_MISMATCH (exit 2)
  const v = await runCli(['verify', to, '--json']);
  assert.equal(v.code, 3, v.stdout + v.stderr);
  assert.doesNotMatch(v.stdout, /CHECKSUM_MISMATCH/);
});

test('import never takes an id a bundle of the agent holds (new id, created_by import); migrate then moves the bundle with its id and its pin note', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'snapshot');
  ok(await cli(a, ['pin', '--agent', 'ana', '--id', s.id, '--note', 'keep']), 'pin');
  const out = tempDir(t, 'nexo-out-');
  const x = ok(await cli(a, ['export', '--agent', 'ana', '--id', s.id, '--to', `${out}/`]), 'export');
  assert.equal(x.copy, 'redacted', 'the copy is another bundle of the same id');

  const imp = ok(
    await cli(a, ['import', '--from', x.path, '--agent', 'ana', '--store-only'], REPO_FORMAT),
    'import --store-only',
  );
  assert.equal(imp.stored, 'new');
  assert.notEqual(imp.snapshot.id, s.id, 'the bundle still holds its id: the import takes a new one');
  assert.equal(imp.snapshot.created_by, 'import');
  assert.equal(imp.imported_from.snapshot_id, s.id);

  // both are listed, the exact bundle by its own id
  const listed = ok(await cli(a, ['list', '--agent', 'ana'], REPO_FORMAT), 'list') as Array<{
    id: string;
    pinned?: boolean;
    pin_note?: string;
    bundle_path: string;
  }>;
  const own = listed.find((m) => m.id === s.id);
  assert.ok(own && !own.bundle_path.includes('#'), 'the bundle is listed by its id');
  assert.ok(listed.some((m) => m.id === imp.snapshot.id));

  // migrate moves the bundle under its id, with its pin and the pin's note (format.md §11)
  const mig = ok(await cli(a, ['migrate'], REPO_FORMAT), 'migrate');
  assert.equal(mig.migrated, 1);
  assert.equal(mig.failed, 0);
  const after = ok(await cli(a, ['list', '--agent', 'ana'], REPO_FORMAT), 'list after') as typeof listed;
  const moved = after.find((m) => m.id === s.id);
  assert.ok(moved?.bundle_path.includes('#') === true && moved, 'now a repository snapshot');
  assert.equal(moved.pinned, true);
  assert.equal(moved.pin_note, 'keep', 'the pin note moved with the pin');
});

test('import of a bundle whose id a repository snapshot holds: a new id made by the import (created_by import, the time of the import)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = ok(await cli(a, ['snapshot', '--agent', 'ana'], REPO_FORMAT), 'snapshot');
  assert.equal(s.created_by, 'cli');
  const out = tempDir(t, 'nexo-out-');
  const x = ok(
    await cli(a, ['export', '--agent', 'ana', '--id', s.id, '--to', `${out}/`], REPO_FORMAT),
    'export',
  );
  const started = Date.now();
  const imp = ok(
    await cli(a, ['import', '--from', x.path, '--agent', 'ana', '--store-only'], REPO_FORMAT),
    'import',
  );
  assert.notEqual(imp.snapshot.id, s.id);
  assert.equal(imp.snapshot.created_by, 'import');
  assert.ok(imp.snapshot.created_at_ms >= started, 'the time of the import');
});

test("migrate's refusal of an id another repository snapshot holds names no --force: it names the import that stores the bundle under a new id, which works", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const r = ok(await cli(a, ['snapshot', '--agent', 'ana'], REPO_FORMAT), 'repository snapshot');
  const out = tempDir(t, 'nexo-out-');
  const x = ok(
    await cli(a, ['export', '--agent', 'ana', '--id', r.id, '--to', `${out}/`, '--no-redact'], REPO_FORMAT),
    'export',
  );
  // the same id as a bundle of the agent's bundle store (a 0.2 store beside the repository)
  const dir = snapshotDir(a);
  mkdirSync(dir, { recursive: true });
  const bundle = join(dir, `${r.id}.tar.zst`);
  copyFileSync(x.path, bundle);
  copyFileSync(x.sibling_path, `${bundle}.sha256`);
  const mig = await cli(a, ['migrate'], REPO_FORMAT);
  assert.equal(mig.code, 6, mig.stdout + mig.stderr);
  const e = json(mig).results[0].error;
  assert.equal(e.code, 'ALREADY_EXISTS');
  assert.doesNotMatch(e.message, /--force/, 'migrate has no --force');
  const command = /`nexo-memory (import --store-only [^`]+)`/.exec(e.message);
  assert.ok(command, e.message);
  assert.ok(existsSync(bundle), 'the bundle is kept');

  // the way out it names: stored under a new id
  const imp = ok(await cli(a, command[1]!.split(' '), REPO_FORMAT), 'the import the message names');
  assert.equal(imp.stored, 'new');
  assert.notEqual(imp.snapshot.id, r.id);
  assert.equal(imp.snapshot.created_by, 'import');
});

test('an encrypted bundle goes into a plaintext repository neither by import (store-only, full, any name) nor by migrate: ENCRYPTION, exit 7, the same message, nothing created', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const id = generateIdentity();
  const key = join(tempDir(t, 'nexo-key-'), 'id.txt');
  writeFileSync(key, `${id.identity}\n`, { mode: 0o600 });
  const s = ok(await cli(a, ['snapshot', '--agent', 'ana', '--encrypt', id.recipient]), 'encrypted snapshot');
  assert.match(s.bundle_path, /\.age$/);
  const renamed = join(tempDir(t, 'nexo-out-'), 'plain-name.tar.zst');
  copyFileSync(s.bundle_path, renamed);
  const messages: string[] = [];
  const refused = async (args: string[], what: string) => {
    const r = await cli(a, [...args, '--decrypt-identity', key], {
      ...REPO_FORMAT,
      NEXO_MEMORY_RESTORE_ALLOW: 'true',
    });
    assert.equal(r.code, 7, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.equal(json(r).error.code, 'ENCRYPTION', what);
    messages.push(json(r).error.message);
  };
  await refused(['import', '--from', s.bundle_path, '--agent', 'ana', '--store-only'], 'store-only');
  await refused(['import', '--from', s.bundle_path, '--agent', 'bob'], 'full import');
  await refused(['import', '--from', renamed, '--agent', 'ana', '--store-only'], 'a name without .age');
  assert.equal(existsSync(join(a.stateRoot, 'repository')), false, 'no repository was created');
  assert.equal(existsSync(join(a.memdirRoot, 'bob')), false, 'nothing restored');

  const mig = await cli(a, ['migrate', '--decrypt-identity', key], REPO_FORMAT);
  assert.equal(mig.code, 7, mig.stdout + mig.stderr);
  const res = json(mig).results[0];
  assert.equal(res.outcome, 'skipped');
  messages.push(res.error.message);
  assert.equal(new Set(messages).size, 1, `one rule, one message: ${messages.join(' | ')}`);
  assert.match(messages[0]!, /encryption\.recipients/, 'the way out');
  assert.ok(existsSync(s.bundle_path), 'the bundle is kept');
});

test('export: a directory swapped for a link into the store while the copy is written never redirects the write; --force replaces a link at the target name, never writes through it (in process, stop 46)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = snapshotterOf(a, { store: 'bundles' });
  const one = await s.snapshot({ agentId: 'ana' });
  const two = await s.snapshot({ agentId: 'ana' });
  const store = snapshotDir(a);
  const storeFiles = () => readdirSync(store).sort();
  const files = [one, two].flatMap((m) => [m.bundle_path, `${m.bundle_path}.sha256`]);
  const before = files.map(sha);
  const listed = storeFiles();
  const out = join(tempDir(t, 'nexo-out-'), 'out');
  mkdirSync(out);
  const moved = `${out}.moved`;
  let during: { store: string[]; held: string[] } | undefined;
  /** An exact copy of bundle one, as export's own copy step writes it; `swap` runs first. */
  const copyAfter = (swap: () => void) => async (tmp: string) => {
    swap();
    const written = await copyFileHashed(one.bundle_path, tmp, { sync: true, mode: 0o600 });
    during = { store: storeFiles(), held: readdirSync(moved) };
    return { ...written, copy: 'exact' as const, encrypted: false, repacked: false };
  };
  // the target is checked (outside the store), then, as the copy begins, its directory is moved away
  // and a link to the store's snapshot directory takes its name; the target names bundle two
  const swapped = publishExport(
    `${two.id}.tar.zst`,
    `${out}/`,
    { source: one.bundle_path, store: s.storeDirs() },
    { force: true },
    copyAfter(() => {
      renameSync(out, moved);
      symlinkSync(store, out);
    }),
  );
  await assert.rejects(swapped, (err: Error) => {
    assert.ok(err instanceof InvalidInputError, String(err));
    assert.match(err.message, /was replaced during the export/);
    return true;
  });
  // the copy went into the directory opened and checked, even while a link to the store had its name
  assert.deepEqual(during?.store, listed, 'the copy never entered the store, not even as a temporary file');
  assert.equal(during?.held.length, 1, `the temporary copy is in the directory held: ${during?.held}`);
  assert.deepEqual(files.map(sha), before, 'no bundle or sibling of the store changed');
  assert.deepEqual(storeFiles(), listed, 'nothing written into the store, no temporary file left there');
  assert.deepEqual(readdirSync(moved), [], 'nor in the directory that was held');

  // the target's last component is a link to a file of the store (not the bundle exported): --force
  // replaces the link itself; the file it named is left as it was
  rmSync(out);
  renameSync(moved, out);
  const link = join(out, 'latest.tar.zst');
  symlinkSync(two.bundle_path, link);
  const r = await s.export('ana', undefined, one.id, link, { force: true, redact: false });
  assert.equal(r.path, link);
  assert.equal(lstatSync(link).isSymbolicLink(), false, 'the link was replaced by the copy');
  assert.equal(sha(link), sha(one.bundle_path));
  assert.deepEqual(files.map(sha), before, 'the linked bundle is unchanged');
  // a dangling link at the target name, without --force: the name is taken (never followed)
  const dangling = join(out, 'dangling.tar.zst');
  symlinkSync(join(out, 'nowhere'), dangling);
  await assert.rejects(s.export('ana', undefined, one.id, dangling, { redact: false }), (err: Error) => {
    assert.ok(err instanceof AlreadyExistsError, String(err));
    return true;
  });
  assert.equal(existsSync(join(out, 'nowhere')), false, 'nothing written through the link');
  assert.deepEqual(storeFiles(), listed);
});

test('export --to - is refused (INVALID_INPUT: no standard output form), writing neither `-` nor `-.sha256` (stop 47)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const snap = ok(await cli(a, ['snapshot', '--agent', 'ana']), 'snapshot');
  const cwd = tempDir(t, 'nexo-cwd-');
  const r = await runCli(
    ['export', '--agent', 'ana', '--id', snap.id, '--to', '-', '--state-root', a.stateRoot, '--json'],
    { env: BUNDLES, cwd },
  );
  assert.equal(r.code, 1, r.stderr);
  assert.equal(json(r).error.code, 'INVALID_INPUT');
  assert.match(json(r).error.message, /no standard output form/);
  assert.deepEqual(readdirSync(cwd), []);
});

test('an export ended by SIGINT, SIGTERM or SIGHUP removes its temporary copy (and its .partial) from the target directory, and still ends by the signal (stop 47)', async (t) => {
  const src = JSON.stringify(pathToFileURL(join(REPO, 'src')).href);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const out = tempDir(t, 'nexo-out-');
    // the export's own steps, its copy step writing the temporaries a re-pack writes, then waiting
    const script = `
      Promise.all([import(${src} + '/snapshotter/export.ts'), import(${src} + '/util/remove-on-stop.ts')]).then(async ([ex, stop]) => {
        stop.armRemoveOnStop(); // as the export command does
        setInterval(() => {}, 1000);
        await ex.publishExport('b.tar.zst', ${JSON.stringify(out)}, { store: [] }, {}, async (tmp) => {
          require('node:fs').writeFileSync(tmp + '.partial', 'half a bundle');
          require('node:fs').writeFileSync(tmp, 'a bundle');
          process.stdout.write('writing\\n');
          await new Promise(() => {});
        });
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    const ended = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
    await new Promise<void>((r) => child.stdout!.on('data', (c: Buffer) => c.includes('writing') && r()));
    assert.equal(readdirSync(out).length, 2, 'the temporaries are there while the copy is written');
    child.kill(signal);
    assert.equal(await ended, signal, 'the process still ends by the signal');
    assert.deepEqual(readdirSync(out), [], `${signal}: nothing is left in the target directory`);
  }
});
