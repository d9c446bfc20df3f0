// Owns the rows of the bench's main table (issue 13 and the repository's budgets of issue 11): each
// times what a user runs — the built `nexo-memory` CLI as a whole process — against its shell baseline
// in the same run, in interleaved pairs (ours₁ base₁ ours₂ base₂ …), and reports the medians, the
// median of the paired ratios (the budget applies to it), the budget, pass or fail, and the peak RSS
// of both process trees (cli.ts). Bundle store: snapshot, verify, restore. Start-up: `--version` and
// `list` of an empty store against `node -e 0`. Repository: first snapshot, the 1 % change and a second
// snapshot, `check --read-data`, `list` of the two snapshots (≤ 150 ms), restore (once `restore --from
// <id>` exists), prune, and the auto_pre_mutating_tool cost (preToolRow, reported).

import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SampleAgentPaths } from '../scripts/sample-agent.js';
import { FLAG_RAW, headerLength, parseHeader, TRAILER } from '../src/repository/pack.js';
import { CLI_BIN, jsonOf, type ProcessRun, runBash, runCli, runProcess } from './cli.js';
import { changeRefAgentOnePercent, ONE_PERCENT, type PruneFixture, REF_AGENT } from './fixtures.js';
import {
  discard,
  fmtMB,
  fmtMs,
  median,
  type PairStats,
  pairStats,
  round,
  settle,
  treeSize,
  WORK_DIR,
} from './lib.js';

/**
 * The whole-process budgets and goals of design.md §5 (ratios to the baseline of the same run, median
 * of paired ratios).
 */
export const CLI_BUDGET = {
  snapshot: { budget: 1.1, goal: 1.0 },
  verify: { budget: 1.2, goal: 1.1 },
  restore: { budget: 1.2, goal: 1.0 },
  /** Start-up: ≤ 0.15 s (goal 0.12 s) where `node -e 0` takes 0.10 s, i.e. at most this much over node. */
  startupOverMs: { budget: 50, goal: 20 },
  /** Peak RSS of snapshot, verify and restore, ref-170 and the 2 GB agent. */
  peakRssMB: { budget: 150, goal: 120 },
  repoFirstSnapshot: { budget: 1.1, goal: 1.0 },
  /** Bytes the second snapshot adds after the 1 % change, % of the first snapshot's. */
  repoSecondBytesPct: { budget: 3, goal: 2 },
  /** Time of the second snapshot / time of the first. */
  repoSecondTime: { budget: 0.5, goal: 0.3 },
  repoRestore: { budget: 1.2, goal: 1.0 },
  repoCheckReadData: { budget: 1.2, goal: 1.1 },
  /** `list --agent <id> --json` of a store with 2 snapshots: wall time, ms (issue 13: ≤ 0.15 s). */
  listMs: { budget: 150, goal: 120 },
} as const;

export interface Row {
  /** Key in BENCH_JSON's `pass` map. */
  key: string;
  operation: string;
  ours: string;
  baseline: string;
  ratio: string;
  budget: string;
  /** PASS / FAIL, or `info` (reported, no budget) / `skipped`. */
  result: 'PASS' | 'FAIL' | 'info' | 'skipped';
  peakRss: string;
  data: Record<string, unknown>;
}

/**
 * The baseline snapshot of design.md §5: exactly the tools, sequentially, into a fresh staging dir
 * `$STG` (which must not exist); its callers put the staging in the trash afterwards, untimed.
 */
export const BASELINE_SNAPSHOT = `shopt -s extglob dotglob
rm -f "$OUT"; mkdir -p "$STG/sqlite" "$STG/git" "$STG/memory_files"
for db in long_term vector concepts compactions; do
  sqlite3 "$SQ/$db.sqlite" "VACUUM INTO '$STG/sqlite/$db.sqlite'"
done
git -C "$MEM" bundle create "$STG/git/memdir.bundle" --all 2>/dev/null
cp -r "$MEM"/!(.git) "$STG/memory_files/"
tar -I "zstd -$LEVEL -T2" -cf "$OUT" -C "$STG" .
openssl dgst -sha256 "$OUT" >/dev/null`;

export const BASELINE_VERIFY = `zstd -dc "$BUNDLE" | openssl dgst -sha256 >/dev/null`;

/** The baseline restore of design.md §5 into `$OUT`, which must not exist (`baselineRestore`). */
export const BASELINE_RESTORE = `mkdir "$OUT"
zstd -dc "$BUNDLE" | tar -x -C "$OUT"
for db in long_term vector concepts compactions; do sqlite3 "$OUT/sqlite/$db.sqlite" 'PRAGMA quick_check' >/dev/null; done
git clone -q "$OUT/git/memdir.bundle" "$OUT/clone"`;

/**
 * BASELINE_RESTORE of `bundle`, timed; then (untimed) its output goes to the trash and is written
 * back, so the next timed run neither pays for the baseline's writes nor for deleting its files.
 */
export function baselineRestore(bundle: string): ProcessRun {
  const out = join(WORK_DIR, 'baseline', 'restore');
  return inFreshDir(out, () => runBash(BASELINE_RESTORE, { BUNDLE: bundle, OUT: out }));
}

/**
 * `run` (timed by its caller) with `dir` absent, so the script makes it fresh; then, untimed, `dir` to
 * the trash and every dirty page written back: the next timed run pays for none of it.
 */
function inFreshDir(dir: string, run: () => ProcessRun): ProcessRun {
  discard(dir);
  const r = run();
  discard(dir);
  settle();
  return r;
}

/**
 * What `check --read-data` does to every pack, with the tools: SHA-256 of each pack's bytes (its name
 * is that hash), and every blob decompressed and hashed — the blobs' zstd frames, taken out of the
 * packs beforehand (untimed, checkBaselineInputs) into one stream of frames, through `zstd -dc |
 * openssl dgst`, and the blobs stored raw (they did not compress) through `openssl dgst`. The same
 * bytes are read, decompressed and hashed; ours hashes each blob separately, the baseline one stream.
 */
export const BASELINE_CHECK = `openssl dgst -sha256 "$REPO"/packs/*/* >/dev/null
zstd -dc "$FRAMES" | openssl dgst -sha256 >/dev/null
openssl dgst -sha256 "$RAW" >/dev/null`;

/** The inputs of BASELINE_CHECK: the compressed frames and the raw blobs of every pack, in two files. */
export function checkBaselineInputs(repo: string): { FRAMES: string; RAW: string } {
  const frames: Buffer[] = [];
  const raws: Buffer[] = [];
  const packsDir = join(repo, 'packs');
  for (const sub of readdirSync(packsDir))
    for (const name of readdirSync(join(packsDir, sub))) {
      const pack = readFileSync(join(packsDir, sub, name));
      const n = headerLength(pack.subarray(pack.length - TRAILER), pack.length, name);
      const header = pack.subarray(pack.length - TRAILER - n, pack.length - TRAILER);
      for (const e of parseHeader(header, undefined, name, pack.length - TRAILER - n).entries) {
        const stored = pack.subarray(e.offset, e.offset + e.stored);
        (e.flags & FLAG_RAW ? raws : frames).push(stored);
      }
    }
  const out = {
    FRAMES: join(WORK_DIR, 'baseline', 'check-frames.zst'),
    RAW: join(WORK_DIR, 'baseline', 'check-raw.bin'),
  };
  writeFileSync(out.FRAMES, Buffer.concat(frames));
  writeFileSync(out.RAW, Buffer.concat(raws));
  return out;
}

/**
 * `node -e 0` as a process of its own, started the way the CLI is (GNU time → node, no shell between):
 * the start-up rows' baseline. Through bash it also paid for bash, and inside the bench it took
 * 130-250 ms where the same call alone took 60-100 ms (docs/operations.md, "Deleted files and the bench").
 */
export const nodeBaseline = (env: NodeJS.ProcessEnv = {}): ProcessRun =>
  runProcess(process.execPath, ['-e', '0'], { env });

const ratio = (r: number): string => `${r.toFixed(2)}×`;
const verdict = (ok: boolean): 'PASS' | 'FAIL' => (ok ? 'PASS' : 'FAIL');
export const rssMB = (runs: readonly ProcessRun[]): number | undefined => {
  const v = runs.map((r) => r.peakRssKiB).filter((x): x is number => x !== undefined);
  return v.length === runs.length ? Math.max(...v) / 1024 : undefined;
};
export const fmtRss = (mb: number | undefined): string => (mb === undefined ? 'n/a' : `${mb.toFixed(0)} MB`);

/** `ours` and the baseline in interleaved pairs; `after` runs between pairs (clean-up), untimed. */
export function interleave(
  pairs: number,
  ours: (i: number) => ProcessRun,
  base: (i: number) => ProcessRun,
  log: (s: string) => void,
  label: string,
): { stats: PairStats; ours: ProcessRun[]; base: ProcessRun[] } {
  const o: ProcessRun[] = [];
  const b: ProcessRun[] = [];
  for (let i = 0; i < pairs; i++) {
    o.push(ours(i));
    b.push(base(i));
    log(
      `${label} pair ${i + 1}: ours ${fmtMs(o[i]!.ms)} (${fmtRss(rssMB([o[i]!]))}) | baseline ${fmtMs(b[i]!.ms)} (${fmtRss(rssMB([b[i]!]))})`,
    );
  }
  return {
    stats: pairStats(
      o.map((r) => r.ms),
      b.map((r) => r.ms),
    ),
    ours: o,
    base: b,
  };
}

/** Every run of both sides and their medians, as a row's data records them. */
const timings = (s: PairStats) => ({
  runs_ms: s.ours.map((x) => round(x)),
  baseline_runs_ms: s.base.map((x) => round(x)),
  median_ms: round(s.oursMedian),
  baseline_median_ms: round(s.baseMedian),
});

export function ratioRow(
  key: string,
  operation: string,
  baselineName: string,
  m: { stats: PairStats; ours: ProcessRun[]; base: ProcessRun[] },
  budget: number,
  goal?: number,
  extra: Record<string, unknown> = {},
): Row {
  const s = m.stats;
  const ours = rssMB(m.ours);
  const base = rssMB(m.base);
  return {
    key,
    operation,
    ours: fmtMs(s.oursMedian),
    baseline: `${fmtMs(s.baseMedian)} (${baselineName})`,
    ratio: `${ratio(s.pairedRatio)} (medians ${ratio(s.ratioOfMedians)})`,
    budget: `≤ ${budget}×${goal !== undefined ? ` (goal ${goal}×)` : ''}`,
    result: verdict(s.pairedRatio <= budget),
    peakRss: `${fmtRss(ours)} | ${fmtRss(base)}`,
    data: {
      ...timings(s),
      paired_ratio: round(s.pairedRatio, 3),
      ratio_of_medians: round(s.ratioOfMedians, 3),
      budget,
      ...(goal !== undefined ? { goal } : {}),
      peak_rss_mb: ours === undefined ? null : round(ours),
      baseline_peak_rss_mb: base === undefined ? null : round(base),
      ...extra,
    },
  };
}

/** Peak-RSS check rows of the operations that have a budget on it. */
export function rssRows(rows: readonly Row[], keys: readonly string[]): Row[] {
  return rows
    .filter((r) => keys.includes(r.key) && typeof r.data.peak_rss_mb === 'number')
    .map((r) => {
      const mb = r.data.peak_rss_mb as number;
      return {
        key: `${r.key}Rss`,
        operation: `peak RSS ${r.operation}`,
        ours: `${mb.toFixed(0)} MB`,
        baseline: '—',
        ratio: '—',
        budget: `≤ ${CLI_BUDGET.peakRssMB.budget} MB (goal ${CLI_BUDGET.peakRssMB.goal})`,
        result: verdict(mb <= CLI_BUDGET.peakRssMB.budget),
        peakRss: `${mb.toFixed(0)} MB`,
        data: { peak_rss_mb: mb, budget_mb: CLI_BUDGET.peakRssMB.budget, goal_mb: CLI_BUDGET.peakRssMB.goal },
      };
    });
}

export const rootsOf = (p: SampleAgentPaths): string[] => [
  '--state-root',
  p.stateRoot,
  '--memdir-root',
  p.memdirRoot,
  '--sqlite-root',
  p.sqliteRoot,
];

/** The environment of every CLI run: no config file, the store named, restore allowed. */
export const cliEnv = (store: 'bundles' | 'repository'): NodeJS.ProcessEnv => ({
  NEXO_MEMORY_CONFIG: '',
  NEXO_MEMORY_STORE_FORMAT: store,
  NEXO_MEMORY_RESTORE_ALLOW: 'true',
});

function removeBundle(path: string): void {
  for (const suffix of ['', '.sha256', '.meta.json']) rmSync(`${path}${suffix}`, { force: true });
}

/**
 * Removes what a restore kept (replaced files, the pre-restore tag and memdir) so the next run starts
 * clean: into the trash (`discard`), not deleted, and written back (`settle`).
 */
export function cleanRestore(
  p: SampleAgentPaths,
  report: { backups?: string[]; pre_restore_tag?: string },
): void {
  for (const b of report.backups ?? []) discard(b);
  if (report.pre_restore_tag)
    runBash(`git -C "$MEM" tag -d "$TAG" >/dev/null`, { MEM: p.memdir, TAG: report.pre_restore_tag });
  for (const n of readdirSync(p.memdirRoot)) if (n.includes('.pre-restore-')) discard(join(p.memdirRoot, n));
  settle();
}

/** BASELINE_SNAPSHOT into `out`, timed; then (untimed) its staging to the trash, everything written back. */
export function baselineSnapshot(
  p: { sqliteDir: string; memdir: string },
  out: string,
  level = '3',
): ProcessRun {
  const stg = join(WORK_DIR, 'baseline', 'staging');
  return inFreshDir(stg, () =>
    runBash(BASELINE_SNAPSHOT, { SQ: p.sqliteDir, MEM: p.memdir, STG: stg, OUT: out, LEVEL: level }),
  );
}

export interface BundleRows {
  rows: Row[];
  /** The last bundle, kept for the other sections. */
  bundle: string;
  bundleBytes: number;
  baselineBytes: number;
}

/** snapshot --no-redact, verify and restore --no-auto-pre-snapshot of ref-170 in the bundle store. */
export function bundleRows(p: SampleAgentPaths, pairs: number, log: (s: string) => void): BundleRows {
  const env = cliEnv('bundles');
  const baseOut = join(WORK_DIR, 'baseline', 'out.tar.zst');
  let bundle = '';
  let bundleBytes = 0;
  const snap = interleave(
    pairs,
    () => {
      const r = runCli(
        ['snapshot', '--agent', REF_AGENT, ...rootsOf(p), '--no-redact', '--no-progress', '--json'],
        env,
      );
      const meta = jsonOf<{ bundle_path: string; bundle_size_bytes: number }>(r);
      if (bundle) removeBundle(bundle);
      bundle = meta.bundle_path;
      bundleBytes = meta.bundle_size_bytes;
      return r;
    },
    () => baselineSnapshot(p, baseOut),
    log,
    'snapshot',
  );
  const baselineBytes = statSync(baseOut).size;
  const verify = interleave(
    pairs,
    () => {
      const r = runCli(['verify', bundle, '--no-progress', '--json'], env);
      const status = jsonOf<{ status: string }>(r).status;
      if (status !== 'verified') throw new Error(`verify of ${bundle} said ${status}`);
      return r;
    },
    () => runBash(BASELINE_VERIFY, { BUNDLE: bundle }),
    log,
    'verify',
  );
  const restore = interleave(
    pairs,
    () => {
      const r = runCli(
        [
          'restore',
          '--agent',
          REF_AGENT,
          '--from',
          bundle,
          '--no-auto-pre-snapshot',
          ...rootsOf(p),
          '--no-progress',
          '--json',
        ],
        env,
      );
      cleanRestore(p, jsonOf(r));
      return r;
    },
    () => baselineRestore(bundle),
    log,
    'restore',
  );
  rmSync(baseOut, { force: true });
  const rows = [
    ratioRow(
      'snapshot',
      'snapshot --no-redact',
      'VACUUM INTO ×4, git bundle, cp, tar zstd -3 -T2, openssl',
      snap,
      CLI_BUDGET.snapshot.budget,
      CLI_BUDGET.snapshot.goal,
      { bundle_bytes: bundleBytes, baseline_bytes: baselineBytes },
    ),
    ratioRow(
      'verify',
      'verify',
      'zstd -dc | openssl dgst',
      verify,
      CLI_BUDGET.verify.budget,
      CLI_BUDGET.verify.goal,
    ),
    ratioRow(
      'restore',
      'restore --no-auto-pre-snapshot',
      'unpack, quick_check ×4, git clone',
      restore,
      CLI_BUDGET.restore.budget,
      CLI_BUDGET.restore.goal,
    ),
  ];
  return { rows, bundle, bundleBytes, baselineBytes };
}

/** `--version` and `list` of an empty store against `node -e 0`: what every command pays first. */
export function startupRows(pairs: number, log: (s: string) => void): Row[] {
  const empty = join(WORK_DIR, 'empty-state');
  rmSync(empty, { recursive: true, force: true });
  const node = () => nodeBaseline();
  const cases: Array<[string, string, string[]]> = [
    ['startupVersion', '--version', ['--version']],
    ['startupList', 'list of an empty store', ['list', '--agent', 'ana', '--json', '--state-root', empty]],
  ];
  return cases.map(([key, operation, args]) => {
    const m = interleave(pairs, () => runCli(args, cliEnv('bundles')), node, log, operation);
    const over = m.stats.pairedDiff;
    return {
      key,
      operation,
      ours: fmtMs(m.stats.oursMedian),
      baseline: `${fmtMs(m.stats.baseMedian)} (node -e 0)`,
      ratio: `${over < 0 ? '−' : '+'}${fmtMs(Math.abs(over))} (${ratio(m.stats.pairedRatio)})`,
      budget: `≤ node + ${CLI_BUDGET.startupOverMs.budget} ms (goal +${CLI_BUDGET.startupOverMs.goal})`,
      result: verdict(over <= CLI_BUDGET.startupOverMs.budget),
      peakRss: `${fmtRss(rssMB(m.ours))} | ${fmtRss(rssMB(m.base))}`,
      data: {
        ...timings(m.stats),
        paired_overhead_ms: round(over),
        paired_ratio: round(m.stats.pairedRatio, 3),
        peak_rss_mb: rssMB(m.ours) ?? null,
      },
    };
  });
}

const dirBytes = (dir: string): number => treeSize(dir).bytes;

/**
 * The repository rows, on a working copy of ref-170 (`p`, changed as it goes): per pair a new
 * repository, its first snapshot beside the baseline pipeline, the 1 % change, and the second
 * snapshot; then `check --read-data`, restore from the repository (when it exists) and prune.
 */
export function repositoryRows(
  p: SampleAgentPaths,
  pairs: number,
  prune: PruneFixture | undefined,
  log: (s: string) => void,
): Row[] {
  const env = cliEnv('repository');
  const repo = join(p.stateRoot, 'repository');
  const baseOut = join(WORK_DIR, 'baseline', 'repo-out.tar.zst');
  const snapArgs = [
    'snapshot',
    '--agent',
    REF_AGENT,
    ...rootsOf(p),
    '--no-redact',
    '--no-progress',
    '--json',
  ];
  const seconds: ProcessRun[] = [];
  const firstAdded: number[] = [];
  const secondAdded: number[] = [];
  const growthPct: number[] = [];
  let secondId = '';
  const first = interleave(
    pairs,
    () => {
      discard(repo);
      discard(join(p.stateRoot, 'tenants'));
      const r = runCli(snapArgs, env);
      firstAdded.push(jsonOf<{ added_bytes: number }>(r).added_bytes);
      return r;
    },
    (i) => {
      const b = baselineSnapshot(p, baseOut);
      // the 1 % change and the second snapshot of this pair (outside the pair's timing)
      const before = dirBytes(repo);
      changeRefAgentOnePercent(p, i);
      const r = runCli(snapArgs, env);
      const meta = jsonOf<{ added_bytes: number; id: string }>(r);
      seconds.push(r);
      secondAdded.push(meta.added_bytes);
      growthPct.push(((dirBytes(repo) - before) / before) * 100);
      secondId = meta.id;
      log(
        `  after the 1 % change: second snapshot ${fmtMs(r.ms)}, added ${fmtMB(meta.added_bytes)} ` +
          `(first added ${fmtMB(firstAdded[i]!)}), repository grew ${growthPct[i]!.toFixed(2)} %`,
      );
      return b;
    },
    log,
    'repository first snapshot',
  );
  const rows: Row[] = [
    ratioRow(
      'repoFirstSnapshot',
      'repository: first snapshot',
      'the same pipeline',
      first,
      CLI_BUDGET.repoFirstSnapshot.budget,
      CLI_BUDGET.repoFirstSnapshot.goal,
      { added_bytes: firstAdded },
    ),
  ];
  const bytesPct = median(secondAdded.map((a, i) => (a / firstAdded[i]!) * 100));
  rows.push({
    key: 'repoSecondBytes',
    operation: `repository: bytes added by a snapshot after the 1 % change`,
    ours: `${fmtMB(median(secondAdded))} = ${bytesPct.toFixed(2)} %`,
    baseline: `${fmtMB(median(firstAdded))} (first snapshot)`,
    ratio: `${bytesPct.toFixed(2)} % (repository +${median(growthPct).toFixed(2)} %)`,
    budget: `≤ ${CLI_BUDGET.repoSecondBytesPct.budget} % (goal ${CLI_BUDGET.repoSecondBytesPct.goal} %)`,
    result: verdict(bytesPct <= CLI_BUDGET.repoSecondBytesPct.budget),
    peakRss: '—',
    data: {
      change: ONE_PERCENT,
      first_added_bytes: firstAdded,
      second_added_bytes: secondAdded,
      added_pct: round(bytesPct, 3),
      repository_growth_pct: growthPct.map((x) => round(x, 3)),
    },
  });
  const secondVsFirst = pairStats(
    seconds.map((r) => r.ms),
    first.ours.map((r) => r.ms),
  );
  rows.push(
    ratioRow(
      'repoSecondTime',
      'repository: second snapshot (1 % change)',
      'the first snapshot',
      { stats: secondVsFirst, ours: seconds, base: first.ours },
      CLI_BUDGET.repoSecondTime.budget,
      CLI_BUDGET.repoSecondTime.goal,
    ),
  );
  // check --read-data of the last pair's repository (two snapshots) against the tools on its packs.
  const checkInputs = checkBaselineInputs(repo);
  const check = interleave(
    pairs,
    () => {
      const r = runCli(['check', '--state-root', p.stateRoot, '--read-data', '--json'], env);
      if (!jsonOf<{ ok: boolean }>(r).ok) throw new Error(`check --read-data found problems:\n${r.stdout}`);
      return r;
    },
    () => runBash(BASELINE_CHECK, { REPO: repo, ...checkInputs }),
    log,
    'check --read-data',
  );
  rows.push(
    ratioRow(
      'repoCheckReadData',
      'repository: check --read-data',
      'openssl dgst of the packs; zstd -dc of their frames | openssl dgst',
      check,
      CLI_BUDGET.repoCheckReadData.budget,
      CLI_BUDGET.repoCheckReadData.goal,
      { repository_bytes: dirBytes(repo) },
    ),
  );
  rmSync(checkInputs.FRAMES, { force: true });
  rmSync(checkInputs.RAW, { force: true });
  rows.push(listRow(p, pairs, log));
  if (process.env.NODE_EXTRA_CA_CERTS) rows.push(listWithoutExtraCaRow(p, pairs, log));
  rows.push(repositoryRestoreRow(p, secondId, baseOut, pairs, log));
  rmSync(baseOut, { force: true });
  if (prune) rows.push(pruneRow(prune, Math.min(pairs, 3), log));
  return rows;
}

/**
 * Restore of the second snapshot (the live state) from the repository against the shell restore of the
 * baseline's bundle of the same state — only when `restore --from <snapshot id>` exists: a dry run
 * asks first, and its refusal is printed instead.
 */
function repositoryRestoreRow(
  p: SampleAgentPaths,
  id: string,
  baselineBundle: string,
  pairs: number,
  log: (s: string) => void,
): Row {
  const env = cliEnv('repository');
  const args = ['restore', '--agent', REF_AGENT, '--from', id, ...rootsOf(p), '--no-progress', '--json'];
  const probe = runProcess(process.execPath, [CLI_BIN, ...args, '--dry-run'], { env });
  if (probe.status !== 0) {
    const why = (probe.stderr.trim().split('\n').pop() ?? '').slice(0, 160);
    log(`repository restore: not available yet (restore --from <snapshot id> said: ${why})`);
    return {
      key: 'repoRestore',
      operation: 'repository: restore --from <id>',
      ours: 'not available yet',
      baseline: 'unpack, quick_check ×4, git clone',
      ratio: '—',
      budget: `≤ ${CLI_BUDGET.repoRestore.budget}×`,
      result: 'skipped',
      peakRss: '—',
      data: { skipped: why },
    };
  }
  baselineSnapshot(p, baselineBundle); // the baseline's bundle of the same (live) state
  const m = interleave(
    pairs,
    () => {
      const r = runCli([...args, '--no-auto-pre-snapshot'], env);
      cleanRestore(p, jsonOf(r));
      return r;
    },
    () => baselineRestore(baselineBundle),
    log,
    'repository restore',
  );
  return ratioRow(
    'repoRestore',
    'repository: restore --from <id>',
    'unpack, quick_check ×4, git clone',
    m,
    CLI_BUDGET.repoRestore.budget,
    CLI_BUDGET.repoRestore.goal,
  );
}

/** prune of a copy of the prune fixture (the forgotten snapshots' data): reported, no budget. */
function pruneRow(f: PruneFixture, runs: number, log: (s: string) => void): Row {
  const copy = join(WORK_DIR, 'prune-copy');
  const results: ProcessRun[] = [];
  let report: Record<string, number> = {};
  for (let i = 0; i < runs; i++) {
    discard(copy);
    runBash('cp -a "$SRC" "$DST" && sync', { SRC: f.stateRoot, DST: copy });
    const r = runCli(['prune', '--state-root', copy, '--json'], cliEnv('repository'));
    report = jsonOf(r);
    results.push(r);
    log(
      `prune run ${i + 1}: ${fmtMs(r.ms)} (${fmtRss(rssMB([r]))}), ${fmtMB(report.bytes_freed ?? 0)} freed of ` +
        `${fmtMB(report.bytes_before ?? 0)}, ${report.packs_removed ?? 0} packs removed, ${report.packs_rewritten ?? 0} rewritten`,
    );
  }
  discard(copy);
  const ms = median(results.map((r) => r.ms));
  return {
    key: 'repoPrune',
    operation: `repository: prune (${f.forgotten} of ${f.perAgent} forgotten, ${f.agents} agents)`,
    ours: fmtMs(ms),
    baseline: '—',
    ratio: '—',
    budget: 'report',
    result: 'info',
    peakRss: fmtRss(rssMB(results)),
    data: {
      agents: f.agents,
      snapshots_per_agent: f.perAgent,
      forgotten_per_agent: f.forgotten,
      runs_ms: results.map((r) => round(r.ms)),
      median_ms: round(ms),
      peak_rss_mb: rssMB(results) ?? null,
      report,
    },
  };
}

/**
 * `list --agent ref --json` of the repository holding the two snapshots of the last pair (issue 13's
 * list row; the default store of a new state root is the repository) against `node -e 0`, interleaved;
 * the budget is the wall time itself.
 */
function listRow(p: SampleAgentPaths, pairs: number, log: (s: string) => void): Row {
  const args = ['list', '--agent', REF_AGENT, '--json', '--state-root', p.stateRoot];
  const m = interleave(
    Math.max(pairs, 5),
    () => {
      const r = runCli(args, cliEnv('repository'));
      const n = jsonOf<unknown[]>(r).length;
      if (n < 2) throw new Error(`list found ${n} snapshots, expected at least 2`);
      return r;
    },
    () => nodeBaseline(),
    log,
    'list (2 snapshots)',
  );
  const budget = CLI_BUDGET.listMs;
  return {
    key: 'repoList',
    operation: 'list --agent ref --json (repository, 2 snapshots)',
    ours: fmtMs(m.stats.oursMedian),
    baseline: `${fmtMs(m.stats.baseMedian)} (node -e 0)`,
    ratio: `${(m.stats.oursMedian / budget.budget).toFixed(2)}× of the budget (${ratio(m.stats.pairedRatio)} of node)`,
    budget: `≤ ${budget.budget} ms (goal ${budget.goal} ms)`,
    result: verdict(m.stats.oursMedian <= budget.budget),
    peakRss: `${fmtRss(rssMB(m.ours))} | ${fmtRss(rssMB(m.base))}`,
    data: {
      ...timings(m.stats),
      paired_ratio: round(m.stats.pairedRatio, 3),
      budget_ms: budget.budget,
      goal_ms: budget.goal,
      peak_rss_mb: rssMB(m.ours) ?? null,
    },
  };
}

/**
 * The same `list` and `node -e 0` with NODE_EXTRA_CA_CERTS unset, when the bench's environment sets it:
 * Node then parses that CA bundle at every start (on these machines ~420 M of node -e 0's ~505 M
 * instructions), which the budget row's absolute milliseconds include. Reported, no budget.
 */
function listWithoutExtraCaRow(p: SampleAgentPaths, pairs: number, log: (s: string) => void): Row {
  const args = ['list', '--agent', REF_AGENT, '--json', '--state-root', p.stateRoot];
  const noCa = { NODE_EXTRA_CA_CERTS: undefined };
  const m = interleave(
    Math.max(pairs, 5),
    () => runCli(args, { ...cliEnv('repository'), ...noCa }),
    () => nodeBaseline(noCa),
    log,
    'list (2 snapshots), NODE_EXTRA_CA_CERTS unset',
  );
  return {
    key: 'repoListNoExtraCa',
    operation: 'the same list, NODE_EXTRA_CA_CERTS unset',
    ours: fmtMs(m.stats.oursMedian),
    baseline: `${fmtMs(m.stats.baseMedian)} (node -e 0, unset too)`,
    ratio: `+${fmtMs(m.stats.pairedDiff)} over node`,
    budget: 'report',
    result: 'info',
    peakRss: `${fmtRss(rssMB(m.ours))} | ${fmtRss(rssMB(m.base))}`,
    data: {
      ...timings(m.stats),
      paired_overhead_ms: round(m.stats.pairedDiff),
    },
  };
}

/**
 * `auto_pre_mutating_tool` after a one-row change (bench/pre-tool-cost.ts, compiled, in its own process):
 * wall time and bytes added of the hook's snapshot into the repository (and as a bundle, for contrast).
 * Reported, no budget (issue 11).
 */
export function preToolRow(log: (s: string) => void): Row {
  const script = join(WORK_DIR, 'dist', 'bench', 'pre-tool-cost.js');
  const r = runProcess(process.execPath, [script], {});
  if (r.status !== 0) throw new Error(`pre-tool-cost exited with ${r.status}:\n${r.stderr}`);
  log(r.stdout.trim());
  const line = r.stdout.trim().split('\n').pop() ?? '';
  type Cost = {
    store: string;
    pre_tool_ms: number;
    pre_tool_cpu_ms: number;
    pre_tool_bytes: number;
    agent_bytes: number;
  };
  const rows = JSON.parse(line.replace(/^PRE_TOOL_JSON /, '')) as Cost[];
  const repo = rows.find((x) => x.store === 'repository')!;
  const bundle = rows.find((x) => x.store === 'bundles');
  return {
    key: 'repoPreTool',
    operation: `auto_pre_mutating_tool after a one-row change (agent of ${fmtMB(repo.agent_bytes)})`,
    ours: `${fmtMs(repo.pre_tool_ms)}, ${(repo.pre_tool_bytes / 1024).toFixed(1)} KiB added`,
    baseline: bundle ? `bundle: ${fmtMs(bundle.pre_tool_ms)}, ${fmtMB(bundle.pre_tool_bytes)}` : '—',
    ratio: '—',
    budget: 'report',
    result: 'info',
    peakRss: '—',
    data: { runs: rows },
  };
}
