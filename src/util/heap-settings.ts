// Owns the V8 settings of a process that asks for a small heap (the CLI): its garbage collector, set at run
// time: V8's young generation stays at its initial 1 MiB semi-spaces (`--semi-space-growth-factor=1`)
// and the old generation is collected once it has grown 20 % past what the last full collection kept
// (`--heap-growing-percent=20`; V8 otherwise lets it grow 1.1-4× by its own estimate of GC speed).
// Both are read by V8 each time it sizes a space, so they work set from inside the process. Node puts
// the process's V8 flags back to their command-line values whenever it starts a worker thread, so every
// worker this package starts is watched and the flags are set again once the worker is online
// (worker-rpc.ts, module-worker.ts, store/lock.ts). Why, with numbers: docs/operations.md, "Peak RSS".
// Such a process may also ask for a full collection right after a step that left much garbage
// (collectGarbageNow).
// The same processes also tier up to V8's optimizing compiler (TurboFan) 16 times later: a CLI run lives
// for a few seconds, and compiling the functions V8 finds warm in that time cost more than it won back
// (a repository's second snapshot of ref-170 on Node 20: ~0.45 s less CPU and ~0.2 s less wall; code
// that stays hot in a longer run is still optimized, a little later). V8 11 (Node 20) counts that in
// `--interrupt-budget`, later V8s (Node 22, 24) in `--invocation-count-for-turbofan`, and an unknown
// flag is an error printed on stderr, so the flag is chosen by V8's major version.

import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';

/** TurboFan 16× later than V8's defaults (V8 11: a budget of 67,584 bytecodes; V8 12+: 3,000 calls). */
const LATER_TIER_UP =
  Number(process.versions.v8.split('.')[0]) <= 11
    ? '--interrupt-budget=1081344'
    : '--invocation-count-for-turbofan=48000';
const FLAGS = ['--semi-space-growth-factor=1', '--heap-growing-percent=20', LATER_TIER_UP];
let wanted = false;

// node:v8 and node:vm are loaded on first use: node:v8 brings the heap-snapshot streams with it, and a
// process that never asks for the small heap (`--version`, a local `list`) need not load either.
const builtin = createRequire(import.meta.url);
const setFlags = (flag: string): void =>
  (builtin('node:v8') as typeof import('node:v8')).setFlagsFromString(flag);

const apply = (): void => {
  for (const f of FLAGS) setFlags(f);
};

/** CLI commands that keep Node's own GC settings: their live heap is large, and they have no RSS budget. */
const LARGE_HEAP_COMMANDS = new Set(['find']);
/**
 * CLI commands that decide for themselves, once they know their store: `list` holds a large listing only
 * from a remote repository (10,000 snapshots), and a runtime calls it before an action, where loading
 * the settings (node:v8 and node:vm, ~5 ms) is most of what it adds to a local listing.
 */
const DEFERRED_COMMANDS = new Set(['list']);

/**
 * Whether the CLI run with these arguments (after `node` and the script) wants the small heap from its
 * start: every command but those of LARGE_HEAP_COMMANDS and DEFERRED_COMMANDS; not `--version` or
 * `--help` without a command. The command is the first argument that is not an option (the program
 * has no option taking a value).
 */
export function smallHeapFor(args: readonly string[]): boolean {
  const command = args.find((a) => !a.startsWith('-'));
  return command !== undefined && !LARGE_HEAP_COMMANDS.has(command) && !DEFERRED_COMMANDS.has(command);
}

/** From now on, in this process: a young generation that does not grow, an old one collected early. */
export function keepHeapSmall(): void {
  wanted = true;
  apply();
}

let gc: (() => void) | undefined;

/**
 * In a process that keeps its heap small, a full collection now: for the moment a step has just made
 * a large amount of garbage (ArrayBuffers above all, which V8 otherwise lets pile up to tens of MB before
 * it collects them). V8's own `gc`, made available at run time (`--expose-gc`, in a new context).
 * Elsewhere it does nothing.
 */
export function collectGarbageNow(): void {
  if (!wanted) return;
  if (!gc) {
    setFlags('--expose-gc');
    gc = (builtin('node:vm') as typeof import('node:vm')).runInNewContext('gc') as () => void;
  }
  gc();
}

/** Sets the flags again once `worker` has started (its start reset them); returns the worker. */
export function watchWorker(worker: Worker): Worker {
  if (wanted) worker.once('online', apply);
  return worker;
}
