// Owns the `find` row of the bench (issue 14, budget ≤ 3 s): `nexo-memory find` as a whole process
// over N repository snapshots of an agent taken a 1 % change apart (design.md §5). The agent is ref-170
// scaled by BENCH_FIND_SCALE (1 = ref-170; default 1) and N is BENCH_FIND_SNAPSHOTS (default 200): on a
// loaded 2-core machine 200 snapshots of ref-170 take long to build, so both are parameters and the
// row says which were run. A text planted at snapshot N/3 (a memory row and a topic file) and removed
// at 2N/3 must be reported exactly there (first seen / first gone) before the time counts. The
// fixture is kept under .bench/find-<scale>-<n> and reused while its parameters are unchanged, with
// find's caches in its state root (checked manifests, blob sketches): the first run on a new fixture is
// cold (every blob read and sketched), later runs warm; delete <fixture>/state/cache for a cold run.

import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildSampleAgent, git, REF_170, type SampleAgentPaths } from '../scripts/sample-agent.js';
import type { FindResult } from '../src/browse/types.js';
import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { CLI_BIN, runProcess } from './cli.js';
import { median, WORK_DIR } from './lib.js';

export const FIND_BUDGET_MS = 3_000;
export const FIND_NEEDLE = 'the agent learned about the narwhal migration of 2031';

export interface FindFixture {
  paths: SampleAgentPaths;
  scale: number;
  snapshots: number;
  ids: string[];
  appearsAt: number;
  goneAt: number;
  reused: boolean;
  buildMs: number;
}

const scaled = (n: number, scale: number) => Math.max(1, Math.round(n * scale));

/** The 1 % change of design.md §5 on an agent of `scale` × ref-170 (rows appended, 5 files edited). */
function onePercent(p: SampleAgentPaths, scale: number, step: number): void {
  const open = (name: string) => new Database(join(p.sqliteDir, `${name}.sqlite`));
  const lt = open('long_term');
  const ins = lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)');
  lt.transaction(() => {
    for (let i = 0; i < scaled(1000, scale); i++)
      ins.run(
        1_780_000_000_000 + step * 1e6 + i,
        'fact',
        `step ${step} memory ${i}: ${'lorem ipsum '.repeat(40)}`,
        0.5,
      );
  })();
  lt.close();
  const vec = open('vector');
  const f = new Float32Array(REF_170.embeddingDim ?? 384);
  const vi = vec.prepare('INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?, ?, ?, ?)');
  vec.transaction(() => {
    for (let i = 0; i < scaled(500, scale); i++) {
      for (let d = 0; d < f.length; d++) f[d] = Math.sin(step * 7919 + i * 31 + d);
      vi.run(1_000_000 + step * 10_000 + i, 'all-MiniLM-L6-v2', f.length, Buffer.from(f.buffer));
    }
  })();
  vec.close();
  const con = open('concepts');
  con
    .prepare('UPDATE concepts SET summary = summary || ? WHERE id % 300 = ?')
    .run(` (step ${step})`, step % 300);
  con.close();
  const cmp = open('compactions');
  const ci = cmp.prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)');
  cmp.transaction(() => {
    for (let i = 0; i < scaled(60, scale); i++)
      ci.run(`s-${step}-${i}`, 1_780_000_000_000 + i, `compaction ${i}`);
  })();
  cmp.close();
  const files = git(p.memdir, ['ls-files', 'topics'])
    .split('\n')
    .filter((x) => x.endsWith('.md'))
    .sort();
  for (let i = 0; i < 5; i++)
    appendFileSync(join(p.memdir, files[(step * 37 + i * 401) % files.length]!), `Step ${step}: ${i}.\n`);
  git(p.memdir, ['commit', '-qam', `step ${step}: the 1 % change`]);
}

function plant(p: SampleAgentPaths, on: boolean): void {
  const lt = new Database(join(p.sqliteDir, 'long_term.sqlite'));
  if (on)
    lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)').run(
      1,
      'fact',
      `Today ${FIND_NEEDLE}.`,
      0.9,
    );
  else lt.prepare('DELETE FROM memories WHERE content LIKE ?').run(`%${FIND_NEEDLE}%`);
  lt.close();
  const file = join(p.memdir, 'topics', 'narwhals.md');
  if (on) writeFileSync(file, `# Narwhals\n\nNote: ${FIND_NEEDLE}.\n`);
  else rmSync(file, { force: true });
  git(p.memdir, ['add', '-A', 'topics']);
  git(p.memdir, ['commit', '-qm', on ? 'narwhals' : 'no narwhals']);
}

export async function ensureFindFixture(
  scale: number,
  snapshots: number,
  log: (s: string) => void,
): Promise<FindFixture> {
  const root = join(WORK_DIR, `find-${scale}-${snapshots}`);
  const marker = join(root, 'GENERATED.json');
  const appearsAt = Math.floor(snapshots / 3);
  const goneAt = Math.floor((2 * snapshots) / 3);
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as Omit<FindFixture, 'reused'>;
    return { ...m, reused: true };
  }
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const t0 = performance.now();
  const opts = {
    ...REF_170,
    memories: scaled(REF_170.memories!, scale),
    embeddings: scaled(REF_170.embeddings!, scale),
    concepts: scaled(REF_170.concepts!, scale),
    compactions: scaled(REF_170.compactions!, scale),
    files: scaled(REF_170.files!, scale),
    commits: scaled(REF_170.commits!, scale),
  };
  const paths = buildSampleAgent(root, 'ref', opts);
  const s = new LocalSnapshotter({
    stateRoot: paths.stateRoot,
    memdirRoot: paths.memdirRoot,
    sqliteRoot: paths.sqliteRoot,
    store: 'repository',
  });
  const ids: string[] = [];
  for (let i = 0; i < snapshots; i++) {
    if (i > 0) onePercent(paths, scale, i);
    if (i === appearsAt) plant(paths, true);
    if (i === goneAt) plant(paths, false);
    ids.push((await s.snapshot({ agentId: 'ref', label: `step ${i}` })).id);
    if ((i + 1) % 20 === 0)
      log(
        `  find fixture: ${i + 1}/${snapshots} snapshots (${Math.round((performance.now() - t0) / 1000)} s)`,
      );
  }
  const f = { paths, scale, snapshots, ids, appearsAt, goneAt, buildMs: performance.now() - t0 };
  writeFileSync(marker, `${JSON.stringify(f)}\n`);
  return { ...f, reused: false };
}

export interface FindMeasurement {
  fixture: FindFixture;
  runsMs: number[];
  medianMs: number;
  peakRssKiB: number | undefined;
  stats: FindResult['stats'];
  repositoryBytes: number;
}

/** Runs the built CLI's `find --json` `runs` times over the fixture; checks its answer first. */
export async function measureFind(runs: number, log: (s: string) => void): Promise<FindMeasurement> {
  const scale = Number(process.env.BENCH_FIND_SCALE ?? 1);
  const snapshots = Number(process.env.BENCH_FIND_SNAPSHOTS ?? 200);
  const fx = await ensureFindFixture(scale, snapshots, log);
  const args = [
    CLI_BIN,
    'find',
    '--agent',
    'ref',
    '--state-root',
    fx.paths.stateRoot,
    '--memdir-root',
    fx.paths.memdirRoot,
    '--sqlite-root',
    fx.paths.sqliteRoot,
    FIND_NEEDLE,
    '--json',
    // what was read (stats) is shown only with the values as stored (docs/browse.md)
    '--show-secrets',
  ];
  const runsMs: number[] = [];
  let rss: number | undefined;
  let stats: FindResult['stats'] | undefined;
  for (let i = 0; i < runs; i++) {
    const r = runProcess(process.execPath, args);
    if (r.status !== 0) throw new Error(`find exited ${r.status}: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as FindResult;
    if (
      out.first_seen?.snapshot_id !== fx.ids[fx.appearsAt] ||
      out.first_gone?.snapshot_id !== fx.ids[fx.goneAt]
    )
      throw new Error(
        `find answered first seen ${out.first_seen?.snapshot_id}, first gone ${out.first_gone?.snapshot_id}; expected ${fx.ids[fx.appearsAt]}, ${fx.ids[fx.goneAt]}`,
      );
    const hit = out.snapshots[fx.appearsAt]!;
    if (!hit.locations.some((l) => l.kind === 'row') || !hit.locations.some((l) => l.kind === 'file'))
      throw new Error('find did not report both the row and the file');
    runsMs.push(r.ms);
    rss = r.peakRssKiB === undefined ? rss : Math.max(rss ?? 0, r.peakRssKiB);
    stats = out.stats;
    log(
      `  find run ${i + 1}: ${Math.round(r.ms)} ms (${out.stats.units_searched} units searched, ${out.stats.units_skipped} skipped by their sketch, ${out.stats.databases_opened} databases opened)`,
    );
  }
  const repositoryBytes = Number(
    execFileSync('du', ['-sb', join(fx.paths.stateRoot, 'repository')], { encoding: 'utf8' }).split('\t')[0],
  );
  return { fixture: fx, runsMs, medianMs: median(runsMs), peakRssKiB: rss, stats: stats!, repositoryBytes };
}
