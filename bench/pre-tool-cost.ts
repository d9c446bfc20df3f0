// `node --import tsx bench/pre-tool-cost.ts [--memories N]`: what `auto_pre_mutating_tool` costs on a
// moderately sized agent — the wall time of the hook's snapshot and the bytes it adds after a one-row
// change, into the repository (and, for contrast, as a bundle) — median of 7 calls after a first full
// snapshot (wall time, and CPU time of the process and its worker threads). Prints a table and a last
// line `PRE_TOOL_JSON {...}`. Compiled (as `npm run bench` runs its children):
// `npx tsc -p tsconfig.bench.json && node .bench/dist/bench/pre-tool-cost.js`.

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { buildSampleAgent } from '../scripts/sample-agent.js';
import { LocalSnapshotter, PreMutatingToolSnapshotAdapter } from '../src/index.js';
import type { ListingMeta } from '../src/repository/snapshots.js';

const { values } = parseArgs({ options: { memories: { type: 'string', default: '40000' } } });
const root = mkdtempSync(join(tmpdir(), 'nexo-pre-tool-'));
const a = buildSampleAgent(root, 'ana', {
  seed: 7,
  memories: Number(values.memories),
  memoryBytes: 520,
  embeddings: 10_000,
  concepts: 2000,
  compactions: 400,
  files: 600,
  commits: 120,
});
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const MB = 1024 * 1024;

function oneRow(n: number): void {
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare("INSERT INTO memories (created_at, kind, content, importance) VALUES (?, 'fact', ?, 0.5)").run(
    2_000_000_000_000 + n,
    `a memory written by tool call ${n}`,
  );
  db.close();
}

async function measure(store: 'repository' | 'bundles') {
  const stateRoot = join(root, `state-${store}`);
  const s = new LocalSnapshotter({ stateRoot, memdirRoot: a.memdirRoot, sqliteRoot: a.sqliteRoot, store });
  let t0 = performance.now();
  const first = (await s.snapshot({ agentId: 'ana' })) as ListingMeta;
  const firstMs = performance.now() - t0;
  const firstBytes = first.added_bytes ?? first.bundle_size_bytes;
  const hook = new PreMutatingToolSnapshotAdapter(s, { minIntervalSecs: 0 });
  const ms: number[] = [];
  const cpu: number[] = [];
  const bytes: number[] = [];
  for (let i = 0; i < 7; i++) {
    oneRow(i);
    t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await hook.snapshotBeforeTool('ana', undefined, 'memory_write');
    ms.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    if (!r.ok || !('snapshot' in r)) throw new Error(JSON.stringify(r));
    const m = r.snapshot as ListingMeta;
    bytes.push(m.added_bytes ?? m.bundle_size_bytes);
  }
  return {
    store,
    agent_bytes: first.bundle_size_bytes,
    first_ms: Math.round(firstMs),
    first_bytes: firstBytes,
    pre_tool_ms: Math.round(median(ms)),
    pre_tool_cpu_ms: Math.round(median(cpu)),
    pre_tool_bytes: median(bytes),
  };
}

try {
  const rows = [await measure('repository'), await measure('bundles')];
  process.stdout.write(
    `agent: ${(rows[0]!.agent_bytes / MB).toFixed(1)} MB captured (memories ${values.memories})\n` +
      `load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${cpus().length} cores\n` +
      'store       first snapshot          pre-tool snapshot after a one-row change (median of 7): wall, CPU, added\n',
  );
  for (const r of rows)
    process.stdout.write(
      `${r.store.padEnd(11)} ${String(r.first_ms).padStart(6)} ms ${(r.first_bytes / MB).toFixed(2).padStart(7)} MB   ` +
        `${String(r.pre_tool_ms).padStart(6)} ms ${String(r.pre_tool_cpu_ms).padStart(6)} ms ${(r.pre_tool_bytes / 1024).toFixed(1).padStart(9)} KiB\n`,
    );
  process.stdout.write(`PRE_TOOL_JSON ${JSON.stringify(rows)}\n`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
