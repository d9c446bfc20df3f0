// The program host (src/util/program-host.ts): once up, runs programs from its own small process with
// exactly the arguments, directory, environment and input asked, and answers as a spawn here would (exit
// status, output, a program that cannot start); git runs there with the same results; when the host
// dies, what was running fails clearly and programs are spawned here again; a process that started it
// still ends by itself; and the first worker thread of a process starts it.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { runGit, runGitOnFile, runGitToFile } from '../src/git/git.js';
import { presentObjects } from '../src/git/history.js';
import { IoError, systemError } from '../src/model/errors.js';
import { type ProgramResult, runOnHost, startProgramHost } from '../src/util/program-host.js';
import { REPO } from './helpers/repo.js';

/** A scratch directory removed after the test (not helpers/env.ts: importing it starts the host). */
function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'nexo-host-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const sh = (script: string, input?: string): Promise<ProgramResult> | undefined =>
  runOnHost({
    file: 'sh',
    args: ['-c', script],
    cwd: '/',
    env: { PATH: process.env.PATH, ASKED: 'yes' },
    ...(input === undefined ? {} : { input }),
  });

/** Waits until the host answers runs (a bounded number of short waits: it is a process starting). */
async function hostUp(): Promise<void> {
  for (let i = 0; i < 600 && sh('true') === undefined; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(sh('true'), 'the program host came up');
}

/** Runs `fn` with every file descriptor this process may open taken (EMFILE for the next), then frees them. */
async function withoutDescriptors<T>(fn: () => Promise<T>): Promise<T> {
  const fds: number[] = [];
  try {
    for (;;) fds.push(openSync('/dev/null', 'r'));
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'EMFILE');
  }
  try {
    return await fn();
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

// (first in this file: before any test starts the host, git is spawned by this process)
test('a git that cannot start for want of file descriptors (ulimit -n) is an IO error with errno EMFILE, never an unhandled error event', async (t) => {
  const dir = tempDir(t);
  assert.equal(sh('true'), undefined, 'no host: runGit spawns git here');
  const failed = await withoutDescriptors(() =>
    runGit(dir, ['--version']).then(
      () => undefined,
      (e: unknown) => e,
    ),
  );
  assert.ok(failed instanceof IoError, `an IoError, not ${String(failed)}`);
  assert.equal(failed.errno, 'EMFILE');
  assert.deepEqual(failed.toJSON().details, { errno: 'EMFILE' });
  assert.match(failed.message, /^cannot run git: /);
  // and a failure of a system call that reached the CLI unwrapped (a lazy import's open) is IO too
  const opened = await withoutDescriptors(async () => {
    try {
      openSync(dir, 'r');
    } catch (e) {
      return e;
    }
  });
  const io = systemError(opened);
  assert.equal(io?.code, 'IO');
  assert.equal(io?.errno, 'EMFILE');
  assert.match(io!.message, /^EMFILE: too many open files, open /);
  assert.equal(systemError(new TypeError('a bug')), undefined, 'a bug stays INTERNAL');
});

test('the program host answers a program that cannot start for want of file descriptors with EMFILE, and keeps serving', async () => {
  const main = join(REPO, 'dist', 'src', 'util', 'program-host-main.js');
  // the lowest limit the host starts under (Node needs ~18) leaves too few descriptors for a program's
  // three pipes
  for (let limit = 18; limit <= 64; limit++) {
    const host = spawn('sh', ['-c', `ulimit -n ${limit} && exec "$0" "$1"`, process.execPath, main], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      serialization: 'advanced',
    });
    const ready = await new Promise<boolean>((resolve) => {
      host.on('message', (a: { ready?: boolean }) => a.ready && resolve(true));
      host.on('exit', () => resolve(false));
    });
    if (!ready) continue;
    type Answer = { id?: number; error?: { code?: string }; code?: number };
    const ask = (id: number) =>
      new Promise<Answer | undefined>((resolve) => {
        host.on('message', (a: Answer) => a.id === id && resolve(a));
        host.on('exit', () => resolve(undefined));
        host.send({ id, file: 'sh', args: ['-c', 'exit 0'], cwd: '/', env: { PATH: process.env.PATH } });
      });
    try {
      const first = await ask(1);
      assert.ok(first, `the host (ulimit -n ${limit}) answered instead of dying`);
      assert.equal(first.error?.code, 'EMFILE', `ulimit -n ${limit}: ${JSON.stringify(first)}`);
      const second = await ask(2);
      assert.ok(second, 'the host still serves after a program that could not start');
    } finally {
      host.kill('SIGKILL');
    }
    return;
  }
  assert.fail('the program host never started under ulimit -n 18..64');
});

test('the program host runs programs as asked from its own process, git with the same results as here, and after it dies programs run here again', async (t) => {
  const dir = tempDir(t);
  assert.equal(sh('true'), undefined, 'no host before one is started: the caller spawns');
  const direct = await runGit(dir, ['rev-parse', '--show-toplevel']); // not a repository: exit 128
  // a file as git's input: its name gone once git holds it, here and on the host
  const inputFile = (name: string) => {
    const path = join(dir, name);
    writeFileSync(path, 'some bytes for git\n');
    return path;
  };
  const fromFile = inputFile('here.txt');
  const directFromFile = await runGitOnFile(dir, ['hash-object', '--stdin'], fromFile);
  assert.equal(directFromFile.code, 0, directFromFile.stderr);
  assert.match(directFromFile.stdout, /^[0-9a-f]{40}\n$/);
  assert.equal(existsSync(fromFile), false, 'the input file is removed once git started');
  // git's output into a new file, here and on the host
  const toFile = (name: string) =>
    runGitToFile(dir, ['hash-object', '--stdin'], 'some bytes for git\n', join(dir, name));
  const directToFile = await toFile('out-here');
  assert.deepEqual([directToFile.code, directToFile.stdout], [0, '']);
  assert.equal(readFileSync(join(dir, 'out-here'), 'utf8'), directFromFile.stdout);
  await assert.rejects(toFile('out-here'), /EEXIST/, 'an output file that exists is an error');
  startProgramHost();
  await hostUp();

  const r = await sh('echo "$PPID $ASKED $(pwd)"; echo to-stderr >&2; cat; exit 3', 'the input');
  assert.ok(r);
  const [ppid, asked, cwd] = r.stdout.toString().split('\n')[0]!.split(' ');
  assert.notEqual(Number(ppid), process.pid, 'run from another process');
  assert.equal(asked, 'yes', 'with the environment asked');
  assert.equal(cwd, '/', 'in the directory asked');
  assert.equal(r.stdout.toString().split('\n')[1], 'the input', 'with the input asked');
  assert.equal(r.stderr.toString(), 'to-stderr\n');
  assert.equal(r.code, 3);
  assert.equal(r.signal, null);
  const killed = await sh('kill -9 $$');
  assert.equal(killed?.signal, 'SIGKILL');
  await assert.rejects(
    runOnHost({ file: 'no-such-program-nexo', args: [], cwd: '/', env: {} })!,
    (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
  );

  // git through the host: the same answers as spawned here
  const hosted = await runGit(dir, ['rev-parse', '--show-toplevel']);
  assert.deepEqual(hosted, direct);
  const onHost = inputFile('hosted.txt');
  assert.deepEqual(await runGitOnFile(dir, ['hash-object', '--stdin'], onHost), directFromFile);
  assert.equal(existsSync(onHost), false, 'the input file is removed once git started on the host');
  await assert.rejects(
    runGitOnFile(dir, ['hash-object', '--stdin'], join(dir, 'no-such-input')),
    (e: Error) => /ENOENT/.test(e.message),
    'an input file that is not there: an error, as here',
  );
  assert.deepEqual(await toFile('out-hosted'), directToFile);
  assert.equal(
    readFileSync(join(dir, 'out-hosted'), 'utf8'),
    directFromFile.stdout,
    'written by git on the host',
  );
  await assert.rejects(
    toFile('out-hosted'),
    /EEXIST/,
    'an output file that exists is an error on the host too',
  );
  // bytes as input (not UTF-8: a ref name's bytes), through the host unchanged
  const bytes = Uint8Array.from([0, 255, 10, 200, 0x80]);
  const echoed = await runOnHost({ file: 'cat', args: [], cwd: '/', env: {}, input: bytes });
  assert.deepEqual(new Uint8Array(echoed!.stdout), bytes);
  await runGit(dir, ['init', '-q', 'repo']);
  const branch = await runGit(join(dir, 'repo'), ['symbolic-ref', 'HEAD']);
  assert.equal(branch.code, 0, branch.stderr);
  assert.match(branch.stdout, /^refs\/heads\/\S+\n$/);

  // the host dies while a program runs: that run fails clearly, and later ones are spawned here
  const running = sh('sleep 30');
  assert.ok(running);
  process.kill(Number(ppid), 'SIGKILL');
  await assert.rejects(running, /the program host ended before sh did/);
  assert.equal(sh('true'), undefined, 'no host after it ended');
  const after = await runGit(dir, ['rev-parse', '--show-toplevel']);
  assert.deepEqual(after, direct);
});

/** The URL (JSON-quoted, for a script) of a module of this repository, from this test's directory. */
const moduleUrl = (p: string) => JSON.stringify(pathToFileURL(join(REPO, 'test', p)).href);

/**
 * Runs `script` (CommonJS, under tsx) in a process of its own (the test helpers start the host in this
 * one), which must end by itself and succeed; its output.
 */
function runAlone(script: string): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.signal, null, `the process did not end by itself: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('a process whose first worker thread started the host ends by itself once its own work is done', (t) => {
  const dir = tempDir(t);
  // (a CommonJS -e: the worker's boot is evaluated as the process's input type)
  const script = `
    Promise.all([import(${moduleUrl('../src/util/module-worker.ts')}), import(${moduleUrl('../src/util/program-host.ts')})]).then(async ([mw, ph]) => {
      const w = mw.startModuleWorker(${moduleUrl('../src/util/module-worker.ts')}, 'program-host-main', {});
      w.on('error', () => {}); // not a worker body: it only has to start the host
      const run = () => ph.runOnHost({ file: 'sh', args: ['-c', 'echo $PPID'], cwd: ${JSON.stringify(dir)}, env: process.env });
      for (let i = 0; i < 600 && !run(); i++) await new Promise((r) => setTimeout(r, 50));
      const r = await run();
      process.stdout.write(String(Number(r.stdout) !== process.pid && r.code === 0));
    });`;
  assert.equal(runAlone(script), 'true', 'the worker thread started the host, and a program ran there');
});

test("git's version, asked while the host starts, waits for it and is asked there (no fork of a process whose threads work)", (t) => {
  const dir = tempDir(t);
  // a git on PATH that answers with the pid of the process that started it
  writeFileSync(join(dir, 'git'), '#!/bin/sh\necho "git version $PPID"\n', { mode: 0o755 });
  const script = `
    Promise.all([import(${moduleUrl('../src/git/git.ts')}), import(${moduleUrl('../src/util/program-host.ts')})]).then(async ([git, ph]) => {
      const before = Date.now();
      await ph.programHostSettled(10_000); // no host: at once
      const atOnce = Date.now() - before < 1000;
      ph.startProgramHost();
      const asker = Number(await git.gitVersion());
      process.stdout.write(JSON.stringify({ atOnce, onHost: asker !== process.pid && asker > 1 }));
    });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { atOnce: true, onHost: true });
});

test('which objects a repository has: the same answer for a few ids (runGit: the host when it is up) and for many (a pipe from here), and a git that fails is an error, not an EPIPE', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  spawnSync('git', ['init', '-q', repo]);
  writeFileSync(join(repo, 'a.md'), 'a\n');
  const git = (...args: string[]) =>
    spawnSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
      encoding: 'utf8',
    });
  git('add', 'a.md');
  git('commit', '-q', '-m', 'one');
  const head = git('rev-parse', 'HEAD').stdout.trim();
  const blob = git('rev-parse', 'HEAD:a.md').stdout.trim();
  const absent = (i: number) => i.toString(16).padStart(40, 'f');
  const few = [head, absent(1), blob];
  const many = [...few, ...Array.from({ length: 20_000 }, (_, i) => absent(i + 2))];
  assert.deepEqual([...(await presentObjects(repo, few))].sort(), [blob, head].sort());
  assert.deepEqual([...(await presentObjects(repo, many))].sort(), [blob, head].sort());
  mkdirSync(join(dir, 'not-a-repo'));
  await assert.rejects(presentObjects(join(dir, 'not-a-repo'), few), /git cat-file failed/);
  await assert.rejects(presentObjects(join(dir, 'not-a-repo'), many), /git cat-file failed/);
});

test('a snapshot or restore starts the host at once only for an agent whose live databases are 16 MiB or more', (t) => {
  const dir = tempDir(t);
  const script = `
    const { writeFileSync, truncateSync } = require('node:fs');
    const dir = ${JSON.stringify(dir)};
    Promise.all([import(${moduleUrl('../src/snapshotter/prepare-read.ts')}), import(${moduleUrl('../src/util/program-host.ts')})]).then(async ([pr, ph]) => {
      const seen = [];
      await pr.prepareHostFor(dir + '/none'); // no databases at all
      seen.push(ph.programHostStarted());
      for (const db of ['long_term', 'vector', 'concepts', 'compactions']) writeFileSync(dir + '/' + db + '.sqlite', Buffer.alloc(4096));
      writeFileSync(dir + '/long_term.sqlite-wal', Buffer.alloc(4096));
      await pr.prepareHostFor(dir);
      seen.push(ph.programHostStarted());
      truncateSync(dir + '/vector.sqlite', 8 * 1024 * 1024); // with the others: just under 16 MiB
      truncateSync(dir + '/long_term.sqlite-wal', 8 * 1024 * 1024 - 3 * 4096 - 1);
      await pr.prepareHostFor(dir);
      seen.push(ph.programHostStarted());
      truncateSync(dir + '/long_term.sqlite-wal', 8 * 1024 * 1024 - 3 * 4096); // 16 MiB, the WAL counted
      await pr.prepareHostFor(dir);
      seen.push(ph.programHostStarted());
      process.stdout.write(seen.join(' '));
    });`;
  assert.equal(runAlone(script), 'false false false true');
});

test('a process killed (SIGKILL) while its host runs a program: the host ends, and so do the program and what it started (stop 47)', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const pids = join(dir, 'pids');
  // a program that starts one of its own (the git that git starts, say) and waits for it
  const script = `
    import(${moduleUrl('../src/util/program-host.ts')}).then(async (ph) => {
      ph.startProgramHost();
      const run = () => ph.runOnHost({ file: 'sh', args: ['-c', 'sleep 300 & echo "$! $$ $PPID" > ${pids}; wait'], cwd: '/', env: process.env });
      let r;
      for (let i = 0; i < 600 && !(r = run()); i++) await new Promise((res) => setTimeout(res, 50));
      await r;
    });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  const ended = new Promise((r) => child.on('exit', r));
  let text = '';
  for (let i = 0; i < 600 && !/\n$/.test(text); i++) {
    await new Promise((r) => setTimeout(r, 50));
    text = existsSync(pids) ? readFileSync(pids, 'utf8') : '';
  }
  const [sleep, sh, host] = text.trim().split(' ').map(Number) as [number, number, number];
  assert.ok(sleep && sh && host, `the program wrote its pids: ${JSON.stringify(text)}`);
  child.kill('SIGKILL');
  await ended;
  const running = () => [sleep, sh, host].filter((p) => existsSync(`/proc/${p}`) && !zombie(p));
  for (let i = 0; i < 200 && running().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  const left = running();
  for (const p of left) process.kill(p, 'SIGKILL'); // (only when this test fails)
  assert.deepEqual(left, [], 'no host, program or program of a program outlives the process');
});

/** Whether `pid` has ended and waits only to be reaped. */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
