// Owns running programs (git, sync) from a small process instead of this one once this one has worker
// threads. Starting a program forks the process that starts it: the kernel copies its page tables and
// write-protects all of its memory, and every thread then takes a fault on each page it writes again.
// With a decompression or SQLite thread at work, that made each git spawned from a CLI process cost
// ~25 ms of the main thread and ~20 ms more of the others on these machines (docs/operations.md,
// "stop 28"), against ~5 ms from a small single-threaded process. So the first worker thread of a
// process (util/module-worker.ts) starts the host, a child process of this package
// (program-host-main.ts), and so do long-lived, large processes at once (the daemon, the test
// processes); once it is up, every run that needs no pipe from this process goes there (runOnHost: its
// input as bytes or a file, its output returned or into a new file); until then, and if it ever ends,
// the caller spawns the program itself. The host runs each program exactly as
// asked: the same file, arguments, directory and environment. It never keeps this process alive, and
// ends with it, however it ends (its IPC channel closes), killing what it still runs. It runs in a
// process group of its own, so a signal to this process's group (Ctrl-C in a terminal) reaches only
// this process: the daemon finishes its operation; any other command ends by it, and the host then.

import { type ChildProcess, spawn } from 'node:child_process';
import { isMainThread } from 'node:worker_threads';
import { packageModule, sourceBoot } from './module-worker.js';

/** One program run, as the host receives it. */
export interface HostRequest {
  id: number;
  file: string;
  args: readonly string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Standard input (none: /dev/null, unless `inputFile`). */
  input?: string | Uint8Array;
  /**
   * A file given as standard input instead (opened read-only by the host; failing to open it is the
   * run's error, as a spawn's would be). With `removeInputFile`, its name goes once the program holds it
   * open: its space is freed once the program has read it.
   */
  inputFile?: string;
  removeInputFile?: boolean;
  /** A new file (created private; an existing one is the run's error) that receives standard output. */
  outputFile?: string;
}

/** The host's messages: it is up, a run ended (status and output), or a run could not start. */
export type HostAnswer =
  | { ready: true }
  | { id: number; code: number | null; signal: NodeJS.Signals | null; stdout: Uint8Array; stderr: Uint8Array }
  | { id: number; error: { message: string; code?: string } };

export interface ProgramResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

interface Pending {
  resolve: (r: ProgramResult) => void;
  reject: (e: Error) => void;
  file: string;
}

interface Host {
  child: ChildProcess;
  ready: boolean;
  ended: boolean;
  pending: Map<number, Pending>;
  next: number;
  /** Resolves when the host is up (true) or has ended before it was (false). */
  settled: Promise<boolean>;
}

let host: Host | undefined;

/** Whether this process has started its host (starting, up, or ended since). */
export function programHostStarted(): boolean {
  return host !== undefined;
}

/**
 * Starts the host unless it runs already (or ran and ended: programs are then spawned here), from the
 * main thread only.
 */
export function startProgramHost(): void {
  if (host || !isMainThread) return; // only the main thread runs programs (no worker thread here does)
  const m = packageModule(import.meta.url, 'program-host-main');
  // none of this process's flags (a profiler, tsx's ESM loader); TypeScript source under tsx's require
  // hook, as worker threads load it (module-worker.ts)
  const args = m.tsx === undefined ? [m.path] : ['-e', sourceBoot({ path: m.path, tsx: m.tsx })];
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      // a process group (and session) of its own: a signal to this process's group (Ctrl-C, `kill --
      // -PGID`) is this process's to handle, and must not end the programs of an operation it lets
      // finish; the host still ends with this process, and its programs with it (program-host-main.ts)
      detached: true,
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
  } catch {
    return; // programs are spawned here, as without a host
  }
  let settle: (up: boolean) => void = () => {};
  const settled = new Promise<boolean>((resolve) => {
    settle = resolve;
  });
  const h: Host = { child, ready: false, ended: false, pending: new Map(), next: 1, settled };
  host = h;
  const end = (): void => {
    if (h.ended) return;
    h.ended = true;
    settle(false);
    for (const [, p] of h.pending)
      p.reject(new Error(`the program host ended before ${p.file} did (it may have run)`));
    h.pending.clear();
  };
  child.on('error', end);
  child.on('exit', end);
  child.on('disconnect', end);
  child.on('message', (a: HostAnswer) => {
    if ('ready' in a) {
      h.ready = true;
      settle(true);
      return;
    }
    const p = h.pending.get(a.id);
    if (!p) return;
    h.pending.delete(a.id);
    if (h.pending.size === 0) child.channel?.unref();
    if ('error' in a) {
      const e = new Error(a.error.message) as NodeJS.ErrnoException;
      if (a.error.code) e.code = a.error.code;
      p.reject(e);
      return;
    }
    p.resolve({ code: a.code, signal: a.signal, stdout: toBuffer(a.stdout), stderr: toBuffer(a.stderr) });
  });
  child.unref();
  child.channel?.unref();
}

/**
 * For a run that can wait (nothing waits for its answer yet): resolves once the host is up, or at once
 * when there is none (not started, or ended), or after `maxWaitMs` while it still starts; then runOnHost
 * says where to run. Spawning from this process while its threads work costs them all (see above).
 */
export function programHostSettled(maxWaitMs: number): Promise<void> {
  const h = host;
  if (!h || h.ready || h.ended) return Promise.resolve();
  return new Promise((resolve) => {
    // not unref'd: a run is waiting (the host's channel is, and would not keep this process alive)
    const timer = setTimeout(resolve, maxWaitMs);
    void h.settled.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * Runs `file` with `args` on the host, `input` on its standard input, and resolves with its exit status
 * and output; rejects like a spawn that failed (the error's code, ENOENT say) or when the host ends
 * first. Undefined when the host is not up (not started, starting, or ended): spawn it here instead.
 */
export function runOnHost(run: Omit<HostRequest, 'id'>): Promise<ProgramResult> | undefined {
  const h = host;
  if (!h?.ready || h.ended || !h.child.connected) return undefined;
  const id = h.next++;
  return new Promise((resolve, reject) => {
    h.pending.set(id, { resolve, reject, file: run.file });
    h.child.channel?.ref(); // an answer is awaited: this process waits for it
    h.child.send({ ...run, id } satisfies HostRequest, (err) => {
      if (!err || !h.pending.has(id)) return;
      h.pending.delete(id);
      if (h.pending.size === 0) h.child.channel?.unref();
      reject(err);
    });
  });
}
