// Test helper: the real daemon, `nexo-memory serve --listen 127.0.0.1:0` of the built CLI, started for
// one test (killed when it ends) and resolved with its base URL once it prints where it listens.

import { type ChildProcess, spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import { BIN, ensureBuilt } from './built-cli.js';
import { outsideEnv } from './cli.js';
import { stopBeforeCleanup } from './env.js';
import { REPO } from './repo.js';

export interface Served {
  url: string;
  child: ChildProcess;
  /** What the daemon wrote to stderr so far. */
  stderr: () => string;
  /** SIGTERM, resolved with the exit code once it exits. */
  stop: () => Promise<number | null>;
}

export function serveBuilt(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  ensureBuilt();
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
    cwd: REPO,
    env: { ...outsideEnv(), NEXO_MEMORY_TOKEN: '', NEXO_MEMORY_RESTORE_ALLOW: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  // killed, and its exit waited for, before the test's directories (its state root among them) go
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  stopBeforeCleanup(t, kill);
  t.after(kill);
  let out = '';
  let err = '';
  child.stderr!.on('data', (c) => {
    err += c;
  });
  const stop = () => {
    child.kill('SIGTERM');
    return exited;
  };
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
      if (m) resolve({ url: m[1]!, child, stderr: () => err, stop });
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code} before listening: ${err}`)));
  });
}
