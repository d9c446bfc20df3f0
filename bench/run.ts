// Owns `npm run bench`: what a user waits for, beside its baseline in the same run. First the main table
// (cli-rows.ts): the built `nexo-memory` CLI as a whole process against its shell baseline, in
// interleaved pairs (5 by default, 3 with `--quick` or BENCH_QUICK=1, BENCH_PAIRS=n), with medians, the
// median of paired ratios (the budget applies to it) and peak RSS of both process trees: snapshot
// --no-redact, verify and restore of ref-170 in the bundle store; start-up (`--version`, `list` of an
// empty store) against `node -e 0`; the repository (first snapshot, the 1 % change and a second
// snapshot, check --read-data, `list` of the two snapshots (≤ 150 ms), restore from the repository,
// prune of 100 small agents × 50 snapshots with 40 of each forgotten (BENCH_PRUNE_AGENTS=n for fewer
// agents), and the auto_pre_mutating_tool cost after a one-row change (bench/pre-tool-cost.ts)); every
// row prints its ratio beside its budget, and the peak-RSS rows check ≤ 150 MB. Then the in-process
// breakdown of the same operations (bench/*-child.ts: capture under the gate, hash, pack), and the
// library-level budgets: an age-encrypted snapshot vs a plaintext one (bench/encrypted.ts), the
// original's zstd -19 recipe, diff of two ref-170 snapshots (the agent is restored afterwards), list of
// 10,000 bundles, a retention sweep over 1,000 agents × 50 bundles, and peak RSS on a ~2 GB agent (CLI,
// bundle store and repository; BENCH_BIG=0 skips it; `node --import tsx bench/big-agent.ts repository`
// runs only its repository half). Section 4b (bench/remote.ts): the remote repository on a 3-node
// JetStream cluster on loopback — snapshot, the 1 % change's upload, restore, list of 10,000 snapshots
// (BENCH_REMOTE_LIST=n; 0 leaves it out), peak RSS (BENCH_REMOTE_PROF=dir: CPU profiles of its runs); BENCH_ONLY=remote runs only it (and the reference agent), BENCH_ONLY=remote-list only its `list` rows. BENCH_ONLY=cli stops after the breakdown; BENCH_ONLY=encrypted runs
// only the encrypted-vs-plaintext case; BENCH_ONLY=find runs only `find` over N snapshots a 1 % change
// apart (bench/find.ts; BENCH_FIND_SCALE, BENCH_FIND_SNAPSHOTS). Prints tables and a last line
// `BENCH_JSON {...}`. Exits 0 even when a
// budget fails, unless BENCH_STRICT=1.

import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { verifyBundleFile } from '../src/verify/verify.js';
import {
  type BigAgentResult,
  type BigRepositoryResult,
  measureBigAgent,
  measureBigAgentRepository,
} from './big-agent.js';
import { buildCli, gnuTimeAvailable } from './cli.js';
import {
  baselineSnapshot,
  bundleRows,
  CLI_BUDGET,
  preToolRow,
  type Row,
  repositoryRows,
  rssRows,
  startupRows,
} from './cli-rows.js';
import { measureEncrypted } from './encrypted.js';
import { FIND_BUDGET_MS, measureFind } from './find.js';
import {
  changeRefAgent,
  checkSidecarFormat,
  clearRefSnapshots,
  copyAgent,
  ensureFallbackListFixture,
  ensureGcFixture,
  ensurePruneFixture,
  ensureRefAgent,
  ensureSidecarListFixture,
  REF_AGENT,
  REF_CHANGE,
  refFingerprint,
  refHead,
  rewindRefBranch,
  sampleBundleOf,
} from './fixtures.js';
import {
  type ChildResult,
  compileForChildren,
  discard,
  emptyTrash,
  fmtKiB,
  fmtMB,
  fmtMs,
  median,
  msUntilTrashForgotten,
  round,
  runChild,
  sh,
  table,
  WORK_DIR,
} from './lib.js';
import { remoteListRows, remoteRows } from './remote.js';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
/** Interleaved pairs of each whole-process row. */
const PAIRS = Number(process.env.BENCH_PAIRS ?? (QUICK ? 3 : 5));
/** Pairs of the start-up rows (cheap, and noisier). */
const STARTUP_PAIRS = Number(process.env.BENCH_PAIRS ?? (QUICK ? 3 : 7));
/** Runs of the in-process measurements. */
const RUNS = QUICK ? 1 : 3;
const PRUNE_AGENTS = Number(process.env.BENCH_PRUNE_AGENTS ?? 100);
const PRUNE_PER_AGENT = 50;
const PRUNE_FORGET = 40;
const LIST_COUNT = 10_000;
/** Snapshots in the remote list fixture (BENCH_REMOTE_LIST=n for fewer; the budget is for 10,000). */
const REMOTE_LIST_COUNT = Number(process.env.BENCH_REMOTE_LIST ?? 10_000);
const REMOTE_OPTIONS = {
  pairs: PAIRS,
  listCount: REMOTE_LIST_COUNT,
  ...(process.env.BENCH_REMOTE_PROF ? { cpuProfDir: process.env.BENCH_REMOTE_PROF } : {}),
};
const FALLBACK_COUNT = 1_000;
const GC_AGENTS = 1_000;
const GC_PER_AGENT = 50;
const GC_POLICY = { keepCount: 30, maxAgeDays: 90 };
/** The real sweep needs a throwaway copy of the fixture; it is skipped when copying takes longer. */
const GC_COPY_LIMIT_MS = 30_000;
/** Budgets of the library-level sections (the whole-process ones are CLI_BUDGET). */
const BUDGET = {
  encryptedVsPlaintext: 1.15,
  recipe19VsSnapshot: 20,
  peakRssMB: CLI_BUDGET.peakRssMB.budget,
  list10kMs: 500,
  diffMs: 1500,
  gcMs: 10_000,
};

const log = (s = ''): void => console.log(s);
const section = (title: string): void => log(`\n== ${title}`);

/** The original's recipe: the baseline pipeline at zstd -19 (once). */
function recipe19(p: { sqliteDir: string; memdir: string }): { ms: number; size: number } {
  const out = join(WORK_DIR, 'baseline', 'out-zstd19.tar.zst');
  const { ms } = baselineSnapshot(p, out, '19');
  const size = Number(sh('stat', ['-c', '%s', out]).trim());
  rmSync(out, { force: true });
  return { ms, size };
}

function removeBundle(path: string): void {
  for (const suffix of ['', '.sha256', '.meta.json']) rmSync(`${path}${suffix}`, { force: true });
}

const readyNote = (reused: boolean, since: number): string =>
  reused ? 'reused from an earlier run' : `generated in ${fmtMs(performance.now() - since)}`;
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');
const ratioStr = (r: number): string => `${r.toFixed(2)}×`;
const fmtRssKiB = (kib: number | undefined): string => (kib === undefined ? 'n/a' : fmtKiB(kib));
const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const rowCells = (r: Row): string[] => [
  r.operation,
  r.ours,
  r.baseline,
  r.ratio,
  r.budget,
  r.result,
  r.peakRss,
];

async function main(): Promise<void> {
  const started = performance.now();
  mkdirSync(join(WORK_DIR, 'baseline'), { recursive: true });
  const cpu = cpus();
  const loadAtStart = load();
  log(`nexo-memory-snapshot bench — ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, node ${process.version}`);
  log(
    `tools: sqlite3 ${sh('sqlite3', ['--version']).split(' ')[0]}, ${sh('zstd', ['--version'])
      .trim()
      .replace(/^\*+ /, '')
      .replace(/, by .*$/, '')}, ` +
      `${sh('git', ['--version']).trim()}, ${sh('openssl', ['version']).trim().split(' (')[0]}`,
  );
  log(
    `load average at start: ${loadAtStart} (other work on the machine slows ours and the baselines alike; ` +
      'the paired ratios absorb most of it, absolute times do not)',
  );
  log(
    `whole-process rows: the built CLI (node bin/nexo-memory.js → dist/) vs the baseline, ${PAIRS} interleaved pairs ` +
      `(start-up: ${STARTUP_PAIRS})${QUICK ? ', quick' : ''}; peak RSS: ` +
      (gnuTimeAvailable()
        ? 'GNU time %M (ru_maxrss of the process tree: its largest process)'
        : 'not measured (no /usr/bin/time)'),
  );
  buildCli();
  compileForChildren();

  if (process.env.BENCH_ONLY === 'find') {
    const scale = Number(process.env.BENCH_FIND_SCALE ?? 1);
    const n = Number(process.env.BENCH_FIND_SNAPSHOTS ?? 200);
    section(
      `find over ${n} repository snapshots of ${scale === 1 ? 'ref-170' : `${scale} × ref-170`}, a 1 % change apart`,
    );
    const f = await measureFind(Number(process.env.BENCH_RUNS ?? RUNS), log);
    const ok = f.medianMs <= FIND_BUDGET_MS;
    log(
      `fixture ${f.fixture.reused ? 'reused' : `built in ${fmtMs(f.fixture.buildMs)}`}, repository ${fmtMB(f.repositoryBytes)}; ` +
        `find ${fmtMs(f.medianMs)} (median of ${f.runsMs.length}; peak RSS ${fmtRssKiB(f.peakRssKiB)}; ` +
        `${f.stats.units_searched} units searched, ${f.stats.units_reused} reused, ${fmtMB(f.stats.bytes_scanned ?? 0)} scanned, ${f.stats.units_skipped} skipped by their sketch, ` +
        `${f.stats.databases_opened} databases opened): budget ≤ ${FIND_BUDGET_MS / 1000} s ${verdict(ok)}` +
        (scale === 1 && n === 200
          ? ''
          : " (not the budget's size: BENCH_FIND_SCALE=1 BENCH_FIND_SNAPSHOTS=200)"),
    );
    log(
      `BENCH_JSON ${JSON.stringify({
        find: {
          scale,
          snapshots: n,
          runs_ms: f.runsMs.map((x) => round(x)),
          median_ms: round(f.medianMs),
          peak_rss_kib: f.peakRssKiB,
          repository_bytes: f.repositoryBytes,
          stats: f.stats,
        },
        pass: { find: ok },
      })}`,
    );
    return;
  }

  if (process.env.BENCH_ONLY === 'remote-list') {
    section(`remote repository: list of ${REMOTE_LIST_COUNT} snapshots on JetStream (3 nodes, R3)`);
    const rows = await remoteListRows({ pairs: PAIRS, listCount: REMOTE_LIST_COUNT }, log);
    report(rows, [], [], started, loadAtStart, {
      bundles: { bundleBytes: 0, baselineBytes: 0 },
      breakdown: [],
      ref: { reused: true, generationMs: 0, sizes: { dbBytes: 0, memdirFiles: 0, commits: 0 } },
    });
    return;
  }

  // 1. Reference agent.
  section('1. reference agent ref-170');
  const ref = ensureRefAgent();
  const z = ref.sizes;
  log(
    ref.reused
      ? `reused .bench/ref-170 (generated earlier in ${fmtMs(ref.generationMs)})`
      : `generated .bench/ref-170 in ${fmtMs(ref.generationMs)}`,
  );
  log(
    table(
      ['component', 'size'],
      [
        ...Object.entries(z.dbs).map(([db, b]) => [`sqlite ${db}`, fmtMB(b)]),
        ['sqlite total (4 DBs)', fmtMB(z.dbBytes)],
        ['memdir working tree', `${z.memdirFiles} files, ${fmtMB(z.memdirBytes)}`],
        ['memdir .git', fmtMB(z.gitDirBytes)],
        ['commits', String(z.commits)],
        ['total (DBs + tree + .git)', fmtMB(z.dbBytes + z.memdirBytes + z.gitDirBytes)],
      ],
    ),
  );
  clearRefSnapshots(ref);
  const snapArgs = {
    stateRoot: ref.paths.stateRoot,
    memdirRoot: ref.paths.memdirRoot,
    sqliteRoot: ref.paths.sqliteRoot,
    agentId: REF_AGENT,
  };
  if (process.env.BENCH_ONLY === 'remote') {
    section(
      `remote repository: JetStream (3 nodes, R3) vs the local repository (${PAIRS} interleaved pairs)`,
    );
    const remote = await remoteRows(ref, REMOTE_OPTIONS, log);
    report(remote, [], [], started, loadAtStart, {
      bundles: { bundleBytes: 0, baselineBytes: 0 },
      breakdown: [],
      ref,
    });
    return;
  }
  if (process.env.BENCH_ONLY === 'encrypted') {
    section('encrypted snapshot vs plaintext snapshot (interleaved)');
    const runs = Number(process.env.BENCH_RUNS ?? RUNS);
    const e = await measureEncrypted(snapArgs, runs, join(WORK_DIR, 'bench-identity.txt'), log);
    const ok = e.ratio <= BUDGET.encryptedVsPlaintext;
    log(
      `encrypted ${fmtMs(median(e.encryptedMs))} vs plaintext ${fmtMs(median(e.plainMs))}: ` +
        `${ratioStr(e.ratio)} (median of paired ratios ${ratioStr(e.pairedRatio)}, CPU time ${ratioStr(e.cpuRatio)}; ` +
        `budget ≤ ${BUDGET.encryptedVsPlaintext}×) ${verdict(ok)}`,
    );
    log(`BENCH_JSON ${JSON.stringify({ encrypted: encryptedSummary(e), pass: { encrypted: ok } })}`);
    return;
  }

  // 2. The CLI against the baselines, bundle store.
  section(`2. bundle store: the CLI vs the baseline (${PAIRS} interleaved pairs each)`);
  const bundles = bundleRows(ref.paths, PAIRS, log);
  const lastBundle = bundles.bundle;

  // 3. Start-up.
  section(`3. start-up: the CLI vs node -e 0 (${STARTUP_PAIRS} interleaved pairs each)`);
  const startup = startupRows(STARTUP_PAIRS, log);

  // 4. Repository.
  section(
    `4. repository: the CLI vs the baseline (${PAIRS} pairs; a working copy of ref-170, changed as it goes`,
  );
  let t0 = performance.now();
  const prune = await ensurePruneFixture(PRUNE_AGENTS, PRUNE_PER_AGENT, PRUNE_FORGET, log);
  log(
    `prune fixture: ${PRUNE_AGENTS} agents × ${PRUNE_PER_AGENT} snapshots, ${PRUNE_FORGET} of each forgotten: ` +
      `${prune.reused ? `reused (generated earlier in ${fmtMs(prune.generationMs)})` : readyNote(false, t0)}`,
  );
  t0 = performance.now();
  const work = copyAgent(ref, 'ref-170-repository');
  log(`working copy of ref-170 made in ${fmtMs(performance.now() - t0)}`);
  const repository = repositoryRows(work, PAIRS, prune, log);
  discard(work.root);
  repository.push(preToolRow(log));

  // 4b. Remote repository (issue 12).
  section(
    `4b. remote repository: JetStream (3 nodes, R3) vs the local repository (${PAIRS} interleaved pairs)`,
  );
  const remote = await remoteRows(ref, REMOTE_OPTIONS, log);
  const mainRows = [...bundles.rows, ...startup, ...repository, ...remote];
  const rssChecks = rssRows(mainRows, [
    'snapshot',
    'verify',
    'restore',
    'repoFirstSnapshot',
    'repoSecondTime',
    'repoCheckReadData',
    'repoRestore',
  ]);

  // 5. Breakdown: the same operations in-process (no start-up, no exit), snapshot by phase.
  section(`5. breakdown: the same operations in-process (${RUNS} runs each, plain node, compiled)`);
  const inSnap: Array<ChildResult & { processMs: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    const r = runChild('snapshot-child.ts', snapArgs);
    removeBundle(String(r.bundlePath));
    inSnap.push(r);
    log(
      `snapshot run ${i + 1}: ${fmtMs(r.ms)} = capture under the gate ${fmtMs(Number(r.captureMs))}, hash ${fmtMs(Number(r.hashMs))}, ` +
        `pack+publish ${fmtMs(Number(r.packMs))}; CPU ${fmtMs(Number(r.cpuMs))}; whole child ${fmtMs(r.processMs)}, VmHWM ${fmtKiB(r.hwmKiB)}`,
    );
  }
  const inVerify = runChild('verify-child.ts', { bundle: lastBundle });
  const inRestore = runChild('restore-child.ts', { ...snapArgs, bundle: lastBundle });
  const idle = runChild('idle-child.ts', {});
  const cliMedian = (key: string): number => Number(mainRows.find((r) => r.key === key)?.data.median_ms);
  const breakdown = [
    ['snapshot', median(inSnap.map((r) => r.ms)), cliMedian('snapshot')],
    ['verify', inVerify.ms, cliMedian('verify')],
    ['restore', inRestore.ms, cliMedian('restore')],
  ] as const;
  log(
    table(
      [
        'operation',
        'in-process call',
        'whole CLI process (median)',
        'difference (start-up, parsing, exit; ± the drift between the runs)',
      ],
      breakdown.map(([op, inMs, cliMs]) => [op, fmtMs(inMs), fmtMs(cliMs), fmtMs(cliMs - inMs)]),
    ),
  );
  log(`idle child (node + the library's modules, doing nothing): VmHWM ${fmtKiB(idle.hwmKiB)}`);

  if (process.env.BENCH_ONLY === 'cli') {
    report(mainRows, rssChecks, [], started, loadAtStart, { bundles, breakdown, ref });
    return;
  }

  // 5b. Encrypted vs plaintext snapshot (age X25519, one recipient), the original's recipe.
  section(`5b. encrypted snapshot vs plaintext snapshot (${RUNS} runs each, interleaved, in-process)`);
  const enc = await measureEncrypted(snapArgs, RUNS, join(WORK_DIR, 'bench-identity.txt'), log);
  log('original recipe (zstd -19 -T2), once …');
  const r19 = recipe19(ref.paths);
  log(`recipe zstd-19: ${fmtMs(r19.ms)}, ${fmtMB(r19.size)}`);
  const snapMs = cliMedian('snapshot');

  // 6. Diff of two real snapshots with a known change between them; the agent is restored after.
  section(`6. diff of two snapshots (${RUNS} runs, in-process)`);
  const diffs: Array<ChildResult & { processMs: number }> = [];
  const fingerprint = refFingerprint(ref.paths);
  const headBefore = refHead(ref.paths);
  const snapA = runChild('snapshot-child.ts', snapArgs);
  let snapB: (ChildResult & { processMs: number }) | undefined;
  let restoreBackMs = 0;
  try {
    changeRefAgent(ref.paths);
    snapB = runChild('snapshot-child.ts', snapArgs);
    log(
      `snapshots ${String(snapA.id)} → ${String(snapB.id)}; between them: long_term ${REF_CHANGE.rowsInserted} rows ` +
        `inserted, ${REF_CHANGE.rowsUpdated} updated, ${REF_CHANGE.rowsDeleted} deleted; ` +
        `${REF_CHANGE.filesAppended} memdir files appended to, ${REF_CHANGE.commits} commit`,
    );
    const want = {
      commits_between: REF_CHANGE.commits,
      commits_reverse: 0,
      files_changed: REF_CHANGE.filesAppended,
      insertions: REF_CHANGE.filesAppended,
      deletions: 0,
      long_term_rows_added: REF_CHANGE.rowsInserted,
      long_term_rows_removed: REF_CHANGE.rowsDeleted,
      long_term_rows_changed: REF_CHANGE.rowsUpdated,
      other_db_rows_differing: 0,
      schema_changes: 0,
      state_changed: false,
    };
    for (let i = 0; i < RUNS; i++) {
      const r = runChild('diff-child.ts', { ...snapArgs, a: snapA.id, b: snapB.id });
      const wrong = Object.entries(want).filter(([k, v]) => r[k] !== v);
      if (wrong.length > 0)
        throw new Error(
          `diff found ${wrong.map(([k, v]) => `${k} ${String(r[k])} (expected ${String(v)})`).join(', ')}`,
        );
      diffs.push(r);
      log(
        `run ${i + 1}: ${fmtMs(r.ms)}, peak RSS ${fmtKiB(r.hwmKiB)} (maxRSS ${fmtKiB(r.maxRssKiB)}); ` +
          `${String(r.commits_between)} commit, ${String(r.files_changed)} files changed (+${String(r.insertions)} ` +
          `−${String(r.deletions)}), long_term rows +${String(r.long_term_rows_added)} ` +
          `−${String(r.long_term_rows_removed)} ~${String(r.long_term_rows_changed)}`,
      );
    }
  } finally {
    // Back to the state before the change, so the next run starts from the same agent.
    rewindRefBranch(ref.paths, headBefore);
    restoreBackMs = runChild('restore-child.ts', { ...snapArgs, bundle: snapA.bundlePath }).ms;
    if (snapB) removeBundle(String(snapB.bundlePath));
    removeBundle(String(snapA.bundlePath));
  }
  const restoredPrint = refFingerprint(ref.paths);
  if (restoredPrint !== fingerprint)
    throw new Error(`ref agent not back to its state before the diff:\n${fingerprint}\n${restoredPrint}`);
  log(
    `ref agent restored to the first snapshot in ${fmtMs(restoreBackMs)} (memdir refs, tree and memories as before)`,
  );
  const diffMs = median(diffs.map((r) => r.ms));
  const diffRssKiB = Math.max(...diffs.map((r) => r.hwmKiB));

  // 7. List.
  section('7. list (in-process)');
  await checkSidecarFormat();
  t0 = performance.now();
  const many = await ensureSidecarListFixture(LIST_COUNT);
  log(`${LIST_COUNT} bundles with sidecars (hard links of one tiny bundle): ${readyNote(many.reused, t0)}`);
  t0 = performance.now();
  const fallback = await ensureFallbackListFixture(FALLBACK_COUNT);
  log(`${FALLBACK_COUNT} distinct bundles without sidecars: ${readyNote(fallback.reused, t0)}`);
  const probe = await verifyBundleFile(sampleBundleOf(fallback));
  if (probe.status !== 'verified')
    throw new Error(`fallback fixture bundle does not verify: ${probe.status}`);
  const lists: Array<ChildResult & { processMs: number }> = [];
  const fallbacks: Array<ChildResult & { processMs: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    const a = runChild('list-child.ts', { stateRoot: many.stateRoot, agentId: many.agentId });
    if (a.entries !== LIST_COUNT || a.distinctIds !== LIST_COUNT || a.warnings !== 0)
      throw new Error(`list returned ${String(a.entries)} entries, ${String(a.warnings)} warnings`);
    lists.push(a);
    const b = runChild('list-child.ts', { stateRoot: fallback.stateRoot, agentId: fallback.agentId });
    if (b.entries !== FALLBACK_COUNT || b.warnings !== 0)
      throw new Error(`fallback list returned ${String(b.entries)} entries, ${String(b.warnings)} warnings`);
    fallbacks.push(b);
    log(
      `run ${i + 1}: ${LIST_COUNT} with sidecars ${fmtMs(a.ms)} (peak RSS ${fmtKiB(a.hwmKiB)}) | ` +
        `${FALLBACK_COUNT} without sidecars ${fmtMs(b.ms)} (peak RSS ${fmtKiB(b.hwmKiB)})`,
    );
  }
  const listMs = median(lists.map((r) => r.ms));
  const fallbackMs = median(fallbacks.map((r) => r.ms));

  // 8. Retention sweep over many agents: dry runs on the reused fixture, one real sweep on a copy.
  section(`8. retention sweep (gc), ${GC_AGENTS} agents × ${GC_PER_AGENT} bundles (in-process)`);
  t0 = performance.now();
  const gcFix = await ensureGcFixture(GC_AGENTS, GC_PER_AGENT);
  log(
    `${GC_AGENTS * GC_PER_AGENT} bundles with sidecars over the 100 days before ${new Date(gcFix.nowMs).toISOString()} ` +
      `(hard links of one tiny bundle): ${readyNote(gcFix.reused, t0)}`,
  );
  const gcArgs = {
    stateRoot: gcFix.stateRoot,
    memdirRoot: gcFix.memdirRoot,
    sqliteRoot: gcFix.sqliteRoot,
    ...GC_POLICY,
    now: gcFix.nowMs,
  };
  // keep-count 30 of 50 bundles 2 days apart: the 30 newest are all younger than 90 days.
  const gcWantDeleted = GC_AGENTS * Math.max(0, GC_PER_AGENT - GC_POLICY.keepCount);
  const checkGc = (r: ChildResult, what: string): void => {
    if (r.errors !== 0 || r.agents_visited !== GC_AGENTS || r.bundles_deleted !== gcWantDeleted)
      throw new Error(
        `${what}: ${String(r.agents_visited)} agents visited, ${String(r.errors)} errors ` +
          `(${String(r.first_error)}), ${String(r.bundles_deleted)} bundles to delete (expected ${gcWantDeleted})`,
      );
  };
  const gcDry: Array<ChildResult & { processMs: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    const r = runChild('gc-child.ts', { ...gcArgs, dryRun: true });
    checkGc(r, 'gc dry run');
    gcDry.push(r);
    log(
      `dry run ${i + 1}: ${fmtMs(r.ms)}, peak RSS ${fmtKiB(r.hwmKiB)}; ${String(r.agents_visited)} agents visited, ` +
        `${String(r.bundles_deleted)} bundles to delete, ${String(r.bundles_kept)} kept`,
    );
  }
  const gcDryMs = median(gcDry.map((r) => r.ms));
  const gcCopy = join(WORK_DIR, 'gc-sweep');
  discard(gcCopy);
  mkdirSync(gcCopy, { recursive: true });
  t0 = performance.now();
  // cp -a keeps the hard links inside the copy: one new inode, not 50,000 new files.
  const cp = spawnSync('cp', ['-a', gcFix.stateRoot, gcFix.memdirRoot, gcFix.sqliteRoot, `${gcCopy}/`], {
    encoding: 'utf8',
    timeout: GC_COPY_LIMIT_MS,
  });
  const gcCopyMs = performance.now() - t0;
  // The copy's dirty pages are written back now, not during the sweep being measured.
  spawnSync('sync', [], { timeout: GC_COPY_LIMIT_MS });
  let gcSweep: (ChildResult & { processMs: number }) | undefined;
  let gcSweepNote: string;
  if (cp.status === 0 && gcCopyMs < GC_COPY_LIMIT_MS) {
    gcSweep = runChild('gc-child.ts', {
      ...gcArgs,
      stateRoot: join(gcCopy, 'state'),
      memdirRoot: join(gcCopy, 'memdir'),
      sqliteRoot: join(gcCopy, 'sqlite'),
      dryRun: false,
    });
    checkGc(gcSweep, 'gc sweep');
    gcSweepNote = `once, on a copy made in ${fmtMs(gcCopyMs)}`;
    log(
      `real sweep (copy made in ${fmtMs(gcCopyMs)}): ${fmtMs(gcSweep.ms)}, peak RSS ${fmtKiB(gcSweep.hwmKiB)}; ` +
        `${String(gcSweep.agents_visited)} agents visited, ${String(gcSweep.bundles_deleted)} bundles deleted, ` +
        `${fmtMB(Number(gcSweep.bytes_freed))} freed`,
    );
  } else {
    gcSweepNote =
      cp.status === 0 || cp.error
        ? `not measured: copying the fixture took over ${fmtMs(GC_COPY_LIMIT_MS)}`
        : `not measured: cp failed (${cp.status ?? cp.signal}): ${cp.stderr.trim()}`;
    log(`real sweep ${gcSweepNote}; only the dry run is reported`);
  }
  discard(gcCopy);

  // 9. Peak RSS on a ~2 GB agent: flat in agent size (BENCH_BIG=0 skips it).
  let big: BigAgentResult | undefined;
  let bigRepo: BigRepositoryResult | undefined;
  if (process.env.BENCH_BIG !== '0') {
    section(
      '9. peak RSS on a ~2 GB agent (CLI: snapshot, verify and restore of a bundle; snapshot, check --read-data and restore in a repository)',
    );
    t0 = performance.now();
    big = measureBigAgent();
    bigRepo = measureBigAgentRepository();
    log(
      `repository: snapshot ${fmtMs(bigRepo.snapshot.ms)} (${fmtRssKiB(bigRepo.snapshot.peakRssKiB)}, added ` +
        `${fmtMB(bigRepo.addedBytes)}), check --read-data ${fmtMs(bigRepo.check.ms)} (${fmtRssKiB(bigRepo.check.peakRssKiB)}), ` +
        `restore ${fmtMs(bigRepo.restore.ms)} (${fmtRssKiB(bigRepo.restore.peakRssKiB)})`,
    );
    const bz = big.agent.sizes;
    log(
      `agent: ${fmtMB(bz.dbBytes)} of databases, ${bz.memdirFiles} files, ${bz.commits} commits ` +
        `(${readyNote(big.agent.reused, t0)}); snapshot ${fmtMs(big.snapshot.ms)} (bundle ${fmtMB(big.bundleBytes)}, ` +
        `peak RSS ${fmtRssKiB(big.snapshot.peakRssKiB)}), verify ${fmtMs(big.verify.ms)} (${fmtRssKiB(big.verify.peakRssKiB)}), ` +
        `restore ${fmtMs(big.restore.ms)} (${fmtRssKiB(big.restore.peakRssKiB)})`,
    );
  }

  const recipeRatio = r19.ms / snapMs;
  const checks = {
    encrypted: enc.ratio <= BUDGET.encryptedVsPlaintext,
    recipe19: recipeRatio >= BUDGET.recipe19VsSnapshot,
    list10k: listMs <= BUDGET.list10kMs,
    diff: diffMs <= BUDGET.diffMs,
    diffRss: diffRssKiB / 1024 <= BUDGET.peakRssMB,
    gcDryRun: gcDryMs <= BUDGET.gcMs,
    ...(gcSweep ? { gcSweep: gcSweep.ms <= BUDGET.gcMs } : {}),
    ...(big
      ? {
          bigSnapshotRss: (big.snapshot.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
          bigVerifyRss: (big.verify.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
          bigRestoreRss: (big.restore.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
        }
      : {}),
    ...(bigRepo
      ? {
          bigRepoSnapshotRss: (bigRepo.snapshot.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
          bigRepoCheckRss: (bigRepo.check.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
          bigRepoRestoreRss: (bigRepo.restore.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB,
        }
      : {}),
  };
  const others: string[][] = [
    [
      'encrypted snapshot (age, 1 recipient)',
      fmtMs(median(enc.encryptedMs)),
      `${fmtMs(median(enc.plainMs))} (plaintext snapshot)`,
      ratioStr(enc.ratio),
      `≤ ${BUDGET.encryptedVsPlaintext}×`,
      verdict(checks.encrypted),
    ],
    [
      'CLI snapshot vs original recipe',
      fmtMs(snapMs),
      `${fmtMs(r19.ms)} (zstd -19)`,
      `${ratioStr(recipeRatio)} faster`,
      `≥ ${BUDGET.recipe19VsSnapshot}×`,
      verdict(checks.recipe19),
    ],
    [
      'diff of two snapshots (summary)',
      fmtMs(diffMs),
      '—',
      '—',
      `≤ ${BUDGET.diffMs} ms`,
      verdict(checks.diff),
    ],
    [
      'peak RSS diff (VmHWM)',
      fmtKiB(diffRssKiB),
      '—',
      '—',
      `≤ ${BUDGET.peakRssMB} MB`,
      verdict(checks.diffRss),
    ],
    [
      `list ${LIST_COUNT} bundles (sidecars)`,
      fmtMs(listMs),
      '—',
      '—',
      `≤ ${BUDGET.list10kMs} ms`,
      verdict(checks.list10k),
    ],
    [`list ${FALLBACK_COUNT} bundles (no sidecars)`, fmtMs(fallbackMs), '—', '—', 'info', 'info'],
    [
      `gc dry run ${GC_AGENTS} agents × ${GC_PER_AGENT}`,
      fmtMs(gcDryMs),
      '—',
      '—',
      `≤ ${BUDGET.gcMs} ms`,
      verdict(checks.gcDryRun),
    ],
    gcSweep
      ? [
          `gc sweep ${GC_AGENTS} agents × ${GC_PER_AGENT} (once)`,
          fmtMs(gcSweep.ms),
          '—',
          '—',
          `≤ ${BUDGET.gcMs} ms`,
          verdict(gcSweep.ms <= BUDGET.gcMs),
        ]
      : [`gc sweep ${GC_AGENTS} agents × ${GC_PER_AGENT}`, 'not measured', '—', '—', 'info', 'info'],
    ...(big
      ? (
          [
            ['snapshot', big.snapshot],
            ['verify', big.verify],
            ['restore', big.restore],
            ...(bigRepo
              ? ([
                  ['repository snapshot', bigRepo.snapshot],
                  ['repository check --read-data', bigRepo.check],
                  ['repository restore', bigRepo.restore],
                ] as const)
              : []),
          ] as const
        ).map(([op, r]) => [
          `peak RSS ${op}, 2 GB agent (CLI)`,
          fmtRssKiB(r.peakRssKiB),
          '—',
          '—',
          `≤ ${BUDGET.peakRssMB} MB`,
          verdict((r.peakRssKiB ?? 0) / 1024 <= BUDGET.peakRssMB),
        ])
      : [['peak RSS, 2 GB agent', 'not measured (BENCH_BIG=0)', '—', '—', 'info', 'info']]),
    [
      'bundle size',
      fmtMB(bundles.bundleBytes),
      `${fmtMB(bundles.baselineBytes)} / ${fmtMB(r19.size)} (zstd -3 / -19)`,
      '—',
      'info',
      'info',
    ],
  ];
  report(mainRows, rssChecks, others, started, loadAtStart, {
    bundles,
    breakdown,
    ref,
    checks,
    extra: {
      encrypted: encryptedSummary(enc),
      recipe19: { ms: round(r19.ms), bytes: r19.size, speedup_vs_cli_snapshot: round(recipeRatio, 2) },
      list: {
        count: LIST_COUNT,
        runs_ms: lists.map((r) => round(r.ms)),
        median_ms: round(listMs),
        fallback_count: FALLBACK_COUNT,
        fallback_median_ms: round(fallbackMs),
      },
      diff: { runs_ms: diffs.map((r) => round(r.ms)), median_ms: round(diffMs), peak_rss_kib: diffRssKiB },
      gc: {
        agents: GC_AGENTS,
        bundles_per_agent: GC_PER_AGENT,
        dry_run_median_ms: round(gcDryMs),
        sweep_ms: gcSweep ? round(gcSweep.ms) : null,
        sweep_note: gcSweepNote,
      },
      big_agent: big
        ? {
            db_bytes: big.agent.sizes.dbBytes,
            snapshot_ms: round(big.snapshot.ms),
            snapshot_peak_rss_kib: big.snapshot.peakRssKiB ?? null,
            bundle_bytes: big.bundleBytes,
            verify_ms: round(big.verify.ms),
            verify_peak_rss_kib: big.verify.peakRssKiB ?? null,
            restore_ms: round(big.restore.ms),
            restore_peak_rss_kib: big.restore.peakRssKiB ?? null,
            ...(bigRepo
              ? {
                  repository: {
                    snapshot_ms: round(bigRepo.snapshot.ms),
                    snapshot_peak_rss_kib: bigRepo.snapshot.peakRssKiB ?? null,
                    added_bytes: bigRepo.addedBytes,
                    check_ms: round(bigRepo.check.ms),
                    check_peak_rss_kib: bigRepo.check.peakRssKiB ?? null,
                    restore_ms: round(bigRepo.restore.ms),
                    restore_peak_rss_kib: bigRepo.restore.peakRssKiB ?? null,
                  },
                }
              : {}),
          }
        : null,
    },
  });
}

/** Prints the result tables and the BENCH_JSON line; sets the exit status under BENCH_STRICT=1. */
function report(
  mainRows: readonly Row[],
  rssChecks: readonly Row[],
  others: readonly string[][],
  started: number,
  loadAtStart: string,
  ctx: {
    bundles: { bundleBytes: number; baselineBytes: number };
    breakdown: ReadonlyArray<readonly [string, number, number]>;
    ref: {
      reused: boolean;
      generationMs: number;
      sizes: { dbBytes: number; memdirFiles: number; commits: number };
    };
    checks?: Record<string, boolean>;
    extra?: Record<string, unknown>;
  },
): void {
  section(
    `results: what the user waits for (ref-170; the CLI as a whole process; ratio = median of paired ratios; MB = MiB; peak RSS ours | baseline)`,
  );
  log(
    table(
      ['operation', 'ours', 'baseline', 'ratio', 'budget', 'pass', 'peak RSS'],
      [...mainRows, ...rssChecks].map(rowCells),
    ),
  );
  if (others.length > 0) {
    section('results: library-level budgets (in-process children unless marked CLI)');
    log(table(['operation', 'ours', 'baseline', 'ratio', 'budget', 'result'], others));
  }
  const pass: Record<string, boolean> = {
    ...Object.fromEntries(
      [...mainRows, ...rssChecks]
        .filter((r) => r.result === 'PASS' || r.result === 'FAIL')
        .map((r) => [r.key, r.result === 'PASS']),
    ),
    ...(ctx.checks ?? {}),
  };
  const failed = Object.entries(pass)
    .filter(([, ok]) => !ok)
    .map(([k]) => k);
  const skipped = mainRows.filter((r) => r.result === 'skipped').map((r) => r.key);
  log(`\n${failed.length === 0 ? 'all budgets met' : `budgets missed: ${failed.join(', ')}`}`);
  if (skipped.length > 0) log(`skipped: ${skipped.join(', ')}`);
  log(`load average at start ${loadAtStart}, at the end ${load()}`);
  log(`bench wall time ${fmtMs(performance.now() - started)}`);
  const summary = {
    machine: { cpus: cpus().length, node: process.version, load_at_start: loadAtStart, load_at_end: load() },
    pairs: PAIRS,
    startup_pairs: STARTUP_PAIRS,
    quick: QUICK,
    ref170: {
      reused: ctx.ref.reused,
      generation_ms: round(ctx.ref.generationMs),
      db_bytes: ctx.ref.sizes.dbBytes,
      memdir_files: ctx.ref.sizes.memdirFiles,
      commits: ctx.ref.sizes.commits,
    },
    rows: Object.fromEntries(
      [...mainRows, ...rssChecks].map((r) => [r.key, { ...r.data, result: r.result }]),
    ),
    breakdown: Object.fromEntries(
      ctx.breakdown.map(([op, inMs, cliMs]) => [op, { in_process_ms: round(inMs), cli_ms: round(cliMs) }]),
    ),
    ...(ctx.extra ?? {}),
    budgets: { cli: CLI_BUDGET, library: BUDGET },
    pass,
    skipped,
    all_pass: failed.length === 0,
    bench_ms: round(performance.now() - started),
  };
  log(`BENCH_JSON ${JSON.stringify(summary)}`);
  if (failed.length > 0 && process.env.BENCH_STRICT === '1') process.exitCode = 1;
}

function encryptedSummary(e: Awaited<ReturnType<typeof measureEncrypted>>) {
  return {
    plaintext_runs_ms: e.plainMs.map((x) => round(x)),
    encrypted_runs_ms: e.encryptedMs.map((x) => round(x)),
    plaintext_pack_ms: e.plainPackMs.map((x) => round(x)),
    encrypted_pack_ms: e.encryptedPackMs.map((x) => round(x)),
    plaintext_bytes: e.plainBytes,
    encrypted_bytes: e.encryptedBytes,
    ratio: round(e.ratio, 3),
    paired_ratio: round(e.pairedRatio, 3),
    plaintext_cpu_ms: e.plainCpuMs.map((x) => round(x)),
    encrypted_cpu_ms: e.encryptedCpuMs.map((x) => round(x)),
    cpu_ratio: round(e.cpuRatio, 3),
  };
}

emptyTrash(); // what an interrupted run left (nothing, normally)
const wait = process.env.BENCH_NO_WAIT === '1' ? 0 : msUntilTrashForgotten();
if (wait > 0) {
  log(
    `waiting ${fmtMs(wait)}: the last run deleted its trash less than 5 minutes ago, and files created ` +
      'until then would pay for it (docs/decisions.md, "The bench never deletes between timed runs"; BENCH_NO_WAIT=1 skips)',
  );
  await new Promise((r) => setTimeout(r, wait));
}
try {
  await main();
} finally {
  emptyTrash();
}
