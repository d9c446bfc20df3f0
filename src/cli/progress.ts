// Owns progress display on stderr for work that runs longer than about a second: a byte bar with rate
// when stderr is a terminal, plain lines otherwise (CI logs): a phase without byte counts is named once,
// a byte phase prints at most one line per second and a `done` line when it ends. Silent for short work.
// A rate is the phase's bytes over the time since its first event (each byte phase announces itself
// with a zero event before it moves any), and only once the phase has run long enough to mean one.
// The bar library is loaded when a bar is first drawn: most runs never draw one (CLI start-up).

import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressListener } from '../model/types.js';
import { envInteger } from '../util/env-number.js';

/** cli-progress (a CommonJS package, so it loads synchronously) on first use. */
const loadCliProgress = (): typeof cliProgress =>
  createRequire(import.meta.url)('cli-progress') as typeof cliProgress;

/**
 * Work shorter than this shows no progress (NEXO_MEMORY_PROGRESS_AFTER_MS overrides, e.g. 0 for always;
 * empty or not a whole number: the default, as every numeric variable, util/env-number.ts).
 */
const SHOW_AFTER_MS = envInteger('NEXO_MEMORY_PROGRESS_AFTER_MS', 1000);
/** Plain (non-terminal) output: at most one line per this many ms. */
const LINE_EVERY_MS = Math.min(1000, Math.max(0, SHOW_AFTER_MS));
/** MiB, as the reports print sizes (humanBytes): one unit on screen. */
const mb = (n: number): string => (n / 1048576).toFixed(1);

/**
 * A phase younger than this gets no rate: bytes over a few milliseconds say nothing (a phase whose
 * first event already carried bytes would show thousands of MiB/s).
 */
const RATE_AFTER_MS = 200;

/** A rate for humans; undefined until the phase has moved bytes (no "0.0 MiB/s") for long enough. */
function rate(bytes: number, ms: number): string | undefined {
  if (bytes <= 0 || ms < RATE_AFTER_MS) return undefined;
  const perSec = bytes / ms / 1e-3;
  return perSec >= 1e5 ? `${mb(perSec)} MiB/s` : `${(perSec / 1024).toFixed(1)} KiB/s`;
}

/** Phases that report no byte counts (capture, redact, hash) announce themselves only. */
const counts = (e: ProgressEvent): boolean => e.bytes > 0 || e.total !== undefined;

export class ProgressReporter {
  private readonly started: number;
  private phase: string | undefined;
  private phaseStart: number;
  /** Whether anything was shown for the current phase (it then gets its `done` line). */
  private shown = false;
  private bar: cliProgress.SingleBar | undefined;
  private lastLine = 0;
  private last: ProgressEvent | undefined;
  private finished = false;

  constructor(
    private readonly enabled: boolean,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    /** The clock (tests pass their own). */
    private readonly now: () => number = Date.now,
  ) {
    this.started = now();
    this.phaseStart = this.started;
  }

  readonly listener: ProgressListener = (e) => this.update(e);

  private update(e: ProgressEvent): void {
    if (!this.enabled || this.finished) return;
    const now = this.now();
    if (e.phase !== this.phase) {
      this.endPhase(now);
      this.phase = e.phase;
      this.phaseStart = now;
      this.shown = false;
    }
    this.last = e;
    if (now - this.started < SHOW_AFTER_MS) return;
    const r = rate(e.bytes, now - this.phaseStart);
    if (!counts(e)) {
      if (!this.shown) this.stream.write(`${e.phase}: started\n`);
    } else if (this.stream.isTTY) {
      const payload = {
        phase: e.phase,
        done: mb(e.bytes),
        all: mb(e.total ?? e.bytes),
        rate: r ? ` ${r}` : '',
      };
      if (!this.bar) {
        const cliProgress = loadCliProgress();
        this.bar = new cliProgress.SingleBar(
          {
            stream: this.stream,
            format: '{phase} [{bar}] {percentage}% {done}/{all} MiB{rate}',
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(e.total ?? e.bytes, e.bytes, payload);
      }
      this.bar.setTotal(e.total ?? e.bytes);
      this.bar.update(e.bytes, payload);
    } else if (!this.shown || now - this.lastLine >= LINE_EVERY_MS) {
      this.lastLine = now;
      const total = e.total !== undefined ? `/${mb(e.total)}` : '';
      this.stream.write(`${e.phase}: ${mb(e.bytes)}${total} MiB${r ? ` (${r})` : ''}\n`);
    }
    this.shown = true;
  }

  /** Closes the current phase: its bar goes, and a shown byte phase gets one `done` line (plain output). */
  private endPhase(now: number): void {
    this.bar?.stop();
    this.bar = undefined;
    const e = this.last;
    if (!this.shown || !e || !counts(e) || this.stream.isTTY) return;
    const ms = now - this.phaseStart;
    const r = rate(e.bytes, ms);
    this.stream.write(
      `${e.phase}: done, ${mb(e.bytes)} MiB in ${(ms / 1000).toFixed(1)} s${r ? ` (${r})` : ''}\n`,
    );
  }

  /** Ends the display (once; later calls do nothing). */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.enabled) this.endPhase(this.now());
  }

  /** Ends the display of work that failed: its bar goes, and no phase is said to be done. */
  fail(): void {
    if (this.finished) return;
    this.finished = true;
    this.bar?.stop();
    this.bar = undefined;
  }
}
