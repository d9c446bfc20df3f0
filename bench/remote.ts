// Owns the remote-repository rows of the bench (issue 12, "Benchmarks"): a 3-node nats-server cluster
// with JetStream on loopback (test/helpers/nats-cluster.ts, logging to files), buckets with 3 replicas,
// and the built CLI as whole processes with `--repo nats://…`: the first snapshot of ref-170 into a new
// JetStream repository against the same into a new local repository (interleaved pairs), the bytes the
// second snapshot after the 1 % change uploads (the store metrics of `--metrics-file`), restore from
// JetStream on another state root against restore from the local repository (interleaved), and `list`
// of 10,000 snapshots of a remote repository with a warm and a cold cache (alternating); the peak RSS of
// each. The 10,000 snapshots are one real snapshot of a tiny agent (taken by the CLI) re-sealed under
// new ids and times through the library's repository API (manifest and listing entry, saveSnapshot):
// valid, restorable snapshots sharing one set of packs, made in seconds instead of 10,000 CLI runs.
// BENCH_REMOTE_LIST=0 runs only the snapshot and restore rows; BENCH_REMOTE_PROF=dir gives every CLI
// run of these rows (JetStream and local) `--cpu-prof` into that directory.

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { multiplySnapshot } from '../test/helpers/many-snapshots.js';
import { type NatsCluster, startNatsCluster } from '../test/helpers/nats-cluster.js';
import { CLI_BIN, jsonOf, type ProcessRun, runCli as runCliPlain, runProcess } from './cli.js';
import {
  CLI_BUDGET,
  cleanRestore,
  cliEnv,
  fmtRss,
  interleave,
  nodeBaseline,
  type Row,
  ratioRow,
  rootsOf,
  rssMB,
} from './cli-rows.js';
import {
  changeRefAgentOnePercent,
  copyAgent,
  ensureSampleAgent,
  REF_AGENT,
  type RefAgent,
} from './fixtures.js';
import { discard, fmtMB, fmtMs, median, round, WORK_DIR } from './lib.js';

/** Issue 12's budgets. */
export const REMOTE_BUDGET = {
  /** First snapshot into JetStream (3 nodes, R3) / the same into the local repository. */
  snapshot: 1.5,
  /** Bytes the second snapshot (after the 1 % change) uploads, % of the first's. */
  secondUpPct: 3,
  /** Restore from JetStream (another state root) / restore from the local repository. */
  restore: 1.5,
  /** `list` of 10,000 snapshots of a remote repository, warm cache. */
  listWarmMs: 500,
  /** Peak RSS of each, MB. */
  peakRssMB: CLI_BUDGET.peakRssMB.budget,
} as const;

/** The tiny agent whose one snapshot becomes the list fixture's 10,000. */
const TINY = { seed: 12, memories: 20, embeddings: 4, concepts: 5, compactions: 2, files: 2, commits: 1 };
const TINY_AGENT = REF_AGENT;

function checked(r: ProcessRun, args: readonly string[]): ProcessRun {
  if (r.status !== 0) throw new Error(`nexo-memory ${args.join(' ')} exited with ${r.status}:\n${r.stderr}`);
  return r;
}

const verdict = (ok: boolean): 'PASS' | 'FAIL' => (ok ? 'PASS' : 'FAIL');

/** Sum of nexo_memory_snapshot_store_bytes_total{backend="nats",direction=…} in a metrics textfile. */
function storeBytes(file: string, direction: 'up' | 'down'): number {
  let total = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('nexo_memory_snapshot_store_bytes_total{')) continue;
    if (!line.includes('backend="nats"') || !line.includes(`direction="${direction}"`)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function rssRow(key: string, operation: string, runs: readonly ProcessRun[]): Row {
  const mb = rssMB(runs);
  return {
    key: `${key}Rss`,
    operation: `peak RSS ${operation}`,
    ours: fmtRss(mb),
    baseline: '—',
    ratio: '—',
    budget: `≤ ${REMOTE_BUDGET.peakRssMB} MB`,
    result: mb === undefined ? 'skipped' : verdict(mb <= REMOTE_BUDGET.peakRssMB),
    peakRss: fmtRss(mb),
    data: { peak_rss_mb: mb === undefined ? null : round(mb), budget_mb: REMOTE_BUDGET.peakRssMB },
  };
}

export interface RemoteOptions {
  pairs: number;
  /** Snapshots in the list fixture (10,000 for the budget; 0 leaves the list rows out). */
  listCount: number;
  /** A directory for `--cpu-prof` profiles of every CLI run of these rows. */
  cpuProfDir?: string;
}

/** The remote rows (see the top comment); starts and stops its own cluster. */
export async function remoteRows(ref: RefAgent, o: RemoteOptions, log: (s: string) => void): Promise<Row[]> {
  const t0 = performance.now();
  const cluster: NatsCluster = await startNatsCluster(3, { logToFile: true, maxFileStore: '8GB' });
  log(`3-node JetStream cluster on loopback started in ${fmtMs(performance.now() - t0)}; buckets R3`);
  try {
    return await rows(cluster, ref, o, log);
  } finally {
    await cluster.stop();
  }
}

/** `list` rows only (BENCH_ONLY=remote-list): starts and stops its own cluster. */
export async function remoteListRows(o: RemoteOptions, log: (s: string) => void): Promise<Row[]> {
  const t0 = performance.now();
  const cluster: NatsCluster = await startNatsCluster(3, { logToFile: true, maxFileStore: '8GB' });
  log(`3-node JetStream cluster on loopback started in ${fmtMs(performance.now() - t0)}; buckets R3`);
  try {
    const { repoUrl, env } = cliSetup(cluster);
    const list = await listRows(repoUrl, env, o, log);
    return [list.warmRow, list.coldRow, ...list.rssRows];
  } finally {
    await cluster.stop();
  }
}

/** The repository URL of a bucket in `cluster`, and the CLI's environment (a config with R3 buckets). */
function cliSetup(cluster: NatsCluster): { repoUrl: (bucket: string) => string; env: NodeJS.ProcessEnv } {
  const servers = cluster.urls.map((u) => u.slice('nats://'.length)).join(',');
  const config = join(WORK_DIR, 'remote-config.yaml');
  writeFileSync(config, ['snapshot:', '  store:', '    nats:', '      replicas: 3', ''].join('\n'));
  return {
    repoUrl: (bucket) => `nats://${servers}/${bucket}`,
    env: { ...cliEnv('repository'), NEXO_MEMORY_CONFIG: config },
  };
}

async function rows(
  cluster: NatsCluster,
  ref: RefAgent,
  o: RemoteOptions,
  log: (s: string) => void,
): Promise<Row[]> {
  // node refuses --cpu-prof in NODE_OPTIONS: the flags go before the CLI's script.
  const prof = o.cpuProfDir;
  const runCli = (args: readonly string[], env: NodeJS.ProcessEnv): ProcessRun =>
    prof
      ? checked(
          runProcess(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${prof}`, CLI_BIN, ...args], { env }),
          args,
        )
      : runCliPlain(args, env);
  const { repoUrl, env } = cliSetup(cluster);
  const metrics = join(WORK_DIR, 'remote-metrics.prom');
  const p = copyAgent(ref, 'ref-170-remote');
  const localRepo = join(p.stateRoot, 'repository');
  const snapArgs = [
    'snapshot',
    '--agent',
    REF_AGENT,
    ...rootsOf(p),
    '--no-redact',
    '--no-progress',
    '--json',
  ];
  const firstUp: number[] = [];
  const secondUp: number[] = [];
  const seconds: ProcessRun[] = [];
  let lastBucket = '';
  let secondId = '';

  // 1. First snapshot: a new JetStream repository vs a new local repository; per pair, after it, the
  // 1 % change and the second snapshot into the same JetStream repository (untimed in the pair).
  const first = interleave(
    o.pairs,
    (i) => {
      lastBucket = `bench_snap_${i}_${Date.now()}`;
      rmSync(metrics, { force: true });
      const r = runCli([...snapArgs, '--repo', repoUrl(lastBucket), '--metrics-file', metrics], env);
      firstUp.push(storeBytes(metrics, 'up'));
      return r;
    },
    (i) => {
      discard(localRepo);
      const b = runCli(snapArgs, env);
      changeRefAgentOnePercent(p, i);
      rmSync(metrics, { force: true });
      const r = runCli([...snapArgs, '--repo', repoUrl(lastBucket), '--metrics-file', metrics], env);
      seconds.push(r);
      secondUp.push(storeBytes(metrics, 'up'));
      secondId = jsonOf<{ id: string }>(r).id;
      log(
        `  after the 1 % change: second snapshot into JetStream ${fmtMs(r.ms)} (${fmtRss(rssMB([r]))}), ` +
          `uploaded ${fmtMB(secondUp[i]!)} (the first uploaded ${fmtMB(firstUp[i]!)})`,
      );
      return b;
    },
    log,
    'snapshot JetStream | local',
  );
  const upPct = median(secondUp.map((s, i) => (s / firstUp[i]!) * 100));
  const out: Row[] = [
    ratioRow(
      'remoteSnapshot',
      'JetStream (3 nodes, R3): first snapshot of ref-170',
      'the same into the local repository',
      first,
      REMOTE_BUDGET.snapshot,
      undefined,
      { first_up_bytes: firstUp },
    ),
    {
      key: 'remoteSecondUp',
      operation: 'JetStream: bytes the snapshot after the 1 % change uploads',
      ours: `${fmtMB(median(secondUp))} = ${upPct.toFixed(2)} %`,
      baseline: `${fmtMB(median(firstUp))} (first snapshot)`,
      ratio: `${upPct.toFixed(2)} %`,
      budget: `≤ ${REMOTE_BUDGET.secondUpPct} %`,
      result: verdict(upPct <= REMOTE_BUDGET.secondUpPct),
      peakRss: fmtRss(rssMB(seconds)),
      data: {
        first_up_bytes: firstUp,
        second_up_bytes: secondUp,
        up_pct: round(upPct, 3),
        second_runs_ms: seconds.map((r) => round(r.ms)),
        peak_rss_mb: rssMB(seconds) ?? null,
      },
    },
  ];

  // 2. Restore of the live state (the last second snapshot) from JetStream on another state root (its
  // cache removed each time: what another host pays) vs from the local repository (a snapshot of the
  // same state, untimed).
  const localId = jsonOf<{ id: string }>(runCli(snapArgs, env)).id;
  const otherState = join(WORK_DIR, 'remote-restore-state');
  const restoreArgs = (id: string, stateRoot: string, extra: string[]): string[] => [
    'restore',
    '--agent',
    REF_AGENT,
    '--from',
    id,
    '--state-root',
    stateRoot,
    '--memdir-root',
    p.memdirRoot,
    '--sqlite-root',
    p.sqliteRoot,
    '--no-auto-pre-snapshot',
    '--no-progress',
    '--json',
    ...extra,
  ];
  const restore = interleave(
    o.pairs,
    () => {
      discard(otherState);
      const r = runCli(restoreArgs(secondId, otherState, ['--repo', repoUrl(lastBucket)]), env);
      cleanRestore(p, jsonOf(r));
      return r;
    },
    () => {
      const r = runCli(restoreArgs(localId, p.stateRoot, []), env);
      cleanRestore(p, jsonOf(r));
      return r;
    },
    log,
    'restore JetStream | local',
  );
  discard(otherState);
  out.push(
    ratioRow(
      'remoteRestore',
      'JetStream: restore of ref-170 (another state root)',
      'restore from the local repository',
      restore,
      REMOTE_BUDGET.restore,
    ),
  );

  // 3. list of listCount snapshots (listRows), unless BENCH_REMOTE_LIST=0.
  const rssRows = [
    rssRow('remoteSnapshot', 'JetStream first snapshot', first.ours),
    rssRow('remoteSecond', 'JetStream second snapshot', seconds),
    rssRow('remoteRestore', 'JetStream restore', restore.ours),
  ];
  if (o.listCount === 0) {
    discard(p.root);
    out.push(...rssRows);
    return out;
  }
  const list = await listRows(repoUrl, env, o, log);
  out.push(list.warmRow, list.coldRow);
  discard(p.root);

  // 4. Peak RSS of each.
  out.push(...rssRows, ...list.rssRows);
  return out;
}

/**
 * `list` of `o.listCount` snapshots of a new JetStream repository (one real snapshot of a tiny agent,
 * multiplied: top comment), with a cold and a warm cache, alternating; its rows and their peak RSS.
 */
async function listRows(
  repoUrl: (bucket: string) => string,
  env: NodeJS.ProcessEnv,
  o: RemoteOptions,
  log: (s: string) => void,
): Promise<{ warmRow: Row; coldRow: Row; rssRows: Row[] }> {
  const runCli = runCliPlain;
  const tiny = ensureSampleAgent('tiny-remote', TINY);
  const listBucket = `bench_list_${Date.now()}`;
  let t0 = performance.now();
  runCli(
    [
      'snapshot',
      '--agent',
      TINY_AGENT,
      ...rootsOf(tiny.paths),
      '--no-progress',
      '--json',
      '--repo',
      repoUrl(listBucket),
    ],
    env,
  );
  await multiplySnapshot(repoUrl(listBucket), o.listCount);
  log(
    `list fixture: ${o.listCount} snapshots (1 taken by the CLI, ${o.listCount - 1} re-sealed copies through the ` +
      `repository API) in ${fmtMs(performance.now() - t0)}`,
  );
  const listState = join(WORK_DIR, 'remote-list-state');
  discard(listState);
  const listArgs = [
    'list',
    '--agent',
    TINY_AGENT,
    '--json',
    '--state-root',
    listState,
    '--repo',
    repoUrl(listBucket),
  ];
  const listed = (r: ProcessRun): ProcessRun => {
    const n = jsonOf<unknown[]>(r).length;
    if (n !== o.listCount) throw new Error(`list found ${n} snapshots, expected ${o.listCount}`);
    return r;
  };
  t0 = performance.now();
  const runs = Math.max(o.pairs, 3);
  const cold: ProcessRun[] = [];
  const warm: ProcessRun[] = [];
  for (let i = 0; i < runs; i++) {
    discard(join(listState, 'cache'));
    cold.push(listed(runCli(listArgs, env)));
    warm.push(listed(runCli(listArgs, env)));
    log(
      `list run ${i + 1}: cold ${fmtMs(cold[i]!.ms)} (${fmtRss(rssMB([cold[i]!]))}) | warm ${fmtMs(warm[i]!.ms)} ` +
        `(${fmtRss(rssMB([warm[i]!]))})`,
    );
  }
  const node = median(Array.from({ length: 3 }, () => nodeBaseline().ms));
  discard(listState);
  const warmMs = median(warm.map((r) => r.ms));
  const coldMs = median(cold.map((r) => r.ms));
  const warmRow: Row = {
    key: 'remoteListWarm',
    operation: `JetStream: list of ${o.listCount} snapshots, warm cache`,
    ours: fmtMs(warmMs),
    baseline: `${fmtMs(node)} (node -e 0)`,
    ratio: `${(warmMs / REMOTE_BUDGET.listWarmMs).toFixed(2)}× of the budget`,
    budget: `≤ ${REMOTE_BUDGET.listWarmMs / 1000} s`,
    result: o.listCount === 10_000 ? verdict(warmMs <= REMOTE_BUDGET.listWarmMs) : 'info',
    peakRss: fmtRss(rssMB(warm)),
    data: {
      count: o.listCount,
      runs_ms: warm.map((r) => round(r.ms)),
      median_ms: round(warmMs),
      node_ms: round(node),
      peak_rss_mb: rssMB(warm) ?? null,
    },
  };
  const coldRow: Row = {
    key: 'remoteListCold',
    operation: `JetStream: list of ${o.listCount} snapshots, cold cache`,
    ours: fmtMs(coldMs),
    baseline: `${fmtMs(node)} (node -e 0)`,
    ratio: '—',
    budget: 'report',
    result: 'info',
    peakRss: fmtRss(rssMB(cold)),
    data: {
      count: o.listCount,
      runs_ms: cold.map((r) => round(r.ms)),
      median_ms: round(coldMs),
      peak_rss_mb: rssMB(cold) ?? null,
    },
  };
  return {
    warmRow,
    coldRow,
    rssRows: [
      rssRow('remoteListWarm', 'JetStream list (warm)', warm),
      rssRow('remoteListCold', 'JetStream list (cold)', cold),
    ],
  };
}
