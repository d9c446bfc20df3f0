// Owns `npm run bench`: the budgets of design.md §5 that this version can measure, each beside its
// baseline in the same run. Generates (or reuses) ref-170, then snapshot vs `VACUUM INTO` ×4 + git
// bundle + cp + `tar -I 'zstd -3 -T2'` + `openssl dgst` (and the original's zstd -19 recipe), an
// age-encrypted snapshot vs a plaintext one (bench/encrypted.ts), verify vs
// `zstd -dc | openssl dgst`, restore vs unpack + quick_check + clone, peak RSS of snapshot, verify,
// restore and diff, diff of two ref-170 snapshots (the agent is restored afterwards), list of 10,000
// bundles, a retention sweep over 1,000 agents × 50 bundles, and peak RSS on a ~2 GB agent. Our operations run in child processes
// (bench/*-child.ts) so each peak RSS is that process's own. Prints tables and a last line
// `BENCH_JSON {...}`. Exits 0 even when a budget fails, unless BENCH_STRICT=1. `BENCH_ONLY=encrypted`
// runs only the encrypted-vs-plaintext snapshot case (after the reference agent), BENCH_RUNS times.

import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { verifyBundleFile } from '../src/verify/verify.js';
import { type BigAgentResult, measureBigAgent } from './big-agent.js';
import { measureEncrypted } from './encrypted.js';
import {
  changeRefAgent,
  checkSidecarFormat,
  clearRefSnapshots,
  ensureFallbackListFixture,
  ensureGcFixture,
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
  fmtKiB,
  fmtMB,
  fmtMs,
  median,
  round,
  runChild,
  sh,
  table,
  timeBash,
  WORK_DIR,
} from './lib.js';

const RUNS = 3;
const LIST_COUNT = 10_000;
const FALLBACK_COUNT = 1_000;
const GC_AGENTS = 1_000;
const GC_PER_AGENT = 50;
const GC_POLICY = { keepCount: 30, maxAgeDays: 90 };
/** The real sweep needs a throwaway copy of the fixture; it is skipped when copying takes longer. */
const GC_COPY_LIMIT_MS = 30_000;
const BUDGET = {
  snapshotVsBaseline: 1.25,
  encryptedVsPlaintext: 1.15,
  recipe19VsSnapshot: 20,
  verifyVsBaseline: 1.25,
  restoreVsBaseline: 1.5,
  peakRssMB: 200,
  list10kMs: 1000,
  diffMs: 3000,
  gcMs: 10_000,
};

const log = (s = ''): void => console.log(s);
const section = (title: string): void => log(`\n== ${title}`);

/** The baseline of §5: exactly the tools, sequentially, into a fresh staging directory. */
const BASELINE_SNAPSHOT = `shopt -s extglob dotglob
for db in long_term vector concepts compactions; do
  sqlite3 "$SQ/$db.sqlite" "VACUUM INTO '$STG/sqlite/$db.sqlite'"
done
git -C "$MEM" bundle create "$STG/git/memdir.bundle" --all 2>/dev/null
cp -r "$MEM"/!(.git) "$STG/memory_files/"
tar -I "zstd -$LEVEL -T2" -cf "$OUT" -C "$STG" .
openssl dgst -sha256 "$OUT"`;

const BASELINE_VERIFY = `zstd -dc "$BUNDLE" | openssl dgst -sha256`;

const BASELINE_RESTORE = `rm -rf "$OUT"; mkdir -p "$OUT"
zstd -dc "$BUNDLE" | tar -x -C "$OUT"
for db in long_term vector concepts compactions; do sqlite3 "$OUT/sqlite/$db.sqlite" 'PRAGMA quick_check' >/dev/null; done
git clone -q "$OUT/git/memdir.bundle" "$OUT/clone"`;

interface Paths {
  memdir: string;
  sqliteDir: string;
}

function baselineSnapshot(p: Paths, level: number): { ms: number; size: number } {
  const dir = join(WORK_DIR, 'baseline');
  const stg = join(dir, 'staging');
  const out = join(dir, `out-zstd${level}.tar.zst`);
  rmSync(stg, { recursive: true, force: true });
  rmSync(out, { force: true });
  for (const sub of ['sqlite', 'git', 'memory_files']) mkdirSync(join(stg, sub), { recursive: true });
  const { ms } = timeBash(BASELINE_SNAPSHOT, {
    SQ: p.sqliteDir,
    MEM: p.memdir,
    STG: stg,
    OUT: out,
    LEVEL: String(level),
  });
  const size = Number(sh('stat', ['-c', '%s', out]).trim());
  rmSync(stg, { recursive: true, force: true });
  return { ms, size };
}

function removeBundle(path: string): void {
  for (const suffix of ['', '.sha256', '.meta.json']) rmSync(`${path}${suffix}`, { force: true });
}

const readyNote = (reused: boolean, since: number): string =>
  reused ? 'reused from an earlier run' : `generated in ${fmtMs(performance.now() - since)}`;
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');
const ratioStr = (r: number): string => `${r.toFixed(2)}×`;

async function main(): Promise<void> {
  const started = performance.now();
  mkdirSync(WORK_DIR, { recursive: true });
  const cpu = cpus();
  log(`nexo-memory-snapshot bench — ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, node ${process.version}`);
  log(
    `tools: sqlite3 ${sh('sqlite3', ['--version']).split(' ')[0]}, ${sh('zstd', ['--version'])
      .trim()
      .replace(/^\*+ /, '')
      .replace(/, by .*$/, '')}, ` +
      `${sh('git', ['--version']).trim()}, ${sh('openssl', ['version']).trim().split(' (')[0]}`,
  );
  log(
    `runs per measurement: ${RUNS} (median time, max RSS); our operations in child processes (plain node, compiled)`,
  );
  compileForChildren();

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

  // 2. Snapshot vs baseline, interleaved so drift of the machine hits both alike.
  section(`2. snapshot (${RUNS} runs each, interleaved with the baseline)`);
  const snapArgs = {
    stateRoot: ref.paths.stateRoot,
    memdirRoot: ref.paths.memdirRoot,
    sqliteRoot: ref.paths.sqliteRoot,
    agentId: REF_AGENT,
  };
  if (process.env.BENCH_ONLY === 'encrypted') {
    section('2b. encrypted snapshot vs plaintext snapshot (interleaved)');
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
  const ours: Array<ChildResult & { processMs: number }> = [];
  const base: Array<{ ms: number; size: number }> = [];
  let lastBundle = '';
  for (let i = 0; i < RUNS; i++) {
    const r = runChild('snapshot-child.ts', snapArgs);
    if (lastBundle) removeBundle(lastBundle);
    lastBundle = String(r.bundlePath);
    ours.push(r);
    base.push(baselineSnapshot(ref.paths, 3));
    log(
      `run ${i + 1}: ours ${fmtMs(r.ms)} (capture under the gate ${fmtMs(Number(r.captureMs))}, hash ${fmtMs(Number(r.hashMs))}, ` +
        `pack+publish ${fmtMs(Number(r.packMs))}; ` +
        `process ${fmtMs(r.processMs)}), peak RSS ${fmtKiB(r.hwmKiB)} (maxRSS ${fmtKiB(r.maxRssKiB)}), bundle ${fmtMB(Number(r.bundleSize))}` +
        ` | baseline ${fmtMs(base[i]!.ms)}, ${fmtMB(base[i]!.size)}`,
    );
  }
  const snapMs = median(ours.map((r) => r.ms));

  // 2b. Encrypted vs plaintext snapshot (age X25519, one recipient).
  section(`2b. encrypted snapshot vs plaintext snapshot (${RUNS} runs each, interleaved)`);
  const enc = await measureEncrypted(snapArgs, RUNS, join(WORK_DIR, 'bench-identity.txt'), log);
  const snapRssKiB = Math.max(...ours.map((r) => r.hwmKiB));
  const baseMs = median(base.map((b) => b.ms));
  log('original recipe (zstd -19 -T2), once …');
  const recipe19 = baselineSnapshot(ref.paths, 19);
  log(`recipe zstd-19: ${fmtMs(recipe19.ms)}, ${fmtMB(recipe19.size)}`);

  // 3. Verify vs baseline.
  section(`3. verify (${RUNS} runs each, interleaved)`);
  const vOurs: Array<ChildResult & { processMs: number }> = [];
  const vBase: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = runChild('verify-child.ts', { bundle: lastBundle });
    if (r.status !== 'verified') throw new Error(`verify of ${lastBundle} said ${String(r.status)}`);
    vOurs.push(r);
    vBase.push(timeBash(BASELINE_VERIFY, { BUNDLE: lastBundle }).ms);
    log(
      `run ${i + 1}: ours ${fmtMs(r.ms)} (${String(r.artifacts)} artifacts, ${fmtMB(Number(r.bytesChecked))} checked), ` +
        `peak RSS ${fmtKiB(r.hwmKiB)} (maxRSS ${fmtKiB(r.maxRssKiB)}) | baseline ${fmtMs(vBase[i]!)}`,
    );
  }
  const verifyMs = median(vOurs.map((r) => r.ms));
  const verifyRssKiB = Math.max(...vOurs.map((r) => r.hwmKiB));
  const vBaseMs = median(vBase);

  // 3b. Restore vs baseline: unpack + quick_check ×4 + git clone.
  section(`3b. restore (${RUNS} runs each, interleaved)`);
  const rOurs: Array<ChildResult & { processMs: number }> = [];
  const rBase: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = runChild('restore-child.ts', { ...snapArgs, bundle: lastBundle });
    rOurs.push(r);
    rBase.push(
      timeBash(BASELINE_RESTORE, { BUNDLE: lastBundle, OUT: join(WORK_DIR, 'baseline', 'restore') }).ms,
    );
    log(`run ${i + 1}: ours ${fmtMs(r.ms)}, peak RSS ${fmtKiB(r.hwmKiB)} | baseline ${fmtMs(rBase[i]!)}`);
  }
  rmSync(join(WORK_DIR, 'baseline', 'restore'), { recursive: true, force: true });
  const restoreMs = median(rOurs.map((r) => r.ms));
  const restoreRssKiB = Math.max(...rOurs.map((r) => r.hwmKiB));
  const rBaseMs = median(rBase);
  const restoreRatio = restoreMs / rBaseMs;

  // 3c. Diff of two real snapshots with a known change between them; the agent is restored after.
  section(`3c. diff of two snapshots (${RUNS} runs)`);
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

  // 4. List.
  section('4. list');
  await checkSidecarFormat();
  let t0 = performance.now();
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

  // 4b. Retention sweep over many agents: dry runs on the reused fixture, one real sweep on a copy.
  section(`4b. retention sweep (gc), ${GC_AGENTS} agents × ${GC_PER_AGENT} bundles`);
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
  rmSync(gcCopy, { recursive: true, force: true });
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
  rmSync(gcCopy, { recursive: true, force: true });

  // 4c. Peak RSS on a ~2 GB agent: flat in agent size (BENCH_BIG=0 skips it).
  let big: BigAgentResult | undefined;
  if (process.env.BENCH_BIG !== '0') {
    section('4c. peak RSS on a ~2 GB agent (one snapshot, verify and restore)');
    t0 = performance.now();
    big = measureBigAgent();
    const bz = big.agent.sizes;
    log(
      `agent: ${fmtMB(bz.dbBytes)} of databases, ${bz.memdirFiles} files, ${bz.commits} commits ` +
        `(${readyNote(big.agent.reused, t0)}); snapshot ${fmtMs(big.snapshot.ms)} (bundle ${fmtMB(Number(big.snapshot.bundleSize))}), ` +
        `verify ${fmtMs(big.verify.ms)}, restore ${fmtMs(big.restore.ms)}`,
    );
  }

  // The floor of a child's RSS: node + our modules, doing nothing.
  const idle = runChild('idle-child.ts', {});

  // 5. Results.
  const snapRatio = snapMs / baseMs;
  const recipeRatio = recipe19.ms / snapMs;
  const verifyRatio = verifyMs / vBaseMs;
  const snapRssMB = snapRssKiB / 1024;
  const verifyRssMB = verifyRssKiB / 1024;
  const checks = {
    snapshot: snapRatio <= BUDGET.snapshotVsBaseline,
    encrypted: enc.ratio <= BUDGET.encryptedVsPlaintext,
    recipe19: recipeRatio >= BUDGET.recipe19VsSnapshot,
    verify: verifyRatio <= BUDGET.verifyVsBaseline,
    restore: restoreRatio <= BUDGET.restoreVsBaseline,
    restoreRss: restoreRssKiB / 1024 <= BUDGET.peakRssMB,
    snapshotRss: snapRssMB <= BUDGET.peakRssMB,
    verifyRss: verifyRssMB <= BUDGET.peakRssMB,
    list10k: listMs <= BUDGET.list10kMs,
    diff: diffMs <= BUDGET.diffMs,
    diffRss: diffRssKiB / 1024 <= BUDGET.peakRssMB,
    gcDryRun: gcDryMs <= BUDGET.gcMs,
    ...(gcSweep ? { gcSweep: gcSweep.ms <= BUDGET.gcMs } : {}),
    ...(big
      ? {
          bigSnapshotRss: big.snapshot.hwmKiB / 1024 <= BUDGET.peakRssMB,
          bigVerifyRss: big.verify.hwmKiB / 1024 <= BUDGET.peakRssMB,
          bigRestoreRss: big.restore.hwmKiB / 1024 <= BUDGET.peakRssMB,
        }
      : {}),
  };
  section('results (ref-170; MB = MiB; peak RSS = VmHWM of the child process)');
  log(
    table(
      ['operation', 'ours', 'baseline', 'ratio', 'budget', 'result'],
      [
        [
          'snapshot',
          fmtMs(snapMs),
          `${fmtMs(baseMs)} (zstd -3)`,
          ratioStr(snapRatio),
          `≤ ${BUDGET.snapshotVsBaseline}×`,
          verdict(checks.snapshot),
        ],
        [
          'encrypted snapshot (age, 1 recipient)',
          fmtMs(median(enc.encryptedMs)),
          `${fmtMs(median(enc.plainMs))} (plaintext snapshot)`,
          ratioStr(enc.ratio),
          `≤ ${BUDGET.encryptedVsPlaintext}×`,
          verdict(checks.encrypted),
        ],
        [
          'snapshot vs original recipe',
          fmtMs(snapMs),
          `${fmtMs(recipe19.ms)} (zstd -19)`,
          `${ratioStr(recipeRatio)} faster`,
          `≥ ${BUDGET.recipe19VsSnapshot}×`,
          verdict(checks.recipe19),
        ],
        [
          'verify',
          fmtMs(verifyMs),
          `${fmtMs(vBaseMs)} (zstd -dc | openssl)`,
          ratioStr(verifyRatio),
          `≤ ${BUDGET.verifyVsBaseline}×`,
          verdict(checks.verify),
        ],
        [
          'restore (no pre-snapshot)',
          fmtMs(restoreMs),
          `${fmtMs(rBaseMs)} (unpack, quick_check, clone)`,
          ratioStr(restoreRatio),
          `≤ ${BUDGET.restoreVsBaseline}×`,
          verdict(checks.restore),
        ],
        [
          'peak RSS restore',
          `${(restoreRssKiB / 1024).toFixed(1)} MB`,
          '—',
          '—',
          `≤ ${BUDGET.peakRssMB} MB`,
          verdict(checks.restoreRss),
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
          'peak RSS diff',
          `${(diffRssKiB / 1024).toFixed(1)} MB`,
          '—',
          '—',
          `≤ ${BUDGET.peakRssMB} MB`,
          verdict(checks.diffRss),
        ],
        [
          'peak RSS snapshot',
          `${snapRssMB.toFixed(1)} MB`,
          '—',
          '—',
          `≤ ${BUDGET.peakRssMB} MB`,
          verdict(checks.snapshotRss),
        ],
        [
          'peak RSS verify',
          `${verifyRssMB.toFixed(1)} MB`,
          '—',
          '—',
          `≤ ${BUDGET.peakRssMB} MB`,
          verdict(checks.verifyRss),
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
              ] as const
            ).map(([op, r]) => [
              `peak RSS ${op}, 2 GB agent`,
              `${(r.hwmKiB / 1024).toFixed(1)} MB`,
              '—',
              '—',
              `≤ ${BUDGET.peakRssMB} MB`,
              verdict(r.hwmKiB / 1024 <= BUDGET.peakRssMB),
            ])
          : [['peak RSS, 2 GB agent', 'not measured (BENCH_BIG=0)', '—', '—', 'info', 'info']]),
        ['idle child (node + modules)', `${fmtKiB(idle.hwmKiB)} RSS`, '—', '—', 'info', 'info'],
        [
          'bundle size',
          fmtMB(Number(ours[ours.length - 1]!.bundleSize)),
          `${fmtMB(base[base.length - 1]!.size)} / ${fmtMB(recipe19.size)}`,
          '—',
          'info',
          'info',
        ],
      ],
    ),
  );
  const failed = Object.entries(checks)
    .filter(([, ok]) => !ok)
    .map(([k]) => k);
  log(`\n${failed.length === 0 ? 'all budgets met' : `budgets missed: ${failed.join(', ')}`}`);
  log(`bench wall time ${fmtMs(performance.now() - started)}`);

  const summary = {
    machine: { cpus: cpu.length, node: process.version },
    ref170: {
      reused: ref.reused,
      generation_ms: round(ref.generationMs),
      db_bytes: z.dbBytes,
      dbs: z.dbs,
      memdir_files: z.memdirFiles,
      memdir_bytes: z.memdirBytes,
      git_dir_bytes: z.gitDirBytes,
      commits: z.commits,
    },
    snapshot: {
      runs_ms: ours.map((r) => round(r.ms)),
      median_ms: round(snapMs),
      capture_ms: ours.map((r) => round(Number(r.captureMs))),
      hash_ms: ours.map((r) => round(Number(r.hashMs))),
      pack_ms: ours.map((r) => round(Number(r.packMs))),
      peak_rss_kib: snapRssKiB,
      max_rss_kib_getrusage: Math.max(...ours.map((r) => r.maxRssKiB)),
      bundle_bytes: Number(ours[ours.length - 1]!.bundleSize),
      baseline_runs_ms: base.map((b) => round(b.ms)),
      baseline_median_ms: round(baseMs),
      baseline_bytes: base[base.length - 1]!.size,
      recipe19_ms: round(recipe19.ms),
      recipe19_bytes: recipe19.size,
      ratio_vs_baseline: round(snapRatio, 3),
      recipe19_speedup: round(recipeRatio, 2),
    },
    encrypted: encryptedSummary(enc),
    verify: {
      runs_ms: vOurs.map((r) => round(r.ms)),
      median_ms: round(verifyMs),
      peak_rss_kib: verifyRssKiB,
      max_rss_kib_getrusage: Math.max(...vOurs.map((r) => r.maxRssKiB)),
      baseline_runs_ms: vBase.map((x) => round(x)),
      baseline_median_ms: round(vBaseMs),
      ratio_vs_baseline: round(verifyRatio, 3),
    },
    restore: {
      runs_ms: rOurs.map((r) => round(r.ms)),
      median_ms: round(restoreMs),
      peak_rss_kib: restoreRssKiB,
      baseline_runs_ms: rBase.map((x) => round(x)),
      baseline_median_ms: round(rBaseMs),
      ratio_vs_baseline: round(restoreRatio, 3),
    },
    list: {
      count: LIST_COUNT,
      runs_ms: lists.map((r) => round(r.ms)),
      median_ms: round(listMs),
      peak_rss_kib: Math.max(...lists.map((r) => r.hwmKiB)),
      fallback_count: FALLBACK_COUNT,
      fallback_runs_ms: fallbacks.map((r) => round(r.ms)),
      fallback_median_ms: round(fallbackMs),
    },
    diff: {
      runs_ms: diffs.map((r) => round(r.ms)),
      median_ms: round(diffMs),
      peak_rss_kib: diffRssKiB,
      files_changed: diffs[0]!.files_changed,
      commits_between: diffs[0]!.commits_between,
      long_term_rows_added: diffs[0]!.long_term_rows_added,
      long_term_rows_removed: diffs[0]!.long_term_rows_removed,
      long_term_rows_changed: diffs[0]!.long_term_rows_changed,
    },
    gc: {
      agents: GC_AGENTS,
      bundles_per_agent: GC_PER_AGENT,
      policy: GC_POLICY,
      fixture_reused: gcFix.reused,
      dry_run_runs_ms: gcDry.map((r) => round(r.ms)),
      dry_run_median_ms: round(gcDryMs),
      dry_run_peak_rss_kib: Math.max(...gcDry.map((r) => r.hwmKiB)),
      agents_visited: gcDry[0]!.agents_visited,
      bundles_deleted: gcDry[0]!.bundles_deleted,
      bundles_kept: gcDry[0]!.bundles_kept,
      copy_ms: round(gcCopyMs),
      sweep_ms: gcSweep ? round(gcSweep.ms) : null,
      sweep_peak_rss_kib: gcSweep ? gcSweep.hwmKiB : null,
      sweep_bundles_deleted: gcSweep ? gcSweep.bundles_deleted : null,
      sweep_agents_visited: gcSweep ? gcSweep.agents_visited : null,
      sweep_note: gcSweepNote,
    },
    big_agent: big
      ? {
          db_bytes: big.agent.sizes.dbBytes,
          reused: big.agent.reused,
          snapshot_ms: round(big.snapshot.ms),
          snapshot_peak_rss_kib: big.snapshot.hwmKiB,
          bundle_bytes: Number(big.snapshot.bundleSize),
          verify_ms: round(big.verify.ms),
          verify_peak_rss_kib: big.verify.hwmKiB,
          restore_ms: round(big.restore.ms),
          restore_peak_rss_kib: big.restore.hwmKiB,
        }
      : null,
    idle_child_peak_rss_kib: idle.hwmKiB,
    budgets: BUDGET,
    pass: checks,
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

await main();
