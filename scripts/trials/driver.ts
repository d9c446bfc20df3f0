// Drives operations in real processes and checks the repository after each: kill trials (an operation
// killed with SIGKILL at a random instant) and concurrency rounds (snapshot and prune started at once).
// After every trial no snapshot listed before the operation may be missing, the repository must pass
// `check` (and `check --read-data` every few trials), every listed snapshot must verify, and snapshots must restore byte-for-byte what they captured
// (restore-check.ts): each snapshot not restored before, plus a random sample of the others, at most
// `restoreEach` per trial (default 3), and every listed one after the last trial. Used by
// `npm run kill-trials` and, with a few trials, by the tests.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSampleAgent, type SampleAgentOptions, rng as seeded } from '../sample-agent.js';
import {
  opPaths,
  repoObjects,
  snapshotCaptured,
  snapshotterOf,
  TRIAL_OPS,
  type TrialContext,
} from './ops.js';
import { restoreMatches } from './restore-check.js';

const RUN_OP = join(dirname(fileURLToPath(import.meta.url)), 'run-op.ts');
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A sample agent with one repository snapshot. */
export async function trialAgent(root: string, opts: SampleAgentOptions = {}): Promise<TrialContext> {
  const paths = buildSampleAgent(root, 'ana', {
    memories: 1500,
    embeddings: 300,
    files: 40,
    commits: 6,
    ...opts,
  });
  const ctx: TrialContext = {
    ...paths,
    alternates: [randomBytes(240 * 1024).toString('base64'), randomBytes(240 * 1024).toString('base64')],
    round: 0,
    captures: new Map(),
  };
  await snapshotCaptured(ctx, 'first');
  return ctx;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunningOp {
  ready: Promise<void>;
  /** Lets the operation start (it waits for this after `ready`). */
  go(): void;
  exited: Promise<Exit>;
  kill(): void;
}

/** Starts `op` in its own process group; it runs once `go` is called. */
export function startOp(op: string, ctx: TrialContext): RunningOp {
  const paths = opPaths(ctx);
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    [...(ctx.runOp ?? ['--import', 'tsx', RUN_OP]), op, JSON.stringify(paths)],
    { cwd: REPO, detached: true, stdio: 'pipe' },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const exited = new Promise<Exit>((r) =>
    child.on('exit', (code, signal) => r({ code, signal, stdout, stderr })),
  );
  const ready = new Promise<void>((resolvePromise, reject) => {
    child.stdout.on('data', (c) => {
      stdout += c;
      if (stdout.includes('ready\n')) resolvePromise();
    });
    void exited.then((e) => reject(new Error(`${op} exited before ready: ${e.stderr}`)));
  });
  ready.catch(() => {});
  return {
    ready,
    go: () => child.stdin.write('go\n'),
    exited,
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

export interface IntactOptions {
  readData: boolean;
  /** Restore every listed snapshot (else: the ones not restored before and a sample, `restoreEach`). */
  restoreAll?: boolean;
  restoreEach?: number;
  random?: () => number;
}

/**
 * The repository passes check (with readData: every pack read), every listed snapshot of the agent
 * verifies, through a new snapshotter (a new process's view), and the chosen ones restore (into scratch
 * roots) byte-for-byte what they captured. Throws naming what is wrong. Returns the numbers of listed
 * and restored snapshots.
 */
export async function assertIntact(
  ctx: TrialContext,
  o: IntactOptions,
): Promise<{ snapshots: number; restored: number }> {
  const s = snapshotterOf(ctx);
  const check = await s.check({ readData: o.readData });
  if (!check.ok) throw new Error(`check found problems: ${JSON.stringify(check.problems)}`);
  const listed = await s.list(ctx.agentId);
  for (const m of listed) {
    const r = await s.verifySnapshot(ctx.agentId, 'default', m.id);
    if (r.status !== 'verified')
      throw new Error(`snapshot ${m.id} does not verify: ${JSON.stringify(r.problems)}`);
    if (!ctx.captures.has(m.id)) throw new Error(`snapshot ${m.id} is listed, but no operation took it`);
  }
  const random = o.random ?? Math.random;
  const fresh = listed.filter((m) => !restoredOnce.has(m.id)).map((m) => m.id);
  const rest = listed.filter((m) => restoredOnce.has(m.id)).map((m) => m.id);
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j]!, rest[i]!];
  }
  const chosen = o.restoreAll ? [...fresh, ...rest] : [...fresh, ...rest].slice(0, o.restoreEach ?? 3);
  for (const id of chosen) {
    const diffs = await restoreMatches(ctx, id, ctx.captures.get(id)!, join(ctx.root, 'restore-check'));
    if (diffs.length > 0) throw new Error(diffs.slice(0, 10).join('; '));
    restoredOnce.add(id);
  }
  return { snapshots: listed.length, restored: chosen.length };
}

/** Snapshots restored and compared at least once. */
const restoredOnce = new Set<string>();

/**
 * A snapshot the operation that just ran wrote (a manifest, named by its id, listed or not) holds what
 * was captured when it was prepared (`ctx.pending`): recorded under its id.
 */
async function adoptNew(ctx: TrialContext): Promise<void> {
  for (const id of (await repoObjects(ctx)).snapshots) {
    if (ctx.captures.has(id)) continue;
    if (!ctx.pending) throw new Error(`snapshot ${id} appeared, but no operation took it`);
    ctx.captures.set(id, ctx.pending);
    ctx.pending = undefined; // one operation takes one snapshot
  }
}

const elapsed = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Runs `op` to completion (its preparation first); its duration in ms, from `go` to exit. */
export async function runToCompletion(op: string, ctx: TrialContext): Promise<number> {
  await TRIAL_OPS[op]!.prepare(ctx);
  const p = startOp(op, ctx);
  await p.ready;
  const t0 = process.hrtime.bigint();
  p.go();
  const e = await p.exited;
  if (e.code !== 0) throw new Error(`${op} failed: ${e.stderr}`);
  const ms = elapsed(t0);
  await adoptNew(ctx);
  await TRIAL_OPS[op]!.settle?.(ctx);
  return ms;
}

export interface TrialRecord {
  trial: number;
  op: string;
  killAtMs: number;
  /** Killed while running (false: it finished before the kill). */
  killed: boolean;
  /** How far it got (the operation's `effect`). */
  effect: string;
  /** What the operation's next run did (operations with `settle`). */
  settled?: string;
  snapshots: number;
  /** Snapshots restored and compared after this trial. */
  restored: number;
}

export interface KillTrialOptions {
  trials: number;
  seed: number;
  /** Operations to cycle through (default: every operation of ops.ts). */
  ops?: string[];
  /** check --read-data every N trials (and after the last). */
  readDataEvery?: number;
  /** Measure each operation's duration again every N of its trials (default 10). */
  recalibrateEvery?: number;
  /** Snapshots restored after each trial (see assertIntact; every one after the last). */
  restoreEach?: number;
  /** Runs to completion that measure an operation's duration (the longest counts; default 2). */
  calibrationRuns?: number;
  onTrial?: (r: TrialRecord) => void;
}

/**
 * Kill trials: each trial prepares an operation, starts it, kills it with SIGKILL at a random instant
 * (within 1.2× its measured duration, half of them in its writing end), notes how far it got, and
 * checks the repository. Throws at the first damage.
 */
export async function killTrials(ctx: TrialContext, o: KillTrialOptions): Promise<TrialRecord[]> {
  const ops = o.ops ?? Object.keys(TRIAL_OPS);
  const random = seeded(o.seed);
  // Each operation's duration: the longest of its runs to completion, measured again every few
  // trials (the repository changes as the trials go on).
  const duration = new Map<string, number>();
  const calibrate = async (op: string) => {
    const runs: number[] = [];
    for (let n = 0; n < (o.calibrationRuns ?? 2); n++) runs.push(await runToCompletion(op, ctx));
    duration.set(op, Math.max(...runs));
  };
  const records: TrialRecord[] = [];
  for (let i = 0; i < o.trials; i++) {
    const op = ops[i % ops.length]!;
    if (Math.floor(i / ops.length) % (o.recalibrateEvery ?? 10) === 0) await calibrate(op);
    await TRIAL_OPS[op]!.prepare(ctx);
    const before = await repoObjects(ctx);
    const listedBefore = (await snapshotterOf(ctx).list(ctx.agentId)).map((m) => m.id);
    const p = startOp(op, ctx);
    await p.ready;
    // Uniform over 1.2× the duration for half the trials; the other half over its last 40 % and
    // beyond, where the operations write and remove (the start is mostly reading and capturing).
    const d = duration.get(op)!;
    const killAtMs = random() < 0.5 ? random() * 1.2 * d : (0.6 + random() * 0.6) * d;
    p.go();
    const timer = setTimeout(p.kill, killAtMs);
    const e = await p.exited;
    clearTimeout(timer);
    if (e.signal === null && e.code !== 0) throw new Error(`trial ${i}: ${op} failed: ${e.stderr}`);
    const effect = await TRIAL_OPS[op]!.effect(before, await repoObjects(ctx), ctx);
    await adoptNew(ctx);
    const last = i === o.trials - 1;
    const readData = (i + 1) % (o.readDataEvery ?? 5) === 0 || last;
    let intact: { snapshots: number; restored: number };
    let settled: string | undefined;
    try {
      // no operation drops a listed snapshot (prune removes only what was forgotten before it started)
      const listedAfter = new Set((await snapshotterOf(ctx).list(ctx.agentId)).map((m) => m.id));
      const lost = listedBefore.filter((id) => !listedAfter.has(id));
      if (lost.length > 0) throw new Error(`snapshot(s) ${lost.join(', ')} no longer listed`);
      intact = await assertIntact(ctx, {
        readData,
        random,
        ...(o.restoreEach !== undefined ? { restoreEach: o.restoreEach } : {}),
      });
      settled = await TRIAL_OPS[op]!.settle?.(ctx);
      if (last) intact = await assertIntact(ctx, { readData: true, restoreAll: true });
    } catch (err) {
      throw new Error(`trial ${i} (${op} killed at ${killAtMs.toFixed(0)} ms): ${(err as Error).message}`);
    }
    const r: TrialRecord = {
      trial: i,
      op,
      killAtMs,
      killed: e.signal === 'SIGKILL',
      effect,
      ...(settled !== undefined ? { settled } : {}),
      ...intact,
    };
    records.push(r);
    o.onTrial?.(r);
  }
  return records;
}

export interface ConcurrentRecord {
  round: number;
  pruneDelayMs: number;
  snapshots: number;
}

/**
 * Concurrency rounds: a snapshot and a prune process started together (the prune after a random delay
 * within the snapshot's duration), with data to remove that the snapshot also needs; both must succeed
 * and the repository must stay intact. Throws at the first failure or damage.
 */
export async function concurrentRounds(
  ctx: TrialContext,
  o: { rounds: number; seed: number; onRound?: (r: ConcurrentRecord) => void },
): Promise<ConcurrentRecord[]> {
  const random = seeded(o.seed);
  const snapshotMs = await runToCompletion('snapshot', ctx);
  const out: ConcurrentRecord[] = [];
  for (let i = 0; i < o.rounds; i++) {
    // The previous state's snapshot is forgotten, so prune removes data this round's snapshot brings back.
    await TRIAL_OPS.snapshot!.prepare(ctx);
    const s = snapshotterOf(ctx);
    for (const m of (await s.list(ctx.agentId)).slice(1)) await s.delete(ctx.agentId, 'default', m.id);
    const snap = startOp('snapshot', ctx);
    const prune = startOp('prune', ctx);
    await Promise.all([snap.ready, prune.ready]);
    const pruneDelayMs = i === 0 ? 0 : random() * snapshotMs;
    snap.go();
    setTimeout(prune.go, pruneDelayMs);
    const [a, b] = await Promise.all([snap.exited, prune.exited]);
    if (a.code !== 0) throw new Error(`round ${i}: the snapshot failed: ${a.stderr}`);
    if (b.code !== 0) throw new Error(`round ${i}: the prune failed: ${b.stderr}`);
    await adoptNew(ctx);
    let snapshots: number;
    try {
      snapshots = (await assertIntact(ctx, { readData: true, random })).snapshots;
    } catch (err) {
      throw new Error(`round ${i} (prune ${pruneDelayMs.toFixed(0)} ms after): ${(err as Error).message}`);
    }
    const r = { round: i, pruneDelayMs, snapshots };
    out.push(r);
    o.onRound?.(r);
  }
  return out;
}
