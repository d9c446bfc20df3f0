// Owns running what a user runs, as a whole process: the built `nexo-memory` CLI (bin/nexo-memory.js,
// which runs dist/, no tsx) and the shell baselines, each timed from spawn to exit, with its peak RSS.
// Peak RSS comes from GNU time (`/usr/bin/time -f %M`): the ru_maxrss that wait4 reports for the
// process it ran, which covers that process and every descendant it waited for (the largest single
// process of the tree: node, or a git or zstd it started). It is read through `time` rather than this
// process's own children's rusage because Linux carries the parent's high-water mark across fork and
// exec: a child of this (large) bench process would report at least the bench's RSS. Without
// /usr/bin/time (Debian package `time`) peak RSS is reported as unknown.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { MB, REPO_ROOT, WORK_DIR } from './lib.js';

const GNU_TIME = '/usr/bin/time';
export const CLI_BIN = join(REPO_ROOT, 'bin', 'nexo-memory.js');

export interface ProcessRun {
  /** Spawn to exit, milliseconds. */
  ms: number;
  /** Peak RSS of the process tree (largest process), KiB; undefined without GNU time. */
  peakRssKiB: number | undefined;
  status: number | null;
  stdout: string;
  stderr: string;
}

export const gnuTimeAvailable = (): boolean => existsSync(GNU_TIME);

/** Builds dist/ as `npm run build` does, so the CLI measured is the code as shipped. */
export function buildCli(): void {
  execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    { cwd: REPO_ROOT, stdio: 'inherit' },
  );
}

/** Runs `cmd args` to completion (through GNU time when present) and returns its time and peak RSS. */
export function runProcess(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): ProcessRun {
  const rssFile = join(WORK_DIR, `rss-${process.pid}.txt`);
  rmSync(rssFile, { force: true });
  const timed = gnuTimeAvailable();
  const t0 = performance.now();
  const r = spawnSync(timed ? GNU_TIME : cmd, timed ? ['-f', '%M', '-o', rssFile, cmd, ...args] : [...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    maxBuffer: 256 * MB,
  });
  const ms = performance.now() - t0;
  let peakRssKiB: number | undefined;
  if (timed) {
    // GNU time writes "Command exited with non-zero status N" before the value when the command fails.
    const last = readFileSync(rssFile, 'utf8').trim().split('\n').pop() ?? '';
    peakRssKiB = /^[0-9]+$/.test(last) ? Number(last) : undefined;
    rmSync(rssFile, { force: true });
  }
  if (r.error) throw r.error;
  return { ms, peakRssKiB, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI and fails loudly unless it exits with `expect` (default 0). */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, expect = 0): ProcessRun {
  const r = runProcess(process.execPath, [CLI_BIN, ...args], { env });
  if (r.status !== expect)
    throw new Error(
      `nexo-memory ${args.join(' ')} exited with ${r.status} (expected ${expect}):\n${r.stderr}\n${r.stdout}`,
    );
  return r;
}

/** The JSON document a `--json` run printed. */
export function jsonOf<T = Record<string, unknown>>(r: ProcessRun): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`expected JSON on stdout, got:\n${r.stdout.slice(0, 2000)}\n${r.stderr.slice(0, 2000)}`);
  }
}

/** Runs a bash script (`set -euo pipefail`) as one process tree, timed like the CLI. */
export function runBash(script: string, env: Record<string, string> = {}): ProcessRun {
  const r = runProcess('bash', ['-c', `set -euo pipefail\n${script}`], { env });
  if (r.status !== 0) throw new Error(`bash pipeline failed (${r.status}):\n${script}\n${r.stderr}`);
  return r;
}
