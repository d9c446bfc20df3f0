// Owns comparing builds on the repository's second snapshot (issue 11's ≤ 0.5× row), build against
// build on one machine: per round and per build (interleaved, the order alternating), a fresh copy of
// ref-170 (copyAgent), a first snapshot into a new repository, the bench's 1 % change
// (changeRefAgentOnePercent, the round's step, the same for every build) and the second snapshot, each
// the built CLI of that build as a whole process under GNU time (wall, user + sys CPU, peak RSS). On a
// loaded machine CPU time is the measure; wall time is printed beside it. Nothing is deleted while it
// runs (the copies go to the bench's trash, docs/operations.md "Deleted files and the bench").
//
//   node --import tsx bench/builds-second.ts <rounds> <label>=<checkout with dist/> [...]
//
// e.g. `cp -a . /tmp/old && (cd /tmp/old && git checkout -q <commit> && npm run build)`, then
// `node --import tsx bench/builds-second.ts 5 old=/tmp/old new=.`. One JSON line per run is appended to
// $OUT when set; the medians and the paired ratios (each build against the first) are printed at the end.

import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cliEnv, rootsOf } from './cli-rows.js';
import { changeRefAgentOnePercent, copyAgent, ensureRefAgent, REF_AGENT } from './fixtures.js';
import { discard, emptyTrash, MB, median, WORK_DIR } from './lib.js';

interface Timed {
  wallS: number;
  cpuS: number;
  rssKiB: number;
}

const rounds = Number(process.argv[2]);
const builds = process.argv.slice(3).map((a) => {
  const eq = a.indexOf('=');
  return { label: a.slice(0, eq), dir: resolve(a.slice(eq + 1)) };
});
if (!(rounds > 0) || builds.length === 0 || builds.some((b) => !b.label || !existsSync(join(b.dir, 'bin'))))
  throw new Error('usage: builds-second.ts <rounds> <label>=<checkout with bin/ and dist/> [...]');

const timeFile = join(WORK_DIR, `builds-second-${process.pid}.txt`);

/** One CLI run of `dir`'s build under GNU time; its JSON output and its time. */
function run(dir: string, args: readonly string[]): Timed & { json: { added_bytes: number } } {
  rmSync(timeFile, { force: true });
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', '%e %U %S %M', '-o', timeFile, process.execPath, join(dir, 'bin', 'nexo-memory.js'), ...args],
    { env: { ...process.env, ...cliEnv('repository') }, encoding: 'utf8', maxBuffer: 256 * MB },
  );
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${dir}: exited with ${r.status}\n${r.stderr}`);
  const [wall, user, sys, rss] = (readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '')
    .split(' ')
    .map(Number);
  rmSync(timeFile, { force: true });
  return {
    wallS: wall ?? Number.NaN,
    cpuS: (user ?? Number.NaN) + (sys ?? Number.NaN),
    rssKiB: rss ?? Number.NaN,
    json: JSON.parse(r.stdout) as { added_bytes: number },
  };
}

const ref = ensureRefAgent();
const seconds = new Map<string, Timed[]>(builds.map((b) => [b.label, []]));
const firsts = new Map<string, Timed[]>(builds.map((b) => [b.label, []]));
try {
  for (let i = 0; i < rounds; i++) {
    for (const b of i % 2 === 0 ? builds : [...builds].reverse()) {
      const p = copyAgent(ref, `builds-second-${b.label}`);
      const args = [
        'snapshot',
        '--agent',
        REF_AGENT,
        ...rootsOf(p),
        '--no-redact',
        '--no-progress',
        '--json',
      ];
      const first = run(b.dir, args);
      changeRefAgentOnePercent(p, i);
      const second = run(b.dir, args);
      firsts.get(b.label)?.push(first);
      seconds.get(b.label)?.push(second);
      const line = {
        round: i,
        build: b.label,
        first: { ...first, json: undefined },
        second: { ...second, json: undefined },
        added_bytes: second.json.added_bytes,
      };
      if (process.env.OUT) appendFileSync(process.env.OUT, `${JSON.stringify(line)}\n`);
      console.log(
        `round ${i + 1} ${b.label}: first ${first.wallS.toFixed(2)} s (CPU ${first.cpuS.toFixed(2)} s), ` +
          `second ${second.wallS.toFixed(2)} s (CPU ${second.cpuS.toFixed(2)} s, ${(second.rssKiB / 1024).toFixed(0)} MiB), ` +
          `added ${second.json.added_bytes} bytes`,
      );
      discard(p.root);
    }
  }
} finally {
  emptyTrash();
}

const base = builds[0]!.label;
for (const b of builds) {
  const s = seconds.get(b.label) ?? [];
  const f = firsts.get(b.label) ?? [];
  const paired = (key: keyof Timed) =>
    median(s.map((x, i) => x[key] / (seconds.get(base)?.[i]?.[key] ?? Number.NaN))).toFixed(3);
  console.log(
    `${b.label}: second snapshot CPU ${median(s.map((x) => x.cpuS)).toFixed(2)} s, wall ${median(s.map((x) => x.wallS)).toFixed(2)} s ` +
      `(median of ${s.length}); against ${base}, paired: CPU ${paired('cpuS')}×, wall ${paired('wallS')}×; ` +
      `second / first: CPU ${median(s.map((x, i) => x.cpuS / (f[i]?.cpuS ?? Number.NaN))).toFixed(3)}×, ` +
      `wall ${median(s.map((x, i) => x.wallS / (f[i]?.wallS ?? Number.NaN))).toFixed(3)}×`,
  );
}
