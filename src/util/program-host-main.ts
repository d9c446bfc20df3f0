// Owns the body of the program host (util/program-host.ts): a small child process of its own that runs
// programs (git, sync) for its parent, each request as it arrives (several may run at once), exactly
// as asked (file, arguments, working directory, environment, standard input), and answers with the
// exit status and everything the program wrote. It ends when its parent does (the channel closes),
// and kills first what it still runs: its whole process group, its programs' children too.
// Started by program-host.ts; never imported by anything else.

import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import type { HostAnswer, HostRequest } from './program-host.js';

const answer = (a: HostAnswer): void => {
  if (process.connected) process.send!(a);
};

/** The programs running now. */
const running = new Set<ReturnType<typeof spawn>>();

process.on('message', (r: HostRequest) => {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let failed = false;
  const fail = (e: NodeJS.ErrnoException): void => {
    if (failed) return;
    failed = true;
    answer({ id: r.id, error: { message: e.message, ...(e.code ? { code: e.code } : {}) } });
  };
  let child: ReturnType<typeof spawn>;
  const fds: number[] = [];
  try {
    const inputFd = r.inputFile === undefined ? undefined : openSync(r.inputFile, 'r');
    if (inputFd !== undefined) fds.push(inputFd);
    const outputFd = r.outputFile === undefined ? undefined : openSync(r.outputFile, 'wx', 0o600);
    if (outputFd !== undefined) fds.push(outputFd);
    child = spawn(r.file, r.args, {
      cwd: r.cwd,
      env: r.env,
      stdio: [inputFd ?? (r.input === undefined ? 'ignore' : 'pipe'), outputFd ?? 'pipe', 'pipe'],
    });
  } catch (e) {
    fail(e as NodeJS.ErrnoException); // (a file that cannot be opened; invalid arguments: thrown, not emitted)
    return;
  } finally {
    for (const fd of fds) closeSync(fd); // the program has its own descriptors of them now
  }
  // (a program that could not start never held it: it goes all the same, as a spawn here would do)
  if (r.inputFile !== undefined && r.removeInputFile)
    try {
      rmSync(r.inputFile, { force: true });
    } catch {
      // left for the caller, which removes it once the run is over
    }
  // listened for first: a program that cannot start (EMFILE: out of file descriptors) has no pipes, and
  // its error is this run's answer, never the end of the host
  child.on('error', fail);
  if (child.pid === undefined) return;
  running.add(child);
  child.on('exit', () => running.delete(child));
  child.stdout?.on('data', (c: Buffer) => out.push(c)); // (none when it goes to a file)
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  child.on('close', (code, signal) => {
    if (!failed) answer({ id: r.id, code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
  });
  if (r.input !== undefined) {
    child.stdin!.on('error', () => {}); // EPIPE when the program stops reading: its exit status says why
    child.stdin!.end(r.input);
  }
});
// The parent ended (however: kill -9 too, its channel closes): nothing run for it outlives it. The host
// leads a process group of its own (program-host.ts), where every program it started runs, with the
// processes those started: the whole group goes, the host last. (Started otherwise, as a test does,
// each running program is killed.)
process.on('disconnect', () => {
  for (const c of running) c.kill('SIGKILL');
  try {
    process.kill(-process.pid, 'SIGKILL');
  } catch {
    // not a group leader: no group of its own to end
  }
  process.exit(0);
});
answer({ ready: true });
