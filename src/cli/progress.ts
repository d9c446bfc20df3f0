// Owns progress display on stderr for work that runs longer than about a second: a byte bar with rate
// when stderr is a terminal, one plain line per second otherwise (CI logs). Silent for short work.

import cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressListener } from '../model/types.js';

/** Work shorter than this shows no progress (NEXO_MEMORY_PROGRESS_AFTER_MS overrides, e.g. 0 for always). */
const SHOW_AFTER_MS = Number(process.env.NEXO_MEMORY_PROGRESS_AFTER_MS ?? 1000);
/** Plain (non-terminal) output: at most one line per this many ms. */
const LINE_EVERY_MS = Math.min(1000, Math.max(0, SHOW_AFTER_MS));
const mb = (n: number): string => (n / 1e6).toFixed(1);

export class ProgressReporter {
  private readonly started = Date.now();
  private phase: string | undefined;
  private phaseStart = Date.now();
  private bar: cliProgress.SingleBar | undefined;
  private lastLine = 0;
  private last: ProgressEvent | undefined;

  constructor(
    private readonly enabled: boolean,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  readonly listener: ProgressListener = (e) => this.update(e);

  private update(e: ProgressEvent): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (e.phase !== this.phase) {
      this.finishBar();
      this.phase = e.phase;
      this.phaseStart = now;
    }
    this.last = e;
    if (now - this.started < SHOW_AFTER_MS) return;
    const elapsed = Math.max(0.001, (now - this.phaseStart) / 1000);
    const rate = mb(e.bytes / elapsed);
    if (this.stream.isTTY) {
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar(
          {
            stream: this.stream,
            format: '{phase} [{bar}] {percentage}% {done}/{all} MB {rate} MB/s',
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(e.total ?? e.bytes, e.bytes, {
          phase: e.phase,
          done: mb(e.bytes),
          all: mb(e.total ?? e.bytes),
          rate,
        });
      }
      this.bar.setTotal(e.total ?? e.bytes);
      this.bar.update(e.bytes, { phase: e.phase, done: mb(e.bytes), all: mb(e.total ?? e.bytes), rate });
    } else if (now - this.lastLine >= LINE_EVERY_MS) {
      this.lastLine = now;
      const total = e.total !== undefined ? `/${mb(e.total)}` : '';
      this.stream.write(`${e.phase}: ${mb(e.bytes)}${total} MB (${rate} MB/s)\n`);
    }
  }

  private finishBar(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  /** Ends the display; prints a final line for plain output when anything was shown. */
  done(): void {
    this.finishBar();
    if (this.enabled && !this.stream.isTTY && this.lastLine > 0 && this.last) {
      const secs = ((Date.now() - this.phaseStart) / 1000).toFixed(1);
      this.stream.write(`${this.last.phase}: done, ${mb(this.last.bytes)} MB in ${secs} s\n`);
    }
  }
}
