// Owns the benchmark's shared helpers: where its work directories live, running a bench child script
// (compiled, plain node) and reading the JSON line it prints, timing a shell pipeline, statistics of
// interleaved pairs and number formatting. No measurements are taken here; run.ts decides what is
// measured (cli.ts runs whole processes).

import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(BENCH_DIR, '..');
/** Gitignored work directory of the benchmark (generated agents, bundles, baseline outputs). */
export const WORK_DIR = join(REPO_ROOT, '.bench');

export const MB = 1024 * 1024;

/**
 * Where trees the bench no longer needs go between timed runs, instead of being deleted. On this
 * machine's ext4 (no journal), creating a file skips every inode of its group deleted in the last
 * 5 s, or 305 s while that inode table block is unwritten (the kernel's `recently_deleted`), one
 * lookup per inode per create: after the bench deleted the previous run's ~4,000 files, the next
 * process's 2,000 creates cost about a second more. No user deletes thousands of files just before
 * each restore; the trash is emptied when the bench ends (docs/operations.md, "Deleted files and the
 * bench").
 */
const TRASH_DIR = join(WORK_DIR, 'trash');
let trashed = 0;

/** Moves `path` (if it exists) into the trash: a rename, so no inode is freed while the bench runs. */
export function discard(path: string): void {
  if (!existsSync(path)) return;
  mkdirSync(TRASH_DIR, { recursive: true });
  renameSync(path, join(TRASH_DIR, `${process.pid}-${trashed++}`));
}

/** When the trash was last emptied (its mtime), so the next run can wait until the kernel forgot. */
const EMPTIED_MARK = join(WORK_DIR, 'trash-emptied');
/** The longest the kernel counts a deleted inode as recently deleted, plus a margin, ms. */
const FORGET_MS = 310_000;

/** Deletes the trash: at the end of a run (and at its start, what an interrupted run left). */
export function emptyTrash(): void {
  if (!existsSync(TRASH_DIR)) return;
  rmSync(TRASH_DIR, { recursive: true, force: true });
  mkdirSync(WORK_DIR, { recursive: true });
  writeFileSync(EMPTIED_MARK, `${new Date().toISOString()}\n`);
}

/**
 * Milliseconds until the last emptying of the trash no longer slows file creation (0 when it never
 * happened or long enough ago): a run started right after another would otherwise pay for its
 * deletions in its first minutes.
 */
export function msUntilTrashForgotten(): number {
  if (!existsSync(EMPTIED_MARK)) return 0;
  return Math.max(0, FORGET_MS - (Date.now() - statSync(EMPTIED_MARK).mtimeMs));
}

/** Writes back every dirty page (`sync`), so one timed run does not pay for what the last one wrote. */
export function settle(): void {
  execFileSync('sync');
}

/** What every child script prints as its last stdout line. */
export interface ChildResult {
  /** Wall time of the measured call only (not process start-up), milliseconds. */
  ms: number;
  /**
   * process.resourceUsage().maxRSS of the child, KiB. On Linux this counts the parent's RSS at fork
   * time too (getrusage keeps the forked copy's high-water mark across execve), so a large parent
   * inflates it; use `hwmKiB`.
   */
  maxRssKiB: number;
  /** VmHWM of the child's own address space (the peak RSS of this process image only), KiB. */
  hwmKiB: number;
  [key: string]: unknown;
}

/** Peak RSS of this process image in KiB: VmHWM from /proc/self/status (maxRSS where there is none). */
export function peakRssKiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
}

/** The RSS fields every child prints. */
export const rssFields = (): { maxRssKiB: number; hwmKiB: number } => ({
  maxRssKiB: process.resourceUsage().maxRSS,
  hwmKiB: peakRssKiB(),
});

/** Compiles src/ and bench/ to plain JavaScript, so children measure the code as shipped (no tsx). */
export function compileForChildren(): void {
  execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'],
    {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    },
  );
}

/** Runs the compiled `bench/<script>` in a fresh plain Node process and returns the JSON it prints last. */
export function runChild(script: string, args: unknown): ChildResult & { processMs: number } {
  const t0 = performance.now();
  const compiled = join(WORK_DIR, 'dist', 'bench', script.replace(/\.ts$/, '.js'));
  const r = spawnSync(process.execPath, [compiled, JSON.stringify(args)], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * MB,
  });
  const processMs = performance.now() - t0;
  if (r.status !== 0) {
    throw new Error(`${script} exited with ${r.status ?? r.signal}:\n${r.stderr}\n${r.stdout}`);
  }
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ...(JSON.parse(last) as ChildResult), processMs };
  } catch {
    throw new Error(`${script} printed no JSON result:\n${r.stdout}\n${r.stderr}`);
  }
}

export function sh(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Timings of interleaved pairs (ours₁ base₁ ours₂ base₂ …), milliseconds. */
export interface PairStats {
  ours: number[];
  base: number[];
  oursMedian: number;
  baseMedian: number;
  /** median(ours) / median(base). */
  ratioOfMedians: number;
  /** Median of ours[i] / base[i]: each pair shares the machine's load of its moment. The budgets apply to it. */
  pairedRatio: number;
  /** Median of ours[i] − base[i], ms. */
  pairedDiff: number;
}

export function pairStats(ours: readonly number[], base: readonly number[]): PairStats {
  if (ours.length !== base.length || ours.length === 0)
    throw new Error('pairStats needs equal, non-empty runs');
  return {
    ours: [...ours],
    base: [...base],
    oursMedian: median(ours),
    baseMedian: median(base),
    ratioOfMedians: median(ours) / median(base),
    pairedRatio: median(ours.map((o, i) => o / base[i]!)),
    pairedDiff: median(ours.map((o, i) => o - base[i]!)),
  };
}

/** Total size of the regular files under `dir`; `skip` names directories not descended into. */
export function treeSize(
  dir: string,
  skip: ReadonlySet<string> = new Set(),
): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) {
      if (skip.has(d.name)) continue;
      const sub = treeSize(p, skip);
      files += sub.files;
      bytes += sub.bytes;
    } else if (d.isFile()) {
      files++;
      bytes += statSync(p).size;
    }
  }
  return { files, bytes };
}

export const fmtMs = (ms: number): string =>
  ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
export const fmtMB = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;
export const fmtKiB = (kib: number): string => `${(kib / 1024).toFixed(1)} MB`;
export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Renders rows as a left-aligned text table with a header rule. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
