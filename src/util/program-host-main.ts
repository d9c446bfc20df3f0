// Owns the body of the program host (util/program-host.ts): a small child process of its own that runs
// programs (git, sync) for its parent, each request as it arrives (several may run at once), exactly
// as asked (file, arguments, working directory, environment, standard input), and answers with the
// exit status and everything the program wrote. It ends when its parent does (the channel closes).
// Started by program-host.ts; never imported by anything else.

import { spawn } from 'node:child_process';
import type { HostAnswer, HostRequest } from './program-host.js';

const answer = (a: HostAnswer): void => {
  if (process.connected) process.send!(a);
};

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
  try {
    child = spawn(r.file, r.args, {
      cwd: r.cwd,
      env: r.env,
      stdio: [r.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  } catch (e) {
    fail(e as NodeJS.ErrnoException); // (invalid arguments: thrown, not emitted)
    return;
  }
  // listened for first: a program that cannot start (EMFILE: out of file descriptors) has no pipes, and
  // its error is this run's answer, never the end of the host
  child.on('error', fail);
  if (child.pid === undefined) return;
  child.stdout!.on('data', (c: Buffer) => out.push(c));
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  child.on('close', (code, signal) => {
    if (!failed) answer({ id: r.id, code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
  });
  if (r.input !== undefined) {
    child.stdin!.on('error', () => {}); // EPIPE when the program stops reading: its exit status says why
    child.stdin!.end(r.input);
  }
});
process.on('disconnect', () => process.exit(0));
answer({ ready: true });
