// Test helper: runs the `nexo-memory` command line in this process — `main(argv)` of src/cli/program.ts —
// and returns what a child process would have shown: its exit status, stdout and stderr. Used where the
// process boundary is not what a test is about (it saves a Node start-up and a tsx compile per call);
// tests of exit statuses of a real process, signals, kills, stdin or start-up use the built CLI
// (built-cli.ts). What the CLI writes is captured only inside the run's async context
// (AsyncLocalStorage), so the test runner's own output passes through. Process-wide state a run could
// leak into the next is set for the run and put back after it: the environment, the working directory
// and process.exitCode; a run that leaves a signal handler behind, or a second run started while one is
// going, is an error (the CLI is one process per run; such tests need the built CLI). So is a run that
// leaves a connection it opened keeping the process alive (a NATS client still reconnecting, say): a
// process running that command would never end.

import { AsyncLocalStorage } from 'node:async_hooks';
import { Socket } from 'node:net';
import type { RunResult } from './env.js';

interface Captured {
  stdout: string[];
  stderr: string[];
  /** The TCP connections the run opened (net.Socket#connect inside its async context). */
  sockets: Set<Socket>;
}

const capture = new AsyncLocalStorage<Captured>();
let installed = false;
/** The environment as it was before the in-process run going on, if any (its env is set meanwhile). */
let envOutside: NodeJS.ProcessEnv | undefined;

/**
 * The environment a child process of the tests must start from: this process's, without what an
 * in-process CLI run set for itself. A test file's tests may run at once (a suite's `concurrency`):
 * a child started by one test while another's run had set NEXO_MEMORY_REPO took that repository
 * (stop 64: a CI run's S3 snapshot went to a local repository).
 */
export function outsideEnv(): NodeJS.ProcessEnv {
  return { ...(envOutside ?? process.env) };
}

type Write = NodeJS.WriteStream['write'];

/** Routes writes made inside a capture to it; every other write goes to the stream as before. */
function install(): void {
  if (installed) return;
  installed = true;
  for (const [stream, key] of [
    [process.stdout, 'stdout'],
    [process.stderr, 'stderr'],
  ] as const) {
    const original = stream.write.bind(stream) as Write;
    const write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      const c = capture.getStore();
      if (!c) return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
      const encoding = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : undefined;
      c[key].push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(encoding ?? 'utf8'));
      const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      if (done) process.nextTick(done);
      return true;
    }) as Write;
    stream.write = write;
  }
  const connect = Socket.prototype.connect;
  Socket.prototype.connect = function (this: Socket, ...args: unknown[]) {
    capture.getStore()?.sockets.add(this);
    return (connect as (...a: unknown[]) => Socket).apply(this, args);
  } as typeof connect;
}

/** Whether `s` is open and keeps the process alive (an idle keep-alive socket is unref'd: it does not). */
const holdsProcess = (s: Socket): boolean =>
  !s.destroyed && (s as unknown as { _handle?: { hasRef?(): boolean } })._handle?.hasRef?.() === true;

/**
 * How many of a run's connections still keep the process alive once it is over, after up to a second
 * for those being closed (a socket's handle closes on a later turn of the event loop).
 */
async function connectionsLeft(sockets: Set<Socket>): Promise<number> {
  const deadline = Date.now() + 1000;
  for (;;) {
    const open = [...sockets].filter(holdsProcess).length;
    if (open === 0 || Date.now() > deadline) return open;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
let running = false;

/** Runs `nexo-memory ARGS` in this process with `env` added to the environment and `cwd` as directory. */
export async function runCliInProcess(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  if (running)
    throw new Error(
      'runCliInProcess: one CLI run at a time; concurrent runs need the built CLI (child processes)',
    );
  const command = args.find((a) => !a.startsWith('-'));
  if (command === 'serve' || command === 'mcp')
    throw new Error(
      `runCliInProcess: \`${command}\` owns the process (signals, stdin, exit): use the built CLI`,
    );
  running = true;
  install();
  const { main } = await import('../../src/cli/program.js');
  const savedEnv = { ...process.env };
  envOutside = savedEnv;
  const savedCwd = process.cwd();
  const savedExitCode = process.exitCode;
  const listeners = SIGNALS.map((s) => process.listenerCount(s));
  const out: Captured = { stdout: [], stderr: [], sockets: new Set() };
  try {
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (opts.cwd) process.chdir(opts.cwd);
    process.exitCode = undefined;
    await capture.run(out, () => main([process.execPath, 'nexo-memory', ...args]));
    const code = typeof process.exitCode === 'number' ? process.exitCode : Number(process.exitCode ?? 0);
    const left = SIGNALS.filter((s, i) => process.listenerCount(s) !== listeners[i]);
    const open = await connectionsLeft(out.sockets);
    if (open > 0)
      throw new Error(
        `runCliInProcess: \`${args.join(' ')}\` left ${open} connection(s) open: a process running it would not end`,
      );
    if (left.length > 0)
      throw new Error(`runCliInProcess: \`${args.join(' ')}\` left handlers for ${left.join(', ')}`);
    return { code, stdout: out.stdout.join(''), stderr: out.stderr.join('') };
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
    Object.assign(process.env, savedEnv);
    envOutside = undefined;
    process.chdir(savedCwd);
    process.exitCode = savedExitCode;
    running = false;
  }
}
